"""Twilio Programmable Messaging webhooks (SMS, MMS, WhatsApp): https://www.twilio.com/docs/messaging/guides/webhook-request"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from pydantic import BaseModel

# `TwilioSettings` and `normalize_public_url` are still importable from here (the Flex callbacks use the latter).
from chalicelib.adapters.channels.twilio.settings import (  # noqa: F401
    _DEFAULT_PORTS,
    TwilioSettings,
    hook_url,
    normalize_public_url,
)
from chalicelib.adapters.channels.base import (
    ChannelAdapter,
    ParsedWebhook,
    SimulatedCustomer,
    SimulatedRequest,
    WebhookRequest,
    WebhookResponse,
)
from chalicelib.domain.models import (
    Attachment,
    Channel,
    ContentType,
    Handle,
    InboundMessage,
    Location,
    Sender,
    StatusEvent,
)
from chalicelib.errors import MalformedPayloadError, SignatureError
from chalicelib.signing.compare import matches_any

SIGNATURE_HEADER = "X-Twilio-Signature"
#: Sent only by accounts on the public-beta SharedKey feature: `key=<sharedKeyId>,algorithm=<alg>`.
#: https://www.twilio.com/docs/usage/webhooks/webhook-shared-keys
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
HMAC_SHA1 = "HMAC_SHA1"
HMAC_SHA256 = "HMAC_SHA256"
_DIGESTS = {HMAC_SHA1: hashlib.sha1, HMAC_SHA256: hashlib.sha256}

#: "Received, no reply." An empty 200 without TwiML is logged as an error in Twilio's debugger.
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

UNKNOWN = "unknown"
#: Twilio `MessageStatus` → the hub's delivery vocabulary (queued < sending < sent < delivered < read).
STATUSES: dict[str, str] = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "sending",
    "sent": "sent",
    # Some recipients of a multi-recipient (RCS/group) send got it; the detail stays in `raw`.
    "partially_delivered": "delivered",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
    # Carrier could not deliver: terminal like `failed`; `ErrorCode` tells them apart.
    "undelivered": "failed",
    "canceled": "canceled",
}

#: `From` prefixes of Twilio's non-SMS channels we turn into messages; others are acknowledged and ignored.
CHANNEL_PREFIXES: dict[str, Channel] = {"whatsapp": Channel.WHATSAPP}
#: Status callbacks name the channel in `ChannelPrefix`.
STATUS_CHANNELS: dict[str, Channel] = {"whatsapp": Channel.WHATSAPP, "messenger": Channel.MESSENGER}

_AUTHORITY = re.compile(r"(?P<host>\[[^\]]*\]|[^:]*)(?::(?P<port>[0-9]*))?")
_MEDIA_URL = re.compile(r"MediaUrl([0-9]{1,4})")
#: The send error that means the recipient replied STOP; in a status callback it is an opt-out.
#: https://www.twilio.com/docs/api/errors/21610
OPTED_OUT_ERROR = "21610"
_COUNT = re.compile(r"[0-9]{1,4}")


def compute_signature(
    url: str,
    params: Mapping[str, str | Iterable[str]] | Iterable[tuple[str, str]],
    token: str,
    algorithm: str = HMAC_SHA1,
) -> str:
    """The `X-Twilio-Signature` Twilio sends for a form POST to `url`.

    Same construction as `twilio.request_validator.RequestValidator.compute_signature`, kept here
    so ingest does not import the Twilio SDK and the `simulate` CLI signs exactly as we verify.
    A repeated name contributes `name + value` once per distinct value, values sorted.
    """
    digest = _DIGESTS.get(algorithm.upper())
    if digest is None:
        raise ValueError(f"unsupported Twilio signature algorithm {algorithm!r}")
    return _sign(token, _signing_string(url, params), digest)


def signed_params(body: bytes) -> list[tuple[str, str]]:
    """The form parameters as the signature covers them.

    Total on any bytes (undecodable text becomes U+FFFD), so a garbled body fails the signature
    or the parser with a clear 4xx, never with an exception from here.
    """
    return list(_decoded(body)[0])


def signature_algorithm(settings_header: str | None) -> str:
    """The algorithm named in `X-Twilio-Webhooks-Signature-Settings`; HMAC_SHA1 when absent (the SDK's rule)."""
    for part in (settings_header or "").split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip().lower() == "algorithm" and value.strip():
            return value.strip().upper()
    return HMAC_SHA1


def signed_urls(url: str) -> list[str]:
    """Every spelling of `url` Twilio may have signed: as configured, and with/without the default port.

    Twilio keeps an explicit port for some products and not for others, so the official validator
    accepts both; we do the same, but only for the scheme's default port.
    """
    scheme, sep, rest = url.partition("://")
    default = _DEFAULT_PORTS.get(scheme.lower())
    if not sep or default is None:
        return [url]
    end = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0], default=len(rest))
    authority, tail = rest[:end], rest[end:]
    match = _AUTHORITY.fullmatch(authority)
    if match is None:
        return [url]
    host, port = match["host"], match["port"]
    if port is None:
        return [url, f"{scheme}://{host}:{default}{tail}"]
    if port == default:
        return [url, f"{scheme}://{host}{tail}"]
    return [url]


