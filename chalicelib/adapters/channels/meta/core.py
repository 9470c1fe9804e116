"""What the Meta products share: the app's settings (`settings.py`), the `X-Hub-Signature-256` check, the verify-token
handshake, and the small readers both payload families use (ids that come as strings or numbers,
epoch times in seconds or milliseconds). https://developers.facebook.com/docs/graph-api/webhooks/getting-started
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from chalicelib.adapters.channels.base import ParsedWebhook, WebhookRequest, WebhookResponse
from chalicelib.adapters.channels.json_body import MAX_DEPTH, TooDeepError, clean
from chalicelib.adapters.channels.meta.settings import (  # noqa: F401 - re-exported: the senders import them here
    MessagingAccount,
    MetaSettings,
    WhatsAppNumber,
    WhatsAppSending,
    WhatsAppTemplate,
    template_problem,
)
from chalicelib.domain.models import UnhandledEvent
from chalicelib.errors import ForbiddenError, MalformedPayloadError, SignatureError
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
