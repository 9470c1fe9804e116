"""The channel-adapter port: verify, then parse, then acknowledge, one module per provider.

An adapter is pure: it sees the request as bytes and headers and returns typed events and a
response. It never enqueues, stores or calls the provider, so the same code serves the HTTP route,
the local runtime and the tests.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from chalicelib.domain.models import IdentityChange, InboundMessage, StatusEvent, UnhandledEvent
from chalicelib.domain.values import Record, Value
from chalicelib.errors import ConfigError, MethodNotAllowedError
from chalicelib.secrets import SecretResolver
from chalicelib.signing.replay import MemoryReplayGuard, ReplayGuard

if TYPE_CHECKING:  # an adapter-layer port; importing it for the annotation only keeps cold starts lean
    from chalicelib.adapters.email_auth import SenderVerifier


class WebhookRequest(Value):
    method: str
    #: Optional sub-path after `/webhooks/{provider}/` (e.g. Twilio's `status`).
    hook: str | None
    #: Header names lower-cased.
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    received_at: datetime

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class WebhookResponse(Value):
    status: int = 200
    body: str = ""
    content_type: str = "text/plain"


class SimulatedCustomer(Value):
    """Who `hubctl simulate` pretends to be."""

    name: str
    phone: str
    email: str
    text: str


class SimulatedRequest(Value):
    #: `/webhooks/<key>` plus the hook path, if any.
    path: str
    body: bytes
    headers: dict[str, str]


class ParsedWebhook(Record):
    """What an adapter read from one webhook. `ignored`: items deliberately not enqueued, each
    with a short reason (our own echoes, bots, automatic replies): logged and counted.
    `unhandled`: items the adapter could not read (a new event type, an unknown shape): enqueued
    with the events and kept raw for inspection, counted, acknowledged; never contacts."""

    __slots__ = ("events", "ignored", "unhandled")

    def __init__(
        self, events: list[InboundMessage | StatusEvent | IdentityChange] | None = None,
        ignored: list[str] | None = None, unhandled: list[UnhandledEvent] | None = None,
    ) -> None:
        self.events = [] if events is None else events
        self.ignored = [] if ignored is None else ignored
        self.unhandled = [] if unhandled is None else unhandled


class PullEntry(Value):
    """A queue-fed way in, for a provider that leaves messages somewhere and announces each on a
    queue instead of calling the hub (SES stores mail in S3, and the bucket notifies a queue).
    The hub runs one worker per entry: `pull_entries` declares it, `pull` reads each announcement.
    """

    #: The queue's role: the queue is `hub-<stage>-<name>`, its URL `HUB_<NAME>_QUEUE_URL`, and
    #: the worker (a Lambda function on AWS) is `name` with `_` for `-`.
    name: str
    #: S3 event notifications can only go to standard queues.
    fifo: bool = False
    #: Time kept free of the function's timeout before the next announcement is started.
    reserve_seconds: float = 10.0

    @property
    def function_name(self) -> str:
        return self.name.replace("-", "_")

    @property
    def environment_variable(self) -> str:
        return f"HUB_{self.function_name.upper()}_QUEUE_URL"


class PullContext(Value):
    """What `ChannelAdapter.pull` may use to read what an announcement points to."""

    #: One AWS client per service name (`aws_client("s3")`), shared by the process.
    aws_client: Callable[[str], Any]
    received_at: datetime


class AdapterServices(Value):
    """What the hub lends adapters beyond their settings and secrets. Each has a stand-in, so an
    adapter built alone (tests, tools) works: it then remembers within its process only and
    trusts only the provider's own verdicts."""

    #: Tokens a provider may use once (Mailgun's): the hub's is its store, shared by every
    #: process. Default: a new `MemoryReplayGuard`.
    replay_guard: ReplayGuard
    #: Proves an email's From address from its raw bytes (DKIM aligned with the From domain),
    #: when the provider gave no trustworthy verdict; None when the hub does not verify mail.
    sender_verifier: SenderVerifier | None = None
    #: The hub's own web chat: issues and checks the widget's visitor tokens, and reads a
    #: visitor's outbox (`service/visitor_outbox.py`); None where the hub does not serve replies.
    visitor_tokens: Any = None
    visitor_outbox: Any = None
    #: The hub serves pages of its own that post to browser-facing providers (the embedded hub's
    #: web chat demo): a browser request from the hub's own loopback origin passes a site's origin
    #: list. Only where the embedded hub listens on loopback; never on AWS.
    trusts_own_origin: bool = False

    def __init__(self, replay_guard: ReplayGuard | None = None, sender_verifier: SenderVerifier | None = None,
                 visitor_tokens: Any = None, visitor_outbox: Any = None, trusts_own_origin: bool = False) -> None:
        super().__init__(MemoryReplayGuard() if replay_guard is None else replay_guard, sender_verifier,
                         visitor_tokens, visitor_outbox, trusts_own_origin)


