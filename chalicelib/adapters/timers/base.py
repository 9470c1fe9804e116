"""The timer port: arm named one-shot timers, cancel them by name.

A timer carries an opaque payload (an `EventWork` JSON document) that is put on the events queue
when it is due. Delivery is at least once: the payload's own event id makes the processing act
once. Arming twice under one name is not an error and keeps the first timer, so a retried worker
can arm again without checking first.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: EventBridge Scheduler's schedule name rule (botocore model `Name`: 1–64 of `[0-9a-zA-Z-_.]`);
#: the embedded timers use the same rule, so a name that works locally works on AWS.
TIMER_NAME_PATTERN = re.compile(r"^[0-9a-zA-Z_.-]{1,64}$")


class Timer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Unique per wake-up: arming an existing name keeps the armed timer.
    name: str
    #: When it is due, timezone-aware; kept in UTC.
    due_at: datetime
    #: What goes on the events queue when it is due (`EventWork` JSON), never parsed here.
    payload: str = Field(min_length=2)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not TIMER_NAME_PATTERN.match(value):
            raise ValueError("must be 1-64 characters of letters, digits, '-', '_' and '.'")
        return value

    @field_validator("due_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must be timezone-aware")
        return value.astimezone(UTC)


class TimerPort(ABC):
    """Arms and cancels timers. Both raise `TransientError` when the backend is unavailable
    (the caller retries: arming is idempotent by name) and `ConfigError` when the backend
    refuses the request itself."""

    @abstractmethod
    def arm(self, timers: Sequence[Timer]) -> None:
        """Make each timer fire once at its due time; a name already armed is left as it is."""

    @abstractmethod
    def cancel(self, names: Sequence[str]) -> None:
        """Forget the named timers; names that are not armed (fired, cancelled, never armed) are fine."""
