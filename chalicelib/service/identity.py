"""Customer resolution: which customer a message belongs to.

This is the spine's version: exact match of normalized, verified identifiers, creating the
customer when none matches. The identity capability replaces `resolve_customer` with rules,
linking and merging; callers depend only on its signature.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from chalicelib.adapters.store.base import IdentifierTakenError, Store
from chalicelib.domain.identifiers import Identifier, normalize
from chalicelib.domain.ids import new_id
from chalicelib.domain.models import AttributeValue, Customer, Handle, Party, Resolution
from chalicelib.errors import InvalidIdentifierError

logger = logging.getLogger(__name__)


@dataclass
class NormalizedSender:
    party: Party
    #: Handles that could not be normalized, as `kind: reason` (never the value itself).
    rejected: list[str] = field(default_factory=list)


def normalize_sender(handles: list[Handle], display_name: str | None, *, default_region: str | None) -> NormalizedSender:
    """Normalize every handle; an unusable one is reported, never fatal for the message."""
    party = Party(display_name=display_name)
    rejected = []
    for handle in handles:
        try:
            identifier = normalize(handle.kind, handle.value, scope=handle.scope, default_region=default_region)
        except InvalidIdentifierError as exc:
            rejected.append(f"{handle.kind}: {exc.message}")
            continue
        target = party.identifiers if handle.verified else party.unverified
        if identifier not in target:
            target.append(identifier)
    return NormalizedSender(party=party, rejected=rejected)


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


def resolve_customer(
    store: Store,
    party: Party,
    *,
    source: str,
    now: datetime,
    cache: IdentifierCache,
) -> tuple[Customer, Resolution]:
    """Find the customer owning the first matching verified identifier, or create one.

    Raises `StoreUnavailableError` when the store fails.
    """
    identifiers = party.identifiers
    owners = _owners(store, identifiers, cache)
    for identifier in identifiers:
        customer_id = owners.get(identifier.key)
        if customer_id is None:
            continue
        customer = store.get_customer(customer_id)
        if customer is None:
            cache.forget(identifier.key)
            continue
        return customer, Resolution(
            customer_id=customer.id, created_customer=False, matched_identifier=identifier.key, rule="exact_match"
        )
    return _create(store, party, source=source, now=now, cache=cache)


def fill_missing_attributes(customer: Customer, party: Party, *, source: str, now: datetime) -> Customer:
    """Record what the contact tells us and the customer record lacks (never overwrites)."""
    if party.display_name and "name" not in customer.attributes:
        attributes = {**customer.attributes, "name": AttributeValue(value=party.display_name, source=source, updated_at=now)}
        return customer.model_copy(update={"attributes": attributes})
    return customer


def _owners(store: Store, identifiers: list[Identifier], cache: IdentifierCache) -> dict[str, str]:
    owners = {i.key: cid for i in identifiers if (cid := cache.get(i.key))}
    missing = [i for i in identifiers if i.key not in owners]
    if missing:
        found = store.find_customer_ids(missing)
        for key, customer_id in found.items():
            cache.put(key, customer_id)
        owners.update(found)
    return owners


def _create(store: Store, party: Party, *, source: str, now: datetime, cache: IdentifierCache):
    attributes = {}
    if party.display_name:
        attributes["name"] = AttributeValue(value=party.display_name, source=source, updated_at=now)
    customer = Customer(
        id=new_id("cus"), identifiers=list(party.identifiers), attributes=attributes, created_at=now, updated_at=now
    )
    try:
        store.create_customer(customer)
    except IdentifierTakenError as taken:
        # Another worker created this person between our lookup and our write: use theirs.
        cache.put(taken.identifier, taken.customer_id)
        existing = store.get_customer(taken.customer_id)
        if existing is None:
            raise
        return existing, Resolution(
            customer_id=existing.id, created_customer=False, matched_identifier=taken.identifier,
            rule="exact_match_after_concurrent_create",
        )
    for identifier in customer.identifiers:
        cache.put(identifier.key, customer.id)
    rule = "new_customer" if customer.identifiers else "new_customer_without_usable_identifier"
    return customer, Resolution(customer_id=customer.id, created_customer=True, rule=rule)
