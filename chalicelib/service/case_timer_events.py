"""Acting on a fired case timer: the SLA breached, a follow-up due, a case auto-closed.

The events worker hands each `TimerFired` here. The case decides what it means
(`fired_timer_action`): a timer whose case closed, or whose due time the case no longer holds, is
stale and does nothing; an auto-close timer whose case had activity since it was armed is armed
again at the new end of inactivity (one firing per inactivity window, never a timer call per
contact); otherwise the timer acts:

- `auto_close` closes the case (`close_reason: inactive`, at the end of its inactivity, as the
  lazy close does) and announces `case.closed` to the destinations that take case events;
- each timer becomes a business event (`case.sla_breached`, `case.follow_up_due`,
  `case.auto_closed`) that runs through the event rules for the case's customer (escalate, notify
  the customer, re-route, forward), and a case event of that type for the destinations that take
  case timer events (`Connector.case_timer_events`).

Firing is at least once; acting is once. The business event's id is `timer_event_id` (one per
case, timer and due time), which the event processor marks done in its commit; the case events'
ids derive from the case and the due time, so the queue and the deliverer drop repeats. An
auto-close that committed its close and then crashed is recognized on the retry (closed as
inactive, still holding this due time) and finishes announcing and processing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from chalicelib.adapters.queue.base import OutgoingMessage, Queue
from chalicelib.adapters.store.base import Store
from chalicelib.adapters.timers.base import TimerPort
from chalicelib.domain.business_events import BusinessEvent, EventCustomer, TimerFired
from chalicelib.domain.models import Case, CaseStatus, Customer
from chalicelib.errors import ConcurrentUpdateError
from chalicelib.hubconfig import HubConfig
from chalicelib.service.case_timers import (
    CaseTimer,
    cancel_case_timers,
    case_timers,
    fired_timer_action,
    timer_event_id,
)
from chalicelib.service.cases import close, effective, summarize
from chalicelib.service.customer_events import case_event_messages

logger = logging.getLogger(__name__)

#: The event type each fired timer becomes, for the event rules and for destinations.
TIMER_EVENT_TYPES: dict[CaseTimer, str] = {
    "sla": "case.sla_breached",
    "follow_up": "case.follow_up_due",
    "auto_close": "case.auto_closed",
}
#: The source of a timer's business event (`BusinessEvent.source`).
TIMER_SOURCE = "timer"
#: Why an auto-closed case closed: the reason the lazy close (`cases.effective`) records too.
INACTIVE = "inactive"
#: How often a close or re-arm is decided again when the customer changed under it.
COMMIT_ATTEMPTS = 3


class TimerOutcome:
    STALE = "timer_stale"
    REARMED = "timer_rearmed"
    ACTED = "timer_acted"


class CaseTimerHandler:
    """Collaborators: `process_addressed(event, customer_id) -> outcome` runs a business event
    through the event rules for one customer (`EventProcessor.process_addressed`);
    `case_event_destinations` / `case_timer_destinations` name the destinations that take case
    events and case timer events; `delivery_queue` carries those events to them; `timers` arms
    a re-armed auto-close and cancels an auto-closed case's other timers."""

    def __init__(
        self, *, store: Store, config: HubConfig, timers: Callable[[], TimerPort],
        process_addressed: Callable[[BusinessEvent, str], str], delivery_queue: Callable[[], Queue],
        case_event_destinations: Callable[[], list[str]], case_timer_destinations: Callable[[], list[str]],
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._config = config
        self._timers = timers
        self._process_addressed = process_addressed
        self._delivery_queue = delivery_queue
        self._case_event_destinations = case_event_destinations
        self._case_timer_destinations = case_timer_destinations
        self._clock = clock

    def handle(self, work: TimerFired) -> str:
        """Stale, re-arm or act on one fired timer; returns a `TimerOutcome`. Raises the store's,
        queue's and timers' `TransientError`s, and `ConcurrentUpdateError` when the customer kept
        changing (each means: retry the work later)."""
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                return self._handle(work)
            except ConcurrentUpdateError:
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _handle(self, work: TimerFired) -> str:
        now = self._clock()
        policy = self._config.cases
        case = self._store.get_case(work.case_id)
        if case is None:
            logger.info("timer %s of case %s: no such case", work.timer, work.case_id)
            return TimerOutcome.STALE
        decision = fired_timer_action(
            timer=work.timer, due_at=work.due_at, case_open=self._counts_open(case, work, now),
            armed_due_at=case.due.get(work.timer), last_activity_at=case.last_activity_at, policy=policy, now=now,
        )
        if decision.action == "stale":
            logger.info("timer %s of case %s due %s is stale: %s", work.timer, case.id, work.due_at.isoformat(),
                        decision.reason)
            return TimerOutcome.STALE
        if decision.action == "rearm":
            assert decision.rearm_at is not None
            if not self._rearm(case, decision.rearm_at, now):
                return TimerOutcome.STALE
            logger.info("auto-close of case %s re-armed for %s: %s", case.id, decision.rearm_at.isoformat(),
                        decision.reason)
            return TimerOutcome.REARMED
        announcements: list[OutgoingMessage] = []
        if work.timer == "auto_close" and case.status == CaseStatus.OPEN:
            closed = self._close(case, now)
            if closed is None:
                return TimerOutcome.STALE
            case = closed
            destinations = self._case_event_destinations()
            if destinations:
                announcements += case_event_messages("case.closed", case, occurred_at=case.closed_at or now,
                                                     destinations=destinations, reason=INACTIVE)
        event_type = TIMER_EVENT_TYPES[work.timer]
        destinations = self._case_timer_destinations()
        if destinations:
            announcements += case_event_messages(event_type, case, occurred_at=work.due_at, destinations=destinations,
                                                 reason=INACTIVE if work.timer == "auto_close" else None)
        if announcements:
            self._delivery_queue().send(announcements)
        outcome = self._process_addressed(self._event(case, work, now), case.customer_id)
        logger.info("timer %s of case %s acted: %s (event rules: %s)", work.timer, case.id, event_type, outcome)
        return TimerOutcome.ACTED

    def _counts_open(self, case: Case, work: TimerFired, now: datetime) -> bool:
        """Whether the case is open for this timer. An auto-close finds its case open in the
        store (the lazy close is never written without a contact), or already closed by itself:
        closed as inactive while still holding this due time (a retry after the close committed,
        or a contact that wrote the lazy close first, which announced no auto-close). The other
        timers need the case open as readers see it: an inactive case is closed."""
        if work.timer == "auto_close":
            return case.status == CaseStatus.OPEN or (
                case.close_reason == INACTIVE and case.due.get("auto_close") == work.due_at)
        return effective(case, now, self._config.cases).status == CaseStatus.OPEN

    def _rearm(self, case: Case, at: datetime, now: datetime) -> bool:
        """Arm the auto-close at its new due time, then record it on the case (and the
        customer's summary of it); False when the customer is gone."""
        customer = self._customer(case)
        if customer is None:
            return False
        self._timers().arm(case_timers(case.id, case.customer_id, {"auto_close": at}))
        rearmed = case.model_copy(update={"due": {**case.due, "auto_close": at}})
        self._write(customer, rearmed, now)
        return True

    def _close(self, case: Case, now: datetime) -> Case | None:
        """Close the case as the lazy close would (at the end of its inactivity, reason
        inactive), written with the customer; cancels its other timers, best effort. None when
        the customer is gone."""
        customer = self._customer(case)
        if customer is None:
            return None
        # What `effective` shows readers, also at the very due time (where it still counts the
        # case open): closed when its inactivity ended.
        closed = close(case, case.last_activity_at + timedelta(hours=self._config.cases.auto_close_after_hours),
                       reason=INACTIVE)
        self._write(customer, closed, now)
        cancel_case_timers(self._timers, closed, keep=("auto_close",))
        return closed

    def _write(self, customer: Customer, case: Case, now: datetime) -> None:
        """The case, and the customer's summary when it is the customer's open case, guarded by
        the customer's version (raises `ConcurrentUpdateError`)."""
        open_case = customer.open_case
        if open_case is not None and open_case.id == case.id:
            open_case = summarize(case) if case.status == CaseStatus.OPEN else None
        updated = customer.model_copy(update={"open_case": open_case, "updated_at": max(customer.updated_at, now),
                                              "version": customer.version + 1})
        self._store.update_customer(updated, cases=(case,))

    def _customer(self, case: Case) -> Customer | None:
        customer = self._store.get_customer(case.customer_id)
        if customer is None or customer.erasing:
            logger.info("timer of case %s: its customer %s is gone or being erased", case.id, case.customer_id)
            return None
        return customer

    def _event(self, case: Case, work: TimerFired, now: datetime) -> BusinessEvent:
        """The timer as a business event of the case's customer, dated when it was due; `data`
        describes the case, so rules can match on it (`event: {path: data.priority, eq: high}`)."""
        return BusinessEvent(
            type=TIMER_EVENT_TYPES[work.timer],
            id=timer_event_id(case.id, work.timer, work.due_at),
            occurred_at=work.due_at,
            customer=EventCustomer(customer_id=case.customer_id),
            data={
                "case_id": case.id,
                "timer": work.timer,
                "due_at": work.due_at.isoformat().replace("+00:00", "Z"),
                "queue": case.queue,
                "priority": None if case.priority is None else case.priority.name.lower(),
                "tags": list(case.tags),
                "opened_at": case.opened_at.isoformat().replace("+00:00", "Z"),
                "status": case.status.value,
            },
            source=TIMER_SOURCE,
            received_at=now,
        )
