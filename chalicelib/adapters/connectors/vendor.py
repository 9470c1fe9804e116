"""The base of connectors that call a vendor's HTTP API (Zendesk, Freshdesk, Jira, HubSpot,
Salesforce, Genesys, Twilio Flex): settings every one of them has, and the API client built from
them. Vendor modules add their own settings fields and say what to send.

Idempotency, the rule every vendor connector follows: the deliverer may call `deliver` again for
a job the vendor already accepted (a worker died before the hub recorded it). So the object that
stands for the case is created with the hub's case id as its external id wherever the vendor
has one (or the delivery id as the vendor's idempotency key where it takes one), and a delivery
without a known case reference first looks that external id up before creating anything.
"""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.adapters.connectors.auth import AUTH_FIELD, Authenticator, AuthSettings
from chalicelib.adapters.connectors.base import Connector, ConnectorRuntime, VendorApi
from chalicelib.adapters.callbacks.base import CallbackSettings
from chalicelib.adapters.connectors.mapping import FieldMapping
from chalicelib.secrets import SecretResolver


class VendorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The API's base URL (`https://acme.zendesk.com`); tests point it at a Prism mock.
    base_url: str
    auth: AuthSettings = AUTH_FIELD
    #: Per request; the deliver worker's own timeout bounds the whole delivery.
    timeout_seconds: float = Field(default=10.0, gt=0, le=30)
    mapping: FieldMapping = Field(default_factory=FieldMapping)
    #: Two-way sync: how the vendor's callbacks are verified and what they may change. None: the
    #: destination is one-way (`POST /callbacks/<name>` answers 404).
    callbacks: CallbackSettings | None = None

    @field_validator("base_url")
    @classmethod
    def _https(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        local = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if parts.scheme == "https" and parts.hostname or (parts.scheme == "http" and local):
            return value.rstrip("/")
        raise ValueError("must be an https:// URL (http:// only for localhost)")


VendorSettingsT = TypeVar("VendorSettingsT", bound=VendorSettings)


class VendorConnector(Connector[VendorSettingsT], Generic[VendorSettingsT]):
    #: Shown in error messages and logs: "zendesk answered 422: …".
    vendor: ClassVar[str]

    def __init__(self, name: str, settings: VendorSettingsT, secrets: SecretResolver, runtime: ConnectorRuntime) -> None:
        super().__init__(name, settings, secrets, runtime)
        self.auth = Authenticator(settings.auth, secrets, runtime.http, runtime.tokens, vendor=self.vendor)
        self.api = VendorApi(settings.base_url, self.auth, runtime.http, vendor=self.vendor,
                             timeout=settings.timeout_seconds)
