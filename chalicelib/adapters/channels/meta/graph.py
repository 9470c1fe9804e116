"""One Graph API send for every Meta product, and what its errors mean to the hub.
https://developers.facebook.com/docs/graph-api/guides/error-handling

WhatsApp, Messenger and Instagram answer alike: `{"error": {"message", "type", "code",
"error_subcode", "error_data": {"details"}, "is_transient", "fbtrace_id"}}`, mostly with HTTP 400
whatever the cause, so the `code` decides (Meta: "build your app's error handling around error
codes instead of subcodes or HTTP response status codes").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from chalicelib.adapters.channels.sending import CredentialRefusedError, Problem, first_accepted, json_object
from chalicelib.adapters.connectors.http import RETRYABLE_STATUSES, HttpClient, retry_after_seconds
from chalicelib.adapters.media.base import host_of
from chalicelib.errors import (
    DeliveryError,
    OutsideServiceWindowError,
    PermanentDeliveryError,
    RecipientOptedOutError,
    RetryableDeliveryError,
)

#: The WhatsApp spec's `User-Agent` pattern wants `name/1.2.3`.
USER_AGENT = "omnichannel-hub/1.0.0"
#: Throttling: Graph's app (4), user (17), Page (32) and API (613) limits; WhatsApp's account
#: (80007), throughput (130429) and per-recipient pair (131056) limits. Sources: Graph rate
#: limiting; WhatsApp error codes, "Throttling errors" (docs/channels/meta.md).
THROTTLED = frozenset({4, 17, 32, 613, 80007, 130429, 131056})
#: "Temporary": Graph's unknown (1) and service (2) errors, WhatsApp's unknown error (131000,
#: "Try again"), service unavailable (131016) and account maintenance mode (131057).
TRANSIENT = frozenset({1, 2, 131000, 131016, 131057})
#: WhatsApp 131047: "More than 24 hours have passed since the recipient last replied".
WHATSAPP_WINDOW_CLOSED = 131047
#: WhatsApp 131050: "This recipient has chosen to stop receiving marketing messages ... from your business":
#: an opt-out of marketing only, service messages still reach them.
WHATSAPP_MARKETING_STOPPED = 131050
MARKETING_ONLY = ("marketing",)
#: Messenger code 10 with subcode 2018278: "This message is sent outside of allowed window";
#: 2534022 is the same refusal as Instagram integrations report it (third-party code, not in Meta's table).
MESSAGING_WINDOW_CLOSED = frozenset({2018278, 2534022})
#: "Invalid OAuth access token" (expired, revoked): the next token of the rotation list may do.
BAD_TOKEN = 190
#: How much of Graph's own message is kept in an error (never the request: it holds personal data).
MAX_REASON = 200


@dataclass(frozen=True)
class GraphError:
    """The `error` object of a Graph answer, read defensively."""

    status: int
    code: int | None = None
    subcode: int | None = None
    message: str = ""
    details: str = ""
    transient: bool = False
    trace: str | None = None

    @classmethod
    def of(cls, status: int, body: Any) -> GraphError:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return cls(status)
        data = error.get("error_data")
        details = data.get("details") if isinstance(data, dict) else None
        return cls(
            status,
            code=_int(error.get("code")),
            subcode=_int(error.get("error_subcode")),
            message=_text(error.get("message")),
            details=_text(details),
            transient=error.get("is_transient") is True,
            trace=_text(error.get("fbtrace_id")) or None,
        )

    @property
    def provider_code(self) -> str | None:
        return None if self.code is None else str(self.code)

    @property
    def bad_token(self) -> bool:
        return self.code == BAD_TOKEN or self.status == 401

    def reason(self, vendor: str) -> str:
        said = "; ".join(part for part in (self.message, self.details) if part)[:MAX_REASON]
        trace = f" (fbtrace_id {self.trace})" if self.trace else ""
        return f"{vendor} answered {self.status}" + (f": {said}" if said else "") + trace

    def detail(self) -> dict:
        return {k: v for k, v in (("status", self.status), ("code", self.code), ("subcode", self.subcode),
                                  ("fbtrace_id", self.trace)) if v is not None}


def classify(error: GraphError, headers: Mapping[str, str], vendor: str) -> DeliveryError:
    """The hub's error for a refused send: the two the hub acts on, retryable or permanent."""
    reason, detail = error.reason(vendor), error.detail()
    if error.code == WHATSAPP_WINDOW_CLOSED or (error.code == 10 and error.subcode in MESSAGING_WINDOW_CLOSED):
        return OutsideServiceWindowError(reason, provider_code=error.provider_code, detail=detail)
    if error.code == WHATSAPP_MARKETING_STOPPED:
        return RecipientOptedOutError(reason, provider_code=error.provider_code, detail=detail, purposes=MARKETING_ONLY)
    if (error.code in THROTTLED or error.code in TRANSIENT or error.transient
            or error.status in RETRYABLE_STATUSES or error.status >= 500):
        return RetryableDeliveryError(reason, retry_after=retry_after(headers), detail=detail)
    return PermanentDeliveryError(reason, provider_code=error.provider_code, detail=detail)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` when sent; else Graph's own hint, `estimated_time_to_regain_access` (minutes)
    in `X-Business-Use-Case-Usage`, the header throttled WhatsApp and Page calls carry."""
    standard = retry_after_seconds(headers)
    if standard is not None:
        return standard
    try:
        usage = json.loads(headers.get("x-business-use-case-usage") or "{}")
    except ValueError:
        return None
    minutes = [entry.get("estimated_time_to_regain_access") for entries in
               (usage.values() if isinstance(usage, dict) else []) if isinstance(entries, list)
               for entry in entries if isinstance(entry, dict)]
    longest = max((m for m in minutes if isinstance(m, (int, float)) and not isinstance(m, bool) and m > 0), default=None)
    return None if longest is None else float(longest) * 60


def post(http: HttpClient, url: str, payload: dict, tokens: list[str], *, vendor: str) -> dict:
    """POST `payload` as JSON with the first token Graph accepts, and the answer's JSON object.

    Each token is tried only after Graph refused the one before it as invalid (190/401), so the
    message is sent at most once. Raises the `DeliveryError` that `classify` picks; a 2xx answer
    that is not a JSON object is a `PermanentDeliveryError` (sending again could duplicate it).
    """
    body = json.dumps(payload, separators=(",", ":")).encode()

    def attempt(token: str) -> dict:
        response = http.request("POST", url, body=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json",
            "Accept": "application/json", "User-Agent": USER_AGENT,
        })
        if response.ok:
            answer = json_object(response.body)
            if not answer:
                raise PermanentDeliveryError(f"{vendor} accepted the send on {host_of(url)} but answered no JSON object")
            return answer
        error = GraphError.of(response.status, json_object(response.body))
        if error.bad_token:
            raise CredentialRefusedError(error.reason(vendor), provider_code=error.provider_code, detail=error.detail())
        raise classify(error, response.headers, vendor)

    return first_accepted(tokens, attempt, none_configured=f"{vendor}: no access token configured")


def url_problems(url: str, field: str) -> list[Problem]:
    """Meta fetches attachments itself: only a public http(s) URL can work."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return [Problem(field, "is not a valid URL")]
    if parts.scheme not in ("http", "https") or not host:
        return [Problem(field, "must be a public http(s) URL Meta can fetch")]
    return []


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() and len(value) < 16 else None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""
