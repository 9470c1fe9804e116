"""Customer resolution: which customer a message belongs to.

Normalized identifiers pass the identity rules (`domain/identity_rules.py`); the survivors are
looked up (one store call, or none when cached), the highest-priority owner wins, and identifiers
the customer lacks are linked within the per-kind limits. A customer is created when nobody owns
any of them; a concurrent creation of the same person resolves to the winner's customer.

Given the message's dedupe key, resolution's first store read is `Store.begin`, which reads the
key's done marker in the same call: a duplicate stops there (`AlreadyProcessed`) before anything
is written, and a new message pays no call for its dedupe check.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from datetime import datetime

from chalicelib.adapters.store.base import IdentifierTakenError, MessageStart, Store
from chalicelib.domain.identifiers import Identifier, IdentifierKind, normalize, resolve_kind
from chalicelib.domain.ids import new_id
from chalicelib.domain.identity_rules import IdentityRules, LinkPlan
from chalicelib.domain.models import Customer, Handle, IdentifierDecision, Party, Resolution
from chalicelib.domain.values import Record
from chalicelib.errors import ConcurrentUpdateError, InvalidIdentifierError

logger = logging.getLogger(__name__)


class NormalizedSender(Record):
    """`rejected`: handles that could not be normalized, as `kind: reason` (never the value
    itself); `rejected_kinds`: the identifier kinds of those handles (a `whatsapp` handle is a phone)."""

    __slots__ = ("party", "rejected", "rejected_kinds")

    def __init__(self, party: Party, rejected: list[str] | None = None,
                 rejected_kinds: set[IdentifierKind] | None = None) -> None:
        self.party = party
        self.rejected = [] if rejected is None else rejected
        self.rejected_kinds = set() if rejected_kinds is None else rejected_kinds


def normalize_sender(handles: list[Handle], display_name: str | None, *, default_region: str | None) -> NormalizedSender:
    """Normalize every handle; an unusable one is reported, never fatal for the message."""
    sender = NormalizedSender(party=Party(display_name=display_name))
    for handle in handles:
        try:
            identifier = normalize(handle.kind, handle.value, scope=handle.scope, default_region=default_region)
        except InvalidIdentifierError as exc:
            sender.rejected.append(f"{handle.kind}: {exc.message}")
            try:
                sender.rejected_kinds.add(resolve_kind(handle.kind))
            except InvalidIdentifierError:
                pass  # an unknown kind: reported above, no kind to flag
            continue
        target = sender.party.identifiers if handle.verified else sender.party.unverified
        if identifier not in target:
            target.append(identifier)
    return sender


class IdentifierCache:
    """Identifier → customer id for warm invocations: saves the lookup for returning customers.

    Bounded LRU. Entries are only ever added after the store confirmed them, and a stale entry
    (customer gone) is dropped on the next read.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._data: OrderedDict[str, str] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: str, customer_id: str) -> None:
        with self._lock:
            self._data[key] = customer_id
            self._data.move_to_end(key)
            while len(self._data) > self._capacity:
                self._data.popitem(last=False)

    def forget(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)


class AlreadyProcessed(Exception):
    """The message's first read found its dedupe key done: a duplicate, nothing to resolve."""


class _Reads:
    """Resolution's store reads for one message. The first of them is `Store.begin` when there is
    a dedupe key to check, so the check rides on a read resolution makes anyway: the identifiers'
    owners (a cold cache) or the customer (a warm one). Before resolution writes (a new
    customer) the check is made on its own, if no read made it yet."""

    def __init__(self, store: Store, dedupe_key: str | None, now: datetime) -> None:
        self.store = store
        self._unchecked = dedupe_key
        self._now = now

    def owners(self, identifiers: list[Identifier]) -> dict[str, str]:
        if self._unchecked is None:
            return self.store.find_customer_ids(identifiers)
        return self._begin(identifiers=identifiers).customer_ids

    def customer(self, customer_id: str) -> Customer | None:
        if self._unchecked is None:
            return self.store.get_customer(customer_id)
        return self._begin(customer_id=customer_id).customer

    def check(self) -> None:
        """Read the dedupe marker now, unless a read did already."""
        if self._unchecked is not None:
            self._begin()

    def _begin(self, **reads) -> MessageStart:
        start = self.store.begin(self._unchecked, now=self._now, **reads)
        if start.done:
            raise AlreadyProcessed(self._unchecked)
        self._unchecked = None
        return start