def _signing_string(url: str, params: Mapping[str, str | Iterable[str]] | Iterable[tuple[str, str]]) -> str:
    return url + _params_suffix(params)


def _params_suffix(params: Mapping[str, str | Iterable[str]] | Iterable[tuple[str, str]]) -> str:
    """The signed part after the URL: name+value, names sorted, each distinct value once, sorted."""
    grouped: dict[str, set[str]] = {}
    items = params.items() if isinstance(params, Mapping) else params
    for name, value in items:
        values = [value] if isinstance(value, str) else list(value)
        grouped.setdefault(name, set()).update(values)
    return "".join(name + value for name in sorted(grouped) for value in sorted(grouped[name]))


@lru_cache(maxsize=8)
def _decoded(body: bytes) -> tuple[tuple[tuple[str, str], ...], bool]:
    """The form pairs, and whether the body was valid UTF-8 throughout (parse requires it).

    Memoised by body so verify and parse of one request decode it once.
    """
    try:
        return tuple(_form_pairs(body.decode("utf-8"), errors="strict")), True
    except ValueError:  # UnicodeDecodeError, also for invalid UTF-8 inside %-escapes
        return tuple(_form_pairs(body.decode("utf-8", "replace"), errors="replace")), False


def _sign(key: str, data: str, digest: Any) -> str:
    mac = hmac.new(key.encode("utf-8"), data.encode("utf-8"), digest)
    return base64.b64encode(mac.digest()).decode("ascii")


def _form_pairs(text: str, *, errors: str) -> list[tuple[str, str]]:
    # keep_blank_values: an empty `Body=` is signed as "Body" + "" (PROVIDERS §1.3); dropping it
    # breaks the signature of every location or media-only WhatsApp message.
    return parse_qsl(text, keep_blank_values=True, errors=errors)


