"""The store contract: every Store implementation (SQLite, DynamoDB under moto) passes these."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from chalicelib.adapters.store.base import ContactCommit, IdentifierTakenError
from chalicelib.domain.identifiers import Identifier, IdentifierKind
from chalicelib.domain.ids import new_id
from chalicelib.domain.models import (
    Case,
    CaseSummary,
    Channel,
    Contact,
    ContentType,
    Customer,
    Delivery,
    DeliveryStatus,
    Party,
    Resolution,
    StatusEvent,
    UnhandledEvent,
)
from chalicelib.errors import ConcurrentUpdateError, StoreUnavailableError

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
WEEK = timedelta(days=7)


def phone(number: str) -> Identifier:
    return Identifier(kind=IdentifierKind.PHONE, value=number)


def email(address: str) -> Identifier:
    return Identifier(kind=IdentifierKind.EMAIL, value=address)


def make_customer(*identifiers: Identifier, customer_id: str | None = None) -> Customer:
    return Customer(id=customer_id or new_id("cus"), identifiers=list(identifiers), created_at=T0, updated_at=T0)


def make_case(customer: Customer, *, contact_count: int = 1) -> Case:
    return Case(
        id=new_id("cas", millis=int(T0.timestamp() * 1000)),
        customer_id=customer.id,
        opened_at=T0,
        last_activity_at=T0,
        contact_count=contact_count,
        channels=[Channel.SMS],
    )


def make_contact(customer: Customer, case: Case, *, at: datetime = T0, text: str = "hello") -> Contact:
    contact_id = new_id("con", millis=int(at.timestamp() * 1000))
    return Contact(
        id=contact_id,
        provider="twilio",
        channel=Channel.SMS,
        provider_message_id=f"SM{contact_id[-12:]}",
        account="+15550001111",
        sender=Party(identifiers=customer.identifiers, display_name="Ada"),
        received_at=at,
        content_type=ContentType.TEXT,
        text=text,
        customer_id=customer.id,
        case_id=case.id,
        resolution=Resolution(customer_id=customer.id, created_customer=False, rule="identifier"),
        raw={"Body": text, "NumMedia": "0", "price": 0.0075},
    )


def commit_for(contact: Contact, case: Case, customer: Customer, **extra) -> ContactCommit:
    """A commit of `customer` as read (it writes the next version)."""
    fields = {
        "dedupe_key": f"msg:{contact.provider}:{contact.provider_message_id}",
        "dedupe_expires_at": T0 + WEEK,
        "committed_at": T0,
        **extra,
    }
    return ContactCommit(
        contact=contact, case=case, customer=customer.model_copy(update={"version": customer.version + 1}), **fields
    )


def commit(store, contact: Contact, case: Case, customer: Customer) -> Customer:
    """Commit and return the customer as now stored, for the next commit to build on."""
    prepared = commit_for(contact, case, customer)
    store.commit_contact(prepared)
    return prepared.customer


def status(message_id: str, value: str, *, minute: int) -> StatusEvent:
    return StatusEvent(
        provider="twilio",
        channel=Channel.SMS,
        provider_message_id=message_id,
        status=value,
        occurred_at=T0 + timedelta(minutes=minute),
        received_at=T0 + timedelta(minutes=minute),
    )


# --- dedupe: the message's first read, the commit's conditional done marker --------------------


def finish(store, key: str, *, expires_at: datetime, at: datetime = T0) -> None:
    """Process a message to completion under `key`, as the pipeline does: one committed contact."""
    customer = make_customer()
    store.create_customer(customer)
    case = make_case(customer)
    store.commit_contact(commit_for(make_contact(customer, case), case, customer, dedupe_key=key,
                                    dedupe_expires_at=expires_at, committed_at=at))


def done(store, key: str, now: datetime = T0) -> bool:
    return store.begin(key, now=now).done


def test_a_new_key_is_not_done_and_reading_it_takes_nothing(store):
    assert not done(store, "msg:twilio:SM1")
    # No lease: a second read (another attempt) finds the key just as new.
    assert not done(store, "msg:twilio:SM1", T0 + timedelta(seconds=1))


def test_a_finished_key_is_done_for_every_later_read(store):
    finish(store, "k", expires_at=T0 + WEEK)
    assert done(store, "k", T0 + timedelta(seconds=1))
    assert done(store, "k", T0 + timedelta(days=6))
    assert not done(store, "other")


def test_commit_contact_marks_the_dedupe_key_done(store):
    customer = make_customer(phone("+4915112345678"))
    store.create_customer(customer)
    case = make_case(customer)
    commit = commit_for(make_contact(customer, case), case, customer)
    assert not done(store, commit.dedupe_key)
    store.commit_contact(commit)
    assert done(store, commit.dedupe_key, T0 + timedelta(hours=2))


def test_a_done_marker_counts_until_its_expiry_and_not_after(store):
    finish(store, "k", expires_at=T0 + WEEK)
    assert done(store, "k", T0 + WEEK - timedelta(minutes=1))
    # Past expiry the record is gone in effect (TTL may delete it late): the key is new again,
    # and a commit under it lands.
    assert not done(store, "k", T0 + WEEK + timedelta(minutes=1))
    finish(store, "k", expires_at=T0 + 2 * WEEK, at=T0 + WEEK + timedelta(minutes=1))
    assert done(store, "k", T0 + WEEK + timedelta(minutes=2))


def test_begin_reads_the_identifiers_owners_with_the_done_marker(store):
    ada = make_customer(phone("+4915112345678"), email("ada@example.com"))
    store.create_customer(ada)
    finish(store, "msg:twilio:SM1", expires_at=T0 + WEEK)

    fresh = store.begin("msg:twilio:SM2", now=T0, identifiers=[phone("+4915112345678"), phone("+4915100000000"),
                                                                phone("+4915112345678")])
    assert (fresh.done, fresh.customer_ids, fresh.customer) == (False, {"phone:+4915112345678": ada.id}, None)
    assert store.begin("msg:twilio:SM1", now=T0, identifiers=ada.identifiers).done


def test_begin_reads_the_customer_with_the_done_marker(store):
    ada = make_customer(phone("+4915112345678"))
    store.create_customer(ada)

    fresh = store.begin("msg:twilio:SM2", now=T0, customer_id=ada.id)
    assert (fresh.done, fresh.customer_ids, fresh.customer) == (False, {}, ada)
    assert store.begin("msg:twilio:SM2", now=T0, customer_id="cus_missing").customer is None


def test_begin_reads_many_identifiers_in_one_go(store):
    people = [make_customer(phone(f"+49151000{n:05d}")) for n in range(120)]
    for person in people:
        store.create_customer(person)

    found = store.begin("msg:twilio:SM1", now=T0, identifiers=[p.identifiers[0] for p in people])
    assert found.customer_ids == {p.identifiers[0].key: p.id for p in people}


def test_two_commits_of_one_message_land_once(store):
    """Two attempts at one message never both commit: the done marker is conditional. (Two
    customers here, so that only the marker can stop the second.)"""
    ada, bob = make_customer(phone("+4915112345678")), make_customer(phone("+4915187654321"))
    store.create_customer(ada)
    store.create_customer(bob)
    ada_case, bob_case = make_case(ada), make_case(bob)
    winner, loser = make_contact(ada, ada_case), make_contact(bob, bob_case, at=T0 + timedelta(seconds=1))
    store.commit_contact(commit_for(winner, ada_case, ada, dedupe_key="msg:twilio:SM1"))

    with pytest.raises(ConcurrentUpdateError):
        store.commit_contact(commit_for(loser, bob_case, bob, dedupe_key="msg:twilio:SM1",
                                        committed_at=T0 + timedelta(seconds=1)))

    assert store.get_contact(loser.id) is None
    assert store.get_case(bob_case.id) is None
    assert store.get_customer(bob.id).version == 0
    assert [c.id for c in store.list_contacts(ada.id, limit=10).items] == [winner.id]
    assert done(store, "msg:twilio:SM1", T0 + timedelta(seconds=2))


def test_an_erasures_done_markers_outlive_the_commits_and_keep_a_late_retry_from_committing(store):
    from chalicelib.adapters.store.base import Erasure

    finish(store, "msg:twilio:SM1", expires_at=T0 + WEEK)
    gone = make_customer()
    store.create_customer(gone)
    store.erase_customer(Erasure(customer_id=gone.id, identifier_keys=(), contact_ids=(), case_ids=(), thread_keys=(),
                                 dedupe_keys=("msg:twilio:SM1",), merge_ids=(), erased_at=T0,
                                 tombstone_expires_at=T0 + timedelta(days=3650)))
    late = T0 + timedelta(days=30)
    assert done(store, "msg:twilio:SM1", late)
    with pytest.raises(ConcurrentUpdateError):
        finish(store, "msg:twilio:SM1", expires_at=late + WEEK, at=late)


# --- customers -----------------------------------------------------------------------------------


def test_create_customer_round_trips_and_links_its_identifiers(store):
    customer = make_customer(phone("+4915112345678"), email("ada@example.com"))
    customer.attributes = {}
    store.create_customer(customer)
    assert store.get_customer(customer.id) == customer
    found = store.find_customer_ids([phone("+4915112345678"), email("ada@example.com"), phone("+4915199999999")])
    assert found == {"phone:+4915112345678": customer.id, "email:ada@example.com": customer.id}


def test_find_customer_ids_of_nothing_or_strangers_is_empty(store):
    assert store.find_customer_ids([]) == {}
    assert store.find_customer_ids([phone("+4915100000000")]) == {}


def test_find_customer_ids_maps_each_identifier_to_its_own_customer(store):
    ada = make_customer(phone("+4915111111111"))
    bob = make_customer(phone("+4915122222222"))
    store.create_customer(ada)
    store.create_customer(bob)
    found = store.find_customer_ids([phone("+4915111111111"), phone("+4915122222222"), phone("+4915111111111")])
    assert found == {"phone:+4915111111111": ada.id, "phone:+4915122222222": bob.id}


def test_get_customer_of_an_unknown_id_is_none(store):
    assert store.get_customer("cus_unknown") is None


def test_create_customer_with_a_taken_identifier_writes_nothing(store):
    owner = make_customer(phone("+4915111111111"), email("ada@example.com"))
    store.create_customer(owner)
    loser = make_customer(email("new@example.com"), phone("+4915111111111"))
    with pytest.raises(IdentifierTakenError) as raised:
        store.create_customer(loser)
    assert raised.value.identifier == "phone:+4915111111111"
    assert raised.value.customer_id == owner.id
    assert store.get_customer(loser.id) is None
    assert store.find_customer_ids([email("new@example.com")]) == {}
    assert store.find_customer_ids([phone("+4915111111111")]) == {"phone:+4915111111111": owner.id}


# --- contacts and cases --------------------------------------------------------------------------


def test_commit_contact_writes_contact_case_and_customer(store):
    customer = make_customer(phone("+4915112345678"))
    store.create_customer(customer)
    case = make_case(customer)
    contact = make_contact(customer, case)
    updated = customer.model_copy(
        update={"open_case": CaseSummary(id=case.id, opened_at=T0, last_activity_at=T0, contact_count=1)}
    )
    store.commit_contact(commit_for(contact, case, updated))

    assert store.get_contact(contact.id) == contact
    assert store.get_case(case.id) == case
    assert store.get_customer(customer.id) == updated.model_copy(update={"version": 1})


def test_a_commit_from_a_stale_read_fails_and_writes_nothing(store):
    customer = make_customer(phone("+4915112345678"))
    store.create_customer(customer)
    case = make_case(customer)
    first = make_contact(customer, case)
    second = make_contact(customer, case, at=T0 + timedelta(seconds=1))
    store.commit_contact(commit_for(first, case, customer))

    with pytest.raises(ConcurrentUpdateError):
        store.commit_contact(commit_for(second, case, customer))  # read version 0, stored is now 1

    assert store.get_contact(second.id) is None
    assert [c.id for c in store.list_contacts(customer.id, limit=10).items] == [first.id]
    assert not done(store, f"msg:twilio:{second.provider_message_id}")
    assert store.get_customer(customer.id).version == 1


def test_commit_links_new_identifiers_and_thread_keys(store):
    customer = make_customer(phone("+4915112345678"))
    store.create_customer(customer)
    case = make_case(customer)
    contact = make_contact(customer, case)
    new_email = email("ada@example.com")
    linked = customer.model_copy(update={"identifiers": [*customer.identifiers, new_email]})

    store.commit_contact(commit_for(contact, case, linked, new_identifiers=(new_email,), thread_keys=("chat:s1",)))

    assert store.find_customer_ids([new_email]) == {new_email.key: customer.id}
    assert store.find_threads(["chat:s1", "chat:unknown"]) == {"chat:s1": case.id}
    assert new_email in store.get_customer(customer.id).identifiers


def test_an_identifier_owned_by_another_customer_fails_the_commit(store):
    taken = email("shared@example.com")
    other = make_customer(taken)
    store.create_customer(other)
    customer = make_customer(phone("+4915112345678"))
    store.create_customer(customer)
    case = make_case(customer)
    contact = make_contact(customer, case)

    with pytest.raises(IdentifierTakenError) as error:
        store.commit_contact(commit_for(contact, case, customer, new_identifiers=(taken,), thread_keys=("t",)))

    assert (error.value.identifier, error.value.customer_id) == (taken.key, other.id)
    assert store.get_contact(contact.id) is None
    assert store.find_threads(["t"]) == {}
    assert store.get_customer(customer.id).version == 0


def test_update_customer_is_guarded_and_writes_cases(store):
    customer = make_customer(phone("+4915112345678"))
    store.create_customer(customer)
    case = make_case(customer)
    renamed = customer.model_copy(update={"version": 1, "open_case": None})

    store.update_customer(renamed, cases=(case,))
    with pytest.raises(ConcurrentUpdateError):
        store.update_customer(renamed)

    assert store.get_customer(customer.id) == renamed
    assert store.get_case(case.id) == case


def test_list_contacts_pages_newest_first_with_a_cursor(store):
    customer = make_customer(phone("+4915112345678"))
    other = make_customer(phone("+4915187654321"))
    store.create_customer(customer)
    store.create_customer(other)
    case = make_case(customer)
    ids = []
    for minute in range(5):
        contact = make_contact(customer, case, at=T0 + timedelta(minutes=minute), text=f"m{minute}")
        customer = commit(store, contact, case, customer)
        ids.append(contact.id)
    other_case = make_case(other)
    store.commit_contact(commit_for(make_contact(other, other_case), other_case, other))

    newest_first = list(reversed(ids))
    first = store.list_contacts(customer.id, limit=2)
    assert [c.id for c in first.items] == newest_first[:2]
    assert first.cursor is not None
    second = store.list_contacts(customer.id, limit=2, cursor=first.cursor)
    assert [c.id for c in second.items] == newest_first[2:4]
    third = store.list_contacts(customer.id, limit=2, cursor=second.cursor)
    assert [c.id for c in third.items] == newest_first[4:]
    assert third.cursor is None
    assert [c.text for c in first.items] == ["m4", "m3"]


def test_list_contacts_on_an_exact_page_boundary_has_no_next_page(store):
    customer = make_customer(phone("+4915112345678"))
    store.create_customer(customer)
    case = make_case(customer)
    for minute in range(4):
        contact = make_contact(customer, case, at=T0 + timedelta(minutes=minute))
        customer = commit(store, contact, case, customer)
    first = store.list_contacts(customer.id, limit=2)
    second = store.list_contacts(customer.id, limit=2, cursor=first.cursor)
    assert len(second.items) == 2
    assert second.cursor is None
    assert store.list_contacts("cus_nobody", limit=5).items == []


def test_get_contact_includes_its_deliveries_by_destination(store):
    customer = make_customer(phone("+4915112345678"))
    store.create_customer(customer)
    case = make_case(customer)
    contact = make_contact(customer, case)
    store.commit_contact(commit_for(contact, case, customer))
    zendesk = Delivery(id="dlv_z", contact_id=contact.id, destination="zendesk", updated_at=T0)
    hubspot = Delivery(id="dlv_h", contact_id=contact.id, destination="hubspot", updated_at=T0)
    store.put_delivery(zendesk)
    store.put_delivery(hubspot)
    delivered = zendesk.model_copy(
        update={"status": DeliveryStatus.DELIVERED, "attempts": 1, "external_ref": "ticket-42", "delivered_at": T0}
    )
    store.put_delivery(delivered)

    assert store.get_delivery(contact.id, "zendesk") == delivered
    assert store.get_delivery(contact.id, "hubspot") == hubspot
    assert store.get_delivery(contact.id, "salesforce") is None
    fetched = store.get_contact(contact.id)
    assert fetched.deliveries == [hubspot, delivered]
    assert fetched.model_copy(update={"deliveries": []}) == contact


def test_unknown_contact_and_case_are_none(store):
    assert store.get_contact("con_unknown") is None
    assert store.get_case("cas_unknown") is None


def test_get_case_includes_external_refs_that_survive_a_later_commit(store):
    customer = make_customer(phone("+4915112345678"))
    store.create_customer(customer)
    case = make_case(customer)
    customer = commit(store, make_contact(customer, case), case, customer)
    store.put_case_ref(case.id, "zendesk", "ticket-1")
    store.put_case_ref(case.id, "hubspot", "note-7")
    store.put_case_ref(case.id, "zendesk", "ticket-2")

    # A later contact commits the case again without refs (the worker never reads them back).
    later_case = case.model_copy(update={"contact_count": 2, "last_activity_at": T0 + timedelta(minutes=5)})
    store.commit_contact(commit_for(make_contact(customer, later_case, at=T0 + timedelta(minutes=5)), later_case,
                                    customer))

    fetched = store.get_case(case.id)
    assert {d: r.ref for d, r in fetched.external_refs.items()} == {"zendesk": "ticket-2", "hubspot": "note-7"}
    assert fetched.external_refs["zendesk"].destination == "zendesk"
    assert fetched.contact_count == 2
    assert fetched.model_copy(update={"external_refs": {}}) == later_case


# --- status events -------------------------------------------------------------------------------


def test_record_status_stores_each_status_once(store):
    event = status("SM1", "delivered", minute=1)
    assert store.record_status(event, expires_at=T0 + timedelta(days=400)) is True
    assert store.record_status(event, expires_at=T0 + timedelta(days=400)) is False
    assert store.record_status(status("SM1", "read", minute=2), expires_at=T0 + timedelta(days=400)) is True
    assert [s.status for s in store.list_statuses("twilio", "SM1")] == ["delivered", "read"]


def test_list_statuses_is_in_recording_order_and_per_message(store):
    expiry = datetime.now(timezone.utc) + timedelta(days=1)
    # Recorded sent → delivered → read: neither alphabetical nor reverse-alphabetical order.
    for minute, value in enumerate(["sent", "delivered", "read"]):
        assert store.record_status(status("SM1", value, minute=minute), expires_at=expiry)
    store.record_status(status("SM2", "failed", minute=0), expires_at=expiry)
    listed = store.list_statuses("twilio", "SM1")
    assert [s.status for s in listed] == ["sent", "delivered", "read"]
    assert listed[0] == status("SM1", "sent", minute=0)
    assert store.list_statuses("twilio", "SM-unknown") == []


def test_an_expired_status_record_can_be_recorded_again(store):
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    future = datetime.now(timezone.utc) + timedelta(days=1)
    assert store.record_status(status("SM1", "sent", minute=0), expires_at=past) is True
    assert store.record_status(status("SM1", "sent", minute=0), expires_at=future) is True
    assert store.record_status(status("SM1", "sent", minute=0), expires_at=future) is False


# --- unhandled webhook items ---------------------------------------------------------------------


def unhandled(provider: str, n: int, *, day: int = 4) -> UnhandledEvent:
    at = datetime(2026, 12, day, 9, 0, n, tzinfo=timezone.utc)
    return UnhandledEvent.of(provider, f"entry[{n}]: field 'new' is not handled", {"n": n, "ü": ["x"]}, at)


def test_unhandled_items_are_kept_once_per_delivery_and_listed_by_day_in_arrival_order(store):
    expiry = datetime.now(timezone.utc) + timedelta(days=14)
    items = [unhandled("meta", 3), unhandled("slack", 1), unhandled("meta", 2), unhandled("meta", 1, day=5)]
    for item in items:
        assert store.record_unhandled(item, expires_at=expiry) is True
    # A redelivered queue message: the same item, the same arrival time.
    assert store.record_unhandled(items[0], expires_at=expiry) is False

    page = store.list_unhandled(day=date(2026, 12, 4), limit=10)
    assert [(e.provider, e.raw["n"]) for e in page.items] == [("slack", 1), ("meta", 2), ("meta", 3)]
    assert page.items[1] == items[2] and page.cursor is None
    assert [e.raw["n"] for e in store.list_unhandled(day=date(2026, 12, 4), provider="meta", limit=10).items] == [2, 3]
    assert [e.raw["n"] for e in store.list_unhandled(day=date(2026, 12, 5), limit=10).items] == [1]
    assert store.list_unhandled(day=date(2026, 12, 6), limit=10).items == []


def test_unhandled_items_page_with_a_cursor_and_filter_by_provider(store):
    expiry = datetime.now(timezone.utc) + timedelta(days=14)
    for n in range(7):
        store.record_unhandled(unhandled("meta" if n % 2 else "x", n), expires_at=expiry)
    seen, cursor = [], None
    while True:
        page = store.list_unhandled(day=date(2026, 12, 4), provider="meta", limit=2, cursor=cursor)
        seen += [e.raw["n"] for e in page.items]
        if page.cursor is None:
            break
        cursor = page.cursor
    assert seen == [1, 3, 5]


def test_expired_unhandled_items_are_not_listed(store):
    store.record_unhandled(unhandled("meta", 1), expires_at=datetime.now(timezone.utc) - timedelta(minutes=1))
    store.record_unhandled(unhandled("meta", 2), expires_at=datetime.now(timezone.utc) + timedelta(days=1))
    assert [e.raw["n"] for e in store.list_unhandled(day=date(2026, 12, 4), limit=10).items] == [2]


# --- operations ----------------------------------------------------------------------------------


def test_ping_succeeds_on_a_working_store(store):
    assert store.ping() is None


def test_a_broken_backend_raises_store_unavailable(broken_store):
    with pytest.raises(StoreUnavailableError):
        broken_store.get_customer("cus_1")
    with pytest.raises(StoreUnavailableError):
        done(broken_store, "k")
    with pytest.raises(StoreUnavailableError):
        broken_store.find_customer_ids([phone("+4915112345678")])


# --- erasure -------------------------------------------------------------------------------------


def test_erasure_removes_everything_held_and_leaves_tombstones(store):
    from chalicelib.adapters.store.base import Erasure

    keep = make_customer(phone("+4915199999999"))
    store.create_customer(keep)
    kept_case = make_case(keep)
    kept_contact = make_contact(keep, kept_case)
    commit(store, kept_contact, kept_case, keep)

    ada = make_customer(phone("+4915112345678"), email("ada@example.com"))
    store.create_customer(ada)
    case = make_case(ada)
    first, second = make_contact(ada, case), make_contact(ada, case, at=T0 + timedelta(minutes=1))
    prepared = commit_for(first, case, ada, thread_keys=("chat:ada",))
    store.commit_contact(prepared)
    commit(store, second, case, prepared.customer)
    store.put_delivery(Delivery(id="dlv_a", contact_id=first.id, destination="crm", updated_at=T0))
    store.put_case_ref(case.id, "crm", "ticket-1")

    erasure = Erasure(
        customer_id=ada.id, identifier_keys=tuple(i.key for i in ada.identifiers),
        contact_ids=(first.id, second.id), case_ids=(case.id,), thread_keys=("chat:ada",),
        dedupe_keys=(f"msg:twilio:{first.provider_message_id}", f"msg:twilio:{second.provider_message_id}"),
        merge_ids=(), erased_at=T0, tombstone_expires_at=T0 + timedelta(days=3650),
    )
    store.erase_customer(erasure)
    store.erase_customer(erasure)  # idempotent

    assert store.get_customer(ada.id) is None
    assert store.is_erased(ada.id) and not store.is_erased(keep.id)
    assert store.find_customer_ids(ada.identifiers) == {}
    assert store.get_contact(first.id) is None and store.get_contact(second.id) is None
    assert store.list_contacts(ada.id, limit=10).items == []
    assert store.get_case(case.id) is None
    assert store.get_delivery(first.id, "crm") is None
    assert store.find_threads(["chat:ada"]) == {}
    assert done(store, f"msg:twilio:{first.provider_message_id}", T0 + timedelta(days=30))
    # Everybody else is untouched.
    assert store.get_customer(keep.id) is not None
    assert store.get_contact(kept_contact.id) is not None
    assert store.find_customer_ids(keep.identifiers) == {keep.identifiers[0].key: keep.id}
    # The identifiers are free again: a new contact from the same person makes a new customer.
    again = make_customer(phone("+4915112345678"))
    store.create_customer(again)
    assert store.find_customer_ids(again.identifiers) == {"phone:+4915112345678": again.id}


def test_learned_blocks_are_recorded_once_and_never_taken_from_a_customer(store):
    from chalicelib.domain.identity_rules import BLOCKED_OWNER

    account = Identifier(kind=IdentifierKind.WHATSAPP_USER, value="DE.1")
    customer = make_customer(phone("+4915112345678"))
    store.create_customer(customer)
    case = make_case(customer)
    first = commit_for(make_contact(customer, case), case, customer, blocked_identifiers=(account,))
    store.commit_contact(first)
    second_contact = make_contact(customer, case, at=T0 + timedelta(minutes=1))
    store.commit_contact(commit_for(second_contact, case, first.customer, blocked_identifiers=(account,)))

    assert store.find_customer_ids([account]) == {account.key: BLOCKED_OWNER}
    owned = make_customer(email("linked@example.com"))
    store.create_customer(owned)
    other_case = make_case(owned)
    with pytest.raises(IdentifierTakenError):
        store.commit_contact(commit_for(make_contact(owned, other_case), other_case, owned,
                                        blocked_identifiers=(owned.identifiers[0],)))
    assert store.find_customer_ids(owned.identifiers) == {owned.identifiers[0].key: owned.id}


# --- merges --------------------------------------------------------------------------------------


def person_with_open_case(store, *identifiers: Identifier, created: datetime = T0, activity: datetime = T0):
    """A stored customer with one contact in an open case; returns (customer as stored, case, contact)."""
    from chalicelib.service.cases import summarize

    customer = make_customer(*identifiers).model_copy(update={"created_at": created})
    store.create_customer(customer)
    case = make_case(customer).model_copy(update={"last_activity_at": activity})
    contact = make_contact(customer, case, at=activity)
    stored = commit(store, contact, case, customer.model_copy(update={"open_case": summarize(case)}))
    return stored, case, contact


def merges_service(store):
    from chalicelib.hubconfig import parse_config
    from chalicelib.service.merge import Merges

    return Merges.of(store, parse_config("{}"))


def test_commit_merge_moves_identifiers_and_writes_both_customers_and_the_record_atomically(store):
    from chalicelib.adapters.store.base import IdentifierMove, MergeCommit
    from chalicelib.domain.merging import merge

    ada, _, _ = person_with_open_case(store, phone("+4915112345678"))
    twin, _, _ = person_with_open_case(store, email("ada@example.com"), created=T0 + timedelta(hours=1))
    pair = merge(ada, twin, now=T0, trigger="api:test", matched=[], rules=merges_service(store).survivorship)
    moves = (IdentifierMove("email:ada@example.com", twin.id, ada.id),)

    # A stale version of either customer, or an identifier that moved meanwhile, writes nothing.
    stale = pair.survivor.model_copy(update={"version": pair.survivor.version + 5})
    for commit_ in (
        MergeCommit(pair.record, (stale, pair.absorbed), moves),
        MergeCommit(pair.record, (pair.survivor, pair.absorbed), (IdentifierMove("email:ada@example.com", "cus_x", ada.id),)),
    ):
        with pytest.raises(ConcurrentUpdateError):
            store.commit_merge(commit_)
        assert store.get_merge(pair.record.id) is None
        assert store.get_customer(twin.id).merged_into is None
        assert store.find_customer_ids([email("ada@example.com")]) == {"email:ada@example.com": twin.id}

    store.commit_merge(MergeCommit(pair.record, (pair.survivor, pair.absorbed), moves))

    assert store.find_customer_ids([email("ada@example.com")]) == {"email:ada@example.com": ada.id}
    assert store.get_customer(twin.id).merged_into == ada.id
    assert store.get_customer(ada.id).merged_from == [twin.id]
    assert store.get_merge(pair.record.id) == pair.record
    assert store.get_merge("mrg_nope") is None


def test_a_merge_joins_timelines_and_identifiers_and_the_more_recent_open_case_continues(store):
    from chalicelib.service.timeline import timeline_page

    ada, ada_case, ada_contact = person_with_open_case(store, phone("+4915112345678"))
    twin, twin_case, twin_contact = person_with_open_case(
        store, email("ada@example.com"), created=T0 + timedelta(hours=1), activity=T0 + timedelta(hours=2)
    )

    outcome = merges_service(store).merge(twin.id, ada.id, now=T0 + timedelta(hours=3), trigger="api:test")

    survivor = store.get_customer(ada.id)
    assert outcome.customer_id == ada.id and outcome.record.absorbed_id == twin.id
    assert {i.key for i in survivor.identifiers} == {"phone:+4915112345678", "email:ada@example.com"}
    assert [c.id for c in timeline_page(store, survivor, limit=10).items] == [twin_contact.id, ada_contact.id]
    # The twin's case was active more recently: it continues as the survivor's, Ada's is closed.
    assert survivor.open_case.id == twin_case.id
    assert store.get_case(twin_case.id).customer_id == ada.id
    closed = store.get_case(ada_case.id)
    assert (closed.status, closed.close_reason) == ("closed", "merged")
    assert outcome.record.case_owners == {twin_case.id: twin.id, ada_case.id: ada.id}
    # Merging again is a no-op that names the merge already made.
    again = merges_service(store).merge(ada.id, twin.id, now=T0 + timedelta(hours=4), trigger="api:test")
    assert (again.existing, again.record.id) == (True, outcome.record.id)


def test_the_timeline_pages_across_merged_partitions_newest_first_without_gaps(store):
    from chalicelib.service.timeline import timeline_page

    ada, ada_case, first = person_with_open_case(store, phone("+4915112345678"))
    twin, _, _ = person_with_open_case(store, email("ada@example.com"), created=T0 + timedelta(hours=1))
    stored = store.get_customer(ada.id)
    for minute in (3, 5):
        stored = commit(store, make_contact(stored, ada_case, at=T0 + timedelta(minutes=minute)), ada_case, stored)
    twin_stored = store.get_customer(twin.id)
    twin_case = make_case(twin_stored)
    for minute in (2, 4, 6):
        twin_stored = commit(store, make_contact(twin_stored, twin_case, at=T0 + timedelta(minutes=minute)),
                             twin_case, twin_stored)
    merges_service(store).merge(ada.id, twin.id, now=T0 + timedelta(hours=3), trigger="api:test")
    survivor = store.get_customer(ada.id)
    everything = sorted(
        [c.id for c in store.list_contacts(ada.id, limit=50).items + store.list_contacts(twin.id, limit=50).items],
        reverse=True,
    )

    seen, cursor = [], None
    while True:
        page = timeline_page(store, survivor, limit=2, cursor=cursor)
        seen += [c.id for c in page.items]
        if page.cursor is None:
            break
        cursor = page.cursor

    assert len(everything) == 7 and seen == everything


def test_unmerge_restores_both_customers_identifiers_timelines_and_cases(store):
    from chalicelib.service.timeline import timeline_page

    ada, ada_case, ada_contact = person_with_open_case(store, phone("+4915112345678"))
    twin, twin_case, twin_contact = person_with_open_case(
        store, email("ada@example.com"), created=T0 + timedelta(hours=1), activity=T0 + timedelta(hours=2)
    )
    service = merges_service(store)
    merged = service.merge(ada.id, twin.id, now=T0 + timedelta(hours=3), trigger="api:test").record

    record = service.unmerge(twin.id, now=T0 + timedelta(hours=4), actor="api:ops")
    again = service.unmerge(ada.id, merge_id=merged.id, now=T0 + timedelta(hours=5), actor="api:ops")

    assert record.id == merged.id and record.reverted_at == T0 + timedelta(hours=4)
    assert again == record  # idempotent
    restored_ada, restored_twin = store.get_customer(ada.id), store.get_customer(twin.id)
    assert restored_twin.merged_into is None and restored_ada.merged_from == []
    assert store.find_customer_ids([email("ada@example.com"), phone("+4915112345678")]) == {
        "email:ada@example.com": twin.id, "phone:+4915112345678": ada.id,
    }
    assert [c.id for c in timeline_page(store, restored_ada, limit=10).items] == [ada_contact.id]
    assert [c.id for c in timeline_page(store, restored_twin, limit=10).items] == [twin_contact.id]
    # Each case is back with its customer; the one the merge closed is open again.
    assert (restored_ada.open_case.id, restored_twin.open_case.id) == (ada_case.id, twin_case.id)
    assert store.get_case(twin_case.id).customer_id == twin.id
    assert store.get_case(ada_case.id).status == "open"
    assert store.get_merge(merged.id).reverted_by == "api:ops"


def test_unmerge_explains_what_it_cannot_undo(store):
    from chalicelib.errors import ConflictError, NotFoundError

    ada, _, _ = person_with_open_case(store, phone("+4915112345678"))
    twin, _, _ = person_with_open_case(store, email("ada@example.com"), created=T0 + timedelta(hours=1))
    elder, _, _ = person_with_open_case(store, email("elder@example.com"), created=T0 - timedelta(days=1))
    service = merges_service(store)

    with pytest.raises(ConflictError, match="has no merge to undo"):
        service.unmerge(ada.id, now=T0, actor="api:ops")
    first = service.merge(ada.id, twin.id, now=T0 + timedelta(hours=1), trigger="api:test").record
    service.merge(elder.id, ada.id, now=T0 + timedelta(hours=2), trigger="api:test")
    with pytest.raises(ConflictError, match="unmerge that first"):
        service.unmerge(twin.id, merge_id=first.id, now=T0 + timedelta(hours=3), actor="api:ops")
    with pytest.raises(NotFoundError):
        service.unmerge(elder.id, merge_id=first.id, now=T0 + timedelta(hours=3), actor="api:ops")
    with pytest.raises(NotFoundError):
        service.unmerge("cus_nope", now=T0, actor="api:ops")


def test_merge_protection_keeps_customers_with_different_external_ids_apart(store):
    ada, _, _ = person_with_open_case(store, Identifier(kind=IdentifierKind.EXTERNAL, value="CRM-1"))
    other, _, _ = person_with_open_case(store, Identifier(kind=IdentifierKind.EXTERNAL, value="CRM-2"))

    outcome = merges_service(store).merge(ada.id, other.id, now=T0, trigger="api:test")

    assert outcome.record is None and "merge_protection" in outcome.refusal
    assert store.get_customer(other.id).merged_into is None


def test_erasure_removes_merge_records(store):
    from chalicelib.adapters.store.base import Erasure

    ada, _, _ = person_with_open_case(store, phone("+4915112345678"))
    twin, _, _ = person_with_open_case(store, email("ada@example.com"), created=T0 + timedelta(hours=1))
    record = merges_service(store).merge(ada.id, twin.id, now=T0, trigger="api:test").record

    store.erase_customer(Erasure(
        customer_id=twin.id, identifier_keys=(), contact_ids=(), case_ids=(), thread_keys=(), dedupe_keys=(),
        merge_ids=(record.id,), erased_at=T0, tombstone_expires_at=T0 + WEEK,
    ))

    assert store.get_merge(record.id) is None


def test_merges_are_undone_newest_first(store):
    from chalicelib.errors import ConflictError

    ada, _, _ = person_with_open_case(store, phone("+4915112345678"))
    twin, _, _ = person_with_open_case(store, email("ada@example.com"), created=T0 + timedelta(hours=1))
    third, _, _ = person_with_open_case(store, email("ada@work.example"), created=T0 + timedelta(hours=2))
    service = merges_service(store)
    first = service.merge(ada.id, twin.id, now=T0 + timedelta(hours=3), trigger="api:test").record
    second = service.merge(ada.id, third.id, now=T0 + timedelta(hours=4), trigger="api:test").record

    with pytest.raises(ConflictError, match=second.id):
        service.unmerge(twin.id, now=T0 + timedelta(hours=5), actor="api:ops")
    service.unmerge(third.id, now=T0 + timedelta(hours=5), actor="api:ops")
    service.unmerge(twin.id, now=T0 + timedelta(hours=6), actor="api:ops")

    assert {m.merge_id: m.reverted_at is not None for m in store.get_customer(ada.id).merges} == {
        first.id: True, second.id: True,
    }


def test_customers_an_unmerge_separated_are_not_merged_again_automatically_but_may_be_explicitly(store):
    ada, _, _ = person_with_open_case(store, phone("+4915112345678"))
    twin, _, _ = person_with_open_case(store, email("ada@example.com"), created=T0 + timedelta(hours=1))
    service = merges_service(store)
    service.merge(ada.id, twin.id, now=T0 + timedelta(hours=1), trigger="api:test")
    service.unmerge(twin.id, now=T0 + timedelta(hours=2), actor="api:ops")

    automatic = service.merge(ada.id, twin.id, now=T0 + timedelta(hours=3), trigger="contact:msg:twilio:SM9")
    explicit = service.merge(ada.id, twin.id, now=T0 + timedelta(hours=4), trigger="api:ops", explicit=True)

    assert automatic.record is None and automatic.refusal.startswith("unmerged before")
    assert explicit.record is not None
    assert store.get_customer(ada.id).no_merge_with == []


def test_erasing_after_an_unmerge_leaves_the_case_the_unmerge_gave_back(store):
    from chalicelib.service.gdpr import erase_customer
    from tests.support.fakes import MemoryQueue

    ada, _, _ = person_with_open_case(store, phone("+4915112345678"), activity=T0 - timedelta(hours=1))
    twin, twin_case, _ = person_with_open_case(store, email("ada@example.com"), created=T0 + timedelta(hours=1))
    service = merges_service(store)
    service.merge(ada.id, twin.id, now=T0 + timedelta(hours=2), trigger="api:test")
    # A contact of the merged customer joins the case it adopted from the twin.
    survivor = store.get_customer(ada.id)
    adopted = store.get_case(twin_case.id)
    commit(store, make_contact(survivor, adopted, at=T0 + timedelta(hours=3)), adopted, survivor)
    service.unmerge(twin.id, now=T0 + timedelta(hours=4), actor="api:ops")

    erase_customer(store, _NoBlobs(), MemoryQueue(), ada.id, now=T0 + timedelta(hours=5), event_destinations=[])

    assert store.get_case(twin_case.id) is not None, "the twin's case is the twin's again"
    assert store.get_customer(twin.id).open_case.id == twin_case.id


def test_erasure_removes_later_merge_records_whose_snapshots_hold_the_customer(store):
    from chalicelib.service.gdpr import erase_customer
    from tests.support.fakes import MemoryQueue

    ada, _, _ = person_with_open_case(store, phone("+4915112345678"))
    twin, _, _ = person_with_open_case(store, email("twin@example.com"), created=T0 + timedelta(hours=1))
    third, _, _ = person_with_open_case(store, email("third@example.com"), created=T0 + timedelta(hours=2))
    service = merges_service(store)
    service.merge(ada.id, twin.id, now=T0 + timedelta(hours=3), trigger="api:test")
    later = service.merge(ada.id, third.id, now=T0 + timedelta(hours=4), trigger="api:test").record
    service.unmerge(third.id, now=T0 + timedelta(hours=5), actor="api:ops")
    service.unmerge(twin.id, now=T0 + timedelta(hours=6), actor="api:ops")
    assert "twin@example.com" in later.survivor_before.model_dump_json()

    erase_customer(store, _NoBlobs(), MemoryQueue(), twin.id, now=T0 + timedelta(hours=7), event_destinations=[])

    assert store.get_merge(later.id) is None


def test_a_customer_being_erased_is_never_merged(store):
    from chalicelib.service.commands import mark_erasing

    ada, _, _ = person_with_open_case(store, phone("+4915112345678"))
    twin, _, _ = person_with_open_case(store, email("ada@example.com"), created=T0 + timedelta(hours=1))
    mark_erasing(store, twin.id)

    outcome = merges_service(store).merge(ada.id, twin.id, now=T0, trigger="api:test", explicit=True)

    assert outcome.record is None and outcome.refusal == "a customer is being erased"


class _NoBlobs:
    def delete(self, key: str) -> None:
        raise AssertionError("no contact here has a raw payload in the blob store")


# --- exception queue -------------------------------------------------------------------------------


def test_a_parked_contact_enters_the_exception_queue_in_its_commit_and_leaves_it_once(store):
    from chalicelib.errors import ConflictError

    customer = make_customer(phone("+4915112345678"))
    store.create_customer(customer)
    case = make_case(customer)
    first = make_contact(customer, case)
    first.routing.parked = "unknown sender with attachments (rule r)"
    stored = commit(store, first, case, customer)
    second = make_contact(stored, case, at=T0 + timedelta(minutes=1))
    second.routing.parked = "needs a look (rule r)"
    commit(store, second, case, stored)

    page = store.list_parked(limit=1)
    rest = store.list_parked(limit=1, cursor=page.cursor)

    assert [(p.contact_id, p.reason) for p in page.items + rest.items] == [
        (first.id, "unknown sender with attachments (rule r)"), (second.id, "needs a look (rule r)"),
    ]
    assert rest.cursor is None
    released = first.model_copy(update={"routing": first.routing.model_copy(update={"parked": None, "queue": "fraud"})})
    store.release_parked(released)
    with pytest.raises(ConflictError):
        store.release_parked(released)
    assert [p.contact_id for p in store.list_parked(limit=10).items] == [second.id]
    assert store.get_contact(first.id).routing.queue == "fraud"
    assert store.list_contacts(customer.id, limit=10).items[-1].routing.queue == "fraud", "the timeline copy too"


def test_erasure_takes_the_customers_contacts_out_of_the_exception_queue(store):
    from chalicelib.adapters.store.base import Erasure

    customer = make_customer(phone("+4915112345678"))
    store.create_customer(customer)
    case = make_case(customer)
    contact = make_contact(customer, case)
    contact.routing.parked = "check (rule r)"
    commit(store, contact, case, customer)

    store.erase_customer(Erasure(
        customer_id=customer.id, identifier_keys=(), contact_ids=(contact.id,), case_ids=(case.id,), thread_keys=(),
        dedupe_keys=(), merge_ids=(), erased_at=T0, tombstone_expires_at=T0 + WEEK,
    ))

    assert store.list_parked(limit=10).items == []


# --- dead letters ----------------------------------------------------------------------------------


def test_dead_letters_are_kept_listed_by_destination_and_forgotten(store):
    from chalicelib.domain.models import DeadLetter

    letters = [
        DeadLetter(id=f"dlv_{n}", destination=dest, subject_id=f"ct_{n}", reason=f"vendor said no {n}", attempts=n,
                   dead_at=T0, job='{"kind": "contact"}')
        for n, dest in ((1, "crm"), (2, "zendesk"), (3, "crm"), (4, "crm"))
    ]
    for letter in letters:
        store.put_dead_letter(letter)

    first = store.list_dead_letters(destination="crm", limit=2)
    rest = store.list_dead_letters(destination="crm", limit=2, cursor=first.cursor)
    everything = store.list_dead_letters(limit=10)
    store.delete_dead_letter("dlv_3")
    store.delete_dead_letter("dlv_3")  # idempotent

    assert [l.id for l in first.items + rest.items] == ["dlv_1", "dlv_3", "dlv_4"] and rest.cursor is None
    assert [l.id for l in everything.items] == ["dlv_1", "dlv_2", "dlv_3", "dlv_4"]
    assert store.get_dead_letter("dlv_2") == letters[1]
    assert store.get_dead_letter("dlv_3") is None


# --- dead letters: retention, export and erasure ---------------------------------------------------


def live_until() -> datetime:
    return datetime.now(timezone.utc) + timedelta(days=30)


def dead_letter(n: int, *, customer_id: str | None = None, destination: str = "crm",
                expires_at: datetime | None = None):
    """A dead contact job (filed under `customer_id`), or a customer event's (filed under nobody)."""
    import json

    from chalicelib.domain.models import DeadLetter

    return DeadLetter(id=f"dlv_{n}", destination=destination, subject_id=f"con_{n}", reason=f"vendor said no {n}",
                      attempts=1, dead_at=T0, job=json.dumps({"kind": "contact", "text": f"private {n}"}),
                      customer_id=customer_id, expires_at=expires_at or live_until())


