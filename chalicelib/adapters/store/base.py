"""The store port: every lookup by key, every use case's writes in as few calls as possible.

DynamoDB (single table) on AWS, SQLite in the embedded runtime. The methods mirror the pipeline's
steps rather than tables, so that each step costs a known, small number of backend calls:

- a message's first read (`begin`) also reads its dedupe marker, so a duplicate costs that one
  call and a new message no call more;
- a returning customer's new message costs `begin` (with the customer, from a warm identifier
  cache; with the identifiers' owners from a cold one, then `get_customer`) + `commit_contact`,
  whose done marker is conditional: two attempts at one message never both commit.

`Store` does the shared work once: documents in and out (and the item size limit), the writes
each use case makes, what a lost condition means, and which backend failures are worth a retry.
A backend implements the `_primitives` at the end of the class, in the vocabulary of records.py:
reads by key return documents, and a use case's writes arrive as one list of typed writes that
SQLite runs in one `BEGIN IMMEDIATE` transaction and DynamoDB in one TransactWriteItems.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Generic, TypeVar

from pydantic import BaseModel

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
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.identity_rules import BLOCKED_OWNER
from chalicelib.domain.segments import index_value, indexed_values
from chalicelib.domain.values import Record, Value
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
from chalicelib.errors import (
    ConcurrentUpdateError,
    ConfigError,
    ConflictError,
    HubError,
    ItemTooLargeError,
    StoreRejectedError,
)

__all__ = [
    "ContactCommit", "Erasure", "EventCommit", "IdentifierMove", "IdentifierTakenError", "MergeCommit", "MessageStart", "Page",
    "ReindexPage",
    "Store", "case_ref_key", "parked_entry", "sent_key",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: DynamoDB's item size limit, enforced on every backend alike so both refuse the same records.
MAX_ITEM_BYTES = 400 * 1024
#: Room kept beside a document for the keys and attributes stored in the same item.
KEY_ALLOWANCE_BYTES = 1024
#: The longest key `remember` keeps (a DynamoDB partition key holds 2048 bytes, prefix included).
MAX_REMEMBER_KEY_BYTES = 1024
#: Parts of a model stored as records of their own (deliveries, external references), not in its
#: document: they change without the model being written again.
_STORED_APART: dict[type[BaseModel], set[str]] = {Contact: {"deliveries"}, Case: {"external_refs", "external_state"}}


class IdentifierTakenError(Exception):
    """`create_customer` lost a race: one of the identifiers already belongs to `customer_id`."""

    def __init__(self, identifier: str, customer_id: str) -> None:
        super().__init__(f"identifier already linked to {customer_id}")
        self.identifier = identifier
        self.customer_id = customer_id


class MessageStart(Value):
    """What a message's first read found (`Store.begin`)."""

    #: The message's dedupe key is marked done (and not expired): a duplicate, acknowledge and
    #: do nothing. The other fields are then not to be relied on.
    done: bool
    #: Each identifier key asked for that belongs to a customer, mapped to that customer's id.
    customer_ids: dict[str, str] = None  # type: ignore[assignment]  # a new dict (see __init__)
    #: The customer asked for, if it exists.
    customer: Customer | None = None

    def __init__(self, done: bool, customer_ids: dict[str, str] | None = None, customer: Customer | None = None) -> None:
        super().__init__(done, {} if customer_ids is None else customer_ids, customer)


class ContactCommit(Value):
    """Everything one processed message writes, committed together (all or nothing). A contact
    whose routing parked it (`contact.routing.parked`) also enters the exception queue.

    `customer` carries the *next* version: the write succeeds only if the stored customer still
    has `customer.version - 1`, so two workers updating one customer can never lose an update.
    """

    contact: Contact
    case: Case
    customer: Customer
    #: The message's dedupe key, marked done in the same write, on condition that it is not done
    #: at `committed_at` (None: now) yet: of two attempts at one message only one commits (the
    #: other gets `ConcurrentUpdateError`, and its retry's first read finds the message done).
    dedupe_key: str
    dedupe_expires_at: datetime
    #: Identifiers newly linked to the customer; the commit fails if another customer owns one.
    new_identifiers: tuple[Identifier, ...] = ()
    #: Other cases of the customer this contact changed (closed because the window passed).
    other_cases: tuple[Case, ...] = ()
    #: Thread keys (chat session, email Message-ID) that now lead to `case`: only keys nobody
    #: held when the contact was decided. A key keeps the case it first named, so someone
    #: replying to another customer's thread never takes it over.
    thread_keys: tuple[str, ...] = ()
    #: Identifiers to remember as blocked: linked to `BLOCKED_OWNER` if nobody owns them (the
    #: commit fails with `IdentifierTakenError` if a customer took one meanwhile).
    blocked_identifiers: tuple[Identifier, ...] = ()
    #: The moment the done marker's condition is judged at: the worker's clock, the same that
    #: `Store.begin` read the marker at and that `dedupe_expires_at` counts from.
    committed_at: datetime | None = None


