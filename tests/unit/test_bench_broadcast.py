"""The broadcast benchmark's own logic (bench/broadcast.py): who must be reached, how what was sent
is counted against it, the flatness rows, and the seeding through the store port."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bench.broadcast import (
    ELSEWHERE,
    FLAT,
    NUMBER,
    POSTCODES,
    WARMUP,
    WARMUP_CUSTOMERS,
    Exactness,
    Run,
    exactness,
    population,
    results,
    seed,
    sizes,
)
from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.domain import consent
from chalicelib.domain.models import CaseStatus, Channel

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_exact_when_every_eligible_customer_got_one_message():
    counted = exactness(["a", "b", "c"], {"a", "b", "c"})
    assert counted == Exactness(sent=3, eligible=3, duplicates=0, missing=0, unexpected=0)
    assert counted.exact


@pytest.mark.parametrize(("recipients", "expected"), [
    (["a", "b", "c", "a", "a"], Exactness(sent=5, eligible=3, duplicates=2, missing=0, unexpected=0)),
    (["a", "b"], Exactness(sent=2, eligible=3, duplicates=0, missing=1, unexpected=0)),
    # The right number of messages, but one went to a stranger instead of c.
    (["a", "b", "x"], Exactness(sent=3, eligible=3, duplicates=0, missing=1, unexpected=1)),
])
def test_a_duplicate_a_miss_or_a_stranger_is_not_exact(recipients, expected):
    counted = exactness(recipients, {"a", "b", "c"})
    assert counted == expected
    assert not counted.exact
    assert f"{expected.duplicates} duplicates, {expected.missing} missing" in counted.describe()


def test_the_population_has_opted_out_customers_and_customers_elsewhere():
    people = list(population(1000))
    in_segment = [p for p in people if p.postcode in POSTCODES]
    assert len(in_segment) == 1000
    assert sum(p.opted_out for p in in_segment) == 100
    assert sum(p.eligible for p in people) == 900
    assert sum(p.postcode == ELSEWHERE for p in people) == 100
    assert sum(p.postcode == WARMUP for p in people) == WARMUP_CUSTOMERS
    assert {p.postcode for p in in_segment} == set(POSTCODES)
    assert len({p.phone for p in people}) == len(people)


def test_a_population_needs_a_segment():
    with pytest.raises(ValueError, match="at least 1 customer"):
        list(population(0))


def test_the_small_run_comes_before_every_larger_one_and_after_the_last():
    assert sizes(10_000) == [1000, 10_000, 1000]
    assert sizes(100_000) == [1000, 10_000, 1000, 100_000, 1000]
    assert sizes(5000) == [1000, 5000, 1000]
    with pytest.raises(ValueError, match="more than 1,000"):
        sizes(1000)


def _run(size: int, seconds: float, memory_kib: float, *, cpu_seconds: float | None = None, recipients=None) -> Run:
    eligible = {f"c{i}" for i in range(size)}
    counted = exactness(recipients if recipients is not None else sorted(eligible), eligible)
    return Run(size=size, notified=counted.sent, seconds=seconds, memory_kib=memory_kib, exactness=counted,
               cpu_seconds=seconds if cpu_seconds is None else cpu_seconds)


def test_flat_runs_meet_the_targets_per_1000_notified():
    small, large = _run(1000, 1.5, 400, cpu_seconds=1.2), _run(100_000, 155.0, 8000, cpu_seconds=125.0)
    time_row, cpu_row, memory_row, *counts = results([small, large])
    assert (time_row.measured, time_row.floor) == (1.55, 1.5)
    assert time_row.ratio == pytest.approx(1.55 / 1.5)
    assert time_row.met and time_row.target == f"<= {FLAT:g}x"
    assert (cpu_row.measured, cpu_row.floor) == (1.25, 1.2)
    assert cpu_row.met
    assert (memory_row.measured, memory_row.floor) == (80.0, 400.0)
    assert memory_row.met
    assert [(c.measured, c.met) for c in counts] == [(1000, True), (100_000, True)]


def test_the_floor_is_the_median_of_the_small_runs_around_the_large_ones():
    runs = [_run(1000, 1.0, 100), _run(10_000, 14.0, 800), _run(1000, 1.5, 300), _run(100_000, 150.0, 3000),
            _run(1000, 3.0, 200)]
    time_row, _, memory_row, *counts = results(runs)
    assert (time_row.measured, time_row.floor) == (1.5, 1.5) and time_row.met
    assert (memory_row.measured, memory_row.floor) == (30.0, 200.0)
    assert "median of 3 runs of 1,000" in time_row.note
    assert "100,000 vs 1,000" in time_row.benchmark
    assert [c.benchmark.split(", ")[1] for c in counts] == [
        "1,000 customers in the segment", "10,000 customers in the segment", "100,000 customers in the segment"]
    assert "(each of 3 runs)" in counts[0].note


def test_time_or_memory_growing_faster_than_the_customers_is_missed():
    small = _run(1000, 1.0, 100)
    time_row, cpu_row, memory_row, *_ = results([small, _run(10_000, 12.0, 900, cpu_seconds=10.0)])
    assert not time_row.met and time_row.ratio == pytest.approx(1.2)
    assert cpu_row.met and memory_row.met
    time_row, cpu_row, memory_row, *_ = results([small, _run(10_000, 10.0, 1200, cpu_seconds=13.0)])
    assert time_row.met
    assert not cpu_row.met and cpu_row.ratio == pytest.approx(1.3)
    assert not memory_row.met and memory_row.ratio == pytest.approx(1.2)


def test_a_run_with_a_duplicate_misses_its_count_row():
    duplicated = [f"c{i}" for i in range(1000)] + ["c7"]
    runs = [_run(1000, 1.0, 100), _run(10_000, 10.0, 900), _run(1000, 1.0, 100, recipients=duplicated)]
    *_, small_count, large_count = results(runs)
    assert not small_count.met and "1 duplicates" in small_count.note
    assert large_count.met


def test_flatness_needs_two_runs():
    with pytest.raises(ValueError, match="small and a large"):
        results([_run(1000, 1.0, 100), _run(1000, 1.2, 100)])


def test_seeding_writes_indexed_customers_who_wrote_by_sms_through_the_store():
    store = SqliteStore(":memory:", indexed_attributes=["postcode"])
    groups = seed(store, population(40), now=NOW, batch=7)
    assert (len(groups["eligible"]), len(groups["ineligible"]), len(groups["warmup"])) == (36, 8, WARMUP_CUSTOMERS)
    segment = [cid for postcode in POSTCODES for cid in store.segment_page("postcode", postcode, limit=100).items]
    assert len(segment) == 40
    assert set(groups["eligible"]) < set(segment)
    assert set(store.segment_page("postcode", WARMUP, limit=100).items) == set(groups["warmup"])
    customers = store.get_customers(segment)
    opted_out = {cid for cid, c in customers.items() if not consent.allows(c.consent, "sms", "service")}
    assert opted_out == set(segment) - set(groups["eligible"])
    customer = customers[groups["eligible"][0]]
    [target] = customer.reply_targets.values()
    assert (target.channel, target.account, target.to) == (Channel.SMS, NUMBER, customer.identifiers[0].value)
    assert store.find_customer_ids(customer.identifiers) == {customer.identifiers[0].key: customer.id}
    case = store.get_case(target.case_id)
    assert (case.customer_id, case.status) == (customer.id, CaseStatus.CLOSED)


def test_a_duplicate_committed_contact_misses_the_count_row_even_when_the_queue_is_exact():
    exact = _run(1000, 1.0, 100)
    eligible = {f"c{i}" for i in range(1000)}
    exact.committed = exactness(sorted(eligible) + ["c1"], eligible)
    *_, small_count, _ = results([exact, _run(10_000, 10.0, 900)])
    assert not small_count.met
    assert "committed outbound contacts: 1,001 sent for 1,000 eligible: 1 duplicates" in small_count.note
