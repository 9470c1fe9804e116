"""Deliver one job to its destination, exactly once from the destination's point of view.

Three layers of retry, cheapest first: tenacity inside the invocation for short blips (honouring
`Retry-After` up to a few seconds), then queue redelivery on a growing schedule (hours), then the
dead-letter queue with the reason recorded on the delivery. Permanent rejections go straight to
the dead-letter queue: resending an unchanged request the vendor refused cannot succeed.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from pydantic import TypeAdapter

from chalicelib.adapters.connectors.base import MESSAGE_UNDELIVERED, Connector, DeliveryResult
from chalicelib.adapters.queue.base import OutgoingMessage, Queue
from chalicelib.adapters.store.base import Store
from chalicelib.domain.models import (
    CustomerEvent,
    DeadLetter,
    Delivery,
    DeliveryJob,
    DeliveryStatus,
    DeliveryWork,
)
from chalicelib.errors import (
    ItemTooLargeError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    RetryLaterError,
    StoreRejectedError,
)
from chalicelib.hubconfig import DeliverySettings
from chalicelib.service.breaker import CircuitBreakers

if TYPE_CHECKING:
    from tenacity import RetryCallState, Retrying

logger = logging.getLogger(__name__)

#: Seconds before the n-th queue redelivery (by receive count). Eight receives span ≈ 6 hours,
#: above Segment's 4-hour horizon; SQS caps a single delay at 12 hours.
REDELIVERY_SCHEDULE = (30, 120, 600, 1800, 3600, 7200, 7200, 7200)
MAX_DELAY_SECONDS = 12 * 3600


class DeliverOutcome:
    DELIVERED = "delivered"
    ALREADY_DELIVERED = "already_delivered"
    DEAD = "dead"
    #: The customer was erased after the job was queued: it is dropped, and nothing is recorded.
    ERASED = "erased"
    #: A message event for a ticket connector whose case has no ticket there: nothing to append to.
    NOT_APPLICABLE = "not_applicable"


_WORK = TypeAdapter(DeliveryWork)
T = TypeVar("T")
R = TypeVar("R")
Work = DeliveryJob | CustomerEvent


@dataclass
class Deliverer:
    store: Store
    connector: Callable[[str], Connector | None]
    dead_letters: Queue
    settings: DeliverySettings
    clock: Callable[[], datetime]
    sleep: Callable[[float], None] = time.sleep
    breakers: CircuitBreakers = field(default_factory=CircuitBreakers)

    def deliver_body(self, body: str, *, receive_count: int) -> tuple[str, str]:
        """`deliver` on a queued job: its `DeliverOutcome` and the destination it was for (the
        worker counts outcomes per destination without parsing the job again)."""
        job = _WORK.validate_json(body)
        return self.deliver(job, receive_count=receive_count), job.destination

    def deliver(self, job: Work, *, receive_count: int) -> str:
        """Deliver a contact job or a customer event. Returns a `DeliverOutcome`. Raises
        `RetryLaterError` to be redelivered after a delay, and the store's `TransientError`s."""
        existing = self.store.get_delivery(_subject(job), job.destination)
        if existing is not None and existing.status == DeliveryStatus.DELIVERED:
            return DeliverOutcome.ALREADY_DELIVERED
        if isinstance(job, DeliveryJob) and self.store.is_erased(job.customer.id):
            return DeliverOutcome.ERASED
        attempts = existing.attempts if existing is not None else 0
        connector = self.connector(job.destination)
        if connector is None:
            return self._dead(job, attempts, f"destination {job.destination!r} is not configured")
        if isinstance(job, DeliveryJob):
            send = connector.deliver_failure_note if job.event_type == MESSAGE_UNDELIVERED else connector.deliver
            if connector.threads_cases:
                job = self._with_case_refs(job)
                if job.event_type.startswith("message.") and _known_ref(job) is None:
                    return DeliverOutcome.NOT_APPLICABLE
        else:
            send = connector.deliver_customer_event
        wait = self.breakers.wait_seconds(job.destination)
        if wait is not None:
            # The vendor is known to be down: wait in the queue without calling it or spending an
            # attempt. Only a job that already used every receive goes to the dead letters.
            if receive_count >= self.settings.max_receives:
                return self._dead(job, attempts, f"{job.destination} stayed unavailable (circuit open) through "
                                                 f"{receive_count} receives; replay it when the vendor is back")
            raise RetryLaterError(f"circuit open for {job.destination}",
                                  delay_seconds=math.ceil(min(max(wait, 1), MAX_DELAY_SECONDS)))
        retrying = inline_retries(self.breakers, job.destination, self.settings, self.sleep)
        try:
            result: DeliveryResult = retrying(watched(send, self.breakers, job.destination, self.settings), job)
        except PermanentDeliveryError as exc:
            return self._dead(job, attempts + tries_of(retrying), exc.message)
        except RetryableDeliveryError as exc:
            attempts += tries_of(retrying)
            if receive_count >= self.settings.max_receives:
                return self._dead(job, attempts, f"gave up after {attempts} attempts: {exc.message}")
            # The schedule steps by the receives that reached the vendor, not by every receive: a
            # job that waited out a long outage behind the open circuit spent many receives without
            # a call, and its first failure after the outage must not wait the schedule's 2 hours.
            delay = redelivery_delay(exc.retry_after, math.ceil(attempts / max(1, self.settings.attempts_per_invocation)))
            # The job that opened the circuit waits like the others: until the vendor's trial.
            if (open_for := self.breakers.remaining(job.destination)) is not None:
                delay = math.ceil(min(max(open_for, 1), MAX_DELAY_SECONDS))
            self._record(job, DeliveryStatus.RETRYING, attempts, error=exc.message)
            raise RetryLaterError(f"delivery to {job.destination} will be retried", delay_seconds=delay) from None
        if isinstance(job, DeliveryJob) and result.case_ref and _known_ref(job) != result.case_ref:
            self.store.put_case_ref(job.case.id, job.destination, result.case_ref)
        self._record(job, DeliveryStatus.DELIVERED, attempts + tries_of(retrying), external_ref=result.external_ref)
        return DeliverOutcome.DELIVERED

    def _with_case_refs(self, job: DeliveryJob) -> DeliveryJob:
        """The job with the case's current external references (one store read)."""
        stored = self.store.get_case(job.case.id)
        if stored is None or not stored.external_refs:
            return job
        return job.model_copy(update={"case": job.case.model_copy(update={"external_refs": stored.external_refs})})

    def _dead(self, job: Work, attempts: int, reason: str) -> str:
        # The job goes to the dead-letter queue first (its depth is what alarms watch), then to
        # the store's dead letters (what operators list and replay): if recording fails
        # afterwards, the message is retried and the DLQ copy is deduplicated by its id.
        body = _storable(job)
        self.dead_letters.send(
            [OutgoingMessage(body=body, group=job.destination, dedupe_id=f"{job.delivery_id}-dead")]
        )
        now = self.clock()
        letter = DeadLetter(
            id=job.delivery_id, destination=job.destination, subject_id=_subject(job), reason=reason,
            attempts=attempts, dead_at=now, job=body,
            # A contact job holds the customer's data: filed under the customer, it is erased and
            # exported with them. A customer event carries ids only (an erasure notice must
            # outlive the erasure it announces).
            customer_id=job.customer.id if isinstance(job, DeliveryJob) else None,
            expires_at=now + timedelta(days=self.settings.dead_letter_days),
        )
        try:
            kept = self.store.put_dead_letter(letter)
        except StoreRejectedError as exc:
            # Sending it again cannot help: the dead-letter queue holds the job, the delivery the reason.
            refusal = "too large for the store" if isinstance(exc, ItemTooLargeError) else "refused by the store"
            reason = f"{reason} (the dead letter was {refusal}: replay it from the dead-letter queue)"
        else:
            if not kept:
                return DeliverOutcome.ERASED  # the customer was erased while the job was in flight
        self._record(job, DeliveryStatus.DEAD, attempts, error=reason)
        # The reason can echo the vendor's response body, which may quote personal data: it is
        # stored on the delivery, not logged.
        logger.warning("delivery %s to %s is dead after %d attempts", job.delivery_id, job.destination, attempts)
        return DeliverOutcome.DEAD

    def _record(
        self, job: Work, status: DeliveryStatus, attempts: int, *, error: str | None = None,
        external_ref: str | None = None,
    ) -> None:
        now = self.clock()
        self.store.put_delivery(
            Delivery(
                id=job.delivery_id,
                contact_id=_subject(job),
                destination=job.destination,
                status=status,
                attempts=attempts,
                last_error=error,
                external_ref=external_ref,
                updated_at=now,
                delivered_at=now if status == DeliveryStatus.DELIVERED else None,
            )
        )


