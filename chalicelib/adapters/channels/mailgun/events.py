"""Mailgun event webhooks about mail we sent: https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-payloads

Mailgun POSTs one JSON object per event, `{"signature": {timestamp, token, signature},
"event-data": {...}}`, signed like the inbound routes (HMAC-SHA256 of `timestamp + token` with
the webhook signing key). The event names the message by `event-data.message.headers.message-id`
(without angle brackets): the Message-ID our sender put in the MIME, which Mailgun keeps and
returns as the send's `id`, so statuses match `SendOutcome.provider_message_id`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from chalicelib.domain.models import Channel, StatusEvent

#: Mailgun's event → the hub's delivery vocabulary. `failed` depends on `severity` (below).
#: A complaint or an unsubscribe follows delivery: `failed` ranks below `delivered`, so the
#: message keeps its status while `opted_out` records the wish.
STATUSES: dict[str, str] = {
    "accepted": "sent",
    "delivered": "delivered",
    "opened": "read",
    "clicked": "read",
    "rejected": "failed",
    "complained": "failed",
    "unsubscribed": "failed",
}
#: Events that mean the recipient does not want our mail (consent ledger).
OPT_OUTS = {"complained": "complaint", "unsubscribed": "unsubscribed"}
#: Failures Mailgun reports because the address is on its own suppression lists: the recipient
#: unsubscribed or complained earlier (https://documentation.mailgun.com/docs/mailgun/user-manual/events/event-types).
SUPPRESSED_OPT_OUTS = frozenset({"suppress-unsubscribe", "suppress-complaint"})


class UnreadableEvent(ValueError):
    """An event the hub cannot turn into a status (kept raw as unhandled)."""


def status_event(provider: str, data: dict[str, Any], received_at: datetime) -> StatusEvent:
    """The status one `event-data` object reports. Raises `UnreadableEvent` naming what is missing."""
    name = data.get("event")
    if not isinstance(name, str):
        raise UnreadableEvent("event-data.event is missing")
    if name != "failed" and name not in STATUSES:
        raise UnreadableEvent(f"Mailgun event {name[:40]!r} is not a delivery status")
    message = data.get("message") if isinstance(data.get("message"), dict) else {}
    headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
    message_id = headers.get("message-id")
    if not isinstance(message_id, str) or not message_id.strip("<> ") or len(message_id) > 500:
        raise UnreadableEvent(f"Mailgun {name[:40]} event without event-data.message.headers.message-id")
    delivery = data.get("delivery-status") if isinstance(data.get("delivery-status"), dict) else {}
    reason = data.get("reason") if isinstance(data.get("reason"), str) else None
    error_code = error_message = None
    opted_out = False
    if name == "failed":
        # Temporary: Mailgun retries (and reports `failed`/permanent when it gives up).
        status = "failed" if data.get("severity") == "permanent" else "sending"
        error_code = reason or str(delivery.get("code") or "") or None
        error_message = delivery.get("message") or delivery.get("description")
        opted_out = reason in SUPPRESSED_OPT_OUTS
    else:
        status = STATUSES[name]
        if name in OPT_OUTS:
            error_code, opted_out = OPT_OUTS[name], True
        elif name == "rejected":
            reject = data.get("reject") if isinstance(data.get("reject"), dict) else {}
            error_code, error_message = "rejected", reject.get("reason")
    envelope = data.get("envelope") if isinstance(data.get("envelope"), dict) else {}
    recipient = data.get("recipient")
    return StatusEvent(
        provider=provider,
        channel=Channel.EMAIL,
        provider_message_id=message_id.strip().strip("<>"),
        status=status,
        account=_short(envelope.get("sender")),
        recipient=_short(recipient),
        occurred_at=_time(data.get("timestamp")),
        received_at=received_at,
        error_code=str(error_code)[:64] if error_code else None,
        error_message=str(error_message)[:500] if error_message else None,
        opted_out=opted_out,
        raw=_kept(data),
    )


def _kept(data: dict[str, Any]) -> dict[str, Any]:
    """The event without what a status does not need (the opener's IP, device and location)."""
    return {k: v for k, v in data.items() if k not in ("ip", "geolocation", "client-info", "storage")}


def _short(value: Any) -> str | None:
    return value[:320] if isinstance(value, str) and value else None


def _time(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
