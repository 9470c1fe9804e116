"""The exception queue: contacts a rule parked for manual handling, released with a chosen route.

Releasing queues the contact's deliveries first and takes it out of the queue after, like the
processor's fan-out-then-commit: a crash in between leaves it parked, and releasing it again
sends the same delivery ids, which the queue and the deliver worker drop as repeats.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.adapters.queue.base import Queue
from chalicelib.adapters.store.base import Store
from chalicelib.domain.ids import delivery_id
from chalicelib.domain.models import Case, Contact, DeliveryJob, Direction, Priority, RuleTrace
from chalicelib.errors import ConflictError, NotFoundError, RequestRejectedError
from chalicelib.hubconfig import HubConfig
from chalicelib.service.process import job_message

RELEASE_RULE = "exception-queue"


class Release(BaseModel):
    """The route an operator chooses for a parked contact; omitted fields keep the rules' choice."""

    model_config = ConfigDict(extra="forbid")

    queue: str | None = None
    priority: Priority | None = None
    skills: dict[str, int] | None = None
    tags: list[str] = Field(default_factory=list)
    destinations: list[str] | None = None
    #: Why, for the trace (who released it is recorded anyway).
    note: str | None = Field(default=None, max_length=500)

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        return Priority.coerce(value)


def release(store: Store, delivery_queue: Queue, config: HubConfig, contact_id: str, choice: Release, *,
            actor: str, now: datetime) -> Contact:
    """Release a parked contact with the chosen route and deliver it. Idempotent: releasing a
    contact released before returns it as it is. Raises `NotFoundError`, `RequestRejectedError`
    (unknown destination) and `ConflictError` (a contact that was never parked)."""
    contact = store.get_contact(contact_id)
    if contact is None:
        raise NotFoundError(f"no contact {contact_id}")
    if contact.routing.parked is None:
        if any(entry.rule == RELEASE_RULE for entry in contact.routing.trace):
            return contact
        raise ConflictError(f"contact {contact_id} is not in the exception queue")
    unknown = [name for name in choice.destinations or [] if config.destination(name) is None]
    if unknown:
        raise RequestRejectedError(f"no destination {unknown[0]!r}; configured: "
                                   f"{', '.join(d.name for d in config.destinations) or 'none'}")
    released = contact.model_copy(update={"routing": _released_routing(contact, choice, actor, now)})
    customer = store.get_customer(contact.customer_id)
    while customer is not None and customer.merged_into is not None:
        customer = store.get_customer(customer.merged_into)
    event = contact.direction == Direction.EVENT
    if event and not contact.case_id and customer is not None:
        # A business event filed on no case: forwarded with the placeholder case its own
        # forwarding uses (`service/event_actions.forward_jobs`).
        case = Case(id="", customer_id=customer.id, opened_at=contact.received_at,
                    last_activity_at=contact.received_at)
    else:
        case = store.get_case(contact.case_id)
    if customer is None or case is None:
        raise NotFoundError(f"the customer or case of contact {contact_id} no longer exists")
    jobs = [
        DeliveryJob(delivery_id=delivery_id(contact.id, name), destination=name, contact=released,
                    customer=customer, case=case, event_type="event.forwarded" if event else "contact.created")
        for name in released.routing.destinations
    ]
    if jobs:
        delivery_queue.send([job_message(job) for job in jobs])
    try:
        store.release_parked(released)
    except ConflictError:
        # Released concurrently: the other release's deliveries carry the same ids.
        current = store.get_contact(contact_id)
        if current is not None and current.routing.parked is None:
            return current
        raise
    return released


def _released_routing(contact: Contact, choice: Release, actor: str, now: datetime):
    routing = contact.routing
    update: dict[str, Any] = {"parked": None}
    if choice.queue is not None:
        update["queue"] = choice.queue
    if choice.priority is not None:
        update["priority"] = choice.priority
    if choice.skills is not None:
        update["skills"] = choice.skills
    if choice.destinations is not None:
        update["destinations"] = choice.destinations
    update["tags"] = [*routing.tags, *(t for t in choice.tags if t not in routing.tags)]
    what = ", ".join(f"{k} {v if not isinstance(v, Priority) else v.name.lower()}" for k, v in update.items()
                     if k in ("queue", "priority", "destinations"))
    reason = f"released by {actor} at {now.isoformat()}: was parked ({routing.parked})" + (f"; {what}" if what else "")
    if choice.note:
        reason += f"; note: {choice.note}"
    update["trace"] = [*routing.trace, RuleTrace(rule=RELEASE_RULE, matched=True, reason=reason)]
    return routing.model_copy(update=update)
