"""The callback port: how a destination's vendor talks back to the hub (two-way sync).

Agents answer customers in their own tool (a public comment on a Zendesk ticket, a reply in
Freshdesk, a Genesys agent's message) and solve or reopen tickets there. The vendor calls
`POST /callbacks/{destination}`, and the destination's connector names the class that reads it
(`Connector.callbacks = "module:Class"`, imported on first use, like a channel's sender). It:

- `verify`: proves the request is the vendor's, on the raw bytes, before anything is parsed
  (a signature over the body with a rotation list of secrets and a replay window where the
  vendor signs a timestamp; a shared secret compared in constant time where it signs nothing);
- `parse`: turns it into `AgentReply` and `CaseStatusChange` items for the inbound queue, the
  reasons of items deliberately skipped (internal notes, the hub's own echoes, events of no
  interest), and raw copies of items it cannot read (`UnhandledEvent`);
- `ack`: the answer the vendor expects once everything is queued (Salesforce wants a SOAP Ack);
- `confirm`: in the worker, re-reads a reply whose callback is only a hint (a body an admin
  composed from placeholders) through the vendor's API, and drops what turns out to be internal
  or the hub's own;
- `note`: writes an internal note on the ticket, so the agent learns that a reply did not reach
  the customer (vendors that have no internal notes leave `takes_notes` False);
- `setup`: what the operator must configure in the vendor (printed by
  `hubctl callbacks setup <destination>`), and `create_setup` where the vendor's API lets the hub
  create it itself.

Every vendor-specific rule lives in the vendor's module; nothing outside them branches on a vendor.
"""

from __future__ import annotations

import hashlib
import html
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from chalicelib.adapters.channels.base import WebhookRequest, WebhookResponse
from chalicelib.adapters.connectors.echo import marked_contact
from chalicelib.adapters.connectors.settings.callbacks import CallbackSettings  # noqa: F401 (re-exported)
from chalicelib.domain.models import AgentReply, CallbackItem, UnhandledEvent
from chalicelib.signing.compare import matches_any

if TYPE_CHECKING:
    from chalicelib.adapters.connectors.base import Connector

#: Callbacks are requests like webhooks: the same type, so the edge converts them once.
CallbackRequest = WebhookRequest
#: Where vendors that sign nothing (Freshdesk, Salesforce, EventBridge API destinations) carry
#: the secret the operator gave them.
SHARED_SECRET_HEADER = "X-Hub-Callback-Secret"


@dataclass
class ParsedCallback:
    items: list[CallbackItem] = field(default_factory=list)
    #: Why items were skipped on purpose (an internal note, the hub's own comment): counted.
    ignored: list[str] = field(default_factory=list)
    #: Items the connector could not read, kept raw for `GET /v1/unhandled-events`.
    unhandled: list[UnhandledEvent] = field(default_factory=list)


@dataclass(frozen=True)
class SetupStep:
    """One thing to configure in the vendor, as the operator would do it by hand."""

    title: str
    #: Field → value as the vendor's screen or API names it (URL, events, header, body template).
    values: dict[str, str] = field(default_factory=dict)
    #: Free text: where the screen is, what to pick.
    text: str = ""


@dataclass(frozen=True)
class CallbackSetup:
    """What `hubctl callbacks setup` prints: the steps, and whether `--create` can make them."""

    vendor: str
    steps: list[SetupStep]
    #: What the vendor cannot report back, said plainly in the output.
    limits: list[str] = field(default_factory=list)
    can_create: bool = False


