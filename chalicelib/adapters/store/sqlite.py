"""SQLite implementation of the store, for the embedded runtime. Same contract as DynamoDB."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import date, datetime
from typing import TypeVar

from chalicelib.adapters.sqlite_db import SqliteDatabase
from chalicelib.adapters.store.base import (
    ClaimState,
    ContactCommit,
    Erasure,
    IdentifierTakenError,
    MergeCommit,
    Page,
    Store,
    parked_entry,
)
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.identity_rules import BLOCKED_OWNER
from chalicelib.domain.models import (
    Case,
    Contact,
    Customer,
    DeadLetter,
    Delivery,
    ExternalRef,
    MergeRecord,
    ParkedContact,
    StatusEvent,
    UnhandledEvent,
    utcnow,
)
from chalicelib.errors import ConcurrentUpdateError, ConflictError, StoreUnavailableError

T = TypeVar("T")

_SCHEMA = """
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
CREATE TABLE IF NOT EXISTS dead_letters (id TEXT PRIMARY KEY, destination TEXT NOT NULL, doc TEXT NOT NULL);
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
"""


class SqliteStore(Store):
    def __init__(self, path: str) -> None:
        try:
            self._db = SqliteDatabase(path, _SCHEMA)
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot open store database: {exc}") from None

    # --- exactly-once processing -----------------------------------------------------------------

    def claim(self, key: str, *, now: datetime, lease_until: datetime, expires_at: datetime) -> str:
        with self._guard(), self._db.write() as conn:
            row = conn.execute("SELECT state, lease_until, expires_at FROM dedupe WHERE key = ?", (key,)).fetchone()
            stamp = now.timestamp()
            if row is not None and row["expires_at"] > stamp:
                if row["state"] == "done":
                    return ClaimState.DONE
                if row["lease_until"] is not None and row["lease_until"] > stamp:
                    return ClaimState.BUSY
            conn.execute(
                "INSERT OR REPLACE INTO dedupe (key, state, lease_until, expires_at) VALUES (?, 'in_progress', ?, ?)",
                (key, lease_until.timestamp(), expires_at.timestamp()),
            )
            return ClaimState.ACQUIRED

    def release(self, key: str) -> None:
        with self._guard(), self._db.write() as conn:
            conn.execute("DELETE FROM dedupe WHERE key = ? AND state = 'in_progress'", (key,))

    # --- customers -------------------------------------------------------------------------------

    def find_customer_ids(self, identifiers: list[Identifier]) -> dict[str, str]:
        keys = [i.key for i in identifiers]
        if not keys:
            return {}
        with self._guard():
            rows = self._db.read().execute(
                f"SELECT key, customer_id FROM identifiers WHERE key IN ({','.join('?' * len(keys))})", keys
            ).fetchall()
        return {row["key"]: row["customer_id"] for row in rows}

    def get_customer(self, customer_id: str) -> Customer | None:
        with self._guard():
            row = self._db.read().execute("SELECT doc FROM customers WHERE id = ?", (customer_id,)).fetchone()
        return Customer.model_validate_json(row["doc"]) if row else None

    def create_customer(self, customer: Customer) -> None:
        with self._guard(), self._db.write() as conn:
            for identifier in customer.identifiers:
                row = conn.execute("SELECT customer_id FROM identifiers WHERE key = ?", (identifier.key,)).fetchone()
                if row is not None:
                    raise IdentifierTakenError(identifier.key, row["customer_id"])
            conn.execute("INSERT INTO customers (id, doc) VALUES (?, ?)", (customer.id, customer.model_dump_json()))
            conn.executemany(
                "INSERT INTO identifiers (key, customer_id) VALUES (?, ?)",
                [(i.key, customer.id) for i in customer.identifiers],
            )

    def commit_merge(self, commit: MergeCommit) -> None:
        with self._guard(), self._db.write() as conn:
            for customer in commit.customers:
                _write_customer(conn, customer, (), ())
            for move in commit.moves:
                moved = conn.execute(
                    "UPDATE identifiers SET customer_id = ? WHERE key = ? AND customer_id = ?",
                    (move.to_customer, move.key, move.from_customer),
                ).rowcount
                if moved != 1:
                    raise ConcurrentUpdateError(f"an identifier of customer {move.from_customer} changed owner")
            _write_cases(conn, commit.cases)
            conn.execute(
                "INSERT OR REPLACE INTO merges (id, doc) VALUES (?, ?)", (commit.record.id, commit.record.model_dump_json())
            )

    def get_merge(self, merge_id: str) -> MergeRecord | None:
        with self._guard():
            row = self._db.read().execute("SELECT doc FROM merges WHERE id = ?", (merge_id,)).fetchone()
        return MergeRecord.model_validate_json(row["doc"]) if row else None

    # --- contacts and cases ----------------------------------------------------------------------

    def update_customer(
        self, customer: Customer, *, new_identifiers: tuple[Identifier, ...] = (), cases: tuple[Case, ...] = ()
    ) -> None:
        with self._guard(), self._db.write() as conn:
            _write_customer(conn, customer, new_identifiers, cases)

    def commit_contact(self, commit: ContactCommit) -> None:
        contact, case = commit.contact, commit.case
        with self._guard(), self._db.write() as conn:
            _write_customer(conn, commit.customer, commit.new_identifiers, (case, *commit.other_cases))
            for identifier in commit.blocked_identifiers:
                owner = conn.execute("SELECT customer_id FROM identifiers WHERE key = ?", (identifier.key,)).fetchone()
                if owner is not None and owner["customer_id"] != BLOCKED_OWNER:
                    raise IdentifierTakenError(identifier.key, owner["customer_id"])
                conn.execute(
                    "INSERT OR IGNORE INTO identifiers (key, customer_id) VALUES (?, ?)", (identifier.key, BLOCKED_OWNER)
                )
            _write_contact(conn, contact)
            if contact.routing.parked is not None:
                conn.execute("INSERT OR REPLACE INTO parked (contact_id, doc) VALUES (?, ?)",
                             (contact.id, parked_entry(contact).model_dump_json()))
            conn.executemany(
                # A thread key keeps the case it first named (see `ContactCommit.thread_keys`).
                "INSERT OR IGNORE INTO threads (key, case_id) VALUES (?, ?)",
                [(key, case.id) for key in commit.thread_keys],
            )
            _mark_done(conn, commit.dedupe_key, commit.dedupe_expires_at)

    def find_threads(self, thread_keys: list[str]) -> dict[str, str]:
        if not thread_keys:
            return {}
        with self._guard():
            rows = self._db.read().execute(
                f"SELECT key, case_id FROM threads WHERE key IN ({','.join('?' * len(thread_keys))})", thread_keys
            ).fetchall()
        return {row["key"]: row["case_id"] for row in rows}

    def get_contact(self, contact_id: str) -> Contact | None:
        with self._guard():
            conn = self._db.read()
            row = conn.execute("SELECT doc FROM contacts WHERE id = ?", (contact_id,)).fetchone()
            if row is None:
                return None
            deliveries = conn.execute(
                "SELECT doc FROM deliveries WHERE contact_id = ? ORDER BY destination", (contact_id,)
            ).fetchall()
        contact = Contact.model_validate_json(row["doc"])
        contact.deliveries = [Delivery.model_validate_json(d["doc"]) for d in deliveries]
        return contact

    def list_contacts(self, customer_id: str, *, limit: int, cursor: str | None = None) -> Page[Contact]:
        return self._page("SELECT id, doc FROM contacts WHERE customer_id = ?", [customer_id], cursor=cursor,
                          limit=limit, parse=Contact.model_validate_json, newest_first=True)

    def get_case(self, case_id: str) -> Case | None:
        with self._guard():
            conn = self._db.read()
            row = conn.execute("SELECT doc FROM cases WHERE id = ?", (case_id,)).fetchone()
            if row is None:
                return None
            refs = conn.execute("SELECT doc FROM case_refs WHERE case_id = ?", (case_id,)).fetchall()
        case = Case.model_validate_json(row["doc"])
        for ref_row in refs:
            ref = ExternalRef.model_validate_json(ref_row["doc"])
            case.external_refs[ref.destination] = ref
        return case

    def put_case_ref(self, case_id: str, destination: str, ref: str) -> None:
        doc = ExternalRef(destination=destination, ref=ref, updated_at=utcnow()).model_dump_json()
        with self._guard(), self._db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO case_refs (case_id, destination, doc) VALUES (?, ?, ?)",
                (case_id, destination, doc),
            )

    # --- exception queue -------------------------------------------------------------------------

    def list_parked(self, *, limit: int, cursor: str | None = None) -> Page[ParkedContact]:
        sql, args = "SELECT contact_id, doc FROM parked", []
        if cursor:
            sql += " WHERE contact_id > ?"
            args.append(cursor)
        sql += " ORDER BY contact_id LIMIT ?"
        args.append(limit + 1)
        with self._guard():
            rows = self._db.read().execute(sql, args).fetchall()
        items = [ParkedContact.model_validate_json(r["doc"]) for r in rows[:limit]]
        return Page(items=items, cursor=items[-1].contact_id if len(rows) > limit else None)

    def release_parked(self, contact: Contact) -> None:
        with self._guard(), self._db.write() as conn:
            if conn.execute("DELETE FROM parked WHERE contact_id = ?", (contact.id,)).rowcount != 1:
                raise ConflictError(f"contact {contact.id} is not in the exception queue")
            _write_contact(conn, contact)

    # --- deliveries ------------------------------------------------------------------------------

    def get_delivery(self, contact_id: str, destination: str) -> Delivery | None:
        with self._guard():
            row = self._db.read().execute(
                "SELECT doc FROM deliveries WHERE contact_id = ? AND destination = ?", (contact_id, destination)
            ).fetchone()
        return Delivery.model_validate_json(row["doc"]) if row else None

    def put_delivery(self, delivery: Delivery) -> None:
        with self._guard(), self._db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO deliveries (contact_id, destination, doc) VALUES (?, ?, ?)",
                (delivery.contact_id, delivery.destination, delivery.model_dump_json()),
            )

    def put_dead_letter(self, letter: DeadLetter) -> None:
        with self._guard(), self._db.write() as conn:
            conn.execute("INSERT OR REPLACE INTO dead_letters (id, destination, doc) VALUES (?, ?, ?)",
                         (letter.id, letter.destination, letter.model_dump_json()))

    def list_dead_letters(self, *, destination: str | None = None, limit: int,
                          cursor: str | None = None) -> Page[DeadLetter]:
        sql, args = "SELECT id, doc FROM dead_letters WHERE 1 = 1", []
        if destination is not None:
            sql += " AND destination = ?"
            args.append(destination)
        return self._page(sql, args, cursor=cursor, limit=limit, parse=DeadLetter.model_validate_json)

    def get_dead_letter(self, letter_id: str) -> DeadLetter | None:
        with self._guard():
            row = self._db.read().execute("SELECT doc FROM dead_letters WHERE id = ?", (letter_id,)).fetchone()
        return DeadLetter.model_validate_json(row["doc"]) if row else None

    def delete_dead_letter(self, letter_id: str) -> None:
        with self._guard(), self._db.write() as conn:
            conn.execute("DELETE FROM dead_letters WHERE id = ?", (letter_id,))

    # --- status events ---------------------------------------------------------------------------

    def record_status(self, event: StatusEvent, *, expires_at: datetime) -> bool:
        with self._guard(), self._db.write() as conn:
            row = conn.execute(
                "SELECT expires_at FROM statuses WHERE provider = ? AND message_id = ? AND status = ?",
                (event.provider, event.provider_message_id, event.status),
            ).fetchone()
            if row is not None and row["expires_at"] > utcnow().timestamp():
                return False
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM statuses").fetchone()[0]
            conn.execute(
                "INSERT OR REPLACE INTO statuses (provider, message_id, status, seq, doc, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (event.provider, event.provider_message_id, event.status, seq, event.model_dump_json(),
                 expires_at.timestamp()),
            )
            return True

    def list_statuses(self, provider: str, provider_message_id: str) -> list[StatusEvent]:
        with self._guard():
            rows = self._db.read().execute(
                "SELECT doc FROM statuses WHERE provider = ? AND message_id = ? ORDER BY seq",
                (provider, provider_message_id),
            ).fetchall()
        return [StatusEvent.model_validate_json(r["doc"]) for r in rows]

    # --- unhandled webhook items -----------------------------------------------------------------

    def record_unhandled(self, event: UnhandledEvent, *, expires_at: datetime) -> bool:
        with self._guard(), self._db.write() as conn:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO unhandled (day, id, provider, doc, expires_at) VALUES (?, ?, ?, ?, ?)",
                (event.received_at.date().isoformat(), event.id, event.provider, event.model_dump_json(),
                 expires_at.timestamp()),
            ).rowcount
        return inserted == 1

    def list_unhandled(self, *, day: date, provider: str | None = None, limit: int,
                       cursor: str | None = None) -> Page[UnhandledEvent]:
        sql, args = "SELECT id, doc FROM unhandled WHERE day = ? AND expires_at > ?", [day.isoformat(), utcnow().timestamp()]
        if provider is not None:
            sql += " AND provider = ?"
            args.append(provider)
        return self._page(sql, args, cursor=cursor, limit=limit, parse=UnhandledEvent.model_validate_json)

    def _page(
        self, sql: str, args: list, *, cursor: str | None, limit: int, parse: Callable[[str], T],
        newest_first: bool = False,
    ) -> Page[T]:
        """One page of `sql` (`SELECT id, doc … WHERE …`) in id order (ids are time-ordered):
        keyset paging, so a page costs the same however deep the cursor."""
        if cursor:
            sql += " AND id < ?" if newest_first else " AND id > ?"
            args.append(cursor)
        sql += " ORDER BY id DESC LIMIT ?" if newest_first else " ORDER BY id LIMIT ?"
        args.append(limit + 1)
        with self._guard():
            rows = self._db.read().execute(sql, args).fetchall()
        items = [parse(r["doc"]) for r in rows[:limit]]
        return Page(items=items, cursor=rows[limit - 1]["id"] if len(rows) > limit else None)

    # --- erasure -----------------------------------------------------------------------------------

    def erase_customer(self, erasure: Erasure) -> None:
        contacts, cases = list(erasure.contact_ids), list(erasure.case_ids)
        with self._guard(), self._db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO tombstones (customer_id, erased_at) VALUES (?, ?)",
                (erasure.customer_id, erasure.erased_at.isoformat()),
            )
            conn.execute("DELETE FROM identifiers WHERE customer_id = ?", (erasure.customer_id,))
            conn.execute("DELETE FROM customers WHERE id = ?", (erasure.customer_id,))
            conn.execute("DELETE FROM contacts WHERE customer_id = ?", (erasure.customer_id,))
            _delete_in(conn, "deliveries", "contact_id", contacts)
            _delete_in(conn, "contacts", "id", contacts)
            _delete_in(conn, "parked", "contact_id", contacts)
            _delete_in(conn, "cases", "id", cases)
            _delete_in(conn, "case_refs", "case_id", cases)
            _delete_in(conn, "threads", "case_id", cases)
            _delete_in(conn, "threads", "key", list(erasure.thread_keys))
            _delete_in(conn, "merges", "id", list(erasure.merge_ids))
            for key in erasure.dedupe_keys:
                _mark_done(conn, key, erasure.tombstone_expires_at)

    def is_erased(self, customer_id: str) -> bool:
        with self._guard():
            row = self._db.read().execute("SELECT 1 FROM tombstones WHERE customer_id = ?", (customer_id,)).fetchone()
        return row is not None

    # --- operations ------------------------------------------------------------------------------

    def ping(self) -> None:
        with self._guard():
            self._db.read().execute("SELECT 1").fetchone()

    def purge_expired(self, now: datetime) -> int:
        """Delete expired dedupe, status and unhandled records (DynamoDB's TTL does this on AWS)."""
        with self._guard(), self._db.write() as conn:
            stamp = now.timestamp()
            removed = conn.execute("DELETE FROM dedupe WHERE expires_at <= ?", (stamp,)).rowcount
            removed += conn.execute("DELETE FROM statuses WHERE expires_at <= ?", (stamp,)).rowcount
            removed += conn.execute("DELETE FROM unhandled WHERE expires_at <= ?", (stamp,)).rowcount
        return removed

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def _guard():
        return _SqliteErrors()


def _write_customer(
    conn: sqlite3.Connection, customer: Customer, new_identifiers: tuple[Identifier, ...], cases: tuple[Case, ...]
) -> None:
    """The guarded write shared by `update_customer` and `commit_contact`, inside their transaction."""
    row = conn.execute("SELECT doc FROM customers WHERE id = ?", (customer.id,)).fetchone()
    stored = json.loads(row["doc"]).get("version", 0) if row else None
    if stored != customer.version - 1:
        raise ConcurrentUpdateError(f"customer {customer.id} changed since it was read")
    for identifier in new_identifiers:
        owner = conn.execute("SELECT customer_id FROM identifiers WHERE key = ?", (identifier.key,)).fetchone()
        if owner is not None and owner["customer_id"] != customer.id:
            raise IdentifierTakenError(identifier.key, owner["customer_id"])
        conn.execute("INSERT OR IGNORE INTO identifiers (key, customer_id) VALUES (?, ?)", (identifier.key, customer.id))
    conn.execute("INSERT OR REPLACE INTO customers (id, doc) VALUES (?, ?)", (customer.id, customer.model_dump_json()))
    _write_cases(conn, cases)


def _write_contact(conn: sqlite3.Connection, contact: Contact) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO contacts (id, customer_id, doc) VALUES (?, ?, ?)",
        (contact.id, contact.customer_id, contact.model_dump_json(exclude={"deliveries"})),
    )


def _write_cases(conn: sqlite3.Connection, cases: tuple[Case, ...]) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO cases (id, doc) VALUES (?, ?)",
        [(case.id, case.model_dump_json(exclude={"external_refs"})) for case in cases],
    )


def _delete_in(conn: sqlite3.Connection, table: str, column: str, values: list[str]) -> None:
    for start in range(0, len(values), 500):  # SQLite's bound-parameter limit
        chunk = values[start:start + 500]
        conn.execute(f"DELETE FROM {table} WHERE {column} IN ({','.join('?' * len(chunk))})", chunk)


def _mark_done(conn: sqlite3.Connection, key: str, expires_at: datetime) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO dedupe (key, state, lease_until, expires_at) VALUES (?, 'done', NULL, ?)",
        (key, expires_at.timestamp()),
    )


class _SqliteErrors:
    """Translate SQLite failures into the port's `StoreUnavailableError`."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is not None and isinstance(exc, sqlite3.Error):
            raise StoreUnavailableError(f"store database error: {type(exc).__name__}") from exc
        return False
