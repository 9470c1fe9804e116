"""Data-subject rights: export everything held about a customer, and erase it (GDPR Art. 15, 17).

Both find the customer's data by key only: the customer record, its timeline (contact ids), each
contact's partition (deliveries), each case's partition (external refs) and the dead letters
filed under the customer (the store erases those with the customer, by the same key). A customer that
absorbed others through merges is one person: export and erasure cover the absorbed customers'
records, contacts and the merge audit records too. Erasure sends `customer.erased` first and
erases after, so an interrupted erasure is simply repeated.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from chalicelib.adapters.blobs.base import BlobStore
from chalicelib.adapters.queue.base import Queue
from chalicelib.adapters.store.base import Erasure, Store
from chalicelib.domain.models import Contact, Customer, Direction, message_dedupe_key
from chalicelib.service.visitor_outbox import outbox_keys_of
from chalicelib.errors import ConflictError, NotFoundError, TransientError
from chalicelib.service.customer_events import customer_event_messages
from chalicelib.service.timeline import all_contacts

#: Dedupe tombstones outlive every provider's retry horizon (WhatsApp: 7 days) by far.
TOMBSTONE_DAYS = 30


def export_customer(store: Store, blobs: BlobStore, customer_id: str, *, now: datetime) -> dict:
    """Everything held about the customer, dead deliveries included, as JSON-ready data.
    Raises `NotFoundError`."""
    customers = _person(store, _customer(store, customer_id))
    contacts = [_with_raw(store.get_contact(c.id), blobs) for customer in customers for c in all_contacts(store, customer.id)]
    contacts.sort(key=lambda c: c.id, reverse=True)
    case_ids = list(dict.fromkeys(c.case_id for c in contacts))
    cases = [case for case_id in case_ids if (case := store.get_case(case_id)) is not None]
    merge_ids = list(dict.fromkeys(m.merge_id for customer in customers for m in customer.merges))
    merges = [record for merge_id in merge_ids if (record := store.get_merge(merge_id)) is not None]
    # Dead deliveries keep their job: the message text and the customer's address, as sent.
    dead_letters = [letter for customer in customers for letter in store.dead_letters_of(customer.id)]
    return {
        "exported_at": now.isoformat().replace("+00:00", "Z"),
        "customer": customers[0].model_dump(mode="json"),
        "merged_customers": [c.model_dump(mode="json") for c in customers[1:]],
        "contacts": [c.model_dump(mode="json") for c in contacts],
        "cases": [c.model_dump(mode="json") for c in cases],
        "merges": [m.model_dump(mode="json") for m in merges],
        "dead_letters": [{**d.model_dump(mode="json", exclude={"job"}), "job": json.loads(d.job)} for d in dead_letters],
    }


def erase_customer(
    store: Store, blobs: BlobStore, delivery_queue: Queue, customer_id: str, *, now: datetime,
    event_destinations: list[str],
) -> dict:
    """Erase the customer, and the customers it absorbed, everywhere the hub holds data, after
    queueing `customer.erased` for each to the destinations that take customer events.
    Idempotent. Raises `NotFoundError`, and `ConflictError` for a customer merged into another
    (erase the survivor: it is the same person)."""
    customer = store.get_customer(customer_id)
    if customer is None:
        if store.is_erased(customer_id):
            return {"customer_id": customer_id, "status": "erased"}
        raise NotFoundError(f"no customer {customer_id}")
    if customer.merged_into is not None:
        raise ConflictError(
            f"customer {customer_id} was merged into {customer.merged_into}; erase that customer, or unmerge first",
            detail={"merged_into": customer.merged_into},
        )
    # Only the survivor needs the flag: a merge of an absorbed customer reaches it by redirect.
    people = _person(store, _mark_erasing(store, customer))
    messages = [
        message
        for person in people
        for message in customer_event_messages("customer.erased", person.id, occurred_at=now, destinations=event_destinations)
    ]
    if messages:
        delivery_queue.send(messages)
    contact_count = case_count = 0
    group = {person.id for person in people}
    merge_ids = _merge_records_holding(store, people)
    # Absorbed customers first: while the survivor exists, an interrupted erasure is resumable.
    for person in reversed(people):
        erasure = _erasure(store, blobs, person, now, group=group, merge_ids=merge_ids)
        store.erase_customer(erasure)
        contact_count += len(erasure.contact_ids)
        case_count += len(erasure.case_ids)
    return {"customer_id": customer_id, "status": "erased", "contacts": contact_count, "cases": case_count,
            "merged_customers": [p.id for p in people[1:]]}


def _erasure(store: Store, blobs: BlobStore, customer: Customer, now: datetime, *, group: set[str],
             merge_ids: tuple[str, ...]) -> Erasure:
    contacts = list(all_contacts(store, customer.id))
    for contact in contacts:
        if isinstance(contact.raw, dict) and "$blob" in contact.raw:
            blobs.delete(contact.raw["$blob"])
        # Attachments the media service downloaded (service/media.py reports their keys).
        for stored in (contact.enrichment.get("media") or {}).get("attachments", []):
            if isinstance(stored, dict) and stored.get("key"):
                blobs.delete(stored["key"])
    # The customer's open case too: a merge may have handed it over without a contact of its own.
    # A case an unmerge gave back to another customer holds that customer's contacts: it stays.
    candidates = dict.fromkeys([c.case_id for c in contacts] + ([customer.open_case.id] if customer.open_case else []))
    case_ids = [case_id for case_id in candidates
                if (case := store.get_case(case_id)) is None or case.customer_id in group]
    # Only the keys that lead to this customer's cases: a reply of theirs may name another
    # customer's thread (a reply-all), and that thread stays with its case.
    referenced = list(dict.fromkeys(k for c in contacts for k in (*c.thread_keys, *_sent_thread_keys(c))))
    threads = store.find_threads(referenced) if referenced else {}
    inbound = [c for c in contacts if c.direction == Direction.INBOUND]
    sent = [c for c in contacts if c.direction == Direction.OUTBOUND and c.provider_message_id]
    return Erasure(
        customer_id=customer.id,
        identifier_keys=tuple(i.key for i in customer.identifiers),
        contact_ids=tuple(c.id for c in contacts),
        case_ids=tuple(case_ids),
        thread_keys=tuple(k for k in referenced if threads.get(k) in case_ids),
        dedupe_keys=(*(message_dedupe_key(c.provider, c.provider_message_id) for c in inbound),
                     *_event_dedupe_keys(contacts)),
        merge_ids=merge_ids,
        erased_at=now,
        tombstone_expires_at=now + timedelta(days=TOMBSTONE_DAYS),
        sent_messages=tuple((c.provider, c.provider_message_id) for c in sent),
        outbox_keys=outbox_keys_of(customer.identifiers),
    )


def _event_dedupe_keys(contacts: list[Contact]) -> list[str]:
    """The done markers of the business events on the timeline (`metadata.event.dedupe_key`):
    kept with the erasure's, so a late replay of an event cannot bring the customer's data back."""
    keys = []
    for contact in contacts:
        if contact.direction != "event":
            continue
        event = contact.metadata.get("event") if isinstance(contact.metadata, dict) else None
        key = event.get("dedupe_key") if isinstance(event, dict) else None
        if isinstance(key, str) and key:
            keys.append(key)
    return keys


def _sent_thread_keys(contact: Contact) -> list[str]:
    """The thread keys an email the hub sent left behind: its Message-ID (and the one the provider
    gave it instead, SES), so the customer's answer finds the case (service/messages.py)."""
    if contact.direction != Direction.OUTBOUND:
        return []
    ids = [contact.metadata.get(name) for name in ("message_id", "hub_message_id")]
    return [f"email:{value.strip('<>')}" for value in ids if isinstance(value, str) and value]


