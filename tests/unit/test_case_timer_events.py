"""Acting on fired case timers (`CaseTimerHandler`): a timer of a closed case, or one the case no
longer holds, is stale; an auto-close after later activity re-arms at the new end of inactivity;
otherwise each timer kind acts once: its business event runs through the event rules (a recording
`process_addressed` stands in for the event processor) and the destinations that take case timer
events get it. Also which connectors take those events, and the best-effort cancel on close."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.adapters.blobs.local import LocalBlobStore
from chalicelib.adapters.connectors.base import CASE_EVENTS, CASE_TIMER_EVENTS, ConnectorRuntime
from chalicelib.adapters.connectors.registry import CONNECTORS
from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.adapters.timers.base import TimerPort
from chalicelib.domain.business_events import TimerFired
from chalicelib.domain.identity_rules import IdentityRules
from chalicelib.domain.models import (
    CaseStatus,
    CaseStatusChange,
    Channel,
    CustomerEvent,
    Handle,
    InboundMessage,
    Sender,
)
from chalicelib.errors import TransientError
from chalicelib.hubconfig import parse_config
from chalicelib.observability import Counters
from chalicelib.secrets import SecretResolver
from chalicelib.service.case_sync import CaseSync, SyncOutcome
from chalicelib.service.case_timer_events import CaseTimerHandler, TimerOutcome
from chalicelib.service.case_timers import schedule_name, timer_event_id
from chalicelib.service.commands import close_case
from chalicelib.service.identity import IdentifierCache
from chalicelib.service.process import Processor
from tests.support.fakes import Clock, MemoryQueue

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SLA_DUE = T0 + timedelta(hours=24)
CLOSE_DUE = T0 + timedelta(hours=168)

CONFIG = parse_config("""
identity: {default_region: DE}
destinations: [{name: outbox, type: outbox}]
cases: {window_hours: 72, auto_close_after_hours: 168}
routing:
  default: {queue: general}
  sla: {hours: 24}
  rules:
    - {name: call-back, when: {text: {contains: [rückruf]}}, then: {follow_up_hours: 48}}
