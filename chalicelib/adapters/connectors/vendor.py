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

from chalicelib.adapters.connectors.auth import Authenticator
from chalicelib.adapters.connectors.base import Connector, ConnectorRuntime, VendorApi
from chalicelib.adapters.connectors.settings.vendor import VendorSettings
from chalicelib.secrets import SecretResolver


VendorSettingsT = TypeVar("VendorSettingsT", bound=VendorSettings)


class VendorConnector(Connector[VendorSettingsT], Generic[VendorSettingsT]):
    #: Shown in error messages and logs: "zendesk answered 422: …".
    vendor: ClassVar[str]

    def __init__(self, name: str, settings: VendorSettingsT, secrets: SecretResolver, runtime: ConnectorRuntime) -> None:
        super().__init__(name, settings, secrets, runtime)
        self.auth = Authenticator(settings.auth, secrets, runtime.http, runtime.tokens, vendor=self.vendor)
        self.api = VendorApi(settings.base_url, self.auth, runtime.http, vendor=self.vendor,
                             timeout=settings.timeout_seconds)
