"""The models only the workers, the consumer API and the destination callbacks use: contacts,
customers, cases, deliveries, routing decisions, and the items a destination's callback yields.

They live apart from `models.py` (what a channel adapter produces) so a webhook function's cold
start does not create their classes (about 0.25 ms each even with `defer_build`, 27 models):
`chalicelib.domain.models` still exports every name here, loading this module the first time one
of them is asked for (`models.__getattr__`). Modules on the webhook path import these names only
for type checking or inside the function that uses them (`tests/unit/test_ingest_imports.py`).
"""

# No `from __future__ import annotations`: see models.py.

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from chalicelib.domain.consent import ConsentLedger
from chalicelib.domain.defaults import empty_list
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.models import (
    Attachment,
    CaseStatus,
    Channel,
    ContentType,
    DeliveryStatus,
    Direction,
    IdentityChange,
    InboundMessage,
    Location,
    OutboundStatus,
    Priority,
    ReplyContext,
    StatusEvent,
    UnhandledEvent,
    reply_key,
    utcnow,
)

#: Models only the workers and the API use build their validators on first use.
_WORKER_SIDE = ConfigDict(defer_build=True)
#: Models the destination callbacks produce (`POST /callbacks/...`, then the workers): built on
#: the first callback.
_CALLBACK_SIDE = ConfigDict(defer_build=True)


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
    #: Hours after which the case is due a follow-up (`then: {follow_up_hours: 48}`): the
    #: process worker arms a `follow_up` timer for it; None when no rule asked.
    follow_up_hours: float | None = None

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_by_name(cls, value: Any) -> Any:
        return Priority.coerce(value)

    @field_serializer("priority")
    def _priority_name(self, priority: Priority) -> Literal["low", "normal", "high", "urgent"]:
        return priority.name.lower()  # type: ignore[return-value]


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
    #: Where the case is handled and how urgently: set from the routing decision that opened it
    #: and changed by event rules (`open_case`, `queue`, `priority`, `escalate`); None until then.
    queue: str | None = None
    priority: Priority | None = None
    tags: list[str] = Field(default_factory=empty_list)
    #: What the case is about (`outage`, `parcel`): an event rule's `open_case.topic`, which
    #: suppresses proactive messages on the same topic while the case is open.
    topic: str | None = None
    #: When each of the case's timers is due (`sla`, `follow_up`, `auto_close`): a timer that
    #: fires acts only while its due time is still the one recorded here.
    due: dict[Literal["sla", "follow_up", "auto_close"], datetime] = Field(default_factory=dict)

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_by_name(cls, value: Any) -> Any:
        return Priority.coerce(value)

    @field_serializer("priority")
    def _priority_name(self, priority: Priority | None) -> Literal["low", "normal", "high", "urgent"] | None:
        return None if priority is None else priority.name.lower()  # type: ignore[return-value]


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
    #: Proactive messages sent to the customer per purpose (`service`, `marketing`), newest
    #: first and trimmed to the longest frequency-cap window: what `events.frequency_caps` counts.
    outreach: dict[str, list[datetime]] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    #: Bumped on every write; stores use it for optimistic concurrency.
    version: int = 0

    def identifiers_proved(self) -> set[str]:
        """Keys of the identifiers the customer holds by proof (not by email continuity only)."""
        continuity = set(self.unverified_identifiers)
        return {i.key for i in self.identifiers if i.key not in continuity}


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