""")


class RecordingTimers(TimerPort):
    def __init__(self) -> None:
        self.armed: dict[str, datetime] = {}
        self.cancelled: list[str] = []
        self.fail_cancel = False

    def arm(self, timers):
        for timer in timers:
            self.armed.setdefault(timer.name, timer.due_at)

    def cancel(self, names):
        if self.fail_cancel:
            raise TransientError("scheduler unavailable")
        self.cancelled += names
        for name in names:
            self.armed.pop(name, None)


class RecordingRules:
    """`EventProcessor.process_addressed` as far as the handler can tell: it acts once per event id."""

    def __init__(self) -> None:
        self.calls: list = []
        self.done: set[str] = set()

    def __call__(self, event, customer_id: str) -> str:
        self.calls.append((event, customer_id))
        if event.id in self.done:
            return "duplicate"
        self.done.add(event.id)
        return "event_processed"


class World:
    def __init__(self, tmp_path) -> None:
        self.clock = Clock(T0)
        self.store = SqliteStore(":memory:")
        self.delivery = MemoryQueue()
        self.timers = RecordingTimers()
        self.rules = RecordingRules()
        self.processor = Processor(
            store=self.store, delivery_queue=MemoryQueue(), config=CONFIG, cache=IdentifierCache(),
            default_region=lambda provider, account: "DE", clock=self.clock,
            blobs=LocalBlobStore(str(tmp_path / "b")), rules=IdentityRules(CONFIG.identity),
            timers=lambda: self.timers,
        )
        self.handler = CaseTimerHandler(
            store=self.store, config=CONFIG, timers=lambda: self.timers, process_addressed=self.rules,
            delivery_queue=lambda: self.delivery, case_event_destinations=lambda: ["outbox"],
            case_timer_destinations=lambda: ["outbox"], clock=self.clock,
        )

    def contact(self, message_id: str, at: datetime, text: str = "Mein Internet geht nicht"):
        self.clock.now = at
        return self.processor.process(InboundMessage(
            provider="twilio", channel=Channel.SMS, provider_message_id=message_id, account="+14155550100",
            sender=Sender(handles=[Handle(kind="phone", value="0151 23456789")]), text=text, received_at=at))

    def fire(self, case_id: str, customer_id: str, timer: str, due: datetime, *, at: datetime | None = None) -> str:
        self.clock.now = at or due
        return self.handler.handle(TimerFired(case_id=case_id, customer_id=customer_id, timer=timer, due_at=due))

    def delivered(self) -> list[tuple[str, str, str | None]]:
        events = [CustomerEvent.model_validate_json(m.body) for m in self.delivery.sent]
        return [(e.event_type, e.case_id, e.reason) for e in events]


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def test_a_timer_of_a_closed_case_is_stale(world):
    opened = world.contact("SM1", T0)
    close_case(world.store, opened.case_id, now=T0 + timedelta(hours=1), settings=CONFIG.cases)

    assert world.fire(opened.case_id, opened.customer_id, "sla", SLA_DUE) == TimerOutcome.STALE
    assert world.rules.calls == [] and world.delivery.sent == []


def test_a_timer_whose_due_time_the_case_no_longer_holds_is_stale(world):
    opened = world.contact("SM1", T0)

    earlier = SLA_DUE - timedelta(hours=1)
    assert world.fire(opened.case_id, opened.customer_id, "sla", earlier) == TimerOutcome.STALE
    assert world.fire(opened.case_id, opened.customer_id, "follow_up", SLA_DUE) == TimerOutcome.STALE
    assert world.fire("case_unknown", opened.customer_id, "sla", SLA_DUE) == TimerOutcome.STALE
    assert world.rules.calls == [] and world.delivery.sent == []


def test_an_sla_timer_of_a_case_already_inactive_is_stale(world):
    opened = world.contact("SM1", T0)
    late = CLOSE_DUE + timedelta(hours=1)  # the pump was down for a week: the case closed meanwhile

    assert world.fire(opened.case_id, opened.customer_id, "sla", SLA_DUE, at=late) == TimerOutcome.STALE


def test_an_auto_close_after_later_activity_re_arms_once_per_inactivity_window(world):
    opened = world.contact("SM1", T0)
    world.contact("SM2", T0 + timedelta(hours=50))
    new_due = T0 + timedelta(hours=50 + 168)

    assert world.fire(opened.case_id, opened.customer_id, "auto_close", CLOSE_DUE) == TimerOutcome.REARMED
    assert schedule_name(opened.case_id, "auto_close", new_due) in world.timers.armed
    assert world.store.get_case(opened.case_id).due["auto_close"] == new_due
    assert world.store.get_customer(opened.customer_id).open_case.due["auto_close"] == new_due
    assert world.rules.calls == [] and world.delivery.sent == []
    # The old timer firing again (at least once) is now stale; the new one closes the case.
    assert world.fire(opened.case_id, opened.customer_id, "auto_close", CLOSE_DUE, at=new_due) == TimerOutcome.STALE
    assert world.fire(opened.case_id, opened.customer_id, "auto_close", new_due) == TimerOutcome.ACTED
    assert world.store.get_case(opened.case_id).status == CaseStatus.CLOSED


@pytest.mark.parametrize(("timer", "event_type", "text"), [
    ("sla", "case.sla_breached", "Mein Internet geht nicht"),
    ("follow_up", "case.follow_up_due", "Bitte um Rückruf"),
])
def test_an_sla_or_follow_up_timer_acts_once(world, timer, event_type, text):
    opened = world.contact("SM1", T0, text)
    due = world.store.get_case(opened.case_id).due[timer]

    assert world.fire(opened.case_id, opened.customer_id, timer, due) == TimerOutcome.ACTED
    assert world.fire(opened.case_id, opened.customer_id, timer, due) == TimerOutcome.ACTED  # fired twice

    (event, customer_id), (again, _) = world.rules.calls
    assert (event.type, event.id, event.source) == (event_type, timer_event_id(opened.case_id, timer, due), "timer")
    assert again.id == event.id and len(world.rules.done) == 1, "the event rules act once"
    assert customer_id == opened.customer_id and event.customer.customer_id == opened.customer_id
    assert event.occurred_at == due
    assert event.data["case_id"] == opened.case_id and event.data["queue"] == "general"
    assert world.delivered() == [(event_type, opened.case_id, None)], "the destination hears it once"
    case = world.store.get_case(opened.case_id)
    assert case.status == CaseStatus.OPEN and case.due[timer] == due


def test_an_auto_close_closes_the_case_as_inactive_and_acts_once(world):
    opened = world.contact("SM1", T0, "Bitte um Rückruf")
    follow_up = world.store.get_case(opened.case_id).due["follow_up"]

    assert world.fire(opened.case_id, opened.customer_id, "auto_close", CLOSE_DUE) == TimerOutcome.ACTED
    case = world.store.get_case(opened.case_id)
    assert (case.status, case.close_reason, case.closed_at) == (CaseStatus.CLOSED, "inactive", CLOSE_DUE)
    assert world.store.get_customer(opened.customer_id).open_case is None
    assert sorted(world.timers.cancelled) == sorted([schedule_name(opened.case_id, "sla", SLA_DUE),
                                                     schedule_name(opened.case_id, "follow_up", follow_up)])
    assert world.delivered() == [("case.closed", opened.case_id, "inactive"),
                                 ("case.auto_closed", opened.case_id, "inactive")]
    # Fired again (or retried after the close committed): the same event, nothing sent twice.
    assert world.fire(opened.case_id, opened.customer_id, "auto_close", CLOSE_DUE) == TimerOutcome.ACTED
    assert [e.type for e, _ in world.rules.calls] == ["case.auto_closed"] * 2 and len(world.rules.done) == 1
    assert len(world.delivery.sent) == 2
    # Its other timers, should they still fire, find the case closed.
    assert world.fire(opened.case_id, opened.customer_id, "follow_up", follow_up) == TimerOutcome.STALE


def test_a_timer_follows_its_case_to_the_customer_who_owns_it(world):
    opened = world.contact("SM1", T0)

    world.fire(opened.case_id, "cus_absorbed_in_a_merge", "sla", SLA_DUE)
    [(_, customer_id)] = world.rules.calls
    assert customer_id == opened.customer_id


def test_closing_a_case_cancels_its_timers_and_a_failed_cancel_does_not_fail_the_close(world):
    first = world.contact("SM1", T0)
    closed = close_case(world.store, first.case_id, now=T0 + timedelta(hours=1), settings=CONFIG.cases,
                        timers=lambda: world.timers)
    assert closed.status == CaseStatus.CLOSED
    assert sorted(world.timers.cancelled) == sorted([schedule_name(first.case_id, "sla", SLA_DUE),
                                                     schedule_name(first.case_id, "auto_close", CLOSE_DUE)])

    second = world.contact("SM2", T0 + timedelta(hours=2))
    world.timers.fail_cancel = True
    closed = close_case(world.store, second.case_id, now=T0 + timedelta(hours=3), settings=CONFIG.cases,
                        timers=lambda: world.timers)
    assert closed.status == CaseStatus.CLOSED and world.store.get_case(second.case_id).status == CaseStatus.CLOSED


def test_only_the_generic_envelope_connectors_take_case_timer_events():
    runtime = ConnectorRuntime(data_dir="/nonexistent")
    taking = set()
    for key, cls in CONNECTORS.items():
        if cls.case_timer_events:
            taking.add(key)
    assert taking == {"webhook", "outbox", "eventbridge"}
    assert not CASE_TIMER_EVENTS & CASE_EVENTS, "vendors that take case events must not get these"
    outbox = CONNECTORS["outbox"]
    on = outbox("outbox", outbox.Settings(), SecretResolver({}), runtime)
    off = outbox("outbox", outbox.Settings(case_events=False), SecretResolver({}), runtime)
    assert all(on.takes_customer_event(t) for t in CASE_TIMER_EVENTS)
    assert not any(off.takes_customer_event(t) for t in CASE_TIMER_EVENTS)


class _Side:
    class settings:  # noqa: N801 - the callback side's settings, as the case sync reads them
        status = True


def test_a_ticket_closed_by_its_vendor_cancels_the_case_timers_and_reopened_arms_them_again(world):
    opened = world.contact("SM1", T0, "Bitte um Rückruf")
    world.store.put_case_ref(opened.case_id, "desk", "T1")
    follow_up = world.store.get_case(opened.case_id).due["follow_up"]
    sync = CaseSync(store=world.store, callbacks=lambda name: _Side(), policy=CONFIG.cases, two_way=lambda: ["desk"],
                    case_event_destinations=list, delivery_queue=lambda: world.delivery, counters=Counters(emit_emf=False),
                    clock=world.clock, timers=lambda: world.timers)

    def change(state: str, at: datetime) -> str:
        world.clock.now = at
        outcome, _ = sync.apply(CaseStatusChange(destination="desk", ticket="T1", event_id=f"{state}-{at:%H}",
                                                 state=state, occurred_at=at, received_at=at))
        return outcome

    assert change("closed", T0 + timedelta(hours=1)) == SyncOutcome.CLOSED
    assert world.timers.armed == {}, "its SLA, follow-up and auto-close timers are cancelled"

    reopened_at = T0 + timedelta(hours=30)
    assert change("open", reopened_at) == SyncOutcome.REOPENED
    new_close = reopened_at + timedelta(hours=168)
    assert world.timers.armed == {schedule_name(opened.case_id, "follow_up", follow_up): follow_up,
                                  schedule_name(opened.case_id, "auto_close", new_close): new_close}
    assert world.store.get_case(opened.case_id).due == {"sla": SLA_DUE, "follow_up": follow_up,
                                                        "auto_close": new_close}
    assert world.fire(opened.case_id, opened.customer_id, "auto_close", new_close) == TimerOutcome.ACTED
