"""Timers on AWS: one EventBridge Scheduler one-time schedule per timer.

https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html#one-time

Each schedule invokes the timers Lambda once with the `Timer` as its input (name, due time and
payload, so the Lambda can dedupe by name) and deletes itself after it ran
(`ActionAfterCompletion: DELETE`), so fired timers cost nothing to clean up. Scheduler retries a
failed invocation and then sends the event to the dead-letter queue. The schedule's name is the
timer's name: creating an existing one (`ConflictException`) means it is armed already.

A timer due within `lead_seconds` is not scheduled (Scheduler may refuse a time in the past, and
would fire it within the minute anyway): it goes straight to `fire_now`, which puts its payload on
the events queue as the Lambda would.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from chalicelib.adapters.timers.base import Timer, TimerPort
from chalicelib.errors import ConfigError, TransientError

logger = logging.getLogger(__name__)

#: Timers due sooner than this are fired at once instead of scheduled.
LEAD_SECONDS = 60
#: Scheduler's own limits (botocore model `RetryPolicy`): the most retries over the longest age,
#: so a Lambda outage of up to a day loses no timer before the dead-letter queue.
RETRY_POLICY = {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}

#: Error codes that mean "try again later" (the worker's message returns to its queue).
_TRANSIENT_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "InternalServerException",
    "ServiceUnavailable", "ServiceUnavailableException", "ServiceQuotaExceededException", "RequestTimeout",
})


class SchedulerTimers(TimerPort):
    def __init__(
        self,
        client,
        *,
        group: str,
        role_arn: str,
        target_arn: str,
        dead_letter_arn: str,
        fire_now: Callable[[Sequence[Timer]], None],
        clock: Callable[[], datetime],
        lead_seconds: float = LEAD_SECONDS,
    ) -> None:
        missing = [name for name, value in (("group", group), ("role_arn", role_arn), ("target_arn", target_arn),
                                            ("dead_letter_arn", dead_letter_arn)) if not value]
        if missing:
            raise ConfigError(f"the scheduler timers need {', '.join(missing)}")
        self._client = client
        self.group = group
        self._role_arn = role_arn
        self._target_arn = target_arn
        self._dead_letter_arn = dead_letter_arn
        self._fire_now = fire_now
        self._clock = clock
        self._lead = timedelta(seconds=lead_seconds)

    def arm(self, timers: Sequence[Timer]) -> None:
        soon = self._clock() + self._lead
        now_due = [t for t in timers if t.due_at <= soon]
        if now_due:
            self._fire_now(now_due)
        for timer in timers:
            if timer.due_at > soon:
                self._create(timer)

    def cancel(self, names: Sequence[str]) -> None:
        for name in names:
            try:
                self._client.delete_schedule(Name=name, GroupName=self.group)
            except (BotoCoreError, ClientError) as exc:
                if _code(exc) == "ResourceNotFoundException":
                    continue  # fired (and deleted itself), cancelled before, or never armed
                raise _translated(exc, "delete", name) from exc

    def request(self, timer: Timer) -> dict:
        """The CreateSchedule parameters for `timer` (also what tests compare with)."""
        return {
            "Name": timer.name,
            "GroupName": self.group,
            "ScheduleExpression": f"at({_at(timer.due_at)})",
            "ScheduleExpressionTimezone": "UTC",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "ActionAfterCompletion": "DELETE",
            # Same schedule, same token: a create retried after a lost answer succeeds again.
            "ClientToken": hashlib.sha256(f"{self.group}/{timer.name}".encode()).hexdigest(),
            "Target": {
                "Arn": self._target_arn,
                "RoleArn": self._role_arn,
                "Input": timer.model_dump_json(),
                "DeadLetterConfig": {"Arn": self._dead_letter_arn},
                "RetryPolicy": dict(RETRY_POLICY),
            },
        }

    def _create(self, timer: Timer) -> None:
        try:
            self._client.create_schedule(**self.request(timer))
        except (BotoCoreError, ClientError) as exc:
            if _code(exc) == "ConflictException":
                return  # a schedule of this name exists: the timer is armed
            if _code(exc) == "ResourceNotFoundException":
                raise ConfigError(f"the schedule group {self.group} does not exist") from exc
            raise _translated(exc, "create", timer.name) from exc


def _at(due: datetime) -> str:
    """Scheduler's `at()` time, whole seconds in UTC, rounded up so a timer never fires early."""
    seconds = math.ceil(due.astimezone(UTC).timestamp())
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _code(exc: Exception) -> str | None:
    return exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None


def _status(exc: Exception) -> int:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) if isinstance(exc, ClientError) else 0


def _translated(exc: Exception, operation: str, name: str) -> Exception:
    """Throttling, quotas, 5xx and connection failures are transient (the caller retries); any
    other refusal (validation, access denied) will not pass unchanged and is a configuration
    problem. Messages name the schedule, never the payload."""
    code, status = _code(exc), _status(exc)
    logger.warning("scheduler %s %s failed: %s", operation, name, code or type(exc).__name__)
    if isinstance(exc, ParamValidationError):
        return ConfigError(f"invalid scheduler request to {operation} schedule {name}: {exc}")
    if not isinstance(exc, ClientError) or code in _TRANSIENT_CODES or status == 429 or status >= 500:
        return TransientError(f"scheduler unavailable ({operation} schedule {name}: {code or type(exc).__name__})")
    return ConfigError(f"scheduler refused to {operation} schedule {name}: {code}")
