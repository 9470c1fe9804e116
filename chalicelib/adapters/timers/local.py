"""Timers of the embedded runtime: rows in a SQLite file of the data directory.

A pump (`service/case_timers.TimerPump`, run by a thread of the embedded runtime) reads the due
rows, puts their payloads on the events queue and only then deletes them: a crash in between
fires them again (at least once), and the payload's event id makes the second firing a no-op.
The rows are durable, so a restart loses no timer; one due while the hub was down fires at start.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from chalicelib.adapters.sqlite_db import SqliteDatabase
from chalicelib.adapters.timers.base import Timer, TimerPort
from chalicelib.errors import TransientError

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS timers (
    name TEXT PRIMARY KEY,
    due_at REAL NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS timers_due ON timers (due_at);
"""

#: SQLite's default limit of bound parameters per statement is 999 on older builds.
_CHUNK = 500


class LocalTimers(TimerPort):
    def __init__(self, db_path: str) -> None:
        self._db = SqliteDatabase(db_path, _SCHEMA)

    def arm(self, timers: Sequence[Timer]) -> None:
        if not timers:
            return
        with self._writing("arm") as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO timers (name, due_at, payload) VALUES (?, ?, ?)",
                [(t.name, t.due_at.timestamp(), t.payload) for t in timers],
            )

    def cancel(self, names: Sequence[str]) -> None:
        self.remove(names)

    def due(self, now: datetime, limit: int) -> list[Timer]:
        """The timers due at `now` (timezone-aware), earliest first, at most `limit`."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        try:
            rows = self._db.read().execute(
                "SELECT name, due_at, payload FROM timers WHERE due_at <= ? ORDER BY due_at, name LIMIT ?",
                (now.timestamp(), limit),
            ).fetchall()
        except sqlite3.Error as exc:
            raise TransientError("local timers unavailable (due)") from exc
        return [Timer(name=r["name"], due_at=datetime.fromtimestamp(r["due_at"], UTC), payload=r["payload"])
                for r in rows]

    def remove(self, names: Sequence[str]) -> None:
        """Delete the named timers (fired or cancelled); unknown names are ignored."""
        names = list(names)
        if not names:
            return
        with self._writing("remove") as conn:
            for start in range(0, len(names), _CHUNK):
                chunk = names[start:start + _CHUNK]
                conn.execute(f"DELETE FROM timers WHERE name IN ({', '.join('?' * len(chunk))})", chunk)

    def count(self) -> int:
        """How many timers are armed (operations and tests)."""
        return self._db.read().execute("SELECT COUNT(*) FROM timers").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _writing(self, operation: str) -> Iterator[sqlite3.Connection]:
        try:
            with self._db.write() as conn:
                yield conn
        except sqlite3.Error as exc:
            logger.warning("local timers %s failed: %s", operation, type(exc).__name__)
            raise TransientError(f"local timers unavailable ({operation})") from exc