def erasure_of(customer: Customer):
    from chalicelib.adapters.store.base import Erasure

    return Erasure(customer_id=customer.id, identifier_keys=tuple(i.key for i in customer.identifiers), contact_ids=(),
                   case_ids=(), thread_keys=(), dedupe_keys=(), merge_ids=(), erased_at=T0,
                   tombstone_expires_at=T0 + WEEK)


def ada_and_bob_with_dead_letters(store):
    """Two customers, dead letters of both, and one of a customer event (filed under nobody)."""
    ada, bob = make_customer(phone("+4915111111111")), make_customer(phone("+4915122222222"))
    store.create_customer(ada)
    store.create_customer(bob)
    letters = (dead_letter(1, customer_id=ada.id), dead_letter(2, customer_id=bob.id),
               dead_letter(3, customer_id=ada.id, destination="zendesk"), dead_letter(4))
    kept = [store.put_dead_letter(letter) for letter in letters]
    return ada, bob, letters, kept


def test_erasure_removes_the_customers_dead_letters_and_no_others(store):
    ada, _, _, _ = ada_and_bob_with_dead_letters(store)

    store.erase_customer(erasure_of(ada))
    store.erase_customer(erasure_of(ada))  # idempotent

    assert store.get_dead_letter("dlv_1") is None and store.get_dead_letter("dlv_3") is None
    assert [letter.id for letter in store.list_dead_letters(limit=10).items] == ["dlv_2", "dlv_4"]
    assert store.dead_letters_of(ada.id) == []


