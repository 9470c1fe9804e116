"""Dead letters: deliveries the hub gave up on, listed and re-driven by an operator.

A replay puts the job back on the delivery queue unchanged: the same delivery id, so the vendor
sees the same idempotency key or external id, and the deliver worker skips it when an earlier
attempt got through after all (its delivery record says delivered). Replaying never duplicates
what the vendor already accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from pydantic import TypeAdapter

from chalicelib.adapters.queue.base import OutgoingMessage, Queue
from chalicelib.adapters.store.base import Store
from chalicelib.domain.ids import group_id
from chalicelib.domain.models import DeadLetter, DeliveryJob, DeliveryWork
from chalicelib.errors import NotFoundError

_WORK = TypeAdapter(DeliveryWork)
_PAGE = 100


#: The outbound queue, built only when a message is replayed: a hub (or stage) without one still
#: replays its deliveries.
OutboundQueue = Callable[[], Queue | None]


def replay(store: Store, delivery_queue: Queue, letter_id: str, *, now: datetime,
           outbound_queue: OutboundQueue = lambda: None) -> DeadLetter:
    """Queue one dead letter again and forget it. Raises `NotFoundError`, and the outbound
    queue's `ConfigError` only for a message's letter."""
    letter = store.get_dead_letter(letter_id)
    if letter is None:
        raise NotFoundError(f"no dead letter {letter_id}")
    if letter.kind == "message":
        return _replay_message(store, outbound_queue, letter, now=now)
    job = _WORK.validate_json(letter.job)
    customer_id = job.customer.id if isinstance(job, DeliveryJob) else job.customer_id
    delivery_queue.send([OutgoingMessage(
        body=letter.job,
        # The group the original job had: the replay is ordered with the customer's other jobs.
        group=group_id(f"{letter.destination}:{customer_id}"),
        # A fresh dedupe id, so a second replay (after the queue's dedupe window) is not dropped.
        dedupe_id=f"{letter.id}-replay-{int(now.timestamp())}",
    )])
    store.delete_dead_letter(letter.id)
    return letter


def replay_destination(store: Store, delivery_queue: Queue, destination: str, *, now: datetime,
                       limit: int | None = None, outbound_queue: OutboundQueue = lambda: None) -> list[DeadLetter]:
    """Replay every dead letter of a destination (at most `limit`), oldest id first."""
    replayed: list[DeadLetter] = []
    while limit is None or len(replayed) < limit:
        page = store.list_dead_letters(destination=destination, limit=_PAGE)
        if not page.items:
            break
        for letter in page.items:
            if limit is not None and len(replayed) >= limit:
                break
            replayed.append(replay(store, delivery_queue, letter.id, now=now, outbound_queue=outbound_queue))
    return replayed


def _replay_message(store: Store, outbound_queue: OutboundQueue, letter: DeadLetter, *, now: datetime) -> DeadLetter:
    """An outbound message back on the outbound queue, its contact `queued` again (the history
    keeps the failure): the provider sees the same idempotency key."""
    from chalicelib.domain.models import OutboundStatus, StatusChange
    from chalicelib.domain.outbound import OutboundMessage
    from chalicelib.service.messages import queued

    queue = outbound_queue()
    if queue is None:
        raise NotFoundError(f"dead letter {letter.id} is a message, and this hub has no outbound queue")
    message = OutboundMessage.model_validate_json(letter.job)
    contact = store.get_contact(message.id)
    if contact is None:
        raise NotFoundError(f"the message of dead letter {letter.id} was erased")
    requeued = StatusChange(at=now, status=OutboundStatus.QUEUED, reason=f"replayed from dead letter {letter.id}")
    store.record_sent(contact.model_copy(update={"status": OutboundStatus.QUEUED,
                                                 "status_history": [*contact.status_history, requeued]}))
    outgoing = queued(message)
    queue.send([OutgoingMessage(body=outgoing.body, group=outgoing.group,
                            dedupe_id=f"{letter.id}-replay-{int(now.timestamp())}")])
    store.delete_dead_letter(letter.id)
    return letter


#: What a dead letter holds: a contact's delivery, a customer event's delivery, or an outbound
#: message the send worker gave up on.
DEAD_LETTER_KINDS = ("contact", "customer_event", "message")


def letter_kind(letter: DeadLetter) -> str:
    """One of `DEAD_LETTER_KINDS`: a message's letter says so; a delivery's job carries its own
    discriminator (`DeliveryWork`), read here without validating the whole job, since a kind
    filter reads hundreds of letters per call. A job that does not say is a contact's (the
    default of `DeliveryJob.kind`)."""
    if letter.kind is not None:
        return letter.kind
    try:
        job = json.loads(letter.job)
    except ValueError:
        return "contact"
    kind = job.get("kind") if isinstance(job, dict) else None
    return kind if kind in DEAD_LETTER_KINDS else "contact"


def summary(letter: DeadLetter) -> dict:
    """A dead letter as the API lists it: everything but the job body, with its kind."""
    return {**letter.model_dump(mode="json", exclude={"job"}), "kind": letter_kind(letter)}
