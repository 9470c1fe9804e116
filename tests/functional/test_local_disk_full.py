"""A full data directory on the embedded runtime: the webhook the hub cannot store is refused
with a 5xx (the provider retries it), and once there is room again the retry is accepted and
becomes one contact, delivered once.

"Full" is SQLite's own SQLITE_FULL ("database or disk is full"), the error a write gets from a
full file system, produced here without one: `PRAGMA max_page_count` caps the queue database at
the pages it has. The soak (`make soak`) does the same with a real full tmpfs, where it may mount.
"""

from __future__ import annotations

import sqlite3

import pytest

from chalicelib import bootstrap
from chalicelib.adapters import sqlite_db
from tests.functional.conftest import RunningHub, start_hub
from tests.functional.test_ingest_edges import twilio_request


@pytest.fixture
def full_disk(monkeypatch):
    """While `full["on"]`, every connection of the queue database may not grow it."""
    full = {"on": False}
    connect = sqlite_db.SqliteDatabase.connection

    def connection(self) -> sqlite3.Connection:
        conn = connect(self)
        if self.path.endswith("queue.db"):
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count={pages if full['on'] else 2**30}")
        return conn

    monkeypatch.setattr(sqlite_db.SqliteDatabase, "connection", connection)
    return full


def _sms(index: int) -> tuple[str, bytes, dict]:
    return twilio_request({"MessageSid": f"SM{index:032x}", "AccountSid": "AC" + "b" * 32, "From": "+16505550100",
                           "To": "+14155550100", "Body": f"message {index} " + "x" * 1500, "NumMedia": "0"})


def test_a_webhook_the_hub_cannot_store_is_refused_and_its_retry_accepted_once(tmp_path, receiver, full_disk,
                                                                                 monkeypatch):
    # A message whose processing failed on the full disk comes back after its visibility timeout
    # (60 s and 120 s); two seconds here, so the test need not wait them out.
    monkeypatch.setattr(bootstrap, "LOCAL_INBOUND_VISIBILITY", 2)
    monkeypatch.setattr(bootstrap, "LOCAL_DELIVERY_VISIBILITY", 2)
    runtime = start_hub(tmp_path, receiver, max_receives=50).start()
    try:
        running = RunningHub(runtime, receiver, tmp_path / "data")
        assert running.post(*_sms(0)).status == 200
        running.wait_for(lambda: running.settled() and len(running.outbox()) == 1, timeout=30, message="first delivered")

        full_disk["on"] = True
        refused = [running.post(*_sms(index)) for index in range(1, 40)]
        assert {answer.status for answer in refused} - {200} == {503}, [a.status for a in refused]
        stored_while_full = sum(answer.status == 200 for answer in refused)
        assert stored_while_full < len(refused), "the cap never bit: the test would prove nothing"

        full_disk["on"] = False
        for index, answer in enumerate(refused, start=1):  # the provider's retries
            if answer.status != 200:
                assert running.post(*_sms(index)).status == 200
        running.wait_for(lambda: running.settled() and len(running.outbox()) == 40, timeout=60,
                         message=f"all delivered ({len(running.outbox())} in the outbox)")
        sids = [event["data"]["contact"]["provider_message_id"] for event in running.outbox()]
        assert sorted(sids) == sorted(f"SM{index:032x}" for index in range(40))
    finally:
        runtime.stop()
