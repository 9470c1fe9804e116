"""A backlog accepted while the workers are stopped drains once they start, in order per sender
(`EmbeddedRuntime.start_workers`, which `bench/load_local.py` uses to measure drain rates)."""

from __future__ import annotations

from tests.functional.conftest import RunningHub, start_hub
from tests.functional.test_ingest_edges import twilio_request


def test_a_backlog_drains_once_the_workers_start_in_order_per_sender(tmp_path, receiver):
    runtime = start_hub(tmp_path, receiver, workers=2).start(workers=False)
    try:
        running = RunningHub(runtime, receiver, tmp_path / "data")
        for index in range(24):
            path, body, headers = twilio_request(
                {"MessageSid": f"SM{index:032x}", "AccountSid": "AC" + "b" * 32, "From": f"+1650555{index % 3:04d}",
                 "To": "+14155550100", "Body": f"message {index}", "NumMedia": "0"})
            assert running.post(path, body, headers).status == 200
        assert running.hub.inbound_queue.depth() == 24 and running.outbox() == []

        runtime.start_workers()
        runtime.start_workers()  # a second call starts no more threads
        assert len(runtime._threads) == 2 * 4 + 1  # inbound, delivery, outbound, events per worker; timers
        running.wait_for(lambda: running.settled() and len(running.outbox()) == 24, timeout=30, message="drained")

        per_sender: dict[str, list[int]] = {}
        for event in running.outbox():
            contact = event["data"]["contact"]
            per_sender.setdefault(event["data"]["customer"]["id"], []).append(int(contact["text"].split()[1]))
        assert len(per_sender) == 3
        assert all(numbers == sorted(numbers) for numbers in per_sender.values())
    finally:
        runtime.stop()
