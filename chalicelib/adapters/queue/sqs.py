"""SQS implementation of the queue. FIFO when the URL ends with `.fifo` (what `infra/` creates)."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from chalicelib.adapters.blobs.base import BlobStore
from chalicelib.adapters.queue.base import DEFAULT_GROUP, OutgoingMessage, Queue, ReceivedMessage
from chalicelib.errors import QueueUnavailableError

#: SQS's limits: 10 messages per receive, 20 s of long polling, 12 h of visibility.
_MAX_RECEIVE = 10
_MAX_WAIT_SECONDS = 20
_MAX_VISIBILITY_SECONDS = 12 * 60 * 60
#: MessageGroupId / MessageDeduplicationId: 1-128 printable ASCII characters, no spaces.
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatchRequestEntry.html
_FIFO_TOKEN = re.compile(r"[\x21-\x7e]{1,128}")
#: What `depth` adds up: waiting, delayed and received-but-not-deleted messages.
_DEPTH = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed", "ApproximateNumberOfMessagesNotVisible")


class SqsQueue(Queue):
    def __init__(self, client: Any, queue_url: str, blobs: BlobStore | None = None) -> None:
        if not queue_url:
            raise ValueError("queue_url is required")
        super().__init__(queue_url.rstrip("/").rsplit("/", 1)[-1], blobs=blobs)
        self._client = client
        self.url = queue_url
        self.fifo = queue_url.endswith(".fifo")

    def _send_batch(self, messages: list[OutgoingMessage]) -> None:
        entries = []
        for index, message in enumerate(messages):
            entry: dict[str, Any] = {"Id": str(index), "MessageBody": message.body}
            if self.fifo:
                entry["MessageGroupId"] = _fifo_token(message.group or DEFAULT_GROUP)
                entry["MessageDeduplicationId"] = _fifo_token(message.effective_dedupe_id())
            entries.append(entry)
        response = self._client.send_message_batch(QueueUrl=self.url, Entries=entries)
        failed = response.get("Failed") or []
        if failed:
            codes = sorted({f.get("Code", "?") for f in failed})
            # Resending the whole batch is safe on FIFO: the accepted ones dedupe.
            raise QueueUnavailableError(
                f"queue {self.name}: {len(failed)} of {len(entries)} messages failed ({', '.join(codes)})"
            )

    def _receive(self, max_messages: int, wait_seconds: float) -> list[ReceivedMessage]:
        response = self._client.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max(1, min(int(max_messages), _MAX_RECEIVE)),
            WaitTimeSeconds=max(0, min(math.ceil(wait_seconds), _MAX_WAIT_SECONDS)),
            AttributeNames=["ApproximateReceiveCount", "MessageGroupId"],
        )
        return [
            ReceivedMessage(
                message_id=m["MessageId"],
                body=m["Body"],
                receipt=m["ReceiptHandle"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
                group=m.get("Attributes", {}).get("MessageGroupId"),
            )
            for m in response.get("Messages", [])
        ]

    def depth(self) -> int:
        """Messages waiting, delayed or in flight, as SQS approximates them (seconds stale; for
        `GET /v1/status`, like `LocalQueue.depth`). One GetQueueAttributes call."""

        def read() -> int:
            attributes = self._client.get_queue_attributes(QueueUrl=self.url, AttributeNames=list(_DEPTH))
            return sum(int(attributes.get("Attributes", {}).get(name, 0)) for name in _DEPTH)

        return self._wrap("depth", read)

    def _delete_batch(self, receipts: list[str]) -> None:
        if not receipts:
            return
        response = self._client.delete_message_batch(
            QueueUrl=self.url, Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(receipts)]
        )
        failed = response.get("Failed") or []
        if failed:
            codes = sorted({f.get("Code", "?") for f in failed})
            raise QueueUnavailableError(
                f"queue {self.name}: {len(failed)} of {len(receipts)} deletes failed ({', '.join(codes)})"
            )

    def _change_visibility(self, receipt: str, seconds: int) -> None:
        self._client.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=receipt, VisibilityTimeout=min(seconds, _MAX_VISIBILITY_SECONDS)
        )


def _fifo_token(value: str) -> str:
    """The value itself when SQS accepts it, else its SHA-256 (stable, so order and dedupe hold)."""
    return value if _FIFO_TOKEN.fullmatch(value) else hashlib.sha256(value.encode()).hexdigest()