#: A dead letter keeps its job in one store item (DynamoDB: 400 KB); a larger job keeps all but
#: the provider's raw payload, which the contact itself still holds.
MAX_DEAD_LETTER_JOB_BYTES = 300 * 1024


def _storable(job: Work) -> str:
    body = job.model_dump_json()
    if len(body) > MAX_DEAD_LETTER_JOB_BYTES and isinstance(job, DeliveryJob):
        slim = job.contact.model_copy(update={"raw": {"$omitted": "see the contact"}})
        body = job.model_copy(update={"contact": slim}).model_dump_json()
    return body


def _subject(job: Work) -> str:
    """What a delivery record is filed under: the contact, or the customer event."""
    return job.contact.id if isinstance(job, DeliveryJob) else job.event_id


def _known_ref(job: DeliveryJob) -> str | None:
    ref = job.case.external_refs.get(job.destination)
    return ref.ref if ref is not None else None


def watched(send: Callable[[T], R], breakers: CircuitBreakers, circuit: str,
            settings: DeliverySettings) -> Callable[[T], R]:
    """`send`, with every call's outcome told to `circuit`'s breaker: a vendor that answered (even
    with a refusal) is up; a retryable failure counts against it, and a rate limit longer than the
    worker waits holds back the whole circuit."""

    def call(item: T) -> R:
        try:
            result = send(item)
        except RetryableDeliveryError as exc:
            long_wait = exc.retry_after if (exc.retry_after or 0) > settings.max_inline_wait_seconds else None
            breakers.failed(circuit, retry_after=long_wait)
            raise
        except PermanentDeliveryError:
            breakers.succeeded(circuit)
            raise
        breakers.succeeded(circuit)
        return result

    return call


