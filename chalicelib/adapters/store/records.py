"""What `Store` (base.py) asks of a backend: typed writes, and the keys of what it reads.

The base turns each use case into a list of these values, with every document already
serialized; a backend only maps them onto its layout (SQLite tables, DynamoDB items) and
executes them. A backend whose condition fails raises `ConditionLost` naming the write, and the
base alone decides what that means (`ConcurrentUpdateError`, `IdentifierTakenError`, …).

The records are `Value`s (`domain/values.py`): frozen dataclasses with the same behaviour, defined
without the per-class `exec` that made these 35 classes ≈ 15 ms of every worker's cold start.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from chalicelib.domain.values import Value


class Doc(StrEnum):
    """Documents read by key (`_read`)."""

    CUSTOMER = "customer"  # key: customer id
    MERGE = "merge"  # key: merge id
    DELIVERY = "delivery"  # key: contact id, destination
    DEAD_LETTER = "dead_letter"  # key: delivery id
    OUTBOX = "outbox"  # key: web chat visitor key (`<site>/<visitor>`)


class Tree(StrEnum):
    """Documents read by key with the records kept beside them (`_read_tree`)."""

    CONTACT = "contact"  # with its deliveries, by destination
    CASE = "case"  # with its external references


class Link(StrEnum):
    """Key → id lookups, many keys per call (`_lookup`)."""

    IDENTIFIER = "identifier"  # identifier key → customer id
    THREAD = "thread"  # thread key → case id
    SENT = "sent"  # `<provider>:<provider message id>` of a sent message → its outbound contact id
    CASE_REF = "case_ref"  # `<destination>:<vendor ref>` of a case's ticket → the case id (callbacks)


# --- listings (`_list`): each page is a list of documents and whether more follow ------------------


class Timeline(Value):
    """A customer's contacts, newest first."""

    customer_id: str


class ParkedQueue(Value):
    """The exception queue, oldest first."""


class DeadLetters(Value):
    """Dead letters by id, optionally of one destination; expired ones are not listed."""

    destination: str | None
    now: datetime


class UnhandledDay(Value):
    """The unhandled items of one day, in arrival order; expired ones are not listed."""

    day: date
    provider: str | None
    now: datetime


class Segment(Value):
    """The ids of the customers whose indexed attribute in `slot` (1 or 2) holds `value` (already
    `index_value`-normalized), in id order. The "documents" of a page are the ids."""

    slot: int
    value: str


Listing = Timeline | ParkedQueue | DeadLetters | UnhandledDay | Segment


# --- writes (`_write`, `_write_one`, `_erase`) -------------------------------------------------------


class PutCustomer(Value):
    """The customer's document. With `expected_version`, only over that stored version."""

    customer_id: str
    version: int
    doc: str
    expected_version: int | None = None
    #: The customer's segment index entries, (slot, normalized value) (`domain/segments.py`): the
    #: write replaces whatever the customer was indexed under, so a changed or removed value
    #: leaves the index with it.
    indexed: tuple[tuple[int, str], ...] = ()


class ClaimIdentifier(Value):
    """Link an identifier to `owner` unless someone else owns it; with `allow_same_owner`
    False, unless anyone does. A lost condition carries the owner."""

    key: str
    owner: str
    allow_same_owner: bool = True


class IdentifierMove(Value):
    """Re-point one identifier from one customer to another (only if `from_customer` owns it)."""

    key: str
    from_customer: str
    to_customer: str


class PutContact(Value):
    """The contact (without deliveries) and its copy in the customer's timeline."""

    contact_id: str
    customer_id: str
    doc: str
    #: Write only if no contact has this id yet (a message whose id derives from what caused
    #: it: the condition is its idempotency check, at no extra read).
    only_new: bool = False


class PutCase(Value):
    """The case (without its external references, which `PutCaseRef` keeps apart)."""

    case_id: str
    doc: str


class PutCaseRef(Value):
    """A destination's reference for the case, and the link back from it (`Link.CASE_REF`), which
    is how a vendor's callback naming its ticket finds the case."""

    case_id: str
    destination: str
    doc: str
    ref: str


class PutDelivery(Value):
    contact_id: str
    destination: str
    doc: str


