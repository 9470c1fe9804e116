"""`destinations[].callbacks`: the two-way sync settings every vendor's callbacks share (the
callbacks themselves: `adapters/callbacks/`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.adapters.connectors.settings.urls import secure_url
from chalicelib.secrets import Secret

class CallbackSettings(BaseModel):
    """`destinations[].callbacks`: turns the destination's two-way sync on. Vendor modules extend
    it with what only their vendor has (Salesforce's organization id)."""

    model_config = ConfigDict(extra="forbid")

    #: The signing secret(s), or the shared secret the operator put into the vendor's webhook
    #: where the vendor signs nothing; several during a rotation, each a reference
    #: (`env:`, `ssm:`, `secretsmanager:`) in deployed configurations.
    secrets: list[Secret] = Field(min_length=1)
    #: The vendor's ids of the users the hub writes as (its API user, `outbound_author_id`):
    #: their comments are the hub's own and never go back to the customer.
    hub_author_ids: list[str] = Field(default_factory=list)
    #: The URL the vendor calls (`https://<api>/callbacks/<destination>`): printed by
    #: `hubctl callbacks setup`, and part of what HubSpot and Twilio sign.
    public_url: str | None = None
    #: How far a signed timestamp may be from the hub's clock (vendors that sign one).
    max_age_seconds: int = Field(default=300, ge=30, le=3600)
    #: Relay agents' public replies to the customer.
    replies: bool = True
    #: Follow the ticket's status (close and reopen the case, record assignee and priority).
    status: bool = True
    #: Tell the agent, with an internal note on the ticket, when a reply was not delivered.
    failure_notes: bool = True

    @field_validator("hub_author_ids")
    @classmethod
    def _author_ids(cls, value: list[str]) -> list[str]:
        return [str(v).strip() for v in value if str(v).strip()]

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        return secure_url(value) if value is not None else None
