"""`EventProcessor`: each kind of events-queue work on an in-memory SQLite store with memory
queues: addressed events (by customer id, merges followed, by identifier, unknown customers),
exactly once by the done marker, the event contact on the timeline, broadcasts through pages and
members, deferred messages, fired timers, malformed bodies, and explain writing nothing. The
notifier is a stand-in; the rules, the actions and the fan-out are the real ones."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.domain.business_events import (
    BusinessEvent,
    event_contact_id,
    event_dedupe_key,
)
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.models import AttributeValue, Channel, Customer, Direction
from chalicelib.errors import ConfigError, InvalidEventError, MalformedPayloadError
from chalicelib.hubconfig import parse_config
from chalicelib.routing.event_setup import EventRulesFactory
from chalicelib.service.event_actions import EventActions, notify_policy
from chalicelib.service.events import EventProcessor
from chalicelib.service.notify import Attempt, NotifyOutcome
from chalicelib.service.segments import SegmentFanout
from tests.support.fakes import Clock, MemoryQueue

NOW = datetime.now(UTC).replace(microsecond=0)

CONFIG = parse_config("""
customers: {indexed_attributes: [postcode]}
destinations: [{name: crm, type: outbox, path: crm.jsonl}]
events:
  frequency_caps: {service: {count: 3, per_hours: 24}}
  templates:
    parcel_late: {text: {en: "Parcel {data.parcel_id} is late"}}
    outage_notice: {text: {en: "Outage"}}
  rules:
    - name: parcel-late
      when: [{event_type: "parcel.*"}, {event: {path: data.delay_hours, gte: 24}}]
      then: {notify: {template: parcel_late, channels: [sms]}, forward: {destinations: [crm]}}
    - name: outage
      when: {event_type: outage.started}
      customer_selector: {attribute: postcode, in: data.postcodes}
      then: {notify: {template: outage_notice, channels: [sms]}, tag_customer: [outage]}
    - name: fraud-review
      when: {event_type: "fraud.*"}
      then: {park: suspected fraud, forward: {destinations: [crm]}}
