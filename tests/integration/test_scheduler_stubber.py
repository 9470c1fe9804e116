"""The Scheduler timers' exact API calls, checked by botocore's Stubber and against the scheduler
service model itself (required members, enums, lengths, patterns and ranges: botocore's own
validation checks only types and minimum lengths), and every error branch."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from chalicelib.adapters.timers.base import Timer
from chalicelib.adapters.timers.scheduler import SchedulerTimers
from chalicelib.errors import ConfigError, TransientError
from chalicelib.service.case_timers import case_timers

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ROLE = "arn:aws:iam::123456789012:role/hub-test-timers-scheduler"
TARGET = "arn:aws:lambda:eu-central-1:123456789012:function:omnichannel-hub-test-timers"
DLQ = "arn:aws:sqs:eu-central-1:123456789012:hub-test-timers-dlq"


@pytest.fixture
def client():
    return boto3.client("scheduler", region_name="eu-central-1", aws_access_key_id="test",
                        aws_secret_access_key="test", config=Config(retries={"total_max_attempts": 1}))


@pytest.fixture
def fired():
    return []


@pytest.fixture
def timers(client, fired):
    return SchedulerTimers(client, group="hub-test", role_arn=ROLE, target_arn=TARGET, dead_letter_arn=DLQ,
                           fire_now=fired.extend, clock=lambda: NOW)


def _conform(shape, value, path: str = "") -> list[str]:
    """Problems of `value` against a botocore input shape: what the real service would refuse."""
    problems: list[str] = []
    meta = shape.metadata
    if shape.type_name == "structure":
        assert isinstance(value, dict), path
        problems += [f"{path}.{name} is required" for name in shape.required_members if name not in value]
        for name, item in value.items():
            if name not in shape.members:
                problems.append(f"{path}.{name} is not in the model")
            else:
                problems += _conform(shape.members[name], item, f"{path}.{name}")
    elif shape.type_name == "string":
        assert isinstance(value, str), path
        if shape.enum and value not in shape.enum:
            problems.append(f"{path}={value!r} not in {shape.enum}")
        if len(value) < meta.get("min", 0) or len(value) > meta.get("max", 1 << 30):
            problems.append(f"{path} has length {len(value)} outside {meta.get('min')}..{meta.get('max')}")
        if "pattern" in meta and not re.search(meta["pattern"], value):
            problems.append(f"{path}={value!r} does not match {meta['pattern']}")
    elif shape.type_name in ("integer", "long") and not meta.get("min", value) <= value <= meta.get("max", value):
        problems.append(f"{path}={value} outside {meta.get('min')}..{meta.get('max')}")
    return problems


def _model_problems(client, operation: str, params: dict) -> list[str]:
    return _conform(client.meta.service_model.operation_model(operation).input_shape, params, operation)


def _timer(name: str = "case_1-sla-1772530200", due: datetime = NOW + timedelta(hours=24)) -> Timer:
    return Timer(name=name, due_at=due, payload=json.dumps({"kind": "timer", "customer_id": "cus_1"}))


def test_a_timer_becomes_a_one_time_self_deleting_schedule_the_model_accepts(client, timers, fired):
    timer = _timer(due=datetime(2026, 3, 3, 9, 30, 0, 250_000, tzinfo=UTC))
    expected = {
        "Name": timer.name,
        "GroupName": "hub-test",
        # Rounded up to the second: a timer never fires before it is due.
        "ScheduleExpression": "at(2026-03-03T09:30:01)",
        "ScheduleExpressionTimezone": "UTC",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "ActionAfterCompletion": "DELETE",
        "ClientToken": timers.request(timer)["ClientToken"],
        "Target": {
            "Arn": TARGET,
            "RoleArn": ROLE,
            "Input": timer.model_dump_json(),
            "DeadLetterConfig": {"Arn": DLQ},
            "RetryPolicy": {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400},
        },
    }
    assert _model_problems(client, "CreateSchedule", expected) == []
    assert Timer.model_validate_json(expected["Target"]["Input"]) == timer  # what the Lambda receives back
    with Stubber(client) as stub:
        stub.add_response("create_schedule", {"ScheduleArn": f"arn:aws:scheduler:eu-central-1:123456789012:"
                                                             f"schedule/hub-test/{timer.name}"}, expected)
        timers.arm([timer])
        stub.assert_no_pending_responses()
    assert fired == []


def test_the_client_token_is_stable_per_schedule_so_a_retried_create_is_idempotent(timers):
    first, again, other = timers.request(_timer()), timers.request(_timer()), timers.request(_timer("other"))
    assert first["ClientToken"] == again["ClientToken"] != other["ClientToken"]


def test_the_case_timers_of_a_long_case_id_pass_the_model(client, timers):
    long_case = "case_" + "Z" * 70
    due = {"sla": NOW + timedelta(hours=24), "follow_up": NOW + timedelta(hours=48),
           "auto_close": NOW + timedelta(hours=168)}
    for timer in case_timers(long_case, "cus_1", due):
        assert _model_problems(client, "CreateSchedule", timers.request(timer)) == []


def test_a_timer_due_within_the_lead_time_is_fired_at_once_not_scheduled(client, timers, fired):
    past, soon, later = _timer("past", NOW - timedelta(hours=1)), _timer("soon", NOW + timedelta(seconds=59)), _timer()
    with Stubber(client) as stub:
        stub.add_response("create_schedule", {"ScheduleArn": "arn:x"}, {**timers.request(later)})
        timers.arm([past, soon, later])
        stub.assert_no_pending_responses()
    assert [t.name for t in fired] == ["past", "soon"]


def test_an_existing_schedule_means_the_timer_is_armed(client, timers):
    with Stubber(client) as stub:
        stub.add_client_error("create_schedule", "ConflictException", "Schedule already exists.", 409)
        stub.add_response("create_schedule", {"ScheduleArn": "arn:x"})
        timers.arm([_timer("a"), _timer("b")])  # the conflict does not stop the next one
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(("code", "status"), [
    ("ThrottlingException", 429), ("InternalServerException", 500), ("ServiceQuotaExceededException", 402),
])
def test_throttling_quota_and_server_errors_are_transient(client, timers, code, status):
    with Stubber(client) as stub:
        stub.add_client_error("create_schedule", code, "try later", status)
        with pytest.raises(TransientError, match="case_1-sla-1772530200"):
            timers.arm([_timer()])


def test_a_missing_group_or_a_refused_request_is_a_configuration_error(client, timers):
    with Stubber(client) as stub:
        stub.add_client_error("create_schedule", "ResourceNotFoundException", "no group", 404)
        stub.add_client_error("create_schedule", "ValidationException", "bad role", 400)
        with pytest.raises(ConfigError, match="schedule group hub-test does not exist"):
            timers.arm([_timer()])
        with pytest.raises(ConfigError, match="ValidationException"):
            timers.arm([_timer()])


def test_cancel_deletes_each_schedule_and_ignores_those_already_gone(client, timers):
    gone, armed = "case_1-sla-1772530200", "case_1-auto_close-1773135000"
    with Stubber(client) as stub:
        stub.add_client_error("delete_schedule", "ResourceNotFoundException", "gone", 404,
                              expected_params={"Name": gone, "GroupName": "hub-test"})
        stub.add_response("delete_schedule", {}, {"Name": armed, "GroupName": "hub-test"})
        timers.cancel([gone, armed])
        stub.assert_no_pending_responses()
    assert _model_problems(client, "DeleteSchedule", {"Name": armed, "GroupName": "hub-test"}) == []


def test_the_model_check_catches_what_the_service_would_refuse(client, timers):
    request = timers.request(_timer())
    request["Name"] = "x" * 65
    request["FlexibleTimeWindow"] = {"Mode": "SOMETIMES"}
    request["Target"]["RetryPolicy"] = {"MaximumRetryAttempts": 186}
    del request["Target"]["RoleArn"]
    problems = _model_problems(client, "CreateSchedule", request)
    assert len(problems) == 4, problems


def test_a_throttled_cancel_is_transient(client, timers):
    with Stubber(client) as stub:
        stub.add_client_error("delete_schedule", "ThrottlingException", "slow down", 429)
        with pytest.raises(TransientError, match="delete"):
            timers.cancel(["case_1-sla-1772530200"])


def test_the_scheduler_timers_need_their_resources(client):
    with pytest.raises(ConfigError, match="role_arn, dead_letter_arn"):
        SchedulerTimers(client, group="hub-test", role_arn="", target_arn=TARGET, dead_letter_arn="",
                        fire_now=lambda timers: None, clock=lambda: NOW)
