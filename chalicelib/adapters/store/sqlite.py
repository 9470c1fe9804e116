"""SQLite implementation of the store, for the embedded runtime. Same contract as DynamoDB.

One table per kind of record. A use case's writes run in one `BEGIN IMMEDIATE` transaction, so
a lost condition rolls back everything before it; `purge_expired` does what DynamoDB's TTL does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

from chalicelib.adapters.sqlite_db import SqliteDatabase
from chalicelib.adapters.store.base import MAX_ITEM_BYTES, Store
from chalicelib.adapters.store.records import (
    ClaimIdentifier,
    ConditionLost,
    DeadLetters,
    DeleteCase,
    DeleteContact,
    DeleteCustomer,
    DeleteDeadLetter,
    DeleteFiledUnder,
    DeleteMerge,
    DeleteOutbox,
    DeleteSentLink,
    DeleteStatuses,
    DeleteThread,
    Doc,
    IdentifierMove,
    Link,
    Listing,
    MarkDone,
    Once,
    ParkedQueue,
    PutCase,
    PutCaseRef,
    PutContact,
    PutCustomer,
    PutDeadLetter,
    PutDelivery,
    PutMerge,
    PutParked,
    PutOutbox,
    PutSentLink,
    PutThread,
    PutTombstone,
    ReleaseIdentifier,
    Remembered,
    RequireNotErased,
    Segment,
    StatusRecord,
    TakeParked,
    Timeline,
    Tree,
    UnhandledDay,
    UnhandledRecord,
    Write,
)
from chalicelib.domain.segments import stored_index_entries
from chalicelib.domain.values import astuple
from chalicelib.errors import HubError, ItemTooLargeError, StoreRejectedError, StoreUnavailableError

_SCHEMA = """
-- `lease_until` is no longer written (it held the lease a worker took on a message before the
-- commit's done marker became conditional); it stays so that existing databases open unchanged.
CREATE TABLE IF NOT EXISTS dedupe (
    key TEXT PRIMARY KEY, state TEXT NOT NULL, lease_until REAL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS identifiers (key TEXT PRIMARY KEY, customer_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS customers (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS contacts (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS contacts_by_customer ON contacts (customer_id, id);
CREATE TABLE IF NOT EXISTS cases (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS case_refs (
    case_id TEXT NOT NULL, destination TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (case_id, destination));
CREATE TABLE IF NOT EXISTS deliveries (
    contact_id TEXT NOT NULL, destination TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (contact_id, destination));
CREATE TABLE IF NOT EXISTS threads (key TEXT PRIMARY KEY, case_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY, destination TEXT NOT NULL, doc TEXT NOT NULL, customer_id TEXT, expires_at REAL);
CREATE INDEX IF NOT EXISTS dead_letters_by_destination ON dead_letters (destination, id);
CREATE TABLE IF NOT EXISTS parked (contact_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS merges (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tombstones (customer_id TEXT PRIMARY KEY, erased_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS statuses (
    provider TEXT NOT NULL, message_id TEXT NOT NULL, status TEXT NOT NULL, seq INTEGER NOT NULL,
    doc TEXT NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (provider, message_id, status));
CREATE INDEX IF NOT EXISTS statuses_seq ON statuses (seq);
CREATE TABLE IF NOT EXISTS unhandled (
    day TEXT NOT NULL, id TEXT NOT NULL, provider TEXT NOT NULL, doc TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (day, id));
CREATE INDEX IF NOT EXISTS unhandled_expiry ON unhandled (expires_at);
CREATE TABLE IF NOT EXISTS remembered (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sent (key TEXT PRIMARY KEY, contact_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS case_ref_links (key TEXT PRIMARY KEY, case_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outboxes (key TEXT PRIMARY KEY, doc TEXT NOT NULL);
-- The segment index (`Store.segment_page`): a customer's normalized value of each indexed
-- attribute, by slot; `customer_index_attributes` names the attribute each slot was built for.
CREATE TABLE IF NOT EXISTS customer_index (
    slot INTEGER NOT NULL, value TEXT NOT NULL, customer_id TEXT NOT NULL, PRIMARY KEY (slot, value, customer_id));
CREATE INDEX IF NOT EXISTS customer_index_by_customer ON customer_index (customer_id);
CREATE TABLE IF NOT EXISTS customer_index_attributes (slot INTEGER PRIMARY KEY, attribute TEXT NOT NULL);
"""

#: Columns added after a table first shipped: `CREATE TABLE IF NOT EXISTS` leaves an existing
#: database's table as it was, so opening one adds them (with their index) in place.
_ADDED_COLUMNS = {"dead_letters": ("customer_id TEXT", "expires_at REAL")}
_ADDED_INDEXES = ("CREATE INDEX IF NOT EXISTS dead_letters_by_customer ON dead_letters (customer_id)",)

_READS = {
    Doc.CUSTOMER: "SELECT doc FROM customers WHERE id = ?",
    Doc.MERGE: "SELECT doc FROM merges WHERE id = ?",
    Doc.DELIVERY: "SELECT doc FROM deliveries WHERE contact_id = ? AND destination = ?",
    Doc.DEAD_LETTER: "SELECT doc FROM dead_letters WHERE id = ?",
    Doc.OUTBOX: "SELECT doc FROM outboxes WHERE key = ?",
}
#: The table and key column of each document read by one key, for reads of many keys at once.
_MANY = {Doc.CUSTOMER: ("customers", "id"), Doc.MERGE: ("merges", "id"), Doc.DEAD_LETTER: ("dead_letters", "id"),
         Doc.OUTBOX: ("outboxes", "key")}
_TREES = {
    Tree.CONTACT: ("SELECT doc FROM contacts WHERE id = ?",
                   "SELECT doc FROM deliveries WHERE contact_id = ? ORDER BY destination"),
    Tree.CASE: ("SELECT doc FROM cases WHERE id = ?", "SELECT doc FROM case_refs WHERE case_id = ? ORDER BY destination"),
}
_LINKS = {Link.IDENTIFIER: "SELECT key, customer_id AS target FROM identifiers",
          Link.THREAD: "SELECT key, case_id AS target FROM threads",
          Link.SENT: "SELECT key, contact_id AS target FROM sent",
          Link.CASE_REF: "SELECT key, case_id AS target FROM case_ref_links"}
#: One statement each: insert, or replace a record whose `expires_at` passed (the last `?`);
#: the values are the record's fields in order. (The `statuses.status` column holds the record's
#: `variant`: named before reports were told apart by code, and kept so local databases stay valid.)
_ONCE = {
    StatusRecord: "INSERT INTO statuses (provider, message_id, status, doc, expires_at, seq)"
                  " VALUES (?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM statuses))"
                  " ON CONFLICT (provider, message_id, status) DO UPDATE SET doc = excluded.doc,"
                  " expires_at = excluded.expires_at, seq = excluded.seq WHERE statuses.expires_at <= ?",
    UnhandledRecord: "INSERT INTO unhandled (day, id, provider, doc, expires_at) VALUES (?, ?, ?, ?, ?)"
                     " ON CONFLICT (day, id) DO UPDATE SET provider = excluded.provider, doc = excluded.doc,"
                     " expires_at = excluded.expires_at WHERE unhandled.expires_at <= ?",
}
_REMEMBER = ("INSERT INTO remembered (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE"
             " SET value = excluded.value, expires_at = excluded.expires_at WHERE remembered.expires_at <= ?")
#: SQLite's default limit of bound parameters is 32766; stay far below it.
_CHUNK = 500


class SqliteStore(Store):
    backend = "sqlite"

    def __init__(self, path: str, *, max_item_bytes: int = MAX_ITEM_BYTES, indexed_attributes: Sequence[str] = ()) -> None:
        super().__init__(max_item_bytes=max_item_bytes, indexed_attributes=indexed_attributes)
        try:
            self._db = SqliteDatabase(path, _SCHEMA)
            with self._db.write() as conn:
                _upgrade(conn)
                _reindex_if_changed(conn, self.indexed_attributes)
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot open store database: {exc}") from None

    def purge_expired(self, now: datetime) -> int:
        """Delete expired dedupe, status, unhandled, dead-letter and remembered records
        (DynamoDB's TTL does this on AWS); how many."""
        return self._run("purge_expired", self._purge, now.timestamp())

    def close(self) -> None:
        self._db.close()

    # --- primitives ------------------------------------------------------------------------------

    def _failure(self, exc: Exception) -> tuple[type[HubError], str] | None:
        if isinstance(exc, sqlite3.DataError):
            # SQLITE_TOOBIG and its kind: the same value is refused again.
            return (ItemTooLargeError if "too big" in str(exc) else StoreRejectedError), type(exc).__name__
        if isinstance(exc, sqlite3.Error):
            # A locked or busy database, a full disk, a missing table: worth a retry.
            return StoreUnavailableError, type(exc).__name__
        return None

    def _begin(self, dedupe_key: str, now: datetime, identifier_keys: list[str],
               customer_id: str | None) -> tuple[bool, dict[str, str], str | None]:
        conn = self._db.read()
        # An expired marker `purge_expired` has not deleted yet counts as absent.
        done = conn.execute("SELECT 1 FROM dedupe WHERE key = ? AND state = 'done' AND expires_at > ?",
                            (dedupe_key, now.timestamp())).fetchone() is not None
        owners = self._lookup(Link.IDENTIFIER, identifier_keys) if identifier_keys else {}
        doc = self._read(Doc.CUSTOMER, (customer_id,)) if customer_id is not None else None
        return done, owners, doc

    def _put_once(self, record: Once, now: datetime) -> bool:
        values = [_column(value) for value in astuple(record)]
        with self._db.write() as conn:
            return conn.execute(_ONCE[type(record)], (*values, now.timestamp())).rowcount == 1

    def _remember(self, record: Remembered, now: datetime) -> str | None:
        with self._db.write() as conn:
            if conn.execute(_REMEMBER, (record.key, record.value, record.expires_at.timestamp(),
                                        now.timestamp())).rowcount == 1:
                return None
            return conn.execute("SELECT value FROM remembered WHERE key = ?", (record.key,)).fetchone()["value"]

    def _read(self, doc: Doc, key: tuple[str, ...]) -> str | None:
        row = self._db.read().execute(_READS[doc], key).fetchone()
        return row["doc"] if row else None

    def _read_many(self, doc: Doc, keys: list[str]) -> dict[str, str]:
        table, column = _MANY[doc]
        found: dict[str, str] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            rows = self._db.read().execute(
                f"SELECT {column} AS key, doc FROM {table} WHERE {column} IN ({','.join('?' * len(chunk))})", chunk)
            found.update((row["key"], row["doc"]) for row in rows.fetchall())
        return found

    def _read_tree(self, tree: Tree, key: str) -> tuple[str | None, list[str]]:
        parent, children = _TREES[tree]
        conn = self._db.read()
        row = conn.execute(parent, (key,)).fetchone()
        if row is None:
            return None, []
        return row["doc"], [child["doc"] for child in conn.execute(children, (key,)).fetchall()]

    def _lookup(self, link: Link, keys: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            rows = self._db.read().execute(f"{_LINKS[link]} WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            found.update((row["key"], row["target"]) for row in rows.fetchall())
        return found

    def _list(self, listing: Listing, limit: int, cursor: str | None) -> tuple[list[str], bool]:
        """Keyset paging in id order (ids are time-ordered), so a page costs the same however
        deep the cursor."""
        key, newest_first = "id", False
        match listing:
            case Timeline(customer_id=customer_id):
                sql, args, newest_first = "SELECT doc FROM contacts WHERE customer_id = ?", [customer_id], True
            case ParkedQueue():
                sql, args, key = "SELECT doc FROM parked WHERE 1 = 1", [], "contact_id"
            case DeadLetters(destination=destination, now=now):
                sql, args = "SELECT doc FROM dead_letters WHERE (expires_at IS NULL OR expires_at > ?)", [now.timestamp()]
                if destination is not None:
                    sql, args = sql + " AND destination = ?", [*args, destination]
            case UnhandledDay(day=day, provider=provider, now=now):
                sql, args = "SELECT doc FROM unhandled WHERE day = ? AND expires_at > ?", [day.isoformat(), now.timestamp()]
                if provider is not None:
                    sql, args = sql + " AND provider = ?", [*args, provider]
            case Segment(slot=slot, value=value):
                sql, args, key = ("SELECT customer_id AS doc FROM customer_index WHERE slot = ? AND value = ?",
                                  [slot, value], "customer_id")
        if cursor:
            sql, args = sql + f" AND {key} {'<' if newest_first else '>'} ?", [*args, cursor]
        sql += f" ORDER BY {key} {'DESC' if newest_first else 'ASC'} LIMIT ?"
        rows = self._db.read().execute(sql, [*args, limit + 1]).fetchall()
        return [row["doc"] for row in rows[:limit]], len(rows) > limit

    def _reindex(self, attributes: tuple[str, ...], limit: int, cursor: str | None) -> tuple[int, int, str | None]:
        with self._db.write() as conn:
            rows = conn.execute("SELECT id, doc FROM customers WHERE id > ? ORDER BY id LIMIT ?",
                                (cursor or "", limit + 1)).fetchall()
            changed = 0
            for row in rows[:limit]:
                wanted = set(stored_index_entries(row["doc"], attributes))
                held = {(r["slot"], r["value"]) for r in conn.execute(
                    "SELECT slot, value FROM customer_index WHERE customer_id = ?", (row["id"],))}
                if wanted != held:
                    changed += 1
                    conn.execute("DELETE FROM customer_index WHERE customer_id = ?", (row["id"],))
                    conn.executemany("INSERT INTO customer_index (slot, value, customer_id) VALUES (?, ?, ?)",
                                     [(slot, value, row["id"]) for slot, value in sorted(wanted)])
        more = len(rows) > limit
        return min(len(rows), limit), changed, rows[limit - 1]["id"] if more else None

    def _filed_dead_letters(self, customer_id: str) -> list[str]:
        rows = self._db.read().execute("SELECT doc FROM dead_letters WHERE customer_id = ? ORDER BY id", (customer_id,))
        return [row["doc"] for row in rows.fetchall()]

    def _statuses(self, provider: str, message_id: str) -> list[str]:
        rows = self._db.read().execute(
            "SELECT doc FROM statuses WHERE provider = ? AND message_id = ? ORDER BY seq", (provider, message_id)
        ).fetchall()
        return [row["doc"] for row in rows]

    def _is_erased(self, customer_id: str) -> bool:
        return self._db.read().execute("SELECT 1 FROM tombstones WHERE customer_id = ?", (customer_id,)).fetchone() is not None

    def _ping(self) -> None:
        self._db.read().execute("SELECT 1").fetchone()

    def _write(self, writes: Sequence[Write]) -> None:
        with self._db.write() as conn:
            for write in writes:
                _APPLY[type(write)](conn, write)

    def _purge(self, stamp: float) -> int:
        with self._db.write() as conn:
            return sum(
                conn.execute(f"DELETE FROM {table} WHERE expires_at <= ?", (stamp,)).rowcount
                for table in ("dedupe", "statuses", "unhandled", "dead_letters", "remembered")
            )


def _upgrade(conn: sqlite3.Connection) -> None:
    for table, columns in _ADDED_COLUMNS.items():
        present = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
        for column in columns:
            if column.split()[0] not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
    for statement in _ADDED_INDEXES:
        conn.execute(statement)


def _reindex_if_changed(conn: sqlite3.Connection, attributes: tuple[str, ...]) -> None:
    """Rebuild the segment index from the customers when the indexed attributes differ from those
    it was built for (a database from before the index, a changed `customers.indexed_attributes`):
    one pass over the customers, at start-up only."""
    built = tuple(row["attribute"] for row in conn.execute("SELECT attribute FROM customer_index_attributes ORDER BY slot"))
    if built == attributes:
        return
    conn.execute("DELETE FROM customer_index")
    conn.execute("DELETE FROM customer_index_attributes")
    conn.executemany("INSERT INTO customer_index_attributes (slot, attribute) VALUES (?, ?)",
                     list(enumerate(attributes, start=1)))
    if not attributes:
        return
    rows = conn.execute("SELECT id, doc FROM customers")
    while batch := rows.fetchmany(_CHUNK):
        entries = [(slot, value, row["id"])
                   for row in batch for slot, value in stored_index_entries(row["doc"], attributes)]
        conn.executemany("INSERT OR IGNORE INTO customer_index (slot, value, customer_id) VALUES (?, ?, ?)", entries)


def _column(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, date):
        return value.isoformat()
    return value


# --- each write inside the transaction; a lost condition raises `ConditionLost` --------------------


def _put_customer(conn: sqlite3.Connection, write: PutCustomer) -> None:
    if write.expected_version is not None:
        row = conn.execute("SELECT COALESCE(json_extract(doc, '$.version'), 0) AS version FROM customers WHERE id = ?",
                           (write.customer_id,)).fetchone()
        if row is None or row["version"] != write.expected_version:
            raise ConditionLost(write)
    conn.execute("INSERT OR REPLACE INTO customers (id, doc) VALUES (?, ?)", (write.customer_id, write.doc))
    # The customer's index entries are replaced in the same transaction, so a changed value never
    # lists the customer under both values.
    conn.execute("DELETE FROM customer_index WHERE customer_id = ?", (write.customer_id,))
    if write.indexed:
        conn.executemany("INSERT INTO customer_index (slot, value, customer_id) VALUES (?, ?, ?)",
                         [(slot, value, write.customer_id) for slot, value in write.indexed])


def _put_contact(conn: sqlite3.Connection, write: PutContact) -> None:
    # One statement either way: `only_new` leaves an existing row alone and tells by the row count,
    # so a broadcast's hundred thousand outbound contacts cost no extra lookup each.
    if not write.only_new:
        conn.execute("INSERT OR REPLACE INTO contacts (id, customer_id, doc) VALUES (?, ?, ?)",
                     (write.contact_id, write.customer_id, write.doc))
    elif conn.execute("INSERT INTO contacts (id, customer_id, doc) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
                      (write.contact_id, write.customer_id, write.doc)).rowcount != 1:
        raise ConditionLost(write)


def _claim_identifier(conn: sqlite3.Connection, write: ClaimIdentifier) -> None:
    row = conn.execute("SELECT customer_id FROM identifiers WHERE key = ?", (write.key,)).fetchone()
    if row is None:
        conn.execute("INSERT INTO identifiers (key, customer_id) VALUES (?, ?)", (write.key, write.owner))
    elif not write.allow_same_owner or row["customer_id"] != write.owner:
        raise ConditionLost(write, row["customer_id"])


def _move_identifier(conn: sqlite3.Connection, write: IdentifierMove) -> None:
    moved = conn.execute("UPDATE identifiers SET customer_id = ? WHERE key = ? AND customer_id = ?",
                         (write.to_customer, write.key, write.from_customer)).rowcount
    if moved != 1:
        raise ConditionLost(write)


def _take_parked(conn: sqlite3.Connection, write: TakeParked) -> None:
    if conn.execute("DELETE FROM parked WHERE contact_id = ?", (write.contact_id,)).rowcount != 1:
        raise ConditionLost(write)


def _require_not_erased(conn: sqlite3.Connection, write: RequireNotErased) -> None:
    if conn.execute("SELECT 1 FROM tombstones WHERE customer_id = ?", (write.customer_id,)).fetchone() is not None:
        raise ConditionLost(write)


#: The done marker as one upsert: a live `done` marker (expiring after `unless_done_at`) is left
#: alone, which the row count (0) tells; anything else (no row, an expired one) becomes `done`.
_MARK_DONE_UNLESS = (
    "INSERT INTO dedupe (key, state, lease_until, expires_at) VALUES (?, 'done', NULL, ?) "
    "ON CONFLICT (key) DO UPDATE SET state = 'done', lease_until = NULL, expires_at = excluded.expires_at "
    "WHERE NOT (dedupe.state = 'done' AND dedupe.expires_at > ?)"
)


def _mark_done(conn: sqlite3.Connection, write: MarkDone) -> None:
    if write.unless_done_at is None:
        conn.execute("INSERT OR REPLACE INTO dedupe (key, state, lease_until, expires_at) VALUES (?, 'done', NULL, ?)",
                     (write.key, write.expires_at.timestamp()))
    elif conn.execute(_MARK_DONE_UNLESS, (write.key, write.expires_at.timestamp(),
                                          write.unless_done_at.timestamp())).rowcount != 1:
        raise ConditionLost(write)


def _statements(*statements: tuple[str, Callable[[Any], tuple]]) -> Callable[[sqlite3.Connection, Any], None]:
    """A write made of plain statements, each with the function that takes its parameters."""

    def apply(conn: sqlite3.Connection, write: Any) -> None:
        for sql, params in statements:
            conn.execute(sql, params(write))

    return apply


_APPLY: dict[type, Callable[[sqlite3.Connection, Any], None]] = {
    PutCustomer: _put_customer,
    ClaimIdentifier: _claim_identifier,
    IdentifierMove: _move_identifier,
    TakeParked: _take_parked,
    RequireNotErased: _require_not_erased,
    PutContact: _put_contact,
    PutCase: _statements(("INSERT OR REPLACE INTO cases (id, doc) VALUES (?, ?)", lambda w: (w.case_id, w.doc))),
    PutCaseRef: _statements(("INSERT OR REPLACE INTO case_refs (case_id, destination, doc) VALUES (?, ?, ?)",
                             lambda w: (w.case_id, w.destination, w.doc)),
                            ("INSERT OR REPLACE INTO case_ref_links (key, case_id) VALUES (?, ?)",
                             lambda w: (w.ref, w.case_id))),
    PutDelivery: _statements(("INSERT OR REPLACE INTO deliveries (contact_id, destination, doc) VALUES (?, ?, ?)",
                              lambda w: (w.contact_id, w.destination, w.doc))),
    # A thread key keeps the case it first named (see `ContactCommit.thread_keys`).
    PutThread: _statements(("INSERT OR IGNORE INTO threads (key, case_id) VALUES (?, ?)", lambda w: (w.key, w.case_id))),
    PutSentLink: _statements(("INSERT OR REPLACE INTO sent (key, contact_id) VALUES (?, ?)",
                              lambda w: (w.key, w.contact_id))),
    PutOutbox: _statements(("INSERT OR REPLACE INTO outboxes (key, doc) VALUES (?, ?)", lambda w: (w.key, w.doc))),
    DeleteSentLink: _statements(("DELETE FROM sent WHERE key = ?", lambda w: (w.key,))),
    DeleteOutbox: _statements(("DELETE FROM outboxes WHERE key = ?", lambda w: (w.key,))),
    DeleteStatuses: _statements(("DELETE FROM statuses WHERE provider = ? AND message_id = ?",
                                 lambda w: (w.provider, w.message_id))),
    MarkDone: _mark_done,
    PutParked: _statements(("INSERT OR REPLACE INTO parked (contact_id, doc) VALUES (?, ?)",
                            lambda w: (w.contact_id, w.doc))),
    PutMerge: _statements(("INSERT OR REPLACE INTO merges (id, doc) VALUES (?, ?)", lambda w: (w.merge_id, w.doc))),
    PutDeadLetter: _statements((
        "INSERT OR REPLACE INTO dead_letters (id, destination, customer_id, expires_at, doc) VALUES (?, ?, ?, ?, ?)",
        lambda w: (w.letter_id, w.destination, w.customer_id, _column(w.expires_at), w.doc))),
    DeleteDeadLetter: _statements(("DELETE FROM dead_letters WHERE id = ?", lambda w: (w.letter_id,))),
    PutTombstone: _statements(("INSERT OR REPLACE INTO tombstones (customer_id, erased_at) VALUES (?, ?)",
                               lambda w: (w.customer_id, w.erased_at.isoformat()))),
    ReleaseIdentifier: _statements(("DELETE FROM identifiers WHERE key = ? AND customer_id = ?",
                                    lambda w: (w.key, w.owner))),
    DeleteFiledUnder: _statements(
        # SQLite finds the identifier links by owner too: any the profile no longer names go as well.
        ("DELETE FROM identifiers WHERE customer_id = ?", lambda w: (w.customer_id,)),
        ("DELETE FROM contacts WHERE customer_id = ?", lambda w: (w.customer_id,)),
        ("DELETE FROM dead_letters WHERE customer_id = ?", lambda w: (w.customer_id,)),
        ("DELETE FROM customer_index WHERE customer_id = ?", lambda w: (w.customer_id,)),
    ),
    DeleteContact: _statements(
        ("DELETE FROM deliveries WHERE contact_id = ?", lambda w: (w.contact_id,)),
        ("DELETE FROM contacts WHERE id = ?", lambda w: (w.contact_id,)),
        ("DELETE FROM parked WHERE contact_id = ?", lambda w: (w.contact_id,)),
    ),
    DeleteCase: _statements(
        ("DELETE FROM cases WHERE id = ?", lambda w: (w.case_id,)),
        ("DELETE FROM case_refs WHERE case_id = ?", lambda w: (w.case_id,)),
        ("DELETE FROM case_ref_links WHERE case_id = ?", lambda w: (w.case_id,)),
        ("DELETE FROM threads WHERE case_id = ?", lambda w: (w.case_id,)),
    ),
    DeleteThread: _statements(("DELETE FROM threads WHERE key = ?", lambda w: (w.key,))),
    DeleteMerge: _statements(("DELETE FROM merges WHERE id = ?", lambda w: (w.merge_id,))),
    DeleteCustomer: _statements(("DELETE FROM customers WHERE id = ?", lambda w: (w.customer_id,)),
                                ("DELETE FROM customer_index WHERE customer_id = ?", lambda w: (w.customer_id,))),
}
