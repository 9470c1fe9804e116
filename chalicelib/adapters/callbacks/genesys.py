"""Genesys Cloud Open Messaging outbound webhook: what agents send the customer comes to the hub.
https://developer.genesys.cloud/commdigital/digital/openmessaging/outboundMessages

Genesys posts every message of an Open Messaging conversation that goes *to* the customer (an
agent's, a bot's, an agentless one) to the integration's `outboundNotificationWebhookUrl`, one
`OpenNormalizedMessage` per request, signed with the integration's secret token. The hub set the
customer's id as the sender of its inbound messages (`channel.from.id`, see `connectors.genesys`),
so an outbound message names the customer in `channel.to.id`: that id is the ticket.

What this webhook does not carry, said plainly in `setup().limits`: internal notes (Genesys has
none on this path: every outbound message is meant for the customer) and the conversation's end
or any status (the case does not follow Genesys). The agent learns of a reply the hub could not
deliver through a `Failed` receipt for the agent's message, which Genesys shows on the message.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from chalicelib.adapters.callbacks.base import (
    CallbackRequest,
    CallbackSetup,
    ParsedCallback,
    SetupStep,
    VendorCallbacks,
    parse_time,
)
from chalicelib.domain.models import AgentAuthor, AgentReply, Attachment
from chalicelib.errors import ConfigError, MalformedPayloadError, PermanentDeliveryError, SignatureError
from chalicelib.signing.compare import hmac_sha256, matches_any

if TYPE_CHECKING:
    from chalicelib.domain.models import Contact

SIGNATURE_HEADER = "X-Hub-Signature-256"
# `sha256=` + the base64 of a 32-byte digest (not hex, unlike Meta's header of the same name):
# https://developer.genesys.cloud/commdigital/digital/openmessaging/validate.html
_SIGNATURE = re.compile(r"sha256=([A-Za-z0-9+/]{43}=)")

#: The hub's refusal codes (`failure_notes._ADVICE`) → the receipt reason codes Genesys knows
#: (`ConversationReason.code` in the Platform API SDK). Anything else is a `GeneralError`.
REASON_CODES = {
    "outside_service_window": "MessageExpired",
    "consent_refused": "MessageNotAllowed",
    "template_required": "MessageNotAllowed",
    "no_reachable_channel": "InvalidDestination",
    "invalid_message": "UnsupportedMessage",
}
GENERAL_ERROR = "GeneralError"
#: Genesys stores the reason on the conversation (`errorInfo`); keep it short.
REASON_CHARS = 500

#: Message types that never carry anything for the customer's channel (`OpenNormalizedMessage.type`).
_NOT_CONTENT = {"Receipt": "a delivery receipt", "Event": "an event (typing indicator)"}


def integration_path(integration_id: str) -> str:
    return f"/api/v2/conversations/messaging/integrations/open/{quote(integration_id, safe='')}"


def receipt_path(integration_id: str) -> str:
    return f"/api/v2/conversations/messages/{quote(integration_id, safe='')}/inbound/open/receipt"


class GenesysCallbacks(VendorCallbacks):
    """The Open Messaging integration's outbound webhook (open_messaging mode only)."""

    takes_notes = True
    #: The outbound webhook carries agents' messages only, never a conversation's end.
    reports_status = False

    # --- request path ------------------------------------------------------------------------------

    def verify(self, request: CallbackRequest) -> None:
        given = _SIGNATURE.fullmatch((request.header(SIGNATURE_HEADER) or "").strip())
        if given is None:
            raise SignatureError(f"{SIGNATURE_HEADER} is missing or not sha256=<base64>")
        candidates = [_signature(secret, body) for secret in self.secrets() for body in _signed_forms(request.body)]
        if not matches_any(candidates, given.group(1)):
            raise SignatureError(f"{SIGNATURE_HEADER} does not match the body for any configured secret")
        # No timestamp is signed, so there is no replay window: a replayed message derives the same
        # event id (`id` + `channel.time`) and the hub sends it once.

    def parse(self, request: CallbackRequest) -> ParsedCallback:
        message = _message(request.body)
        channel = message["channel"]
        kind, direction = message.get("type"), message.get("direction")
        integration = self.connector.settings.integration_id
        if channel.get("id") not in (None, "", integration):
            return ParsedCallback(ignored=[f"a message of another integration ({_text(channel.get('id'))})"])
        if direction != "Outbound":
            # The hub's own inbound messages (the customer's words) and their receipts: never relayed.
            return ParsedCallback(ignored=[f"{_text(kind)} message in direction {_text(direction)}: not from Genesys "
                                           f"to the customer{_status(message)}"])
        if kind in _NOT_CONTENT:
            return ParsedCallback(ignored=[f"{_NOT_CONTENT[kind]}, not a message{_status(message)}"])
        if kind != "Text":
            return ParsedCallback(unhandled=[self.unhandled(
                f"{_text(kind)} message (quick replies, cards) cannot be relayed as text", message, request)])
        reply = self._reply(message, channel, request)
        if isinstance(reply, str):
            return ParsedCallback(unhandled=[self.unhandled(reply, message, request)])
        echo = self.echo_reason(reply.text, None)
        if echo is not None:
            return ParsedCallback(ignored=[echo])
        return ParsedCallback(items=[reply])

    def _reply(self, message: dict, channel: dict, request: CallbackRequest) -> AgentReply | str:
        message_id = _required(message, "id")
        recipient = channel.get("to")
        if not isinstance(recipient, dict):
            raise MalformedPayloadError("channel.to: missing (the customer the message goes to)")
        customer = _required(recipient, "id", "channel.to.id")
        time = channel.get("time")
        attachments, dropped = _attachments(message.get("content"))
        text = message.get("text") if isinstance(message.get("text"), str) else None
        if not (text or "").strip() and not attachments:
            return f"an outbound message with nothing the hub can relay ({', '.join(dropped) or 'no text'})"
        return AgentReply(
            destination=self.destination,
            # The id the hub sent the customer's messages from: the connector's `case_ref`.
            ticket=customer,
            # Unique per message and time, as Genesys documents it; its retries repeat both.
            event_id=f"{message_id}:{_text(time)}",
            comment_id=message_id,
            author=_author(channel.get("from"), message.get("originatingEntity")),
            text=text,
            attachments=attachments,
            occurred_at=parse_time(time),
            received_at=request.received_at,
        )

    # --- worker ------------------------------------------------------------------------------------

    def note(self, ticket: str, text: str, *, reply_ref: str | None = None, code: str | None = None,
             at: datetime | None = None) -> str | None:
        """A `Failed` receipt for the agent's message `reply_ref`: Genesys marks that message as
        not delivered in the agent's view and keeps `text` as the reason on the conversation.
        Without the message's id there is nothing to mark (Genesys has no notes). Raises like a
        delivery."""
        if not reply_ref:
            raise PermanentDeliveryError("genesys cloud takes no notes: a failure receipt needs the agent's message id")
        stamp = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
        body = {
            "id": reply_ref,
            "channel": {
                "to": {"id": ticket, "idType": "Opaque"},
                "time": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
            },
            "status": "Failed",
            "direction": "Outbound",
            "isFinalReceipt": True,
            "reasons": [{"code": REASON_CODES.get(code or "", GENERAL_ERROR), "message": text[:REASON_CHARS]}],
        }
        self.connector.api.call("POST", receipt_path(self.connector.settings.integration_id), json_body=body)
        return reply_ref

    def failure_receipt(self, ticket: str, reply_ref: str | None, contact: Contact, text: str) -> str | None:
        """`note` for an agent's reply that failed (`message.undelivered`), with the hub's failure
        code and time taken from the outbound message, so a retried delivery sends the same receipt."""
        code, at = failure_of(contact)
        return self.note(ticket, text, reply_ref=reply_ref, code=code, at=at)

    # --- operator ----------------------------------------------------------------------------------

    def setup(self) -> CallbackSetup:
        integration = self.connector.settings.integration_id
        return CallbackSetup(
            vendor="genesys cloud",
            steps=[
                SetupStep(
                    title="Point the Open Messaging integration's outbound webhook at the hub",
                    values={
                        "Integration": integration,
                        "Outbound Notification Webhook URL": self.callback_url(),
                        "Outbound Notification Webhook Signature Secret Token": "the first of callbacks.secrets",
                    },
                    text="Admin > Message > Platforms > the Open Messaging platform (or PATCH "
                         f"{integration_path(integration)} with outboundNotificationWebhookUrl and "
                         "outboundNotificationWebhookSignatureSecretToken). Genesys signs each message with "
                         f"{SIGNATURE_HEADER}; only port 443 is called.",
                ),
                SetupStep(
                    title="Let the hub mark undelivered agent messages as failed",
                    values={"API": f"POST {receipt_path(integration)}"},
                    text="The OAuth client that sends the inbound messages sends the Failed receipts too, through "
                         "the same inbound API (that it needs no further permission is unconfirmed). Turn them off "
                         "with callbacks.failure_notes: false.",
                ),
            ],
            limits=[
                "Every outbound message is customer-facing: Genesys has no internal notes on this path.",
                "No conversation end or status reaches this webhook: the hub's case does not follow Genesys.",
                "Quick replies, cards and carousels (Structured messages) are not relayed; they are kept as "
                "unhandled events.",
                "Attachments are relayed as the links Genesys sends, which expire.",
                "A failed reply shows as a failed message in the agent's view; the reason is kept on the "
                "conversation (errorInfo), not shown in the message.",
            ],
            can_create=True,
        )

    def create_setup(self) -> list[str]:
        """Set the integration's outbound webhook URL and secret token (the first of the rotation
        list) through the Platform API; the integration's name is read first, since the update
        request requires it."""
        if not self.settings.public_url:
            raise ConfigError(f"destinations[{self.destination}].callbacks.public_url: set the hub's public "
                              f"callback URL first (https://<your-api>/callbacks/{self.destination})")
        secrets = self.secrets()
        path = integration_path(self.connector.settings.integration_id)
        current = self.connector.api.call("GET", path).data
        if not isinstance(current, dict) or not current.get("name"):
            raise PermanentDeliveryError(f"genesys cloud answered without the name of integration "
                                         f"{self.connector.settings.integration_id}")
        self.connector.api.call("PATCH", path, json_body={
            "name": current["name"],
            "outboundNotificationWebhookUrl": self.callback_url(),
            "outboundNotificationWebhookSignatureSecretToken": secrets[0],
        })
        before = current.get("outboundNotificationWebhookUrl")
        name = current["name"]
        return [f"webhook of Open Messaging integration {name!r}: {self.callback_url()}"
                + (f" (was {before})" if before and before != self.callback_url() else ""),
                f"signature secret token of Open Messaging integration {name!r}: the first of callbacks.secrets"]


