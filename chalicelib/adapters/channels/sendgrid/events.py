"""SendGrid Event Webhook about mail we sent: https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event

SendGrid POSTs a JSON array of events, signed (ECDSA P-256 over `timestamp + body`, the same
scheme as an Inbound Parse security policy: `signature.py`) with the Event Webhook's own key.

Matching: every send carries the hub's outbound id as the custom arg `hub_outbound_id`, which
SendGrid copies into every event of that message as a top-level key. It is the sender's
`provider_message_id`. Not `sg_message_id`: it starts with the send's `X-Message-Id` for most
events, but a `dropped` event's lacks that prefix (`filter0093p1las1.9128.5717FB8127.0`, as in
django-anymail's recorded events, which match by a custom arg for this reason).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from chalicelib.domain.models import Channel, StatusEvent

#: The custom arg naming the hub's outbound message (`personalizations[].custom_args`).
HUB_ARG = "hub_outbound_id"
#: SendGrid's event → the hub's delivery vocabulary. Opt-outs follow delivery: `failed` ranks
#: below `delivered`, so the message keeps its status while `opted_out` records the wish.
STATUSES: dict[str, str] = {
    "processed": "sent",
    "deferred": "sending",
    "delivered": "delivered",
    "open": "read",
    "click": "read",
    "bounce": "failed",
    "dropped": "failed",
    "spamreport": "failed",
    "unsubscribe": "failed",
    "group_unsubscribe": "failed",
}
OPT_OUTS = {"spamreport": "complaint", "unsubscribe": "unsubscribed", "group_unsubscribe": "unsubscribed"}
#: `dropped` reasons that mean the recipient is on an opt-out list (SendGrid's drop reasons:
#: https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event#dropped).
DROPPED_OPT_OUTS = frozenset({"Unsubscribed Address", "Spam Reporting Address"})
#: Kept with the status; the opener's IP and user agent are not.
_KEPT = ("event", "email", "timestamp", "sg_event_id", "sg_message_id", "smtp-id", "reason", "status", "type",
         "response", "attempt", "bounce_classification", "asm_group_id", "tls", HUB_ARG)


class UnreadableEvent(ValueError):
    """An event the hub cannot turn into a status (kept raw as unhandled)."""


def status_event(provider: str, data: dict[str, Any], received_at: datetime) -> StatusEvent:
    """The status one Event Webhook item reports. Raises `UnreadableEvent`."""
    name = data.get("event")
    if not isinstance(name, str):
        raise UnreadableEvent("event is missing")
    if name not in STATUSES:
        raise UnreadableEvent(f"SendGrid event {name[:40]!r} is not a delivery status")
    ours = data.get(HUB_ARG)
    sg_id = data.get("sg_message_id")
    if isinstance(ours, str) and ours:
        message_id = ours
    elif isinstance(sg_id, str) and sg_id:
        # Mail not sent by the hub (or before it set the custom arg): SendGrid's own id.
        message_id = sg_id.split(".", 1)[0]
    else:
        raise UnreadableEvent(f"SendGrid {name[:40]} event without {HUB_ARG} or sg_message_id")
    reason = data.get("reason") if isinstance(data.get("reason"), str) else None
    error_code = error_message = None
    opted_out = False
    if name in OPT_OUTS:
        error_code, opted_out = OPT_OUTS[name], True
    elif name == "bounce":
        error_code = str(data.get("type") or "bounce")
        error_message = reason or data.get("status")
    elif name == "dropped":
        error_code, error_message = "dropped", reason
        opted_out = reason in DROPPED_OPT_OUTS
    elif name == "deferred":
        error_code, error_message = "deferred", data.get("response")
    return StatusEvent(
        provider=provider,
        channel=Channel.EMAIL,
        provider_message_id=message_id[:200],
        status=STATUSES[name],
        recipient=data.get("email")[:320] if isinstance(data.get("email"), str) else None,
        occurred_at=_time(data.get("timestamp")),
        received_at=received_at,
        error_code=str(error_code)[:64] if error_code else None,
        error_message=str(error_message)[:500] if error_message else None,
        opted_out=opted_out,
        raw={k: data[k] for k in _KEPT if k in data},
    )


def _time(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
