"""`type: eventbridge` destinations' settings (the connector: `connectors/eventbridge.py`)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: PutEvents' entry limit was 256 KB until January 2026, when event buses went to 1 MB. The
#: default stays at 256 KB because targets such as SNS and Step Functions still stop there.
DEFAULT_MAX_ENTRY_BYTES = 256 * 1024
MAX_ENTRY_BYTES = 1024 * 1024
DETAIL_TYPE_LIMIT = 128

DEFAULT_DETAIL_TYPES = {
    "contact.created": "Contact Created",
    "message.sent": "Message Sent",
    "message.status": "Message Status Changed",
    "customer.erased": "Customer Erased",
    "customer.merged": "Customer Merged",
    "customer.unmerged": "Customer Unmerged",
}


_BUS = re.compile(r"^(arn:aws[\w-]*:events:[a-z]+-[a-z]+-[\w-]+:[0-9]{12}:event-bus/)?[.\-_A-Za-z0-9]+$")


class EventBridgeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The bus name or ARN (an ARN reaches a bus in another account).
    event_bus_name: str
    source: str = "omnichannel.hub"
    #: Hub event type → DetailType; types not listed get their words title-cased
    #: (`contact.updated` → "Contact Updated").
    detail_types: dict[str, str] = Field(default_factory=dict)
    #: Include the provider's raw payload in `detail.data.contact.raw` (dropped first when the
    #: event would be too large).
    include_raw: bool = False
    #: Also send `case.opened`, `case.closed` and `case.reopened` (docs/two-way.md, "Case events"),
    #: and the case timer events (`case.sla_breached`, `case.follow_up_due`, `case.auto_closed`).
    case_events: bool = True
    max_entry_bytes: int = Field(default=DEFAULT_MAX_ENTRY_BYTES, ge=4096, le=MAX_ENTRY_BYTES)
    #: The bus's region when it differs from the hub's (an ARN's region is used otherwise).
    region: str | None = None

    @field_validator("event_bus_name")
    @classmethod
    def _bus(cls, value: str) -> str:
        if len(value) > 1600 or not _BUS.match(value):
            raise ValueError("must be an event bus name or event bus ARN")
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        # EventBridge reserves `aws.` sources for AWS services.
        if not value or value.startswith("aws.") or len(value) > 256:
            raise ValueError("must be 1-256 characters and must not start with 'aws.'")
        return value

    @field_validator("detail_types")
    @classmethod
    def _detail_types(cls, value: dict[str, str]) -> dict[str, str]:
        for event_type, detail_type in value.items():
            if not detail_type or len(detail_type) > DETAIL_TYPE_LIMIT:
                raise ValueError(f"{event_type}: a detail type has 1-{DETAIL_TYPE_LIMIT} characters")
        return value

    def detail_type(self, event_type: str) -> str:
        found = self.detail_types.get(event_type) or DEFAULT_DETAIL_TYPES.get(event_type)
        if found:
            return found
        return " ".join(word.capitalize() for word in re.split(r"[._]", event_type) if word)[:DETAIL_TYPE_LIMIT]

    @property
    def bus_region(self) -> str | None:
        if self.region:
            return self.region
        return self.event_bus_name.split(":")[3] if self.event_bus_name.startswith("arn:") else None
