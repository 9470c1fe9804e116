"""Data-subject rights: export everything held about a customer, and erase it (GDPR Art. 15, 17).

Both find the customer's data by key only: the customer record, its timeline (contact ids), each
contact's partition (deliveries) and each case's partition (external refs). Erasure sends the
`customer.erased` event first and erases after, so an interrupted erasure is simply repeated.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from chalicelib.adapters.blobs.base import BlobStore
from chalicelib.adapters.queue.base import OutgoingMessage, Queue
from chalicelib.adapters.store.base import Erasure, Store
from chalicelib.domain.ids import delivery_id, digest_id, group_id
from chalicelib.domain.models import Contact, CustomerEvent, message_dedupe_key
from chalicelib.errors import NotFoundError, TransientError

#: Dedupe tombstones outlive every provider's retry horizon (WhatsApp: 7 days) by far.
TOMBSTONE_DAYS = 30
_PAGE = 100


def export_customer(store: Store, blobs: BlobStore, customer_id: str, *, now: datetime) -> dict:
    """Everything held about the customer, as JSON-ready data. Raises `NotFoundError`."""
    customer = _customer(store, customer_id)
    contacts = [_with_raw(store.get_contact(c.id), blobs) for c in _all_contacts(store, customer_id)]
    case_ids = list(dict.fromkeys(c.case_id for c in contacts))
    cases = [case for case_id in case_ids if (case := store.get_case(case_id)) is not None]
    return {
        "exported_at": now.isoformat().replace("+00:00", "Z"),
        "customer": customer.model_dump(mode="json"),
        "contacts": [c.model_dump(mode="json") for c in contacts],
        "cases": [c.model_dump(mode="json") for c in cases],
    }


def erase_customer(
    store: Store, blobs: BlobStore, delivery_queue: Queue, customer_id: str, *, now: datetime,
    event_destinations: list[str],
) -> dict:
    """Erase the customer everywhere the hub holds data, after queueing `customer.erased` for the
    destinations that take customer events. Idempotent. Raises `NotFoundError`."""
    customer = store.get_customer(customer_id)
    if customer is None:
        if store.is_erased(customer_id):
            return {"customer_id": customer_id, "status": "erased"}
        raise NotFoundError(f"no customer {customer_id}")
    contacts = list(_all_contacts(store, customer_id))
    event_id = digest_id("evt", f"customer.erased:{customer_id}")
    if event_destinations:
        delivery_queue.send([
            OutgoingMessage(
                body=CustomerEvent(
                    event_id=event_id, delivery_id=delivery_id(event_id, destination), destination=destination,
                    event_type="customer.erased", customer_id=customer_id, occurred_at=now,
                ).model_dump_json(),
                group=group_id(f"{destination}:{customer_id}"),
                dedupe_id=delivery_id(event_id, destination),
            )
            for destination in event_destinations
        ])
    for contact in contacts:
        if isinstance(contact.raw, dict) and "$blob" in contact.raw:
            blobs.delete(contact.raw["$blob"])
    erasure = Erasure(
        customer_id=customer_id,
        identifier_keys=tuple(i.key for i in customer.identifiers),
        contact_ids=tuple(c.id for c in contacts),
        case_ids=tuple(dict.fromkeys(c.case_id for c in contacts)),
        thread_keys=tuple(dict.fromkeys(k for c in contacts for k in c.thread_keys)),
        dedupe_keys=tuple(message_dedupe_key(c.provider, c.provider_message_id) for c in contacts),
        erased_at=now,
        tombstone_expires_at=now + timedelta(days=TOMBSTONE_DAYS),
    )
    store.erase_customer(erasure)
    return {"customer_id": customer_id, "status": "erased", "contacts": len(contacts), "cases": len(erasure.case_ids)}


def _customer(store: Store, customer_id: str):
    customer = store.get_customer(customer_id)
    if customer is None:
        raise NotFoundError(f"no customer {customer_id}")
    return customer


def _all_contacts(store: Store, customer_id: str):
    cursor = None
    while True:
        page = store.list_contacts(customer_id, limit=_PAGE, cursor=cursor)
        yield from page.items
        if page.cursor is None:
            return
        cursor = page.cursor


def _with_raw(contact: Contact | None, blobs: BlobStore) -> Contact:
    if contact is None:
        raise TransientError("a contact disappeared during the export; export again")
    if isinstance(contact.raw, dict) and "$blob" in contact.raw:
        contact.raw = json.loads(blobs.get(contact.raw["$blob"]))
    return contact
