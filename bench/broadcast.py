"""B1 (issue 15): a broadcast on the embedded runtime, flat in the number of customers it reaches.

One customerless business event (`outage.started` in four postcodes) is posted through
`POST /v1/events` to the embedded runtime (`make run`'s: waitress, the Chalice app, SQLite queues
and store), whose events worker threads fan it out page by page over the segment index
(`customers.indexed_attributes: [postcode]`) and notify every customer found by SMS. Measured for
a segment of 1,000 customers and of `HUB_BENCH_BROADCAST` customers (10,000 by default, so
`make bench` stays short; 100,000 is the full run, with 10,000 measured in between); the 1,000 run
comes before every larger one and after the last, and the floor is its median:

- time per 1,000 notified: wall time from the POST until the events queue is drained, per 1,000
  messages queued for sending; the large run's against the 1,000 runs' (<= 1.1x: flat); the same
  for the hub process's CPU over that time, which other work on the machine moves much less;
- memory per 1,000 notified: the growth of the process's peak resident set (VmHWM, reset after a
  warm-up broadcast, against the resident set then), per 1,000 messages; the same ratio. Resident
  memory, not `tracemalloc`: SQLite's page caches, the queues' rows in flight and the worker threads
  allocate outside Python's allocator, and `tracemalloc` would slow the Python side several-fold,
  distorting the time measured in the same run;
- messages == eligible: every customer the event's postcodes hold and whose consent allows a
  service SMS gets exactly one message (read from the outbound queue's bodies, and from the
  outbound contacts the store committed: no duplicates, none missing, nobody else). Every tenth
  customer in the segment opted out of SMS (a STOP), and a tenth as many customers again live in a
  postcode the event does not name.

The customers are written straight through the store port, a thousand per transaction (what
`create_customer` writes: the record with its segment index entries and its identifier claim),
in a data directory of the run; each run happens in a child process of its own, so its memory is
its own. The send workers stay off: the bench measures the fan-out up to the outbound queue, not
Twilio's HTTP (the events workers are the runtime's own worker threads, for the events role only).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.common import ROOT, TWILIO_TOKEN, Result, count_result, ratio_result

NAME = "broadcast"
SMALL = 1000
#: The large segment: `HUB_BENCH_BROADCAST=100000 python -m bench broadcast` is the full run.
LARGE = int(os.environ.get("HUB_BENCH_BROADCAST", "10000"))
#: The runs between the small and the large one (only those smaller than the large one).
MIDDLE = (10_000,)
FLAT = 1.1
#: Customers in the segment per consent opt-out (every tenth opted out of SMS).
OPT_OUT_EVERY = 10
#: The postcodes the event names, the one it does not, and the warm-up broadcast's.
POSTCODES = ("10115", "10117", "10119", "10178")
ELSEWHERE = "80331"
WARMUP = "99999"
WARMUP_CUSTOMERS = 20
SEED_BATCH = 1000
API_KEY = "bench-producer-key"
#: The hub's SMS number, which the customers wrote to.
NUMBER = "+14155550100"
#: A broadcast that has not drained after this long (plus 20 ms per customer) is reported as failed.
DRAIN_LIMIT_SECONDS = 120

_CONFIG = """
identity: {{default_region: US}}
customers: {{indexed_attributes: [postcode]}}
channels:
  twilio:
    auth_tokens: ["{token}"]
    public_url: https://hub.example.com/webhooks/twilio
    account_sid: AC{account}
    numbers: {{sms: ["{number}"]}}
destinations:
  - {{name: outbox, type: outbox, path: outbox.jsonl}}
media: {{enabled: false}}
api_keys: [{{name: producer, sha256: "{key}", scopes: ["events:write"]}}]
events:
  fanout_page_size: 100
  templates:
    outage_notice: {{text: {{en: "Power outage in {{data.region}}: we expect it back by {{data.eta}}."}}}}
  rules:
    - name: outage-broadcast
      when: {{event_type: outage.started}}
      customer_selector: {{attribute: postcode, in: data.postcodes}}
      then: {{notify: {{template: outage_notice, channels: [sms]}}}}
