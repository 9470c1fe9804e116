"""The hub's core model: what a channel adapter produces, and what the hub stores and delivers.

Adapters turn a provider's webhook into `InboundMessage`s and `StatusEvent`s. They only *parse*,
so the ingest path stays cheap; normalization of identifiers happens in the worker, which turns an
`InboundMessage` into a `Contact` attached to a `Customer` and a `Case`.
"""

# No `from __future__ import annotations` here: with it, pydantic compiles and evaluates every
# field's annotation string when a model class is created (about 0.15 ms a model, deferred ones
# too: 4 ms of every cold start for this module). Quote the few forward references instead.

import hashlib
import json
from datetime import datetime, timezone
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from chalicelib.domain.consent import PURPOSES, ConsentLedger, Purpose
from chalicelib.domain.defaults import empty_list
from chalicelib.domain.identifiers import Identifier


#: Models only the workers and the API use build their validators on first use: the ingest
#: function never touches them and must not pay for them at cold start.
_WORKER_SIDE = ConfigDict(defer_build=True)
#: Models the destination callbacks produce (`POST /callbacks/...`, then the workers): built on
#: the first callback, so a webhook's cold start does not pay for them.
_CALLBACK_SIDE = ConfigDict(defer_build=True)
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


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


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


class AgentAuthor(BaseModel):
    """Who wrote an agent reply in the vendor's tool, in the vendor's own terms."""

    model_config = _CALLBACK_SIDE

    id: str | None = None
    name: str | None = None
    email: str | None = None


class AgentReply(BaseModel):
    """A destination's notice that an agent answered the customer publicly on the ticket (or
    conversation) that stands for a hub case: the hub sends it to the customer on the case's
    reply channel. Internal notes and the hub's own echoes never become one: the connector's
    callback side drops them while parsing or when `confirmed` is False, on its re-read."""

    model_config = _CALLBACK_SIDE

    kind: Literal["agent_reply"] = "agent_reply"
    #: The configured destination the callback came to (`POST /callbacks/{destination}`).
    destination: str
    #: The vendor object that stands for the case: ticket id, issue key, conversation sid...
    ticket: str
    #: The hub case id when the vendor echoes it (a ticket's external id); checked against the
    #: case's own reference before it is trusted.
    case_id: str | None = None
    #: The vendor's id of this delivery or comment: the reply's idempotency key, so a callback
    #: the vendor retries sends once.
    event_id: str
    comment_id: str | None = None
    author: AgentAuthor = Field(default_factory=AgentAuthor)
    text: str | None = None
    attachments: list[Attachment] = Field(default_factory=empty_list)
    #: False when the callback's content is a hint (a body an admin composed from placeholders):
    #: the worker re-reads the comment through the vendor's API before relaying anything.
    confirmed: bool = True
    occurred_at: datetime | None = None
    received_at: datetime = Field(default_factory=utcnow)

    @property
    def dedupe_key(self) -> str:
        return f"callback:{self.destination}:reply:{self.event_id}"

    @property
    def order_key(self) -> str:
        return f"callback:{self.destination}:{self.ticket}"


class CaseStatusChange(BaseModel):
    """A destination's notice that the ticket standing for a hub case changed: solved or closed
    (`state: closed`), reopened (`state: open`), or only reassigned or reprioritised (`state`
    None). Recorded on the case as `external_state[destination]`; closing follows the case
    rules (`cases.close_on`)."""

    model_config = _CALLBACK_SIDE

    kind: Literal["case_status"] = "case_status"
    destination: str
    ticket: str
    case_id: str | None = None
    event_id: str
    state: Literal["open", "closed"] | None = None
    #: The vendor's own word for the status (`solved`, `4`, `Done`, `COMPLETED`).
    vendor_status: str | None = None
    assignee: str | None = None
    priority: str | None = None
    occurred_at: datetime | None = None
    received_at: datetime = Field(default_factory=utcnow)

    @property
    def dedupe_key(self) -> str:
        return f"callback:{self.destination}:status:{self.event_id}"

    @property
    def order_key(self) -> str:
        return f"callback:{self.destination}:{self.ticket}"


