"""SendGrid Inbound Parse: https://www.twilio.com/docs/sendgrid/for-developers/parsing-email/setting-up-the-inbound-parse-webhook"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel

from chalicelib.adapters.channels.sendgrid.settings import (  # noqa: F401 (re-exported)
    BasicAuthCredential,
    SendgridSettings,
)
from chalicelib.adapters.channels.base import (
    AdapterServices,
    ChannelAdapter,
    ParsedWebhook,
    SimulatedCustomer,
    SimulatedRequest,
    WebhookRequest,
)
from chalicelib.adapters.channels.email.inbound import (
    ignore_reason,
    proved_by_the_hub,
    MAX_EMBEDDED_BYTES,
    check_sender,
    domain_of,
    inbound_email,
)
from chalicelib.adapters.channels.email.mime import (
    ParsedAttachment,
    ParsedEmail,
    msg_ids,
    parse_address_list,
    parse_email,
    parse_email_headers,
    parse_header_block,
)
from chalicelib.adapters.channels.email.form import FormData, parse_form
from chalicelib.adapters.channels.sendgrid.signature import load_public_key, verifies
from chalicelib.errors import MalformedPayloadError, SignatureError
from chalicelib.signing.compare import matches_any
from chalicelib.signing.window import check_window, unix_seconds

#: The signed Event Webhook's headers, which SendGrid's SDK defines; that Inbound Parse security
#: policies send the same ones is stated by third parties only (PROVIDERS §5.1, §11.4).
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
#: `/webhooks/sendgrid/events`: the Event Webhook (statuses of mail we sent).
EVENTS_HOOK = "events"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
#: Header fields SendGrid posts beside `headers`, used when the block lacks them.
HEADER_FIELDS = (("From", "from"), ("To", "to"), ("Cc", "cc"), ("Subject", "subject"))

_ATTACHMENT = re.compile(r"attachment([0-9]{1,4})")
_DKIM_RESULT = re.compile(r"@([A-Za-z0-9.-]+)\s*:\s*([A-Za-z]+)")


@dataclass(frozen=True)
class _Mode:
    parsed: ParsedEmail
    name: str
    fallback_id: str


class SendgridAdapter(ChannelAdapter[SendgridSettings]):
    """Inbound email through SendGrid's Inbound Parse webhook, parsed fields or raw MIME."""

    key: ClassVar[str] = "sendgrid"
    docs_url: ClassVar[str] = (
        "https://www.twilio.com/docs/sendgrid/for-developers/parsing-email/setting-up-the-inbound-parse-webhook"
    )
    Settings: ClassVar[type[BaseModel]] = SendgridSettings
    #: Inbound Parse posts multipart; the Event Webhook (`/webhooks/sendgrid/events`) posts JSON.
    content_types: ClassVar[tuple[str, ...]] = ("multipart/form-data", "application/json")
    sender: ClassVar[str | None] = "chalicelib.adapters.channels.sendgrid.sender:SendgridSender"

    def __init__(self, settings: SendgridSettings, secrets, services: AdapterServices | None = None) -> None:
        super().__init__(settings, secrets, services)
        self._own = frozenset(settings.own_addresses)
        self._public_keys = [load_public_key(k) for k in settings.signature_public_keys]
        self._event_keys = [load_public_key(k) for k in settings.event_webhook_public_keys]

    def verify(self, request: WebhookRequest) -> None:
        """Every configured mechanism must pass: the basic-auth credential, the path token, and
        (with a security policy) the ECDSA signature over `timestamp + raw body`.

        Raises `SignatureError` (401).
        """
        if request.hook == EVENTS_HOOK:
            # The Event Webhook: its own key, always required (its URL carries no credential).
            if not self._event_keys:
                raise SignatureError("event_webhook_public_keys is not configured: SendGrid events are not accepted")
            self._verify_signature(request, self._event_keys, max_age=self.settings.event_max_age_seconds,
                                   setting="event_max_age_seconds")
            return
        if not self.settings.receives_mail:
            raise SignatureError("Inbound Parse is not configured here (basic_auth or path_tokens)")
        if self.settings.basic_auth and not self._basic_auth_matches(request.header("authorization")):
            raise SignatureError("missing or wrong basic auth credentials (basic_auth)")
        if self.settings.path_tokens and not self._path_token_matches(request.hook):
            raise SignatureError("missing or wrong path token: the URL must be /webhooks/sendgrid/<one of path_tokens>")
        if self._public_keys:
            self._verify_signature(request, self._public_keys, max_age=self.settings.signature_max_age_seconds,
                                   setting="signature_max_age_seconds")

    def parse(self, request: WebhookRequest) -> ParsedWebhook:
        if request.hook == EVENTS_HOOK:
            return self._parse_events(request)
        form = parse_form(request.body, request.header("content-type"))
        charsets = _json_object(form.text("charsets"))
        envelope = _json_object(form.text("envelope"))
        if "email" in form:
            raw = form.data("email") or b""
            try:
                parsed = parse_email(raw, own_addresses=self._own, max_attachment_bytes=MAX_EMBEDDED_BYTES)
            except MalformedPayloadError as exc:
                raise MalformedPayloadError(f"email: {exc.message}") from None
            mode = _Mode(parsed, "raw", hashlib.sha256(raw).hexdigest())
        elif "headers" in form or "from" in form:
            mode = _Mode(_parsed_fields(form, charsets, self._own), "parsed", _fields_digest(form))
        else:
            raise MalformedPayloadError("neither email (raw mode) nor headers/from (parsed mode)")

        envelope_to = envelope.get("to")
        recipient = envelope_to[0] if isinstance(envelope_to, list) and envelope_to and isinstance(envelope_to[0], str) else None
        recipient = recipient or _first_address(form.text("to"))
        envelope_from = envelope.get("from") if isinstance(envelope.get("from"), str) else None
        dkim_results = dkim_verdicts(form.text("dkim"))
        passing = [domain for domain, result in dkim_results if result == "pass"]
        sender = check_sender(
            mode.parsed.from_address,
            spf=form.text("SPF") or form.text("spf"),
            spf_domain=domain_of(envelope_from),
            dkim="pass" if passing else (dkim_results[0][1] if dkim_results else None),
            dkim_pass_domains=passing,
        )
        if mode.name == "raw" and ignore_reason(mode.parsed) is None:
            # A DNS failure answers 503: SendGrid retries for 3 days.
            sender = proved_by_the_hub(sender, form.data("email"), self.services.sender_verifier,
                                       mode.parsed.from_address, retry_dns_failures=True)
        metadata: dict[str, object] = {}
        if envelope_from:
            metadata["envelope_from"] = envelope_from[:320]
        if spam := form.text("spam_score"):
            metadata["spam_score"] = spam[:20]
        event = inbound_email(
            mode.parsed,
            provider=self.key,
            account=recipient,
            received_at=request.received_at,
            sender=sender,
            fallback_id=mode.fallback_id,
            raw={
                "mode": mode.name,
                "envelope": {"to": recipient, "from": envelope_from},
                "sender_ip": (form.text("sender_ip") or "")[:64] or None,
                "fields": sorted(form.names())[:100],
            },
            metadata=metadata,
        )
        if isinstance(event, str):
            return ParsedWebhook(ignored=[event])
        return ParsedWebhook(events=[event])

    def simulated_request(self, customer: SimulatedCustomer) -> SimulatedRequest | None:
        """An email from `customer` as Inbound Parse posts it in raw mode, with this hub's URL
        credentials. None when a signature policy is configured: only SendGrid holds its key."""
        if self._public_keys:
            return None
        from email.message import EmailMessage
        from email.utils import format_datetime, formataddr, make_msgid
        from datetime import datetime, timezone

        mailbox = next((a for a in self.settings.own_addresses if not a.startswith("@")), "support@parse.example.com")
        message = EmailMessage()
        message["From"] = formataddr((customer.name, customer.email))
        message["To"] = mailbox
        message["Subject"] = "Simulated message"
        message["Date"] = format_datetime(datetime.now(timezone.utc))
        message["Message-ID"] = make_msgid(domain="simulate.hub.invalid")
        message.set_content(customer.text)
        domain = domain_of(customer.email) or "example.com"
        fields = [
            ("dkim", f"{{@{domain} : pass}}"),
            ("email", message.as_bytes()),
            ("to", mailbox.encode()),
            ("from", message["From"].encode()),
            ("subject", b"Simulated message"),
            ("sender_ip", b"192.0.2.1"),
            ("envelope", json.dumps({"to": [mailbox], "from": customer.email}).encode()),
            ("charsets", b'{"to":"UTF-8","from":"UTF-8","subject":"UTF-8"}'),
            ("SPF", b"pass"),
        ]
        boundary = "hubSimulate" + hashlib.sha256(message.as_bytes()).hexdigest()[:16]
        body = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + (value if isinstance(value, bytes) else value.encode()) + b"\r\n"
            for name, value in fields
        ) + f"--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        if self.settings.basic_auth:
            first = self.settings.basic_auth[0]
            credential = f"{first.username}:{self.secrets.get(first.password)}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(credential).decode()
        path = f"/webhooks/{self.key}"
        if self.settings.path_tokens:
            path += "/" + self.secrets.get(self.settings.path_tokens[0])
        return SimulatedRequest(path=path, body=body, headers=headers)

    # --- credentials ---------------------------------------------------------------------------

    def _basic_auth_matches(self, header: str | None) -> bool:
        scheme, _, encoded = (header or "").strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return matches_any((f"{c.username}:{self.secrets.get(c.password)}" for c in self.settings.basic_auth), given)

    def _path_token_matches(self, hook: str | None) -> bool:
        if not hook:
            return False
        return matches_any(self.secrets.get_all(self.settings.path_tokens), hook)

    def _parse_events(self, request: WebhookRequest) -> ParsedWebhook:
        """The Event Webhook's array: one status per event; an item that is not one is kept raw."""
        from chalicelib.adapters.channels.sendgrid.events import UnreadableEvent, status_event

        # Re-checked, not trusted from verify(): parse alone never turns an unsigned body into events.
        if not self._event_keys:
            raise SignatureError("event_webhook_public_keys is not configured")
        self._verify_signature(request, self._event_keys, max_age=self.settings.event_max_age_seconds,
                               setting="event_max_age_seconds")
        try:
            items = json.loads(request.body)
        except (ValueError, RecursionError):
            raise MalformedPayloadError("the Event Webhook body is not JSON") from None
        if not isinstance(items, list):
            raise MalformedPayloadError("the Event Webhook body is not a JSON array of events")
        parsed = ParsedWebhook()
        for index, item in enumerate(items[:1000]):
            try:
                if not isinstance(item, dict):
                    raise UnreadableEvent(f"item {index} is not an object")
                parsed.events.append(status_event(self.key, item, request.received_at))
            except UnreadableEvent as exc:
                parsed.unhandled.append(self.unhandled(str(exc), item, request))
        return parsed

    def _verify_signature(self, request: WebhookRequest, keys: list, *, max_age: int, setting: str) -> None:
        signature = (request.header(SIGNATURE_HEADER) or "").strip()
        timestamp = (request.header(TIMESTAMP_HEADER) or "").strip()
        if not signature or not timestamp:
            raise SignatureError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
        signed_at = unix_seconds(timestamp, field=f"{TIMESTAMP_HEADER} header")
        # Over the raw bytes: the multipart body may be binary.
        message = timestamp.encode("ascii") + request.body
        if not verifies(keys, message, signature):
            raise SignatureError(f"{SIGNATURE_HEADER} does not verify with any configured public key")
        check_window(signed_at, request.received_at, max_age=max_age, field=TIMESTAMP_HEADER, setting=setting)


