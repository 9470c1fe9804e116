"""Commands from the consumer API that change customers and cases outside the message flow.

Each one is a guarded read-modify-write: it reads the customer, writes the next version, and
decides again when a worker updated the customer in between, so API calls and message
processing never overwrite each other.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from chalicelib.adapters.store.base import IdentifierTakenError, Store
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.identity_rules import BLOCKED_OWNER, IdentityRules
from chalicelib.domain.models import Case, CaseStatus, Customer
from chalicelib.errors import ConcurrentUpdateError, ConflictError, NotFoundError, RuleRefusedError
from chalicelib.domain.golden_record import observe
from chalicelib.domain.policies import CasePolicy, CustomerLimits, SurvivorshipPolicy
from chalicelib.service.cases import close, effective

if TYPE_CHECKING:
    from chalicelib.adapters.timers.base import TimerPort

ATTEMPTS = 3


def link_identifier(store: Store, rules: IdentityRules, customer_id: str, identifier: Identifier, *, now: datetime) -> Customer:
    """Link an identifier to a customer explicitly (from a CRM, an agent): trusted, so only the
    blocked list and the per-kind limit apply. Linking an address the customer holds only by
    email continuity (unproved) proves it: the caller vouches for it.

    Raises `NotFoundError`, `RuleRefusedError` (blocked, limit), and `ConflictError` when another
    customer owns the identifier: two customers are never merged as a side effect of a link.
    """

    def change(customer: Customer) -> tuple[Customer, tuple[Identifier, ...], tuple[Case, ...]] | None:
        if identifier in customer.identifiers:
            if identifier.key not in customer.unverified_identifiers:
                return None
            proved = [k for k in customer.unverified_identifiers if k != identifier.key]
            return customer.model_copy(update={"unverified_identifiers": proved, "updated_at": now}), (), ()
        if refusal := rules.explicit_link_refusal(customer, identifier):
            raise RuleRefusedError(refusal)
        owner = store.find_customer_ids([identifier]).get(identifier.key)
        if owner == BLOCKED_OWNER:
            raise RuleRefusedError(f"the {identifier.kind.value} identifier was seen with a blocked number")
        if owner is not None and owner != customer.id:
            raise _owned_by(identifier, owner)
        updated = customer.model_copy(update={"identifiers": [*customer.identifiers, identifier], "updated_at": now})
        return updated, (identifier,), ()

    try:
        return _guarded(store, customer_id, change)
    except IdentifierTakenError as taken:
        raise _owned_by(identifier, taken.customer_id) from None


def set_attributes(
    store: Store, customer_id: str, values: dict, *, source: str, now: datetime, rules: SurvivorshipPolicy,
    limits: CustomerLimits,
) -> Customer:
    """Record attributes a source (a CRM, an agent) states about the customer; each attribute's
    surviving value follows its survivorship rule. Raises `NotFoundError`, and `RuleRefusedError`
    when the customer would outgrow `limits` (nothing is written then)."""

    def change(customer: Customer):
        updated = observe(customer, values, source=source, at=now, rules=rules).model_copy(update={"updated_at": now})
        problem = limits.attributes_problem(len(updated.attributes), len(updated.model_dump_json().encode("utf-8")))
        if problem is not None:
            raise RuleRefusedError(f"attributes not set: {problem} (customers: limits)")
        return updated, (), ()

    return _guarded(store, customer_id, change)


def mark_erasing(store: Store, customer_id: str) -> Customer:
    """Flag a customer as being erased (merges refuse it from then on). Raises `NotFoundError`,
    and `ConflictError` when it was merged into another customer meanwhile."""

    def change(customer: Customer):
        if customer.erasing:
            return None
        return customer.model_copy(update={"erasing": True}), (), ()

    return _guarded(store, customer_id, change)


def close_case(store: Store, case_id: str, *, now: datetime, settings: CasePolicy,
               timers: Callable[[], TimerPort] | None = None) -> Case:
    """Close a case (idempotent), then cancel its timers, best effort (a timer left armed finds
    the case closed and does nothing). Raises `NotFoundError`."""
    for attempt in range(ATTEMPTS):
        case = store.get_case(case_id)
        if case is None:
            raise NotFoundError(f"no case {case_id}")
        if case.status == CaseStatus.CLOSED:
            return case
        # A case already closed by inactivity keeps that reason and time; otherwise the API closes it.
        current = effective(case, now, settings)
        closed = current if current.status == CaseStatus.CLOSED else close(case, now, reason="api")

        def change(customer: Customer, case: Case = case, closed: Case = closed):
            fresh = store.get_case(case_id)
            if fresh is None or (fresh.customer_id, fresh.status) != (case.customer_id, case.status):
                # A merge or unmerge handed the case to another customer meanwhile: decide again.
                raise ConcurrentUpdateError(f"case {case_id} changed while it was being closed")
            still_open = customer.open_case is not None and customer.open_case.id == case_id
            updated = customer.model_copy(update={"open_case": None if still_open else customer.open_case,
                                                  "updated_at": now})
            return updated, (), (closed,)

        try:
            # A case can outlive its owner's merge (closed, or inactive): it may still be closed.
            _guarded(store, case.customer_id, change, allow_merged=True)
        except ConcurrentUpdateError:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        if closed.due:
            from chalicelib.service.case_timers import cancel_case_timers

            cancel_case_timers(timers, closed)
        return closed
    raise AssertionError("unreachable")


def _guarded(store: Store, customer_id: str, change, *, allow_merged: bool = False) -> Customer:
    for attempt in range(ATTEMPTS):
        customer = store.get_customer(customer_id)
        if customer is None:
            raise NotFoundError(f"no customer {customer_id}")
        if customer.merged_into is not None and not allow_merged:
            raise ConflictError(
                f"customer {customer_id} was merged into {customer.merged_into}; change that customer",
                detail={"merged_into": customer.merged_into},
            )
        planned = change(customer)
        if planned is None:
            return customer
        updated, identifiers, cases = planned
        updated = updated.model_copy(update={"version": customer.version + 1})
        try:
            store.update_customer(updated, new_identifiers=identifiers, cases=cases)
            return updated
        except ConcurrentUpdateError:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _owned_by(identifier: Identifier, owner: str) -> ConflictError:
    return ConflictError(
        f"{identifier.key} belongs to another customer; customers are not merged by linking",
        detail={"identifier": identifier.key, "customer_id": owner},
    )