class EventCommit(Value):
    """What processing a business event for one customer writes, committed together: the event's
    timeline contact, the customer (guarded by its version as in `ContactCommit`) when the event
    changed it, the cases it opened or changed, and the event's done marker (conditional as in
    `ContactCommit`: of two attempts at one event and customer only one commits). A contact whose
    rules parked it (`contact.routing.parked`) also enters the exception queue."""

    contact: Contact
    #: None: the event left the customer as it was (nothing is written, nothing guarded).
    customer: Customer | None
    cases: tuple[Case, ...]
    #: `event:<id>` of an addressed event, `event:<id>:<customer id>` of a segment member.
    dedupe_key: str
    dedupe_expires_at: datetime
    #: The worker's clock: the moment the marker's condition is judged at (see `ContactCommit`).
    committed_at: datetime


class ReindexPage(Value):
    """One page of `Store.reindex_customers`."""

    #: Customers read on this page.
    scanned: int
    #: Customers whose index entries were out of date and rewritten.
    changed: int
    #: Pass back for the next page; None when every customer was read.
    cursor: str | None


class MergeCommit(Value):
    """A merge or an unmerge, committed together: both customers (each guarded by its version,
    as in `ContactCommit`), the identifier moves, the changed cases and the audit record."""

    record: MergeRecord
    customers: tuple[Customer, Customer]
    moves: tuple[IdentifierMove, ...] = ()
    cases: tuple[Case, ...] = ()


class Erasure(Value):
    """Everything held about one customer, found by key, to be removed (GDPR Art. 17)."""

    customer_id: str
    identifier_keys: tuple[str, ...]
    contact_ids: tuple[str, ...]
    case_ids: tuple[str, ...]
    thread_keys: tuple[str, ...]
    #: The erased contacts' dedupe keys stay marked done until `tombstone_expires_at`, so a
    #: provider's late retry cannot bring an erased message back.
    dedupe_keys: tuple[str, ...]
    #: Merge audit records naming the customer: they hold snapshots of it.
    merge_ids: tuple[str, ...]
    erased_at: datetime
    tombstone_expires_at: datetime
    #: (provider, provider message id) of the messages the hub sent the customer: their links and
    #: the statuses the providers reported (which may name the recipient).
    sent_messages: tuple[tuple[str, str], ...] = ()
    #: The customer's web chat outboxes (`<site>/<visitor>`).
    outbox_keys: tuple[str, ...] = ()


def sent_key(provider: str, provider_message_id: str) -> str:
    """The key a sent message's provider id is linked to its outbound contact by."""
    return f"{provider}:{provider_message_id}"


def case_ref_key(destination: str, ref: str) -> str:
    """The key a destination's ticket reference is linked to its case by."""
    return f"{destination}:{ref}"


def parked_entry(contact: Contact) -> ParkedContact:
    """The exception-queue entry of a parked contact."""
    return ParkedContact(contact_id=contact.id, customer_id=contact.customer_id, case_id=contact.case_id,
                         channel=contact.channel, reason=contact.routing.parked or "", parked_at=contact.received_at)


class Page(Record, Generic[T]):
    """`cursor`: opaque; pass back to get the next page. None on the last page."""

    __slots__ = ("items", "cursor")

    def __init__(self, items: list[T] | None = None, cursor: str | None = None) -> None:
        self.items = [] if items is None else items
        self.cursor = cursor