class VendorCallbacks(ABC):
    """The callback side of one destination; built once per destination by its connector."""

    #: Media types the vendor posts; anything else is answered 415.
    content_types: ClassVar[tuple[str, ...]] = ("application/json",)
    #: Whether `note` can write an internal note on the ticket.
    takes_notes: ClassVar[bool] = False
    #: Whether the vendor reports its tickets' status at all. One that never does (Genesys Open
    #: Messaging) must not hold a case open while the others decide (`cases.close_on`).
    reports_status: ClassVar[bool] = True

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self.destination = connector.name
        self.settings: CallbackSettings = connector.settings.callbacks  # type: ignore[attr-defined]

    # --- on the request path (no store, no vendor API: verify, parse, queue) ---------------------

    @abstractmethod
    def verify(self, request: CallbackRequest) -> None:
        """Raise `SignatureError` unless the request provably comes from the vendor."""

    @abstractmethod
    def parse(self, request: CallbackRequest) -> ParsedCallback:
        """The items of a verified request. Raise `MalformedPayloadError` for a body that is not
        the vendor's shape at all; an item of unknown shape goes to `unhandled` instead."""

    def ack(self, parsed: ParsedCallback) -> WebhookResponse:
        return WebhookResponse(status=200, body="", content_type="text/plain")

    # --- in the worker ---------------------------------------------------------------------------

    def confirm(self, reply: AgentReply) -> AgentReply | str:
        """The reply to relay, re-read from the vendor where the callback was a hint; or why it
        must not be relayed (an internal note, the hub's own comment). Raises
        `RetryableDeliveryError` when the vendor cannot be read now (the item is retried)."""
        return reply

    def note(self, ticket: str, text: str, *, reply_ref: str | None = None) -> str | None:
        """Write `text` as an internal note on `ticket`; the note's id, if the vendor gives one.
        `reply_ref` is the vendor's id of the agent's message that failed (`AgentReply.comment_id`),
        for vendors that mark the message itself instead of writing a note. Raises like a
        delivery (`RetryableDeliveryError`, `PermanentDeliveryError`)."""
        from chalicelib.errors import PermanentDeliveryError

        raise PermanentDeliveryError(f"{self.connector.key} tickets take no internal notes from the hub")

    # --- for the operator ------------------------------------------------------------------------

    @abstractmethod
    def setup(self) -> CallbackSetup:
        """The vendor configuration that sends callbacks to `callback_url()`."""

    def create_setup(self) -> list[str]:
        """Create the vendor configuration through its API; what was created, one line each.
        Vendors whose API cannot do it keep this default."""
        from chalicelib.errors import ConfigError

        raise ConfigError(f"{self.connector.key} cannot be configured through its API; follow the printed steps")

    # --- shared helpers --------------------------------------------------------------------------

    def callback_url(self) -> str:
        """Where the vendor must post: `callbacks.public_url`, else a placeholder the operator
        replaces with the API's URL."""
        return self.settings.public_url or f"https://<your-api>/callbacks/{self.destination}"

    def secrets(self) -> list[str]:
        return self.connector.secrets.get_all(self.settings.secrets)

    def shared_secret_matches(self, given: str | None) -> bool:
        """Constant-time comparison of a secret the operator put into the vendor's request."""
        return bool(given) and matches_any(self.secrets(), given or "")

    def require_shared_secret(self, given: str | None, *, carried_by: str) -> None:
        """Raises `SignatureError` unless `given` is one of `callbacks.secrets`; `carried_by` says
        where the vendor puts it (a header, basic auth), for the message. Never the value."""
        from chalicelib.errors import SignatureError

        if not given:
            raise SignatureError(f"missing {carried_by}")
        if not self.shared_secret_matches(given):
            raise SignatureError(f"{carried_by} does not match any of destinations[{self.destination}].callbacks.secrets")

    def echo_reason(self, text: str | None, author_id: str | None) -> str | None:
        """Why a comment is the hub's own (its author is one the hub writes as, or it carries the
        echo marker of an outbound message or the hub's own contact line), else None."""
        if author_id is not None and str(author_id) in self.settings.hub_author_ids:
            return f"comment by the hub's own user {author_id}"
        contact_id = marked_contact(text) or hub_contact_line(text)
        if contact_id is not None:
            return f"the hub's own comment for {contact_id}"
        return None

    def unhandled(self, reason: str, raw: Any, request: CallbackRequest) -> UnhandledEvent:
        return UnhandledEvent.of(f"callback:{self.destination}", reason, raw, request.received_at)


#: The line `mapping.body_for` ends a customer's message with on a ticket
#: ("Hub: contact ct_…, case …"); HTML bodies may put tags or entities between the words.
_CONTACT_LINE = re.compile(r"Hub:(?:\s|<[^>]*>|&nbsp;)*contact\s+(ct_[0-9A-Za-z]{1,64})")


def hub_contact_line(text: str | None) -> str | None:
    """The hub contact a comment names in its footer: the customer's own message, which the hub
    wrote into the ticket, must never be sent back to the customer."""
    found = _CONTACT_LINE.findall(html.unescape(text or ""))
    return found[-1] if found else None


def event_digest(*parts: object) -> str:
    """A stable id for an event the vendor gives no id of its own: derived from what identifies it
    (ticket, comment, status, time), so the vendor's retry derives the same one."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


def plain_text(body: str | None) -> str | None:
    """A vendor's HTML comment body as the text a customer's channel shows: tags dropped, block
    ends as line breaks, entities decoded, runs of blank lines squeezed."""
    if body is None:
        return None
    text = re.sub(r"(?i)<\s*br\s*/?>|</\s*(p|div|li|h[1-6]|tr)\s*>", "\n", body)
    text = re.sub(r"<[^>]+>", "", text)
    text = html.unescape(text).replace("\xa0", " ")
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() or None


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time or unix seconds/milliseconds from a vendor payload; None when absent or
    unreadable (the hub then uses when it received the callback)."""
    from datetime import UTC

    if isinstance(value, bool) or value is None or value == "":
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        number = float(value)
        seconds = number / 1000 if number > 10**11 else number
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None
