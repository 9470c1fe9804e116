"""The shape of an event rule (`events.rules[...]`, or an events rules document): pydantic only.

    - name: parcel-late
      when: [{event_type: "parcel.*"}, {event: {path: data.delay_hours, gte: 24}}]
      then:
        notify: {template: parcel_late, channels: [whatsapp, sms]}
        open_case: {queue: logistics, tags: [parcel]}

Conditions are kept as written here and compiled by `routing/event_rules.py`, only in the
processes that handle events; the configuration checks the shape.
"""

# No `from __future__ import annotations`: pydantic evaluates string annotations per model.

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.domain.defaults import empty_list
from chalicelib.domain.models import Channel, Priority

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: Channels a notification may name: `preferred` (the customer's `preferred_channel` attribute),
#: `reply` (where the customer last wrote), or a channel.
NOTIFY_CHANNELS = ("preferred", "reply", *(c.value for c in Channel if c.value != "event"))
#: A selector value that names a place in the event rather than a literal.
_EVENT_PATH = re.compile(r"data(\.[A-Za-z0-9_-]+)+")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


def is_event_path(value: Any) -> bool:
    """Whether a selector value is a path into the event (`data.postcodes`) rather than a literal."""
    return isinstance(value, str) and _EVENT_PATH.fullmatch(value) is not None


class SelectorSpec(_Strict):
    """Which customers a broadcast event reaches: those whose indexed attribute has one of the
    values. A value `data.<path>` is read from the event; anything else is a literal."""

    model_config = ConfigDict(extra="forbid", defer_build=True, populate_by_name=True)

    #: A golden-record attribute listed in `customers.indexed_attributes`.
    attribute: str = Field(min_length=1, max_length=64)
    in_: list[str | int | float] | str | None = Field(default=None, alias="in")
    equals: str | int | float | None = None

    @model_validator(mode="after")
    def _one_test(self) -> "SelectorSpec":
        if (self.in_ is None) == (self.equals is None):
            raise ValueError("needs exactly one of `in` (a list, or a path such as data.postcodes) and `equals`")
        if isinstance(self.in_, list) and not self.in_:
            raise ValueError("`in` must not be empty")
        if isinstance(self.in_, str) and not is_event_path(self.in_):
            raise ValueError("`in` is a list of values or a path into the event such as data.postcodes")
        return self


class NotifySpec(_Strict):
    """Tell the customer: one message, on the first channel that consent, service windows and
    reachability allow, after the guards (suppression, frequency cap, quiet hours)."""

    #: A template name from `events.templates`.
    template: str
    channels: list[str] = Field(default_factory=lambda: ["preferred", "whatsapp", "sms", "email"], min_length=1)
    purpose: Literal["service", "marketing"] = "service"
    #: What the message is about, for suppression while an open case has that topic or tag
    #: (default: the event type's first segment, `outage` for `outage.started`).
    topic: str | None = None
    #: true: the quiet hours of `events.quiet_hours`; a calendar name: that calendar's; false: none.
    quiet_hours: bool | str = True
    #: Count against `events.frequency_caps` for the purpose.
    frequency_cap: bool = True

    @field_validator("channels")
    @classmethod
    def _channels(cls, channels: list[str]) -> list[str]:
        for channel in channels:
            if channel not in NOTIFY_CHANNELS:
                raise ValueError(f"unknown channel {channel!r}; one of: {', '.join(NOTIFY_CHANNELS)}")
        if len(set(channels)) != len(channels):
            raise ValueError("lists a channel twice")
        return channels

    @field_validator("quiet_hours")
    @classmethod
    def _calendar_name(cls, value: bool | str) -> bool | str:
        if isinstance(value, str) and not value:
            raise ValueError("true, false or a calendar name")
        return value


class OpenCaseSpec(_Strict):
    """Open a case for the customer, or update the open one (queue, priority, tags, topic)."""

    queue: str | None = None
    priority: Priority | None = None
    tags: list[str] = Field(default_factory=empty_list)
    topic: str | None = None

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_by_name(cls, value: Any) -> Any:
        return Priority.coerce(value)


class AddToCaseSpec(_Strict):
    #: A note for the agents, on the event's timeline entry.
    note: str | None = None


class CloseCaseSpec(_Strict):
    reason: str = "event"


class ForwardSpec(_Strict):
    """Deliver the event to destinations like a contact (threading into the open case's ticket)."""

    destinations: list[str] = Field(min_length=1)
    #: A template from `events.templates` that renders the forwarded text; none: no text.
    template: str | None = None


class EventActionSpec(_Strict):
    """What a matching event rule does. Every field is optional; rules may combine them."""

    notify: NotifySpec | None = None
    open_case: OpenCaseSpec | None = None
    add_to_case: AddToCaseSpec | None = None
    close_case: CloseCaseSpec | None = None
    #: Added to the customer's `tags` attribute.
    tag_customer: list[str] = Field(default_factory=empty_list)
    #: Golden-record attributes to set; a string value may be `{data.x}` (read from the event).
    set_attribute: dict[str, Any] = Field(default_factory=dict)
    forward: ForwardSpec | None = None
    #: Park the event in the exception queue, with this reason.
    park: str | None = None
    #: Applied to the open case (or the case `open_case` opens).
    priority: Priority | None = None
    escalate: int = Field(default=0, ge=0, le=3)
    queue: str | None = None
    #: Ask for a follow-up on the case this many hours from now.
    follow_up_hours: float | None = Field(default=None, gt=0, le=24 * 365)

    @field_validator("add_to_case", "close_case", mode="before")
    @classmethod
    def _true_means_defaults(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False:
            return None
        return value

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_by_name(cls, value: Any) -> Any:
        return Priority.coerce(value)

    @field_validator("notify", mode="before")
    @classmethod
    def _notify_shorthand(cls, value: Any) -> Any:
        return {"template": value} if isinstance(value, str) else value


class EventRuleSpec(_Strict):
    name: str
    description: str | None = None
    enabled: bool = True
    #: Conditions (a one-key mapping, or a list meaning all of them); omitted: always matches.
    when: Any = None
    #: For events without a customer: which customers the rule reaches (a broadcast).
    customer_selector: SelectorSpec | None = None
    then: EventActionSpec = Field(default_factory=EventActionSpec)
    stop: bool = False
    #: Why the rule exists, in words, for `explain` and the trace.
    explain: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("must be 1-64 letters, digits, '_', '.' or '-'")
        return value