class Store(ABC):
    """Persistence for the pipeline and the consumer API.

    Every method raises `StoreUnavailableError` when the backend fails in a way a retry can
    cure (throttling, a lost connection, a locked database), and `StoreRejectedError` when the
    backend refuses the request itself, so that sending it again cannot help: a record over the
    item size limit (`ItemTooLargeError`), DynamoDB's `ValidationException`. Conditional
    outcomes are return values or the specific errors named on each method.
    """

    #: Names the backend in errors and logs.
    backend = "store"

    def __init__(self, *, max_item_bytes: int = MAX_ITEM_BYTES, indexed_attributes: Sequence[str] = ()) -> None:
        self.max_item_bytes = max_item_bytes
        #: `customers.indexed_attributes`: every customer write keeps the customer's entries for
        #: these in the segment index (`segment_page`), the first in slot 1, the second in slot 2.
        self.indexed_attributes = tuple(indexed_attributes)
        if len(self.indexed_attributes) > 2:
            raise ConfigError("at most 2 customer attributes can be indexed (customers.indexed_attributes)")

    # --- exactly-once processing -----------------------------------------------------------------

    def begin(self, dedupe_key: str, *, now: datetime, identifiers: Sequence[Identifier] = (),
              customer_id: str | None = None) -> MessageStart:
        """A message's first read: whether `dedupe_key` is marked done at `now` (a duplicate),
        together with what resolving its customer reads first, the owners of `identifiers` (as
        `find_customer_ids`) or the customer `customer_id` (as `get_customer`). One backend call
        (DynamoDB: one BatchGetItem, while there are at most 99 identifier keys), strongly
        consistent. It takes no lease: `commit_contact` alone decides which attempt at a message
        commits."""
        keys = list(dict.fromkeys(i.key for i in identifiers))
        done, owners, doc = self._run("begin", self._begin, dedupe_key, now, keys, customer_id)
        return MessageStart(done, owners, _load(Customer, doc))

    def remember(self, key: str, *, expires_at: datetime, value: str = "", now: datetime | None = None) -> str | None:
        """Record `key` with `value` until `expires_at`. None when this call recorded it (the
        first use); while a live record of the key exists, the value the first caller recorded
        (an expired one counts as absent, as TTL deletes it late). Replay protection shared by
        every process: of concurrent callers exactly one gets None. One backend call.
        Raises `StoreRejectedError` for an empty key or one over 1024 bytes."""
        if not key or len(key.encode()) > MAX_REMEMBER_KEY_BYTES:
            raise StoreRejectedError(f"a key to remember must have 1 to {MAX_REMEMBER_KEY_BYTES} bytes")
        if len(value.encode()) > MAX_REMEMBER_KEY_BYTES:
            raise StoreRejectedError(f"a value to remember must have at most {MAX_REMEMBER_KEY_BYTES} bytes")
        return self._run("remember", self._remember, Remembered(key, value, expires_at), now or utcnow())

    def mark_done(self, dedupe_key: str, *, expires_at: datetime, now: datetime) -> bool:
        """Mark `dedupe_key` done until `expires_at` on its own (what `begin` reads), for work that
        commits nothing else: a broadcast event once its fan-out is queued. False when it was
        done already at `now` (another attempt finished first). One backend call."""
        try:
            self._commit("mark_done", [MarkDone(dedupe_key, expires_at, unless_done_at=now)])
        except ConcurrentUpdateError:
            return False
        return True

    # --- customers -------------------------------------------------------------------------------

    def find_customer_ids(self, identifiers: list[Identifier]) -> dict[str, str]:
        """Map each identifier key that belongs to a customer to that customer's id. One call."""
        return self._find("find_customer_ids", Link.IDENTIFIER, [i.key for i in identifiers])

    def get_customer(self, customer_id: str) -> Customer | None:
        return _load(Customer, self._run("get_customer", self._read, Doc.CUSTOMER, (customer_id,)))

    def create_customer(self, customer: Customer) -> None:
        """Create the customer and claim its identifiers atomically.

        Raises `IdentifierTakenError` when any identifier already belongs to another customer;
        nothing is written then.
        """
        claims = [ClaimIdentifier(key, customer.id, allow_same_owner=False)
                  for key in dict.fromkeys(i.key for i in customer.identifiers)]
        self._commit("create_customer", [self._customer(customer, guarded=False), *claims])

    def commit_merge(self, commit: MergeCommit) -> None:
        """Write a merge or unmerge atomically. Raises `ConcurrentUpdateError` when either
        customer's version moved or an identifier no longer belongs to `from_customer`; nothing
        is written then."""
        self._commit("commit_merge", [
            *(self._customer(customer) for customer in commit.customers),
            *commit.moves,
            *(self._case(case) for case in commit.cases),
            PutMerge(commit.record.id, self._dump(commit.record)),
        ])

    def get_customers(self, ids: Sequence[str]) -> dict[str, Customer]:
        """The customers that exist among `ids`, by id (DynamoDB: one BatchGetItem per 100 ids;
        SQLite: one query per 500). Strongly consistent."""
        unique = list(dict.fromkeys(ids))
        if not unique:
            return {}
        docs = self._run("get_customers", self._read_many, Doc.CUSTOMER, unique)
        return {customer_id: Customer.model_validate_json(doc) for customer_id, doc in docs.items()}

    def segment_page(self, attribute: str, value: str, *, limit: int, cursor: str | None = None) -> Page[str]:
        """A page of the ids of the customers whose indexed `attribute` holds `value` (compared
        as `index_value` normalizes it), in id order; `cursor` is the last id of the previous
        page. On DynamoDB the index is eventually consistent: a customer changed a moment ago may
        be missed or still listed under the old value, so callers re-read the customer.
        Raises `ConfigError` when `attribute` is not in `customers.indexed_attributes`, and
        `StoreRejectedError` for a value that is never indexed (a list, an empty text...)."""
        if attribute not in self.indexed_attributes:
            indexed = ", ".join(self.indexed_attributes) or "none"
            raise ConfigError(f"customer attribute {attribute!r} is not indexed (customers.indexed_attributes: {indexed})")
        if limit < 1:
            raise StoreRejectedError("a segment page holds at least 1 customer")
        normalized = index_value(value)
        if normalized is None:
            raise StoreRejectedError(f"a segment value must be a non-empty text or number, not {type(value).__name__}")
        slot = self.indexed_attributes.index(attribute) + 1
        ids, more = self._run("segment_page", self._list, Segment(slot, normalized), limit, cursor)
        return Page(items=ids, cursor=ids[-1] if ids and more else None)

    def reindex_customers(self, *, limit: int = 100, cursor: str | None = None) -> ReindexPage:
        """Bring the segment index entries of the next customers in line with their records and
        `indexed_attributes`, without changing the customers (their version stays): after the
        indexed attributes changed, for the customers written before. An operator's one-off
        (`hubctl customers reindex`), never the hot path: on DynamoDB each page is a Scan (it
        reads every item of the table, customers or not, `limit` items per page), plus one
        conditional UpdateItem per customer whose entries changed; a customer written meanwhile
        is skipped, as its write set its entries. SQLite rebuilds its index by itself when it
        opens with other indexed attributes, so there this only repeats that work page by page."""
        if limit < 1:
            raise StoreRejectedError("a reindex page reads at least 1 item")
        scanned, changed, next_cursor = self._run("reindex_customers", self._reindex, self.indexed_attributes,
                                                  limit, cursor)
        return ReindexPage(scanned, changed, next_cursor)

    def get_merge(self, merge_id: str) -> MergeRecord | None:
        return _load(MergeRecord, self._run("get_merge", self._read, Doc.MERGE, (merge_id,)))

    # --- contacts and cases ----------------------------------------------------------------------

    def update_customer(
        self, customer: Customer, *, new_identifiers: tuple[Identifier, ...] = (), cases: tuple[Case, ...] = ()
    ) -> None:
        """Write the customer (guarded by its version, see `ContactCommit`), link identifiers and
        write cases, atomically.

        Raises `ConcurrentUpdateError` when the stored version moved, `IdentifierTakenError` when
        another customer owns one of `new_identifiers`; nothing is written then.
        """
        self._commit("update_customer", self._customer_writes(customer, new_identifiers, cases))

    def commit_contact(self, commit: ContactCommit) -> None:
        """Write the contact, its timeline entry, the cases, the customer, the identifiers, the
        thread keys and the done marker, atomically.

        Raises `ConcurrentUpdateError` and `IdentifierTakenError` like `update_customer`, and
        `ConcurrentUpdateError` when the message's dedupe key is done already (another attempt
        committed it); nothing is written then, and the caller reprocesses the message from fresh
        reads, whose first (`begin`) finds it done in the last case.
        """
        contact, case = commit.contact, commit.case
        writes = self._customer_writes(commit.customer, commit.new_identifiers, (case, *commit.other_cases),
                                       blocked=commit.blocked_identifiers)
        writes.append(PutContact(contact.id, contact.customer_id, self._dump(contact)))
        writes += [PutThread(key, case.id) for key in commit.thread_keys]
        writes.append(MarkDone(commit.dedupe_key, commit.dedupe_expires_at, unless_done_at=commit.committed_at or utcnow()))
        if contact.routing.parked is not None:
            writes.append(PutParked(contact.id, self._dump(parked_entry(contact))))
        self._commit("commit_contact", writes)

    def commit_event(self, commit: EventCommit) -> None:
        """Write a business event's outcome for one customer atomically: the customer (if given,
        guarded by its version), the cases, the event contact with its timeline entry, its
        exception-queue entry when parked, and the done marker.

        Raises `ConcurrentUpdateError` when the customer's version moved or the dedupe key is done
        already (another attempt committed the event); nothing is written then, and the caller
        reprocesses from fresh reads (`begin` then finds the event done)."""
        contact = commit.contact
        writes: list[Write] = [self._customer(commit.customer)] if commit.customer is not None else []
        writes += [self._case(case) for case in commit.cases]
        writes.append(PutContact(contact.id, contact.customer_id, self._dump(contact)))
        if contact.routing.parked is not None:
            writes.append(PutParked(contact.id, self._dump(parked_entry(contact))))
        writes.append(MarkDone(commit.dedupe_key, commit.dedupe_expires_at, unless_done_at=commit.committed_at))
        self._commit("commit_event", writes)

    def find_threads(self, thread_keys: list[str]) -> dict[str, str]:
        """Map each known thread key to its case id. One call."""
        return self._find("find_threads", Link.THREAD, thread_keys)

    def get_contact(self, contact_id: str) -> Contact | None:
        """The contact with its deliveries."""
        doc, deliveries = self._run("get_contact", self._read_tree, Tree.CONTACT, contact_id)
        contact = _load(Contact, doc)
        if contact is not None:
            contact.deliveries = [Delivery.model_validate_json(d) for d in deliveries]
        return contact

    def list_contacts(self, customer_id: str, *, limit: int, cursor: str | None = None) -> Page[Contact]:
        """A customer's contacts, newest first."""
        return self._page("list_contacts", Timeline(customer_id), Contact, "id", limit=limit, cursor=cursor)

    def get_case(self, case_id: str) -> Case | None:
        """The case with its external references."""
        doc, refs = self._run("get_case", self._read_tree, Tree.CASE, case_id)
        case = _load(Case, doc)
        if case is not None:
            for ref in (ExternalRef.model_validate_json(r) for r in refs):
                case.external_refs[ref.destination] = ref
                if ref.state is not None:
                    case.external_state[ref.destination] = ref.state
        return case

    def put_case_ref(self, case_id: str, destination: str, ref: str) -> None:
        """Record the vendor object a destination created for the case, with the link back from
        it (`find_case_by_ref`). One call."""
        doc = self._dump(ExternalRef(destination=destination, ref=ref, updated_at=utcnow()))
        self._run("put_case_ref", self._write_one, PutCaseRef(case_id, destination, doc, case_ref_key(destination, ref)))

    def commit_ticket_state(self, case: Case, ref: ExternalRef, *, customer: Customer | None = None) -> None:
        """A two-way destination's report on the case's ticket: the reference with its new state
        (`ref.state`) and, when the report closed or reopened the case, the case and its customer
        (guarded by its version, see `ContactCommit`; raises `ConcurrentUpdateError`). One call."""
        writes: list[Write] = self._customer_writes(customer, (), (case,)) if customer is not None else []
        writes.append(PutCaseRef(case.id, ref.destination, self._dump(ref), case_ref_key(ref.destination, ref.ref)))
        self._commit("commit_ticket_state", writes)

    def find_case_by_ref(self, destination: str, ref: str) -> str | None:
        """The case whose ticket at `destination` is `ref` (what a vendor's callback names); None
        for a ticket the hub did not open. One call."""
        key = case_ref_key(destination, ref)
        return self._find("find_case_by_ref", Link.CASE_REF, [key]).get(key)

    # --- outbound messages -----------------------------------------------------------------------

    def commit_outbound(self, contact: Contact, *, thread_keys: Sequence[str] = (), only_new: bool = False) -> None:
        """A queued outbound message: the contact with its timeline copy, and the thread keys that
        lead the customer's answer back to its case (the Message-ID of an email). One call.
        `only_new`: raises `ConflictError` (writing nothing) when a contact with the id exists."""
        writes: list[Write] = [PutContact(contact.id, contact.customer_id, self._dump(contact), only_new=only_new)]
        writes += [PutThread(key, contact.case_id) for key in thread_keys]
        self._commit("commit_outbound", writes)

    def record_sent(self, contact: Contact, *, thread_keys: Sequence[str] = ()) -> None:
        """The send worker's outcome for an outbound contact, the only writer of its document after
        the API: its status and history, and, once the provider accepted it, the link from the
        provider's message id (status callbacks find the contact by it) and the thread keys only
        the provider's answer told (SES's Message-ID), leading the customer's reply to the
        contact's case. One call."""
        writes: list[Write] = [PutContact(contact.id, contact.customer_id, self._dump(contact))]
        if contact.status is not None and contact.provider_message_id:
            writes.append(PutSentLink(sent_key(contact.provider, contact.provider_message_id), contact.id))
        writes += [PutThread(key, contact.case_id) for key in thread_keys]
        self._commit("record_sent", writes)

    def find_sent(self, provider: str, provider_message_id: str) -> str | None:
        """The outbound contact a provider's message id names; None for messages the hub did not
        send (or not yet recorded as sent). One call."""
        key = sent_key(provider, provider_message_id)
        return self._find("find_sent", Link.SENT, [key]).get(key)

    def get_outbox(self, key: str) -> str | None:
        """A web chat visitor's outbox document (`<site>/<visitor>`). One call."""
        return self._run("get_outbox", self._read, Doc.OUTBOX, (key,))

    def put_outbox(self, key: str, doc: str) -> None:
        self._run("put_outbox", self._write_one, PutOutbox(key, doc))

    # --- exception queue -------------------------------------------------------------------------

    def list_parked(self, *, limit: int, cursor: str | None = None) -> Page[ParkedContact]:
        """The exception queue, oldest first."""
        return self._page("list_parked", ParkedQueue(), ParkedContact, "contact_id", limit=limit, cursor=cursor)

    def release_parked(self, contact: Contact) -> None:
        """Take the contact out of the exception queue and store it with its new routing,
        atomically. Raises `ConflictError` when it is not (any longer) in the queue."""
        self._commit("release_parked", [TakeParked(contact.id),
                                        PutContact(contact.id, contact.customer_id, self._dump(contact))])

    # --- deliveries ------------------------------------------------------------------------------

    def get_delivery(self, contact_id: str, destination: str) -> Delivery | None:
        return _load(Delivery, self._run("get_delivery", self._read, Doc.DELIVERY, (contact_id, destination)))

    def put_delivery(self, delivery: Delivery) -> None:
        write = PutDelivery(delivery.contact_id, delivery.destination, self._dump(delivery))
        self._run("put_delivery", self._write_one, write)

    def put_dead_letter(self, letter: DeadLetter) -> bool:
        """Keep a dead delivery with its job (replacing an earlier one of the same id) until
        `letter.expires_at`, filed under `letter.customer_id` when set, so that erasure and
        export find it by key. One call.

        False, and nothing kept, when that customer was erased: a delivery in flight during the
        erasure that died after it must not bring the customer's data back."""
        write = PutDeadLetter(letter.id, letter.destination, letter.customer_id, letter.expires_at, self._dump(letter))
        if letter.customer_id is None:
            self._run("put_dead_letter", self._write_one, write)
            return True
        try:
            self._run("put_dead_letter", self._write, [RequireNotErased(letter.customer_id), write])
        except ConditionLost:
            logger.info("dead letter %s not kept: its customer was erased", letter.id)
            return False
        return True

    def list_dead_letters(self, *, destination: str | None = None, limit: int,
                          cursor: str | None = None) -> Page[DeadLetter]:
        """Dead deliveries by id, optionally of one destination; expired ones are gone."""
        return self._page("list_dead_letters", DeadLetters(destination, utcnow()), DeadLetter, "id", limit=limit,
                          cursor=cursor)

    def get_dead_letter(self, letter_id: str) -> DeadLetter | None:
        letter = _load(DeadLetter, self._run("get_dead_letter", self._read, Doc.DEAD_LETTER, (letter_id,)))
        return letter if letter is not None and _live(letter.expires_at, utcnow()) else None

    def dead_letters_of(self, customer_id: str) -> list[DeadLetter]:
        """The customer's dead letters by id, found by key, for the export (DynamoDB: one Query,
        and one BatchGetItem per 100 letters)."""
        now = utcnow()
        letters = [DeadLetter.model_validate_json(doc)
                   for doc in self._run("dead_letters_of", self._filed_dead_letters, customer_id)]
        return sorted((letter for letter in letters if _live(letter.expires_at, now)), key=lambda letter: letter.id)

    def delete_dead_letter(self, letter_id: str) -> None:
        """Forget a dead letter (after its replay was queued). Idempotent."""
        self._run("delete_dead_letter", self._write_one, DeleteDeadLetter(letter_id))

    # --- status events ---------------------------------------------------------------------------

    def record_status(self, event: StatusEvent, *, expires_at: datetime) -> bool:
        """Store a status event once; False if this exact report (status, provider code, opt-out:
        `StatusEvent.variant`) was recorded before."""
        record = StatusRecord(event.provider, event.provider_message_id, event.variant, self._dump(event), expires_at)
        return self._run("record_status", self._put_once, record, utcnow())

    def list_statuses(self, provider: str, provider_message_id: str) -> list[StatusEvent]:
        """Statuses of one sent message, in the order they were recorded."""
        docs = self._run("list_statuses", self._statuses, provider, provider_message_id)
        return [StatusEvent.model_validate_json(doc) for doc in docs]

    # --- unhandled webhook items -----------------------------------------------------------------

    def record_unhandled(self, event: UnhandledEvent, *, expires_at: datetime) -> bool:
        """Keep an item a channel adapter could not read, under the day it arrived, until
        `expires_at`; False if this exact event was recorded before (a redelivery)."""
        record = UnhandledRecord(event.received_at.date(), event.id, event.provider, self._dump(event), expires_at)
        return self._run("record_unhandled", self._put_once, record, utcnow())

    def list_unhandled(self, *, day: date, provider: str | None = None, limit: int,
                       cursor: str | None = None) -> Page[UnhandledEvent]:
        """The unhandled items that arrived on `day` (UTC), oldest first, optionally of one
        provider. One key-ordered partition per day: no scan."""
        return self._page("list_unhandled", UnhandledDay(day, provider, utcnow()), UnhandledEvent, "id", limit=limit,
                          cursor=cursor)

    # --- erasure -----------------------------------------------------------------------------------

    def erase_customer(self, erasure: Erasure) -> None:
        """Delete the customer, its identifier links, timeline, contacts with their deliveries and
        exception-queue entries, cases with their refs and thread keys, its dead letters, and the
        merge records naming it; leave a tombstone (customer id and time only) and the dedupe
        keys. The tombstone is written first, so workers stop delivering at once (and no dead
        letter of the customer is kept after it); the profile last. Idempotent: erasing again
        finishes an interrupted erasure."""
        customer_id = erasure.customer_id
        self._run("erase_customer", self._erase, [
            PutTombstone(customer_id, erasure.erased_at),
            *(ReleaseIdentifier(key, customer_id) for key in erasure.identifier_keys),
            DeleteFiledUnder(customer_id),
            *(DeleteContact(contact_id) for contact_id in erasure.contact_ids),
            *(DeleteCase(case_id) for case_id in erasure.case_ids),
            *(DeleteThread(key) for key in erasure.thread_keys),
            *(DeleteSentLink(sent_key(provider, message_id)) for provider, message_id in erasure.sent_messages),
            *(DeleteStatuses(provider, message_id) for provider, message_id in erasure.sent_messages),
            *(DeleteOutbox(key) for key in erasure.outbox_keys),
            *(DeleteMerge(merge_id) for merge_id in erasure.merge_ids),
            *(MarkDone(key, erasure.tombstone_expires_at) for key in erasure.dedupe_keys),
            DeleteCustomer(customer_id),
        ])

    def is_erased(self, customer_id: str) -> bool:
        """Whether the customer was erased (its tombstone exists). One call."""
        return self._run("is_erased", self._is_erased, customer_id)

    # --- operations ------------------------------------------------------------------------------

    def ping(self) -> None:
        """Cheap reachability check for `/health`. Raises `StoreUnavailableError`."""
        self._run("ping", self._ping)

    # --- shared machinery ------------------------------------------------------------------------

    def _dump(self, model: BaseModel) -> str:
        """The model's stored document: JSON, so numbers never become `Decimal` and a model
        round-trips exactly, without the parts stored apart. Raises `ItemTooLargeError`."""
        doc = model.model_dump_json(exclude=_STORED_APART.get(type(model)))
        size = len(doc.encode())
        if size + KEY_ALLOWANCE_BYTES > self.max_item_bytes:
            kind = type(model).__name__
            logger.warning("store %s: a %s of %d bytes exceeds the item limit", self.backend, kind, size)
            raise ItemTooLargeError(f"a {kind} of {size} bytes exceeds the store's item limit of "
                                    f"{self.max_item_bytes} bytes", detail={"bytes": size, "limit": self.max_item_bytes})
        return doc

    def _customer(self, customer: Customer, *, guarded: bool = True) -> PutCustomer:
        """The customer's write, guarded by the version it was read at (see `ContactCommit`)."""
        return PutCustomer(customer.id, customer.version, self._dump(customer),
                           customer.version - 1 if guarded else None,
                           indexed_values(customer, self.indexed_attributes))

    def _case(self, case: Case) -> PutCase:
        return PutCase(case.id, self._dump(case))

    def _customer_writes(
        self, customer: Customer, new_identifiers: tuple[Identifier, ...], cases: tuple[Case, ...],
        *, blocked: tuple[Identifier, ...] = (),
    ) -> list[Write]:
        """The guarded customer first, then its new identifiers, the blocked ones and the cases."""
        return [
            self._customer(customer),
            *(ClaimIdentifier(key, customer.id) for key in dict.fromkeys(i.key for i in new_identifiers)),
            *(ClaimIdentifier(key, BLOCKED_OWNER) for key in dict.fromkeys(i.key for i in blocked)),
            *(self._case(case) for case in cases),
        ]

    def _commit(self, operation: str, writes: list[Write]) -> None:
        """Write all or nothing; a lost condition becomes the error the port names for it."""
        try:
            self._run(operation, self._write, writes)
        except ConditionLost as lost:
            raise _lost(lost) from None

    def _find(self, operation: str, link: Link, keys: list[str]) -> dict[str, str]:
        unique = list(dict.fromkeys(keys))
        return self._run(operation, self._lookup, link, unique) if unique else {}

    def _page(self, operation: str, listing: Listing, model: type[M], cursor_field: str, *, limit: int,
              cursor: str | None) -> Page[M]:
        docs, more = self._run(operation, self._list, listing, limit, cursor)
        items = [model.model_validate_json(doc) for doc in docs]
        return Page(items=items, cursor=getattr(items[-1], cursor_field) if items and more else None)

    def _run(self, operation: str, primitive: Callable[..., T], *args) -> T:
        """Run a primitive, translating the backend's failures into the port's errors once."""
        try:
            return primitive(*args)
        except Exception as exc:
            failure = self._failure(exc)
            if failure is None:
                raise
            error, code = failure
            logger.warning("store %s %s failed: %s", self.backend, operation, code)
            raise error(f"store {self.backend} {operation} failed: {code}") from exc

    # --- primitives ------------------------------------------------------------------------------

    @abstractmethod
    def _failure(self, exc: Exception) -> tuple[type[HubError], str] | None:
        """For a failure of the backend: `StoreUnavailableError` when a retry may succeed,
        `StoreRejectedError` (or `ItemTooLargeError`) when it cannot, and a code for the logs.
        None for anything else, which propagates unchanged."""

    @abstractmethod
    def _begin(self, dedupe_key: str, now: datetime, identifier_keys: list[str],
               customer_id: str | None) -> tuple[bool, dict[str, str], str | None]:
        """`begin` in one read: whether the key is done at `now`, the owners of the (distinct)
        identifier keys that have one, and the customer's document (None: absent or not asked)."""

    @abstractmethod
    def _put_once(self, record: Once, now: datetime) -> bool:
        """Write the record unless a live one (`expires_at` after `now`) has its key; whether it
        was written. One conditional write."""

    @abstractmethod
    def _remember(self, record: Remembered, now: datetime) -> str | None:
        """Write the record unless a live one has its key; None when written, else the live
        record's value. One conditional write."""

    @abstractmethod
    def _read(self, doc: Doc, key: tuple[str, ...]) -> str | None:
        """One document by its key (strongly consistent)."""

    @abstractmethod
    def _read_many(self, doc: Doc, keys: list[str]) -> dict[str, str]:
        """The documents of the (distinct, single-part) keys that exist, by key (strongly
        consistent)."""

    @abstractmethod
    def _read_tree(self, tree: Tree, key: str) -> tuple[str | None, list[str]]:
        """A document and the records kept beside it, ordered by destination."""

    @abstractmethod
    def _lookup(self, link: Link, keys: list[str]) -> dict[str, str]:
        """Each of the (distinct) keys that exists, mapped to the id it leads to."""

    @abstractmethod
    def _list(self, listing: Listing, limit: int, cursor: str | None) -> tuple[list[str], bool]:
        """Up to `limit` documents after `cursor` (the id of the last item of the previous
        page), and whether more follow. A `Segment` listing's documents are customer ids."""

    @abstractmethod
    def _reindex(self, attributes: tuple[str, ...], limit: int, cursor: str | None) -> tuple[int, int, str | None]:
        """One page of `reindex_customers`: (customers read, customers changed, next cursor)."""

    @abstractmethod
    def _filed_dead_letters(self, customer_id: str) -> list[str]:
        """The documents of the dead letters filed under the customer."""

    @abstractmethod
    def _statuses(self, provider: str, message_id: str) -> list[str]:
        """A message's status documents, in recording order."""

    @abstractmethod
    def _is_erased(self, customer_id: str) -> bool: ...

    @abstractmethod
    def _ping(self) -> None: ...

    @abstractmethod
    def _write(self, writes: Sequence[Write]) -> None:
        """Every write or none. Raises `ConditionLost` naming the first write whose condition
        failed (`PutCustomer` with `expected_version`, `ClaimIdentifier`, `IdentifierMove`,
        `TakeParked`, `RequireNotErased`, `MarkDone` with `unless_done_at`)."""

    def _write_one(self, write: Write) -> None:
        """One unconditional write (a backend may use a cheaper call than a transaction)."""
        self._write([write])

    def _erase(self, writes: Sequence[Write]) -> None:
        """An erasure, in the order given. It may run in several calls, but must be resumable
        by running it again; a `ReleaseIdentifier` whose owner changed is skipped."""
        self._write(writes)


