"""The hub's core model: what a channel adapter produces, and what the hub stores and delivers.

Adapters turn a provider's webhook into `InboundMessage`s and `StatusEvent`s. They only *parse*,
so the ingest path stays cheap; normalization of identifiers happens in the worker, which turns an
`InboundMessage` into a `Contact` attached to a `Customer` and a `Case`. Those worker-side models
are defined in `stored.py` and still importable from here: the first use of one loads them
(`__getattr__` at the end), so the webhook function never creates their classes.
"""

# No `from __future__ import annotations` here: with it, pydantic compiles and evaluates every
# field's annotation string when a model class is created (about 0.15 ms a model, deferred ones
# too: 4 ms of every cold start for this module). Quote the few forward references instead.

import hashlib
import json
from datetime import datetime, timezone
from enum import IntEnum, StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.domain.consent import PURPOSES, Purpose
from chalicelib.domain.defaults import empty_list


#: The one worker-side model left here (`ReplyContext`, which the outbound message embeds): built
#: on first use. The rest of the workers' models are in `stored.py`.
_WORKER_SIDE = ConfigDict(defer_build=True)
#: Inbound events a webhook yields only now and then (an item no adapter could read, a customer's
#: changed ids): built when the first one arrives, not at every ingest cold start.
_RARE_INBOUND = ConfigDict(defer_build=True)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Channel(StrEnum):
    SMS = "sms"
    MMS = "mms"
    WHATSAPP = "whatsapp"
    EMAIL = "email"
    WEBCHAT = "webchat"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    TELEGRAM = "telegram"
    SLACK = "slack"
    X = "x"
    #: A business event on the customer's timeline (`POST /v1/events`, EventBridge, timers): not
    #: a messaging channel, so there is no consent, sender or service window for it.
    EVENT = "event"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    #: A business event the hub was told about (`Channel.EVENT`): neither the customer's message
    #: nor the hub's, so activity and repeat-contact counts leave it out.
    EVENT = "event"


class ContentType(StrEnum):
    TEXT = "text"
    MEDIA = "media"
    LOCATION = "location"
    INTERACTIVE = "interactive"
    REACTION = "reaction"
    #: A message type the adapter does not understand yet: kept raw, counted, acknowledged.
    UNSUPPORTED = "unsupported"


class Handle(BaseModel):
    """A sender identifier exactly as the provider gave it, before normalization."""

    model_config = ConfigDict(frozen=True)

    kind: str
    value: str
    scope: str | None = None
    #: False for claims the sender made without proof (an email typed into a web chat):
    #: they are stored but never used to link the contact to an existing customer.
    verified: bool = True


class Attachment(BaseModel):
    content_type: str | None = None
    url: str | None = None
    #: The provider's word for what it is (`image`, `file`, `share`, `ig_reel`, `voice`...): a
    #: shared post or reel is a link, not a file to download.
    kind: str | None = None
    #: The provider's stable handle (WhatsApp media id), when the URL is short-lived.
    provider_media_id: str | None = None
    filename: str | None = None
    size: int | None = None
    caption: str | None = None


class AttachmentContent(BaseModel):
    """The bytes of `InboundMessage.attachments[index]` when they came inside the webhook itself
    (an email's files): there is no provider link to download them from later. They travel on
    the inbound queue (base64 in JSON; the queue claim-checks large bodies into the blob store)
    and the process worker stores them like downloaded media. Never part of a `Contact`."""

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    index: int = Field(ge=0)
    data: bytes = Field(repr=False)


class Location(BaseModel):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None
    url: str | None = None


class Sender(BaseModel):
    handles: list[Handle]
    display_name: str | None = None


class InboundMessage(BaseModel):
    """One message as a channel adapter parsed it; the unit that travels on the inbound queue."""

    kind: Literal["message"] = "message"
    provider: str
    channel: Channel
    provider_message_id: str
    #: Our side of the conversation: the number, page, mailbox or site the customer wrote to.
    account: str
    sender: Sender
    sent_at: datetime | None = None
    received_at: datetime = Field(default_factory=utcnow)
    content_type: ContentType = ContentType.TEXT
    text: str | None = None
    subject: str | None = None
    attachments: list[Attachment] = Field(default_factory=empty_list)
    location: Location | None = None
    #: Provider-specific extras worth keeping in normalized form (button payload, reply-to id...).
    metadata: dict[str, Any] = Field(default_factory=dict)
    conversation_key: str | None = None
    #: Keys that tie this message to one case whatever the time gap: a chat session, an email's
    #: Message-ID and the ids it replies to.
    thread_keys: list[str] = Field(default_factory=empty_list)
    #: The provider's own JSON for this one message, kept for inspection and reprocessing.
    raw: dict[str, Any] = Field(default_factory=dict)
    #: Attachment bytes that came with the webhook (see `AttachmentContent`).
    attachment_content: list[AttachmentContent] = Field(default_factory=empty_list)

    @property
    def dedupe_key(self) -> str:
        return message_dedupe_key(self.provider, self.provider_message_id)

    @property
    def order_key(self) -> str:
        """Messages with the same order key are processed in arrival order (FIFO group)."""
        first = self.sender.handles[0] if self.sender.handles else None
        who = f"{first.kind}:{first.scope or ''}/{first.value}" if first else self.provider_message_id
        return f"{self.provider}:{self.account}:{who}"


