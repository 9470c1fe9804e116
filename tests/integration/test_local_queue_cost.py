"""The embedded queue's receive costs the same with a small or a large backlog (issue 14 §1).

It used to find each group's head among all visible messages (a per-row MIN subquery, then a
sort), under the write lock that every webhook and worker shares: with 3,000 messages queued the
hub drained at a fraction of its 1,000-message rate. Measured in SQLite virtual-machine steps
and query plans, never in wall-clock time.
"""

from __future__ import annotations

import sqlite3

from chalicelib.adapters.queue.base import OutgoingMessage
from chalicelib.adapters.queue.local import RECEIVE_SQL, LocalQueue


def _fill(queue: LocalQueue, count: int, groups: int) -> None:
    for start in range(0, count, 10):
        queue.send([OutgoingMessage(body=f"m{i}", group=f"g{i % groups}", dedupe_id=f"d{i}")
                    for i in range(start, min(count, start + 10))])


def _steps_per_receive(queue: LocalQueue, cycles: int = 20) -> float:
    """SQLite VM steps of one receive-and-delete cycle of up to 10 messages."""
    conn = queue._db.connection()
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    conn.set_progress_handler(tick, 10)
    try:
        for _ in range(cycles):
            received = queue.receive(max_messages=10)
            assert received, "the backlog ran dry during the measurement"
            queue.delete([m.receipt for m in received])
    finally:
        conn.set_progress_handler(None, 0)
    return steps[0] * 10 / cycles


def test_receive_cost_does_not_grow_with_the_backlog(tmp_path):
    for groups in (500, 1):
        small = LocalQueue(str(tmp_path / f"small-{groups}.db"), "inbound")
        large = LocalQueue(str(tmp_path / f"large-{groups}.db"), "inbound")
        _fill(small, 600, groups)
        _fill(large, 6_000, groups)
        # The old query: about 10x the steps for 10x the backlog.
        assert _steps_per_receive(large) <= 1.2 * _steps_per_receive(small), f"{groups} groups"


def test_the_receive_plan_reads_heads_in_order_and_never_scans_or_sorts(tmp_path):
    queue = LocalQueue(str(tmp_path / "q.db"), "inbound")
    _fill(queue, 100, 7)
    plan = [row[3] for row in queue._db.read().execute(f"EXPLAIN QUERY PLAN {RECEIVE_SQL}", ("inbound", 0.0, 10))]
    assert any("queue_heads_order" in step for step in plan), plan
    assert any("INTEGER PRIMARY KEY" in step for step in plan), plan
    assert not any(step.startswith("SCAN") or "TEMP B-TREE" in step for step in plan), plan


def test_heads_follow_deletes_and_dead_letter_moves_in_send_order(tmp_path):
    db = str(tmp_path / "q.db")
    queue = LocalQueue(db, "work", visibility_timeout=0, max_receives=1, dead_letter="work-dlq")
    dead = LocalQueue(db, "work-dlq")
    queue.send([OutgoingMessage(body=b, group=g, dedupe_id=b) for b, g in
                [("a1", "A"), ("b1", "B"), ("a2", "A"), ("b2", "B"), ("a3", "A")]])
    first = queue.receive(max_messages=10)
    assert [m.body for m in first] == ["a1", "b1"]
    queue.delete([first[1].receipt])  # b1 handled; a1 is left to fail (visibility 0, 1 receive)
    second = queue.receive(max_messages=10)  # a1 goes to the DLQ, b2 is next of B
    assert [m.body for m in second] == ["b2"]
    third = queue.receive(max_messages=10)  # b2 goes to the DLQ; A's head is now a2
    assert [m.body for m in third] == ["a2"]
    assert [m.body for m in dead.receive(max_messages=10)] == ["a1", "b2"]


def test_a_database_written_before_the_heads_table_is_migrated(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE queue_messages (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, queue TEXT NOT NULL,
            grp TEXT NOT NULL, body TEXT NOT NULL, receipt TEXT, visible_at REAL NOT NULL,
            receive_count INTEGER NOT NULL DEFAULT 0, sent_at REAL NOT NULL);
        CREATE INDEX queue_group_order ON queue_messages (queue, grp, seq);
        CREATE INDEX queue_visible ON queue_messages (queue, visible_at);
        CREATE UNIQUE INDEX queue_receipts ON queue_messages (receipt);
        INSERT INTO queue_messages (id, queue, grp, body, visible_at, sent_at) VALUES
            ('1', 'inbound', 'A', 'a1', 0, strftime('%s', 'now')), ('2', 'inbound', 'B', 'b1', 0, strftime('%s', 'now')),
            ('3', 'inbound', 'A', 'a2', 0, strftime('%s', 'now'));
    """)  # sent now: older than the queue's retention they would be dropped
    conn.commit()
    conn.close()
    queue = LocalQueue(str(path), "inbound")
    received = queue.receive(max_messages=10)
    assert [m.body for m in received] == ["a1", "b1"]
    queue.delete([m.receipt for m in received])
    assert [m.body for m in queue.receive(max_messages=10)] == ["a2"]


def test_message_ids_and_receipts_grow_with_time_so_their_unique_indexes_append(tmp_path):
    """Both are unique-indexed. Random ids (uuid4) put every insert at a random leaf of a B-tree
    that outgrows SQLite's page cache as the queue holds more: a 100,000-customer broadcast
    (`bench broadcast`, its 90,000 queued messages) cost 15-18 % more per customer than a
    1,000-customer one, and 0-5 % once the ids were ordered by creation time."""
    queue = LocalQueue(str(tmp_path / "queue.db"), "ordered.fifo")
    _fill(queue, 30, groups=30)
    conn = queue._db.connection()
    ids = [row[0] for row in conn.execute("SELECT id FROM queue_messages ORDER BY seq")]
    receipts = [m.receipt for m in queue.receive(max_messages=10)]
    receipts += [m.receipt for m in queue.receive(max_messages=10)]
    assert len(set(ids)) == 30 and len(set(receipts)) == 20
    # Ordered by their creation millisecond (a ULID's first ten characters); random within one.
    for made in (ids, receipts):
        moments = [value.split("_", 1)[1][:10] for value in made]
        assert moments == sorted(moments), made
