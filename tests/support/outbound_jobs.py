"""Delivery jobs for the hub's outbound messages (`message.sent`, `message.status`), as the
deliverer queues them: the outbound contact (direction outbound, with its status history and the
send's metadata), the customer and the case, with the case's ticket when a destination has one."""

from __future__ import annotations

from datetime import datetime, timezone

from chalicelib.domain.models import DeliveryJob, Direction, ExternalRef, OutboundStatus, StatusChange
from tests.support.fakes import sample_job

OUTBOUND_ID = "ct_01JD0000000000000000000099"
REPLY = "Hallo Jana, die Störung ist behoben. Bitte starten Sie den Router neu."
SENT_AT = datetime(2026, 11, 23, 9, 5, tzinfo=timezone.utc)


def outbound_job(destination: str, *, ticket: str | None = None, event_type: str = "message.sent",
                 contact_id: str = OUTBOUND_ID, text: str | None = REPLY, status: OutboundStatus = OutboundStatus.SENT,
                 **contact) -> DeliveryJob:
    """The job for an answer the hub sent on WhatsApp through Meta; `ticket` is the case's
    reference at `destination` (what its first contact created)."""
    base = sample_job(destination=destination)
    history = [StatusChange(at=SENT_AT, status=OutboundStatus.QUEUED)]
    if status is not OutboundStatus.QUEUED:
        history.append(StatusChange(at=SENT_AT, status=status, source="meta" if status is not OutboundStatus.SENT else "hub"))
    outbound = base.contact.model_copy(update={
        "id": contact_id, "direction": Direction.OUTBOUND, "provider_message_id": f"wamid.{contact_id}",
        "received_at": SENT_AT, "sent_at": SENT_AT, "text": text, "status": status, "status_history": history,
        "metadata": {"origin": "api:support-desk"}, "case_reason": None, **contact,
    })
    case = base.case
    if ticket is not None:
        case = case.model_copy(update={"external_refs": {destination: ExternalRef(destination=destination, ref=ticket)}})
    return DeliveryJob(delivery_id=f"dlv_{contact_id}_{event_type}", destination=destination, event_type=event_type,
                       contact=outbound, customer=base.customer, case=case)