class Resolved(Record):
    """`new_identifiers`: identifiers to link to the customer in the same commit as the contact;
    `learned_blocks`: identifiers to remember as blocked in the same commit; `others`: other
    customers that own verified identifiers of the contact (merge candidates), each with the
    identifier that ties it to the contact."""

    __slots__ = ("customer", "resolution", "new_identifiers", "learned_blocks", "others")

    def __init__(self, customer: Customer, resolution: Resolution, new_identifiers: tuple[Identifier, ...] = (),
                 learned_blocks: tuple[Identifier, ...] = (), others: tuple[tuple[str, Identifier], ...] = ()) -> None:
        self.customer = customer
        self.resolution = resolution
        self.new_identifiers = new_identifiers
        self.learned_blocks = learned_blocks
        self.others = others


def resolve_customer(
    store: Store,
    party: Party,
    *,
    rules: IdentityRules,
    source: str,
    now: datetime,
    cache: IdentifierCache,
    dedupe_key: str | None = None,
) -> Resolved:
    """Find the customer the contact belongs to under the identity rules, or create one.

    With the message's `dedupe_key`, the first store read also checks whether the message was
    processed already (`Store.begin`), and a duplicate raises `AlreadyProcessed` with nothing
    written. Raises `StoreUnavailableError` when the store fails, and `ConcurrentUpdateError`
    when identifiers keep pointing at customers that cannot be read (retry the message later).
    """
    return _resolve(_Reads(store, dedupe_key, now), party, rules=rules, source=source, now=now, cache=cache)


def _resolve(reads: _Reads, party: Party, *, rules: IdentityRules, source: str, now: datetime,
             cache: IdentifierCache, _attempt: int = 0) -> Resolved:
    if _attempt > 2:
        raise ConcurrentUpdateError("identifiers point at a customer that cannot be read")
    plan = rules.plan(party)
    owners = _owners(reads, plan.candidates + plan.learned_blocks + plan.continuity, cache)
    plan.hold_back_learned_blocks(owners)
    # Only an account nobody owns yet is remembered as blocked; one linked before its number
    # was blocked stays with its customer (it is still held back for this contact).
    plan.learned_blocks = [i for i in plan.learned_blocks if i.key not in owners]
    choice = rules.choose(plan, owners)
    if choice.customer_id is not None:
        customer = reads.customer(choice.customer_id)
        if customer is None or customer.merged_into is not None or choice.matched not in customer.identifiers:
            # A stale cache entry (the customer was erased, merged into another, or gave the
            # identifier back in an unmerge): look again at the store.
            for identifier in plan.candidates:
                cache.forget(identifier.key)
            return _resolve(reads, party, rules=rules, source=source, now=now, cache=cache, _attempt=_attempt + 1)
        added = rules.additions(customer, plan, owners, outcome="linked")
        if added:
            customer = customer.model_copy(update={"identifiers": [*customer.identifiers, *added]})
        customer = _proved(customer, plan)
        return Resolved(
            customer,
            Resolution(customer_id=customer.id, created_customer=False, matched_identifier=choice.matched.key,
                       rule=f"link_kinds: {choice.matched.kind.value}", decisions=plan.decisions),
            tuple(added),
            tuple(plan.learned_blocks),
            choice.others,
        )
    for identifier in plan.continuity:
        joined = _continue(reads, identifier, owners, plan, cache)
        if joined is not None:
            return joined
    return _create(reads, party, plan, rules=rules, source=source, now=now, cache=cache, attempt=_attempt)


