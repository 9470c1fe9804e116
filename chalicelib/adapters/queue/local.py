"""A durable queue on SQLite with SQS FIFO semantics, for the embedded runtime.

It keeps what the pipeline relies on from SQS: a message survives restarts until deleted; a
received message is hidden for the visibility timeout and then redelivered with a higher receive
count; after `max_receives` receives it moves to the dead-letter queue; within a group, a message
is not handed out while an earlier one is still in flight, so per-sender order holds; a message
is dropped once it is older than the queue's retention, 14 days as the stack's queues keep theirs
(`infra/stateful.yaml`), counted again from its move into a dead-letter queue as a FIFO DLQ
does. Nothing else ever deletes a dead-letter queue's copy of a job (operators replay the store's
dead letter), so without the retention it would stay forever.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from chalicelib.adapters.blobs.base import BlobStore
from chalicelib.adapters.queue.base import DEFAULT_GROUP, OutgoingMessage, Queue, ReceivedMessage
from chalicelib.adapters.sqlite_db import SqliteDatabase
from chalicelib.domain.ids import new_id

#: SQS FIFO's deduplication interval.
DEDUPE_WINDOW_SECONDS = 300
#: How long a message is kept: the `MessageRetentionPeriod` of every queue in infra/stateful.yaml.
RETENTION_SECONDS = 14 * 24 * 3600
#: How often a queue looks for messages past their retention (on a send or a receive).
RETENTION_CHECK_SECONDS = 60.0
#: Expired messages dropped per statement batch, so a purge never holds the write lock for long.
_PURGE_BATCH = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    grp TEXT NOT NULL,
    body TEXT NOT NULL,
    receipt TEXT,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    sent_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS queue_group_order ON queue_messages (queue, grp, seq);
CREATE UNIQUE INDEX IF NOT EXISTS queue_receipts ON queue_messages (receipt);
CREATE TABLE IF NOT EXISTS queue_heads (
    queue TEXT NOT NULL, grp TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (queue, grp));
CREATE INDEX IF NOT EXISTS queue_heads_order ON queue_heads (queue, seq);
CREATE TABLE IF NOT EXISTS queue_dedupe (
    queue TEXT NOT NULL, dedupe_id TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (queue, dedupe_id));
CREATE INDEX IF NOT EXISTS queue_dedupe_expiry ON queue_dedupe (queue, expires_at);
"""

#: `queue_heads` holds the first message of every non-empty group, so a receive reads the heads
#: in send order and stops after `max_messages` visible ones: its cost depends on the groups in
#: flight, never on the backlog. Finding the heads among the messages on every receive (a scan of
#: every visible message with a per-row MIN subquery, then a sort) cost O(backlog) under the
#: write lock. The heads are derived data, rebuilt when a process opens the database (which also
#: migrates a database written before they existed).
_REBUILD_HEADS = """
DROP INDEX IF EXISTS queue_visible;
DELETE FROM queue_heads;
INSERT INTO queue_heads (queue, grp, seq) SELECT queue, grp, MIN(seq) FROM queue_messages GROUP BY queue, grp;
"""

#: The visible heads, oldest first (used by `_receive_now`; a test checks its plan never scans the messages).
RECEIVE_SQL = """SELECT m.seq, m.id, m.grp, m.body, m.receive_count
   FROM queue_heads h JOIN queue_messages m ON m.seq = h.seq
   WHERE h.queue = ? AND m.visible_at <= ?
   ORDER BY h.seq LIMIT ?"""

# Wake receivers in this process as soon as something is sent, instead of waiting a poll interval.
_signals: dict[str, threading.Condition] = defaultdict(threading.Condition)
_databases: dict[str, SqliteDatabase] = {}
_databases_lock = threading.Lock()


def _database(path: str) -> SqliteDatabase:
    with _databases_lock:
        if path not in _databases:
            database = SqliteDatabase(path, _SCHEMA)
            with database.write() as conn:
                for statement in _REBUILD_HEADS.strip().split(";\n"):
                    conn.execute(statement)
            _databases[path] = database
        return _databases[path]


