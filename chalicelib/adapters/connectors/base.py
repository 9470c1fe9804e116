"""The connector port: hand a resolved contact to a destination (CRM, ACD, ticketing, webhook).

A connector gets a `DeliveryJob`, which carries the contact, customer and case, so it reads
nothing from the store. It returns the vendor's reference for the object it created or updated,
and classifies every failure as retryable or permanent so the deliver worker knows what to do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from chalicelib.adapters.connectors.http import HttpClient
from chalicelib.domain.models import CustomerEvent, DeliveryJob
from chalicelib.secrets import SecretResolver

if TYPE_CHECKING:
    from chalicelib.adapters.connectors.auth import TokenCache
    from chalicelib.adapters.callbacks.base import VendorCallbacks

SettingsT = TypeVar("SettingsT", bound=BaseModel)

#: The hub sent a message to the customer (`job.contact` is the outbound contact, `direction:
#: outbound`), and a channel provider reported a new status for it (the same contact, its new
#: `status` and `status_history`). Contact events (`contact.created`) are not among them.
MESSAGE_SENT = "message.sent"
MESSAGE_STATUS = "message.status"
MESSAGE_EVENTS = frozenset({MESSAGE_SENT, MESSAGE_STATUS})
#: An agent's reply from this destination did not reach the customer (refused by consent or a
#: service window, or failed at the provider): the connector's callback side writes an internal
#: note on the ticket. Only ever sent to the destination the reply came from.
MESSAGE_UNDELIVERED = "message.undelivered"
#: Customer-level events every connector with `supports_customer_events` takes; the case events
#: go only to connectors that also set `takes_case_events`.
CUSTOMER_EVENTS = frozenset({"customer.erased", "customer.merged", "customer.unmerged"})
CASE_EVENTS = frozenset({"case.opened", "case.closed", "case.reopened"})
#: A case's timer fell due (`service/case_timer_events.py`): sent only to connectors that set
#: `case_timer_events`. Kept apart from `CASE_EVENTS` because vendor connectors that take case
#: events refuse types they do not know, which would dead-letter every SLA breach.
CASE_TIMER_EVENTS = frozenset({"case.sla_breached", "case.follow_up_due", "case.auto_closed"})


def _token_cache() -> TokenCache:
    from chalicelib.adapters.connectors.auth import TokenCache

    return TokenCache()


@dataclass(frozen=True)
class ConnectorRuntime:
    """What the runtime lends every connector: where local files go, the shared HTTP client,
    OAuth2 tokens shared by the process's connectors, and AWS clients for the AWS connectors."""

    data_dir: str
    http: HttpClient = field(default_factory=HttpClient)
    tokens: TokenCache = field(default_factory=lambda: _token_cache())
    aws_client: Callable[[str], Any] | None = None


