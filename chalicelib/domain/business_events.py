"""Business events: what a company's systems tell the hub (`POST /v1/events`, EventBridge,
`hubctl event`), and the units of work the events queue carries for them.

An event is addressed to one customer (by identifier or customer id) or to nobody: a broadcast,
which event rules fan out to a segment of customers in pages (`SegmentPage` → `SegmentMember`).
Case timers and quiet-hour deferrals travel on the same queue (`TimerFired`, `DeferredNotify`), so
one worker, with one idempotency scheme, acts on all of them.

Ids are chosen so a retry repeats nothing: the event's `id` is the producer's idempotency key,
global across producers (a producer should namespace its ids, `billing:inv-123:failed`), kept as
long as inbound dedupe (`processing.dedupe_days`). Everything derived from an event (its timeline
contact, its messages, its queue dedupe ids) is a function of that id.
"""

# No `from __future__ import annotations`: see models.py.

import hashlib
import json
import re
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from chalicelib.domain.ids import group_id, stable_id
from chalicelib.domain.models import _nested_deeper, utcnow

#: At most this many events in one `POST /v1/events`.
MAX_EVENTS_PER_BATCH = 100
#: An event's `data` as JSON text, UTF-8: small enough for one queue message with its envelope
#: and for the timeline contact that keeps it.
MAX_EVENT_DATA_BYTES = 32 * 1024
MAX_EVENT_DATA_DEPTH = 32
#: How far ahead of the hub's clock `occurred_at` may be: producers' clocks drift, but an event
#: dated next week is a bug in the producer.
MAX_FUTURE_SKEW = timedelta(days=1)

EVENT_TYPE_PATTERN = r"^[a-z0-9][a-z0-9_.:-]{0,99}$"
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)

#: The models travel on the events queue and are read by the event worker and the API only.
_EVENT_SIDE = ConfigDict(defer_build=True, extra="forbid")

TimerName = Literal["sla", "follow_up", "auto_close"]


class EventCustomer(BaseModel):
    """Whom the event is about: exactly one of an identifier (`phone:+49…`, `email:…`, as
    identifiers are written) or the hub's customer id."""

    model_config = _EVENT_SIDE

    identifier: str | None = Field(default=None, min_length=3, max_length=512)
    customer_id: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _exactly_one(self) -> "EventCustomer":
        if (self.identifier is None) == (self.customer_id is None):
            raise ValueError("give exactly one of identifier, customer_id")
        return self


class EventIn(BaseModel):
    """One event as a producer sends it. Unknown types are valid: the rules decide what they mean.

    `occurred_at` may lie at most `MAX_FUTURE_SKEW` ahead of now (the validation context's `now`
    when given, for tests and replays, else the clock)."""

    model_config = _EVENT_SIDE

    #: Whether `occurred_at` is checked against the clock: for what a producer sends, not for an
    #: event the hub accepted earlier and reads back (a worker's clock, or a test's, may be far on).
    _checks_clock: ClassVar[bool] = True

    type: str = Field(pattern=EVENT_TYPE_PATTERN)
    id: str = Field(min_length=1, max_length=128)
    occurred_at: AwareDatetime
    #: None for a broadcast: event rules select the customers by an indexed attribute.
    customer: EventCustomer | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("must be printable characters only (no control characters or line breaks)")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _not_far_ahead(cls, value: datetime, info: ValidationInfo) -> datetime:
        if not cls._checks_clock:
            return value
        now = (info.context or {}).get("now") or utcnow()
        if value > now + MAX_FUTURE_SKEW:
            raise ValueError("is more than 1 day in the future")
        return value

    @field_validator("data", mode="before")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value  # pydantic names the type problem
        if _nested_deeper(value, MAX_EVENT_DATA_DEPTH):
            raise ValueError(f"nests deeper than {MAX_EVENT_DATA_DEPTH} levels")
        try:
            size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        except (TypeError, ValueError):
            raise ValueError("must be a JSON object") from None
        if size > MAX_EVENT_DATA_BYTES:
            raise ValueError(f"is larger than {MAX_EVENT_DATA_BYTES} bytes as JSON")
        return value

    @property
    def broadcast(self) -> bool:
        return self.customer is None


