"""Response and request shapes the routes answer with plain dicts, written down for the document.

The routes build these bodies from the domain models (`Customer`, `Contact`, `Case`, ...) plus a
few fields of their own; where a body is a domain model as it is, the document uses that model.
Extra properties are allowed everywhere (pydantic's default), so a field added to a body is not a
breaking change, while every field named here is checked by the fuzz test's schema conformance.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.domain.models import Case, Contact, Customer
from chalicelib.domain.stored import MergeRecord, ParkedContact


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable: `not_found`, `insufficient_scope`, `bad_request`, ...")
    message: str = Field(description="What is wrong, for a person; never echoes personal data.")
    detail: dict[str, Any] = Field(description="Specifics: `required_scope`, `parameter`, `fields`, ...")


class Error(BaseModel):
    """The one error shape every 4xx and 5xx answer has (`chalicelib/api/http.py`)."""

    model_config = ConfigDict(title="Error")

    error: ErrorDetail
    request_id: str | None = Field(default=None, description="The API Gateway request id, when there is one.")


class Health(BaseModel):
    status: Literal["ok"]
    runtime: str = Field(description="`aws` or `embedded`.")
    stage: str


class ReplayBatchRequest(BaseModel):
    destination: str = Field(description="The destination whose dead letters to queue again.")
    limit: int = Field(default=25, ge=1, le=50, description="At most this many in this call (each costs the API function a few AWS calls: bounded, so a call ends well within its timeout).")


class ReplayBatch(BaseModel):
    destination: str
    queued: int = Field(description="Dead letters queued again by this call, oldest first.")
    more: bool = Field(description="True while the destination has dead letters left: call again.")


class Me(BaseModel):
    """Who the presented key is: the console disables what it may not do."""

    name: str = Field(description="The key's configured name.")
    scopes: list[str] = Field(description="Its scopes, sorted.")


class QueueDepth(BaseModel):
    name: str = Field(description="`inbound`, `delivery`, `delivery dead letters`, `outbound`, ...")
    depth: int | None = Field(description="Messages waiting or in flight (approximate on SQS); null when unreadable.")
    error: str | None = Field(default=None, description="Why the depth could not be read.")


class OpenCircuit(BaseModel):
    destination: str
    open_for_seconds: float = Field(description="Until the next trial delivery.")


class Circuits(BaseModel):
    observed: bool = Field(description="False where this process delivers nothing (the API function on AWS).")
    open: list[OpenCircuit]
    note: str | None = None
    error: str | None = None


class RulesInForce(BaseModel):
    version: str | None
    source: str | None = Field(description="Where the rules came from: the configuration or a rules source.")
    error: str | None = None


class RulesStatus(BaseModel):
    routing: RulesInForce
    events: RulesInForce


class BoundedCount(BaseModel):
    count: int | None = Field(description="Counted up to 100; null when unreadable.")
    more: bool = Field(default=False, description="True when there are more than `count`.")
    error: str | None = None


class HubStatus(BaseModel):
    """What an operator on call looks at first; a part that cannot be read says why and hides nothing else."""

    runtime: str = Field(description="`aws` or `embedded`.")
    stage: str
    queues: list[QueueDepth]
    circuits: Circuits
    rules: RulesStatus
    exceptions: BoundedCount
    dead_letters: BoundedCount


class CustomerView(Customer):
    """The golden record as the API shows it: the stored customer, an open case idle past the
    limit shown as none, its data-quality flags and its service windows as of now."""

    quality_flags: list[Any] = Field(default_factory=list)
    service_windows: Any = None


class CustomerList(BaseModel):
    data: list[CustomerView] = Field(max_length=1, description="The customer holding the identifier, or none.")


class TimelineItem(Contact):
    """A contact or business event of a customer's timeline (without its delivery log and raw payload)."""

    kind: Literal["contact", "event"]


class ContactView(Contact):
    """The contact with its delivery log, including routed destinations not yet attempted (`pending`)."""

    kind: Literal["contact", "event"]