class TwilioAdapter(ChannelAdapter[TwilioSettings]):
    """SMS, MMS and WhatsApp through Twilio; incoming messages and status callbacks share the adapter."""

    key: ClassVar[str] = "twilio"
    docs_url: ClassVar[str] = "https://www.twilio.com/docs/messaging/guides/webhook-request"
    Settings: ClassVar[type[BaseModel]] = TwilioSettings
    media_sources = ("chalicelib.adapters.channels.twilio.media:TwilioMediaSource",)
    # A path, not an import: the ingest Lambda never loads the sender.
    sender: ClassVar[str | None] = "chalicelib.adapters.channels.twilio.sender:TwilioSender"
    content_types: ClassVar[tuple[str, ...]] = ("application/x-www-form-urlencoded",)

    @property
    def _auth_tokens(self) -> list[str]:
        return self.secrets.get_all(self.settings.auth_tokens)

    @property
    def _shared_keys(self) -> list[str]:
        return self.secrets.get_all(self.settings.shared_key_secrets)

    def url_for(self, hook: str | None) -> str:
        """The URL Twilio signed for this hook: the hook is a path segment, before any query string."""
        return hook_url(self.settings.public_url, hook)

    def verify(self, request: WebhookRequest) -> None:
        signature = (request.header(SIGNATURE_HEADER) or "").strip()
        if not signature:
            raise SignatureError(f"missing {SIGNATURE_HEADER} header")
        params = signed_params(request.body)
        candidates = [(token, hashlib.sha1) for token in self._auth_tokens]
        settings_header = request.header(SIGNATURE_SETTINGS_HEADER)
        if settings_header and self.settings.shared_key_secrets:
            digest = _DIGESTS.get(signature_algorithm(settings_header))
            if digest is not None:
                candidates += [(secret, digest) for secret in self._shared_keys]
        suffix = _params_suffix(params)
        expected = (_sign(secret, url + suffix, digest) for url in signed_urls(self.url_for(request.hook))
                    for secret, digest in candidates)
        if not matches_any(expected, signature):
            raise SignatureError(
                f"{SIGNATURE_HEADER} does not match: check that public_url is exactly the URL configured "
                "at Twilio and that auth_tokens holds the account's current Auth Token"
            )

    def parse(self, request: WebhookRequest) -> ParsedWebhook:
        form = _Form(request.body)
        if "MessageStatus" in form or request.hook == "status":
            return ParsedWebhook(events=[self._status(form, request)])
        return self._message(form, request)

    def ack(self, parsed: ParsedWebhook) -> WebhookResponse:
        return WebhookResponse(status=200, body=EMPTY_TWIML, content_type="text/xml")

    def simulated_request(self, customer: SimulatedCustomer) -> SimulatedRequest:
        """An SMS from `customer`'s number to the hub's sample number, signed for `public_url`
        with the first Auth Token, as Twilio posts it to `/webhooks/twilio`."""
        import uuid
        from urllib.parse import urlencode

        params = {
            "MessageSid": "SM" + uuid.uuid4().hex,
            "AccountSid": "AC" + "0" * 32,
            "From": customer.phone,
            "To": "+14155550100",
            "Body": customer.text,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsStatus": "received",
            "ApiVersion": "2010-04-01",
        }
        signature = compute_signature(self.url_for(None), params, self.secrets.get(self.settings.auth_tokens[0]))
        return SimulatedRequest(
            path=f"/webhooks/{self.key}",
            body=urlencode(params).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", SIGNATURE_HEADER: signature},
        )

    # --- parsing -------------------------------------------------------------------------------

    def _message(self, form: _Form, request: WebhookRequest) -> ParsedWebhook:
        sid, sender, account = form.required("MessageSid"), form.required("From"), form.required("To")
        prefix, colon, _ = sender.partition(":")
        channel: Channel | None = None
        if colon:
            channel = CHANNEL_PREFIXES.get(prefix.lower())
            if channel is None:
                reason = f"Twilio channel {prefix[:32]!r} is not supported yet"
                return ParsedWebhook(unhandled=[self.unhandled(reason, form.raw(), request)])

        num_media = form.count("NumMedia")
        attachments = form.attachments()
        if channel is None:
            channel = Channel.MMS if num_media or attachments else Channel.SMS

        body = form.get("Body") or None
        metadata = form.metadata()
        location = form.location()
        button_text, button_payload = form.get("ButtonText"), form.get("ButtonPayload")
        text = body
        if location is not None:
            content_type = ContentType.LOCATION
        elif button_text or button_payload:
            content_type = ContentType.INTERACTIVE
            text = button_text or body
        elif attachments:
            content_type = ContentType.MEDIA
        elif body is not None:
            content_type = ContentType.TEXT
        else:
            # Nothing we can read (a WhatsApp type Twilio passes through without a body):
            # kept raw and acknowledged so it can be inspected.
            content_type = ContentType.UNSUPPORTED

        message = InboundMessage(
            provider=self.key,
            channel=channel,
            provider_message_id=sid,
            account=account,
            # The worker normalizes: it strips `whatsapp:` and formats E.164; we keep what Twilio sent.
            sender=Sender(handles=[Handle(kind="phone", value=sender)], display_name=form.get("ProfileName") or None),
            received_at=request.received_at,
            content_type=content_type,
            text=text,
            attachments=attachments,
            location=location,
            metadata=metadata,
            conversation_key=f"twilio:{account}:{sender}",
            raw=form.raw(),
        )
        return ParsedWebhook(events=[message])

    def _status(self, form: _Form, request: WebhookRequest) -> StatusEvent:
        sid = form.required("MessageSid")
        # `SmsStatus` is the legacy name of the same value; old callbacks carry only it.
        provider_status = form.get("MessageStatus") or form.get("SmsStatus")
        if not provider_status:
            raise MalformedPayloadError("status callback without MessageStatus")
        status = STATUSES.get(provider_status.lower(), UNKNOWN)
        # WhatsApp read receipts arrive as EventType=READ.
        if (form.get("EventType") or "").upper() == "READ":
            status = "read"
        to, sender = form.get("To"), form.get("From")
        prefix = (form.get("ChannelPrefix") or "").lower()
        if not prefix:
            prefix = next((a.partition(":")[0].lower() for a in (sender, to) if a and ":" in a), "")
        channel = STATUS_CHANNELS.get(prefix) or (Channel.MMS if sid.startswith("MM") else Channel.SMS)
        error_code = form.get("ErrorCode") or None
        return StatusEvent(
            provider=self.key,
            channel=channel,
            provider_message_id=sid,
            status=status,
            # A status is about a message we sent: our number is `From`, the customer is `To`.
            account=sender or None,
            recipient=to or None,
            received_at=request.received_at,
            error_code=error_code,
            error_message=form.get("ChannelStatusMessage") or None,
            opted_out=error_code == OPTED_OUT_ERROR,
            raw=form.raw(),
        )


