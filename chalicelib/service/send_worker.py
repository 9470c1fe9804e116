"""The `send` worker: one queued message, one provider call, its outcome on the outbound contact.

The delivery pipeline's guarantees, for messages: retries inside the invocation (tenacity,
honouring `Retry-After` up to `delivery.max_inline_wait_seconds`), then queue redelivery on the
growing schedule, then the dead letters (`kind: message`, replayable) with the message marked
`failed`. A circuit breaker per provider account keeps a failing provider from being hammered.

Exactly once, as far as a provider allows: the outbound contact records the provider's answer, so
a redelivered message that was already sent is acknowledged without a call; and the message id
is every provider's idempotency key, so a crash between the provider's answer and that record
sends nothing twice where the provider takes one (docs/channels/<provider>.md say which do).

Calls per message: `get_contact`, the provider call, `record_sent`; then, only when destinations
take message events, the reads their jobs need and one queue send.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from chalicelib.adapters.channels.sending import ChannelSender
from chalicelib.adapters.queue.base import OutgoingMessage, Queue
from chalicelib.adapters.store.base import Store
from chalicelib.domain.models import Contact, DeadLetter, OutboundStatus, StatusChange
from chalicelib.domain.outbound import OutboundMessage, SendOutcome, advance
from chalicelib.errors import (
    ItemTooLargeError,
    OutsideServiceWindowError,
    PermanentDeliveryError,
    RecipientOptedOutError,
    RetryableDeliveryError,
    RetryLaterError,
    StoreRejectedError,
)
from chalicelib.hubconfig import DeliverySettings
from chalicelib.service.breaker import CircuitBreakers
from chalicelib.service.deliver import (
    MAX_DELAY_SECONDS,
    inline_retries,
    redelivery_delay,
    tries_of,
    watched,
)

logger = logging.getLogger(__name__)

#: Dead letters of messages are listed beside the deliveries' under this destination name.
MESSAGE_DEAD_LETTER_DESTINATION = "outbound"


class SendResult:
    SENT = "sent"
    ALREADY_SENT = "already_sent"
    #: The provider refused the message for good (opted out, window closed, invalid recipient).
    FAILED = "failed"
    DEAD = "dead"
    #: The contact is gone: the customer was erased after the message was queued.
    ERASED = "erased"


@dataclass
class SendWorker:
    store: Store
    senders: Callable[[str], ChannelSender | None]
    dead_letters: Queue
    settings: DeliverySettings
    clock: Callable[[], datetime]
    #: Called with the updated contact after the provider accepted or refused it for good:
    #: queues `message.sent` for the destinations that take it, records opt-outs.
    on_sent: Callable[[Contact, OutboundMessage], None] = lambda contact, message: None
    on_refused: Callable[[Contact, OutboundMessage, PermanentDeliveryError], None] = lambda c, m, e: None
    sleep: Callable[[float], None] = time.sleep
    breakers: CircuitBreakers = field(default_factory=CircuitBreakers)

    def send_body(self, body: str, *, receive_count: int) -> tuple[str, str]:
        """`send` on a queued message: its `SendResult` and the channel provider it was for (the
        worker counts outcomes per provider without parsing the message again)."""
        message = OutboundMessage.model_validate_json(body)
        return self.send(message, receive_count=receive_count), message.provider

    def send(self, message: OutboundMessage, *, receive_count: int) -> str:
        """Send one message. Returns a `SendResult`; raises `RetryLaterError` to be redelivered
        after a delay, and the store's `TransientError`s."""
        contact = self.store.get_contact(message.id)
        if contact is None:
            return SendResult.ERASED
        if contact.status != OutboundStatus.QUEUED:
            return SendResult.ALREADY_SENT
        sender = self.senders(message.provider)
        if sender is None:
            return self._dead(message, contact, 0, f"channel provider {message.provider} has no sending "
                                                   f"configuration (channels.{message.provider})")
        circuit = f"{message.provider}:{message.account}"
        wait = self.breakers.wait_seconds(circuit)
        if wait is not None:
            if receive_count >= self.settings.max_receives:
                return self._dead(message, contact, receive_count,
                                  f"{message.provider} stayed unavailable (circuit open) through {receive_count} "
                                  "receives; replay it when the provider is back")
            raise RetryLaterError(f"circuit open for {circuit}", delay_seconds=math.ceil(min(max(wait, 1), MAX_DELAY_SECONDS)))
        retrying = inline_retries(self.breakers, circuit, self.settings, self.sleep)
        try:
            outcome: SendOutcome = retrying(watched(sender.send, self.breakers, circuit, self.settings), message)
        except (RecipientOptedOutError, OutsideServiceWindowError) as exc:
            # A decision about this customer, not a fault: replaying cannot help.
            failed = self._failed(contact, exc)
            self.store.record_sent(failed)
            self.on_refused(failed, message, exc)
            return SendResult.FAILED
        except PermanentDeliveryError as exc:
            failed = self._failed(contact, exc)
            self.on_refused(failed, message, exc)
            return self._dead(message, failed, receive_count, exc.message, announced=True)
        except RetryableDeliveryError as exc:
            if receive_count >= self.settings.max_receives:
                return self._dead(message, contact, receive_count,
                                  f"gave up after {receive_count} receives: {exc.message}")
            delay = redelivery_delay(exc.retry_after, receive_count)
            if (open_for := self.breakers.remaining(circuit)) is not None:
                delay = math.ceil(min(max(open_for, 1), MAX_DELAY_SECONDS))
            raise RetryLaterError(f"sending {message.id} will be retried", delay_seconds=delay) from None
        sent = self._sent(contact, outcome, tries_of(retrying))
        if outcome.thread_keys:
            # Keys only the provider's answer told (SES's Message-ID) join the same write.
            self.store.record_sent(sent, thread_keys=outcome.thread_keys)
        else:
            self.store.record_sent(sent)
        self.on_sent(sent, message)
        return SendResult.SENT

    # --- outcomes on the contact -------------------------------------------------------------------------

    def _sent(self, contact: Contact, outcome: SendOutcome, attempts: int) -> Contact:
        now = self.clock()
        history = [*contact.status_history, StatusChange(at=now, status=OutboundStatus.SENT, source=contact.provider)]
        if outcome.status not in (OutboundStatus.SENT, OutboundStatus.QUEUED):
            history.append(StatusChange(at=now, status=outcome.status, source=contact.provider))
        metadata = {**contact.metadata, **outcome.metadata, "attempts": attempts}
        return contact.model_copy(update={
            "provider_message_id": outcome.provider_message_id, "sent_at": now, "metadata": metadata,
            "status": advance(contact.status, outcome.status if outcome.status != OutboundStatus.QUEUED
                              else OutboundStatus.SENT),
            "status_history": history,
        })

    def _failed(self, contact: Contact, exc: PermanentDeliveryError) -> Contact:
        change = StatusChange(at=self.clock(), status=OutboundStatus.FAILED, code=exc.provider_code or exc.code,
                              reason=exc.message[:500], source=contact.provider)
        return contact.model_copy(update={"status": advance(contact.status, OutboundStatus.FAILED),
                                          "status_history": [*contact.status_history, change]})

    def _dead(self, message: OutboundMessage, contact: Contact, attempts: int, reason: str, *,
              announced: bool = False) -> str:
        """Dead-letter queue first (alarms watch its depth), then the replayable dead letter, then
        the contact marked failed, then (unless the refusal was `announced` already) the failure
        announced like a refusal: `message.status`, and an agent's reply's failure note."""
        body = message.model_dump_json()
        self.dead_letters.send([OutgoingMessage(body=body, group=message.customer_id, dedupe_id=f"{message.id}-dead")])
        now = self.clock()
        letter = DeadLetter(
            id=f"msg_{message.id}", destination=MESSAGE_DEAD_LETTER_DESTINATION, subject_id=message.id, reason=reason,
            attempts=attempts, dead_at=now, job=body, customer_id=message.customer_id,
            expires_at=now + timedelta(days=self.settings.dead_letter_days), kind="message",
        )
        try:
            kept = self.store.put_dead_letter(letter)
        except StoreRejectedError as exc:
            refusal = "too large for the store" if isinstance(exc, ItemTooLargeError) else "refused by the store"
            reason = f"{reason} (the dead letter was {refusal}: replay it from the dead-letter queue)"
        else:
            if not kept:
                return SendResult.ERASED
        if contact.status != OutboundStatus.FAILED:
            contact = self._failed(contact, PermanentDeliveryError(reason))
        self.store.record_sent(contact)
        logger.warning("message %s via %s is dead after %d receives", message.id, message.provider, attempts)
        if not announced:
            self.on_refused(contact, message, PermanentDeliveryError(reason))
        return SendResult.DEAD
