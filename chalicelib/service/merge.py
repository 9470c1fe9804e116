"""Merging customers and taking merges back, with their cases, as guarded atomic writes.

The decisions are pure (`domain/merging.py`); this module reads both customers, hands over the
open case, and commits everything in one `Store.commit_merge`, decided again from fresh reads
when a worker changed either customer in between. Announcing the change to destinations is the
caller's (`service/customer_events.py`), once the commit succeeded.

Open cases: a person has at most one open concern, so when both customers have an open case,
the more recently active one continues as the survivor's and the other is closed as `merged`.
Unmerging gives each case back to the customer that had it, reopening a case the merge closed
when its owner has no open case.
"""

from __future__ import annotations

from datetime import datetime

from chalicelib.adapters.store.base import IdentifierMove, MergeCommit, Store
from chalicelib.domain import merging
from chalicelib.domain.models import Case, CaseStatus, CaseSummary, Customer, MergeRecord
from chalicelib.domain.policies import CasePolicy, CustomerLimits, IdentityPolicy, SurvivorshipPolicy
from chalicelib.domain.values import Record, Value
from chalicelib.errors import ConcurrentUpdateError, ConflictError, NotFoundError
from chalicelib.service.cases import close, is_inactive, summarize

ATTEMPTS = 3
#: How far `merged_into` is followed; merges flatten `merged_from`, so chains stay short.
_MAX_REDIRECTS = 5


class MergeOutcome(Value):
    #: The customer both ids now resolve to (the survivor, or the only customer).
    customer_id: str
    #: The committed merge; None when refused or when both ids were one customer already.
    record: MergeRecord | None = None
    #: Why the rules refused the merge.
    refusal: str | None = None
    #: True when `record` is an earlier merge that already joined the two (a repeated request).
    existing: bool = False


