"""`EventActions`: what event rules' actions do to one customer, computed in memory: opening or
updating the open case (timers, announcements), case priority and queue, adding to and closing
the case, tags and attributes within the customer limits, notify's outreach bookkeeping, forward
jobs and parking, and follow-up timers. The notifier is a stand-in that answers what it is told."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.domain.business_events import BusinessEvent
from chalicelib.domain.ids import digest_id
from chalicelib.domain.models import (
    AttributeValue,
    Case,
    CaseStatus,
    Channel,
    Contact,
    Customer,
    Priority,
    ReplyTarget,
)
from chalicelib.domain.policies import CustomerLimits
from chalicelib.domain.stored import CaseSummary
from chalicelib.errors import UnsendableMessageError
from chalicelib.hubconfig import parse_config
from chalicelib.routing.event_rules import EventDecision
from chalicelib.routing.event_specs import EventActionSpec
from chalicelib.routing.event_templates import EventTemplates
from chalicelib.service.event_actions import EventActions, notify_policy
from chalicelib.service.notify import Attempt, NotifyOutcome

NOW = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)

CONFIG = parse_config("""
routing:
  sla: {hours: 24, by_priority: {urgent: 2}}
cases: {auto_close_after_hours: 72}
events:
  templates:
    parcel_late: {text: {en: "Parcel {data.parcel_id} is late"}}
  frequency_caps: {service: {count: 2, per_hours: 24}}