# --- the parsed mode ----------------------------------------------------------------------------------


def dkim_verdicts(value: str | None) -> list[tuple[str, str]]:
    """(domain, result) pairs of SendGrid's `dkim` field, e.g. `{@customer.example : pass}`."""
    return [(d.lower().rstrip("."), r.lower()) for d, r in _DKIM_RESULT.findall(value or "")][:10]


def _json_object(text: str | None) -> dict:
    if not text:
        return {}
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _first_address(value: str | None) -> str | None:
    addresses = parse_address_list(value)
    return addresses[0][1].lower() if addresses else None


def _parsed_fields(form: FormData, charsets: dict, own: frozenset[str]) -> ParsedEmail:
    def text(name: str) -> str | None:
        charset = charsets.get(name)
        return form.text(name, charset if isinstance(charset, str) else None)

    pairs = parse_header_block(form.data("headers") or b"")
    present = {name.lower() for name, _ in pairs}
    for header, name in HEADER_FIELDS:
        value = text(name)
        if value is not None and header.lower() not in present:
            pairs.append((header, value))
    info = _json_object(form.text("attachment-info"))
    content_ids = {str(v): str(k) for k, v in _json_object(form.text("content-ids")).items()}
    attachments = []
    for part in form.files():
        if _ATTACHMENT.fullmatch(part.name) is None:
            continue
        details = info.get(part.name) if isinstance(info.get(part.name), dict) else {}
        cid = details.get("content-id") or content_ids.get(part.name)
        ids = msg_ids(f"<{str(cid).strip('<>')}>") if cid else []
        filename = details.get("filename") if isinstance(details.get("filename"), str) else None
        ctype = details.get("type") if isinstance(details.get("type"), str) else None
        attachments.append(
            ParsedAttachment(
                filename=part.filename or filename,
                content_type=(part.content_type or ctype or "application/octet-stream").lower(),
                size=len(part.data),
                content_id=ids[0] if ids else None,
                inline=bool(ids),
                content=part.data,
            )
        )
    return parse_email_headers(pairs, text=text("text") or "", html=text("html"), attachments=attachments,
                               own_addresses=own)


def _fields_digest(form: FormData) -> str:
    """A stable id for a message without Message-ID: the whole form, which SendGrid resends as is."""
    digest = hashlib.sha256()
    for part in form.parts:
        digest.update(part.name.encode("utf-8", "replace") + b"\x00" + part.data + b"\x00")
    return digest.hexdigest()
