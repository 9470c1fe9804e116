"""The event envelope destinations receive: `{"type", "timestamp", "data"}` (Standard Webhooks).

One builder for every connector that forwards the hub's own JSON (signed webhook, outbox,
EventBridge), so the published schema in docs/contact-event.md has one source.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from chalicelib.domain.models import CustomerEvent, DeliveryJob

#: The events a destination receives about contacts: a customer's message, the hub's own
#: messages (sent, then each status reported), and a business event an event rule forwards.
ContactEventType = Literal["contact.created", "message.sent", "message.status", "event.forwarded"]


def contact_event(job: DeliveryJob, *, include_raw: bool = False) -> dict[str, Any]:
    contact = job.contact.model_dump(mode="json", exclude=None if include_raw else {"raw"})
    contact.pop("deliveries", None)
    return {
        "type": job.event_type,
        "timestamp": _utc(event_time(job)),
        "data": {
            "contact": contact,
            "customer": job.customer.model_dump(mode="json"),
            "case": job.case.model_dump(mode="json"),
        },
    }


def event_time(job: DeliveryJob) -> datetime:
    """When the event happened: the contact's arrival for `contact.created`; for the hub's own
    messages (`message.sent`, `message.status`) the latest status change, which is what the
    event announces (an outbound contact's `received_at` is when it was queued)."""
    history = job.contact.status_history
    if job.event_type.startswith("message.") and history:
        return max(change.at for change in history)
    return job.contact.received_at


def _utc(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def customer_event(event: CustomerEvent) -> dict[str, Any]:
    data: dict[str, Any] = {"customer": {"id": event.customer_id}}
    if event.merge_id is not None:
        # customer.merged / customer.unmerged: `customer` is the survivor, `other_customer` the
        # customer it absorbed (or gave back); the merge's audit record is GET /v1/merges/{id}.
        data["other_customer"] = {"id": event.other_customer_id}
        data["merge"] = {"id": event.merge_id}
    if event.case_id is not None:
        # case.opened / case.closed / case.reopened: the case (GET /v1/cases/{id}), why it closed,
        # and the destination whose ticket closed or reopened it.
        case: dict[str, Any] = {"id": event.case_id}
        if event.reason is not None:
            case["close_reason"] = event.reason
        if event.by_destination is not None:
            case["destination"] = event.by_destination
        data["case"] = case
    return {
        "type": event.event_type,
        "timestamp": _utc(event.occurred_at),
        "data": data,
    }