""")


class StubNotifier:
    """Sends (or defers) every notification, recording each call."""

    def __init__(self) -> None:
        self.status = "sent"
        self.calls: list[tuple[str, str, bool]] = []

    def notify(self, spec, event, customer, case, *, rule, now, outreach, dry_run=False):
        self.calls.append((event.id, customer.id, dry_run))
        if self.status == "deferred":
            return NotifyOutcome("deferred", rule, spec.template, spec.purpose, reason="quiet_hours",
                                 detail="quiet hours", due_at=now + timedelta(hours=8), dry_run=dry_run)
        return NotifyOutcome("sent", rule, spec.template, spec.purpose,
                             (Attempt("sms", "sent", message_id=f"ct_{customer.id}", provider="twilio"),),
                             message_id=f"ct_{customer.id}", channel="sms", outreach_at=None if dry_run else now,
                             dry_run=dry_run)


class Timers:
    def __init__(self) -> None:
        self.armed = []

    def arm(self, timers) -> None:
        self.armed += list(timers)


@pytest.fixture
def world():
    store = SqliteStore(":memory:", indexed_attributes=["postcode"])
    events_queue, delivery_queue, notifier, timers = MemoryQueue("events"), MemoryQueue("delivery"), StubNotifier(), Timers()
    factory = EventRulesFactory(CONFIG)
    acting = EventActions(notifier=lambda: notifier, templates=factory.templates, cases=CONFIG.cases,
                          sla=CONFIG.routing.sla, survivorship=CONFIG.survivorship, limits=CONFIG.customers,
                          notify_policy=notify_policy(CONFIG), case_event_destinations=list)
    fired = []
    processor = EventProcessor(store=store, rules=lambda: factory.inline, actions=lambda: acting,
                               fanout=lambda: SegmentFanout(store, lambda: events_queue, 2), timers=lambda: timers,
                               delivery_queue=lambda: delivery_queue, config=CONFIG, clock=Clock(NOW),
                               on_timer=lambda work: fired.append(work) or "timer_fired")
    return store, processor, notifier, events_queue, delivery_queue, fired


def make_customer(store, customer_id: str, *, phone: str | None = None, postcode: str | None = None,
                  merged_into: str | None = None) -> Customer:
    customer = Customer(
        id=customer_id, identifiers=[Identifier.parse(f"phone:{phone}")] if phone else [], merged_into=merged_into,
        attributes={"postcode": AttributeValue(value=postcode, source="crm", updated_at=NOW)} if postcode else {},
        version=1,
    )
    store.create_customer(customer)
    return customer


def event(id_: str = "shop:parcel-1", *, customer: dict | None = None, type_: str = "parcel.late", **data) -> BusinessEvent:
    return BusinessEvent(type=type_, id=id_, occurred_at=NOW - timedelta(minutes=5), customer=customer,
                         data={"parcel_id": "P-1", "delay_hours": 30, **data}, source="api:shop", received_at=NOW)


def body(evt: BusinessEvent) -> str:
    return json.dumps({"kind": "event", "event": evt.model_dump(mode="json")})


def test_an_event_for_a_customer_id_becomes_an_event_contact_with_the_decision_once(world):
    store, processor, notifier, _, delivery, _ = world
    make_customer(store, "cus_1")
    evt = event(customer={"customer_id": "cus_1"})

    assert processor.process_body(body(evt), receive_count=1) == "event_processed"
    assert processor.process_body(body(evt), receive_count=2) == "duplicate"

    assert notifier.calls == [("shop:parcel-1", "cus_1", False)]
    contact = store.get_contact(event_contact_id(evt, "cus_1"))
    assert (contact.direction, contact.channel, contact.case_id) == (Direction.EVENT, Channel.EVENT, "")
    assert contact.provider_message_id == "shop:parcel-1" and contact.account == "api:shop"
    assert contact.metadata["event"]["dedupe_key"] == event_dedupe_key("shop:parcel-1")
    assert [a["action"] for a in contact.metadata["actions"]] == ["notify", "forward"]
    assert [t.rule for t in contact.routing.trace][:2] == ["events", "parcel-late"]
    assert contact.raw["event"]["data"]["parcel_id"] == "P-1"
    # Forwarded to the destination as an event.forwarded delivery, once.
    [job] = delivery.sent
    assert json.loads(job.body)["event_type"] == "event.forwarded"
    # The customer's outreach is written with the event.
    assert store.get_customer("cus_1").outreach["service"] == [NOW]


def test_an_event_for_an_absorbed_customer_lands_on_the_survivor(world):
    store, processor, notifier, *_ = world
    make_customer(store, "cus_new")
    make_customer(store, "cus_old", merged_into="cus_new")
    evt = event(customer={"customer_id": "cus_old"})

    assert processor.process_body(body(evt), receive_count=1) == "event_processed"

    assert notifier.calls == [("shop:parcel-1", "cus_new", False)]
    assert store.get_contact(event_contact_id(evt, "cus_new")) is not None


def test_an_event_for_an_identifier_finds_its_owner_and_an_unknown_one_is_recorded(world):
    store, processor, notifier, *_ = world
    make_customer(store, "cus_1", phone="+14155550123")

    found = processor.process_body(body(event(customer={"identifier": "phone:+1 415 555 0123"})), receive_count=1)
    unknown = processor.process_body(body(event("shop:parcel-2", customer={"identifier": "phone:+14155550999"})),
                                     receive_count=1)

    assert (found, unknown) == ("event_processed", "customer_unmatched")
    assert notifier.calls == [("shop:parcel-1", "cus_1", False)]
    [recorded] = store.list_unhandled(day=NOW.date(), provider="events", limit=10).items
    assert "shop:parcel-2" in recorded.reason and "+14155550999" in recorded.reason


def test_a_rule_that_does_not_match_still_records_the_event(world):
    store, processor, notifier, *_ = world
    make_customer(store, "cus_1")
    evt = event(customer={"customer_id": "cus_1"}, delay_hours=2)

    assert processor.process_body(body(evt), receive_count=1) == "event_processed"

    assert notifier.calls == []
    contact = store.get_contact(event_contact_id(evt, "cus_1"))
    assert contact.metadata["actions"] == []
    assert [(t.rule, t.matched) for t in contact.routing.trace][1] == ("parcel-late", False)


def test_a_broadcast_pages_through_its_segment_and_reaches_each_member_once(world):
    store, processor, notifier, events_queue, *_ = world
    for index in range(3):
        make_customer(store, f"cus_{index}", postcode="10115")
    make_customer(store, "cus_far", postcode="80331")
    outage = event("grid:7", type_="outage.started", postcodes=["10115"])

    assert processor.process_body(body(outage), receive_count=1) == "event_processed"
    assert processor.process_body(body(outage), receive_count=2) == "duplicate"
    outcomes = []
    while events_queue.sent:
        message = events_queue.sent.pop(0)
        outcomes.append(processor.process_body(message.body, receive_count=1))
        if json.loads(message.body)["kind"] == "segment_member":
            # A redelivered member finds its done marker.
            assert processor.process_body(message.body, receive_count=2) == "duplicate"

    assert sorted(outcomes) == ["fanout_page", "fanout_page", "member_processed", "member_processed",
                                "member_processed"]
    assert sorted(customer for _, customer, _ in notifier.calls) == ["cus_0", "cus_1", "cus_2"]
    tags = store.get_customer("cus_0").attributes["tags"].value
    assert tags == ["outage"]
    member = store.get_contact(event_contact_id(outage, "cus_0"))
    assert member.metadata["event"]["dedupe_key"] == event_dedupe_key("grid:7", "cus_0")


def test_a_deferred_notification_runs_again_and_is_added_to_the_event_s_timeline_entry(world):
    store, processor, notifier, *_ = world
    make_customer(store, "cus_1")
    evt = event(customer={"customer_id": "cus_1"})
    notifier.status = "deferred"
    processor.process_body(body(evt), receive_count=1)
    notifier.status = "sent"
    due = (NOW + timedelta(hours=8)).isoformat()
    deferred = json.dumps({"kind": "deferred_notify", "event": evt.model_dump(mode="json"), "customer_id": "cus_1",
                           "rule": "parcel-late", "due_at": due})

    assert processor.process_body(deferred, receive_count=1) == "event_processed"
    assert processor.process_body(deferred, receive_count=2) == "duplicate"

    assert len(notifier.calls) == 2
    contact = store.get_contact(event_contact_id(evt, "cus_1"))
    notifications = [a for a in contact.metadata["actions"] if a["action"] == "notify"]
    assert [(a["outcome"], "deferred_from" in a) for a in notifications] == [("deferred", False), ("sent", True)]


def test_a_fired_timer_goes_to_the_timer_handler_and_without_one_is_a_configuration_error(world):
    _, processor, _, _, _, fired = world
    timer = json.dumps({"kind": "timer", "case_id": "case_1", "customer_id": "cus_1", "timer": "sla",
                        "due_at": NOW.isoformat()})

    assert processor.process_body(timer, receive_count=1) == "timer_fired"
    assert fired[0].case_id == "case_1"

    processor.on_timer = None
    with pytest.raises(ConfigError, match="no timer handler"):
        processor.process_body(timer, receive_count=1)


@pytest.mark.parametrize("raw", ["not json", json.dumps({"kind": "nothing"}), json.dumps({"kind": "event"})])
def test_a_body_that_is_no_events_queue_work_is_malformed(world, raw):
    _, processor, *_ = world
    with pytest.raises(MalformedPayloadError):
        processor.process_body(raw, receive_count=1)


def test_explain_shows_the_trace_and_the_dry_run_notification_and_writes_nothing(world):
    store, processor, notifier, events_queue, delivery, _ = world
    make_customer(store, "cus_1")
    sent = event(customer={"customer_id": "cus_1"}).model_dump(mode="json", exclude={"source", "received_at"})

    result = processor.explain({"event": sent})

    assert result["customer_id"] == "cus_1"
    assert {"rule": "parcel-late", "matched": True} .items() <= next(
        t for t in result["trace"] if t["rule"] == "parcel-late").items()
    assert [a["action"] for a in result["actions"]] == ["notify", "forward"]
    assert notifier.calls == [("shop:parcel-1", "cus_1", True)]
    assert any("notify parcel_late → sms" in line for line in result["would"])
    assert store.begin(event_dedupe_key("shop:parcel-1"), now=NOW).done is False
    assert store.list_contacts("cus_1", limit=10).items == []
    assert delivery.sent == [] and events_queue.sent == []


def test_explain_of_a_broadcast_shows_its_segments_and_with_a_customer_record_the_member_s_decision(world):
    store, processor, _, events_queue, *_ = world
    make_customer(store, "cus_1", postcode="10115")
    outage = event("grid:7", type_="outage.started", postcodes=["10115"]).model_dump(
        mode="json", exclude={"source", "received_at"})

    plan = processor.explain({"event": outage})
    member = processor.explain({"event": outage, "customer": {"attributes": {
        "postcode": {"value": "10115", "source": "crm", "updated_at": NOW.isoformat()}}}})

    assert plan["segments"] == [{"rule": "outage", "attribute": "postcode", "value": "10115", "sample": ["cus_1"]}]
    assert [(t["rule"], t["matched"]) for t in plan["trace"]] == [("events", True), ("parcel-late", False),
                                                                  ("outage", True), ("fraud-review", False)]
    assert [a["action"] for a in member["actions"]] == ["tag_customer", "notify"]
    assert events_queue.sent == []


def test_explain_refuses_an_invalid_event_naming_the_field(world):
    _, processor, *_ = world
    with pytest.raises(InvalidEventError) as refused:
        processor.explain({"event": {"type": "Bad Type", "id": "x", "occurred_at": NOW.isoformat()}})
    assert "event.type" in refused.value.detail["fields"]


def test_a_parked_event_waits_in_the_exception_queue_and_its_release_forwards_it(world):
    from chalicelib.service.exceptions import Release, release

    store, processor, _, _, delivery, _ = world
    make_customer(store, "cus_1")
    evt = event(customer={"customer_id": "cus_1"}, type_="fraud.suspected")

    assert processor.process_body(body(evt), receive_count=1) == "event_processed"

    assert delivery.sent == [], "a parked event is forwarded only when released"
    [parked] = store.list_parked(limit=10).items
    assert parked.contact_id == event_contact_id(evt, "cus_1")
    assert parked.reason == "suspected fraud (rule fraud-review)"

    release(store, delivery, CONFIG, parked.contact_id, Release(), actor="api:ops", now=NOW)

    [job] = delivery.sent
    assert (json.loads(job.body)["event_type"], json.loads(job.body)["case"]["id"]) == ("event.forwarded", "")


def test_a_member_absorbed_by_a_merge_is_processed_once_as_its_survivor(world):
    store, processor, notifier, *_ = world
    make_customer(store, "cus_new", postcode="10115")
    make_customer(store, "cus_old", merged_into="cus_new")
    outage = event("grid:7", type_="outage.started", postcodes=["10115"])

    def member(customer_id: str) -> str:
        return json.dumps({"kind": "segment_member", "event": outage.model_dump(mode="json"),
                           "customer_id": customer_id, "rules": ["outage"]})

    assert processor.process_body(member("cus_old"), receive_count=1) == "member_processed"
    assert processor.process_body(member("cus_new"), receive_count=1) == "duplicate"
    assert processor.process_body(member("cus_gone"), receive_count=1) == "customer_unmatched"

    assert notifier.calls == [("grid:7", "cus_new", False)]
