"""Business events: what a producer may send, and the ids everything derived from an event uses."""

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter, ValidationError

from chalicelib.domain.business_events import (
    MAX_EVENT_DATA_BYTES,
    BusinessEvent,
    DeferredNotify,
    EventIn,
    EventMessage,
    EventWork,
    SegmentMember,
    SegmentPage,
    TimerFired,
    customer_group,
    event_contact_id,
    event_dedupe_key,
    event_group,
    event_queue_dedupe_id,
    notify_message_id,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def event(**changes):
    body = {"type": "parcel.late", "id": "evt-1", "occurred_at": "2026-03-02T08:00:00Z",
            "customer": {"identifier": "phone:+4915123456789"}, "data": {"delay_hours": 30}}
    body.update(changes)
    return body


def problems(body) -> dict[str, str]:
    with pytest.raises(ValidationError) as raised:
        EventIn.model_validate(body, context={"now": NOW})
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in raised.value.errors()}


def test_a_valid_event_keeps_what_the_producer_sent():
    parsed = EventIn.model_validate(event(), context={"now": NOW})

    assert parsed.type == "parcel.late"
    assert parsed.customer.identifier == "phone:+4915123456789"
    assert parsed.customer.customer_id is None
    assert parsed.data == {"delay_hours": 30}
    assert not parsed.broadcast


def test_an_event_without_a_customer_is_a_broadcast_and_data_defaults_to_empty():
    body = event(customer=None)
    del body["data"]
    parsed = EventIn.model_validate(body, context={"now": NOW})

    assert parsed.broadcast
    assert parsed.data == {}


@pytest.mark.parametrize("event_type", ["Parcel.late", ".late", "parcel late", "a" * 101, "", "parcel/late"])
def test_a_type_outside_the_pattern_is_refused(event_type):
    assert "type" in problems(event(type=event_type))


@pytest.mark.parametrize("event_type", ["outage.started", "case:sla_breached", "x", "a" * 100, "9-b_c.d"])
def test_unknown_types_of_the_right_shape_are_valid(event_type):
    assert EventIn.model_validate(event(type=event_type), context={"now": NOW}).type == event_type


@pytest.mark.parametrize("event_id", ["", "a" * 129, "line\nbreak", "tab\there"])
def test_an_id_must_be_1_to_128_printable_characters(event_id):
    assert "id" in problems(event(id=event_id))


def test_occurred_at_must_carry_a_timezone():
    assert "occurred_at" in problems(event(occurred_at="2026-03-02T08:00:00"))


def test_occurred_at_may_be_at_most_a_day_ahead():
    ahead = (NOW + timedelta(days=1, minutes=1)).isoformat()
    assert problems(event(occurred_at=ahead))["occurred_at"] == "Value error, is more than 1 day in the future"
    just_within = (NOW + timedelta(hours=23)).isoformat()
    assert EventIn.model_validate(event(occurred_at=just_within), context={"now": NOW})


@pytest.mark.parametrize("customer", [{}, {"identifier": "phone:+4915123456789", "customer_id": "cus_1"}])
def test_the_customer_names_exactly_one_of_identifier_and_customer_id(customer):
    assert "give exactly one of identifier, customer_id" in problems(event(customer=customer))["customer"]


def test_unknown_fields_are_refused_at_every_level():
    assert "colour" in problems(event(colour="red"))
    assert "customer.email" in problems(event(customer={"customer_id": "cus_1", "email": "a@b.c"}))


def test_data_must_be_an_object_of_bounded_size_and_depth():
    assert "data" in problems(event(data=[1, 2]))
    assert "larger than" in problems(event(data={"text": "x" * MAX_EVENT_DATA_BYTES}))["data"]
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["a"] = {}
        node = node["a"]
    assert "deeper than 32" in problems(event(data=deep))["data"]


def test_every_kind_of_work_reads_back_through_the_union():
    accepted = BusinessEvent.accepted(EventIn.model_validate(event(), context={"now": NOW}),
                                      source="api:crm", received_at=NOW)
    work = [
        EventMessage(event=accepted),
        SegmentPage(event=accepted, rules=["outage"], attribute="postcode", value="10115", cursor="c1"),
        SegmentMember(event=accepted, customer_id="cus_1", rules=["outage"]),
        TimerFired(case_id="case_1", customer_id="cus_1", timer="sla", due_at=NOW),
        DeferredNotify(event=accepted, customer_id="cus_1", rule="parcel-late", due_at=NOW),
    ]
    adapter = TypeAdapter(EventWork)

    for item in work:
        assert adapter.validate_json(item.model_dump_json()) == item
    with pytest.raises(ValidationError):
        adapter.validate_json('{"kind": "lottery"}')


def test_dedupe_keys_and_groups():
    addressed = EventIn.model_validate(event(customer={"customer_id": "cus_1"}), context={"now": NOW})
    broadcast = EventIn.model_validate(event(customer=None), context={"now": NOW})
    by_identifier = EventIn.model_validate(event(), context={"now": NOW})

    assert event_dedupe_key("evt-1") == "event:evt-1"
    assert event_dedupe_key("evt-1", "cus_1") == "event:evt-1:cus_1"
    assert event_group(addressed) == customer_group("cus_1")
    assert event_group(broadcast) != event_group(EventIn.model_validate(event(id="evt-2", customer=None),
                                                                        context={"now": NOW}))
    # Two spellings of one number share a group once normalized.
    assert event_group(by_identifier, "phone:+4915123456789") == event_group(
        EventIn.model_validate(event(customer={"identifier": "phone:0151 23456789"}), context={"now": NOW}),
        "phone:+4915123456789")
    assert len(event_group(broadcast)) <= 128
    assert event_queue_dedupe_id("evt-1") == event_queue_dedupe_id("evt-1") != event_queue_dedupe_id("evt-2")


def test_derived_ids_are_stable_and_sorted_by_when_the_event_happened():
    first = EventIn.model_validate(event(), context={"now": NOW})
    later = EventIn.model_validate(event(id="evt-2", occurred_at="2026-03-02T08:30:00Z"), context={"now": NOW})

    assert event_contact_id(first, "cus_1") == event_contact_id(first, "cus_1")
    assert event_contact_id(first, "cus_1") != event_contact_id(first, "cus_2")
    assert event_contact_id(first, "cus_1") < event_contact_id(later, "cus_1")
    assert notify_message_id(first, "cus_1", "r") == notify_message_id(first, "cus_1", "r")
    assert notify_message_id(first, "cus_1", "r") != notify_message_id(first, "cus_1", "s")
    assert notify_message_id(first, "cus_1", "r") != event_contact_id(first, "cus_1")


def test_an_accepted_event_reads_back_whatever_the_reader_s_clock_says():
    """The future check is for producers: a worker (or a test's clock) reading an accepted event,
    or a timer's event dated when it was due, never refuses it."""
    ahead = (datetime.now(timezone.utc) + timedelta(days=30)).isoformat()
    accepted = BusinessEvent.model_validate({**event(occurred_at=ahead), "source": "timer", "received_at": ahead})

    assert BusinessEvent.model_validate_json(accepted.model_dump_json()) == accepted
    with pytest.raises(ValidationError):
        EventIn.model_validate(event(occurred_at=ahead))
