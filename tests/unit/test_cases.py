"""Case decisions: join the open case, open a new one, reopen by thread key, close by inactivity."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.domain.models import Case, CaseStatus, CaseSummary, Channel, Customer
from chalicelib.domain.policies import CasePolicy
from chalicelib.service.cases import attach_to_case, close, effective, is_inactive, summarize

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
SETTINGS = CasePolicy(window_hours=72, auto_close_after_hours=168)
WINDOW = timedelta(hours=72)
AUTO_CLOSE = timedelta(hours=168)
SECOND = timedelta(seconds=1)


def a_case(case_id: str = "case_open", *, customer_id: str = "cus_A", last: datetime = T0, count: int = 2,
           channels=(Channel.SMS,), status: CaseStatus = CaseStatus.OPEN, closed_at: datetime | None = None,
           close_reason: str | None = None) -> Case:
    return Case(
        id=case_id, customer_id=customer_id, opened_at=T0 - timedelta(hours=1), last_activity_at=last,
        contact_count=count, channels=list(channels), status=status, closed_at=closed_at, close_reason=close_reason,
    )


def a_customer(open_case: Case | None = None, *, customer_id: str = "cus_A", version: int = 3) -> Customer:
    return Customer(id=customer_id, version=version, open_case=summarize(open_case) if open_case else None)


def attach(customer: Customer, now: datetime, *, channel: Channel = Channel.SMS, thread_case: Case | None = None,
           settings: CasePolicy = SETTINGS):
    return attach_to_case(customer, channel, now=now, settings=settings, thread_case=thread_case)


# --- a new case --------------------------------------------------------------------------------


def test_a_customer_without_an_open_case_opens_one():
    plan = attach(a_customer(), T0, channel=Channel.WHATSAPP)

    assert plan.reason == "new_case"
    assert plan.other_cases == []
    case = plan.case
    assert (case.customer_id, case.status, case.closed_at) == ("cus_A", CaseStatus.OPEN, None)
    assert (case.opened_at, case.last_activity_at, case.contact_count) == (T0, T0, 1)
    assert case.channels == [Channel.WHATSAPP]
    assert case.id.startswith("case_")


def test_the_new_case_id_is_derived_from_the_customer_state_it_was_decided_on():
    first = attach(a_customer(version=3), T0).case.id

    assert attach(a_customer(version=3), T0 + timedelta(hours=5), channel=Channel.EMAIL).case.id == first
    assert attach(a_customer(version=4), T0).case.id != first
    assert attach(a_customer(customer_id="cus_B", version=3), T0).case.id != first


# --- joining the open case ---------------------------------------------------------------------


@pytest.mark.parametrize("gap", [timedelta(0), timedelta(hours=1), WINDOW - SECOND, WINDOW])
def test_a_contact_within_the_window_joins_the_open_case(gap):
    open_case = a_case(count=2)

    plan = attach(a_customer(open_case), T0 + gap)

    assert plan.reason == "within_window"
    assert plan.other_cases == []
    assert plan.case.id == "case_open"
    assert plan.case.contact_count == 3
    assert plan.case.last_activity_at == T0 + gap
    assert plan.case.opened_at == open_case.opened_at
    assert plan.case.status == CaseStatus.OPEN


@pytest.mark.parametrize(
    ("channels", "channel", "expected"),
    [
        ([Channel.SMS], Channel.SMS, [Channel.SMS]),
        ([Channel.SMS], Channel.WHATSAPP, [Channel.SMS, Channel.WHATSAPP]),
        ([Channel.SMS, Channel.EMAIL], Channel.SMS, [Channel.SMS, Channel.EMAIL]),
        ([Channel.SMS, Channel.EMAIL], Channel.WEBCHAT, [Channel.SMS, Channel.EMAIL, Channel.WEBCHAT]),
    ],
)
def test_joining_appends_a_channel_once(channels, channel, expected):
    plan = attach(a_customer(a_case(channels=channels)), T0 + timedelta(hours=1), channel=channel)

    assert plan.case.channels == expected


def test_a_late_arriving_older_contact_never_moves_last_activity_back():
    plan = attach(a_customer(a_case(last=T0)), T0 - timedelta(hours=2))

    assert plan.reason == "within_window"
    assert plan.case.last_activity_at == T0
    assert plan.case.contact_count == 3


def test_the_customer_record_is_not_changed_by_the_decision():
    customer = a_customer(a_case())
    before = customer.model_copy(deep=True)

    attach(customer, T0 + timedelta(hours=1), channel=Channel.EMAIL)
    attach(customer, T0 + WINDOW + SECOND)

    assert customer == before


# --- the window elapsed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gap", "reason"),
    [
        (WINDOW + SECOND, "window_elapsed"),
        (timedelta(hours=100), "window_elapsed"),
        (AUTO_CLOSE, "window_elapsed"),
        (AUTO_CLOSE + SECOND, "inactive"),
        (timedelta(days=60), "inactive"),
    ],
)
def test_beyond_the_window_a_new_case_opens_and_the_previous_one_is_closed(gap, reason):
    open_case = a_case(count=4, channels=[Channel.EMAIL])
    now = T0 + gap

    plan = attach(a_customer(open_case), now, channel=Channel.SMS)

    assert plan.reason == "new_case"
    assert plan.case.id != "case_open"
    assert (plan.case.contact_count, plan.case.channels, plan.case.opened_at) == (1, [Channel.SMS], now)
    (previous,) = plan.other_cases
    assert previous.id == "case_open"
    assert (previous.status, previous.close_reason) == (CaseStatus.CLOSED, reason)
    assert (previous.contact_count, previous.channels, previous.last_activity_at) == (4, [Channel.EMAIL], T0)


def test_a_case_closed_because_the_window_elapsed_is_closed_at_the_new_contact():
    now = T0 + WINDOW + timedelta(hours=1)

    (previous,) = attach(a_customer(a_case()), now).other_cases

    assert previous.closed_at == now


def test_an_inactive_case_is_written_closed_at_the_time_readers_already_saw():
    open_case = a_case()
    now = T0 + timedelta(days=30)

    (previous,) = attach(a_customer(open_case), now).other_cases

    assert previous == effective(open_case, now, SETTINGS)


def test_the_window_follows_the_settings():
    short = CasePolicy(window_hours=1, auto_close_after_hours=2)
    customer = a_customer(a_case())

    assert attach(customer, T0 + timedelta(minutes=59), settings=short).reason == "within_window"
    plan = attach(customer, T0 + timedelta(minutes=61), settings=short)
    assert plan.reason == "new_case"
    assert plan.other_cases[0].close_reason == "window_elapsed"
    assert attach(customer, T0 + timedelta(hours=3), settings=short).other_cases[0].close_reason == "inactive"


# --- thread keys -------------------------------------------------------------------------------


@pytest.mark.parametrize("gap", [timedelta(hours=1), WINDOW + SECOND, AUTO_CLOSE + timedelta(days=10)])
def test_a_thread_key_of_the_open_case_joins_it_whatever_the_gap(gap):
    open_case = a_case(count=5, channels=[Channel.EMAIL])
    now = T0 + gap

    plan = attach(a_customer(open_case), now, channel=Channel.WEBCHAT, thread_case=open_case)

    assert plan.reason == "thread_key"
    assert plan.other_cases == []
    assert plan.case.id == "case_open"
    assert plan.case.status == CaseStatus.OPEN
    assert (plan.case.contact_count, plan.case.last_activity_at) == (6, now)
    assert plan.case.channels == [Channel.EMAIL, Channel.WEBCHAT]


def test_a_thread_key_of_an_older_case_reopens_it_and_supersedes_the_open_one():
    old = a_case("case_old", last=T0 - timedelta(days=20), count=7, channels=[Channel.EMAIL],
                 status=CaseStatus.CLOSED, closed_at=T0 - timedelta(days=15), close_reason="window_elapsed")
    open_case = a_case("case_open", last=T0, count=2, channels=[Channel.SMS])
    now = T0 + timedelta(hours=1)

    plan = attach(a_customer(open_case), now, channel=Channel.EMAIL, thread_case=old)

    assert plan.reason == "reopened_by_thread_key"
    reopened = plan.case
    assert reopened.id == "case_old"
    assert (reopened.status, reopened.closed_at, reopened.close_reason) == (CaseStatus.OPEN, None, None)
    assert (reopened.contact_count, reopened.last_activity_at, reopened.channels) == (8, now, [Channel.EMAIL])
    assert reopened.opened_at == old.opened_at
    (superseded,) = plan.other_cases
    assert superseded.id == "case_open"
    assert (superseded.status, superseded.close_reason, superseded.closed_at) == (CaseStatus.CLOSED, "superseded", now)


def test_a_thread_key_of_an_older_case_reopens_it_when_nothing_is_open():
    old = a_case("case_old", status=CaseStatus.CLOSED, closed_at=T0, close_reason="api")

    plan = attach(a_customer(None), T0 + timedelta(days=90), thread_case=old)

    assert plan.reason == "reopened_by_thread_key"
    assert (plan.case.id, plan.case.status, plan.case.closed_at) == ("case_old", CaseStatus.OPEN, None)
    assert plan.other_cases == []


@pytest.mark.parametrize(
    ("open_case", "gap", "reason", "case_id"),
    [
        (a_case(), timedelta(hours=1), "within_window", "case_open"),
        (a_case(), WINDOW + SECOND, "new_case", None),
        (None, timedelta(hours=1), "new_case", None),
    ],
)
def test_a_thread_case_of_another_customer_is_ignored(open_case, gap, reason, case_id):
    foreign = a_case("case_foreign", customer_id="cus_B", status=CaseStatus.CLOSED, closed_at=T0, close_reason="api")
    customer = a_customer(open_case)

    plan = attach(customer, T0 + gap, thread_case=foreign)

    assert plan.reason == reason
    assert plan.case.customer_id == "cus_A"
    assert plan.case.id != "case_foreign"
    assert all(case.id != "case_foreign" for case in plan.other_cases)
    assert plan == attach(customer, T0 + gap)
    if case_id is not None:
        assert plan.case.id == case_id


# --- what readers see --------------------------------------------------------------------------


def test_an_inactive_open_case_reads_as_closed_when_the_limit_passed():
    open_case = a_case(count=3)

    seen = effective(open_case, T0 + AUTO_CLOSE + SECOND, SETTINGS)

    assert (seen.status, seen.close_reason, seen.closed_at) == (CaseStatus.CLOSED, "inactive", T0 + AUTO_CLOSE)
    assert seen.model_dump(exclude={"status", "close_reason", "closed_at"}) == open_case.model_dump(
        exclude={"status", "close_reason", "closed_at"}
    )
    assert open_case.status == CaseStatus.OPEN, "the input is not changed"


@pytest.mark.parametrize(
    ("case", "now"),
    [
        (a_case(), T0 + timedelta(hours=1)),
        (a_case(), T0 + AUTO_CLOSE),
        (a_case(status=CaseStatus.CLOSED, closed_at=T0 + timedelta(hours=2), close_reason="api"),
         T0 + timedelta(days=90)),
        (a_case(status=CaseStatus.CLOSED, closed_at=T0 + SECOND, close_reason="superseded"), T0 + timedelta(days=90)),
    ],
)
def test_effective_leaves_active_and_already_closed_cases_unchanged(case, now):
    assert effective(case, now, SETTINGS) == case


@pytest.mark.parametrize(
    ("gap", "inactive"),
    [(timedelta(0), False), (AUTO_CLOSE - SECOND, False), (AUTO_CLOSE, False), (AUTO_CLOSE + SECOND, True)],
)
def test_inactivity_is_measured_from_the_last_activity_for_cases_and_summaries(gap, inactive):
    case = a_case()

    assert is_inactive(case, T0 + gap, SETTINGS) is inactive
    assert is_inactive(summarize(case), T0 + gap, SETTINGS) is inactive
    assert isinstance(summarize(case), CaseSummary) and not isinstance(summarize(case), Case)


def test_close_records_time_and_reason_and_keeps_the_rest():
    case = a_case(count=9)

    closed = close(case, T0 + timedelta(hours=3), reason="api")

    assert (closed.status, closed.closed_at, closed.close_reason) == (CaseStatus.CLOSED, T0 + timedelta(hours=3), "api")
    assert (closed.id, closed.contact_count, closed.last_activity_at) == (case.id, 9, case.last_activity_at)
    assert case.status == CaseStatus.OPEN
