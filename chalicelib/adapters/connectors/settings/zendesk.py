"""`type: zendesk` destinations' settings, their `callbacks` section included (the connector:
`connectors/zendesk.py`; the callbacks: `callbacks/zendesk.py`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from chalicelib.adapters.connectors.mapping import FieldMapping
from chalicelib.adapters.connectors.settings.callbacks import CallbackSettings
from chalicelib.adapters.connectors.settings.vendor import VendorSettings


#: Zendesk's ticket statuses (https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/).
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")


class ZendeskCallbackSettings(CallbackSettings):
    #: Statuses that mean the ticket is done: the case closes (per `cases.close_on`).
    closed_statuses: list[str] = Field(default_factory=lambda: ["solved", "closed"])

    @field_validator("closed_statuses")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        lowered = [v.strip().lower() for v in value]
        unknown = [v for v in lowered if v not in STATUSES]
        if unknown:
            raise ValueError(f"{', '.join(unknown)} not a Zendesk status ({', '.join(STATUSES)})")
        return lowered


MIB = 1024 * 1024
#: Hub priority → Zendesk priority; the two scales have the same four names.
DEFAULT_PRIORITIES = {"urgent": "urgent", "high": "high", "normal": "normal", "low": "low"}
#: Zendesk's own upload limit is 50 MB per file.
MAX_UPLOAD_BYTES = 50 * MIB


class ZendeskSettings(VendorSettings):
    """`base_url` is `https://<subdomain>.zendesk.com`; auth is usually `basic` with
    `<agent email>/token` and an API token, or `bearer` with an OAuth access token."""

    #: False: the hub's comments are internal notes, so the requester is not emailed.
    public_comments: bool = False
    #: Set a solved or pending ticket back to open when a follow-up arrives: the hub writes as the
    #: API user, and an agent's note would not reopen it the way a customer reply does.
    reopen_on_follow_up: bool = True
    group_id: int | None = None
    brand_id: int | None = None
    ticket_form_id: int | None = None
    #: Copy attachments with a public https URL into the ticket; others are listed in the comment.
    upload_attachments: bool = True
    max_attachment_bytes: int = Field(default=10 * MIB, gt=0, le=MAX_UPLOAD_BYTES)
    #: On `customer.erased`, also permanently delete the soft-deleted end user (GDPR).
    permanently_delete_users: bool = True
    #: Append the hub's outbound messages (`message.sent`) to the case's ticket as public comments.
    outbound_messages: bool = True
    #: The Zendesk user shown as the author of those comments (an agent standing for the hub);
    #: None: the API user. Either way the API user is the ticket's updater, which triggers see.
    outbound_author_id: int | None = Field(default=None, gt=0)
    #: Ticket status set with each outbound comment (`pending`: waiting for the customer); None
    #: leaves the status alone.
    outbound_status: Literal["open", "pending", "hold", "solved"] | None = None
    #: Two-way sync: agents' public replies and ticket changes come back (docs/destinations/zendesk.md).
    callbacks: ZendeskCallbackSettings | None = None

    @field_validator("mapping")
    @classmethod
    def _zendesk_mapping(cls, mapping: FieldMapping) -> FieldMapping:
        allowed = set(DEFAULT_PRIORITIES.values())
        for name, value in mapping.priority.items():
            if value not in allowed:
                raise ValueError(f"priority.{name}: {value!r} is not a Zendesk priority (urgent, high, normal, low)")
        for field in mapping.custom_fields:
            if not field.isdigit():
                raise ValueError(f"custom_fields: {field!r} must be a Zendesk ticket field id (digits)")
        return mapping