class TimelinePage(BaseModel):
    data: list[TimelineItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class ParkedPage(BaseModel):
    data: list[ParkedContact]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class DeadLetterSummary(BaseModel):
    """A dead letter without its queued job body."""

    id: str = Field(description="The delivery id (one per contact or customer event and destination).")
    destination: str
    subject_id: str
    reason: str
    attempts: int
    dead_at: datetime
    customer_id: str | None = None
    expires_at: datetime | None = None
    kind: Literal["contact", "customer_event", "message"]


class DeadLetterPage(BaseModel):
    data: list[DeadLetterSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class UnhandledItem(BaseModel):
    id: str
    provider: str
    reason: str
    raw: Any = None
    truncated: bool = False
    received_at: datetime


class UnhandledPage(BaseModel):
    data: list[UnhandledItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class Erasure(BaseModel):
    customer_id: str
    status: Literal["erased"]
    contacts: int | None = None
    cases: int | None = None
    merged_customers: list[str] | None = None


class CustomerExport(BaseModel):
    """Everything held about a customer (GDPR Art. 15)."""

    exported_at: datetime
    customer: Customer
    merged_customers: list[Customer]
    contacts: list[Contact]
    cases: list[Case]
    merges: list[MergeRecord]


class MergeOutcome(BaseModel):
    merge_id: str | None = Field(description="The merge's audit record (`GET /v1/merges/{merge_id}`); null when already one customer.")
    customer: CustomerView


class UnmergeOutcome(BaseModel):
    merge_id: str
    reverted_at: datetime
    customers: list[CustomerView]


class ConsentLedger(BaseModel):
    customer_id: str
    consent: dict[str, Any]


class RoutingExplanation(BaseModel):
    decision: dict[str, Any] = Field(description="The routing decision with its trace.")
    enrichment: Any = None


class EventExplanation(BaseModel):
    """Which event rules match the event and what they would do; nothing is written or sent."""

    model_config = ConfigDict(extra="allow")


class Replayed(BaseModel):
    id: str
    destination: str
    status: Literal["queued"]


class AcceptedEvent(BaseModel):
    id: str
    status: Literal["queued", "duplicate"]


class AcceptedEvents(BaseModel):
    data: list[AcceptedEvent]


class QueuedMessage(BaseModel):
    id: str
    status: str
    channel: str
    provider: str | None = None
    account: str | None = None
    to: str | None = None
    case_id: str | None = None
    customer_id: str | None = None


class SentMessage(BaseModel):
    data: QueuedMessage


# --- request bodies that the routes read field by field --------------------------------------------


class MergeRequest(BaseModel):
    customer_id: str = Field(description="The customer to merge with this one (`cus_…`).")


class UnmergeRequest(BaseModel):
    merge_id: str | None = Field(default=None, description="The merge to take back (`mrg_…`); default the customer's latest.")


class LinkRequest(BaseModel):
    identifier: str = Field(description="`kind:value`, e.g. `external:CRM-1042` or `phone:+4915123456789`.")


class AttributesRequest(BaseModel):
    source: str = Field(default="api", description="Who states the values (survivorship ranks sources).")
    attributes: dict[str, Any] = Field(description="Attribute values; null withdraws the source's value.")


class RoutingExplainRequest(BaseModel):
    contact: dict[str, Any] = Field(description="A stored contact as `GET /v1/contacts/{id}` returns it, or the fields a rule reads.")
    customer: dict[str, Any] | None = None
    case: dict[str, Any] | None = None


class EventExplainRequest(BaseModel):
    event: dict[str, Any] = Field(description="A business event as `POST /v1/events` takes it.")
    customer: dict[str, Any] | None = None


# --- event envelopes the hub delivers to destinations ---------------------------------------------


class Ref(BaseModel):
    id: str


class CaseRef(BaseModel):
    id: str
    close_reason: str | None = Field(default=None, description="Why the case closed (`case.closed`).")
    destination: str | None = Field(default=None, description="The destination whose ticket closed or reopened it.")


class CustomerEventData(BaseModel):
    customer: Ref = Field(description="The customer (for a merge: the survivor).")
    other_customer: Ref | None = Field(default=None, description="`customer.merged` / `customer.unmerged`: the customer absorbed or given back.")
    merge: Ref | None = Field(default=None, description="`customer.merged` / `customer.unmerged`: `GET /v1/merges/{id}`.")
    case: CaseRef | None = Field(default=None, description="`case.*`: the case (`GET /v1/cases/{id}`).")


class CustomerEventEnvelope(BaseModel):
    """The body of a customer or case event delivery: ids only, read the rest through `/v1`."""

    type: str
    timestamp: str = Field(description="When it happened, ISO 8601 UTC.")
    data: CustomerEventData
