"""The process step arms the case timers before its commit: a new case gets its SLA and auto-close
timers and carries their due times with routing's queue, priority and tags; a contact joining the
open case arms nothing (no timer call); a routing follow-up arms one; a retried message arms the
same names again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.adapters.blobs.local import LocalBlobStore
from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.adapters.timers.base import Timer, TimerPort
from chalicelib.domain.business_events import TimerFired
from chalicelib.domain.identity_rules import IdentityRules
from chalicelib.domain.models import Channel, Handle, InboundMessage, Priority, Sender
from chalicelib.errors import QueueUnavailableError
from chalicelib.hubconfig import parse_config
from chalicelib.service.case_timers import schedule_name
from chalicelib.service.identity import IdentifierCache
from chalicelib.service.process import Outcome, Processor
from tests.support.fakes import Clock, MemoryQueue

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

CONFIG = parse_config("""
identity: {default_region: DE}
destinations: [{name: outbox, type: outbox}]
cases: {window_hours: 72, auto_close_after_hours: 168}
routing:
  default: {queue: general}
  sla: {hours: 24, by_priority: {high: 4}}
  rules:
    - {name: billing, when: {text: {contains: [rechnung]}}, then: {queue: billing, priority: high, tags: [billing]}}
    - {name: call-back, when: {text: {contains: [rückruf]}}, then: {follow_up_hours: 48, tags: [callback]}}
""")


class RecordingTimers(TimerPort):
    def __init__(self) -> None:
        self.calls: list[list[Timer]] = []
        self.armed: dict[str, Timer] = {}

    def arm(self, timers):
        self.calls.append(list(timers))
        for timer in timers:
            self.armed.setdefault(timer.name, timer)

    def cancel(self, names):
        for name in names:
            self.armed.pop(name, None)


def message(message_id: str, text: str, at: datetime) -> InboundMessage:
    return InboundMessage(
        provider="twilio", channel=Channel.SMS, provider_message_id=message_id, account="+14155550100",
        sender=Sender(handles=[Handle(kind="phone", value="0151 23456789")]), text=text, received_at=at,
    )


@pytest.fixture
def parts(tmp_path):
    store = SqliteStore(":memory:")
    queue = MemoryQueue()
    timers = RecordingTimers()
    processor = Processor(
        store=store, delivery_queue=queue, config=CONFIG, cache=IdentifierCache(),
        default_region=lambda provider, account: "DE", clock=Clock(T0), blobs=LocalBlobStore(str(tmp_path / "b")),
        rules=IdentityRules(CONFIG.identity), timers=lambda: timers,
    )
    return processor, store, queue, timers


def test_a_new_case_arms_its_sla_and_auto_close_and_carries_routings_decision(parts):
    processor, store, _, timers = parts
    result = processor.process(message("SM1", "Frage zur Rechnung", T0))

    assert len(timers.calls) == 1
    due = {"sla": T0 + timedelta(hours=4), "auto_close": T0 + timedelta(hours=168)}
    assert sorted(timers.armed) == sorted(schedule_name(result.case_id, t, at) for t, at in due.items())
    fired = {TimerFired.model_validate_json(t.payload).timer: TimerFired.model_validate_json(t.payload)
             for t in timers.armed.values()}
    assert {name: f.due_at for name, f in fired.items()} == due
    assert {f.customer_id for f in fired.values()} == {result.customer_id}
    case = store.get_case(result.case_id)
    assert case.due == due
    assert (case.queue, case.priority, case.tags) == ("billing", Priority.HIGH, ["billing"])
    summary = store.get_customer(result.customer_id).open_case
    assert (summary.due, summary.queue, summary.priority) == (due, "billing", Priority.HIGH)


def test_a_contact_joining_the_open_case_arms_nothing_and_keeps_its_due_times(parts):
    processor, store, _, timers = parts
    first = processor.process(message("SM1", "Frage zur Rechnung", T0))
    second = processor.process(message("SM2", "noch etwas", T0 + timedelta(hours=1)))

    assert second.case_id == first.case_id
    assert len(timers.calls) == 1, "joining an open case costs no timer call"
    case = store.get_case(first.case_id)
    assert case.due == {"sla": T0 + timedelta(hours=4), "auto_close": T0 + timedelta(hours=168)}
    assert (case.queue, case.priority) == ("billing", Priority.HIGH), "the opening decision stays"
    assert case.contact_count == 2


def test_a_routing_follow_up_arms_one_timer_on_the_open_case(parts):
    processor, store, _, timers = parts
    first = processor.process(message("SM1", "hallo", T0))
    later = T0 + timedelta(hours=2)
    processor.process(message("SM2", "Bitte um Rückruf", later))

    assert len(timers.calls) == 2
    [follow_up] = timers.calls[1]
    assert follow_up.name == schedule_name(first.case_id, "follow_up", later + timedelta(hours=48))
    case = store.get_case(first.case_id)
    assert case.due == {"sla": T0 + timedelta(hours=24), "auto_close": T0 + timedelta(hours=168),
                        "follow_up": later + timedelta(hours=48)}
    assert case.tags == ["callback"]


def test_a_retried_message_arms_the_same_timers(parts):
    processor, store, queue, timers = parts
    queue.fail_sends = 1  # the fan-out fails after the timers were armed: nothing is committed
    with pytest.raises(QueueUnavailableError):
        processor.process(message("SM1", "Frage zur Rechnung", T0))
    result = processor.process(message("SM1", "Frage zur Rechnung", T0))

    assert result.outcome == Outcome.CONTACT_CREATED
    assert [sorted(t.name for t in call) for call in timers.calls] == [sorted(timers.armed)] * 2
    assert store.get_case(result.case_id).due.keys() == {"sla", "auto_close"}


def test_without_a_timers_port_cases_carry_no_due_times(tmp_path):
    processor = Processor(
        store=SqliteStore(":memory:"), delivery_queue=MemoryQueue(), config=CONFIG, cache=IdentifierCache(),
        default_region=lambda provider, account: "DE", clock=Clock(T0), blobs=LocalBlobStore(str(tmp_path / "b")),
        rules=IdentityRules(CONFIG.identity),
    )
    result = processor.process(message("SM1", "Frage zur Rechnung", T0))
    case = processor.store.get_case(result.case_id)
    assert case.due == {}
    assert case.queue == "billing"
