"""The case follows the ticket: a two-way destination's status reports close and reopen hub cases.

Each report (`CaseStatusChange`) is recorded on the case's reference at that destination as its
`ExternalState` (the vendor's status, assignee, priority), which the API shows and routing
conditions read. Then:

- a ticket **closed** (solved, resolved, completed) closes the case, `close_reason:
  vendor_closed`, `closed_by: <destination>`, when the destinations that decide agree: those named
  in `cases.close_on` if any (one of them closing is enough), else every two-way destination that
  has a ticket for the case (the case stays open while one of them still works on it);
- a ticket **reopened** (reported closed before, open now) reopens the case, unless the customer
  has another case open by then: the newer case goes on, and the reopening is only recorded.

Reports older than the one recorded are dropped, so a vendor's late retry never undoes a newer
change. Destinations that take case events hear `case.closed` and `case.reopened`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from chalicelib.adapters.callbacks.base import VendorCallbacks
from chalicelib.adapters.queue.base import Queue
from chalicelib.adapters.store.base import Store
from chalicelib.domain.models import Case, CaseStatus, CaseStatusChange, Customer, ExternalState
from chalicelib.domain.policies import CasePolicy
from chalicelib.errors import ConcurrentUpdateError
from chalicelib.observability import Counters
from chalicelib.service.cases import effective, summarize
from chalicelib.service.customer_events import case_event_messages
from chalicelib.service.tickets import ticket_case

logger = logging.getLogger(__name__)

#: How often a close or reopen is decided again when the customer changed under it.
COMMIT_ATTEMPTS = 3


class SyncOutcome:
    RECORDED = "ticket_state_recorded"
    CLOSED = "case_closed_by_vendor"
    REOPENED = "case_reopened_by_vendor"
    STALE = "ticket_state_stale"
    IGNORED = "ticket_state_ignored"
    UNKNOWN_TICKET = "ticket_state_unknown_ticket"


class CaseSync:
    def __init__(self, *, store: Store, callbacks: Callable[[str], VendorCallbacks | None], policy: CasePolicy,
                 two_way: Callable[[], list[str]], case_event_destinations: Callable[[], list[str]],
                 delivery_queue: Callable[[], Queue], counters: Counters, clock: Callable[[], datetime],
                 timers: Callable[[], Any] | None = None) -> None:
        self._store = store
        self._callbacks = callbacks
        self._policy = policy
        self._two_way = two_way
        self._event_destinations = case_event_destinations
        self._queue = delivery_queue
        self._counters = counters
        self._clock = clock
        #: The case timers' port (`adapters/timers`): a case the vendor closed has its timers
        #: cancelled, best effort; one it reopened gets its auto-close timer again.
        self._timers = timers

    def apply(self, change: CaseStatusChange) -> tuple[str, str | None]:
        """Record `change` and close or reopen its case; the outcome and the case id. Raises the
        store's and queue's `TransientError`s (retry later)."""
        side = self._callbacks(change.destination)
        if side is None or not side.settings.status:
            logger.info("status of %s ticket %s not followed (callbacks.status)", change.destination, change.ticket)
            return SyncOutcome.IGNORED, None
        for attempt in range(COMMIT_ATTEMPTS):
            case = ticket_case(self._store, change.destination, change.ticket, change.case_id)
            if case is None:
                logger.info("status of %s ticket %s: no hub case has this ticket", change.destination, change.ticket)
                self._counters.incr("TicketStatesUnmatched", destination=change.destination)
                return SyncOutcome.UNKNOWN_TICKET, None
            try:
                return self._apply(change, case), case.id
            except ConcurrentUpdateError:
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _apply(self, change: CaseStatusChange, case: Case) -> str:
        ref = case.external_refs[change.destination]
        if ref.ref != change.ticket:
            # An older ticket of the case (a follow-up replaced it): its status no longer decides.
            logger.info("status of %s ticket %s ignored: case %s now follows ticket %s", change.destination,
                        change.ticket, case.id, ref.ref)
            return SyncOutcome.IGNORED
        at = change.occurred_at or change.received_at
        before = ref.state
        if before is not None and before.updated_at > at:
            return SyncOutcome.STALE
        state = ExternalState(
            state=change.state or (before.state if before is not None else "open"),
            vendor_status=change.vendor_status if change.vendor_status is not None else _kept(before, "vendor_status"),
            assignee=change.assignee if change.assignee is not None else _kept(before, "assignee"),
            priority=change.priority if change.priority is not None else _kept(before, "priority"),
            updated_at=at, ticket=change.ticket,
        )
        updated_ref = ref.model_copy(update={"state": state})
        case = case.model_copy(update={"external_state": {**case.external_state, change.destination: state},
                                       "external_refs": {**case.external_refs, change.destination: updated_ref}})
        now = self._clock()
        current = effective(case, now, self._policy)
        if change.state == "closed" and current.status == CaseStatus.OPEN and self._decides(case, change.destination):
            return self._close(case, updated_ref, change.destination, at)
        reopened = before is not None and before.state == "closed" and change.state == "open"
        if reopened and case.status == CaseStatus.CLOSED:
            return self._reopen(case, updated_ref, change.destination, at)
        self._record(case, updated_ref)
        return SyncOutcome.RECORDED

    def _record(self, case: Case, ref) -> None:
        """The new state alone; when the case is the customer's open case, its summary too (what
        routing conditions read), guarded by the customer's version."""
        customer = self._customer(case)
        if customer is not None and customer.open_case is not None and customer.open_case.id == case.id:
            summary = customer.open_case.model_copy(update={"external_state": case.external_state})
            self._store.commit_ticket_state(case, ref, customer=_next(customer, open_case=summary,
                                                                      at=customer.updated_at))
        else:
            self._store.commit_ticket_state(case, ref)

    def _decides(self, case: Case, destination: str) -> bool:
        """Whether the case closes now that `destination` closed its ticket."""
        if self._policy.close_on:
            return destination in self._policy.close_on
        two_way = set(self._two_way())
        threading = [name for name in case.external_refs if name in two_way]
        return all((s := case.external_state.get(name)) is not None and s.state == "closed" for name in threading)

    def _close(self, case: Case, ref, destination: str, at: datetime) -> str:
        customer = self._customer(case)
        closed = case.model_copy(update={"status": CaseStatus.CLOSED, "closed_at": at, "close_reason": "vendor_closed",
                                         "closed_by": destination})
        if customer is not None and customer.open_case is not None and customer.open_case.id == case.id:
            customer = _next(customer, open_case=None, at=at)
        else:
            customer = _next(customer, at=at) if customer is not None else None
        self._announce("case.closed", closed, at, reason="vendor_closed", by=destination)
        self._store.commit_ticket_state(closed, ref, customer=customer)
        if closed.due:
            from chalicelib.service.case_timers import cancel_case_timers

            cancel_case_timers(self._timers, closed)
        self._counters.incr("CasesClosedByVendor", destination=destination)
        logger.info("case %s closed: %s closed ticket %s", case.id, destination, ref.ref)
        return SyncOutcome.CLOSED

    def _reopen(self, case: Case, ref, destination: str, at: datetime) -> str:
        customer = self._customer(case)
        if customer is None:
            self._store.commit_ticket_state(case, ref)
            return SyncOutcome.RECORDED
        other = customer.open_case
        if other is not None and other.id != case.id and effective(
                Case(**other.model_dump(), customer_id=customer.id), self._clock(), self._policy).status == CaseStatus.OPEN:
            logger.info("case %s not reopened by %s: the customer's case %s is open", case.id, destination, other.id)
            self._store.commit_ticket_state(case, ref)
            return SyncOutcome.RECORDED
        reopened = case.model_copy(update={"status": CaseStatus.OPEN, "closed_at": None, "close_reason": None,
                                           "closed_by": None, "last_activity_at": max(case.last_activity_at, at)})
        reopened = self._rearm(reopened)
        self._announce("case.reopened", reopened, at, by=destination)
        self._store.commit_ticket_state(reopened, ref, customer=_next(customer, open_case=summarize(reopened), at=at))
        self._counters.incr("CasesReopenedByVendor", destination=destination)
        logger.info("case %s reopened: %s reopened ticket %s", case.id, destination, ref.ref)
        return SyncOutcome.REOPENED

    def _rearm(self, case: Case) -> Case:
        """The reopened case's timers, armed before the commit that records their due times
        (they were cancelled when it closed): a new auto-close from its latest activity, and
        its SLA and follow-up again where they are still ahead (one that fell due while it was
        closed does not fire late)."""
        if self._timers is None:
            return case
        from datetime import timedelta

        from chalicelib.service.case_timers import case_timers

        now = self._clock()
        due = {timer: at for timer, at in case.due.items() if timer != "auto_close" and at > now}
        due["auto_close"] = case.last_activity_at + timedelta(hours=self._policy.auto_close_after_hours)
        self._timers().arm(case_timers(case.id, case.customer_id, due))
        return case.model_copy(update={"due": {**case.due, "auto_close": due["auto_close"]}})

    def _customer(self, case: Case) -> Customer | None:
        customer = self._store.get_customer(case.customer_id)
        return customer if customer is not None and not customer.erasing else None

    def _announce(self, event_type: str, case: Case, at: datetime, *, reason: str | None = None,
                  by: str | None = None) -> None:
        """Queued before the commit, with ids derived from the change: a retry after a crash
        announces the same events, which the queue and the deliverer drop."""
        destinations = self._event_destinations()
        if destinations:
            self._queue().send(case_event_messages(event_type, case, occurred_at=at, destinations=destinations,
                                                   reason=reason, by_destination=by))


_UNSET = object()


def _next(customer: Customer, *, at: datetime, open_case=_UNSET) -> Customer:
    """The customer's next version (the commit is guarded by the version it was read at)."""
    update = {"version": customer.version + 1, "updated_at": max(customer.updated_at, at)}
    if open_case is not _UNSET:
        update["open_case"] = open_case
    return customer.model_copy(update=update)


def _kept(before: ExternalState | None, name: str) -> str | None:
    return getattr(before, name) if before is not None else None