def test_a_customers_dead_letters_are_found_by_key(store):
    ada, bob, letters, kept = ada_and_bob_with_dead_letters(store)

    assert kept == [True] * 4
    assert store.dead_letters_of(ada.id) == [letters[0], letters[2]]
    assert store.dead_letters_of(bob.id) == [letters[1]]
    assert store.dead_letters_of("cus_nobody") == []


def test_a_dead_letter_of_an_erased_customer_is_not_kept(store):
    ada = make_customer(phone("+4915111111111"))
    store.create_customer(ada)
    store.erase_customer(erasure_of(ada))

    # A delivery that was in flight while the customer was erased dies afterwards.
    assert store.put_dead_letter(dead_letter(1, customer_id=ada.id)) is False
    assert store.put_dead_letter(dead_letter(2)) is True

    assert store.get_dead_letter("dlv_1") is None
    assert [letter.id for letter in store.list_dead_letters(limit=10).items] == ["dlv_2"]


def test_expired_dead_letters_are_neither_listed_nor_read(store):
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    store.put_dead_letter(dead_letter(1, customer_id="cus_a", expires_at=past))
    store.put_dead_letter(dead_letter(2, customer_id="cus_a"))
    store.put_dead_letter(dead_letter(3, expires_at=past))

    assert [letter.id for letter in store.list_dead_letters(limit=10).items] == ["dlv_2"]
    assert [letter.id for letter in store.list_dead_letters(destination="crm", limit=1).items] == ["dlv_2"]
    assert store.get_dead_letter("dlv_1") is None and store.get_dead_letter("dlv_3") is None
    assert [letter.id for letter in store.dead_letters_of("cus_a")] == ["dlv_2"]
    kept = store.get_dead_letter("dlv_2")
    assert kept.customer_id == "cus_a" and kept.expires_at > datetime.now(timezone.utc)


