"""SqliteStore beyond the shared contract: how SQLite's own failures map to the port's errors,
what `purge_expired` removes, and databases written by earlier versions."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.domain.models import DeadLetter, Delivery
from chalicelib.errors import ItemTooLargeError, StoreUnavailableError

NOW = datetime.now(timezone.utc)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "hub.db")


def letter(letter_id: str, *, expires_at: datetime | None, customer_id: str | None = "cus_1") -> DeadLetter:
    return DeadLetter(id=letter_id, destination="crm", subject_id="con_1", reason="no", attempts=1, dead_at=NOW,
                      job='{"kind": "contact"}', customer_id=customer_id, expires_at=expires_at)


def test_a_locked_database_is_store_unavailable_and_retried(path):
    store = SqliteStore(path)
    store._db.connection().execute("PRAGMA busy_timeout = 20")  # fail fast instead of waiting 30 s
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(StoreUnavailableError) as raised:
            store.remember("k", expires_at=NOW + timedelta(hours=1), now=NOW)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    assert store.remember("k", expires_at=NOW + timedelta(hours=1), now=NOW) is None


def test_sqlites_own_size_limit_is_a_permanent_rejection(path):
    # The port's limit is off here, so the database itself refuses the value (SQLITE_TOOBIG).
    store = SqliteStore(path, max_item_bytes=10 * 1024 * 1024)
    store._db.connection().setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 4096)
    with pytest.raises(ItemTooLargeError) as raised:
        store.put_delivery(Delivery(id="d", contact_id="con_1", destination="crm", last_error="x" * 8192))
    assert isinstance(raised.value.__cause__, sqlite3.DataError)


def test_purge_expired_removes_expired_dead_letters_and_remembered_keys(path):
    store = SqliteStore(path)
    store.put_dead_letter(letter("dlv_old", expires_at=NOW - timedelta(minutes=1)))
    store.put_dead_letter(letter("dlv_new", expires_at=NOW + timedelta(days=1)))
    store.put_dead_letter(letter("dlv_forever", expires_at=None, customer_id=None))
    store.remember("old", expires_at=NOW - timedelta(minutes=1))
    store.remember("new", expires_at=NOW + timedelta(days=1))

    assert store.purge_expired(NOW) == 2

    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT id FROM dead_letters ORDER BY id")] == ["dlv_forever", "dlv_new"]
        assert [r[0] for r in conn.execute("SELECT key FROM remembered")] == ["new"]


def test_a_database_from_before_dead_letter_retention_is_upgraded_in_place(path):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE dead_letters (id TEXT PRIMARY KEY, destination TEXT NOT NULL, doc TEXT NOT NULL)")
        conn.execute("INSERT INTO dead_letters VALUES ('dlv_legacy', 'crm', ?)",
                     (letter("dlv_legacy", expires_at=None, customer_id=None).model_dump_json(),))

    store = SqliteStore(path)
    SqliteStore(path).close()  # opening again finds the columns in place
    store.put_dead_letter(letter("dlv_1", expires_at=NOW + timedelta(days=1)))

    assert [kept.id for kept in store.list_dead_letters(limit=10).items] == ["dlv_1", "dlv_legacy"]
    assert [kept.id for kept in store.dead_letters_of("cus_1")] == ["dlv_1"]
