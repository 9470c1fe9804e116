"""`type: hubspot` destinations' settings, their `callbacks` section included (the connector:
`connectors/hubspot.py`; the callbacks: `callbacks/hubspot.py`)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from chalicelib.adapters.connectors.mapping import checked_paths
from chalicelib.adapters.connectors.settings.auth import BasicAuth
from chalicelib.adapters.connectors.settings.callbacks import CallbackSettings
from chalicelib.adapters.connectors.settings.vendor import VendorSettings
from chalicelib.secrets import Secret


#: The "Closed" stage of HubSpot's default support pipeline; other pipelines have their own ids.
DEFAULT_CLOSED_STAGES = ("4",)


class HubSpotCallbackSettings(CallbackSettings):
    """`destinations[].callbacks` of a HubSpot destination. `secrets` are the app's client
    secret(s): the Auth tab of a public app, or the private app's client secret."""

    #: Required: HubSpot signs the full URL it called, which the hub cannot see behind API Gateway.
    public_url: str | None = Field(default=None, validate_default=True)
    #: `hs_pipeline_stage` ids that close the case; every other stage is open. Stage ids are per
    #: portal: `GET /crm/v3/pipelines/tickets` lists them, closed ones with `ticketState: CLOSED`.
    closed_stages: list[str] = Field(default_factory=lambda: list(DEFAULT_CLOSED_STAGES), min_length=1)
    #: The HubSpot account (`portalId`) whose tickets this destination holds: events of other
    #: accounts (a public app installed in several) are skipped, since ticket ids are per account.
    portal_id: str | None = None
    #: The app's id: its own changes are echoes, and `create_setup` manages its subscriptions.
    app_id: str | None = None
    #: The developer account's API key (`hapikey`), only for `hubctl callbacks setup --create`
    #: on a legacy public app; private apps are configured in HubSpot's screens.
    developer_api_key: Secret | None = None

    @field_validator("public_url")
    @classmethod
    def _required_url(cls, value: str | None) -> str:
        if not value:
            raise ValueError("required for HubSpot: it signs the full URL it called "
                             "(https://<your-api>/callbacks/<destination>)")
        return value

    @field_validator("closed_stages", mode="before")
    @classmethod
    def _stage_ids(cls, value: Any) -> Any:
        if isinstance(value, list):
            stages = [str(v).strip() for v in value if str(v).strip()]
            if not stages:
                raise ValueError("name at least one closed stage id (e.g. \"4\")")
            return stages
        return value

    @field_validator("portal_id", "app_id", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        return str(value).strip() or None if value is not None else None


class HubSpotSettings(VendorSettings):
    """`base_url` is `https://api.hubapi.com`; `auth` is a private app's access token
    (`type: bearer`) or OAuth2."""

    #: Contact property (single-line text) the hub customer id is written to: it finds contacts
    #: without an email address, and the contacts to erase. Not "unique values": a customer with
    #: two email addresses can be two HubSpot contacts, and erasure must find both.
    customer_id_property: str | None = None
    create_tickets: bool = False
    #: Pipeline and stage ids for new tickets (Settings → Objects → Tickets → Pipelines); HubSpot
    #: uses its default pipeline when `ticket_pipeline` is left out.
    ticket_pipeline: str | None = None
    ticket_stage: str | None = None
    #: Ticket property (single-line text with "unique values") the hub case id is written to;
    #: a case's first delivery looks it up before creating a ticket.
    case_id_property: str | None = None
    #: Ticket property → path into the delivery, like `mapping.custom_fields` (which fills contact
    #: properties).
    ticket_custom_fields: dict[str, str] = Field(default_factory=dict)
    #: Log the hub's outbound messages (`message.sent`) as notes on the case's ticket (with
    #: `create_tickets`), else on the customer's contact.
    outbound_messages: bool = True
    #: Two-way sync: the app webhooks that report ticket stage, owner and priority changes.
    callbacks: HubSpotCallbackSettings | None = None

    @field_validator("auth")
    @classmethod
    def _token(cls, value):
        if isinstance(value, BasicAuth):
            raise ValueError("HubSpot takes a private app access token (type: bearer) or OAuth2, not basic auth")
        return value

    @field_validator("ticket_custom_fields")
    @classmethod
    def _paths(cls, value: dict[str, str]) -> dict[str, str]:
        return checked_paths(value)

    @model_validator(mode="after")
    def _ticket_settings(self) -> HubSpotSettings:
        if self.create_tickets and not self.ticket_stage:
            raise ValueError("create_tickets needs ticket_stage (the stage id new tickets start in)")
        return self
