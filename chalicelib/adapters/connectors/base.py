"""The connector port: hand a resolved contact to a destination (CRM, ACD, ticketing, webhook).

A connector gets a `DeliveryJob`, which carries the contact, customer and case, so it reads
nothing from the store. It returns the vendor's reference for the object it created or updated,
and classifies every failure as retryable or permanent so the deliver worker knows what to do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel

from chalicelib.adapters.connectors.http import HttpClient
from chalicelib.domain.models import CustomerEvent, DeliveryJob
from chalicelib.secrets import SecretResolver

SettingsT = TypeVar("SettingsT", bound=BaseModel)


@dataclass(frozen=True)
class ConnectorRuntime:
    """What the runtime lends every connector: where local files go, and the shared HTTP client."""

    data_dir: str
    http: HttpClient = field(default_factory=HttpClient)


@dataclass(frozen=True)
class DeliveryResult:
    #: The vendor's id for what it created or updated (ticket id, message id...), if any.
    external_ref: str | None = None
    #: The vendor object that stands for the whole case (a ticket), when the connector threads
    #: cases: stored on the case, so the case's later contacts append to it.
    case_ref: str | None = None


class Connector(ABC, Generic[SettingsT]):
    """Base of every destination. Subclasses declare the header attributes below."""

    #: Registry key, used as `type:` in the hub configuration's destinations.
    key: ClassVar[str]
    docs_url: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]
    #: True for connectors that keep one vendor object per case (a ticket with comments): the
    #: deliverer then hands them `job.case.external_refs[self.name]` from earlier deliveries and
    #: stores the `DeliveryResult.case_ref` they return. Deliveries of one customer to one
    #: destination are ordered, so a follow-up always finds the ticket its case opened.
    threads_cases: ClassVar[bool] = False
    #: True for connectors that take customer-level events (`customer.erased`) through
    #: `deliver_customer_event`; only those are sent them.
    supports_customer_events: ClassVar[bool] = False

    def __init__(self, name: str, settings: SettingsT, secrets: SecretResolver, runtime: ConnectorRuntime) -> None:
        self.name = name
        self.settings = settings
        self.secrets = secrets
        self.runtime = runtime

    @abstractmethod
    def deliver(self, job: DeliveryJob) -> DeliveryResult:
        """Deliver one job. Must be safe to call twice for the same `job.delivery_id`.

        Raises `RetryableDeliveryError` (timeouts, 5xx, 429; carries `retry_after`) or
        `PermanentDeliveryError` (other 4xx, with the vendor's reason).
        """

    def deliver_customer_event(self, event: CustomerEvent) -> DeliveryResult:
        """Deliver a customer-level event; connectors that set `supports_customer_events` override
        this. Raises like `deliver`."""
        from chalicelib.errors import PermanentDeliveryError

        raise PermanentDeliveryError(f"{self.key} does not take customer events")

    def close(self) -> None:
        """Release pooled connections; called on shutdown of the local runtime."""