def failure_of(contact: Contact) -> tuple[str | None, datetime | None]:
    """The hub's code for why an outbound message failed, and when."""
    from chalicelib.domain.models import OutboundStatus

    failed = [change for change in contact.status_history if change.status == OutboundStatus.FAILED]
    refusal = contact.metadata.get("refusal")
    code = refusal.get("code") if isinstance(refusal, dict) else (failed[-1].code if failed else None)
    return (str(code) if code else None), (failed[-1].at if failed else None)


def _signature(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac_sha256(secret, body)).decode()


def _signed_forms(body: bytes) -> list[bytes]:
    """The raw body, and the body as `JSON.stringify` writes it: Genesys's own sample hashes the
    re-serialized JSON, not the bytes on the wire. Both are the same when Genesys sends compact
    JSON; the second keeps a differently formatted body from failing verification."""
    try:
        compact = json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode()
    except (ValueError, RecursionError):
        return [body]
    return [body] if compact == body else [body, compact]


def _message(body: bytes) -> dict:
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedPayloadError("the body is not JSON (an OpenNormalizedMessage)") from None
    if not isinstance(message, dict):
        raise MalformedPayloadError("the body is not a JSON object (an OpenNormalizedMessage)")
    if not isinstance(message.get("channel"), dict):
        raise MalformedPayloadError("channel: missing (not an OpenNormalizedMessage)")
    if not isinstance(message.get("type"), str):
        raise MalformedPayloadError("type: missing (not an OpenNormalizedMessage)")
    return message


