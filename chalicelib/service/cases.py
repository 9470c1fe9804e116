"""Cases: the customer's open concern, whatever the channel. Pure decisions, no I/O.

A contact joins the customer's open case when it carries a thread key of that case (a chat
session, an email reply) or arrives within the window since the case's last activity. Otherwise
it opens a new case, and the previous one is closed. A customer has at most one open case; an open
case with no activity for `auto_close_after_hours` counts as closed (it is written closed on the
customer's next contact).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from chalicelib.domain.ids import digest_id
from chalicelib.domain.models import Case, CaseStatus, CaseSummary, Channel, Customer
from chalicelib.domain.policies import CasePolicy
from chalicelib.domain.values import Record


class CasePlan(Record):
    """`reason`: why the contact is in `case`: thread_key, within_window, reopened_by_thread_key,
    new_case. `other_cases`: other cases this contact changed (the previous open case, now closed)."""

    __slots__ = ("case", "reason", "other_cases")

    def __init__(self, case: Case, reason: str, other_cases: list[Case] | None = None) -> None:
        self.case = case
        self.reason = reason
        self.other_cases = [] if other_cases is None else other_cases


def attach_to_case(
    customer: Customer, channel: Channel, *, now: datetime, settings: CasePolicy, thread_case: Case | None = None
) -> CasePlan:
    open_case = _open_case(customer)
    # A thread of a customer this one absorbed in a merge is the same person's thread.
    if thread_case is not None and thread_case.customer_id in (customer.id, *customer.merged_from):
        if open_case is not None and open_case.id == thread_case.id:
            return CasePlan(_touch(open_case, channel, now), "thread_key")
        closed = [close(open_case, now, reason="superseded")] if open_case is not None else []
        reopened = thread_case.model_copy(update={
            "status": CaseStatus.OPEN, "closed_at": None, "close_reason": None, "closed_by": None, "customer_id": customer.id,
        })
        return CasePlan(_touch(reopened, channel, now), "reopened_by_thread_key", closed)
    if open_case is not None and now - open_case.last_activity_at <= timedelta(hours=settings.window_hours):
        return CasePlan(_touch(open_case, channel, now), "within_window")
    closed = []
    if open_case is not None:
        # An inactive case is written closed at the time readers have already seen (`effective`).
        inactive = effective(open_case, now, settings)
        closed = [inactive if inactive.status == CaseStatus.CLOSED else close(open_case, now, reason="window_elapsed")]
    new_case = Case(
        # Derived from the customer state it was decided on: two workers racing on one customer
        # name the same new case, so a retried contact can never point at a case nobody stored.
        id=digest_id("case", f"{customer.id}:v{customer.version}"),
        customer_id=customer.id, opened_at=now, last_activity_at=now, contact_count=1, channels=[channel],
    )
    return CasePlan(new_case, "new_case", closed)


def close(case: Case, now: datetime, *, reason: str) -> Case:
    return case.model_copy(update={"status": CaseStatus.CLOSED, "closed_at": now, "close_reason": reason})


def is_inactive(case: Case | CaseSummary, now: datetime, settings: CasePolicy) -> bool:
    return now - case.last_activity_at > timedelta(hours=settings.auto_close_after_hours)


def effective(case: Case, now: datetime, settings: CasePolicy) -> Case:
    """The case as a reader should see it: an open case inactive past the limit is closed."""
    if case.status == CaseStatus.OPEN and is_inactive(case, now, settings):
        closed_at = case.last_activity_at + timedelta(hours=settings.auto_close_after_hours)
        return close(case, closed_at, reason="inactive")
    return case


def summarize(case: Case) -> CaseSummary:
    return CaseSummary(**{name: getattr(case, name) for name in CaseSummary.model_fields})


def _open_case(customer: Customer) -> Case | None:
    summary = customer.open_case
    if summary is None:
        return None
    return Case(**summary.model_dump(), customer_id=customer.id)


def _touch(case: Case, channel: Channel, now: datetime) -> Case:
    return case.model_copy(update={
        "last_activity_at": max(case.last_activity_at, now),
        "contact_count": case.contact_count + 1,
        "channels": case.channels if channel in case.channels else [*case.channels, channel],
    })
