"""Run a batch of queue messages through a handler, isolating failures.

Shared by the SQS handlers and the local workers. A failure in one message never makes its
batch-mates redo their effects: finished messages are deleted individually, and only the failed
ones (plus later messages of the same FIFO group, which must wait for them) go back to the queue.

A message the batch never tried (the invocation ran short of time, or an earlier message of its
group failed) is made visible again at once: it must not sit out the visibility timeout holding a
receive it never used. That keeps FIFO order: SQS FIFO, like the local queue, hands out no message
of a group while an earlier one of it is in flight, so a later message still waits for a failed
one. Receives are spent all the same, which is why every queue's maxReceiveCount leaves room for
them (infra/stateful.yaml).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from chalicelib.adapters.queue.base import Queue, ReceivedMessage
from chalicelib.errors import ConcurrentUpdateError, HubError, RetryLaterError

logger = logging.getLogger(__name__)

#: When a concurrent worker keeps winning the commit of the same record, look again shortly.
BUSY_RETRY_SECONDS = 15
#: The delay of a message the batch did not try: none.
UNTRIED_DELAY_SECONDS = 0


@dataclass
class BatchOutcome:
    finished: list[str] = field(default_factory=list)
    #: receipt → seconds until the message should be visible again (None: the queue's default).
    retry: dict[str, int | None] = field(default_factory=dict)
    #: message id → what the handler returned, for logging and tests.
    results: dict[str, object] = field(default_factory=dict)
    #: Receipts of the messages not tried (also in `retry`, with no delay).
    unattempted: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.retry


def run_batch(
    messages: list[ReceivedMessage],
    handle: Callable[[ReceivedMessage], object],
    *,
    seconds_left: Callable[[], float] | None = None,
    reserve_seconds: float = 0.0,
) -> BatchOutcome:
    """Handle each message; with `seconds_left`, start no message that might not finish within
    the invocation (a timeout would return the whole batch, finished work included)."""
    outcome = BatchOutcome()
    blocked_groups: set[str] = set()
    for message in messages:
        out_of_time = seconds_left is not None and seconds_left() < reserve_seconds
        if out_of_time or (message.group is not None and message.group in blocked_groups):
            outcome.retry[message.receipt] = UNTRIED_DELAY_SECONDS
            outcome.unattempted.append(message.receipt)
            continue
        try:
            outcome.results[message.message_id] = handle(message)
        except Exception as exc:  # isolate every failure to its own message
            outcome.retry[message.receipt] = _delay_for(exc)
            if message.group is not None:
                blocked_groups.add(message.group)
            _log_failure(message, exc)
        else:
            outcome.finished.append(message.receipt)
    return outcome


def settle(queue: Queue, outcome: BatchOutcome, *, delete_finished: bool = True) -> None:
    """Apply a batch outcome to the queue: delete what finished, delay what asked for it, and
    make what was not tried visible again at once."""
    if delete_finished and outcome.finished:
        queue.delete(outcome.finished)
    for receipt, delay in outcome.retry.items():
        if delay is not None:
            queue.retry_later(receipt, delay)


def _delay_for(exc: Exception) -> int | None:
    if isinstance(exc, RetryLaterError):
        return exc.delay_seconds
    if isinstance(exc, ConcurrentUpdateError):
        return BUSY_RETRY_SECONDS
    return None


def _log_failure(message: ReceivedMessage, exc: Exception) -> None:
    # Only the error's type and our own message: exception text from libraries can quote payloads.
    if isinstance(exc, RetryLaterError):
        logger.info("message %s retried in %ss", message.message_id, exc.delay_seconds)
    elif isinstance(exc, HubError):
        logger.warning("message %s failed (%s): %s", message.message_id, exc.code, exc.message)
    else:
        logger.error(
            "message %s failed with %s (receive %d)", message.message_id, type(exc).__name__, message.receive_count
        )
