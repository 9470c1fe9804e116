"""The event envelope destinations receive: `{"type", "timestamp", "data"}` (Standard Webhooks).

One builder for every connector that forwards the hub's own JSON (signed webhook, outbox,
EventBridge), so the published schema in docs/contact-event.md has one source.
"""

from __future__ import annotations

from typing import Any

from chalicelib.domain.models import CustomerEvent, DeliveryJob


def contact_event(job: DeliveryJob, *, include_raw: bool = False) -> dict[str, Any]:
    contact = job.contact.model_dump(mode="json", exclude=None if include_raw else {"raw"})
    contact.pop("deliveries", None)
    return {
        "type": job.event_type,
        "timestamp": job.contact.received_at.isoformat().replace("+00:00", "Z"),
        "data": {
            "contact": contact,
            "customer": job.customer.model_dump(mode="json"),
            "case": job.case.model_dump(mode="json"),
        },
    }


def customer_event(event: CustomerEvent) -> dict[str, Any]:
    data: dict[str, Any] = {"customer": {"id": event.customer_id}}
    if event.merge_id is not None:
        # customer.merged / customer.unmerged: `customer` is the survivor, `other_customer` the
        # customer it absorbed (or gave back); the merge's audit record is GET /v1/merges/{id}.
        data["other_customer"] = {"id": event.other_customer_id}
        data["merge"] = {"id": event.merge_id}
    return {
        "type": event.event_type,
        "timestamp": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "data": data,
    }