class BusinessEvent(EventIn):
    """An accepted event as it travels on the events queue: who sent it and when it arrived.
    Also what a case timer's event is (`source="timer"`), dated when the timer was due."""

    _checks_clock: ClassVar[bool] = False

    #: `api:<key name>`, `eventbridge:<source>`, `cli`, or `timer` for a case timer's event.
    source: str = Field(min_length=1, max_length=256)
    received_at: AwareDatetime

    @classmethod
    def accepted(cls, event: EventIn, *, source: str, received_at: datetime) -> "BusinessEvent":
        return cls(**dict(event), source=source, received_at=received_at)

    def described(self) -> dict[str, Any]:
        """What the timeline and traces keep about the event itself (no data)."""
        return {"type": self.type, "id": self.id, "occurred_at": self.occurred_at.isoformat(), "source": self.source}


class EventMessage(BaseModel):
    """An event as received: addressed (processed for its customer) or a broadcast (planned)."""

    model_config = _EVENT_SIDE

    kind: Literal["event"] = "event"
    event: BusinessEvent


class SegmentPage(BaseModel):
    """Read the next page of customers whose `attribute` is `value` and enqueue them as members
    (plus the following page): no worker ever holds more than one page of a broadcast."""

    model_config = _EVENT_SIDE

    kind: Literal["segment_page"] = "segment_page"
    event: BusinessEvent
    #: The event rules whose selector chose this segment.
    rules: list[str] = Field(min_length=1)
    attribute: str = Field(min_length=1)
    value: str
    cursor: str | None = None


class SegmentMember(BaseModel):
    """One customer of a broadcast's segment, processed in the customer's own message group."""

    model_config = _EVENT_SIDE

    kind: Literal["segment_member"] = "segment_member"
    event: BusinessEvent
    customer_id: str = Field(min_length=1)
    rules: list[str] = Field(min_length=1)


class TimerFired(BaseModel):
    """A case's timer passed its due time. It acts only while the case still has that due time."""

    model_config = _EVENT_SIDE

    kind: Literal["timer"] = "timer"
    case_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    timer: TimerName
    due_at: AwareDatetime


class DeferredNotify(BaseModel):
    """A proactive message that waited for the quiet hours to end: every guard runs again."""

    model_config = _EVENT_SIDE

    kind: Literal["deferred_notify"] = "deferred_notify"
    event: BusinessEvent
    customer_id: str = Field(min_length=1)
    rule: str = Field(min_length=1)
    due_at: AwareDatetime


#: What the events queue carries: one JSON object, told apart by `kind`.
EventWork = Annotated[
    EventMessage | SegmentPage | SegmentMember | TimerFired | DeferredNotify,
    Field(discriminator="kind"),
]


def event_dedupe_key(event_id: str, customer_id: str | None = None) -> str:
    """The done marker of an event, or of one customer's share of a broadcast."""
    return f"event:{event_id}" if customer_id is None else f"event:{event_id}:{customer_id}"


def customer_group(customer_id: str) -> str:
    """The events queue's message group of one customer: their events are processed in order."""
    return group_id("customer:" + customer_id)


def event_group(event: EventIn, identifier_key: str | None = None) -> str:
    """The message group of an accepted event: the customer's (by the form it is addressed in:
    an identifier-addressed and a customer-id-addressed event of one person may run in different
    groups, so order holds per addressing form), or the broadcast's own.

    `identifier_key` is the normalized identifier's key (`Identifier.key`), so two spellings of
    one number share a group; without it the identifier is used as written."""
    if event.customer is None:
        return group_id("broadcast:" + event.id)
    if event.customer.customer_id is not None:
        return customer_group(event.customer.customer_id)
    return group_id("customer:" + (identifier_key or event.customer.identifier or ""))


def event_queue_dedupe_id(event_id: str) -> str:
    """The SQS deduplication id of an accepted event: a producer's retry within the queue's
    five-minute window is dropped by the queue already; later ones by the done marker."""
    return hashlib.sha256(f"event:{event_id}".encode()).hexdigest()


def event_contact_id(event: EventIn, customer_id: str) -> str:
    """The id of the event's contact on the customer's timeline, sorted by when it happened."""
    return stable_id("ct", f"event:{event.id}:{customer_id}", millis=_millis(event.occurred_at))


def notify_message_id(event: EventIn, customer_id: str, rule: str) -> str:
    """The id of the message a rule's `notify` sends the customer for the event: a retried or
    deferred notify finds it and sends nothing twice (`commit_outbound(only_new=True)`)."""
    return stable_id("ct", f"notify:{event.id}:{customer_id}:{rule}", millis=_millis(event.occurred_at))


def _millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)