# --- remember: replay protection across processes -------------------------------------------------


def test_remember_is_none_the_first_time_then_the_first_callers_value_while_the_record_lives(store):
    now = datetime.now(timezone.utc)
    until = now + timedelta(minutes=5)

    assert store.remember("mailgun:token:abc", value="<m1@x>", expires_at=until) is None
    assert store.remember("mailgun:token:abc", value="<m2@x>", expires_at=until) == "<m1@x>"
    assert store.remember("mailgun:token:other", expires_at=until) is None
    assert store.remember("mailgun:token:other", expires_at=until) == ""
    assert store.remember("mailgun:token:abc", value="<m3@x>", expires_at=until + WEEK,
                          now=until - timedelta(seconds=1)) == "<m1@x>"
    # Past its expiry the record is gone in effect (TTL deletes it late): the key is new again.
    assert store.remember("mailgun:token:abc", value="<m3@x>", expires_at=until + WEEK,
                          now=until + timedelta(seconds=1)) is None
    assert store.remember("mailgun:token:abc", value="<m4@x>", expires_at=until + WEEK,
                          now=until + timedelta(seconds=2)) == "<m3@x>"


def test_an_expired_record_counts_as_absent_on_the_wall_clock_too(store):
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    assert store.remember("k", value="a", expires_at=past) is None
    assert store.remember("k", value="b", expires_at=past + WEEK) is None
    assert store.remember("k", value="c", expires_at=past + WEEK) == "b"