#: Items a destination's callback yields for the inbound queue.
CallbackItem = AgentReply | CaseStatusChange

InboundEvent = Annotated[
    InboundMessage | StatusEvent | UnhandledEvent | IdentityChange | AgentReply | CaseStatusChange,
    Field(discriminator="kind"),
]


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


class RuleTrace(BaseModel):
    """One rule's outcome for one contact. Frozen: the routing engine builds every possible
    outcome of a rule once, when it compiles the rules, and shares them between contacts."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    rule: str
    matched: bool
    #: For a rule that did not match, the condition that failed; for one that did, what it did.
    reason: str | None = None


class ReplyIntent(BaseModel):
    """An automatic reply a rule asked for (acknowledgement, out of hours), rendered in the
    customer's language; the outbound capability sends it through the originating channel."""

    model_config = _WORKER_SIDE

    rule: str
    template: str
    language: str
    text: str


class RoutingDecision(BaseModel):
    model_config = _WORKER_SIDE

    #: Serialized by name (`high`), the way rules and vendors' field mappings speak of it.
    priority: Priority = Priority.NORMAL
    queue: str = "default"
    #: Skill → required proficiency (1-5), for skills-based routing in the ACD.
    skills: dict[str, int] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=empty_list)
    destinations: list[str] = Field(default_factory=empty_list)
    replies: list[ReplyIntent] = Field(default_factory=empty_list)
    #: Why the contact waits in the exception queue for manual handling (nothing is delivered
    #: until `POST /v1/exceptions/{id}/resolve` releases it); None when not parked.
    parked: str | None = None
    #: Why nothing is delivered at all (spam, auto-replies); None when not suppressed.
    suppressed: str | None = None
    #: Which rule set decided: `inline`, or the source's document version.
    rules_version: str | None = None
    #: Every rule evaluated, in order, and whether it matched: the decision explains itself.
    trace: list[RuleTrace] = Field(default_factory=empty_list)

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_by_name(cls, value: Any) -> Any:
        return Priority.coerce(value)

    @field_serializer("priority")
    def _priority_name(self, priority: Priority) -> Literal["low", "normal", "high", "urgent"]:
        return priority.name.lower()  # type: ignore[return-value]


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    DEAD = "dead"


class Delivery(BaseModel):
    model_config = _WORKER_SIDE

    id: str
    contact_id: str
    destination: str
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    last_error: str | None = None
    external_ref: str | None = None
    updated_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None


class Party(BaseModel):
    """The customer side of a contact after normalization."""

    model_config = _WORKER_SIDE

    identifiers: list[Identifier] = Field(default_factory=empty_list)
    #: Claims stored for the record but never used to link (see `Handle.verified`).
    unverified: list[Identifier] = Field(default_factory=empty_list)
    display_name: str | None = None


class IdentifierDecision(BaseModel):
    """What resolution did with one identifier of the contact, and which rule decided it."""

    model_config = _WORKER_SIDE

    identifier: str
    #: matched, linked, created_with, already_linked, blocked, kind_not_linkable, unverified,
    #: limit_reached, owned_by_other_customer.
    outcome: str
    rule: str


class Resolution(BaseModel):
    """How the contact found its customer: the matched identifier, or why a customer was created."""

    model_config = _WORKER_SIDE

    customer_id: str
    created_customer: bool
    matched_identifier: str | None = None
    rule: str
    decisions: list[IdentifierDecision] = Field(default_factory=empty_list)


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


class StatusChange(BaseModel):
    """One entry of an outbound message's `status_history`."""

    model_config = _WORKER_SIDE

    at: datetime
    status: OutboundStatus
    #: The provider's error or status code (`21610`, `131047`), when it gave one.
    code: str | None = None
    reason: str | None = None
    #: `hub` (queued, or the send worker's outcome) or the provider that reported it.
    source: str = "hub"


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


