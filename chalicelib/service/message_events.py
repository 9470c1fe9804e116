"""`message.sent` and `message.status`: what destinations hear of the hub's own messages.

Destinations declare which they take (`Connector.message_events`): generic ones (webhook,
outbox, EventBridge) both, ticket connectors `message.sent` (the reply appended to the case's
ticket as the hub's own public comment). The jobs carry the outbound contact with the customer
and case like any contact job, so connectors and consumers read one envelope; they are read only
when some destination takes the event.
"""

from __future__ import annotations

from collections.abc import Callable

from chalicelib.adapters.queue.base import Queue
from chalicelib.adapters.store.base import Store
from chalicelib.domain.ids import delivery_id
from chalicelib.domain.models import Contact, DeliveryJob

SENT = "message.sent"
STATUS = "message.status"


class MessageEvents:
    def __init__(self, store: Store, delivery_queue: Callable[[], Queue],
                 destinations: Callable[[str], list[str]]) -> None:
        self._store = store
        self._queue = delivery_queue
        self._destinations = destinations

    def publish(self, contact: Contact, event_type: str) -> list[str]:
        """Queue `event_type` for `contact` to every destination that takes it; their names."""
        names = self._destinations(event_type)
        if not names:
            return []
        customer = self._store.get_customer(contact.customer_id)
        case = self._store.get_case(contact.case_id)
        if customer is None or case is None:
            return []  # erased meanwhile: nothing is announced about it
        from chalicelib.service.process import job_message

        # One delivery per message, event and status: a redelivered status is the same job.
        subject = f"{contact.id}:{event_type}:{contact.status}"
        jobs = [DeliveryJob(delivery_id=delivery_id(subject, name), destination=name, event_type=event_type,
                            contact=contact, customer=customer, case=case) for name in names]
        self._queue().send([job_message(job) for job in jobs])
        return names
