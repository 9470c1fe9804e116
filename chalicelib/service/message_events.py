"""`message.sent` and `message.status`: what destinations hear of the hub's own messages.

Destinations declare which they take (`Connector.message_events`): generic ones (webhook,
outbox, EventBridge) both, ticket connectors `message.sent` (the reply appended to the case's
ticket as the hub's own public comment). The jobs carry the outbound contact with the customer
and case like any contact job, so connectors and consumers read one envelope; they are read only
when some destination takes the event.

An agent's reply from a destination's own tool (`metadata.agent_reply`) is already on that
destination's ticket: it is never appended there again as `message.sent`. If it does not reach
the customer, that destination alone gets `message.undelivered`, which its callback side turns
into an internal note on the ticket (where the vendor has them and `failure_notes` is on).
"""

from __future__ import annotations

from collections.abc import Callable

from chalicelib.adapters.queue.base import Queue
from chalicelib.adapters.store.base import Store
from chalicelib.domain.ids import delivery_id
from chalicelib.adapters.connectors.base import MESSAGE_SENT, MESSAGE_STATUS, MESSAGE_UNDELIVERED
from chalicelib.domain.models import Case, Contact, Customer, DeliveryJob, OutboundStatus

SENT = MESSAGE_SENT
STATUS = MESSAGE_STATUS
UNDELIVERED = MESSAGE_UNDELIVERED


class MessageEvents:
    def __init__(self, store: Store, delivery_queue: Callable[[], Queue],
                 destinations: Callable[[str], list[str]],
                 takes_notes: Callable[[str], bool] = lambda destination: False) -> None:
        """`destinations(event_type)`: who takes the event; `takes_notes(destination)`: whether
        a destination writes failure notes for its agents' replies."""
        self._store = store
        self._queue = delivery_queue
        self._destinations = destinations
        self._takes_notes = takes_notes

    def publish(self, contact: Contact, event_type: str, *, customer: Customer | None = None,
                case: Case | None = None) -> list[str]:
        """Queue `event_type` for `contact` to every destination that takes it, and
        `message.undelivered` to the destination an agent's failed reply came from; their names.
        The contact's customer and case are read unless the caller has them at hand."""
        origin = agent_origin(contact)
        targets = [(name, event_type) for name in self._destinations(event_type)
                   if not (event_type == SENT and name == origin)]
        if origin and contact.status == OutboundStatus.FAILED and self._takes_notes(origin):
            targets.append((origin, UNDELIVERED))
        if not targets:
            return []
        customer = customer or self._store.get_customer(contact.customer_id)
        case = case or self._store.get_case(contact.case_id)
        if customer is None or case is None:
            return []  # erased meanwhile: nothing is announced about it
        from chalicelib.service.process import job_message

        def subject(kind: str) -> str:
            # One delivery per message, event and status: a redelivered status is the same job;
            # one failure note per message, however many failure reports it gets.
            return f"{contact.id}:{kind}" if kind == UNDELIVERED else f"{contact.id}:{kind}:{contact.status}"

        jobs = [DeliveryJob(delivery_id=delivery_id(subject(kind), name), destination=name, event_type=kind,
                            contact=contact, customer=customer, case=case) for name, kind in targets]
        self._queue().send([job_message(job) for job in jobs])
        return [name for name, _ in targets]


def agent_origin(contact: Contact) -> str | None:
    """The destination whose agent wrote this outbound message in the vendor's tool, if any."""
    detail = contact.metadata.get("agent_reply")
    destination = detail.get("destination") if isinstance(detail, dict) else None
    return destination if isinstance(destination, str) and destination else None
