"""Queue workers: the process and deliver steps, for SQS (Lambda) and the local queue alike.

Chalice's `on_sqs_message` cannot report partial batch failures, so `sqs_batch` deletes the
messages it finished and raises only if some did not: the finished ones never redo their external
effects, and only the unfinished ones return to the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from chalicelib.adapters.queue.base import Queue, ReceivedMessage
from chalicelib.bootstrap import get_hub
from chalicelib.errors import BatchIncompleteError
from chalicelib.observability import set_correlation_id
from chalicelib.service.batch import BatchOutcome, run_batch, settle

logger = logging.getLogger(__name__)

#: Worst case for one message, kept free of the Lambda timeout before starting the next one:
#: processing is a handful of store calls; a delivery may retry inline against a slow vendor.
PROCESS_RESERVE_SECONDS = 5.0
DELIVER_RESERVE_SECONDS = 50.0
#: Reading and parsing one stored email (up to 40 MB) and one enqueue.
SES_INBOUND_RESERVE_SECONDS = 10.0

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
}
_DELIVER_METRICS = {
    "delivered": "Delivered",
    "already_delivered": "DuplicatesDropped",
    "dead": "DeliveriesDead",
    "erased": "DeliveriesDroppedForErasure",
}


def process_inbound(message: ReceivedMessage) -> str:
    hub = get_hub()
    set_correlation_id(message.message_id)

    def process(body: str) -> str:
        result = hub.processor.process_body(body, receive_count=message.receive_count,
                                            seconds_left=message.seconds_left)
        for destination in result.destinations:
            hub.counters.incr("DeliveriesQueued", destination=destination)
        return result.outcome

    outcome = _handle_once(hub.inbound_queue, message, process, handled_before="duplicate")
    hub.counters.incr(_PROCESS_METRICS[outcome], stage="process")
    return outcome


def deliver(message: ReceivedMessage) -> str:
    hub = get_hub()
    set_correlation_id(message.message_id)
    outcome = _handle_once(
        hub.delivery_queue, message,
        lambda body: hub.deliverer.deliver_body(body, receive_count=message.receive_count),
        handled_before="already_delivered",
    )
    hub.counters.incr(_DELIVER_METRICS[outcome], stage="deliver")
    return outcome


def _handle_once(queue: Queue, message: ReceivedMessage, handle: Callable[[str], str], *, handled_before: str) -> str:
    """`handle` on the message's real body, then its claim-checked copy released (customer data
    must not outlive the message). A message whose copy is already gone was handled before and
    its acknowledgement lost: `handled_before`, without handling it again."""
    body = queue.resolve_body(message.body)
    if body is None:
        return handled_before
    outcome = handle(body)
    queue.release(message.body)
    return outcome


def ses_inbound(message: ReceivedMessage) -> str:
    """One S3 event notification from the ses-inbound queue: the mail SES stored in the bucket
    (`ses-inbound/`) becomes messages on the inbound queue. Each notification stands alone, so
    one that cannot be read never holds back the mail in the others of its batch."""
    from chalicelib.adapters.channels.ses_s3 import handle_s3_notification
    from chalicelib.errors import ConfigError
    from chalicelib.service.ingest import enqueue

    hub = get_hub()
    set_correlation_id(message.message_id)
    adapter = hub.adapter("ses")
    if adapter is None:
        # Not acknowledged: the mail stays queued (then in the DLQ) until the channel is configured.
        raise ConfigError("mail arrived in the bucket, but the ses channel is not configured (channels.ses)")
    result = handle_s3_notification(
        message.body, s3_client=hub.aws_client("s3"), adapter=adapter,
        ingest=lambda events: enqueue(hub.inbound_queue, events),
    )
    hub.counters.incr("EventsEnqueued", result.enqueued, provider="ses")
    if result.ignored:
        hub.counters.incr("EventsIgnored", len(result.ignored), provider="ses")
    if result.unhandled:
        hub.counters.incr("EventsUnhandled", len(result.unhandled), provider="ses")
    return "ses_notification"


def sqs_batch(event, queue: Queue, handle, *, reserve_seconds: float) -> BatchOutcome:
    """Run a Chalice `SQSEvent` through `handle`; raise `BatchIncompleteError` if any failed."""
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
    hub = get_hub()
    hub.annotate(queue=queue.name, batch_size=str(len(messages)))
    outcome = run_batch(messages, handle, seconds_left=seconds_left, reserve_seconds=reserve_seconds)
    hub.counters.flush()
    if not outcome.complete:
        settle(queue, outcome)
        raise BatchIncompleteError(f"{len(outcome.retry)} of {len(messages)} messages return to the queue")
    return outcome


def _seconds_left(event):
    context = getattr(event, "context", None)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return (lambda: remaining() / 1000.0) if callable(remaining) else None


def poll(queue: Queue, handle, *, max_messages: int = 10, wait_seconds: float = 1.0) -> BatchOutcome:
    """One receive-process-settle cycle on a local queue (the embedded runtime's worker loop)."""
    messages = queue.receive(max_messages=max_messages, wait_seconds=wait_seconds)
    outcome = run_batch(messages, handle)
    settle(queue, outcome)
    return outcome