"""


# --- the population ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """One customer to seed: a phone number, a postcode, and whether they opted out of SMS."""

    index: int
    postcode: str
    opted_out: bool

    @property
    def phone(self) -> str:
        # US numbers +1 212 2xx-xxxx: valid (exchange 200-999) for up to 8,000,000 people.
        return f"+1212{2_000_000 + self.index:07d}"

    @property
    def eligible(self) -> bool:
        """Whether the measured broadcast must reach them: in a postcode it names, SMS allowed."""
        return self.postcode in POSTCODES and not self.opted_out


def population(size: int) -> Iterator[Person]:
    """`size` customers in the event's postcodes (every `OPT_OUT_EVERY`th opted out), `size // 10`
    in a postcode it does not name, and the warm-up broadcast's few in a postcode of their own."""
    if size < 1:
        raise ValueError(f"a broadcast needs at least 1 customer in its segment, not {size}")
    for index in range(size):
        yield Person(index, POSTCODES[index % len(POSTCODES)], index % OPT_OUT_EVERY == OPT_OUT_EVERY - 1)
    for index in range(size, size + size // 10):
        yield Person(index, ELSEWHERE, False)
    for index in range(size + size // 10, size + size // 10 + WARMUP_CUSTOMERS):
        yield Person(index, WARMUP, False)


# --- what was sent -------------------------------------------------------------------------------


@dataclass
class Exactness:
    """The messages one broadcast queued, against the customers it had to reach."""

    sent: int
    eligible: int
    duplicates: int
    missing: int
    unexpected: int

    @property
    def exact(self) -> bool:
        return self.sent == self.eligible and not (self.duplicates or self.missing or self.unexpected)

    def describe(self) -> str:
        return (f"{self.sent:,} sent for {self.eligible:,} eligible: {self.duplicates} duplicates, "
                f"{self.missing} missing, {self.unexpected} to customers not eligible")


def exactness(recipients: Iterable[str], eligible: set[str]) -> Exactness:
    """Compare the customer ids messages went to (one entry per message) with the eligible ones.
    A duplicate is every message beyond a customer's first."""
    counts = Counter(recipients)
    reached = set(counts)
    return Exactness(sent=sum(counts.values()), eligible=len(eligible),
                     duplicates=sum(n - 1 for n in counts.values()),
                     missing=len(eligible - reached), unexpected=len(reached - eligible))


# --- the results ---------------------------------------------------------------------------------


@dataclass
class Run:
    """One broadcast: its segment size, what it sent, and what it cost."""

    size: int
    notified: int
    seconds: float
    #: The hub process's CPU (all its threads) over the same time.
    cpu_seconds: float
    #: Growth of the peak resident set during the broadcast, in KiB.
    memory_kib: float
    #: The messages queued for sending (the outbound queue's bodies).
    exactness: Exactness
    #: The outbound contacts the store committed; None when not counted.
    committed: Exactness | None = None
    seed_seconds: float = 0.0
    notes: dict = field(default_factory=dict)

    @property
    def seconds_per_1000(self) -> float:
        return self.seconds * 1000 / max(self.notified, 1)

    @property
    def cpu_seconds_per_1000(self) -> float:
        return self.cpu_seconds * 1000 / max(self.notified, 1)

    @property
    def memory_kib_per_1000(self) -> float:
        return self.memory_kib * 1000 / max(self.notified, 1)


def results(runs: Sequence[Run]) -> list[Result]:
    """The largest run's per-1,000 wall time, CPU time and memory against the median of the small
    runs' (taken before, between and after the larger ones, so machine drift hits the floor too),
    each within `FLAT`; and one exact-count row per size (any duplicate, miss or stranger in any of
    its runs, queued or committed, is a miss)."""
    small_size, large_size = min(r.size for r in runs), max(r.size for r in runs)
    if small_size == large_size:
        raise ValueError("flatness needs a small and a large run")
    smalls = [r for r in runs if r.size == small_size]
    large = [r for r in runs if r.size == large_size][-1]
    by_size = ", ".join(f"{r.size:,}: {r.seconds_per_1000:.2f} s ({r.cpu_seconds_per_1000:.2f} s CPU)" for r in runs)
    floor_note = f"floor: the median of {len(smalls)} runs of {small_size:,}" if len(smalls) > 1 else ""

    def flat(what: str, measure, unit: str, note: str) -> Result:
        return ratio_result(f"B1 broadcast {what} per 1,000 notified, {large_size:,} vs {small_size:,} customers",
                            round(measure(large), 3), round(statistics.median(measure(r) for r in smalls), 3),
                            FLAT, unit, note="; ".join(n for n in (note, floor_note) if n))

    rows = [
        flat("time", lambda r: r.seconds_per_1000, "s",
             f"wall time per 1,000 notified, in run order: {by_size}; whole broadcasts "
             + ", ".join(f"{r.size:,} in {r.seconds:.1f} s" for r in runs)),
        flat("CPU", lambda r: r.cpu_seconds_per_1000, "s",
             "the hub process's CPU over the broadcast: what other work on the machine does not move"),
        flat("peak RSS growth", lambda r: r.memory_kib_per_1000, "KiB",
             "growth of the peak resident set over the broadcast: "
             + ", ".join(f"{r.size:,}: {r.memory_kib / 1024:.1f} MiB" for r in runs)),
    ]
    for size in sorted({r.size for r in runs}):
        same = [r for r in runs if r.size == size]
        notes = []
        for run in same:
            note = f"queued: {run.exactness.describe()}"
            if run.committed is not None:
                note += f"; committed outbound contacts: {run.committed.describe()}"
            notes.append(note)
        exact = all(r.exactness.exact and (r.committed is None or r.committed.exact) for r in same)
        distinct = list(dict.fromkeys(notes))
        note = distinct[0] + (f" (each of {len(same)} runs)" if len(same) > 1 else "") if len(distinct) == 1 \
            else " | ".join(distinct)
        rows.append(count_result(f"B1 messages == eligible, {size:,} customers in the segment",
                                 max(r.exactness.sent for r in same), f"== {same[0].exactness.eligible:,}, no duplicates",
                                 exact, note=note, unit="messages"))
    return rows


# --- one run: seed in this process, broadcast in a child, count here ----------------------------


def _settings(tmp: Path, name: str):
    from chalicelib.settings import Settings

    config = tmp / f"{name}.yaml"
    config.write_text(_CONFIG.format(token=TWILIO_TOKEN, account="a" * 32, number=NUMBER,
                                     key=hashlib.sha256(API_KEY.encode()).hexdigest()))
    return Settings(config_path=str(config), data_dir=str(tmp / name), port=0)


def seed(store, people: Iterable[Person], *, now: datetime, batch: int = SEED_BATCH) -> dict[str, list[str]]:
    """Write the customers through the store port, `batch` per transaction. Each is someone who
    wrote to the hub by SMS a month ago: what `create_customer` writes (the record with its segment
    index entries, its identifier's claim), the SMS conversation on the record (`reply_targets`)
    and that conversation's case, closed since. (A customer with no case at all is refused by
    `MessageService`, which files every message on a case.) Answers the customer ids by group:
    `eligible`, `ineligible` and `warmup`."""
    from datetime import timedelta

    from chalicelib.adapters.store.records import ClaimIdentifier
    from chalicelib.domain import consent
    from chalicelib.domain.identifiers import normalize
    from chalicelib.domain.ids import new_id
    from chalicelib.domain.models import CaseStatus, Channel
    from chalicelib.domain.stored import AttributeValue, Case, Customer, ReplyTarget

    wrote = now - timedelta(days=30)
    millis = int(wrote.timestamp() * 1000)
    groups: dict[str, list[str]] = {"eligible": [], "ineligible": [], "warmup": []}
    writes: list = []
    for count, person in enumerate(people, 1):
        phone = normalize("phone", person.phone, default_region="US")
        customer_id, case_id = new_id("cus", millis=millis), new_id("case", millis=millis)
        target = ReplyTarget(contact_id=new_id("ct", millis=millis), case_id=case_id, channel=Channel.SMS,
                             provider="twilio", account=NUMBER, to=phone.value, at=wrote)
        ledger = (consent.opt_out({}, "sms", source="bench", evidence="STOP", at=wrote) if person.opted_out else {})
        customer = Customer(id=customer_id, identifiers=[phone], consent=ledger, created_at=wrote, updated_at=wrote,
                            reply_targets={target.key: target},
                            attributes={"postcode": AttributeValue(value=person.postcode, source="crm",
                                                                   updated_at=wrote)})
        case = Case(id=case_id, customer_id=customer_id, opened_at=wrote, last_activity_at=wrote, contact_count=1,
                    channels=[Channel.SMS], status=CaseStatus.CLOSED, closed_at=wrote, last_inbound=target)
        writes += [store._customer(customer, guarded=False), ClaimIdentifier(phone.key, customer_id, False),
                   store._case(case)]
        group = "warmup" if person.postcode == WARMUP else "eligible" if person.eligible else "ineligible"
        groups[group].append(customer_id)
        if count % batch == 0:
            store._commit("create_customer", writes)
            writes = []
    if writes:
        store._commit("create_customer", writes)
    return groups


def _recipients(settings) -> tuple[list[str], list[str]]:
    """The customer id of every message in the outbound queue (the send workers never ran), and
    of every outbound contact the store committed: one entry per message, both."""
    from chalicelib.bootstrap import Hub

    hub = Hub(settings)
    try:
        queue = hub.outbound_queue
        rows = queue._db.read().execute("SELECT body FROM queue_messages WHERE queue = ?", (queue.name,))
        queued = [json.loads(body)["customer_id"] for (body,) in rows]
        rows = hub.store._db.read().execute(
            "SELECT customer_id FROM contacts WHERE json_extract(doc, '$.direction') = 'outbound'")
        return queued, [customer_id for (customer_id,) in rows]
    finally:
        hub.close()


def _one(tmp: Path, size: int, name: str) -> Run:
    from chalicelib.bootstrap import Hub

    settings = _settings(tmp, name)
    hub = Hub(settings)
    started = time.perf_counter()
    try:
        groups = seed(hub.store, population(size), now=datetime.now(UTC))
    finally:
        hub.close()
    seed_seconds = time.perf_counter() - started
    del hub
    gc.collect()
    limit = DRAIN_LIMIT_SECONDS + 0.02 * size
    child = subprocess.run(
        [sys.executable, "-m", "bench.broadcast", "measure", settings.config_path, settings.data_dir,
         str(len(groups["warmup"])), str(limit)],
        cwd=ROOT, capture_output=True, text=True, timeout=limit * 2 + 60, check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(f"the {size:,}-customer broadcast failed:\n{child.stderr[-4000:]}")
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    queued, committed = _recipients(settings)
    warmup, eligible = set(groups["warmup"]), set(groups["eligible"])
    counted = exactness([r for r in queued if r not in warmup], eligible)
    return Run(size=size, notified=counted.sent, seconds=measured["seconds"], cpu_seconds=measured["cpu_seconds"],
               memory_kib=measured["growth_kib"],
               exactness=counted, committed=exactness([r for r in committed if r not in warmup], eligible),
               seed_seconds=seed_seconds, notes=measured)


def sizes(large: int = LARGE) -> list[int]:
    """The runs in order: the small one before every larger one and after the last, so the floor
    (their median) is measured across the same stretch of machine time as the larger runs."""
    if large <= SMALL:
        raise ValueError(f"HUB_BENCH_BROADCAST must be more than {SMALL:,} (the small run), not {large:,}")
    order = [SMALL]
    for size in (*(m for m in MIDDLE if SMALL < m < large), large):
        order += [size, SMALL]
    return order


def run() -> list[Result]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="hub-bench-broadcast-") as tmp:
        for index, size in enumerate(sizes()):
            one = _one(Path(tmp), size, f"run{index}-{size}")
            print(f"    {size:,} customers: seeded in {one.seed_seconds:.1f} s; {one.notified:,} notified in "
                  f"{one.seconds:.1f} s (CPU {one.cpu_seconds:.1f} s); peak RSS +{one.memory_kib / 1024:.1f} MiB "
                  f"(baseline {one.notes['baseline_kib'] / 1024:.0f} MiB)", flush=True)
            runs.append(one)
    return results(runs)


# --- the child: the embedded runtime, its events workers, one broadcast --------------------------


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field_name}")


def _reset_peak() -> None:
    """Start VmHWM again from the current resident set (Linux 4.0+)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def _post(url: str, body: dict) -> None:
    import urllib.request

    request = urllib.request.Request(url + "/v1/events", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        if answer.status != 202:
            raise RuntimeError(f"POST /v1/events answered {answer.status}: {answer.read()[:500]!r}")


def _event(event_id: str, postcodes: Sequence[str]) -> dict:
    return {"type": "outage.started", "id": event_id, "occurred_at": datetime.now(UTC).isoformat(),
            "customer": None, "data": {"postcodes": list(postcodes), "region": "Berlin Mitte", "eta": "18:00"}}


def _drain(hub, started: float, limit: float) -> float:
    """Seconds from `started` until the events queue is empty. It is polled at 1 % of the time
    elapsed (at least every 20 ms), so polling neither costs the workers CPU nor blurs the time."""
    queue = hub.events_queue
    while True:
        now = time.perf_counter()
        if queue.depth() == 0:
            return now - started
        if now - started > limit:
            raise RuntimeError(f"the broadcast did not drain within {limit:.0f} s ({queue.depth()} events left)")
        time.sleep(max(0.02, (now - started) * 0.01))


def _measure(config_path: str, data_dir: str, warmup_customers: int, limit: float) -> dict:
    import logging

    from chalicelib.local.memory import limit_malloc_arenas
    from chalicelib.local.runtime import EmbeddedRuntime, _Worker
    from chalicelib.settings import Settings

    logging.disable(logging.INFO)  # a log line per message: the terminal would be measured
    limit_malloc_arenas(Settings.from_environ().environ)  # as `hubctl run` does before its threads start
    settings = Settings(config_path=config_path, data_dir=data_dir, port=0)
    runtime = EmbeddedRuntime(settings, port=0).start(workers=False)
    hub, halt = runtime.hub, threading.Event()
    workers = [_Worker(f"events-{i}", hub, "events", halt) for i in range(max(1, settings.local_workers))]
    for worker in workers:
        worker.start()
    try:
        # The warm-up reaches its own postcode: imports, compiled rules, templates and connections
        # are in place before the peak is reset, as in a hub that has been running for a while.
        _post(runtime.url, _event("bench-warmup", [WARMUP]))
        _drain(hub, time.perf_counter(), limit)
        warm = hub.outbound_queue.depth()
        if warm != warmup_customers:
            raise RuntimeError(f"the warm-up broadcast queued {warm} messages for {warmup_customers} customers")
        gc.collect()
        _reset_peak()
        baseline = _status_kib("VmRSS")
        started, cpu = time.perf_counter(), time.process_time()
        _post(runtime.url, _event("bench-outage", POSTCODES))
        seconds = _drain(hub, started, limit)
        cpu = time.process_time() - cpu
        peak = _status_kib("VmHWM")
    finally:
        halt.set()
        for worker in workers:
            worker.join(timeout=10)
        runtime.stop()
    return {"seconds": seconds, "cpu_seconds": cpu, "baseline_kib": baseline, "peak_kib": peak,
            "growth_kib": max(0, peak - baseline), "workers": len(workers)}


if __name__ == "__main__":
    if len(sys.argv) != 6 or sys.argv[1] != "measure":
        sys.exit("usage: python -m bench.broadcast measure CONFIG DATA_DIR WARMUP_CUSTOMERS LIMIT_SECONDS "
                 "(run the benchmark with `python -m bench broadcast`)")
    print(json.dumps(_measure(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))))
