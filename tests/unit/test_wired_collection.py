"""A piece of the hub is built with the cyclic garbage collector paused (bootstrap.wired): what it
creates lives as long as the hub, so a collection in the middle of the build is wasted cold-start
time. The collector is back on afterwards, also when the build fails, and stays off when it was
off before."""

from __future__ import annotations

import gc

import pytest

from chalicelib.bootstrap import Hub, wired


class _Probe(Hub):
    def __init__(self) -> None:  # no configuration: only the lock `wired` uses
        import threading

        self._lock = threading.RLock()
        self.seen: list[bool] = []

    @wired
    def piece(self) -> object:
        self.seen.append(gc.isenabled())
        return object()

    @wired
    def broken(self) -> object:
        self.seen.append(gc.isenabled())
        raise RuntimeError("cannot build")


@pytest.fixture(autouse=True)
def _collector_restored():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_a_build_runs_with_the_collector_paused_and_resumes_it():
    gc.enable()
    hub = _Probe()
    first = hub.piece
    assert hub.seen == [False]
    assert gc.isenabled()
    assert hub.piece is first and hub.seen == [False], "built once"


def test_a_failed_build_resumes_the_collector():
    gc.enable()
    hub = _Probe()
    with pytest.raises(RuntimeError):
        hub.broken
    assert hub.seen == [False] and gc.isenabled()


def test_a_collector_paused_before_stays_paused():
    gc.disable()
    hub = _Probe()
    hub.piece
    assert not gc.isenabled()
