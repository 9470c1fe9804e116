"""The embedded runtime's timers on a SQLite file: durable across restarts, idempotent by name,
and safe to pump from one thread while another arms."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.adapters.timers.base import Timer
from chalicelib.adapters.timers.local import LocalTimers
from chalicelib.errors import TransientError

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _timer(name: str, minutes: float, payload: str = '{"customer_id": "cus_1"}') -> Timer:
    return Timer(name=name, due_at=T0 + timedelta(minutes=minutes), payload=payload)


def test_armed_timers_survive_a_restart(tmp_path):
    path = str(tmp_path / "data" / "timers.db")
    first = LocalTimers(path)
    first.arm([_timer("a", 1), _timer("b", 2)])
    first.close()

    again = LocalTimers(path)  # a new process: the schema statements are idempotent
    assert [(t.name, t.due_at, t.payload) for t in again.due(T0 + timedelta(minutes=5), 10)] == [
        ("a", T0 + timedelta(minutes=1), '{"customer_id": "cus_1"}'),
        ("b", T0 + timedelta(minutes=2), '{"customer_id": "cus_1"}'),
    ]
    with sqlite3.connect(path) as raw:  # really on disk, in the agreed table
        assert raw.execute("SELECT name FROM timers ORDER BY due_at").fetchall() == [("a",), ("b",)]


def test_arming_a_name_again_keeps_the_first_timer(tmp_path):
    timers = LocalTimers(str(tmp_path / "timers.db"))
    timers.arm([_timer("a", 1, '{"v": 1}')])
    timers.arm([_timer("a", 30, '{"v": 2}'), _timer("a", 40, '{"v": 3}')])
    assert [(t.due_at, t.payload) for t in timers.due(T0 + timedelta(days=1), 10)] == [
        (T0 + timedelta(minutes=1), '{"v": 1}')]
    assert timers.count() == 1


def test_due_honours_the_time_and_the_limit(tmp_path):
    timers = LocalTimers(str(tmp_path / "timers.db"))
    timers.arm([_timer(f"t{i}", i) for i in range(5)])
    assert [t.name for t in timers.due(T0 + timedelta(minutes=2), 10)] == ["t0", "t1", "t2"]
    assert [t.name for t in timers.due(T0 + timedelta(minutes=9), 2)] == ["t0", "t1"]
    assert timers.due(T0 - timedelta(seconds=1), 10) == []
    with pytest.raises(ValueError, match="limit"):
        timers.due(T0, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        timers.due(T0.replace(tzinfo=None), 1)


def test_remove_and_cancel_forget_timers_and_ignore_unknown_names(tmp_path):
    timers = LocalTimers(str(tmp_path / "timers.db"))
    timers.arm([_timer(f"t{i}", i) for i in range(1200)])
    timers.remove([f"t{i}" for i in range(0, 1200, 2)] + ["never-armed"])  # beyond one statement's parameters
    timers.cancel(["t1", "t3", "unknown"])
    remaining = timers.due(T0 + timedelta(days=3), 2000)
    assert len(remaining) == 598 and remaining[0].name == "t5"


def test_a_cancelled_timer_can_be_armed_again(tmp_path):
    timers = LocalTimers(str(tmp_path / "timers.db"))
    timers.arm([_timer("a", 1)])
    timers.cancel(["a"])
    timers.arm([_timer("a", 2)])
    assert [t.due_at for t in timers.due(T0 + timedelta(hours=1), 5)] == [T0 + timedelta(minutes=2)]


def test_arming_from_several_threads_loses_nothing(tmp_path):
    """The hub's worker threads share one `LocalTimers` (one SQLite connection per thread)."""
    path = str(tmp_path / "timers.db")
    errors: list[Exception] = []
    timers = LocalTimers(path)

    def arm(worker: int) -> None:
        try:
            for i in range(50):
                timers.arm([_timer(f"w{worker}-{i}", i)])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=arm, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert LocalTimers(path).count() == 200


def test_a_broken_database_is_a_transient_error(tmp_path):
    path = tmp_path / "timers.db"
    timers = LocalTimers(str(path))
    timers._db.connection().execute("DROP TABLE timers")
    with pytest.raises(TransientError, match="arm"):
        timers.arm([_timer("a", 1)])
    with pytest.raises(TransientError, match="due"):
        timers.due(T0, 1)
