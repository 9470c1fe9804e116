"""The outbox file commits concurrent lines in groups: fewer fsyncs than lines, each line durable
before its `deliver` returns, no line twice, a failed write failing every line of its group."""

from __future__ import annotations

import json
import os
import threading

import pytest

from chalicelib.adapters.connectors import outbox
from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.adapters.connectors.outbox import OutboxConnector, OutboxSettings
from chalicelib.errors import RetryableDeliveryError
from chalicelib.secrets import SecretResolver
from tests.unit.test_deliver import job

WRITERS = 16


def connector(tmp_path) -> OutboxConnector:
    return OutboxConnector("outbox", OutboxSettings(), SecretResolver({}), ConnectorRuntime(data_dir=str(tmp_path)))


def numbered(index: int):
    return job().model_copy(update={"delivery_id": f"dlv_{index}"})


def lines(tmp_path) -> list[str]:
    return [json.loads(raw)["delivery_id"] for raw in (tmp_path / "outbox.jsonl").read_text().splitlines()]


class SlowFsync:
    """`os.fsync` as a disk does it (slow), recording which lines were on file at each call."""

    def __init__(self, path, monkeypatch, *, fail: bool = False) -> None:
        self.path, self.fail, self.synced = path, fail, []
        self.calls = 0
        real = os.fsync
        self.first_call = threading.Event()
        self.release = threading.Event()

        def fsync(fd):
            self.calls += 1
            self.first_call.set()
            # The first fsync waits until every other writer has queued its line behind it.
            self.release.wait(5)
            if self.fail:
                raise OSError(28, "No space left on device")
            real(fd)
            self.synced = [json.loads(raw)["delivery_id"] for raw in path.read_text().splitlines()]

        monkeypatch.setattr(outbox.os, "fsync", fsync)


def run_writers(target, count: int) -> list[BaseException | None]:
    errors: list[BaseException | None] = [None] * count

    def write(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors[index] = exc

    threads = [threading.Thread(target=write, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    return threads, errors


def test_concurrent_writers_share_fsyncs_and_each_returns_once_its_line_is_durable(tmp_path, monkeypatch):
    destination = connector(tmp_path)
    fsync = SlowFsync(tmp_path / "outbox.jsonl", monkeypatch)
    returned: dict[int, list[str]] = {}

    def deliver(index: int) -> None:
        destination.deliver(numbered(index))
        # What was synced when this writer was told its line is delivered.
        returned[index] = list(fsync.synced)

    threads, errors = run_writers(deliver, WRITERS)
    assert fsync.first_call.wait(5)
    # Let the others queue up behind the write in progress, then let the disk answer.
    while len(destination._queued) < WRITERS - 1 and any(t.is_alive() for t in threads):
        threading.Event().wait(0.01)
    fsync.release.set()
    for thread in threads:
        thread.join(10)

    assert errors == [None] * WRITERS
    assert sorted(lines(tmp_path)) == sorted(f"dlv_{index}" for index in range(WRITERS))
    assert fsync.calls < WRITERS
    assert fsync.calls == 2  # the first line alone, then every line queued while it was written
    for index, synced in returned.items():
        assert f"dlv_{index}" in synced


def test_the_same_delivery_written_concurrently_is_one_line(tmp_path, monkeypatch):
    destination = connector(tmp_path)
    fsync = SlowFsync(tmp_path / "outbox.jsonl", monkeypatch)
    fsync.release.set()

    threads, errors = run_writers(lambda index: destination.deliver(job()), WRITERS)
    for thread in threads:
        thread.join(10)

    assert errors == [None] * WRITERS
    assert lines(tmp_path) == ["dlv_1"]
    # A fresh connector (a restart) reads the file and writes nothing again.
    connector(tmp_path).deliver(job())
    assert lines(tmp_path) == ["dlv_1"]


def test_a_failed_write_fails_every_line_of_its_group_and_a_retry_writes_them(tmp_path, monkeypatch):
    destination = connector(tmp_path)
    fsync = SlowFsync(tmp_path / "outbox.jsonl", monkeypatch, fail=True)
    fsync.release.set()

    threads, errors = run_writers(lambda index: destination.deliver(numbered(index)), 4)
    for thread in threads:
        thread.join(10)

    assert all(isinstance(error, RetryableDeliveryError) for error in errors)
    fsync.fail = False
    for index in range(4):
        destination.deliver(numbered(index))
    # Not marked written after the failure: the retry writes (the reader skips repeated ids).
    assert {f"dlv_{index}" for index in range(4)} <= set(lines(tmp_path))
    assert destination._by_id == {} and destination._queued == []


@pytest.mark.parametrize("count", [1, 3])
def test_sequential_deliveries_each_take_one_fsync(tmp_path, monkeypatch, count):
    destination = connector(tmp_path)
    fsync = SlowFsync(tmp_path / "outbox.jsonl", monkeypatch)
    fsync.release.set()

    for index in range(count):
        destination.deliver(numbered(index))

    assert fsync.calls == count
    assert lines(tmp_path) == [f"dlv_{index}" for index in range(count)]
