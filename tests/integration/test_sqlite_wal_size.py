"""The embedded databases' write-ahead log shrinks back after a burst (SQLite on disk).

A reader holding a snapshot (an HTTP request reading while workers write) keeps checkpoints from
resetting the log, so a burst grows it; without a size limit it keeps that size for good."""

from __future__ import annotations

import os
import sqlite3

from chalicelib.adapters.sqlite_db import WAL_SIZE_LIMIT_BYTES, SqliteDatabase

SCHEMA = "CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL);"


def _write(db: SqliteDatabase, count: int) -> None:
    for _ in range(count):
        with db.write() as conn:
            conn.executemany("INSERT INTO rows (body) VALUES (?)", [("x" * 2000,)] * 20)


def test_the_log_is_cut_back_to_its_limit_once_a_long_reader_lets_go(tmp_path):
    path = tmp_path / "hub.db"
    db = SqliteDatabase(str(path), SCHEMA)
    reader = sqlite3.connect(str(path), isolation_level=None)  # a long reader, like an HTTP request
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM rows").fetchone()  # holds its snapshot
    _write(db, 300)  # about 12 MB while the snapshot pins the log
    wal = tmp_path / "hub.db-wal"
    grown = os.path.getsize(wal)
    assert grown > 2 * WAL_SIZE_LIMIT_BYTES, grown
    reader.execute("COMMIT")
    reader.close()
    _write(db, 60)  # the next checkpoints complete and start the log again from its beginning
    db.connection().execute("PRAGMA wal_checkpoint(PASSIVE)")
    _write(db, 1)
    assert os.path.getsize(wal) <= WAL_SIZE_LIMIT_BYTES + 64 * 1024
