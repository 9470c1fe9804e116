"""`type: freshdesk` destinations' settings, their `callbacks` section included (the connector:
`connectors/freshdesk.py`; the callbacks: `callbacks/freshdesk.py`)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from chalicelib.adapters.connectors.mapping import FieldMapping
from chalicelib.adapters.connectors.settings.auth import AUTH_FIELD, AuthSettings
from chalicelib.adapters.connectors.settings.callbacks import CallbackSettings
from chalicelib.adapters.connectors.settings.vendor import VendorSettings
from chalicelib.domain.models import Channel
from chalicelib.secrets import Secret


class FreshdeskCallbackSettings(CallbackSettings):
    """`destinations[].callbacks` of a Freshdesk destination."""

    #: Status ids that close the hub case. Accounts with custom statuses add theirs
    #: (Admin → Ticket Fields → Status shows them; `GET /api/v2/ticket_fields` lists their ids).
    closed_statuses: list[int] = Field(default_factory=lambda: [4, 5], min_length=1)
    #: Custom status name → id, for bodies where `{{ticket.status}}` renders a custom status's name
    #: (the four built-in names are known).
    status_names: dict[str, int] = Field(default_factory=dict)

    @field_validator("status_names")
    @classmethod
    def _names(cls, value: dict[str, int]) -> dict[str, int]:
        return {name.strip().lower(): status for name, status in value.items() if name.strip()}


_CUSTOM_FIELD = re.compile(r"^cf_[a-z0-9_]+$")


class FreshdeskSettings(VendorSettings):
    """`base_url` is `https://<domain>.freshdesk.com`. Authenticate with `api_key` (a secret
    reference; sent as basic auth `<key>:X`) or, as for other vendors, with `auth`."""

    auth: Annotated[AuthSettings, AUTH_FIELD] | None = None
    #: The agent's API key (Profile settings → API key); a reference such as `env:FRESHDESK_API_KEY`.
    api_key: Secret | None = None
    #: Follow-up contacts become private notes (agents only) unless this is False.
    private_notes: bool = True
    #: Channel → source code, over `DEFAULT_SOURCES` (accounts may define more sources).
    sources: dict[Channel, int] = Field(default_factory=dict)
    #: One of the account's ticket types (`Question`, `Incident`...).
    ticket_type: str | None = None
    group_id: int | None = None
    #: A custom single-line text field (`cf_hub_case_id`) that receives the hub case id. When
    #: set, a delivery without a known ticket first searches for it (crash-safety); Freshdesk
    #: tickets have no external id of their own.
    case_id_field: str | None = None
    #: Append the hub's outbound messages (`message.sent`) to the case's ticket as public notes.
    outbound_messages: bool = True
    #: The agent (Admin → Agents, the id in the URL) shown as the author of those notes; None:
    #: the agent whose API key the hub uses.
    outbound_agent_id: int | None = Field(default=None, gt=0)
    #: Two-way sync (docs/destinations/freshdesk.md, "Answering from Freshdesk").
    callbacks: FreshdeskCallbackSettings | None = None

    @model_validator(mode="after")
    def _one_credential(self) -> FreshdeskSettings:
        if (self.auth is None) == (self.api_key is None):
            raise ValueError("set exactly one of api_key and auth")
        return self

    @field_validator("case_id_field")
    @classmethod
    def _custom_field_name(cls, value: str | None) -> str | None:
        if value is not None and not _CUSTOM_FIELD.match(value):
            raise ValueError("must be a custom field's API name, like cf_hub_case_id")
        return value

    @field_validator("sources")
    @classmethod
    def _positive_sources(cls, value: dict[Channel, int]) -> dict[Channel, int]:
        for channel, source in value.items():
            if source < 1:
                raise ValueError(f"{channel.value}: a Freshdesk source is a positive number")
        return value

    @field_validator("mapping")
    @classmethod
    def _freshdesk_mapping(cls, mapping: FieldMapping) -> FieldMapping:
        for name, value in mapping.priority.items():
            if value not in (1, 2, 3, 4):
                raise ValueError(f"priority.{name}: {value!r} is not a Freshdesk priority (1-4)")
        for field in mapping.custom_fields:
            if not _CUSTOM_FIELD.match(field):
                raise ValueError(f"custom_fields: {field!r} must be a custom field's API name (cf_...)")
        return mapping
