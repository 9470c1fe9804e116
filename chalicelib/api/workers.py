"""Queue workers: process, deliver, send, business events and the providers' pull entries, for
SQS (Lambda) and the local queue alike.

`Workers` is built by the composition root with its queues and services; app.py's SQS handlers
and the embedded runtime's threads only hand it messages. Chalice's `on_sqs_message` cannot
report partial batch failures, so `consume` deletes the messages it finished and raises only if
some did not: the finished ones never redo their external effects, and only the unfinished ones
return to the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from chalicelib.adapters.channels.base import ChannelAdapter, PullEntry
from chalicelib.adapters.queue.base import Queue, ReceivedMessage
from chalicelib.errors import BatchIncompleteError, ConfigError, QueueBodyLostError
from chalicelib.observability import Counters
from chalicelib.service.batch import BatchOutcome, run_batch, settle
from chalicelib.service.ingest import Ingestion

logger = logging.getLogger(__name__)

#: Worst case for one message, kept free of the Lambda timeout before starting the next one:
#: processing is a handful of store calls; a delivery may retry inline against a slow vendor.
PROCESS_RESERVE_SECONDS = 5.0
DELIVER_RESERVE_SECONDS = 50.0

T = TypeVar("T")

# Keyed by the services' outcome strings (`process.Outcome`, `deliver.DeliverOutcome`), so that
# importing the app for a webhook does not import the worker services.
_PROCESS_METRICS = {
    "contact_created": "ContactsCreated",
    "duplicate": "DuplicatesDropped",
    "status_recorded": "StatusesRecorded",
    "status_duplicate": "DuplicatesDropped",
    "unhandled_recorded": "UnhandledRecorded",
    "unhandled_duplicate": "DuplicatesDropped",
    "identity_changed": "IdentitiesChanged",
    "identity_unmatched": "IdentityChangesUnmatched",
    # Callback items: the services count each outcome per destination (AgentRepliesSent,
    # CasesClosedByVendor...); here they are counted once per stage like every other item.
    **{outcome: "CallbackItemsProcessed" for outcome in (
        "agent_reply_sent", "agent_reply_refused", "agent_reply_ignored", "agent_reply_unknown_ticket",
        "ticket_state_recorded", "case_closed_by_vendor", "case_reopened_by_vendor", "ticket_state_stale",
        "ticket_state_ignored", "ticket_state_unknown_ticket")},
    "agent_reply_duplicate": "DuplicatesDropped",
}
#: A send's outcome, counted per channel provider (`MessagesSent[provider=...]`); a message sent
#: before (`already_sent`) is a `DuplicatesDropped` of the send step like every step's duplicates.
_SEND_METRICS = {
    "sent": "MessagesSent",
    "failed": "MessagesFailed",
    "dead": "MessagesDead",
    "erased": "MessagesDroppedForErasure",
}
#: A delivery's outcome, counted per destination; `already_delivered` is a `DuplicatesDropped`.
_DELIVER_METRICS = {
    "not_applicable": "DeliveriesNotApplicable",
    "delivered": "Delivered",
    "dead": "DeliveriesDead",
    "erased": "DeliveriesDroppedForErasure",
}

#: The event processor's outcomes (`service/events.EventProcessor.process_body`).
_EVENT_METRICS = {
    "event_processed": "EventsProcessed",
    "duplicate": "DuplicatesDropped",
    "fanout_page": "FanoutPages",
    "member_processed": "SegmentMembersProcessed",
    "customer_unmatched": "EventsCustomerUnmatched",
    "timer_fired": "TimersFired",
    "timer_stale": "TimersStale",
    "deferred": "NotificationsDeferred",
}


@dataclass(frozen=True)
class Consumer:
    """One queue's worker: the queue, what handles each message, and its time reserve."""

    queue: Queue
    handle: Callable[[ReceivedMessage], str]
    reserve_seconds: float


