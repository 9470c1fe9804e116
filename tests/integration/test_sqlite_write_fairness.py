"""A thread with an occasional write is not starved by threads writing back to back.

SQLite's busy handler makes a waiting connection sleep (1, 2, 5 ... 100 ms) and retry; a thread
that commits and begins again at once wins nearly every retry, so under an inbound backlog the
delivery workers' few writes waited until the backlog was gone. Writers of one process queue on a
lock instead (`SqliteDatabase.write`): the light writer waits for one transaction, not for the hog.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from chalicelib.adapters.sqlite_db import SqliteDatabase

SCHEMA = "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, value TEXT)"
HOG_SECONDS = 3.0
HOLD_SECONDS = 0.002


def test_an_occasional_writer_waits_for_one_transaction_not_for_a_back_to_back_writer(tmp_path):
    database = SqliteDatabase(str(tmp_path / "fair.db"), SCHEMA)
    stop = threading.Event()

    def hog() -> None:
        deadline = time.monotonic() + HOG_SECONDS
        while not stop.is_set() and time.monotonic() < deadline:
            with database.write() as conn:
                conn.execute("INSERT INTO items (value) VALUES ('hog')")
                time.sleep(HOLD_SECONDS)  # work inside the transaction, lock held

    hogs = [threading.Thread(target=hog) for _ in range(2)]
    for thread in hogs:
        thread.start()
    time.sleep(0.05)
    waits = []
    try:
        for _ in range(20):
            started = time.monotonic()
            with database.write() as conn:
                conn.execute("INSERT INTO items (value) VALUES ('light')")
            waits.append(time.monotonic() - started)
            time.sleep(0.005)
    finally:
        stop.set()
        for thread in hogs:
            thread.join()

    # Queued behind at most a couple of 2 ms transactions each time (generous for a loaded machine);
    # starved, the light writer's 20 writes took most of the hogs' 3 s.
    assert sum(waits) < 1.0, f"waits {sorted(waits)[-5:]}"
    assert database.read().execute("SELECT COUNT(*) FROM items WHERE value = 'light'").fetchone()[0] == 20


def test_writes_nested_on_one_thread_fail_as_sqlite_says_instead_of_waiting(tmp_path):
    database = SqliteDatabase(str(tmp_path / "nested.db"), SCHEMA)
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="within a transaction"), database.write(), database.write():
        pass
    assert time.monotonic() - started < 1.0
