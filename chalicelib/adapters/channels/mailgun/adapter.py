"""Mailgun inbound routes, `forward()` to a URL: https://documentation.mailgun.com/docs/mailgun/user-manual/receive-forward-store/receive-http"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timezone
from functools import lru_cache
from typing import ClassVar

from pydantic import BaseModel

from chalicelib.adapters.channels.mailgun.settings import (  # noqa: F401 (re-exported)
    MAILGUN_RETRY_HORIZON_SECONDS,
    MailgunSettings,
    own_address_list,
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
    aligned,
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
)
from chalicelib.adapters.channels.email.form import FormData, media_type, parse_form
from chalicelib.errors import MalformedPayloadError, SignatureError
from chalicelib.signing.compare import hmac_sha256, signed_by_any
from chalicelib.signing.window import check_window

SIGNING_FIELDS = ("timestamp", "token", "signature")
#: `/webhooks/mailgun/events`: the event webhooks (delivered, failed, opened, complained...).
EVENTS_HOOK = "events"
#: Fields only a Mailgun route POST carries: a body with any of them must be signed.
ROUTE_FIELDS = frozenset(
    {*SIGNING_FIELDS, "recipient", "sender", "from", "subject", "body-mime", "body-plain", "body-html",
     "stripped-text", "message-headers", "attachment-count", "Message-Id"}
)
#: Individual header fields Mailgun also posts (observed; `message-headers` is the documented source).
HEADER_FIELDS = ("From", "To", "Cc", "Subject", "Date", "Message-Id", "In-Reply-To", "References", "Reply-To")
#: messages within the replay window before the oldest are forgotten.
TOKEN_CACHE_SIZE = 10_000

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
#: A Received line Mailgun's MX wrote (`... by mxa.mailgun.org with ESMTPS ...`).
_MAILGUN_RECEIVED = re.compile(r"\bby\s+[a-z0-9.-]{0,200}\bmailgun\.(?:org|net|com)\b", re.IGNORECASE)
_ATTACHMENT = re.compile(r"attachment-([0-9]{1,4})")


class NotAcceptableError(MalformedPayloadError):
    """A POST that can never succeed. Mailgun stops retrying only on 406; any other status,
    400 included, is retried for 8 hours (PROVIDERS §5.2)."""

    http_status = 406
    code = "not_acceptable"


class ReplayedTokenError(SignatureError):
    """A token already used for another message: Mailgun's signature covers the token, not the
    message, so this is someone else's body under a captured signature. Answered 406 (Mailgun's
    "do not retry"); a retry of the same message with its own token is accepted."""

    http_status = 406
    code = "replayed_token"


def compute_signature(signing_key: str, timestamp: str, token: str) -> str:
    """Mailgun's `signature`: hex HMAC-SHA256 of `timestamp + token` under the webhook signing key."""
    return hmac_sha256(signing_key, timestamp + token).hex()