def _lost(lost: ConditionLost) -> Exception:
    """What a lost condition means, for every backend alike."""
    match lost.write:
        case ClaimIdentifier(key=key) if lost.owner is not None:
            return IdentifierTakenError(key, lost.owner)
        case ClaimIdentifier():
            # The owner it lost to let go of it meanwhile: decide again from fresh reads.
            return ConcurrentUpdateError("an identifier changed owner during the write")
        case PutCustomer(customer_id=customer_id):
            return ConcurrentUpdateError(f"customer {customer_id} changed since it was read")
        case IdentifierMove(from_customer=customer_id):
            return ConcurrentUpdateError(f"an identifier of customer {customer_id} changed owner")
        case TakeParked(contact_id=contact_id):
            return ConflictError(f"contact {contact_id} is not in the exception queue")
        case PutContact(contact_id=contact_id):
            return ConflictError(f"contact {contact_id} exists")
        case MarkDone():
            # Another attempt at the same message committed first: the retry finds it done.
            return ConcurrentUpdateError("the message was committed by another attempt")
        case _:
            return ConcurrentUpdateError(f"a conditional write ({type(lost.write).__name__}) lost")


def _load(model: type[M], doc: str | None) -> M | None:
    return model.model_validate_json(doc) if doc is not None else None


def _live(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is None or expires_at > now
