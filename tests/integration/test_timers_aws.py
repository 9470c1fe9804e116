"""Timers on moto's EventBridge Scheduler and SQS: a case's timers become schedules holding the
timer as their input, the timers Lambda's endpoint puts a fired timer on the FIFO events queue
once, and cancelling is idempotent. The process worker creates two schedules per new case and
none for a contact joining an open case; closing the case deletes them. (moto never fires a schedule: the test hands the stored
input to the endpoint, as Scheduler would.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.adapters.blobs.local import LocalBlobStore
from chalicelib.adapters.queue.sqs import SqsQueue
from chalicelib.adapters.store.dynamodb import DynamoDbStore
from chalicelib.adapters.timers.scheduler import SchedulerTimers
from chalicelib.domain.identity_rules import IdentityRules
from chalicelib.domain.models import Channel, Handle, InboundMessage, Sender
from chalicelib.hubconfig import parse_config
from chalicelib.service.case_timers import (
    TimerEndpoint,
    case_timers,
    timer_fired_payload,
)
from chalicelib.service.commands import close_case
from chalicelib.service.identity import IdentifierCache
from chalicelib.service.process import Processor
from tests.support.aws import create_table
from tests.support.fakes import MemoryQueue

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ROLE = "arn:aws:iam::123456789012:role/hub-it-timers-scheduler"
TARGET = "arn:aws:lambda:us-east-1:123456789012:function:omnichannel-hub-it-timers"
DLQ = "arn:aws:sqs:us-east-1:123456789012:hub-it-timers-dlq"


@pytest.fixture
def setup(aws, calls, unique):
    scheduler = calls.watch(aws.client("scheduler"))
    sqs = aws.client("sqs")
    group = unique("hub-it")
    scheduler.create_schedule_group(Name=group)
    url = sqs.create_queue(QueueName=unique("hub-it-events") + ".fifo",
                           Attributes={"FifoQueue": "true", "DeduplicationScope": "messageGroup",
                                       "FifoThroughputLimit": "perMessageGroupId"})["QueueUrl"]
    events = SqsQueue(sqs, url)
    endpoint = TimerEndpoint(lambda: events, lambda: NOW)
    timers = SchedulerTimers(scheduler, group=group, role_arn=ROLE, target_arn=TARGET, dead_letter_arn=DLQ,
                             fire_now=endpoint.enqueue, clock=lambda: NOW)
    calls.clear()
    return scheduler, sqs, url, group, timers, endpoint


def _bodies(sqs, url) -> list[dict]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_a_new_cases_timers_cost_one_create_each_and_arming_again_changes_nothing(setup, calls):
    scheduler, _, _, group, timers, _ = setup
    due = {"sla": NOW + timedelta(hours=24), "auto_close": NOW + timedelta(hours=168)}
    armed = case_timers("case_1", "cus_1", due)
    timers.arm(armed)
    assert calls.counts() == {"CreateSchedule": 2}
    timers.arm(armed)  # a retried worker: conflicts, which count as armed
    listed = scheduler.list_schedules(GroupName=group)["Schedules"]
    assert sorted(s["Name"] for s in listed) == sorted(t.name for t in armed)
    stored = scheduler.get_schedule(GroupName=group, Name=armed[0].name)
    assert stored["ScheduleExpression"] == "at(2026-03-03T09:30:00)"
    assert stored["ActionAfterCompletion"] == "DELETE"
    assert stored["Target"]["DeadLetterConfig"] == {"Arn": DLQ}
    assert json.loads(json.loads(stored["Target"]["Input"])["payload"]) == json.loads(
        timer_fired_payload("case_1", "cus_1", "sla", due["sla"]))


def test_a_fired_schedule_reaches_the_events_queue_once(setup):
    scheduler, sqs, url, group, timers, endpoint = setup
    [timer] = case_timers("case_2", "cus_2", {"sla": NOW + timedelta(hours=2)})
    timers.arm([timer])
    lambda_event = json.loads(scheduler.get_schedule(GroupName=group, Name=timer.name)["Target"]["Input"])
    endpoint.fire(lambda_event)
    endpoint.fire(lambda_event)  # Scheduler retried after a lost answer
    assert _bodies(sqs, url) == [json.loads(timer.payload)]


def test_a_timer_due_now_skips_the_scheduler(setup, calls):
    scheduler, sqs, url, group, timers, _ = setup
    [timer] = case_timers("case_3", "cus_3", {"follow_up": NOW + timedelta(seconds=10)})
    timers.arm([timer])
    assert calls.counts()["CreateSchedule"] == 0
    assert scheduler.list_schedules(GroupName=group)["Schedules"] == []
    assert _bodies(sqs, url) == [json.loads(timer.payload)]


def test_cancel_deletes_the_schedules_and_a_second_cancel_is_fine(setup, calls):
    scheduler, _, _, group, timers, _ = setup
    armed = case_timers("case_4", "cus_4", {"sla": NOW + timedelta(hours=24), "auto_close": NOW + timedelta(days=7)})
    timers.arm(armed)
    names = [t.name for t in armed]
    timers.cancel(names)
    timers.cancel(names)
    assert scheduler.list_schedules(GroupName=group)["Schedules"] == []
    assert calls.counts()["DeleteSchedule"] == 4


# --- the process worker arms them -------------------------------------------------------------------

PROCESS_CONFIG = """
identity: {default_region: DE}
destinations: [{name: outbox, type: outbox}]
cases: {window_hours: 72, auto_close_after_hours: 168}
routing: {sla: {hours: 24}}
"""


def test_a_new_case_creates_two_schedules_a_joining_contact_none_and_closing_deletes_them(setup, calls, aws,
                                                                                        unique, tmp_path):
    scheduler, _, _, group, timers, _ = setup
    dynamodb = aws.client("dynamodb")
    table = unique("hub-it")
    create_table(dynamodb, table)
    config = parse_config(PROCESS_CONFIG)
    store = DynamoDbStore(table, dynamodb)
    processor = Processor(
        store=store, delivery_queue=MemoryQueue(), config=config, cache=IdentifierCache(),
        default_region=lambda provider, account: "DE", clock=lambda: NOW, blobs=LocalBlobStore(str(tmp_path)),
        rules=IdentityRules(config.identity), timers=lambda: timers,
    )

    def contact(message_id: str, at: datetime):
        return processor.process(InboundMessage(
            provider="twilio", channel=Channel.SMS, provider_message_id=message_id, account="+14155550100",
            sender=Sender(handles=[Handle(kind="phone", value="0151 23456789")]), text="Hallo", received_at=at))

    calls.clear()
    opened = contact("SM1", NOW)
    assert calls.counts() == {"CreateSchedule": 2}
    listed = {s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"]}
    assert listed == {t.name for t in case_timers(opened.case_id, opened.customer_id, store.get_case(opened.case_id).due)}

    calls.clear()
    joined = contact("SM2", NOW + timedelta(hours=1))
    assert joined.case_id == opened.case_id
    assert calls.counts() == {}, "a contact joining the open case makes no Scheduler call"

    calls.clear()
    close_case(store, opened.case_id, now=NOW + timedelta(hours=2), settings=config.cases, timers=lambda: timers)
    assert calls.counts() == {"DeleteSchedule": 2}
    assert scheduler.list_schedules(GroupName=group)["Schedules"] == []
