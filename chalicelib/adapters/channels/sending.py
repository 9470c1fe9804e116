"""The sender port: each channel provider's way out, living in its package beside its inbound code.

A sender gets an `OutboundMessage` that already passed consent, the service window and its own
`check`, and makes exactly one provider call for it. It returns the provider's id for the message
(status callbacks are matched by it) and classifies every failure like a connector does:
`RetryableDeliveryError` (timeouts, 5xx, 429 with `retry_after`) or `PermanentDeliveryError`
(with the provider's error code), and the two refusals the hub acts on: `RecipientOptedOutError`
(recorded in the consent ledger) and `OutsideServiceWindowError`.

Senders never read the store: what they need to address and thread a reply is derived once, from
the customer's inbound contact, by `reply_target` (pure, run by the process worker) and kept on
the customer and the case.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel

from chalicelib.domain.models import Channel, Contact, ReplyTarget, reply_key
from chalicelib.domain.outbound import OutboundMessage, SendOutcome, TemplateMessage
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError, SecretResolutionError
from chalicelib.secrets import SecretResolver

__all__ = [
    "ChannelSender", "CredentialRefusedError", "ExtendedWindow", "Problem", "ReplyTarget", "SenderRuntime",
    "VisitorOutbox", "first_accepted", "is_http_url", "json_object", "linked_text_problems", "reply_key",
    "resolved_secrets",
    "text_problem", "window_closes", "window_hours",
]

if TYPE_CHECKING:
    from chalicelib.adapters.connectors.http import HttpClient
    from chalicelib.domain.identifiers import Identifier

SettingsT = TypeVar("SettingsT", bound=BaseModel)
CredentialT = TypeVar("CredentialT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class ExtendedWindow:
    """Sending allowed after the standard window closes, with a message tag: Messenger's and
    Instagram's `HUMAN_AGENT` (7 days, human replies only), when the configuration enables it."""

    hours: int
    tag: str


@dataclass(frozen=True)
class Problem:
    """Why a message cannot be sent as given, naming the request field (`text`, `attachments[0].url`)."""

    field: str
    message: str


class VisitorOutbox(Protocol):
    """Where the web chat's replies wait for the widget to fetch them (the hub is its own provider)."""

    def append(self, site_id: str, visitor_id: str, message: OutboundMessage, *, sent_at: datetime) -> None: ...


@dataclass(frozen=True)
class SenderRuntime:
    """What the hub lends every sender: the shared HTTP client, AWS clients (SES), the clock and
    the web chat's outbox."""

    http: HttpClient
    aws_client: Callable[[str], Any]
    clock: Callable[[], datetime]
    visitor_outbox: VisitorOutbox | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ChannelSender(ABC, Generic[SettingsT]):
    """Base of every provider's sender. Built from the provider's configuration section (the same
    `Settings` its `ChannelAdapter` reads), so one section configures both directions."""

    #: The provider key (`ChannelAdapter.key`).
    key: ClassVar[str]
    #: Channels this provider can send on.
    channels: ClassVar[frozenset[Channel]]
    #: The provider's sending documentation.
    docs_url: ClassVar[str]

    def __init__(self, settings: SettingsT, secrets: SecretResolver, runtime: SenderRuntime) -> None:
        self.settings = settings
        self.secrets = secrets
        self.runtime = runtime

    # --- pure: derived from an inbound contact, or from the configuration ----------------------

    @classmethod
    @abstractmethod
    def reply_target(cls, contact: Contact) -> ReplyTarget | None:
        """How to answer `contact` (an inbound contact of this provider): recipient and threading.
        None when the provider gives no way to answer it."""

    def recipient_for(self, channel: Channel, identifiers: Sequence[Identifier]) -> str | None:
        """The recipient for a customer never heard on `channel` through this provider, from their
        identifiers (a phone number for SMS); None when none fits. Default: none."""
        return None

    def default_account(self, channel: Channel) -> str | None:
        """The account a message goes out from when neither the request nor a reply target names
        one (the configured default number, mailbox, page or bot); None when not configured."""
        return None

    def sends_from(self, channel: Channel, account: str) -> bool:
        """Whether this hub is configured to send on `channel` from `account`."""
        return account == self.default_account(channel)

    def extended_window(self, channel: Channel, account: str | None = None) -> ExtendedWindow | None:
        """Sending allowed past the standard service window (Messenger's HUMAN_AGENT), if enabled
        for `account` (None: for every account)."""
        return None

    def fallback_template(self, channel: Channel, account: str) -> TemplateMessage | None:
        """The template sent instead of free text outside the service window, when configured."""
        return None

    def check(self, message: OutboundMessage) -> list[Problem]:
        """Everything the provider would refuse that the hub can tell before queueing: the text
        limit, attachment rules, an unknown template or its parameter count. Empty when sendable."""
        return []

    # --- the one provider call --------------------------------------------------------------------

    @abstractmethod
    def send(self, message: OutboundMessage) -> SendOutcome:
        """Send the message with one provider call; safe to call again for the same `message.id`
        (the id is sent as the provider's idempotency key where it takes one).

        Raises `RetryableDeliveryError`, `PermanentDeliveryError`, `RecipientOptedOutError` or
        `OutsideServiceWindowError`.
        """

    def close(self) -> None:
        """Release pooled connections; called on shutdown of the local runtime."""