class Workers:
    """The handlers of every queue the hub consumes. Services are built on first use (`processor`
    and `deliverer` are callables), so a process that never delivers never builds a connector."""

    def __init__(
        self,
        *,
        inbound_queue: Callable[[], Queue],
        delivery_queue: Callable[[], Queue],
        processor: Callable[[], Any],
        deliverer: Callable[[], Any],
        outbound_queue: Callable[[], Queue] | None = None,
        send_worker: Callable[[], Any] | None = None,
        events_queue: Callable[[], Queue] | None = None,
        event_processor: Callable[[], Any] | None = None,
        ingestion: Callable[[], Ingestion],
        pull_queue: Callable[[str], Queue],
        adapters: Callable[[str], ChannelAdapter | None],
        pull_entries: Mapping[str, tuple[str, PullEntry]],
        counters: Counters,
        clock: Callable[[], datetime],
        annotate: Callable[..., None] = lambda **values: None,
        correlate: Callable[[str | None], None] = lambda value: None,
    ) -> None:
        self._inbound_queue = inbound_queue
        self._delivery_queue = delivery_queue
        self._processor = processor
        self._deliverer = deliverer
        self._outbound_queue = outbound_queue
        self._send_worker = send_worker
        self._events_queue = events_queue
        self._event_processor = event_processor
        self._ingestion = ingestion
        self._pull_queue = pull_queue
        self._adapters = adapters
        self._pull_entries = pull_entries
        self._counters = counters
        self._clock = clock
        self._annotate = annotate
        self._correlate = correlate

    # --- the handlers ------------------------------------------------------------------------------

    def process_inbound(self, message: ReceivedMessage) -> str:
        self._correlate(message.message_id)

        def process(body: str) -> str:
            result = self._processor().process_body(body, receive_count=message.receive_count,
                                                    seconds_left=message.seconds_left)
            for destination in result.destinations:
                self._counters.incr("DeliveriesQueued", destination=destination)
            return result.outcome

        outcome = self._handle_once(self._inbound_queue(), message, process, handled_before="duplicate")
        self._counters.incr(_PROCESS_METRICS[outcome], stage="process")
        return outcome

    def deliver(self, message: ReceivedMessage) -> str:
        """One delivery job to its destination, counted once per message by outcome and destination
        (the service answers the destination it read from the job: no second parse here)."""
        self._correlate(message.message_id)
        outcome, destination = self._handle_once(
            self._delivery_queue(), message,
            lambda body: self._deliverer().deliver_body(body, receive_count=message.receive_count),
            handled_before=("already_delivered", None),
        )
        if outcome == "already_delivered":
            self._counters.incr("DuplicatesDropped", stage="deliver")
        else:
            self._counters.incr(_DELIVER_METRICS[outcome], destination=destination)
        return outcome

    def send(self, message: ReceivedMessage) -> str:
        """One outbound message through its provider's sender, counted once per message by outcome
        and channel provider (answered by the service, which read it from the message)."""
        self._correlate(message.message_id)
        outcome, provider = self._handle_once(
            self._outbound_queue(), message,
            lambda body: self._send_worker().send_body(body, receive_count=message.receive_count),
            handled_before=("already_sent", None),
        )
        if outcome == "already_sent":
            self._counters.incr("DuplicatesDropped", stage="send")
        else:
            self._counters.incr(_SEND_METRICS[outcome], provider=provider)
        return outcome

    def process_event(self, message: ReceivedMessage) -> str:
        """One unit of the events queue (an event, a broadcast page or member, a fired timer, a
        deferred message) through the event processor, which answers an outcome string."""
        self._correlate(message.message_id)
        outcome = self._handle_once(
            self._events_queue(), message,
            lambda body: self._event_processor().process_body(body, receive_count=message.receive_count),
            handled_before="duplicate",
        )
        self._counters.incr(_EVENT_METRICS.get(outcome, "EventsProcessed"), stage="events")
        return outcome

    def pull(self, name: str, message: ReceivedMessage) -> str:
        """One announcement on pull entry `name`'s queue, through its provider's `pull`. Each
        announcement stands alone, so one that cannot be read never holds back the others."""
        self._correlate(message.message_id)
        provider, entry = self._pull_entries[name]
        adapter = self._adapters(provider)
        if adapter is None:
            # Not acknowledged: the announcement stays queued (then in the DLQ) until configured.
            raise ConfigError(f"a message arrived on the {name} queue, but channel provider {provider} is not "
                              f"configured (channels.{provider})")
        self._ingestion().pull(adapter, entry, message.body, received_at=self._clock())
        return f"{name}_announcement"

    def _handle_once(self, queue: Queue, message: ReceivedMessage, handle: Callable[[str], T], *,
                     handled_before: T) -> T:
        """`handle` on the message's real body, then its claim-checked copy released (customer
        data must not outlive the message). A message whose copy was released was handled before
        and its acknowledgement lost: `handled_before`, without handling it again. A copy that is
        gone without having been released is lost: logged, counted (QueueBodiesLost), and the
        `QueueBodyLostError` raised, so that the message goes on to its DLQ instead of vanishing."""
        try:
            body = queue.resolve_body(message.body)
        except QueueBodyLostError as exc:
            self._counters.incr("QueueBodiesLost", queue=queue.name)
            logger.error("message %s (receive %d): claim-checked body lost: %s", message.message_id,
                         message.receive_count, exc.message)
            raise
        if body is None:
            return handled_before
        outcome = handle(body)
        queue.release(message.body)
        return outcome

    # --- the queues --------------------------------------------------------------------------------

    def consumer(self, role: str) -> Consumer:
        """The worker of a queue by its role: `inbound`, `delivery`, `outbound`, `events`, or a pull
        entry's name."""
        if role == "inbound":
            return Consumer(self._inbound_queue(), self.process_inbound, PROCESS_RESERVE_SECONDS)
        if role == "delivery":
            return Consumer(self._delivery_queue(), self.deliver, DELIVER_RESERVE_SECONDS)
        if role == "outbound":
            return Consumer(self._outbound_queue(), self.send, DELIVER_RESERVE_SECONDS)
        if role == "events":
            return Consumer(self._events_queue(), self.process_event, PROCESS_RESERVE_SECONDS)
        _, entry = self._pull_entries[role]
        return Consumer(self._pull_queue(role), lambda message: self.pull(role, message), entry.reserve_seconds)

    def consume(self, role: str, event) -> BatchOutcome:
        """Run a Chalice `SQSEvent` of `role`'s queue; raise `BatchIncompleteError` if any failed."""
        consumer = self.consumer(role)
        seconds_left = _seconds_left(event)
        messages = []
        for record in event:
            raw = record.to_dict()
            attributes = raw.get("attributes") or {}
            messages.append(
                ReceivedMessage(
                    message_id=raw.get("messageId", ""),
                    body=record.body,
                    receipt=record.receipt_handle,
                    receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
                    group=attributes.get("MessageGroupId"),
                    seconds_left=seconds_left,
                )
            )
        self._annotate(queue=consumer.queue.name, batch_size=str(len(messages)))
        outcome = run_batch(messages, consumer.handle, seconds_left=seconds_left,
                            reserve_seconds=consumer.reserve_seconds)
        self._counters.flush()
        if not outcome.complete:
            settle(consumer.queue, outcome)
            raise BatchIncompleteError(f"{len(outcome.retry)} of {len(messages)} messages return to the queue")
        return outcome

    def poll(self, role: str, *, max_messages: int = 10, wait_seconds: float = 1.0) -> BatchOutcome:
        """One receive-process-settle cycle on a local queue (the embedded runtime's worker loop)."""
        consumer = self.consumer(role)
        messages = consumer.queue.receive(max_messages=max_messages, wait_seconds=wait_seconds)
        outcome = run_batch(messages, consumer.handle)
        settle(consumer.queue, outcome)
        return outcome


def _seconds_left(event):
    context = getattr(event, "context", None)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return (lambda: remaining() / 1000.0) if callable(remaining) else None