SettingsT = TypeVar("SettingsT", bound=BaseModel)


class ChannelAdapter(ABC, Generic[SettingsT]):
    """Base of every inbound provider. Subclasses declare the header attributes below."""

    #: Registry key and URL segment: `/webhooks/{key}`.
    key: ClassVar[str]
    #: The provider's webhook documentation.
    docs_url: ClassVar[str]
    #: Pydantic model of this provider's section in the hub configuration.
    Settings: ClassVar[type[BaseModel]]
    #: Content types the route must accept for this provider.
    content_types: ClassVar[tuple[str, ...]] = ("application/json",)
    #: Where the provider keeps attachments the hub downloads: `module:Class` of each
    #: `MediaSource` (`adapters/media/`), each with its own section under `media:`, named in the
    #: media registry and imported on first download (a webhook never loads them).
    media_sources: ClassVar[tuple[str, ...]] = ()
    #: Queue-fed ways in besides the webhook (`PullEntry`); each gets its own worker.
    pull_entries: ClassVar[tuple[PullEntry, ...]] = ()
    #: This provider's way out: `module:Class` of its `ChannelSender` (adapters/channels/sending.py),
    #: imported only by the processes that send or derive reply targets; None when it cannot send.
    sender: ClassVar[str | None] = None

    def __init__(self, settings: SettingsT, secrets: SecretResolver, services: AdapterServices | None = None) -> None:
        self.settings = settings
        self.secrets = secrets
        self.services = services or AdapterServices()

    def handshake(self, request: WebhookRequest) -> WebhookResponse:
        """Answer a provider's GET handshake (Meta's verify token, X's CRC).

        Raises `ForbiddenError` for a wrong token; the default is 405 for providers without one.
        """
        raise MethodNotAllowedError(f"{self.key} webhooks accept POST only")

    @abstractmethod
    def verify(self, request: WebhookRequest) -> None:
        """Prove the request came from the provider, over the raw bytes, before any parsing.

        Raises `SignatureError` (401).
        """

    @abstractmethod
    def parse(self, request: WebhookRequest) -> ParsedWebhook:
        """Turn a verified request into events. Raises `MalformedPayloadError` (400)."""

    def pull(self, entry: PullEntry, body: str, context: PullContext) -> ParsedWebhook:
        """The events one announcement on `entry`'s queue stands for, read from where the
        provider left them. Items that cannot be read are `unhandled`, never errors.

        Raises `TransientError` when what it points to cannot be read now (the queue retries).
        """
        raise ConfigError(f"channel provider {self.key} declares no pull entry {entry.name!r}")

    def unhandled(self, reason: str, raw: object, request: WebhookRequest) -> UnhandledEvent:
        """What `parse` keeps of an item it cannot read: the reason and the item itself."""
        return UnhandledEvent.of(self.key, reason, raw, request.received_at)

    def ack(self, parsed: ParsedWebhook) -> WebhookResponse:
        """The provider-specific success response, sent once the events are durably enqueued."""
        return WebhookResponse(status=200, body="")

    def simulated_request(self, customer: SimulatedCustomer) -> SimulatedRequest | None:
        """A request exactly as the provider would send it for `customer`'s message, signed with
        this hub's configured secrets: what `hubctl simulate --channel <key>` posts. None for a
        provider that cannot be simulated (no signing secret configured)."""
        return None

    def cors_headers(self, request: WebhookRequest) -> dict[str, str]:
        """CORS headers for a browser page calling this endpoint (its Origin header decides).

        Empty for server-to-server providers, which is the default: the route then answers a
        preflight with 405 and adds nothing to responses.
        """
        return {}