def text_problem(text: str | None, limit: int, unit: str = "characters") -> list[Problem]:
    """The shared text-length check: `text` longer than `limit` names the field and the limit."""
    if text is not None and len(text) > limit:
        return [Problem("text", f"is {len(text)} {unit}; this channel takes at most {limit}")]
    return []


def linked_text_problems(message: OutboundMessage, *, provider: str, to_problem: str | None, limit: int,
                         text: str) -> list[Problem]:
    """The checks of a chat that takes text only, with attachments sent as links in it (Slack, X):
    `to_problem` is what is wrong with the recipient (None when fine); `text` is what would be sent."""
    problems = [Problem(f"attachments[{i}].url", "must be an http(s) URL")
                for i, a in enumerate(message.attachments) if not is_http_url(a.url)]  # fmt: skip
    if to_problem is not None:
        problems.append(Problem("to", to_problem))
    if message.template is not None:
        problems.append(Problem("template", f"{provider} has no message templates: send text"))
    if not message.text and not message.attachments:
        problems.append(Problem("text", f"is required (or an attachment) for {provider}"))
    return problems or text_problem(text, limit)


# --- credential rotation, shared by every sender ------------------------------------------------------


class CredentialRefusedError(PermanentDeliveryError):
    """The provider refused the credential, not the message (HTTP 401, Slack's `invalid_auth`,
    Graph's code 190): nothing was sent, so the next credential of the rotation list may be tried."""


def resolved_secrets(secrets: SecretResolver, references: Sequence[Any], *, what: str) -> list[str]:
    """The values of a rotation list, skipping any that does not resolve (`SecretResolver.get_all`).
    A store that answers for none of them now (an SSM throttle) makes the send retryable: the
    message waits on the queue instead of failing for good. Empty for an empty list."""
    if not references:
        return []
    try:
        return secrets.get_all(list(references))
    except SecretResolutionError as exc:
        raise RetryableDeliveryError(f"{what} unavailable: {exc.message}") from None


def first_accepted(
    credentials: Sequence[CredentialT], attempt: Callable[[CredentialT], ResultT], *, none_configured: str
) -> ResultT:
    """`attempt(credential)` for each credential of a rotation list in order, until one is not
    refused; what it returns. A credential is tried only after the provider refused the one
    before it (`CredentialRefusedError`, which sent nothing), so the message goes out at most once.

    Raises what `attempt` raises, the last refusal as a `PermanentDeliveryError` when every
    credential was refused, or `PermanentDeliveryError(none_configured, provider_code="no_token")`
    when there is none.
    """
    refused: PermanentDeliveryError = PermanentDeliveryError(none_configured, provider_code="no_token")
    for credential in credentials:
        try:
            return attempt(credential)
        except CredentialRefusedError as exc:
            refused = exc
    raise PermanentDeliveryError(refused.message, provider_code=refused.provider_code, detail=refused.detail)


def json_object(body: bytes) -> dict[str, Any]:
    """A provider answer's JSON object; empty when the body is not one (an HTML error page, a
    proxy's plain text), so classifiers read fields without guarding every access."""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def is_http_url(url: str) -> bool:
    """An http(s) URL with something after the scheme: what providers that fetch files accept."""
    return url.lower().startswith(("https://", "http://")) and len(url) > len("https://")


def window_hours(channel: Channel) -> int | None:
    """The provider-independent customer service window of `channel`, in hours: WhatsApp's,
    Messenger's and Instagram's 24 hours; None for channels without one."""
    return 24 if channel in (Channel.WHATSAPP, Channel.MESSENGER, Channel.INSTAGRAM) else None


def window_closes(opened_at: datetime, channel: Channel) -> datetime | None:
    hours = window_hours(channel)
    return None if hours is None else opened_at + timedelta(hours=hours)


def sender_class(path: str) -> type[ChannelSender]:
    """The sender class a `ChannelAdapter.sender` path names, imported on first use."""
    from importlib import import_module

    module, _, name = path.partition(":")
    return getattr(import_module(module), name)