def test_concurrent_callers_remember_a_key_exactly_once(store):
    import threading

    callers = 8
    barrier = threading.Barrier(callers)
    results: list[tuple[str, str | None]] = []
    until = datetime.now(timezone.utc) + timedelta(minutes=5)

    def call() -> None:
        name = threading.current_thread().name
        barrier.wait()
        results.append((name, store.remember("mailgun:token:race", value=name, expires_at=until)))

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    [winner] = [name for name, earlier in results if earlier is None]  # exactly one caller records the key
    assert len(results) == callers
    assert {earlier for name, earlier in results if name != winner} == {winner}, "the others learn the first's value"


# --- permanent and transient failures ----------------------------------------------------------------


def test_an_item_over_the_size_limit_is_rejected_for_good_and_writes_nothing(store):
    from chalicelib.errors import ItemTooLargeError, StoreRejectedError, TransientError

    customer = make_customer(phone("+4915112345678"))
    store.create_customer(customer)
    case = make_case(customer)
    huge = make_contact(customer, case, text="x" * (400 * 1024))

    with pytest.raises(ItemTooLargeError) as raised:
        store.commit_contact(commit_for(huge, case, customer))
    with pytest.raises(ItemTooLargeError):
        store.put_delivery(Delivery(id="d", contact_id=huge.id, destination="crm", last_error="y" * (400 * 1024)))

    assert isinstance(raised.value, StoreRejectedError) and not isinstance(raised.value, TransientError)
    assert raised.value.http_status == 413
    assert store.get_contact(huge.id) is None and store.get_delivery(huge.id, "crm") is None
    assert store.get_customer(customer.id).version == 0
    # Just under the limit is fine on both backends (the text is stored twice: as text and raw).
    fits = make_contact(customer, case, text="x" * (195 * 1024))
    store.commit_contact(commit_for(fits, case, customer))
    assert store.get_contact(fits.id).text == fits.text