class _Form:
    """The strictly decoded form body, repeated names kept."""

    def __init__(self, body: bytes) -> None:
        pairs, is_utf8 = _decoded(body)
        if not is_utf8:
            raise MalformedPayloadError("body is not UTF-8 application/x-www-form-urlencoded data")
        self._values: dict[str, list[str]] = {}
        for name, value in pairs:
            self._values.setdefault(name, []).append(value)

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def get(self, name: str) -> str | None:
        values = self._values.get(name)
        return values[0] if values else None

    def required(self, name: str) -> str:
        value = self.get(name)
        if not value:
            raise MalformedPayloadError(f"missing {name}")
        return value

    def count(self, name: str) -> int:
        value = self.get(name)
        if not value:
            return 0
        if not _COUNT.fullmatch(value):
            raise MalformedPayloadError(f"{name} is not a number")
        return int(value)

    def attachments(self) -> list[Attachment]:
        # Read every MediaUrl{N} present rather than trusting NumMedia, so a disagreement
        # between the two never hides a customer's file.
        indexes = sorted(int(m[1]) for name in self._values if (m := _MEDIA_URL.fullmatch(name)))
        return [
            Attachment(url=url, content_type=self.get(f"MediaContentType{i}") or None)
            for i in indexes
            if (url := self.get(f"MediaUrl{i}"))
        ]

    def location(self) -> Location | None:
        latitude, longitude = self.get("Latitude"), self.get("Longitude")
        if not latitude or not longitude:
            return None
        return Location(
            latitude=_coordinate("Latitude", latitude, 90),
            longitude=_coordinate("Longitude", longitude, 180),
            name=self.get("Label") or None,
            address=self.get("Address") or None,
        )

    def metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {}
        for name, key in (
            ("AccountSid", "account_sid"),
            ("MessagingServiceSid", "messaging_service_sid"),
            ("MessageType", "message_type"),
            ("ButtonPayload", "button_payload"),
            ("ButtonType", "button_type"),
            ("OriginalRepliedMessageSid", "reply_to"),
            ("OriginalRepliedMessageSender", "reply_to_sender"),
        ):
            if value := self.get(name):
                metadata[key] = value
        # Advanced Opt-Out on a Messaging Service tags keyword messages STOP, START or HELP, after
        # its own keyword matching (customised per service): the consent ledger takes Twilio's word.
        # https://support.twilio.com/hc/en-us/articles/31560110671259
        if opt_out := self.get("OptOutType"):
            metadata["opt_out_type"] = opt_out.strip().lower()
        for name, key in (("Forwarded", "forwarded"), ("FrequentlyForwarded", "frequently_forwarded")):
            if (self.get(name) or "").lower() == "true":
                metadata[key] = True
        referral = {
            _snake(name[len("Referral") :]): values[0]
            for name, values in self._values.items()
            if name.startswith("Referral") and values[0] and not (name == "ReferralNumMedia" and values[0] == "0")
        }
        if referral:
            metadata["referral"] = referral
        return metadata

    def raw(self) -> dict[str, Any]:
        return {name: values[0] if len(values) == 1 else list(values) for name, values in self._values.items()}


def _coordinate(name: str, value: str, limit: float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise MalformedPayloadError(f"{name} is not a number") from None
    if not math.isfinite(number) or abs(number) > limit:
        raise MalformedPayloadError(f"{name} is out of range")
    return number


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
