"""A durable queue on SQLite with SQS FIFO semantics, for the embedded runtime.

It keeps what the pipeline relies on from SQS: a message survives restarts until deleted; a
received message is hidden for the visibility timeout and then redelivered with a higher receive
count; after `max_receives` receives it moves to the dead-letter queue; within a group, a message
is not handed out while an earlier one is still in flight, so per-sender order holds.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict

from chalicelib.adapters.blobs.base import BlobStore
from chalicelib.adapters.queue.base import DEFAULT_GROUP, OutgoingMessage, Queue, ReceivedMessage
from chalicelib.adapters.sqlite_db import SqliteDatabase

#: SQS FIFO's deduplication interval.
DEDUPE_WINDOW_SECONDS = 300

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
CREATE INDEX IF NOT EXISTS queue_visible ON queue_messages (queue, visible_at);
CREATE UNIQUE INDEX IF NOT EXISTS queue_receipts ON queue_messages (receipt);
CREATE TABLE IF NOT EXISTS queue_dedupe (
    queue TEXT NOT NULL, dedupe_id TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (queue, dedupe_id));
CREATE INDEX IF NOT EXISTS queue_dedupe_expiry ON queue_dedupe (queue, expires_at);
"""

# Wake receivers in this process as soon as something is sent, instead of waiting a poll interval.
_signals: dict[str, threading.Condition] = defaultdict(threading.Condition)
_databases: dict[str, SqliteDatabase] = {}
_databases_lock = threading.Lock()


def _database(path: str) -> SqliteDatabase:
    with _databases_lock:
        if path not in _databases:
            _databases[path] = SqliteDatabase(path, _SCHEMA)
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
    ) -> None:
        super().__init__(name, blobs=blobs)
        self._db = _database(db_path)
        self._signal = _signals[f"{db_path}#{name}"]
        self.visibility_timeout = visibility_timeout
        self.max_receives = max_receives
        self.dead_letter = dead_letter

    def _send_batch(self, messages: list[OutgoingMessage]) -> None:
        now = time.time()
        with self._db.write() as conn:
            conn.execute("DELETE FROM queue_dedupe WHERE queue = ? AND expires_at <= ?", (self.name, now))
            for message in messages:
                seen = conn.execute(
                    "INSERT OR IGNORE INTO queue_dedupe (queue, dedupe_id, expires_at) VALUES (?, ?, ?)",
                    (self.name, message.effective_dedupe_id(), now + DEDUPE_WINDOW_SECONDS),
                ).rowcount == 0
                if seen:
                    continue
                conn.execute(
                    "INSERT INTO queue_messages (id, queue, grp, body, visible_at, sent_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (str(uuid.uuid4()), self.name, message.group or DEFAULT_GROUP, message.body, now, now),
                )
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
        out: list[ReceivedMessage] = []
        with self._db.write() as conn:
            # Only the head of each group is eligible: a later message of a group waits while an
            # earlier one is in flight (invisible) or visible but not yet taken.
            rows = conn.execute(
                """SELECT m.seq, m.id, m.grp, m.body, m.receive_count FROM queue_messages m
                   WHERE m.queue = ? AND m.visible_at <= ?
                     AND m.seq = (SELECT MIN(seq) FROM queue_messages h WHERE h.queue = m.queue AND h.grp = m.grp)
                   ORDER BY m.seq LIMIT ?""",
                (self.name, now, max_messages),
            ).fetchall()
            for row in rows:
                if row["receive_count"] >= self.max_receives and self.dead_letter:
                    conn.execute(
                        "UPDATE queue_messages SET queue = ?, receive_count = 0, receipt = NULL, visible_at = ?"
                        " WHERE seq = ?",
                        (self.dead_letter, now, row["seq"]),
                    )
                    continue
                receipt = uuid.uuid4().hex
                conn.execute(
                    "UPDATE queue_messages SET receipt = ?, visible_at = ?, receive_count = receive_count + 1"
                    " WHERE seq = ?",
                    (receipt, now + self.visibility_timeout, row["seq"]),
                )
                out.append(ReceivedMessage(row["id"], row["body"], receipt, row["receive_count"] + 1, row["grp"]))
        return out

    def _delete_batch(self, receipts: list[str]) -> None:
        with self._db.write() as conn:
            conn.executemany("DELETE FROM queue_messages WHERE receipt = ?", [(r,) for r in receipts])

    def _change_visibility(self, receipt: str, seconds: int) -> None:
        with self._db.write() as conn:
            conn.execute("UPDATE queue_messages SET visible_at = ? WHERE receipt = ?", (time.time() + seconds, receipt))

    def depth(self) -> int:
        """Messages waiting or in flight (for `/health` and tests)."""
        row = self._db.read().execute("SELECT COUNT(*) FROM queue_messages WHERE queue = ?", (self.name,)).fetchone()
        return int(row[0])