class MailgunAdapter(ChannelAdapter[MailgunSettings]):
    """Inbound email through a Mailgun route's `forward()` action, parsed or raw MIME."""

    key: ClassVar[str] = "mailgun"
    docs_url: ClassVar[str] = (
        "https://documentation.mailgun.com/docs/mailgun/user-manual/receive-forward-store/receive-http"
    )
    Settings: ClassVar[type[BaseModel]] = MailgunSettings
    # Form-encoded without attachments, multipart with them (PROVIDERS §0.2); the event
    # webhooks (`/webhooks/mailgun/events`) post JSON.
    content_types: ClassVar[tuple[str, ...]] = (
        "application/x-www-form-urlencoded", "multipart/form-data", "application/json",
    )
    sender: ClassVar[str | None] = "chalicelib.adapters.channels.mailgun.sender:MailgunSender"

    def __init__(self, settings: MailgunSettings, secrets, services: AdapterServices | None = None) -> None:
        super().__init__(settings, secrets, services)
        self._own = frozenset(settings.own_addresses)

    def verify(self, request: WebhookRequest) -> None:
        """HMAC-SHA256 over `timestamp + token` with each signing key, and the timestamp within
        `max_age_seconds` of our clock. (Whether the token was used for another message is
        checked in `parse`, which knows the message.)

        A body that is not a form, or carries no Mailgun field at all, has nothing to check:
        `parse` refuses it. Raises `SignatureError` (401: Mailgun retries, so a key fixed within
        8 hours loses nothing).
        """
        if request.hook == EVENTS_HOOK:
            self._verify_event(request)
            return
        form = _form(request)
        if form is None or not any(name in form for name in ROUTE_FIELDS):
            return
        timestamp, token, signature = (form.text(name) or "" for name in SIGNING_FIELDS)
        if not (timestamp and token and signature):
            raise SignatureError("missing timestamp, token or signature field")
        if not self._signature_matches(timestamp, token, signature):
            raise SignatureError(
                "signature does not match: webhook_signing_keys must hold the HTTP webhook signing key, not the API key"
            )
        check_window(int(timestamp), request.received_at, max_age=self.settings.max_age_seconds, field="timestamp",
                     setting="max_age_seconds")

    def parse(self, request: WebhookRequest) -> ParsedWebhook:
        if request.hook == EVENTS_HOOK:
            return self._parse_event(request)
        form = _form(request)
        if form is None:
            raise NotAcceptableError("body is not a urlencoded or multipart/form-data form")
        timestamp, token, signature = (form.text(name) or "" for name in SIGNING_FIELDS)
        if not (timestamp and token and signature):
            raise NotAcceptableError("not a Mailgun route POST: missing timestamp, token or signature")
        # Re-checked, not trusted from verify(): parse alone never turns an unsigned body into events.
        if not self._signature_matches(timestamp, token, signature):
            raise SignatureError("signature does not match")
        mime = form.data("body-mime")
        if mime is not None:
            try:
                parsed = parse_email(mime, own_addresses=self._own, max_attachment_bytes=MAX_EMBEDDED_BYTES)
            except MalformedPayloadError as exc:
                raise NotAcceptableError(f"body-mime: {exc.message}") from None
            mode = "mime"
            fallback = hashlib.sha256(mime).hexdigest()
        elif any(name in form for name in ("message-headers", "from", "body-plain")):
            parsed = _parsed_fields(form, self._own)
            mode = "parsed"
            fallback = _fields_digest(form)
        else:
            raise NotAcceptableError("neither body-mime nor the parsed message fields (from, body-plain)")

        # One token, one message: Mailgun signs the token, not the message, so a captured token
        # must not carry another one. The message is its content (the raw MIME, or the parsed
        # fields), which Mailgun's retries repeat even where the multipart boundary changes: a
        # retry passes, so a 5xx answered earlier loses nothing. Checked before any DNS work.
        expires = datetime.fromtimestamp(int(timestamp) + self.settings.max_age_seconds, tz=timezone.utc)
        if not self.services.replay_guard.first_use(self.key, token, fingerprint=fallback, expires_at=expires,
                                                    now=request.received_at):
            raise ReplayedTokenError("this token was already used for another message: a replayed signature")

        recipient = _first_address(form.text("recipient"))
        envelope_sender = _first_address(form.text("sender"))
        if mime is None:
            spf_result, dkim_result = mailgun_verdicts(_header_pairs(form))
        else:
            # Mailgun posts the raw message "as-is": its verdict headers are not known to be in
            # it, and a sender can write any `X-Mailgun-Spf` into its own headers. Only the hub's
            # own DKIM check (below) proves a raw-mode sender.
            spf_result = dkim_result = None
        # Mailgun does not say which signature passed: credit DKIM only when every signing
        # domain is aligned with From, so a passing signature of another domain proves nothing.
        from_domain = domain_of(parsed.from_address)
        dkim_domains = parsed.dkim_domains
        all_aligned = bool(dkim_domains) and all(aligned(from_domain, d) for d in dkim_domains)
        sender = check_sender(
            parsed.from_address,
            spf=spf_result,
            spf_domain=domain_of(envelope_sender),
            dkim=dkim_result,
            dkim_pass_domains=dkim_domains if all_aligned else (),
        )
        if ignore_reason(parsed) is None:
            # A DNS failure answers 503: Mailgun retries for 8 hours, and a proved customer's
            # mail must not be taken for a stranger's meanwhile.
            sender = proved_by_the_hub(sender, mime, self.services.sender_verifier, parsed.from_address,
                                       retry_dns_failures=True)
        event = inbound_email(
            parsed,
            provider=self.key,
            account=recipient,
            received_at=request.received_at,
            sender=sender,
            fallback_id=fallback,
            raw={
                "mode": mode,
                "recipient": recipient,
                "sender": envelope_sender,
                "fields": sorted(n for n in form.names() if n not in SIGNING_FIELDS)[:100],
            },
            metadata={"envelope_from": envelope_sender} if envelope_sender else None,
        )
        if isinstance(event, str):
            return ParsedWebhook(ignored=[event])
        return ParsedWebhook(events=[event])

    def simulated_request(self, customer: SimulatedCustomer) -> SimulatedRequest:
        """An email from `customer` as a raw-MIME route (`forward(".../webhooks/mailgun/mime")`)
        posts it, signed with the first webhook signing key at the current time."""
        import secrets as random
        from email.message import EmailMessage
        from email.utils import format_datetime, formataddr, make_msgid
        from urllib.parse import urlencode

        mailbox = next((a for a in self.settings.own_addresses if not a.startswith("@")), "support@mg.example.com")
        message = EmailMessage()
        # Mailgun's own verdict, as its MX adds it: the simulated sender counts as proved.
        message["X-Mailgun-Spf"] = "Pass"
        message["From"] = formataddr((customer.name, customer.email))
        message["To"] = mailbox
        message["Subject"] = "Simulated message"
        message["Date"] = format_datetime(datetime.now(timezone.utc))
        message["Message-ID"] = make_msgid(domain="simulate.hub.invalid")
        message.set_content(customer.text)
        timestamp, token = str(int(time.time())), random.token_hex(25)
        fields = {
            "recipient": mailbox,
            "sender": customer.email,
            "from": message["From"],
            "subject": message["Subject"],
            "body-mime": message.as_string(),
            "timestamp": timestamp,
            "token": token,
            "signature": compute_signature(self.secrets.get(self.settings.webhook_signing_keys[0]), timestamp, token),
        }
        return SimulatedRequest(
            path=f"/webhooks/{self.key}/mime",
            body=urlencode(fields).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    # --- event webhooks: statuses of mail we sent -------------------------------------------------

    def _verify_event(self, request: WebhookRequest) -> None:
        """The event's `signature` object, checked like a route POST's fields. Raises
        `SignatureError` (401: Mailgun retries) or `NotAcceptableError` for a body that is not
        an event (406: Mailgun stops)."""
        timestamp, token, signature = _event_signature(request.body)
        if not self._signature_matches(timestamp, token, signature):
            raise SignatureError("event signature does not match: webhook_signing_keys must hold the HTTP webhook signing key")
        check_window(int(timestamp), request.received_at, max_age=self.settings.max_age_seconds, field="signature.timestamp",
                     setting="max_age_seconds")

    def _parse_event(self, request: WebhookRequest) -> ParsedWebhook:
        from chalicelib.adapters.channels.mailgun.events import UnreadableEvent, status_event

        timestamp, token, signature = _event_signature(request.body)
        # Re-checked, not trusted from verify(): parse alone never turns an unsigned body into events.
        if not self._signature_matches(timestamp, token, signature):
            raise SignatureError("event signature does not match")
        expires = datetime.fromtimestamp(int(timestamp) + self.settings.max_age_seconds, tz=timezone.utc)
        # Mailgun signs the token, not the event: a captured signature must not carry another event.
        if not self.services.replay_guard.first_use(self.key, token, fingerprint=hashlib.sha256(request.body).hexdigest(),
                                                    expires_at=expires, now=request.received_at):
            raise ReplayedTokenError("this token was already used for another event: a replayed signature")
        data = json.loads(request.body).get("event-data")
        if not isinstance(data, dict):
            raise NotAcceptableError("event-data is not an object")
        try:
            return ParsedWebhook(events=[status_event(self.key, data, request.received_at)])
        except UnreadableEvent as exc:
            return ParsedWebhook(unhandled=[self.unhandled(str(exc), data, request)])

    def _signature_matches(self, timestamp: str, token: str, signature: str) -> bool:
        if not _TIMESTAMP.fullmatch(timestamp) or len(token) > 256 or len(signature) > 256:
            return False
        return signed_by_any(lambda key: compute_signature(key, timestamp, token),
                             self.secrets.get_all(self.settings.webhook_signing_keys), signature.strip().lower())


def _event_signature(body: bytes) -> tuple[str, str, str]:
    """(timestamp, token, signature) of an event webhook body. Raises `NotAcceptableError` (406,
    Mailgun does not retry) for a body that is not a signed event."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise NotAcceptableError("an event webhook body must be JSON") from None
    block = data.get("signature") if isinstance(data, dict) else None
    if not isinstance(block, dict):
        raise NotAcceptableError("not a Mailgun event: no signature object")
    values = tuple(block.get(name) for name in SIGNING_FIELDS)
    if not all(isinstance(v, (str, int)) and str(v) for v in values):
        raise SignatureError("missing signature.timestamp, token or signature")
    return tuple(str(v) for v in values)  # type: ignore[return-value]


# --- the parsed-fields mode ------------------------------------------------------------------------


def _form(request: WebhookRequest) -> FormData | None:
    return _cached_form(request.body, request.header("content-type") or "")


@lru_cache(maxsize=4)
def _cached_form(body: bytes, content_type: str) -> FormData | None:
    """The form, parsed once for verify and parse; None when the body is not one."""
    if media_type(content_type) not in ("application/x-www-form-urlencoded", "multipart/form-data", ""):
        return None
    try:
        return parse_form(body, content_type)
    except MalformedPayloadError:
        return None


def mailgun_verdicts(pairs: Iterable[tuple[str, str]]) -> tuple[str | None, str | None]:
    """Mailgun's SPF and DKIM verdicts (`X-Mailgun-Spf`, `X-Mailgun-Dkim-Check-Result`), read
    only from the headers its MX put on top: above the first `Received` line of another host.
    A sender can write X-Mailgun-* headers into the message; below Mailgun's block they are the
    sender's words, never trusted, so a forged "Pass" cannot make a spoofed From verified."""
    spf = dkim = None
    for name, value in pairs:
        name = name.strip().lower()
        if name == "received" and not _MAILGUN_RECEIVED.search(value):
            break
        if name == "x-mailgun-spf" and spf is None:
            spf = value
        elif name == "x-mailgun-dkim-check-result" and dkim is None:
            dkim = value
    return spf, dkim


def _first_address(value: str | None) -> str | None:
    addresses = parse_address_list(value)
    return addresses[0][1].lower() if addresses else None


def _header_pairs(form: FormData) -> list[tuple[str, str]]:
    """`message-headers` (a JSON list of [name, value], order kept), then the individual header
    fields for any header the list lacks."""
    pairs: list[tuple[str, str]] = []
    text = form.text("message-headers")
    if text:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise NotAcceptableError("message-headers is not JSON") from None
        if not isinstance(data, list):
            raise NotAcceptableError("message-headers is not a list of [name, value] pairs")
        for item in data[:500]:
            if isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item):
                pairs.append((item[0], item[1]))
    present = {name.lower() for name, _ in pairs}
    for name in HEADER_FIELDS:
        value = form.text(name)
        if value is None and name == "From":
            value = form.text("from")
        if value is None and name == "Subject":
            value = form.text("subject")
        if value is not None and name.lower() not in present:
            pairs.append((name, value))
    return pairs