class LocalQueue(Queue):
    def __init__(
        self,
        db_path: str,
        name: str,
        *,
        visibility_timeout: int = 30,
        max_receives: int = 5,
        dead_letter: str | None = None,
        blobs: BlobStore | None = None,
        retention_seconds: float = RETENTION_SECONDS,
    ) -> None:
        super().__init__(name, blobs=blobs)
        self._db = _database(db_path)
        self._signal = _signals[f"{db_path}#{name}"]
        self.visibility_timeout = visibility_timeout
        self.max_receives = max_receives
        self.dead_letter = dead_letter
        self.retention_seconds = retention_seconds
        self._retention_checked_at = 0.0

    def _send_batch(self, messages: list[OutgoingMessage]) -> None:
        now = time.time()
        self._drop_expired(now)
        with self._db.write() as conn:
            conn.execute("DELETE FROM queue_dedupe WHERE queue = ? AND expires_at <= ?", (self.name, now))
            for message in messages:
                seen = conn.execute(
                    "INSERT OR IGNORE INTO queue_dedupe (queue, dedupe_id, expires_at) VALUES (?, ?, ?)",
                    (self.name, message.effective_dedupe_id(), now + DEDUPE_WINDOW_SECONDS),
                ).rowcount == 0
                if seen:
                    continue
                group = message.group or DEFAULT_GROUP
                seq = conn.execute(
                    "INSERT INTO queue_messages (id, queue, grp, body, visible_at, sent_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (new_id("msg"), self.name, group, message.body, now, now),
                ).lastrowid
                # The first message of an empty group is its head; a later one waits behind it.
                conn.execute("INSERT OR IGNORE INTO queue_heads (queue, grp, seq) VALUES (?, ?, ?)",
                             (self.name, group, seq))
        with self._signal:
            self._signal.notify_all()

    def _receive(self, max_messages: int, wait_seconds: float) -> list[ReceivedMessage]:
        deadline = time.monotonic() + wait_seconds
        while True:
            received = self._receive_now(max_messages)
            remaining = deadline - time.monotonic()
            if received or remaining <= 0:
                return received
            with self._signal:
                self._signal.wait(timeout=min(remaining, 0.5))

    def _receive_now(self, max_messages: int) -> list[ReceivedMessage]:
        now = time.time()
        self._drop_expired(now)
        out: list[ReceivedMessage] = []
        with self._db.write() as conn:
            # Only the head of each group is eligible: a later message of a group waits while an
            # earlier one is in flight (invisible) or visible but not yet taken.
            rows = conn.execute(RECEIVE_SQL, (self.name, now, max_messages)).fetchall()
            for row in rows:
                if row["receive_count"] >= self.max_receives and self.dead_letter:
                    conn.execute(
                        "UPDATE queue_messages SET queue = ?, receive_count = 0, receipt = NULL, visible_at = ?,"
                        " sent_at = ? WHERE seq = ?",
                        (self.dead_letter, now, now, row["seq"]),
                    )
                    _next_head(conn, self.name, row["grp"])
                    _next_head(conn, self.dead_letter, row["grp"])
                    continue
                receipt = new_id("rcpt")
                conn.execute(
                    "UPDATE queue_messages SET receipt = ?, visible_at = ?, receive_count = receive_count + 1"
                    " WHERE seq = ?",
                    (receipt, now + self.visibility_timeout, row["seq"]),
                )
                out.append(ReceivedMessage(row["id"], row["body"], receipt, row["receive_count"] + 1, row["grp"]))
        return out

    def _delete_batch(self, receipts: list[str]) -> None:
        with self._db.write() as conn:
            for receipt in receipts:
                row = conn.execute("SELECT queue, grp FROM queue_messages WHERE receipt = ?", (receipt,)).fetchone()
                if row is None:  # deleted before, or received again since (a new receipt)
                    continue
                conn.execute("DELETE FROM queue_messages WHERE receipt = ?", (receipt,))
                _next_head(conn, row["queue"], row["grp"])

    def _change_visibility(self, receipt: str, seconds: int) -> None:
        with self._db.write() as conn:
            conn.execute("UPDATE queue_messages SET visible_at = ? WHERE receipt = ?", (time.time() + seconds, receipt))

    def _drop_expired(self, now: float) -> None:
        """Drop this queue's and its dead-letter queue's messages past their retention, at most
        once per `RETENTION_CHECK_SECONDS`. The oldest message of a group is its head, so the
        expired ones are found among the heads (`queue_heads`): the cost grows with the groups in
        flight and the messages dropped, never with the backlog."""
        if now - self._retention_checked_at < RETENTION_CHECK_SECONDS:
            return
        self._retention_checked_at = now
        for queue in filter(None, (self.name, self.dead_letter)):
            while _drop_expired_heads(self._db, queue, now - self.retention_seconds) >= _PURGE_BATCH:
                pass

    def depth(self) -> int:
        """Messages waiting or in flight (for `/health` and tests)."""
        row = self._db.read().execute("SELECT COUNT(*) FROM queue_messages WHERE queue = ?", (self.name,)).fetchone()
        return int(row[0])


def _drop_expired_heads(db: SqliteDatabase, queue: str, cutoff: float) -> int:
    """Drop up to `_PURGE_BATCH` messages of `queue` sent before `cutoff`; returns how many. Each
    group whose head has expired loses its leading run of expired messages (in send order, so a
    message waits for the expiry of the ones before it, as it waits for their delivery), and its
    first remaining message becomes its head."""
    dropped = 0
    with db.write() as conn:
        groups = conn.execute(
            "SELECT h.grp FROM queue_heads h JOIN queue_messages m ON m.seq = h.seq"
            " WHERE h.queue = ? AND m.sent_at <= ? LIMIT ?",
            (queue, cutoff, _PURGE_BATCH),
        ).fetchall()
        for (group,) in groups:
            expired = []
            for seq, sent_at in conn.execute(
                "SELECT seq, sent_at FROM queue_messages WHERE queue = ? AND grp = ? ORDER BY seq LIMIT ?",
                (queue, group, _PURGE_BATCH - dropped),
            ).fetchall():
                if sent_at > cutoff:
                    break
                expired.append((seq,))
            conn.executemany("DELETE FROM queue_messages WHERE seq = ?", expired)
            _next_head(conn, queue, group)
            dropped += len(expired)
            if dropped >= _PURGE_BATCH:
                break
    return dropped


def _next_head(conn, queue: str, group: str) -> None:
    """Make the first remaining message of `group` its head (or forget an empty group): two
    lookups in `queue_group_order`, however long the group."""
    conn.execute("DELETE FROM queue_heads WHERE queue = ? AND grp = ?", (queue, group))
    conn.execute(
        "INSERT INTO queue_heads (queue, grp, seq) SELECT queue, grp, seq FROM queue_messages"
        " WHERE queue = ? AND grp = ? ORDER BY seq LIMIT 1",
        (queue, group),
    )
