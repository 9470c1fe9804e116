"""L1: the embedded runtime (`make run`) under load: acceptance, end-to-end rate, backlog drain.

The hub (waitress + the Chalice app + its SQLite queues, store and outbox) runs in this process,
as `make run` runs it; the clients run in a child process (`bench.embedded_http`'s: 16 threads on
keep-alive connections posting distinct signed Twilio SMS from 500 senders), so client CPU does
not compete with the hub for this interpreter's GIL.

- live: the workers run while 16 clients post; accepted webhooks/s while posting, and contacts/s
  from the first post to the last contact in the outbox (end to end);
- backlog drain: the workers are stopped while a backlog of N webhooks is accepted, then started;
  contacts/s from their start to the last contact in the outbox, for N = 1,000 and N = 10,000.
  Flat means the large backlog drains at the small one's rate;
- CPU per contact: the process's CPU over the 1,000-message drain (receive, process, deliver,
  settle, the outbox's fsync: everything the hub does per contact after acceptance), against
  `Processor.process_body` alone on the same bodies in a fresh hub (the floor).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

from bench.common import TWILIO_TOKEN, Result
from bench.embedded_http import _CONFIG, _load

NAME = "load_local"
CLIENTS = 16
LIVE = 2000
SMALL, LARGE = 1000, 10_000
#: A drain that has not finished after this long is reported as what it reached.
DRAIN_LIMIT_SECONDS = 120
_CONTACT = b'"type":"contact.created"'


class _Outbox:
    """Counts the contacts in the outbox file, reading only what was appended since last time."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.count, self.tail = path, 0, 0, b""

    def contacts(self) -> int:
        if self.path.exists():
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
            self.offset += len(data)
            chunk, self.tail = self.tail + data, b""
            cut = chunk.rfind(b"\n") + 1
            chunk, self.tail = chunk[:cut], chunk[cut:]
            self.count += chunk.count(_CONTACT)
        return self.count

    def wait_for(self, count: int, started: float) -> tuple[float, int]:
        """Seconds from `started` until `count` contacts are in the outbox (or the limit)."""
        while True:
            reached = self.contacts()
            now = time.perf_counter()
            if reached >= count or now - started > DRAIN_LIMIT_SECONDS:
                return now - started, reached
            time.sleep(0.02)


def _runtime(tmp: str, name: str):
    from chalicelib.local.memory import limit_malloc_arenas
    from chalicelib.local.runtime import EmbeddedRuntime
    from chalicelib.settings import Settings

    limit_malloc_arenas(Settings.from_environ().environ)  # as `hubctl run` does before its threads start (the first runtime's count)

    config = Path(tmp) / f"{name}.yaml"
    config.write_text(_CONFIG.format(token=TWILIO_TOKEN, key=hashlib.sha256(b"bench").hexdigest()))
    settings = Settings(config_path=str(config), data_dir=str(Path(tmp) / name), port=0)
    return EmbeddedRuntime(settings, port=0), Path(tmp) / name / "outbox.jsonl"


def _live(tmp: str) -> tuple[float, float, dict]:
    runtime, outbox = _runtime(tmp, "live")
    runtime.start(workers=True)
    try:
        _load(runtime.url, 0, 200, CLIENTS, False)  # warm-up
        counter = _Outbox(outbox)
        counter.wait_for(200, time.perf_counter())
        started = time.perf_counter()
        posting, counts = _load(runtime.url, 1000, LIVE, CLIENTS, False)
        accepted = counts.get("200", 0)
        seconds, reached = counter.wait_for(200 + accepted, started)
        return accepted / posting, (reached - 200) / seconds, counts
    finally:
        runtime.stop()


def _drain(tmp: str, size: int) -> tuple[float, float, float, list[str]]:
    """(contacts/s, CPU seconds per contact, acceptance/s without workers, the queued bodies)."""
    runtime, outbox = _runtime(tmp, f"backlog-{size}")
    runtime.start(workers=False)
    try:
        posting, counts = _load(runtime.url, 100_000, size, CLIENTS, False)
        queue = runtime.hub.workers._inbound_queue()
        bodies = [row[0] for row in queue._db.read().execute(
            "SELECT body FROM queue_messages WHERE queue = ? ORDER BY seq", (queue.name,))]
        counter = _Outbox(outbox)
        started, cpu = time.perf_counter(), time.process_time()
        runtime.start_workers()
        seconds, reached = counter.wait_for(len(bodies), started)
        cpu = time.process_time() - cpu
        return reached / seconds, cpu / max(reached, 1), counts.get("200", 0) / posting, bodies
    finally:
        runtime.stop()


def _process_body_floor(tmp: str, bodies: list[str]) -> float:
    """CPU seconds per contact of `Processor.process_body` alone, on the same bodies, fresh hub."""
    runtime, _ = _runtime(tmp, "floor")
    try:
        processor = runtime.hub.processor
        started = time.process_time()
        for body in bodies:
            processor.process_body(body)
        return (time.process_time() - started) / len(bodies)
    finally:
        from chalicelib.bootstrap import use_hub

        runtime.hub.close()
        use_hub(None)


def run() -> list[Result]:
    import logging

    # The hub logs a line per webhook and per message at INFO; a terminal would be the bottleneck.
    logging.disable(logging.INFO)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            accepted, live_rate, counts = _live(tmp)
            small_rate, small_cpu, small_accept, bodies = _drain(tmp, SMALL)
            large_rate, _, large_accept, large_bodies = _drain(tmp, LARGE)
            floor_cpu = _process_body_floor(tmp, bodies)
    finally:
        logging.disable(logging.NOTSET)
    flat = small_rate / large_rate
    return [
        Result(f"L1 accepted webhooks/s, {CLIENTS} clients, workers running", round(accepted, 1), None, None,
               ">= 300/s", accepted >= 300, "/s",
               note=f"{LIVE} distinct signed SMS from 500 senders; outcomes {counts}; without workers "
                    f"{small_accept:.0f}/s and {large_accept:.0f}/s (filling the backlogs)"),
        Result("L1 contacts/s end to end (first post to last contact in the outbox)", round(live_rate, 1), None,
               None, ">= 200/s", live_rate >= 200, "/s"),
        Result(f"L1 backlog drain: {SMALL:,} vs {len(large_bodies):,} queued (rate ratio small/large)",
               round(large_rate, 1), round(small_rate, 1), flat, "<= 1.2x", flat <= 1.2, "/s",
               note=f"contacts/s after the workers start: {SMALL:,} queued {small_rate:.0f}/s, "
                    f"{len(large_bodies):,} queued {large_rate:.0f}/s"),
        Result("L1 CPU per contact, embedded drain vs Processor.process_body alone", round(small_cpu * 1000, 2),
               round(floor_cpu * 1000, 2), small_cpu / floor_cpu, "report", None, "ms",
               note="whole process CPU over the 1,000-message drain (receive, process, deliver, outbox fsync, "
                    "settle) per contact; floor: process_body on the same bodies in a fresh hub"),
    ]
