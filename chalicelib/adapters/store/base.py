"""The store port: every lookup by key, every use case's writes in as few calls as possible.

DynamoDB (single table) on AWS, SQLite in the embedded runtime. The methods mirror the pipeline's
steps rather than tables, so that each step costs a known, small number of backend calls:

- a duplicate message costs one call (`claim`);
- a returning customer's new message costs `claim` + `get_customer` + `commit_contact`
  (+ `find_customer_ids` when the identifier is not in the warm cache).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Generic, TypeVar

from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.models import (
    Case,
    Contact,
    Customer,
    DeadLetter,
    Delivery,
    MergeRecord,
    ParkedContact,
    StatusEvent,
    UnhandledEvent,
)

T = TypeVar("T")


class IdentifierTakenError(Exception):
    """`create_customer` lost a race: one of the identifiers already belongs to `customer_id`."""

    def __init__(self, identifier: str, customer_id: str) -> None:
        super().__init__(f"identifier already linked to {customer_id}")
        self.identifier = identifier
        self.customer_id = customer_id


class ClaimState:
    ACQUIRED = "acquired"
    #: The key was processed to completion before: a duplicate, acknowledge and do nothing.
    DONE = "done"
    #: Another worker holds a live lease on the key: retry later.
    BUSY = "busy"


@dataclass(frozen=True)
class ContactCommit:
    """Everything one processed message writes, committed together (all or nothing). A contact
    whose routing parked it (`contact.routing.parked`) also enters the exception queue.

    `customer` carries the *next* version: the write succeeds only if the stored customer still
    has `customer.version - 1`, so two workers updating one customer can never lose an update.
    """

    contact: Contact
    case: Case
    customer: Customer
    #: The dedupe key claimed for this message; marked done in the same write.
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


@dataclass(frozen=True)
class IdentifierMove:
    """Re-point one identifier from one customer to another (only if `from_customer` owns it)."""

    key: str
    from_customer: str
    to_customer: str


@dataclass(frozen=True)
class MergeCommit:
    """A merge or an unmerge, committed together: both customers (each guarded by its version,
    as in `ContactCommit`), the identifier moves, the changed cases and the audit record."""

    record: MergeRecord
    customers: tuple[Customer, Customer]
    moves: tuple[IdentifierMove, ...] = ()
    cases: tuple[Case, ...] = ()


@dataclass(frozen=True)
class Erasure:
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


def parked_entry(contact: Contact) -> ParkedContact:
    """The exception-queue entry of a parked contact."""
    return ParkedContact(contact_id=contact.id, customer_id=contact.customer_id, case_id=contact.case_id,
                         channel=contact.channel, reason=contact.routing.parked or "", parked_at=contact.received_at)


@dataclass
class Page(Generic[T]):
    items: list[T] = field(default_factory=list)
    #: Opaque; pass back to get the next page. None on the last page.
    cursor: str | None = None


class Store(ABC):
    """Persistence for the pipeline and the consumer API.

    Every method raises `StoreUnavailableError` when the backend fails; conditional outcomes are
    return values or the specific errors named on each method.
    """

    # --- exactly-once processing -----------------------------------------------------------------

    @abstractmethod
    def claim(self, key: str, *, now: datetime, lease_until: datetime, expires_at: datetime) -> str:
        """Take a processing lease on `key`; return a `ClaimState`.

        A key already marked done is `DONE` (a duplicate). A key whose lease has not expired is
        `BUSY`. An expired lease (the worker died) can be taken again. One backend call.
        """

    @abstractmethod
    def release(self, key: str) -> None:
        """Drop an unfinished lease so a retry need not wait for it to expire."""

    # --- customers -------------------------------------------------------------------------------

    @abstractmethod
    def find_customer_ids(self, identifiers: list[Identifier]) -> dict[str, str]:
        """Map each identifier key that belongs to a customer to that customer's id. One call."""

    @abstractmethod
    def get_customer(self, customer_id: str) -> Customer | None: ...

    @abstractmethod
    def create_customer(self, customer: Customer) -> None:
        """Create the customer and claim its identifiers atomically.

        Raises `IdentifierTakenError` when any identifier already belongs to another customer;
        nothing is written then.
        """

    @abstractmethod
    def commit_merge(self, commit: MergeCommit) -> None:
        """Write a merge or unmerge atomically. Raises `ConcurrentUpdateError` when either
        customer's version moved or an identifier no longer belongs to `from_customer`; nothing
        is written then."""

    @abstractmethod
    def get_merge(self, merge_id: str) -> MergeRecord | None: ...

    # --- contacts and cases ----------------------------------------------------------------------

    @abstractmethod
    def update_customer(
        self, customer: Customer, *, new_identifiers: tuple[Identifier, ...] = (), cases: tuple[Case, ...] = ()
    ) -> None:
        """Write the customer (guarded by its version, see `ContactCommit`), link identifiers and
        write cases, atomically.

        Raises `ConcurrentUpdateError` when the stored version moved, `IdentifierTakenError` when
        another customer owns one of `new_identifiers`; nothing is written then.
        """

    @abstractmethod
    def commit_contact(self, commit: ContactCommit) -> None:
        """Write the contact, its timeline entry, the cases, the customer, the identifiers, the
        thread keys and the done marker, atomically.

        Raises `ConcurrentUpdateError` and `IdentifierTakenError` like `update_customer`; nothing
        is written then, and the caller reprocesses the message from fresh reads.
        """

    @abstractmethod
    def find_threads(self, thread_keys: list[str]) -> dict[str, str]:
        """Map each known thread key to its case id. One call."""

    @abstractmethod
    def get_contact(self, contact_id: str) -> Contact | None:
        """The contact with its deliveries."""

    @abstractmethod
    def list_contacts(self, customer_id: str, *, limit: int, cursor: str | None = None) -> Page[Contact]:
        """A customer's contacts, newest first."""

    @abstractmethod
    def get_case(self, case_id: str) -> Case | None:
        """The case with its external references."""

    @abstractmethod
    def put_case_ref(self, case_id: str, destination: str, ref: str) -> None:
        """Record the vendor object a destination created for the case."""

    # --- exception queue -------------------------------------------------------------------------

    @abstractmethod
    def list_parked(self, *, limit: int, cursor: str | None = None) -> Page[ParkedContact]:
        """The exception queue, oldest first."""

    @abstractmethod
    def release_parked(self, contact: Contact) -> None:
        """Take the contact out of the exception queue and store it with its new routing,
        atomically. Raises `ConflictError` when it is not (any longer) in the queue."""

    # --- deliveries ------------------------------------------------------------------------------

    @abstractmethod
    def get_delivery(self, contact_id: str, destination: str) -> Delivery | None: ...

    @abstractmethod
    def put_delivery(self, delivery: Delivery) -> None: ...

    @abstractmethod
    def put_dead_letter(self, letter: DeadLetter) -> None:
        """Keep a dead delivery with its job (replacing an earlier one of the same id)."""

    @abstractmethod
    def list_dead_letters(self, *, destination: str | None = None, limit: int,
                          cursor: str | None = None) -> Page[DeadLetter]:
        """Dead deliveries by id, optionally of one destination."""

    @abstractmethod
    def get_dead_letter(self, letter_id: str) -> DeadLetter | None: ...

    @abstractmethod
    def delete_dead_letter(self, letter_id: str) -> None:
        """Forget a dead letter (after its replay was queued). Idempotent."""

    # --- status events ---------------------------------------------------------------------------

    @abstractmethod
    def record_status(self, event: StatusEvent, *, expires_at: datetime) -> bool:
        """Store a status event once; False if this exact status was recorded before."""

    @abstractmethod
    def list_statuses(self, provider: str, provider_message_id: str) -> list[StatusEvent]:
        """Statuses of one sent message, in the order they were recorded."""

    # --- unhandled webhook items -----------------------------------------------------------------

    @abstractmethod
    def record_unhandled(self, event: UnhandledEvent, *, expires_at: datetime) -> bool:
        """Keep an item a channel adapter could not read, under the day it arrived, until
        `expires_at`; False if this exact event was recorded before (a redelivery)."""

    @abstractmethod
    def list_unhandled(self, *, day: date, provider: str | None = None, limit: int,
                       cursor: str | None = None) -> Page[UnhandledEvent]:
        """The unhandled items that arrived on `day` (UTC), oldest first, optionally of one
        provider. One key-ordered partition per day: no scan."""

    # --- erasure -----------------------------------------------------------------------------------

    @abstractmethod
    def erase_customer(self, erasure: Erasure) -> None:
        """Delete the customer, its identifier links, timeline, contacts with their deliveries and
        exception-queue entries, cases with their refs and thread keys, and the merge records
        naming it; leave a tombstone (customer id and time only) and
        the dedupe keys. The tombstone is written first, so workers stop delivering at once.
        Idempotent: erasing again finishes an interrupted erasure."""

    @abstractmethod
    def is_erased(self, customer_id: str) -> bool:
        """Whether the customer was erased (its tombstone exists). One call."""

    # --- operations ------------------------------------------------------------------------------

    @abstractmethod
    def ping(self) -> None:
        """Cheap reachability check for `/health`. Raises `StoreUnavailableError`."""
