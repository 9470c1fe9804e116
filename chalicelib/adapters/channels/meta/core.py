"""What the Meta products share: the app's settings, the `X-Hub-Signature-256` check, the verify-token
handshake, and the small readers both payload families use (ids that come as strings or numbers,
epoch times in seconds or milliseconds). https://developers.facebook.com/docs/graph-api/webhooks/getting-started
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chalicelib.adapters.channels.base import ParsedWebhook, WebhookRequest, WebhookResponse
from chalicelib.adapters.channels.json_body import MAX_DEPTH, TooDeepError, clean
from chalicelib.adapters.media.base import api_base_url
from chalicelib.domain.models import UnhandledEvent
from chalicelib.domain.outbound import TemplateMessage
from chalicelib.errors import ForbiddenError, MalformedPayloadError, SignatureError
from chalicelib.secrets import Secret
from chalicelib.signing.compare import hmac_sha256, matches_any, signed_by_any

SIGNATURE_HEADER = "X-Hub-Signature-256"
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
#: Meta documents the challenge as an integer; anything outside printable ASCII is not echoed.
_CHALLENGE = re.compile(r"[\x21-\x7e]{1,256}")
UNKNOWN = "unknown"
#: Ten digits reach the year 2286; more would overflow `datetime`.
_TIMESTAMP = re.compile(r"[0-9]{1,10}")
#: Messenger sends milliseconds (13 digits today); 15 digits reach the year 9999.
_EPOCH = re.compile(r"[0-9]{1,15}")

#: Keeps an item the adapter cannot read: (reason, the item, the request) → an UnhandledEvent.
KeepRaw = Callable[[str, Any, WebhookRequest], UnhandledEvent]


def compute_signature(app_secret: str | bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` header value Meta sends: HMAC-SHA256 of the exact bytes, hex."""
    return "sha256=" + hmac_sha256(app_secret, body).hex()


#: Graph object ids (phone number ids, Page ids, Instagram account ids) are numeric.
_GRAPH_ID = re.compile(r"[0-9]{1,32}")