class PutThread(Value):
    """A thread key leading to a case. SQLite keeps the case a key first named; DynamoDB, whose
    transactions cannot skip an item, writes it (the worker looked the key up just before)."""

    key: str
    case_id: str


class PutSentLink(Value):
    """The provider's id of a message the hub sent, leading to its outbound contact (status
    callbacks are matched by it)."""

    key: str
    contact_id: str


class PutOutbox(Value):
    """A web chat visitor's outbox: the replies the widget fetches, newest last."""

    key: str
    doc: str


class MarkDone(Value):
    """A dedupe key processed to completion, until `expires_at`."""

    key: str
    expires_at: datetime
    #: A message's commit: write only if the key is not done at this moment (no marker, or one
    #: that expired), so two attempts at one message can never both commit. None: unconditional
    #: (an erasure's markers replace whatever the key holds, to keep an erased message out).
    unless_done_at: datetime | None = None


class PutParked(Value):
    contact_id: str
    doc: str


class TakeParked(Value):
    """Remove an exception-queue entry that must exist."""

    contact_id: str


class PutMerge(Value):
    merge_id: str
    doc: str


class PutDeadLetter(Value):
    """The dead letter; with `customer_id`, also filed under the customer (erasure and export
    find it there by key)."""

    letter_id: str
    destination: str
    customer_id: str | None
    expires_at: datetime | None
    doc: str


class DeleteDeadLetter(Value):
    letter_id: str


class RequireNotErased(Value):
    """A condition only: the customer has no tombstone."""

    customer_id: str


# --- erasure (`_erase`), in the order the base lists them ----------------------------------------------


class PutTombstone(Value):
    customer_id: str
    erased_at: datetime


class ReleaseIdentifier(Value):
    """Delete an identifier link if `owner` still holds it; otherwise leave it (not a failure)."""

    key: str
    owner: str


class DeleteFiledUnder(Value):
    """Everything filed under the customer's key but its profile and tombstone: the timeline
    and the dead letters (with the dead-letter records themselves)."""

    customer_id: str


class DeleteContact(Value):
    """The contact with its deliveries and its exception-queue entry."""

    contact_id: str


class DeleteCase(Value):
    """The case with its external references."""

    case_id: str


class DeleteThread(Value):
    key: str


class DeleteSentLink(Value):
    key: str


class DeleteOutbox(Value):
    key: str


class DeleteStatuses(Value):
    """Every status a provider reported for one sent message (they may name the recipient)."""

    provider: str
    message_id: str


class DeleteMerge(Value):
    merge_id: str


class DeleteCustomer(Value):
    """The profile: erased last, so an interrupted erasure is found and repeated."""

    customer_id: str


Write = (
    PutCustomer | ClaimIdentifier | IdentifierMove | PutContact | PutCase | PutCaseRef | PutDelivery | PutThread
    | PutSentLink | PutOutbox | DeleteSentLink | DeleteOutbox | DeleteStatuses | MarkDone | PutParked | TakeParked | PutMerge | PutDeadLetter | DeleteDeadLetter | RequireNotErased
    | PutTombstone | ReleaseIdentifier | DeleteFiledUnder | DeleteContact | DeleteCase | DeleteThread | DeleteMerge
    | DeleteCustomer
)


# --- records kept once (`_put_once`): written unless a live record of the key exists -----------------


class StatusRecord(Value):
    provider: str
    message_id: str
    #: `StatusEvent.variant`: the status with the provider's code and opt-out, so two different
    #: reports of one status (a bounce, then a complaint) are both kept.
    variant: str
    doc: str
    expires_at: datetime


class UnhandledRecord(Value):
    day: date
    event_id: str
    provider: str
    doc: str
    expires_at: datetime


class Remembered(Value):
    key: str
    #: What the first caller recorded with the key (a message id it was used for).
    value: str
    expires_at: datetime


Once = StatusRecord | UnhandledRecord


class ConditionLost(Exception):
    """A backend's conditional write lost: an outcome, not a failure. `write` is the write whose
    condition failed; `owner` the identifier's current owner when the backend knows it."""

    def __init__(self, write: Write, owner: str | None = None) -> None:
        super().__init__("condition failed")
        self.write = write
        self.owner = owner
