"""Shared SQLite plumbing for the embedded store and queue: one connection per thread, WAL mode.

SQLite connections must not cross threads, and the embedded runtime serves HTTP and runs workers
on several threads against one file; WAL lets readers proceed while one writer commits, and
`BEGIN IMMEDIATE` takes the write lock up front so read-then-write sequences cannot interleave.

Threads of this process also queue for the write lock on a Python lock before `BEGIN IMMEDIATE`.
SQLite's own busy handler makes a waiting connection sleep 1, 2, 5 ... up to 100 ms between tries,
so a thread with one short write to make (a delivery recording its outcome) lost the lock again
and again to threads writing back to back (processing an inbound backlog) and waited tens of
milliseconds per write: deliveries starved until the inbound backlog was gone. Waiting on a lock
hands it over as soon as it is released. Other processes still meet SQLite's busy handler.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The longest a writer queues in this process before trying SQLite's own lock regardless (the
#: busy timeout then applies, so nesting writes across two databases cannot deadlock here).
WRITE_QUEUE_SECONDS = 30.0

#: What the write-ahead log is truncated to after a checkpoint.
WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024

_write_locks: dict[str, threading.RLock] = {}
_write_locks_guard = threading.Lock()


def _write_lock(path: str) -> threading.RLock:
    with _write_locks_guard:
        # An in-memory database is private to its connection: nothing to queue for across threads.
        return _write_locks.setdefault(path, threading.RLock()) if path != ":memory:" else threading.RLock()


class SqliteDatabase:
    def __init__(self, path: str, schema: str) -> None:
        self.path = path
        self._local = threading.local()
        self._write_lock = _write_lock(str(Path(path).resolve()) if path != ":memory:" else path)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # executescript manages its own transaction; the statements are idempotent.
        self.connection().executescript(schema)

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            # The write-ahead log is reused from its start after each checkpoint but never shrinks
            # by itself: under load it reached 7-8 MB per database and stayed there. Truncating it to
            # this size at each checkpoint bounds the data directory's overhead.
            conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database's write lock from its first statement."""
        conn = self.connection()
        queued = self._write_lock.acquire(timeout=WRITE_QUEUE_SECONDS)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
        finally:
            if queued:
                self._write_lock.release()

    def read(self) -> sqlite3.Connection:
        return self.connection()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