def _tokens(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _graph_ids(ids: dict[str, Any], where: str) -> None:
    for key in ids:
        if not _GRAPH_ID.fullmatch(key):
            raise ValueError(f"{where}: {key[:40]!r} is not a numeric Graph id")


class WhatsAppTemplate(BaseModel):
    """One approved WhatsApp template, as `channels.meta.templates.<name>`: the languages it was
    approved in, and how many positional body parameters ({{1}}, {{2}}…) it takes."""

    model_config = ConfigDict(extra="forbid")

    languages: list[str] = Field(min_length=1)
    parameters: int = Field(default=0, ge=0, le=100)


class WhatsAppNumber(BaseModel):
    """One business phone number the hub sends from, keyed by its phone number id."""

    model_config = ConfigDict(extra="forbid")

    #: This number's own system-user tokens, when another business owns it (else `whatsapp.access_tokens`).
    access_tokens: list[Secret] | None = None
    #: Sent instead of free text outside the 24-hour window (else `whatsapp.fallback_template`).
    fallback_template: TemplateMessage | None = None

    _one_or_many = field_validator("access_tokens", mode="before")(_tokens)


class WhatsAppSending(BaseModel):
    """`channels.meta.whatsapp`: sending through the Cloud API."""

    model_config = ConfigDict(extra="forbid")

    #: System-user access tokens with `whatsapp_business_messaging`; the first Graph accepts is
    #: used, so a new token is added before the old one is revoked.
    access_tokens: list[Secret] = Field(min_length=1)
    #: Phone number ids the hub may send from (the inbound `account`), each with its options.
    numbers: dict[str, WhatsAppNumber] = Field(min_length=1)
    #: The number a message goes out from when no reply target names one (default: the only number).
    default_number: str | None = None
    fallback_template: TemplateMessage | None = None
    #: Ask WhatsApp for a link preview when the text holds a URL.
    preview_urls: bool = True

    _one_or_many = field_validator("access_tokens", mode="before")(_tokens)

    @model_validator(mode="after")
    def _known_numbers(self) -> WhatsAppSending:
        _graph_ids(self.numbers, "whatsapp.numbers")
        if self.default_number is not None and self.default_number not in self.numbers:
            raise ValueError("whatsapp.default_number must be one of whatsapp.numbers")
        return self

    def number_default(self) -> str | None:
        return self.default_number or (next(iter(self.numbers)) if len(self.numbers) == 1 else None)


class MessagingAccount(BaseModel):
    """A Facebook Page (`pages`) or an Instagram professional account (`instagram`) the hub answers from."""

    model_config = ConfigDict(extra="forbid")

    #: Page access tokens (for Instagram without `page_id`: Instagram user access tokens), rotation list.
    access_tokens: list[Secret] = Field(min_length=1)
    #: Instagram only: the linked Facebook Page whose `/messages` endpoint sends on graph.facebook.com.
    #: Without it, the Instagram API with Instagram Login is used (graph.instagram.com/<IG id>/messages).
    page_id: str | None = Field(default=None, pattern=r"^[0-9]{1,32}$")
    #: Human agents may answer up to 7 days after the customer's last message with the
    #: `HUMAN_AGENT` tag; needs Meta's Human Agent permission (App Review), so off by default.
    human_agent: bool = False
    #: Quote the customer's message (`reply_to.mid`). Listed by Meta's SDK spec, not described in
    #: the Send API pages read (docs/channels/meta.md), so off by default.
    reply_to: bool = False

    _one_or_many = field_validator("access_tokens", mode="before")(_tokens)


class MetaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: App Secret(s) from App Dashboard → App settings → Basic; the new one first while rotating.
    app_secrets: list[Secret] = Field(min_length=1)
    #: Verify token(s) typed into the webhook configuration; only the GET handshake uses them.
    verify_tokens: list[Secret] = Field(min_length=1)

    # --- outbound (all optional: a receive-only configuration stays valid) ------------------------
    #: Graph API host for WhatsApp, Messenger and Instagram-through-a-Page sends.
    api_base_url: str = "https://graph.facebook.com"
    #: Host of the Instagram API with Instagram Login (Instagram accounts without `page_id`).
    instagram_api_base_url: str = "https://graph.instagram.com"
    graph_version: str = "v23.0"
    #: Approved WhatsApp templates by name (`channels.meta.templates`).
    templates: dict[str, WhatsAppTemplate] = Field(default_factory=dict)
    whatsapp: WhatsAppSending | None = None
    #: Facebook Pages by Page id.
    pages: dict[str, MessagingAccount] = Field(default_factory=dict)
    #: Instagram professional accounts by their id (the inbound `entry.id`).
    instagram: dict[str, MessagingAccount] = Field(default_factory=dict)

    @field_validator("api_base_url", "instagram_api_base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        return api_base_url(value, example="https://graph.facebook.com")

    @field_validator("graph_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not re.fullmatch(r"v[0-9]{1,3}\.[0-9]{1,2}", value):
            raise ValueError("must look like v23.0")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MetaSettings:
        _graph_ids(self.pages, "pages")
        _graph_ids(self.instagram, "instagram")
        if self.whatsapp is not None:
            fallbacks = [("whatsapp.fallback_template", self.whatsapp.fallback_template)]
            fallbacks += [(f"whatsapp.numbers.{n}.fallback_template", number.fallback_template)
                          for n, number in self.whatsapp.numbers.items()]
            for where, template in fallbacks:
                problem = template_problem(self.templates, template) if template else None
                if problem:
                    raise ValueError(f"{where}.{problem[0]} {problem[1]}")
        return self


def template_problem(templates: dict[str, WhatsAppTemplate], template: TemplateMessage) -> tuple[str, str] | None:
    """Why `template` does not match the configured templates, as (field, message); None when it does."""
    configured = templates.get(template.name)
    if configured is None:
        return "name", f"{template.name[:64]!r} is not configured in channels.meta.templates"
    if template.language not in configured.languages:
        return "language", f"{template.language[:16]!r} is not one of the languages of template {template.name!r}"
    if len(template.parameters) != configured.parameters:
        return "parameters", (f"has {len(template.parameters)} values; template {template.name!r} "
                              f"takes {configured.parameters}")
    return None


def answer_handshake(request: WebhookRequest, verify_tokens: list[str]) -> WebhookResponse:
    """Meta's subscription check: echo `hub.challenge` only for our verify token.

    Raises `ForbiddenError` for a wrong mode or token, `MalformedPayloadError` for a missing
    or unprintable challenge once the token matched.
    """
    mode = request.query.get("hub.mode")
    token = request.query.get("hub.verify_token")
    if not mode:
        raise ForbiddenError("missing hub.mode query parameter")
    if mode != "subscribe":
        raise ForbiddenError("hub.mode must be 'subscribe'")
    if not token:
        raise ForbiddenError("missing hub.verify_token query parameter")
    if not matches_any(verify_tokens, token):
        raise ForbiddenError("hub.verify_token does not match any configured verify_tokens")
    challenge = request.query.get("hub.challenge")
    if not challenge:
        raise MalformedPayloadError("missing hub.challenge query parameter")
    if not _CHALLENGE.fullmatch(challenge):
        raise MalformedPayloadError("hub.challenge must be 1-256 printable ASCII characters")
    return WebhookResponse(status=200, body=challenge, content_type="text/plain")


def verify_signature(request: WebhookRequest, app_secrets: list[str]) -> None:
    """Raises `SignatureError` unless one of `app_secrets` signed the exact body."""
    header = (request.header(SIGNATURE_HEADER) or "").strip()
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    match = _SIGNATURE.fullmatch(header)
    if match is None:
        raise SignatureError(f"{SIGNATURE_HEADER} must be 'sha256=' followed by 64 hex digits")
    # Over the raw bytes: Meta signs its \u-escaped JSON, so any re-serialization breaks it.
    if not signed_by_any(lambda secret: compute_signature(secret, request.body), app_secrets, "sha256=" + match[1].lower()):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the body for any configured app_secrets")


class Skip(Exception):
    """One item is deliberately not an event (our own echo, an unsent message); its reason goes
    to `ParsedWebhook.ignored`."""


class Unreadable(Exception):
    """One item is not one this adapter can read; it is kept raw (`ParsedWebhook.unhandled`)."""


def collect(parsed: ParsedWebhook, at: str, item: Any, request: WebhookRequest, keep_raw: KeepRaw,
            build: Callable[[], Any]) -> None:
    """Run `build` for one item, so one bad item never drops the others: its events join
    `parsed`, a skipped item is noted as ignored, an unreadable one is kept raw."""
    try:
        events = build()
        parsed.events.extend(events if isinstance(events, list) else [events])
    except Unreadable as unreadable:
        parsed.unhandled.append(keep_raw(f"{at}: {unreadable}", item, request))
    except Skip as skip:
        parsed.ignored.append(f"{at}: {skip}")
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors(include_input=False))
        parsed.unhandled.append(keep_raw(f"{at}: invalid {fields}", item, request))


def cleaned(value: Any) -> Any:
    """`json_body.clean`, an item too deep to queue being one this adapter cannot read."""
    try:
        return clean(value)
    except TooDeepError as exc:
        raise Unreadable(str(exc)) from None


def as_is(value: Any) -> Any:
    return value


#: A JSON escape of a UTF-16 surrogate (`\ud800` to `\udfff`, any case). Strict UTF-8 cannot carry a
#: surrogate, so such an escape is the only way one reaches a parsed body.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def cleaner(body: bytes) -> Callable[[Any], Any]:
    """`cleaned` when anything parsed from `body` could need it, else `as_is`: a body without a
    surrogate escape holds no lone surrogate, and one with at most `MAX_DEPTH` brackets in all
    nests no value deeper than that. Walking and copying every item was a third of the parse of
    a typical webhook, for bodies that almost never need it."""
    if _SURROGATE_ESCAPE.search(body) is None and body.count(b"{") + body.count(b"[") <= MAX_DEPTH:
        return as_is
    return cleaned


def millis(value: Any) -> datetime | None:
    """Messenger times are integers of milliseconds; seconds (10 digits) are read as seconds."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not _EPOCH.fullmatch(text):
        return None
    number = int(text)
    try:
        return datetime.fromtimestamp(number / 1000 if number >= 10**11 else number, tz=timezone.utc)
    except (OverflowError, ValueError, OSError):
        return None


def seconds(value: Any) -> datetime | None:
    """WhatsApp timestamps are strings of unix seconds."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not _TIMESTAMP.fullmatch(text):
        return None
    return datetime.fromtimestamp(int(text), tz=timezone.utc)


def coordinate(value: Any, limit: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and abs(number) <= limit else None
