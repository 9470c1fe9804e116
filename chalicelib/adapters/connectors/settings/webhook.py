"""`type: webhook` destinations' settings (the connector: `connectors/webhook.py`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.adapters.connectors.settings.urls import secure_url
from chalicelib.secrets import Secret

class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    #: `whsec_<base64>` secrets; every one signs, so consumers can rotate without downtime.
    secrets: list[Secret] = Field(min_length=1)
    #: The spec recommends 15-30 s; the deliver worker's timeout bounds it too.
    timeout_seconds: float = Field(default=15.0, gt=0, le=30)
    #: Extra non-secret headers (e.g. a routing key the consumer expects).
    headers: dict[str, str] = Field(default_factory=dict)
    #: Include the provider's raw payload in `data.contact.raw` (larger events).
    include_raw: bool = False
    #: Also send `case.opened`, `case.closed` and `case.reopened` (docs/two-way.md, "Case events"),
    #: and the case timer events (`case.sla_breached`, `case.follow_up_due`, `case.auto_closed`).
    case_events: bool = True

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        return secure_url(value)