def message_dedupe_key(provider: str, provider_message_id: str) -> str:
    """The exactly-once key of an inbound message (also the tombstone erasure leaves behind)."""
    return f"msg:{provider}:{provider_message_id}"


class StatusEvent(BaseModel):
    """A delivery/read receipt for a message the hub (or the business) sent. Never a contact."""

    kind: Literal["status"] = "status"
    provider: str
    channel: Channel
    provider_message_id: str
    status: str
    account: str | None = None
    recipient: str | None = None
    occurred_at: datetime | None = None
    received_at: datetime = Field(default_factory=utcnow)
    error_code: str | None = None
    error_message: str | None = None
    #: The recipient unsubscribed with this report (an SES complaint, Twilio error 21610): the
    #: hub records an opt-out for the channel in the customer's consent ledger.
    opted_out: bool = False
    #: What an `opted_out` report withdraws: both purposes, unless the provider says the refusal
    #: is narrower (WhatsApp 131050 stops marketing messages only).
    opt_out_purposes: tuple[Purpose, ...] = PURPOSES
    raw: dict[str, Any] = Field(default_factory=dict)

    @property
    def variant(self) -> str:
        """What tells two reports on one message apart: the status, the provider's code and
        whether it opts the recipient out. Two `failed` reports (a bounce, then a complaint
        that unsubscribes) are two reports, each recorded and acted on once."""
        return ":".join([self.status, self.error_code or "", "opted_out" if self.opted_out else ""]).rstrip(":")

    @property
    def dedupe_key(self) -> str:
        return f"status:{self.provider}:{self.provider_message_id}:{self.variant}"

    @property
    def order_key(self) -> str:
        return f"{self.provider}:status:{self.provider_message_id}"


#: An unhandled item's raw copy is cut at this size (JSON text): enough to see what a new event
#: type looks like, small enough for one queue message and one store item.
MAX_UNHANDLED_RAW_BYTES = 32 * 1024
#: Deeper items are kept as JSON text: pydantic refuses to serialize nesting near 200 levels.
MAX_UNHANDLED_DEPTH = 64


def _nested_deeper(value: Any, limit: int) -> bool:
    """Whether `value` nests lists and dicts more than `limit` levels (iteratively: no recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


class UnhandledEvent(BaseModel):
    """An item of a verified webhook that the adapter acknowledged but could not read: an event
    type added after the adapter was written, a shape it does not know. Kept raw for inspection
    (`GET /v1/unhandled-events`) and counted, so a provider's new feature is noticed instead of
    silently dropped; never a contact. Deliberate skips (our own echoes, bots, auto-replies) are
    only counted (`ParsedWebhook.ignored`)."""

    model_config = _RARE_INBOUND

    kind: Literal["unhandled"] = "unhandled"
    provider: str
    #: Why the adapter could not read it, naming where in the payload it was.
    reason: str
    #: The item as the provider sent it (parsed JSON, or text), cut to `MAX_UNHANDLED_RAW_BYTES`.
    raw: Any = None
    truncated: bool = False
    received_at: datetime = Field(default_factory=utcnow)

    @classmethod
    def of(cls, provider: str, reason: str, raw: Any, received_at: datetime) -> "UnhandledEvent":
        """The event for `raw` (anything `json.loads` returns, or text). Lone surrogates become
        "?"; an item too large or nested too deep to keep as JSON is kept as its JSON text,
        cut to size, so building and queueing the event can never fail."""
        reason = reason[:500].encode("utf-8", "replace").decode("utf-8")
        try:
            data = json.dumps(raw, ensure_ascii=False, default=str).encode("utf-8", "replace")
        except (RecursionError, ValueError):
            data = repr(raw).encode("utf-8", "replace")
        if len(data) > MAX_UNHANDLED_RAW_BYTES or _nested_deeper(raw, MAX_UNHANDLED_DEPTH):
            text = data[:MAX_UNHANDLED_RAW_BYTES].decode("utf-8", "ignore")
            return cls(provider=provider, reason=reason, raw=text, truncated=len(data) > len(text.encode()),
                       received_at=received_at)
        return cls(provider=provider, reason=reason, raw=json.loads(data), received_at=received_at)

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps([self.reason, self.raw], sort_keys=True, default=str).encode()).hexdigest()

    @property
    def id(self) -> str:
        """Stable for one delivery of the item, so a redelivered queue message is recorded once."""
        return f"{self.received_at.strftime('%Y%m%dT%H%M%S%fZ')}-{self.digest[:16]}"

    @property
    def dedupe_key(self) -> str:
        return f"unhandled:{self.provider}:{self.id}"

    @property
    def order_key(self) -> str:
        return f"{self.provider}:unhandled"


class IdentityChange(BaseModel):
    """A provider's notice that a customer's ids changed (WhatsApp's `user_changed_user_id` and
    `user_changed_number` system messages): the customer holding the `previous` ids gains the
    `current` ones, so the person stays one customer. Never a contact."""

    model_config = _RARE_INBOUND

    kind: Literal["identity_change"] = "identity_change"
    provider: str
    channel: Channel
    provider_message_id: str
    account: str
    #: The ids the customer had (who the change applies to), first the one messages are ordered by.
    previous: list[Handle]
    #: The ids the customer has now.
    current: list[Handle]
    #: The provider's word for the change (`user_changed_number`).
    change: str
    display_name: str | None = None
    occurred_at: datetime | None = None
    received_at: datetime = Field(default_factory=utcnow)
    raw: dict[str, Any] = Field(default_factory=dict)

    @property
    def dedupe_key(self) -> str:
        return f"identity:{self.provider}:{self.provider_message_id}"

    @property
    def order_key(self) -> str:
        """The group of the customer's earlier messages: the change follows what they sent."""
        first = self.previous[0]
        return f"{self.provider}:{self.account}:{first.kind}:{first.scope or ''}/{first.value}"