class ReplyTarget(BaseModel):
    """Where and how to answer the customer's latest message on one channel and account: kept on
    the customer (per channel and account) and on the case, so a send costs no contact read."""

    model_config = _WORKER_SIDE

    contact_id: str
    case_id: str
    channel: Channel
    provider: str
    account: str
    #: The recipient as the provider addresses them (see `OutboundMessage.to`).
    to: str
    reply: ReplyContext = Field(default_factory=ReplyContext)
    #: The provider's timestamp of the customer's message (its arrival time when it gave none):
    #: service windows run from it.
    at: datetime

    @property
    def key(self) -> str:
        return reply_key(self.channel, self.provider, self.account)


def reply_key(channel: Channel | str, provider: str, account: str) -> str:
    return f"{channel}|{provider}|{account}"


class Contact(BaseModel):
    """One normalized interaction, attached to a customer and a case."""

    model_config = _WORKER_SIDE

    id: str
    direction: Direction = Direction.INBOUND
    provider: str
    channel: Channel
    provider_message_id: str
    account: str
    sender: Party
    #: False when the channel did not prove the sender: an email whose From address neither the
    #: provider nor the hub's DKIM check proved. Routing can park such contacts (`sender_verified`).
    sender_verified: bool = True
    sent_at: datetime | None = None
    received_at: datetime
    content_type: ContentType
    text: str | None = None
    subject: str | None = None
    attachments: list[Attachment] = Field(default_factory=empty_list)
    location: Location | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    conversation_key: str | None = None
    thread_keys: list[str] = Field(default_factory=empty_list)
    customer_id: str
    case_id: str
    #: Why the contact joined or opened its case (within_window, thread_key, new_case...).
    case_reason: str | None = None
    resolution: Resolution
    enrichment: dict[str, Any] = Field(default_factory=dict)
    routing: RoutingDecision = Field(default_factory=RoutingDecision)
    deliveries: list[Delivery] = Field(default_factory=empty_list)
    raw: dict[str, Any] = Field(default_factory=dict)
    #: Outbound messages only: how far the message got (`OutboundStatus`, forward only), and
    #: every status reported, oldest first. None and empty for inbound contacts.
    status: OutboundStatus | None = None
    status_history: list[StatusChange] = Field(default_factory=empty_list)


class AttributeValue(BaseModel):
    """A golden-record attribute with where and when it came from."""

    model_config = _WORKER_SIDE

    value: Any
    source: str
    updated_at: datetime


class ExternalState(BaseModel):
    """A ticket's state as its vendor last reported it through a callback."""

    model_config = _WORKER_SIDE

    #: `closed` once the vendor solved or closed the ticket, `open` otherwise.
    state: Literal["open", "closed"] = "open"
    vendor_status: str | None = None
    assignee: str | None = None
    priority: str | None = None
    #: When the vendor says the change happened (else when the hub heard of it): older reports
    #: arriving late never undo newer ones.
    updated_at: datetime
    ticket: str | None = None


class CaseSummary(BaseModel):
    """What the customer record keeps about its open case, so one read finds both."""

    model_config = _WORKER_SIDE

    id: str
    opened_at: datetime
    last_activity_at: datetime
    contact_count: int = 0
    channels: list[Channel] = Field(default_factory=empty_list)
    #: Per two-way destination, the state of the case's ticket as the vendor last reported it
    #: (status, assignee, priority): read by the API and by routing conditions (`ticket:`), and
    #: what decides when the case closes (`cases.close_on`). Stored with `external_refs`, and
    #: in the customer's open-case summary, which routing reads without another lookup.
    external_state: dict[str, ExternalState] = Field(default_factory=dict)


class MergeSummary(BaseModel):
    """One entry of a customer's merge history; the full audit record is `MergeRecord`."""

    model_config = _WORKER_SIDE

    merge_id: str
    #: survivor: this customer absorbed `other_customer_id`; absorbed: it was merged into it.
    role: Literal["survivor", "absorbed"]
    other_customer_id: str
    merged_at: datetime
    #: What caused it: `contact:<provider>:<message id>` or `api:<api key name>`.
    trigger: str
    reverted_at: datetime | None = None


