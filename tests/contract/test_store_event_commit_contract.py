"""`Store.commit_event`: a business event's outcome for one customer is written all or nothing,
once per dedupe key, on SQLite and on DynamoDB under moto alike."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from chalicelib.adapters.store.base import EventCommit
from chalicelib.domain.models import AttributeValue, RoutingDecision
from chalicelib.errors import ConcurrentUpdateError
from tests.contract.test_store_contract import T0, WEEK, make_case, make_contact, make_customer, phone
from tests.support.aws import create_table


@pytest.fixture
def store(store_backend, request, tmp_path):
    """A store indexing `postcode`, so an event's customer write is seen to keep the index."""
    if store_backend == "sqlite":
        from chalicelib.adapters.store.sqlite import SqliteStore

        sqlite_store = SqliteStore(str(tmp_path / "hub.db"), indexed_attributes=("postcode",))
        yield sqlite_store
        sqlite_store.close()
        return
    from chalicelib.adapters.store.dynamodb import DynamoDbStore

    client = request.getfixturevalue("aws").client("dynamodb")
    name = f"hub-evt-{uuid.uuid4().hex[:12]}"
    create_table(client, name)
    yield DynamoDbStore(name, client, indexed_attributes=("postcode",))
    client.delete_table(TableName=name)


def seeded(store):
    """A stored customer, its next version (with a postcode) and a case for it."""
    customer = make_customer(phone("+4915112345678"))
    store.create_customer(customer)
    nxt = customer.model_copy(deep=True)
    nxt.version += 1
    nxt.attributes["postcode"] = AttributeValue(value="10115", source="events:outage", updated_at=T0)
    return customer, nxt, make_case(nxt)


def event_contact(customer, case, *, parked: str | None = None):
    contact = make_contact(customer, case, text="")
    contact.metadata = {"event": {"type": "outage.started", "id": "evt-1", "dedupe_key": "event:evt-1"}}
    contact.routing = RoutingDecision(parked=parked)
    return contact


def commit(contact, customer, cases=(), *, key="event:evt-1", at=T0) -> EventCommit:
    return EventCommit(contact=contact, customer=customer, cases=tuple(cases), dedupe_key=key,
                       dedupe_expires_at=at + WEEK, committed_at=at)


def test_an_event_commit_writes_customer_cases_contact_and_marker(store):
    _, nxt, case = seeded(store)
    contact = event_contact(nxt, case)

    store.commit_event(commit(contact, nxt, [case]))

    assert store.get_customer(nxt.id) == nxt
    assert store.get_case(case.id) == case
    assert store.get_contact(contact.id) == contact
    assert [c.id for c in store.list_contacts(nxt.id, limit=10).items] == [contact.id]
    assert store.begin("event:evt-1", now=T0 + timedelta(hours=1)).done
    assert store.list_parked(limit=10).items == []
    assert store.segment_page("postcode", "10115", limit=10, cursor=None).items == [nxt.id]


def test_an_event_that_left_the_customer_alone_writes_no_customer(store):
    stored, _, _ = seeded(store)
    contact = event_contact(stored, make_case(stored))
    contact.case_id = ""  # an event of a customer without an open case

    store.commit_event(commit(contact, None))

    assert store.get_customer(stored.id) == stored
    assert store.get_contact(contact.id) == contact
    assert store.begin("event:evt-1", now=T0).done


def test_a_parked_event_enters_the_exception_queue(store):
    _, nxt, case = seeded(store)
    contact = event_contact(nxt, case, parked="needs review (rule outage)")

    store.commit_event(commit(contact, nxt, [case]))

    [entry] = store.list_parked(limit=10).items
    assert (entry.contact_id, entry.customer_id, entry.reason) == (contact.id, nxt.id, "needs review (rule outage)")


def test_a_second_attempt_at_the_same_event_writes_nothing(store):
    stored, nxt, case = seeded(store)
    store.commit_event(commit(event_contact(nxt, case), nxt, [case]))
    again = event_contact(stored, case)

    with pytest.raises(ConcurrentUpdateError, match="committed by another attempt"):
        store.commit_event(commit(again, None))

    assert store.get_contact(again.id) is None


def test_a_customer_changed_meanwhile_loses_the_whole_commit(store):
    stored, nxt, case = seeded(store)
    elsewhere = nxt.model_copy(deep=True)
    store.update_customer(elsewhere)  # another worker wrote version 1 first
    contact = event_contact(nxt, case)

    with pytest.raises(ConcurrentUpdateError, match=f"customer {stored.id} changed"):
        store.commit_event(commit(contact, nxt, [case]))

    assert store.get_contact(contact.id) is None
    assert store.get_case(case.id) is None
    assert not store.begin("event:evt-1", now=T0).done


def test_an_expired_marker_lets_the_event_commit_again(store):
    stored, _, case = seeded(store)
    store.commit_event(commit(event_contact(stored, case), None))
    later = T0 + WEEK + timedelta(seconds=1)
    again = event_contact(stored, case)

    store.commit_event(commit(again, None, at=later))

    assert store.get_contact(again.id) == again
    assert store.begin("event:evt-1", now=later).done