def _parsed_fields(form: FormData, own: frozenset[str]) -> ParsedEmail:
    content_ids: dict[str, str] = {}
    mapping = form.text("content-id-map")
    if mapping:
        try:
            data = json.loads(mapping)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            content_ids = {str(v): str(k) for k, v in data.items()}
    attachments = []
    for part in form.files():
        match = _ATTACHMENT.fullmatch(part.name)
        if match is None:
            continue
        cid = content_ids.get(part.name)
        ids = msg_ids(cid) if cid else []
        attachments.append(
            ParsedAttachment(
                filename=part.filename,
                content_type=part.content_type or "application/octet-stream",
                size=len(part.data),
                content_id=ids[0] if ids else None,
                inline=bool(ids),
                content=part.data,
            )
        )
    html = "\n".join(form.texts("body-html")) or None
    parsed = parse_email_headers(
        _header_pairs(form), text=form.text("body-plain") or "", html=html, attachments=attachments,
        own_addresses=own,
    )
    stripped = (form.text("stripped-text") or "").strip()
    if not parsed.text and stripped:
        # Our quote detection knows German and Outlook forms; Mailgun's is the fallback.
        parsed = replace(parsed, text=stripped)
    return parsed


def _fields_digest(form: FormData) -> str:
    """A stable id for a parsed-mode POST without Message-Id: everything but the signing triple."""
    digest = hashlib.sha256()
    for part in form.parts:
        if part.name not in SIGNING_FIELDS:
            digest.update(part.name.encode("utf-8", "replace") + b"\x00" + part.data + b"\x00")
    return digest.hexdigest()