class ContactActivity(BaseModel):
    """What routing needs to know about the customer's recent contacts, kept on the customer
    record (which every contact reads and writes anyway), so repeat-contact rules and the
    contact history cost no extra read."""

    model_config = _WORKER_SIDE

    #: The latest contacts' arrival times and channels, newest first (at most `RECENT_LIMIT`).
    recent: list[tuple[datetime, Channel]] = Field(default_factory=empty_list)
    #: Contacts per day (UTC date, ISO) and channel, for the last 31 days.
    daily: dict[str, dict[Channel, int]] = Field(default_factory=dict)


class Customer(BaseModel):
    model_config = _WORKER_SIDE

    id: str
    identifiers: list[Identifier] = Field(default_factory=empty_list)
    #: Keys of `identifiers` the customer holds by email continuity only: mail from the address
    #: that nobody proved (no provider verdict, no aligned DKIM) joins this customer, and only
    #: this one. A verified contact from the address makes it an ordinary identifier.
    unverified_identifiers: list[str] = Field(default_factory=empty_list)
    #: The golden record: per attribute, the value that survives under the survivorship rules.
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)
    #: Per attribute and source, the latest value that source gave: what survivorship decides
    #: from, and how conflicts (two names) are seen.
    observations: dict[str, dict[str, AttributeValue]] = Field(default_factory=dict)
    #: Data-quality findings that cannot be derived from the record itself (an unusable phone
    #: number seen on a contact), by flag, with when they were last seen.
    quality_issues: dict[str, datetime] = Field(default_factory=dict)
    #: The consent ledger (`domain/consent.py`): per consent channel (`sms` covers MMS) and purpose
    #: (`service`, `marketing`), the current state with its source, time, evidence and history.
    #: Records stored as `{channel: state}` before the ledger existed are read into it.
    consent: ConsentLedger = Field(default_factory=dict)
    #: How to answer the customer's latest message per channel, provider and account
    #: (`ReplyTarget.key`): the `reply` and `preferred` sends and the service windows read it.
    reply_targets: dict[str, ReplyTarget] = Field(default_factory=dict)
    open_case: CaseSummary | None = None
    #: Set on a customer absorbed by a merge: the survivor that now holds its identifiers.
    merged_into: str | None = None
    #: Customers this one absorbed (transitively): their contacts are part of its timeline.
    merged_from: list[str] = Field(default_factory=empty_list)
    #: Merge history, oldest first, including reverted merges.
    merges: list[MergeSummary] = Field(default_factory=empty_list)
    #: Customers an unmerge separated from this one: never merged with it again automatically
    #: (an explicit merge through the API still may).
    no_merge_with: list[str] = Field(default_factory=empty_list)
    #: Set while the customer is being erased: merges refuse it, so no data escapes erasure.
    erasing: bool = False
    activity: ContactActivity = Field(default_factory=ContactActivity)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    #: Bumped on every write; stores use it for optimistic concurrency.
    version: int = 0

    def identifiers_proved(self) -> set[str]:
        """Keys of the identifiers the customer holds by proof (not by email continuity only)."""
        continuity = set(self.unverified_identifiers)
        return {i.key for i in self.identifiers if i.key not in continuity}


class CaseStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class ExternalRef(BaseModel):
    model_config = _WORKER_SIDE

    destination: str
    ref: str
    updated_at: datetime = Field(default_factory=utcnow)
    #: The ticket's state as the vendor last reported it (two-way destinations): kept with the
    #: reference, so a new ticket (a follow-up of a closed one) starts without the old one's.
    state: ExternalState | None = None