""")


class StubNotifier:
    """Answers each notify with `outcome` (or raises it), recording the calls."""

    def __init__(self, outcome="sent") -> None:
        self.outcome = outcome
        self.calls: list[dict] = []

    def notify(self, spec, event, customer, case, *, rule, now, outreach, dry_run=False):
        self.calls.append({"rule": rule, "case": case, "outreach": outreach, "dry_run": dry_run})
        if isinstance(self.outcome, Exception):
            raise self.outcome
        attempts = (Attempt("sms", "sent", message_id="ct_msg", provider="twilio"),) if self.outcome == "sent" else ()
        return NotifyOutcome(self.outcome, rule, spec.template, spec.purpose, attempts, message_id="ct_msg",
                             channel="sms", outreach_at=None if dry_run or self.outcome != "sent" else now,
                             dry_run=dry_run)


def actions(notifier=None, *, destinations=("crm",), limits: CustomerLimits | None = None) -> EventActions:
    return EventActions(
        notifier=lambda: notifier or StubNotifier(), templates=EventTemplates(CONFIG.events.templates, "en"),
        cases=CONFIG.cases, sla=CONFIG.routing.sla, survivorship=CONFIG.survivorship,
        limits=limits or CONFIG.customers, notify_policy=notify_policy(CONFIG),
        case_event_destinations=lambda: list(destinations),
    )


def event(**data) -> BusinessEvent:
    return BusinessEvent(type="parcel.late", id="shop:parcel-1", occurred_at=NOW - timedelta(minutes=5),
                         customer={"customer_id": "cus_1"}, data={"parcel_id": "P-1", **data}, source="api:shop",
                         received_at=NOW)


def customer(*, open_case: CaseSummary | None = None, **attributes) -> Customer:
    return Customer(id="cus_1", version=4, open_case=open_case,
                    attributes={k: AttributeValue(value=v, source="crm", updated_at=NOW) for k, v in attributes.items()})


def summary(**fields) -> CaseSummary:
    return CaseSummary(**{"id": "case_open", "opened_at": NOW - timedelta(hours=3),
                          "last_activity_at": NOW - timedelta(hours=1), "contact_count": 2, **fields})


def decide(**then) -> EventDecision:
    return EventDecision(trace=[], actions=[("rule-1", EventActionSpec.model_validate(then))], rules_version="inline")


def test_open_case_opens_a_case_with_its_timers_and_announces_it():
    effects = actions().apply(decide(open_case={"queue": "logistics", "tags": ["parcel"], "topic": "parcel",
                                                "priority": "high"}), event(), customer(), now=NOW)

    case = effects.open_case
    assert case.id == digest_id("case", "cus_1:v4")
    assert (case.queue, case.priority, case.tags, case.topic) == ("logistics", Priority.HIGH, ["parcel"], "parcel")
    assert case.due["auto_close"] == NOW + timedelta(hours=72)
    assert set(case.due) == {"sla", "auto_close"}
    assert sorted(json.loads(t.payload)["timer"] for t in effects.timers) == ["auto_close", "sla"]
    assert effects.case_id == case.id
    assert effects.customer.open_case.id == case.id and effects.customer_changed
    [announcement] = effects.announcements
    assert json.loads(announcement.body)["event_type"] == "case.opened"
    assert effects.outcomes == [{"action": "open_case", "rule": "rule-1", "outcome": "opened", "case_id": case.id}]


def test_open_case_updates_the_open_case_as_stored_without_a_new_case_or_timers():
    reply = ReplyTarget(contact_id="ct_1", case_id="case_open", channel=Channel.SMS, provider="twilio", account="+1",
                        to="+2", at=NOW - timedelta(hours=1))
    stored = Case(**summary(tags=["vip"]).model_dump(), customer_id="cus_1", last_inbound=reply)

    effects = actions().apply(decide(open_case={"queue": "logistics", "tags": ["parcel"]}), event(),
                              customer(open_case=summary(tags=["vip"])), now=NOW, load_case=lambda _: stored)

    case = effects.cases["case_open"]
    assert (case.queue, case.tags, case.last_activity_at) == ("logistics", ["vip", "parcel"], NOW)
    assert case.last_inbound == reply, "the stored case is written whole"
    assert effects.timers == [] and effects.announcements == []
    assert effects.outcomes[0]["outcome"] == "updated"


def test_an_inactive_open_case_is_written_closed_and_a_new_one_opens():
    inactive = summary(last_activity_at=NOW - timedelta(hours=100))

    effects = actions().apply(decide(open_case={}), event(), customer(open_case=inactive), now=NOW)

    assert effects.cases["case_open"].status == CaseStatus.CLOSED
    assert effects.cases["case_open"].close_reason == "inactive"
    assert effects.open_case.id != "case_open"


def test_priority_escalate_and_queue_act_on_the_open_case_only():
    effects = actions().apply(decide(escalate=2, queue="tier2"), event(), customer(open_case=summary()), now=NOW)
    assert (effects.open_case.priority, effects.open_case.queue) == (Priority.URGENT, "tier2")
    assert effects.customer.open_case.priority == Priority.URGENT

    without = actions().apply(decide(priority="high"), event(), customer(), now=NOW)
    assert without.outcomes == [{"action": "case", "rule": "rule-1", "outcome": "no_open_case"}]
    assert without.cases == {} and not without.customer_changed


def test_add_to_case_files_the_event_on_the_open_case_and_says_when_there_is_none():
    effects = actions().apply(decide(add_to_case={"note": "check depot"}), event(), customer(open_case=summary()),
                              now=NOW)
    assert effects.case_id == "case_open"
    assert effects.cases["case_open"].contact_count == 3
    assert effects.outcomes == [{"action": "add_to_case", "rule": "rule-1", "note": "check depot", "outcome": "added",
                                 "case_id": "case_open"}]

    none = actions().apply(decide(add_to_case=True), event(), customer(), now=NOW)
    assert none.case_id == "" and none.outcomes[0]["outcome"] == "no_open_case"


def test_close_case_closes_it_clears_the_customer_s_open_case_and_announces_it():
    effects = actions().apply(decide(close_case={"reason": "delivered"}), event(), customer(open_case=summary()),
                              now=NOW)

    closed = effects.cases["case_open"]
    assert (closed.status, closed.close_reason, closed.closed_at) == (CaseStatus.CLOSED, "delivered", NOW)
    assert effects.customer.open_case is None and effects.open_case is None
    [announcement] = effects.announcements
    assert json.loads(announcement.body)["event_type"] == "case.closed"


def test_tags_are_a_union_and_attributes_read_the_event():
    effects = actions().apply(decide(tag_customer=["parcel", "vip"], set_attribute={"last_parcel": "{data.parcel_id}",
                                                                                    "segment": "b2c"}),
                              event(), customer(tags=["vip"]), now=NOW)

    attributes = effects.customer.attributes
    assert attributes["tags"].value == ["vip", "parcel"]
    assert (attributes["last_parcel"].value, attributes["segment"].value) == ("P-1", "b2c")
    assert attributes["last_parcel"].source == "events:rule-1"
    assert [o["outcome"] for o in effects.outcomes] == ["set", "set"]


def test_attributes_past_the_customer_limits_or_missing_in_the_event_are_refused_and_recorded():
    limited = actions(limits=CustomerLimits(max_attributes=1))
    effects = limited.apply(decide(set_attribute={"a": 1, "b": 2}), event(), customer(), now=NOW)
    assert effects.outcomes[0]["outcome"] == "refused"
    assert "attributes" in effects.outcomes[0]["reason"]
    assert effects.customer.attributes == {} and not effects.customer_changed

    missing = actions().apply(decide(set_attribute={"eta": "{data.eta}"}), event(), customer(), now=NOW)
    assert missing.outcomes[0] == {"action": "set_attribute", "rule": "rule-1", "outcome": "refused",
                                   "reason": "the event has no value for eta"}


def test_a_sent_notification_is_counted_in_the_customer_s_outreach_within_the_cap():
    notifier = StubNotifier("sent")
    earlier = [NOW - timedelta(hours=30), NOW - timedelta(hours=2), NOW - timedelta(hours=1)]
    before = customer().model_copy(update={"outreach": {"service": earlier}})

    effects = actions(notifier).apply(decide(notify="parcel_late"), event(), before, now=NOW)

    assert effects.customer.outreach["service"] == [NOW, NOW - timedelta(hours=1)], "trimmed to the cap's count"
    assert effects.customer_changed
    assert notifier.calls[0]["outreach"] == {"service": earlier}
    [outcome] = effects.outcomes
    assert (outcome["outcome"], outcome["trace"]) == ("sent", "notify parcel_late → sms")


def test_notify_is_given_the_open_case_from_before_the_event_and_its_deferral_is_flagged():
    notifier = StubNotifier("deferred")
    effects = actions(notifier).apply(decide(notify="parcel_late", open_case={"topic": "parcel"}), event(),
                                      customer(), now=NOW)
    assert notifier.calls[0]["case"] is None, "the case this event opens does not suppress its own message"
    assert effects.deferred and not effects.customer.outreach


def test_a_template_the_event_cannot_fill_is_recorded_not_raised():
    notifier = StubNotifier(UnsendableMessageError("template parcel_late: no value at data.parcel_id"))
    effects = actions(notifier).apply(decide(notify="parcel_late"), event(), customer(), now=NOW)
    assert effects.outcomes[0]["outcome"] == "unsendable"
    assert effects.outcomes[0]["reason"] == UnsendableMessageError.code


def test_forward_renders_the_text_and_makes_one_job_per_destination_unless_parked():
    acting = actions()
    effects = acting.apply(decide(forward={"destinations": ["crm", "outbox"], "template": "parcel_late"}), event(),
                           customer(open_case=summary()), now=NOW)
    assert (effects.destinations, effects.text) == (["crm", "outbox"], "Parcel P-1 is late")
    contact = _contact(destinations=effects.destinations)

    jobs = acting.forward_jobs(contact, customer(), None)

    assert [json.loads(j.body)["destination"] for j in jobs] == ["crm", "outbox"]
    assert {json.loads(j.body)["event_type"] for j in jobs} == {"event.forwarded"}
    assert json.loads(jobs[0].body)["case"]["id"] == ""
    parked = _contact(destinations=effects.destinations, parked="needs review (rule rule-1)")
    assert acting.forward_jobs(parked, customer(), None) == []


def test_park_records_the_reason_with_the_rule():
    effects = actions().apply(decide(park="needs review"), event(), customer(), now=NOW)
    assert effects.parked == "needs review (rule rule-1)"


def test_follow_up_hours_arms_a_follow_up_timer_on_the_open_case():
    effects = actions().apply(decide(follow_up_hours=48), event(), customer(open_case=summary()), now=NOW)
    assert effects.open_case.due["follow_up"] == NOW + timedelta(hours=48)
    [timer] = effects.timers
    assert json.loads(timer.payload)["timer"] == "follow_up"

    none = actions().apply(decide(follow_up_hours=48), event(), customer(), now=NOW)
    assert none.timers == [] and none.outcomes[0]["outcome"] == "no_open_case"


@pytest.mark.parametrize("dry_run", [True, False])
def test_dry_run_reaches_the_notifier(dry_run):
    notifier = StubNotifier("sent")
    effects = actions(notifier).apply(decide(notify="parcel_late"), event(), customer(), now=NOW, dry_run=dry_run)
    assert notifier.calls[0]["dry_run"] is dry_run
    assert bool(effects.customer.outreach) is not dry_run


def _contact(*, destinations: list[str], parked: str | None = None) -> Contact:
    from chalicelib.domain.models import (
        ContentType,
        Direction,
        Party,
        Resolution,
        RoutingDecision,
    )

    return Contact(id="ct_event", direction=Direction.EVENT, provider="hub", channel=Channel.EVENT,
                   provider_message_id="shop:parcel-1", account="api:shop", sender=Party(), received_at=NOW,
                   content_type=ContentType.TEXT, customer_id="cus_1", case_id="",
                   resolution=Resolution(customer_id="cus_1", created_customer=False, rule="event"),
                   routing=RoutingDecision(destinations=destinations, parked=parked))
