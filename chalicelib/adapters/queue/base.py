"""The queue port: durable, at-least-once, ordered per group, with a dead-letter queue.

SQS (FIFO) on AWS, a SQLite-backed queue in the embedded runtime. The base does batching, size
limits and the claim-check for oversized bodies once; backends implement four small primitives.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from chalicelib.adapters.blobs.base import BlobStore
from chalicelib.errors import HubError, NotFoundError, QueueBodyLostError, QueueUnavailableError

logger = logging.getLogger(__name__)

#: SQS accepts 10 entries per SendMessageBatch.
MAX_BATCH_ENTRIES = 10
#: SQS's limit is 1 MiB per message and per batch; stay below it with room for attributes.
MAX_BATCH_BYTES = 900 * 1024
#: Bodies above this go to the blob store and travel as a pointer (claim-check pattern).
MAX_INLINE_BYTES = 200 * 1024
_BLOB_MARKER = '{"$blob":'
#: What `release` leaves of a claim-checked body: no customer data, and a redelivery of the handled
#: message can tell it from a copy that went missing. (A real body is never this small.)
_RELEASED = b'{"$released": "the message was handled"}'


#: The group of messages sent without one: they are ordered among themselves.
DEFAULT_GROUP = "default"


@dataclass(frozen=True)
class OutgoingMessage:
    body: str
    #: Messages of one group are received in the order they were sent (FIFO message group);
    #: None means `DEFAULT_GROUP`.
    group: str | None = None
    #: Messages with the same id sent within the 5-minute dedupe window are accepted once;
    #: None means the body's SHA-256 (content-based dedupe), so resending a batch is safe.
    dedupe_id: str | None = None

    def effective_dedupe_id(self) -> str:
        return self.dedupe_id or hashlib.sha256(self.body.encode()).hexdigest()


@dataclass(frozen=True)
class ReceivedMessage:
    message_id: str
    body: str
    receipt: str
    receive_count: int
    group: str | None = None
    #: Seconds the worker that received the message has left (a Lambda's remaining time);
    #: None without a limit.
    seconds_left: Callable[[], float] | None = field(default=None, compare=False, repr=False)


class Queue(ABC):
    """A named queue. Every method raises `QueueUnavailableError` when the backend fails."""

    def __init__(self, name: str, *, blobs: BlobStore | None = None) -> None:
        self.name = name
        self._blobs = blobs

    def send(self, messages: Sequence[OutgoingMessage]) -> None:
        """Durably enqueue all messages, in order, or raise. One backend call per 10 messages."""
        prepared = self._wrap("send", self._claim_check_all, messages)
        for batch in _batches(prepared):
            self._wrap("send", self._send_batch, batch)

    def receive(self, *, max_messages: int = 10, wait_seconds: float = 0) -> list[ReceivedMessage]:
        """Take up to `max_messages` visible messages, hiding them for the visibility timeout.
        Bodies are as sent on the wire: `resolve_body` reads a claim-checked one."""
        return self._wrap("receive", self._receive, max_messages, wait_seconds)

    def delete(self, receipts: Sequence[str]) -> None:
        """Acknowledge processed messages so they are never redelivered."""
        for start in range(0, len(receipts), MAX_BATCH_ENTRIES):
            self._wrap("delete", self._delete_batch, list(receipts[start:start + MAX_BATCH_ENTRIES]))

    def retry_later(self, receipt: str, delay_seconds: int) -> None:
        """Make a received message visible again after `delay_seconds` (e.g. a vendor's Retry-After)."""
        self._wrap("retry_later", self._change_visibility, receipt, max(0, int(delay_seconds)))

    # --- primitives ------------------------------------------------------------------------------

    @abstractmethod
    def _send_batch(self, messages: list[OutgoingMessage]) -> None:
        """Send ≤10 messages in one call; all succeed or it raises."""

    @abstractmethod
    def _receive(self, max_messages: int, wait_seconds: float) -> list[ReceivedMessage]: ...

    @abstractmethod
    def _delete_batch(self, receipts: list[str]) -> None: ...

    @abstractmethod
    def _change_visibility(self, receipt: str, seconds: int) -> None: ...

    # --- shared machinery ------------------------------------------------------------------------

    def _wrap(self, operation: str, func, *args):
        try:
            return func(*args)
        except HubError:
            raise
        except Exception as exc:
            logger.warning("queue %s %s failed: %s", self.name, operation, type(exc).__name__)
            raise QueueUnavailableError(f"queue {self.name} unavailable ({operation})") from exc

    def _claim_check_all(self, messages: Sequence[OutgoingMessage]) -> list[tuple[OutgoingMessage, int]]:
        return [self._claim_check(message) for message in messages]

    def _claim_check(self, message: OutgoingMessage) -> tuple[OutgoingMessage, int]:
        """The message as it goes on the wire (a pointer for an oversized body), with the size of
        its body in bytes: the body is encoded once, here, and `_batches` sizes with it."""
        body = message.body
        # `isascii` reads a flag CPython keeps on every string: an ASCII body's length is its size.
        data = None if body.isascii() else body.encode()
        size = len(body) if data is None else len(data)
        if size <= MAX_INLINE_BYTES:
            return message, size
        if data is None:
            data = body.encode()
        if self._blobs is None:
            raise QueueUnavailableError(f"message of {len(data)} bytes exceeds the queue limit and no blob store is set")
        # One object per send, never shared: `release` deletes it once its message is handled,
        # while a resend of the same body (an ingest retry) may still be in flight.
        key = f"queue/{self.name}/{uuid.uuid4().hex}.json"
        try:
            self._blobs.put(key, data, content_type="application/json")
        except HubError:
            raise
        except Exception as exc:
            raise QueueUnavailableError("blob store unavailable for an oversized message") from exc
        # Content-based dedupe stays on the real body, not on the pointer.
        pointer = json.dumps({"$blob": key})
        return OutgoingMessage(body=pointer, group=message.group, dedupe_id=message.effective_dedupe_id()), len(pointer)

    def resolve_body(self, body: str) -> str | None:
        """The real body of a received message (`receive` and Lambda event sources hand over the
        body as sent on the wire: for a claim-checked one, a pointer to the blob store).

        None for a message handled before (its acknowledgement was lost): `release` replaced its
        copy with a marker. Raises `QueueBodyLostError` when the copy is gone without a marker
        (expired or deleted before the message was handled), and the blob store's
        `TransientError`s."""
        if not body.startswith(_BLOB_MARKER) or self._blobs is None:
            return body
        key = json.loads(body)["$blob"]
        try:
            data = self._blobs.get(key)
        except NotFoundError:
            raise QueueBodyLostError(f"queue {self.name}: the claim-checked body {key} is gone before its message "
                                     "was handled", detail={"queue": self.name, "key": key}) from None
        if data == _RELEASED:
            logger.info("queue %s: claim-checked body already released; a redelivery of a handled message", self.name)
            return None
        return data.decode()

    def release(self, body: str) -> None:
        """Replaces the claim-checked body of a message handled for good with a small marker, so
        customer data (an email's attachments) does not outlive its message in the blob store, and
        a redelivery is known for a duplicate. One write, as a delete was. Best effort: a failure
        is logged, and the redelivery is then handled again (handlers are idempotent); on AWS the
        `queue/` lifecycle rule removes what is left."""
        if not body.startswith(_BLOB_MARKER) or self._blobs is None:
            return
        key = json.loads(body)["$blob"]
        try:
            self._blobs.put(key, _RELEASED, content_type="application/json")
        except Exception as exc:  # noqa: BLE001 - the message is handled; only storage is left over
            logger.warning("queue %s: claim-checked body %s not released: %s", self.name, key, type(exc).__name__)


def _batches(messages: list[tuple[OutgoingMessage, int]]):
    """Messages with their body's size in bytes, in batches of at most `MAX_BATCH_ENTRIES`
    messages and `MAX_BATCH_BYTES` (a message alone may be up to `MAX_INLINE_BYTES`)."""
    batch: list[OutgoingMessage] = []
    size = 0
    for message, length in messages:
        if batch and (len(batch) == MAX_BATCH_ENTRIES or size + length > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(message)
        size += length
    if batch:
        yield batch