def _required(obj: dict, key: str, name: str | None = None) -> str:
    value = obj.get(key)
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
        raise MalformedPayloadError(f"{name or key}: missing")
    return str(value)


def _attachments(content: Any) -> tuple[list[Attachment], list[str]]:
    """The `Attachment` content elements as links; the content types that cannot be relayed."""
    found, dropped = [], []
    for element in content if isinstance(content, list) else []:
        if not isinstance(element, dict):
            continue
        attachment = element.get("attachment")
        if element.get("contentType") == "Attachment" and isinstance(attachment, dict) and attachment.get("url"):
            found.append(Attachment(
                url=str(attachment["url"]), content_type=_str(attachment.get("mime")),
                filename=_str(attachment.get("filename")), caption=_str(attachment.get("text")),
                kind=(_str(attachment.get("mediaType")) or "").lower() or None,
                size=attachment.get("contentSizeBytes") if isinstance(attachment.get("contentSizeBytes"), int) else None,
            ))
        else:
            dropped.append(str(element.get("contentType") or "unknown content"))
    return found, dropped


def _author(sender: Any, entity: Any) -> AgentAuthor:
    """`channel.from` of an outbound message is the integration; its nickname is the name Genesys
    shows the customer (the agent's, when the organization shares it). No agent id is sent."""
    sender = sender if isinstance(sender, dict) else {}
    name = _str(sender.get("nickname")) or " ".join(
        p for p in (_str(sender.get("firstName")), _str(sender.get("lastName"))) if p) or None
    if entity == "Bot":
        name = f"{name or 'Genesys'} (bot)"
    return AgentAuthor(name=name)


def _status(message: dict) -> str:
    status = message.get("status")
    if not status:
        return ""
    reasons = [r.get("code") or r.get("message") for r in message.get("reasons") or [] if isinstance(r, dict)]
    return f" ({_text(status)}{': ' + ', '.join(map(_text, reasons)) if reasons else ''})"


def _str(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _text(value: Any) -> str:
    """A vendor value for a log line or reason: short, printable."""
    return re.sub(r"[^\x20-\x7e]", "?", str(value))[:80]