def _mark_erasing(store: Store, customer: Customer) -> Customer:
    """Flag the customer (version-guarded) so no merge can carry its data away while it is
    erased. A merge that committed first makes this fail with `ConflictError`: erase the
    survivor then."""
    from chalicelib.service.commands import mark_erasing

    return mark_erasing(store, customer.id)


def _merge_records_holding(store: Store, people: list[Customer]) -> tuple[str, ...]:
    """Every merge audit record that may hold data of one of `people`: their own merges, and the
    merges of the customers they were merged with whose snapshots name them (a snapshot taken
    while one of them was merged in carries their identifiers and attributes). Erasure deletes
    those records whole: the right to erasure outweighs the audit trail."""
    ids = {person.id for person in people}
    found = dict.fromkeys(m.merge_id for person in people for m in person.merges)
    partners = {m.other_customer_id for person in people for m in person.merges} - ids
    for partner in filter(None, (store.get_customer(partner_id) for partner_id in partners)):
        for entry in partner.merges:
            if entry.merge_id in found:
                continue
            record = store.get_merge(entry.merge_id)
            if record is not None and any(
                m.other_customer_id in ids
                for snapshot in (record.survivor_before, record.absorbed_before) for m in snapshot.merges
            ):
                found[entry.merge_id] = None
    return tuple(found)


def _person(store: Store, customer: Customer) -> list[Customer]:
    """The customer followed by every customer it absorbed that still exists."""
    absorbed = [c for customer_id in customer.merged_from if (c := store.get_customer(customer_id)) is not None]
    return [customer, *absorbed]


def _customer(store: Store, customer_id: str) -> Customer:
    customer = store.get_customer(customer_id)
    if customer is None:
        raise NotFoundError(f"no customer {customer_id}")
    return customer


def _with_raw(contact: Contact | None, blobs: BlobStore) -> Contact:
    if contact is None:
        raise TransientError("a contact disappeared during the export; export again")
    if isinstance(contact.raw, dict) and "$blob" in contact.raw:
        contact.raw = json.loads(blobs.get(contact.raw["$blob"]))
    return contact