def inline_retries(breakers: CircuitBreakers, circuit: str, settings: DeliverySettings,
                   sleep: Callable[[float], None]) -> Retrying:
    """The retries inside one invocation: retryable failures only, while `circuit` is closed, and
    only for a `Retry-After` short enough to wait here (longer ones are the queue's to honour)."""
    # Imported here: only the deliver and send workers retry, and the ingest path shares this
    # module's importers, so it must not pay for tenacity at cold start.
    from tenacity import Retrying, retry_if_exception, stop_after_attempt

    limit = settings.max_inline_wait_seconds

    def worth_retrying_now(exc: BaseException) -> bool:
        if not isinstance(exc, RetryableDeliveryError) or breakers.is_open(circuit):
            return False
        return exc.retry_after is None or exc.retry_after <= limit

    return Retrying(retry=retry_if_exception(worth_retrying_now), stop=stop_after_attempt(settings.attempts_per_invocation),
                    wait=inline_wait, sleep=sleep, reraise=True)


def tries_of(retrying: Retrying) -> int:
    return int(retrying.statistics.get("attempt_number", 1))


def inline_wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        return float(retry_after)
    return min(0.25 * 2 ** (state.attempt_number - 1), 2.0) * (0.5 + random.random() / 2)


def redelivery_delay(retry_after: float | None, receive_count: int) -> int:
    if retry_after is not None:
        return int(min(max(retry_after, 1), MAX_DELAY_SECONDS))
    index = min(max(receive_count, 1), len(REDELIVERY_SCHEDULE)) - 1
    return REDELIVERY_SCHEDULE[index]