def _proved(customer: Customer, plan: LinkPlan) -> Customer:
    """A verified contact from an address the customer held by email continuity only: from now
    on the customer holds it by proof."""
    proved = [key for key in customer.unverified_identifiers if key in plan.verified]
    if not proved:
        return customer
    for key in proved:
        plan.decisions.append(IdentifierDecision(
            identifier=key, outcome="proved", rule="email_continuity: held unproved until this verified contact",
        ))
    return customer.model_copy(update={
        "unverified_identifiers": [k for k in customer.unverified_identifiers if k not in proved]})


def _continue(reads: _Reads, identifier: Identifier, owners: dict[str, str], plan: LinkPlan,
              cache: IdentifierCache) -> Resolved | None:
    """Email continuity for an unproved address: the customer holding it by continuity, if any.
    A customer who proved the address is never joined this way (a forged From must not reach
    their record). None: nobody holds it so (the caller creates a customer that does)."""
    owner = owners.get(identifier.key)
    if owner is None:
        return None
    customer = reads.customer(owner)
    if customer is None or customer.merged_into is not None or identifier not in customer.identifiers:
        cache.forget(identifier.key)  # stale; the create that follows resolves any race again
        return None
    if identifier.key not in customer.unverified_identifiers:
        plan.decisions.append(IdentifierDecision(
            identifier=identifier.key, outcome="held_by_verified_customer",
            rule="email_continuity: the address belongs to a customer who proved it; unproved mail never joins them",
        ))
        plan.continuity.remove(identifier)
        return None
    plan.decisions.append(IdentifierDecision(
        identifier=identifier.key, outcome="continuity", rule="email_continuity: unproved mail from this address",
    ))
    return Resolved(customer, Resolution(customer_id=customer.id, created_customer=False,
                                         matched_identifier=identifier.key, rule="email_continuity",
                                         decisions=plan.decisions))


def _owners(reads: _Reads, identifiers: list[Identifier], cache: IdentifierCache) -> dict[str, str]:
    owners = {i.key: cid for i in identifiers if (cid := cache.get(i.key))}
    missing = [i for i in identifiers if i.key not in owners]
    if missing:
        found = reads.owners(missing)
        for key, customer_id in found.items():
            cache.put(key, customer_id)
        owners.update(found)
    return owners


def _create(reads: _Reads, party: Party, plan: LinkPlan, *, rules: IdentityRules, source: str, now: datetime,
            cache: IdentifierCache, attempt: int) -> Resolved:
    empty = Customer(id=new_id("cus"), created_at=now, updated_at=now)
    identifiers = rules.additions(empty, plan, {}, outcome="created_with")
    # Nothing proved the contact: its unproved address, held by nobody yet, is held by continuity.
    continuity = plan.continuity[:1]
    for identifier in continuity:
        plan.decisions.append(IdentifierDecision(
            identifier=identifier.key, outcome="created_with_continuity",
            rule="email_continuity: unproved mail; held for later mail from the address only",
        ))
    customer = empty.model_copy(update={"identifiers": [*identifiers, *continuity],
                                        "unverified_identifiers": [i.key for i in continuity]})
    reads.check()  # a duplicate must not create a customer
    try:
        reads.store.create_customer(customer)
    except IdentifierTakenError as taken:
        # Another worker created this person between our lookup and our write: resolve again,
        # now finding theirs.
        cache.put(taken.identifier, taken.customer_id)
        return _resolve(reads, party, rules=rules, source=source, now=now, cache=cache, _attempt=attempt + 1)
    for identifier in customer.identifiers:
        cache.put(identifier.key, customer.id)
    rule = ("new_customer" if identifiers else "new_customer_by_email_continuity" if continuity
            else "new_customer_without_linkable_identifier")
    return Resolved(customer, Resolution(customer_id=customer.id, created_customer=True, rule=rule,
                                         decisions=plan.decisions), learned_blocks=tuple(plan.learned_blocks))