class Merges(Record):
    __slots__ = ("store", "identity", "survivorship", "cases", "limits")

    def __init__(self, store: Store, identity: IdentityPolicy, survivorship: SurvivorshipPolicy, cases: CasePolicy,
                 limits: CustomerLimits) -> None:
        self.store = store
        self.identity = identity
        self.survivorship = survivorship
        self.cases = cases
        self.limits = limits

    @classmethod
    def of(cls, store: Store, config) -> Merges:
        """With the policies of a `HubConfig`."""
        return cls(store, config.identity, config.survivorship, config.cases, config.customers)

    def merge(
        self, first_id: str, second_id: str, *, now: datetime, trigger: str, matched: tuple[str, ...] = (),
        explicit: bool = False,
    ) -> MergeOutcome:
        """Merge two customers under the identity rules (`explicit`: an operator's decision, see
        `merge_refusal`) and the customer limits (`size_refusal`); a refusal is returned, never
        committed. Raises `NotFoundError`, and `ConcurrentUpdateError` when they kept changing
        during every attempt."""
        for attempt in range(ATTEMPTS):
            first, second = self._current(first_id), self._current(second_id)
            if first.id == second.id:
                return MergeOutcome(first.id, self._joining(first, {first_id, second_id}), existing=True)
            survivor, absorbed = merging.survivor_first(first, second)
            refusal = merging.merge_refusal(survivor, absorbed, self.identity, explicit=explicit)
            if refusal is not None:
                return MergeOutcome(survivor.id, refusal=refusal)
            pair = merging.merge(survivor, absorbed, now=now, trigger=trigger, matched=list(matched),
                                 rules=self.survivorship)
            next_survivor, cases, owners = self._hand_over_cases(survivor, absorbed, pair.survivor, now)
            record = pair.record.model_copy(update={"case_owners": owners})
            if refusal := merging.size_refusal(next_survivor, record, self.limits):
                return MergeOutcome(survivor.id, refusal=refusal)
            moves = tuple(IdentifierMove(i.key, absorbed.id, survivor.id) for i in record.moved_identifiers)
            try:
                self.store.commit_merge(MergeCommit(record, (next_survivor, pair.absorbed), moves, tuple(cases)))
            except ConcurrentUpdateError:
                if attempt == ATTEMPTS - 1:
                    raise
                continue
            return MergeOutcome(survivor.id, record)
        raise AssertionError("unreachable")

    def unmerge(self, customer_id: str, *, now: datetime, actor: str, merge_id: str | None = None) -> MergeRecord:
        """Take back a merge of `customer_id` (the given one, or its latest). Idempotent: a merge
        already reverted is returned as it is. Raises `NotFoundError` and `ConflictError`."""
        for attempt in range(ATTEMPTS):
            record = self._record_for(customer_id, merge_id)
            if record.reverted_at is not None:
                return record
            survivor = self._get(record.survivor_id)
            absorbed = self._get(record.absorbed_id)
            if survivor.merged_into is not None:
                raise ConflictError(
                    f"customer {survivor.id} was merged into {survivor.merged_into} after this merge; unmerge that first",
                    detail={"merged_into": survivor.merged_into},
                )
            if absorbed.merged_into != survivor.id:
                raise ConflictError(f"customer {absorbed.id} is no longer merged into {survivor.id}")
            # Merges are taken back newest first: a later merge's snapshot of the survivor holds
            # what this one brought in, and undoing around it would mix the customers up again.
            latest = next(m for m in reversed(survivor.merges) if m.role == "survivor" and m.reverted_at is None)
            if latest.merge_id != record.id:
                raise ConflictError(
                    f"customer {survivor.id} merged again later ({latest.merge_id}); unmerge that first",
                    detail={"merge_id": latest.merge_id},
                )
            pair = merging.unmerge(record, survivor, absorbed, now=now, actor=actor, rules=self.survivorship)
            next_survivor, next_absorbed, cases = self._give_back_cases(record, pair.survivor, pair.absorbed, now)
            held = {i.key for i in survivor.identifiers}
            moves = tuple(
                IdentifierMove(i.key, survivor.id, absorbed.id) for i in record.moved_identifiers if i.key in held
            )
            try:
                self.store.commit_merge(MergeCommit(pair.record, (next_survivor, next_absorbed), moves, tuple(cases)))
            except ConcurrentUpdateError:
                if attempt == ATTEMPTS - 1:
                    raise
                continue
            return pair.record
        raise AssertionError("unreachable")

    # --- cases -------------------------------------------------------------------------------------

    def _hand_over_cases(
        self, survivor: Customer, absorbed: Customer, next_survivor: Customer, now: datetime
    ) -> tuple[Customer, list[Case], dict[str, str]]:
        """The survivor with the open case that continues, the cases written, and each changed
        case's owner before the merge."""
        mine, theirs = self._open_case(survivor, now), self._open_case(absorbed, now)
        if theirs is None:
            return next_survivor, [], {}
        owners = {theirs.id: absorbed.id}
        if mine is not None and mine.last_activity_at >= theirs.last_activity_at:
            return next_survivor, [close(theirs, now, reason="merged")], owners
        adopted = theirs.model_copy(update={"customer_id": survivor.id})
        cases = [adopted]
        if mine is not None:
            cases.append(close(mine, now, reason="merged"))
            owners[mine.id] = survivor.id
        return next_survivor.model_copy(update={"open_case": summarize(adopted)}), cases, owners

    def _give_back_cases(
        self, record: MergeRecord, survivor: Customer, absorbed: Customer, now: datetime
    ) -> tuple[Customer, Customer, list[Case]]:
        returned = [
            case.model_copy(update={"customer_id": owner})
            for case_id, owner in record.case_owners.items()
            if (case := self.store.get_case(case_id)) is not None
        ]
        taken_back = {c.id for c in returned if c.customer_id == absorbed.id}
        survivor_open = survivor.open_case if survivor.open_case and survivor.open_case.id not in taken_back else None
        written: list[Case] = []
        open_cases: dict[str, CaseSummary | None] = {}
        for customer, current in ((survivor, survivor_open), (absorbed, None)):
            own = next((c for c in returned if c.customer_id == customer.id), None)
            if own is not None and current is None and own.status == CaseStatus.CLOSED and own.close_reason == "merged":
                own = own.model_copy(update={"status": CaseStatus.OPEN, "closed_at": None, "close_reason": None})
            if own is not None:
                written.append(own)
                if current is None and own.status == CaseStatus.OPEN and not is_inactive(own, now, self.cases):
                    current = summarize(own)
            open_cases[customer.id] = current
        return (
            survivor.model_copy(update={"open_case": open_cases[survivor.id]}),
            absorbed.model_copy(update={"open_case": open_cases[absorbed.id]}),
            written,
        )

    def _open_case(self, customer: Customer, now: datetime) -> Case | None:
        summary = customer.open_case
        if summary is None or is_inactive(summary, now, self.cases):
            return None
        return Case(**summary.model_dump(), customer_id=customer.id)

    # --- reads ---------------------------------------------------------------------------------------

    def _joining(self, survivor: Customer, ids: set[str]) -> MergeRecord | None:
        """The active merge in which `survivor` absorbed one of `ids`, if any."""
        entry = next(
            (m for m in reversed(survivor.merges)
             if m.role == "survivor" and m.reverted_at is None and m.other_customer_id in ids),
            None,
        )
        return self.store.get_merge(entry.merge_id) if entry is not None else None

    def _record_for(self, customer_id: str, merge_id: str | None) -> MergeRecord:
        customer = self._get(customer_id)
        if merge_id is None:
            role = "absorbed" if customer.merged_into is not None else "survivor"
            active = [m for m in customer.merges if m.role == role and m.reverted_at is None]
            if not active:
                raise ConflictError(f"customer {customer_id} has no merge to undo")
            merge_id = active[-1].merge_id
        record = self.store.get_merge(merge_id)
        if record is None or customer_id not in (record.survivor_id, record.absorbed_id):
            raise NotFoundError(f"no merge {merge_id} of customer {customer_id}")
        return record

    def _get(self, customer_id: str) -> Customer:
        customer = self.store.get_customer(customer_id)
        if customer is None:
            raise NotFoundError(f"no customer {customer_id}")
        return customer

    def _current(self, customer_id: str) -> Customer:
        """The customer, or the survivor it was merged into."""
        customer = self._get(customer_id)
        for _ in range(_MAX_REDIRECTS):
            if customer.merged_into is None:
                return customer
            customer = self._get(customer.merged_into)
        raise ConcurrentUpdateError(f"customer {customer_id} is part of a merge chain that keeps changing")
