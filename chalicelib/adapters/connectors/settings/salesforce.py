"""`type: salesforce` destinations' settings, their `callbacks` section included (the connector:
`connectors/salesforce.py`; the callbacks: `callbacks/salesforce.py`)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from chalicelib.adapters.connectors.settings.callbacks import CallbackSettings
from chalicelib.adapters.connectors.settings.vendor import VendorSettings
from chalicelib.domain.models import Channel


_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
#: The 18-character id's suffix alphabet (one character per 5-character chunk, a bit per capital).
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def record_id(value: object) -> str | None:
    """The 18-character form of a Salesforce record id (15 or 18 characters), else None.

    The REST API answers 18-character ids, which the connector stores as the Case reference; a
    Flow formula or `$Organization.Id` may give the 15-character, case-sensitive form. The suffix
    is recomputed from the first 15 characters (what the CASESAFEID() formula function returns), so
    any spelling of the same record compares equal."""
    if not isinstance(value, str) or not _RECORD_ID.match(value.strip()):
        return None
    base = value.strip()[:15]
    suffix = "".join(_SUFFIX[sum(1 << i for i, c in enumerate(base[at:at + 5]) if "A" <= c <= "Z")]
                     for at in (0, 5, 10))
    return base + suffix


class SalesforceCallbackSettings(CallbackSettings):
    """`destinations[].callbacks` of a Salesforce destination."""

    #: The org's id (Setup → Company Information → Salesforce.com Organization ID, `00D…`). A
    #: body that names another org is refused (401), even with the right secret.
    organization_id: str | None = None
    #: `Case.Status` values that mean closed, for bodies without `IsClosed` (it decides when sent).
    closed_statuses: list[str] = Field(default_factory=lambda: ["Closed"], min_length=1)

    @field_validator("organization_id")
    @classmethod
    def _organization(cls, value: str | None) -> str | None:
        if value is None:
            return None
        normalised = record_id(value)
        if normalised is None or not normalised.startswith("00D"):
            raise ValueError("must be a Salesforce organization id (00D…, 15 or 18 characters)")
        return normalised

    @field_validator("hub_author_ids")
    @classmethod
    def _user_ids(cls, value: list[str]) -> list[str]:
        # The integration user's id as Setup shows it (15) or the API returns it (18): compared as 18.
        return [record_id(v) or v for v in value]

    @field_validator("closed_statuses")
    @classmethod
    def _statuses(cls, value: list[str]) -> list[str]:
        cleaned = [v.strip() for v in value if v.strip()]
        if not cleaned:
            raise ValueError("must name at least one Case.Status value")
        return cleaned


_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
#: An upsert updated a record since API 46.0 answers 200 with its id; before, 204 without a body.
_MIN_API_VERSION = 46.0


class SalesforceSettings(VendorSettings):
    """`base_url` is the org's My Domain (`https://acme.my.salesforce.com`); `auth` is normally
    `oauth2_client_credentials` with `token_url: https://acme.my.salesforce.com/services/oauth2/token`."""

    #: REST API version, `60.0` (a leading `v` is accepted); 46.0 or later.
    api_version: str = "60.0"
    #: Send API calls to the token response's `instance_url` (the org's own host), else `base_url`.
    #: Turn off when `base_url` is a proxy or a test mock.
    use_instance_url: bool = True
    #: Contact field marked External ID that holds the hub customer id (created in Setup).
    contact_external_id_field: str = "Hub_Customer_Id__c"
    #: Case field marked External ID (Unique) that holds the hub case id. Set it: without it a
    #: case whose creation was not recorded (a worker died) can be created twice.
    case_external_id_field: str | None = None
    #: Channel → Case.Origin picklist value, overriding the defaults.
    origins: dict[Channel, str] = Field(default_factory=dict)
    #: Hub routing queue → Case.OwnerId (a Salesforce queue `00G…` or user `005…`). When the
    #: queue is mapped, assignment rules are not run, so they cannot overwrite the owner.
    queues: dict[str, str] = Field(default_factory=dict)
    #: Fixed Case fields for every new case (`RecordTypeId`, `Type`, `Status`...).
    case_fields: dict[str, str | int | bool] = Field(default_factory=dict)
    #: Run the org's active case assignment rules (the `Sforce-Auto-Assign` header).
    assignment_rules: bool = True
    #: CaseComment.IsPublished: show follow-ups to the customer in portals.
    publish_comments: bool = False
    #: On `customer.erased`, delete the customer's Contact (found by its external id).
    delete_contacts_on_erasure: bool = True
    #: Append the hub's outbound messages (`message.sent`) to the case's Case as published
    #: CaseComments (IsPublished: visible to the customer in portals), as the integration user.
    outbound_messages: bool = True
    #: Two-way sync through record-triggered Flows (docs/destinations/salesforce.md, "Answering
    #: from Salesforce"): the organization id to check and the Status values that mean closed.
    callbacks: SalesforceCallbackSettings | None = None

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        version = value.removeprefix("v")
        if not re.fullmatch(r"[0-9]{2,3}\.0", version) or float(version) < _MIN_API_VERSION:
            raise ValueError(f"must be a REST API version like 60.0, at least {_MIN_API_VERSION}")
        return version

    @field_validator("contact_external_id_field", "case_external_id_field")
    @classmethod
    def _field_name(cls, value: str | None) -> str | None:
        if value is not None and not _API_NAME.match(value):
            raise ValueError("must be a field API name like Hub_Id__c")
        return value

    @field_validator("case_fields")
    @classmethod
    def _case_field_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not _API_NAME.match(name):
                raise ValueError(f"{name!r} is not a field API name")
        return value
