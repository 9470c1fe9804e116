"""Case timers: due times, names and ids, and the two ways a due timer reaches the events queue
(the timers Lambda's endpoint on AWS, the pump of the embedded runtime)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from chalicelib.adapters.timers.base import Timer
from chalicelib.adapters.timers.local import LocalTimers
from chalicelib.domain.ids import group_id
from chalicelib.domain.models import Priority
from chalicelib.domain.policies import CasePolicy
from chalicelib.domain.stored import CaseSummary
from chalicelib.errors import MalformedPayloadError, QueueUnavailableError
from chalicelib.routing.settings import SlaSettings
from chalicelib.service.case_timers import (
    TimerEndpoint,
    TimerPump,
    case_timers,
    due_times,
    fired_timer_action,
    schedule_name,
    timer_event_id,
    timer_fired_payload,
    timer_message,
)
from tests.support.fakes import MemoryQueue

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SCHEDULER_NAME = re.compile(r"^[0-9a-zA-Z_.-]{1,64}$")


def _case(**changes) -> CaseSummary:
    return CaseSummary(id="case_01JABCDEFGHJKMNPQRSTVWXYZ0", opened_at=T0, last_activity_at=T0 + timedelta(hours=2),
                       **changes)


def _timer(name: str, due: datetime, customer: str = "cus_1") -> Timer:
    return Timer(name=name, due_at=due, payload=timer_fired_payload("case_1", customer, "sla", due))


# --- due times ---------------------------------------------------------------------------------


def test_due_times_count_sla_from_opening_by_priority_and_auto_close_from_last_activity():
    sla = SlaSettings(hours=24, by_priority={"urgent": 2})
    policy = CasePolicy(auto_close_after_hours=72)
    due = due_times(_case(), sla=sla, policy=policy, now=T0 + timedelta(hours=5))
    assert due == {"sla": T0 + timedelta(hours=24), "auto_close": T0 + timedelta(hours=74)}
    urgent = due_times(_case(), sla=sla, policy=policy, now=T0, priority=Priority.URGENT)
    assert urgent["sla"] == T0 + timedelta(hours=2)


def test_a_follow_up_counts_from_now():
    now = T0 + timedelta(hours=5)
    due = due_times(_case(), sla=SlaSettings(), policy=CasePolicy(), now=now, follow_up_hours=48)
    assert due["follow_up"] == now + timedelta(hours=48)


def test_due_times_are_utc_and_refuse_naive_or_nonsense_input():
    berlin = timezone(timedelta(hours=1))
    due = due_times(_case(), sla=SlaSettings(), policy=CasePolicy(), now=T0.astimezone(berlin), follow_up_hours=1)
    assert all(at.utcoffset() == timedelta(0) for at in due.values())
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        due_times(_case(), sla=SlaSettings(), policy=CasePolicy(), now=T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="follow_up_hours must be positive"):
        due_times(_case(), sla=SlaSettings(), policy=CasePolicy(), now=T0, follow_up_hours=0)


# --- names and ids -----------------------------------------------------------------------------


def test_the_event_id_names_case_timer_and_due_second_in_utc():
    due = datetime(2026, 3, 2, 11, 5, 9, tzinfo=timezone(timedelta(hours=2)))
    assert timer_event_id("case_1", "sla", due) == "timer:case_1:sla:20260302T090509Z"


def test_the_schedule_name_is_readable_and_within_schedulers_rule():
    name = schedule_name("case_01JABCDEFGHJKMNPQRSTVWXYZ0", "follow_up", T0)
    assert name == f"case_01JABCDEFGHJKMNPQRSTVWXYZ0-follow_up-{int(T0.timestamp())}"
    assert SCHEDULER_NAME.match(name)


@pytest.mark.parametrize("case_id", ["x" * 80, "case/with:odd chars", "ä" * 10])
def test_odd_or_long_case_ids_still_give_valid_distinct_names(case_id):
    name = schedule_name(case_id, "auto_close", T0)
    assert SCHEDULER_NAME.match(name)
    assert name.endswith(f"-auto_close-{int(T0.timestamp())}")
    assert name != schedule_name(case_id + "2", "auto_close", T0)


def test_names_differ_by_timer_and_due_time():
    names = {schedule_name("case_1", t, T0 + timedelta(seconds=s)) for t in ("sla", "follow_up") for s in (0, 1)}
    assert len(names) == 4


def test_the_timer_fired_payload_has_the_agreed_shape():
    payload = json.loads(timer_fired_payload("case_1", "cus_1", "sla", T0))
    assert payload == {"kind": "timer", "case_id": "case_1", "customer_id": "cus_1", "timer": "sla",
                       "due_at": "2026-03-02T09:30:00Z"}
    with pytest.raises(ValueError, match="timer must be one of"):
        timer_fired_payload("case_1", "cus_1", "reminder", T0)  # type: ignore[arg-type]


def test_case_timers_are_one_named_timer_per_due_time():
    due = {"sla": T0 + timedelta(hours=24), "auto_close": T0 + timedelta(hours=168)}
    timers = case_timers("case_1", "cus_1", due)
    assert [(t.name, t.due_at) for t in timers] == [(schedule_name("case_1", k, v), v) for k, v in due.items()]
    assert json.loads(timers[1].payload)["timer"] == "auto_close"


def test_a_timer_refuses_a_name_scheduler_would_refuse_and_a_naive_due_time():
    with pytest.raises(ValueError, match="name"):
        Timer(name="a b", due_at=T0, payload="{}")
    with pytest.raises(ValueError, match="timezone-aware"):
        Timer(name="a", due_at=T0.replace(tzinfo=None), payload="{}")


# --- acting on a fired timer -------------------------------------------------------------------


def _fired(timer="sla", *, due=T0, case_open=True, armed=T0, last_activity=T0 - timedelta(hours=200), now=T0):
    return fired_timer_action(timer=timer, due_at=due, case_open=case_open, armed_due_at=armed,
                              last_activity_at=last_activity, policy=CasePolicy(auto_close_after_hours=168), now=now)


def test_a_timer_of_a_closed_case_or_of_a_replaced_due_time_is_stale():
    assert _fired(case_open=False).action == "stale"
    assert _fired(armed=T0 + timedelta(hours=1)).action == "stale"
    assert _fired(armed=None).action == "stale"
    assert _fired().action == "act"


def test_auto_close_acts_on_an_inactive_case_and_re_arms_after_later_activity():
    assert _fired("auto_close").action == "act"
    # Exactly at the end of inactivity: the case is inactive (no re-arm at the same instant, forever).
    assert _fired("auto_close", last_activity=T0 - timedelta(hours=168)).action == "act"
    later = _fired("auto_close", last_activity=T0 - timedelta(hours=10))
    assert (later.action, later.rearm_at) == ("rearm", T0 + timedelta(hours=158))


# --- onto the events queue ---------------------------------------------------------------------


def test_a_timer_message_is_its_payload_in_the_customers_group_deduplicated_by_name():
    timer = _timer("case_1-sla-1", T0)
    message = timer_message(timer)
    assert message.body == timer.payload
    assert message.group == group_id("customer:cus_1")
    assert message.dedupe_id == hashlib.sha256(b"timer:case_1-sla-1").hexdigest()


@pytest.mark.parametrize("payload", ["not json", "[1]", '{"kind": "timer"}', '{"customer_id": ""}'])
def test_a_payload_without_a_customer_cannot_be_queued(payload):
    with pytest.raises(MalformedPayloadError, match="t1"):
        timer_message(Timer(name="t1", due_at=T0, payload=payload))


def test_the_endpoint_enqueues_the_fired_timer_once_per_name():
    queue = MemoryQueue("events")
    endpoint = TimerEndpoint(lambda: queue, lambda: T0 + timedelta(seconds=30))
    event = json.loads(_timer("case_1-sla-1", T0).model_dump_json())  # what Scheduler hands the Lambda
    endpoint.fire(event)
    endpoint.fire(event)  # Scheduler's at-least-once retry
    assert [m.body for m in queue.sent] == [_timer("case_1-sla-1", T0).payload]


def test_the_endpoint_refuses_an_event_that_is_not_a_timer_naming_the_field():
    endpoint = TimerEndpoint(lambda: MemoryQueue(), lambda: T0)
    with pytest.raises(MalformedPayloadError, match="due_at"):
        endpoint.fire({"name": "t1", "payload": "{}"})


def test_the_pump_fires_due_timers_earliest_first_and_leaves_later_ones(tmp_path):
    timers = LocalTimers(str(tmp_path / "timers.db"))
    timers.arm([_timer("c", T0 + timedelta(minutes=3)), _timer("a", T0 + timedelta(minutes=1)),
                _timer("b", T0 + timedelta(minutes=2)), _timer("later", T0 + timedelta(hours=1))])
    queue = MemoryQueue("events")
    pump = TimerPump(timers, lambda: queue)
    assert pump.run_once(T0 + timedelta(minutes=5)) == 3
    assert [json.loads(m.body)["due_at"] for m in queue.sent] == [
        "2026-03-02T09:31:00Z", "2026-03-02T09:32:00Z", "2026-03-02T09:33:00Z"]
    assert [t.name for t in timers.due(T0 + timedelta(days=1), 10)] == ["later"]
    assert pump.run_once(T0 + timedelta(minutes=5)) == 0


def test_the_pump_drains_a_backlog_in_batches(tmp_path):
    timers = LocalTimers(str(tmp_path / "timers.db"))
    timers.arm([_timer(f"t{i:03d}", T0 + timedelta(seconds=i), customer=f"cus_{i}") for i in range(25)])
    queue = MemoryQueue("events")
    assert TimerPump(timers, lambda: queue, batch=10).run_once(T0 + timedelta(minutes=1)) == 25
    assert len(queue.sent) == 25 and timers.count() == 0


def test_a_queue_failure_keeps_the_timers_armed_for_the_next_run(tmp_path):
    timers = LocalTimers(str(tmp_path / "timers.db"))
    timers.arm([_timer("a", T0)])
    queue = MemoryQueue("events", fail_sends=1)
    pump = TimerPump(timers, lambda: queue)
    with pytest.raises(QueueUnavailableError):
        pump.run_once(T0)
    assert timers.count() == 1
    assert pump.run_once(T0) == 1 and len(queue.sent) == 1


def test_a_timer_that_can_never_be_queued_does_not_block_the_others(tmp_path):
    timers = LocalTimers(str(tmp_path / "timers.db"))
    timers.arm([Timer(name="broken", due_at=T0, payload="{}"), _timer("good", T0 + timedelta(seconds=1))])
    queue = MemoryQueue("events")
    assert TimerPump(timers, lambda: queue).run_once(T0 + timedelta(seconds=5)) == 1
    assert [json.loads(m.body)["customer_id"] for m in queue.sent] == ["cus_1"]
    assert timers.count() == 0


# --- settings ----------------------------------------------------------------------------------


def test_the_scheduler_settings_come_from_the_deployed_environment():
    from chalicelib.settings import Settings

    settings = Settings.from_environ({
        "HUB_STAGE": "prod", "HUB_TIMERS_ROLE_ARN": "arn:role", "HUB_TIMERS_FUNCTION_ARN": "arn:fn",
        "HUB_TIMERS_DLQ_ARN": "arn:dlq",
    })
    assert (settings.timers_group, settings.timers_role_arn, settings.timers_function_arn, settings.timers_dlq_arn) == (
        "hub-prod", "arn:role", "arn:fn", "arn:dlq")
    assert Settings.from_environ({"HUB_STAGE": "prod", "HUB_TIMERS_GROUP": "custom"}).timers_group == "custom"