class Priority(IntEnum):
    """An ordered scale, so rules can compare and raise priorities."""

    LOW = 10
    NORMAL = 20
    HIGH = 30
    URGENT = 40

    @classmethod
    def coerce(cls, value: Any) -> Any:
        """A priority written by name (`high`, any case) as the member; anything else as given,
        for pydantic to validate. Raises ValueError naming the scale for an unknown name."""
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                raise ValueError(f"must be one of {', '.join(p.name.lower() for p in cls)}") from None
        return value


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    DEAD = "dead"


class OutboundStatus(StrEnum):
    #: Accepted by the hub, waiting on the outbound queue.
    QUEUED = "queued"
    #: Accepted by the provider (it has its own id for the message).
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    #: Refused by the provider, undeliverable, or given up on by the hub.
    FAILED = "failed"


#: How far along each status is. A status never replaces one of a higher rank: a late `delivered`
#: after `read` is kept in the history but does not change the message's status. `failed` ranks
#: above `sent` (a carrier's undeliverable report follows acceptance) and below `delivered`
#: (a handset's receipt outweighs an earlier error report of a retried hop).
STATUS_RANK: dict[OutboundStatus, int] = {
    OutboundStatus.QUEUED: 0,
    OutboundStatus.SENT: 1,
    OutboundStatus.FAILED: 2,
    OutboundStatus.DELIVERED: 3,
    OutboundStatus.READ: 4,
}


class ReplyContext(BaseModel):
    """What the message answers, in the terms each provider threads by. Empty for a new thread."""

    model_config = _WORKER_SIDE

    #: The provider's id of the customer's message answered: WhatsApp `context.message_id`,
    #: Telegram `reply_to_message_id` (the message id part), Messenger `reply_to.mid`.
    provider_message_id: str | None = None
    #: Slack: the `ts` of the thread's parent message (`thread_ts`).
    thread: str | None = None
    #: Email: the answered mail's Message-ID, and its References followed by that Message-ID.
    in_reply_to: str | None = None
    references: list[str] = Field(default_factory=empty_list)
    #: Email: the answered mail's subject (the sender prefixes `Re:` unless `subject` is given).
    subject: str | None = None


def reply_key(channel: Channel | str, provider: str, account: str) -> str:
    return f"{channel}|{provider}|{account}"


class CaseStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


#: The names `stored.py` defines, still importable from here: the module loads the first time one
#: of them is asked for, so only the functions that use them pay for creating their classes.
STORED = frozenset({
    "AgentAuthor", "AgentReply", "CaseStatusChange", "CallbackItem", "InboundEvent", "RuleTrace", "ReplyIntent",
    "RoutingDecision", "Delivery", "Party", "IdentifierDecision", "Resolution", "StatusChange", "ReplyTarget",
    "Contact", "AttributeValue", "ExternalState", "CaseSummary", "MergeSummary", "ContactActivity", "Customer",
    "ExternalRef", "Case", "DeliveryJob", "DeadLetter", "ParkedContact", "MergeRecord", "CustomerEvent",
    "DeliveryWork",
})


def __getattr__(name: str) -> Any:
    if name in STORED:
        from chalicelib.domain import stored

        return getattr(stored, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