class Case(CaseSummary):
    """The customer's open concern across channels: the summary's fields plus its owner, status and
    the vendor objects each destination created for it (ticket id...), so later contacts thread
    into them."""

    customer_id: str
    status: CaseStatus = CaseStatus.OPEN
    closed_at: datetime | None = None
    #: api, inactive, window_elapsed, superseded (another case of the customer took over),
    #: merged (the customer was merged into one whose open case continues), vendor_closed (the
    #: destinations that decide closed its ticket: `closed_by` names the last of them).
    close_reason: str | None = None
    closed_by: str | None = None
    external_refs: dict[str, ExternalRef] = Field(default_factory=dict)
    #: How to answer the case's latest inbound message (what a `reply` to the case answers).
    last_inbound: ReplyTarget | None = None


class DeliveryJob(BaseModel):
    """One unit on the delivery queue: everything the connector needs, so it reads nothing."""

    model_config = _WORKER_SIDE

    kind: Literal["contact"] = "contact"
    delivery_id: str
    destination: str
    event_type: str = "contact.created"
    contact: Contact
    customer: Customer
    case: Case


class DeadLetter(BaseModel):
    """A delivery the hub gave up on, kept with its job so it can be replayed."""

    model_config = _WORKER_SIDE

    #: The delivery id: one per contact (or customer event) and destination.
    id: str
    destination: str
    #: The contact id, or the customer event's id.
    subject_id: str
    reason: str
    attempts: int
    dead_at: datetime
    #: The queued job as it was (`DeliveryJob` or `CustomerEvent` JSON).
    job: str
    #: The customer whose data the job holds (a contact job: the message text and the address),
    #: so that erasure and export find it by key; None for a customer event, which carries ids
    #: only (and a `customer.erased` notice must outlive the erasure it announces).
    customer_id: str | None = None
    #: When the store forgets it (`delivery.dead_letter_days` after it died); None: kept until
    #: replayed (dead letters written before retention existed).
    expires_at: datetime | None = None
    #: `message` for an outbound message the send worker gave up on (its job is the
    #: `OutboundMessage`); None for delivery jobs, told apart by their body.
    kind: Literal["message"] | None = None


class ParkedContact(BaseModel):
    """An entry of the exception queue: a contact a rule parked for manual handling."""

    model_config = _WORKER_SIDE

    contact_id: str
    customer_id: str
    case_id: str
    channel: Channel
    reason: str
    parked_at: datetime


class MergeRecord(BaseModel):
    """The audit trail of one merge: what was merged, why, and both customers as they were
    before, which is what unmerging restores."""

    model_config = _WORKER_SIDE

    id: str
    survivor_id: str
    absorbed_id: str
    merged_at: datetime
    trigger: str
    #: The identifier keys that tied the two customers together (empty for an explicit merge).
    matched_identifiers: list[str] = Field(default_factory=empty_list)
    #: The absorbed customer's identifiers, now held by the survivor.
    moved_identifiers: list[Identifier] = Field(default_factory=empty_list)
    #: Cases the merge changed, with their owner before it: {case id: customer id}.
    case_owners: dict[str, str] = Field(default_factory=dict)
    survivor_before: Customer
    absorbed_before: Customer
    reverted_at: datetime | None = None
    reverted_by: str | None = None


class CustomerEvent(BaseModel):
    """A change to a customer as a whole (`customer.erased`, `customer.merged`,
    `customer.unmerged`) or to one of its cases (`case.opened`, `case.closed`, `case.reopened`),
    for destinations that support it. It carries ids only: such a notice
    must not itself hold personal data."""

    model_config = _WORKER_SIDE

    kind: Literal["customer_event"] = "customer_event"
    event_id: str
    delivery_id: str
    destination: str
    event_type: str
    customer_id: str
    occurred_at: datetime
    #: For merge events: the absorbed (or restored) customer, and the merge's audit record.
    other_customer_id: str | None = None
    merge_id: str | None = None
    #: For case events (`case.opened`, `case.closed`, `case.reopened`): the case, why it closed
    #: (`Case.close_reason`) and the destination whose ticket closed or reopened it.
    case_id: str | None = None
    reason: str | None = None
    by_destination: str | None = None


DeliveryWork = Annotated[DeliveryJob | CustomerEvent, Field(discriminator="kind")]