@dataclass(frozen=True)
class DeliveryResult:
    #: The vendor's id for what it created or updated (ticket id, message id...), if any.
    external_ref: str | None = None
    #: The vendor object that stands for the whole case (a ticket, or the latest task of a
    #: connector that makes one per contact): stored on the case with a link back from it, so the
    #: case's later contacts append to it (connectors that thread cases) and the vendor's
    #: callbacks naming it find the case.
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
    #: Which outbound-message events (`MESSAGE_EVENTS`) the connector takes through `deliver`:
    #: the deliverer sends only these, and to `threads_cases` connectors only once the case has
    #: their ticket (`job.case.external_refs[name]`). Empty by default, so a connector written
    #: for inbound contacts never mistakes the hub's own message for a customer's. A connector
    #: may narrow it per destination on the instance (a setting that turns the comments off).
    message_events: ClassVar[frozenset[str]] = frozenset()
    #: True for connectors that also take the case events (`CASE_EVENTS`) through
    #: `deliver_customer_event` (the generic ones: webhook, EventBridge, outbox).
    takes_case_events: ClassVar[bool] = False
    #: True for connectors that also take the case timer events (`CASE_TIMER_EVENTS`) through
    #: `deliver_customer_event`: those that send any event type in the generic envelope.
    case_timer_events: ClassVar[bool] = False
    #: "module:Class" of the destination's callback side (`callbacks.VendorCallbacks`): how the
    #: vendor tells the hub about agent replies and ticket status. None: the destination is
    #: one-way. It is used only when the destination configures `callbacks`.
    callbacks: ClassVar[str | None] = None

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

    def takes(self, event_type: str) -> bool:
        """Whether the deliverer should hand this connector a job of `event_type`: every contact
        event, and the outbound-message events it declared in `message_events`."""
        return event_type not in MESSAGE_EVENTS or event_type in self.message_events

    def message_event(self, job: DeliveryJob) -> str | None:
        """`job.event_type` when the job is an outbound-message event this connector declared,
        None for a contact event. Raises `PermanentDeliveryError` for a message event it did not
        declare: treated as a contact, the hub's own answer would open a ticket as the customer's."""
        if job.event_type not in MESSAGE_EVENTS:
            return None
        if job.event_type not in self.message_events:
            from chalicelib.errors import PermanentDeliveryError

            raise PermanentDeliveryError(f"{self.key} does not take {job.event_type} events")
        return job.event_type

    def deliver_customer_event(self, event: CustomerEvent) -> DeliveryResult:
        """Deliver a customer-level event; connectors that set `supports_customer_events` override
        this. Raises like `deliver`."""
        from chalicelib.errors import PermanentDeliveryError

        raise PermanentDeliveryError(f"{self.key} does not take customer events")

    def takes_customer_event(self, event_type: str) -> bool:
        """Whether customer or case events of `event_type` go to this destination."""
        if event_type in CASE_EVENTS or event_type in CASE_TIMER_EVENTS:
            takes = self.takes_case_events if event_type in CASE_EVENTS else self.case_timer_events
            # A destination may turn them off (`case_events: false`) where its consumer only
            # wants contacts: that turns off the timer events too.
            return self.supports_customer_events and takes and bool(getattr(self.settings, "case_events", True))
        return self.supports_customer_events

    # --- two-way sync ----------------------------------------------------------------------------

    def callback_side(self) -> VendorCallbacks | None:
        """The destination's callback side, built on first use; None when the connector has none
        or the destination does not configure `callbacks`."""
        if self.callbacks is None or getattr(self.settings, "callbacks", None) is None:
            return None
        side = self.__dict__.get("_callback_side")
        if side is None:
            from importlib import import_module

            module, _, name = self.callbacks.partition(":")
            side = getattr(import_module(module), name)(self)
            self.__dict__["_callback_side"] = side
        return side

    def takes_failure_notes(self) -> bool:
        side = self.callback_side()
        return side is not None and side.takes_notes and side.settings.failure_notes

    def deliver_failure_note(self, job: DeliveryJob) -> DeliveryResult:
        """`message.undelivered`: tell the agent, with an internal note on the case's ticket, that
        their reply (`job.contact`) did not reach the customer, and why."""
        from chalicelib.errors import PermanentDeliveryError
        from chalicelib.service.failure_notes import failure_note

        side = self.callback_side()
        if side is None or not side.takes_notes:
            raise PermanentDeliveryError(f"{self.key} takes no failure notes")
        detail = job.contact.metadata.get("agent_reply")
        ticket = detail.get("vendor_ref") if isinstance(detail, dict) else None
        ref = job.case.external_refs.get(self.name)
        ticket = ticket or (ref.ref if ref is not None else None)
        if not ticket:
            raise PermanentDeliveryError(f"case {job.case.id} has no {self.key} ticket for the failure note")
        reply_ref = detail.get("comment_id") if isinstance(detail, dict) else None
        return DeliveryResult(external_ref=side.note(str(ticket), failure_note(job.contact), reply_ref=reply_ref))

    def close(self) -> None:
        """Release pooled connections; called on shutdown of the local runtime."""


class VendorApi:
    """A vendor's JSON API for one destination: base URL, authentication, the shared HTTP client
    and the shared error classification, so each connector only says what to send.

    A 401 under OAuth2 fetches a new token and tries once more (tokens can be revoked before they
    expire); any other answer is classified by `raise_for_status`, keeping the vendor's message.
    """

    def __init__(self, base_url: str, auth, http: HttpClient, *, vendor: str, timeout: float = 10.0,
                 headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.http = http
        self.vendor = vendor
        self.timeout = timeout
        self.headers = headers or {}

    def call(self, method: str, path: str, *, json_body=None, form: dict | None = None,
             headers: dict[str, str] | None = None, base_url: str | None = None,
             allow: tuple[int, ...] = ()) -> VendorResponse:
        """Send one request; `path` may be an absolute URL. Raises `RetryableDeliveryError` or
        `PermanentDeliveryError` for a non-2xx answer, except statuses in `allow` (a 404 on a
        lookup), which are returned like successes."""
        import json
        from urllib.parse import urlencode

        from chalicelib.adapters.connectors.http import raise_for_status

        url = path if path.startswith(("http://", "https://")) else (base_url or self.base_url) + path
        request_headers = {"accept": "application/json", "user-agent": "omnichannel-hub", **self.headers,
                           **(headers or {})}
        body = None
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
            request_headers["content-type"] = "application/json"
        elif form is not None:
            body = urlencode(form).encode()
            request_headers["content-type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            response = self.http.request(method, url, headers={**request_headers, **self.auth.headers()}, body=body,
                                         timeout=self.timeout)
            if response.status == 401 and attempt == 1 and getattr(self.auth, "uses_oauth", False):
                self.auth.forget_token()
                continue
            break
        if response.status not in allow:
            raise_for_status(response, vendor=self.vendor)
        return VendorResponse(response.status, _json_or_none(response.body), response.headers)


@dataclass(frozen=True)
class VendorResponse:
    status: int
    #: The decoded JSON body; None when empty or not JSON.
    data: object
    headers: dict[str, str]


def _json_or_none(body: bytes):
    import json

    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None
