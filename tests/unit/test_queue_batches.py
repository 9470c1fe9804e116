"""The queue port's batching: bodies sized in UTF-8 bytes (what SQS counts), each encoded once."""

from __future__ import annotations

from chalicelib.adapters.queue.base import MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, MAX_INLINE_BYTES, OutgoingMessage
from tests.support.fakes import MemoryQueue


def test_batches_are_cut_by_the_bodies_size_in_bytes_not_in_characters():
    """Five bodies of 100,000 characters of 'ü' are 200,000 bytes each: 900 KiB holds four of them
    (a count in characters would put all five in one batch, which SQS refuses)."""
    queue = MemoryQueue()
    body = "ü" * 100_000
    assert len(body.encode()) <= MAX_INLINE_BYTES
    queue.send([OutgoingMessage(body=body, group="g", dedupe_id=str(n)) for n in range(5)])
    assert [len(batch) for batch in queue.batches] == [4, 1]
    assert all(sum(len(m.body.encode()) for m in batch) <= MAX_BATCH_BYTES for batch in queue.batches)


def test_ascii_bodies_are_batched_by_count_and_size_in_order():
    queue = MemoryQueue()
    messages = [OutgoingMessage(body=f'{{"n": {n}}}', group="g", dedupe_id=str(n)) for n in range(25)]
    queue.send(messages)
    assert [len(batch) for batch in queue.batches] == [MAX_BATCH_ENTRIES, MAX_BATCH_ENTRIES, 5]
    assert [m for batch in queue.batches for m in batch] == messages
    queue.batches.clear()  # four bodies of the inline limit fit in 900 KiB, a fifth does not
    queue.send([OutgoingMessage(body="x" * MAX_INLINE_BYTES, group="g") for _ in range(5)])
    assert [len(batch) for batch in queue.batches] == [4, 1]


def test_a_non_ascii_body_over_the_inline_limit_in_bytes_is_refused_without_a_blob_store():
    import pytest

    from chalicelib.errors import QueueUnavailableError

    queue = MemoryQueue()
    body = "é" * (MAX_INLINE_BYTES // 2 + 1)  # under the limit in characters, over it in bytes
    with pytest.raises(QueueUnavailableError, match="exceeds the queue limit"):
        queue.send([OutgoingMessage(body=body, group="g")])
    assert queue.batches == []
