"""The embedded queue drops messages past their retention, as SQS does (14 days, the stack's
`MessageRetentionPeriod`): a dead-letter queue's copies no longer pile up for ever, a group's
next message takes over as its head, and a move into the dead-letter queue starts the clock again
(a FIFO DLQ's rule). SQLite on disk; the queue's clock is set by the test."""

from __future__ import annotations

import time as real_time

import pytest

from chalicelib.adapters.queue import local
from chalicelib.adapters.queue.base import OutgoingMessage
from chalicelib.adapters.queue.local import RETENTION_SECONDS, LocalQueue


class _Clock:
    """`time` for the queue module: wall-clock time the test moves, the real monotonic clock."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now

    monotonic = staticmethod(real_time.monotonic)


@pytest.fixture
def clock(monkeypatch):
    fake = _Clock()
    monkeypatch.setattr(local, "time", fake)
    return fake


def _queue(tmp_path, name="work", **options) -> LocalQueue:
    return LocalQueue(str(tmp_path / "queue.db"), name, visibility_timeout=30, **options)


def _send(queue: LocalQueue, body: str, group: str = "g") -> None:
    queue.send([OutgoingMessage(body=body, group=group, dedupe_id=body)])


def test_a_message_past_the_retention_is_dropped_and_its_groups_next_message_is_received(tmp_path, clock):
    queue = _queue(tmp_path)
    _send(queue, "old")
    clock.now += RETENTION_SECONDS - 100
    _send(queue, "young")
    clock.now += 101  # "old" is now 14 days and a second old; "young" is not (checked over a minute ago)

    received = queue.receive(max_messages=10)

    assert [m.body for m in received] == ["young"]
    assert queue.depth() == 1


def test_the_retention_is_checked_at_most_once_a_minute(tmp_path, clock):
    queue = _queue(tmp_path)
    _send(queue, "first")
    clock.now += RETENTION_SECONDS + 1
    queue.receive(max_messages=1)  # drops "first"; the next check is a minute away
    _send(queue, "second")
    clock.now += 30
    queue._retention_checked_at = clock.now - 30  # the check above, 30 s before
    assert queue.depth() == 1

    clock.now += RETENTION_SECONDS  # "second" has expired, but the last check was 30 s ago
    queue._retention_checked_at = clock.now - 30
    queue.receive(max_messages=1, wait_seconds=0)
    assert queue.depth() == 1, "checked again before a minute had passed"

    clock.now += local.RETENTION_CHECK_SECONDS
    queue.receive(max_messages=1, wait_seconds=0)
    assert queue.depth() == 0


def test_dead_letter_copies_expire_counted_from_their_move(tmp_path, clock):
    queue = _queue(tmp_path, max_receives=1, dead_letter="work-dlq")
    dead_letters = _queue(tmp_path, "work-dlq")
    _send(queue, "job")
    clock.now += 1
    assert [m.body for m in queue.receive(max_messages=1)] == ["job"]  # its one receive, never deleted
    clock.now += RETENTION_SECONDS - 60  # nearly 14 days after it was sent
    queue._retention_checked_at = 0
    assert queue.receive(max_messages=1, wait_seconds=0) == []  # moved to the dead-letter queue now
    assert dead_letters.depth() == 1

    clock.now += RETENTION_SECONDS - 1  # 14 days after its send, not yet after its move
    queue._retention_checked_at = 0
    queue.receive(max_messages=1, wait_seconds=0)
    assert dead_letters.depth() == 1

    clock.now += 2
    queue._retention_checked_at = 0
    queue.receive(max_messages=1, wait_seconds=0)  # the source queue's check covers its DLQ too
    assert dead_letters.depth() == 0


def test_many_expired_messages_are_dropped_in_batches_across_groups(tmp_path, clock):
    queue = _queue(tmp_path)
    for start in range(0, 1200, 10):
        queue.send([OutgoingMessage(body=f"m{i}", group=f"g{i % 7}", dedupe_id=f"d{i}")
                    for i in range(start, start + 10)])
    clock.now += RETENTION_SECONDS + 1
    _send(queue, "fresh", group="g3")

    assert queue.depth() == 1
    assert [m.body for m in queue.receive(max_messages=10)] == ["fresh"]
