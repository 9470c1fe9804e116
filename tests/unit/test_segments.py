"""Segments: how indexed values are normalized, and the paged fan-out of a broadcast through the
events queue (`service/segments.py`), checked against the section-8 message shapes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field, TypeAdapter

from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.domain.ids import group_id, new_id
from chalicelib.domain.models import AttributeValue, Customer
from chalicelib.domain.policies import CustomerLimits
from chalicelib.domain.segments import MAX_INDEX_CHARS, index_value, indexed_values
from chalicelib.errors import ConfigError
from chalicelib.service.segments import SegmentFanout
from tests.support.fakes import MemoryQueue

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


# --- the queue shapes this module writes (domain/business_events.py defines the real ones) ------


class Event(BaseModel):
    type: str
    id: str
    occurred_at: datetime
    customer: dict | None = None
    data: dict = {}
    source: str
    received_at: datetime


class SegmentPage(BaseModel):
    kind: Literal["segment_page"]
    event: Event
    rules: list[str]
    attribute: str
    value: str
    cursor: str | None


class SegmentMember(BaseModel):
    kind: Literal["segment_member"]
    event: Event
    customer_id: str
    rules: list[str]


WORK = TypeAdapter(Annotated[SegmentPage | SegmentMember, Field(discriminator="kind")])


@dataclass
class Target:
    rule: str
    attribute: str
    values: list[Any] = field(default_factory=list)


def outage(event_id: str = "evt-outage-1") -> Event:
    return Event(type="outage.started", id=event_id, occurred_at=T0, data={"postcodes": ["10115", "20095"]},
                 source="api:ops", received_at=T0)


def work(messages) -> list[SegmentPage | SegmentMember]:
    return [WORK.validate_json(m.body) for m in messages]


@pytest.fixture
def store(tmp_path):
    sqlite_store = SqliteStore(str(tmp_path / "hub.db"), indexed_attributes=("postcode", "region"))
    yield sqlite_store
    sqlite_store.close()


def seed(store, count: int, **attributes) -> list[str]:
    ids = []
    for _ in range(count):
        values = {name: AttributeValue(value=value, source="crm", updated_at=T0) for name, value in attributes.items()}
        customer = Customer(id=new_id("cus"), attributes=values, created_at=T0, updated_at=T0)
        store.create_customer(customer)
        ids.append(customer.id)
    return sorted(ids)


# --- index_value ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("  Berlin Mitte ", "berlin mitte"),
    ("STRASSE", "strasse"),
    ("Straße", "strasse"),  # casefold, not lower
    (10115, "10115"),
    (10115.0, "10115"),
    (2.5, "2.5"),
    ("x" * (MAX_INDEX_CHARS + 10), "x" * MAX_INDEX_CHARS),
])
def test_index_value_normalizes_text_and_numbers(value, expected):
    assert index_value(value) == expected


@pytest.mark.parametrize("value", [True, False, None, ["10115"], {"code": "10115"}, "", "   "])
def test_index_value_leaves_out_what_is_not_one_comparable_value(value):
    assert index_value(value) is None


def test_indexed_values_skip_absorbed_and_erasing_customers():
    values = {"postcode": AttributeValue(value="10115", source="crm", updated_at=T0),
              "region": AttributeValue(value=["a", "b"], source="crm", updated_at=T0)}
    customer = Customer(id="cus_1", attributes=values)

    assert indexed_values(customer, ("region", "postcode")) == ((2, "10115"),)
    assert indexed_values(customer.model_copy(update={"merged_into": "cus_2"}), ("postcode",)) == ()
    assert indexed_values(customer.model_copy(update={"erasing": True}), ("postcode",)) == ()


def test_at_most_two_well_named_attributes_can_be_indexed():
    assert CustomerLimits(indexed_attributes=["postcode", "region"]).indexed_attributes == ["postcode", "region"]
    with pytest.raises(ValueError, match="at most 2"):
        CustomerLimits(indexed_attributes=["a", "b", "c"])
    with pytest.raises(ValueError, match="'Post Code' must be lower-case"):
        CustomerLimits(indexed_attributes=["Post Code"])
    with pytest.raises(ValueError, match="indexed only once"):
        CustomerLimits(indexed_attributes=["postcode", "postcode"])


# --- SegmentFanout --------------------------------------------------------------------------------


def test_start_queues_one_page_chain_per_attribute_and_value(store):
    queue = MemoryQueue()
    fanout = SegmentFanout(store, lambda: queue, page_size=10)
    plan = [Target("outage-broadcast", "postcode", ["10115", " 20095", True]),
            Target("outage-tag", "postcode", [10115]),
            Target("regional", "region", ["North"])]

    sent = fanout.start(outage(), plan)

    pages = work(sent)
    assert [(p.attribute, p.value, p.rules, p.cursor) for p in pages] == [
        ("postcode", "10115", ["outage-broadcast", "outage-tag"], None),
        ("postcode", "20095", ["outage-broadcast"], None),
        ("region", "north", ["regional"], None),
    ]
    assert pages[0].event == outage()
    assert sent[0].group == group_id("segment:evt-outage-1:postcode:10115")
    assert len({m.dedupe_id for m in sent}) == 3
    assert queue.sent == sent


def test_start_refuses_a_rule_selecting_by_an_attribute_that_is_not_indexed(store):
    queue = MemoryQueue()
    fanout = SegmentFanout(store, lambda: queue)

    with pytest.raises(ConfigError, match="event rule tariff selects customers by 'tariff'"):
        fanout.start(outage(), [Target("tariff", "tariff", ["basic"])])
    assert queue.sent == []


def test_pages_walk_the_whole_segment_members_first_then_the_next_page(store):
    members = seed(store, 25, postcode="10115")
    seed(store, 3, postcode="20095")
    queue = MemoryQueue()
    fanout = SegmentFanout(store, lambda: queue, page_size=10)
    [first] = work(fanout.start(outage(), [Target("outage-broadcast", "postcode", ["10115"])]))

    reached, message, pages = [], first, 0
    while message is not None:
        before = len(queue.batches)
        sent = fanout.page(message)
        pages += 1
        # Members and continuation in one `send`, in that order (cut into batches of 10).
        assert [m for batch in queue.batches[before:] for m in batch] == sent
        items = work(sent)
        *people, last = items
        if isinstance(last, SegmentPage):
            message = last
            assert last.cursor == people[-1].customer_id
        else:
            people, message = items, None
        assert all(isinstance(p, SegmentMember) and p.rules == ["outage-broadcast"] for p in people)
        reached += [p.customer_id for p in people]

    assert pages == 3
    assert reached == members


def test_member_messages_go_to_the_customers_group_with_a_stable_dedupe_id(store):
    [customer_id] = seed(store, 1, region="north")
    queue = MemoryQueue()
    fanout = SegmentFanout(store, lambda: queue)
    [page] = work(fanout.start(outage(), [Target("regional", "region", ["north"])]))

    [member] = fanout.page(page)
    again = fanout.page(page)

    assert member.group == group_id(f"customer:{customer_id}")
    assert member.dedupe_id == hashlib.sha256(f"evt-outage-1:{customer_id}".encode()).hexdigest()
    assert again == [member]
    assert len(queue.sent) == 2  # the page and one member: the repeat was deduplicated
    assert json.loads(member.body)["event"]["id"] == "evt-outage-1"


def test_an_empty_segment_sends_nothing(store):
    queue = MemoryQueue()
    fanout = SegmentFanout(store, lambda: queue)
    [page] = work(fanout.start(outage(), [Target("outage-broadcast", "postcode", ["99999"])]))
    sends = len(queue.batches)

    assert fanout.page(page) == []
    assert len(queue.batches) == sends


@pytest.mark.parametrize("size", [0, 101])
def test_the_page_size_is_bounded(store, size):
    with pytest.raises(ConfigError, match="fanout_page_size must be 1 to 100"):
        SegmentFanout(store, MemoryQueue, page_size=size)
