"""The soak: the hub as `make run` runs it, under a long stream of signed webhooks, while it is
killed and restarted and its destination fails, then checked for loss and duplicates.

`python -m soak` (`make soak`) runs the full scenario; `tests/functional/test_soak.py` runs a short
one in `make test`. What it does:

1. starts the hub as its own process (`python -m chalicelib.cli run`, a fresh data directory),
   with a signed webhook destination played by this process (`FlakyDestination`);
2. posts signed webhooks from many clients and senders over every channel the hub has
   (`soak.providers`: Twilio SMS and WhatsApp, Meta WhatsApp, Messenger and Instagram, the web
   chat, Slack, Telegram, X, Mailgun, SendGrid and SES mail), signed as each provider signs
   them, a share of them sent twice (a provider's retry); a webhook that gets no 2xx (the hub
   is down, restarting, or answered 5xx) is sent again, as providers do;
3. kills the hub with SIGKILL at evenly spaced points and starts it again on the same data;
4. makes the destination answer storms of 500 and 429 (with Retry-After), then an outage of 503s
   long enough for the delivery circuit to open;
5. waits until the backlog is drained, replays what the hub dead-lettered (as an operator would
   after an outage), and checks: every acknowledged webhook is exactly one contact, delivered
   exactly once (by provider message id against the destination's log), and reports the hub's
   memory after the run against after warm-up and the data directory's growth per contact:
   while the hub runs (with its SQLite write-ahead logs, the peak) and after a clean stop
   (checkpointed: the lasting growth), broken down by file and by table (`soak.disk`).

6. with `disk_quota_mb` and the privilege to mount (root, or CAP_SYS_ADMIN), puts the data
   directory on a tmpfs of that size and, two thirds in, fills it with a ballast file for
   `disk_full_seconds`: the hub must refuse webhooks it cannot store (5xx, so providers retry)
   and lose nothing it acknowledged. Without the privilege the phase is skipped and reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from soak import providers
from soak.disk import DataDirUse, measure

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
API_KEY = "soak-api-key"


def hub_config(destination_url: str) -> dict:
    """The hub as the soak runs it: every channel provider on (`soak.providers`), one signed
    webhook destination, fast circuit cool-downs so the storms and the outage fit a short run."""
    return {
        "identity": {"default_region": "US"},
        **providers.hub_config(),
        "destinations": [{"name": "crm", "type": "webhook", "url": destination_url, "secrets": [WEBHOOK_SECRET],
                          "timeout_seconds": 5, "case_events": False}],
        "delivery": {"attempts_per_invocation": 2, "max_inline_wait_seconds": 1, "max_receives": 30,
                     "circuit_failure_threshold": 5, "circuit_cooldown_seconds": 1, "circuit_max_cooldown_seconds": 4},
        "media": {"enabled": False},
        "enrichment": {"language": {"enabled": False}},
        "api_keys": [{"name": "soak", "sha256": hashlib.sha256(API_KEY.encode()).hexdigest(),
                      "scopes": ["customers:read", "operations"]}],
    }


@dataclass
class Plan:
    messages: int = 2000
    senders: int = 300
    clients: int = 16
    duplicate_share: float = 0.05
    kills: int = 3
    #: Seconds of 500/429 storms, then of the outage (503), during the posting.
    storm_seconds: float = 5.0
    outage_seconds: float = 20.0
    #: The most the hub may take to drain after the last webhook.
    drain_seconds: float = 600.0
    #: The data directory's size limit (a tmpfs) and how long it is kept full; 0: no disk phase.
    disk_quota_mb: int = 0
    disk_full_seconds: float = 10.0
    seed: int = 13
    #: The webhooks a hub process takes before its memory counts as warmed up (at most a quarter of
    #: the run). 10,000 is the size of its bounded in-memory caches (the signature replay window,
    #: the identifier cache): until they are full, growth is the caches filling, not a leak.
    warmup_messages: int = 10_000
    #: Seconds between the RSS samples the report summarises.
    rss_sample_seconds: float = 5.0


@dataclass
class Report:
    accepted: int = 0
    #: Acknowledged webhooks per channel (`soak.providers.BUILDERS`).
    accepted_by_channel: dict[str, int] = field(default_factory=dict)
    duplicates_sent: int = 0
    retries_after_failure: int = 0
    kills: int = 0
    contacts: int = 0
    delivered: int = 0
    missing: list[str] = field(default_factory=list)
    doubled_contacts: list[str] = field(default_factory=list)
    doubled_deliveries: list[str] = field(default_factory=list)
    dead_letters_replayed: int = 0
    #: What the disk phase did: "" (not asked for), "ran: …", or why it was skipped.
    disk_full: str = ""
    destination_answers: dict[int, int] = field(default_factory=dict)
    rss_after_warmup_kb: int = 0
    rss_after_run_kb: int = 0
    #: (seconds since the start, webhooks sent so far, hub RSS in kB), every `rss_sample_seconds`.
    rss_samples: list[tuple[float, int, int]] = field(default_factory=list)
    #: The data directory while the hub still runs (its WAL files included) and after it stopped
    #: cleanly (the WAL checkpointed into the databases): peak and lasting growth.
    data_dir_bytes: int = 0
    data_dir_live: DataDirUse | None = None
    data_dir_at_rest: DataDirUse | None = None
    seconds: float = 0.0

    @property
    def lost_nothing(self) -> bool:
        return not self.missing and not self.doubled_contacts and not self.doubled_deliveries

    @property
    def rss_growth(self) -> float:
        return self.rss_after_run_kb / self.rss_after_warmup_kb if self.rss_after_warmup_kb else 0.0

    def _at_rest_lines(self) -> list[str]:
        rest = self.data_dir_at_rest
        if rest is None:
            return []
        per_contact = rest.total / self.contacts if self.contacts else 0
        return [f"data directory after a clean stop: {rest.total} bytes, {per_contact:.0f} bytes per contact",
                *rest.lines(self.contacts)]

    def lines(self) -> list[str]:
        per_contact = self.data_dir_bytes / self.contacts if self.contacts else 0
        return [
            f"webhooks acknowledged: {self.accepted} distinct (+{self.duplicates_sent} sent twice, "
            f"{self.retries_after_failure} re-sent after no 2xx), hub killed {self.kills}x",
            "by channel: " + ", ".join(f"{name} {count}" for name, count in sorted(self.accepted_by_channel.items())),
            f"contacts: {self.contacts}, delivered: {self.delivered}, dead letters replayed: "
            f"{self.dead_letters_replayed}",
            f"missing: {len(self.missing)}, contacts twice: {len(self.doubled_contacts)}, "
            f"delivered twice: {len(self.doubled_deliveries)}",
            f"destination answers: {dict(sorted(self.destination_answers.items()))}",
            f"full disk: {self.disk_full or 'not asked for'}",
            f"hub RSS: {self.rss_after_warmup_kb} kB after warm-up, {self.rss_after_run_kb} kB after the run "
            f"({self.rss_growth:.2f}x); peak {max((kb for *_, kb in self.rss_samples), default=0)} kB",
            "hub RSS over the run (s, webhooks sent, kB): " + ", ".join(
                f"{at:.0f}/{sent}/{kb}" for at, sent, kb in _spread(self.rss_samples, 12)),
            f"data directory: {self.data_dir_bytes} bytes, {per_contact:.0f} bytes per contact while the hub runs",
            *(self.data_dir_live.lines(self.contacts) if self.data_dir_live else []),
            *self._at_rest_lines(),
            f"took {self.seconds:.0f} s",
        ]


def _spread(samples: list, count: int) -> list:
    """At most `count` evenly spaced entries of `samples`, the last one always among them."""
    if len(samples) <= count:
        return samples
    step = (len(samples) - 1) / (count - 1)
    return [samples[round(k * step)] for k in range(count)]


# --- the destination --------------------------------------------------------------------------------


class FlakyDestination:
    """The signed webhook destination: records every delivery, answers as the phase says."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | storm | outage
        self.lock = threading.Lock()
        #: (webhook-id, provider message id, contact id, status answered)
        self.log: list[tuple[str, str, str, int]] = []
        self._random = random.Random(7)
        destination = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status, headers = destination.answer()
                try:
                    contact = json.loads(body)["data"]["contact"]
                    ids = (contact["provider_message_id"], contact["id"])
                except (ValueError, KeyError, TypeError):
                    ids = ("", "")
                with destination.lock:
                    destination.log.append((self.headers.get("webhook-id", ""), *ids, status))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hooks"

    def answer(self) -> tuple[int, dict[str, str]]:
        if self.mode == "outage":
            return 503, {}
        if self.mode == "storm":
            pick = self._random.random()
            if pick < 0.3:
                return 500, {}
            if pick < 0.6:
                return 429, {"Retry-After": "1"}
        return 200, {}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- the hub process -----------------------------------------------------------------------------------


class HubProcess:
    def __init__(self, config: Path, data_dir: Path, port: int) -> None:
        self.config, self.data_dir, self.port = config, data_dir, port
        self.process: subprocess.Popen | None = None
        self.log = data_dir.parent / "hub.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "HUB_CONFIG": str(self.config), "HUB_DATA_DIR": str(self.data_dir),
               "HUB_PORT": str(self.port), "PYTHONPATH": str(ROOT), "HUB_LOG_LEVEL": "WARNING"}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "chalicelib.cli", "run"], cwd=ROOT, env=env,
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1):
                    return
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        raise RuntimeError(f"the hub did not come up; see {self.log}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss_kb(self) -> int:
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except (OSError, AttributeError):
            return 0
        return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)

    def api(self, method: str, path: str) -> dict:
        """One call of the hub's API, as an operator's script makes it (an empty POST body is sent
        as JSON: urllib would otherwise label it a form, which the API refuses with 415)."""
        request = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None,
                                         headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")


def _post(base: str, path: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(base + path, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, urllib.error.URLError):
        return 0


# --- the run -------------------------------------------------------------------------------------------


def run(plan: Plan, workdir: Path | None = None, progress=print) -> Report:
    started = time.monotonic()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="hub-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    destination = FlakyDestination()
    config = workdir / "hub.json"
    config.write_text(json.dumps(hub_config(destination.url), indent=1))
    hub = HubProcess(config, workdir / "data", _free_port())
    report = Report()
    disk = DiskQuota(workdir / "data", plan.disk_quota_mb) if plan.disk_quota_mb else None
    if disk is not None:
        report.disk_full = disk.mount()
    rng = random.Random(plan.seed)
    kill_points = {round(plan.messages * (k + 1) / (plan.kills + 1)) for k in range(plan.kills)}
    # The storms start a third of the way in; the outage follows them (timers, below).
    storm_at = plan.messages // 3
    acknowledged: set[str] = set()
    channels = report.accepted_by_channel
    lock = threading.Lock()
    sent = [0]  # webhooks sent so far, for the RSS samples
    sampling = threading.Event()

    def sample_rss() -> None:
        while not sampling.wait(plan.rss_sample_seconds):
            if kb := hub.rss_kb():  # 0 while the hub is down between a kill and its restart
                report.rss_samples.append((time.monotonic() - started, sent[0], kb))

    hub.start()
    started_at = 0  # webhooks sent when the current hub process started
    warmup = min(plan.warmup_messages, max(1, plan.messages // 4))
    threading.Thread(target=sample_rss, daemon=True).start()
    try:
        def send(index: int) -> None:
            webhook = providers.build(index, rng.randrange(plan.senders))
            path, body, headers, message_id = webhook.path, webhook.body, webhook.headers, webhook.message_id
            copies = 2 if rng.random() < plan.duplicate_share else 1
            for copy in range(copies):
                give_up = time.monotonic() + 60 + plan.disk_full_seconds
                while _post(hub.url, path, body, headers) not in (200, 202):
                    with lock:
                        report.retries_after_failure += 1
                    if time.monotonic() > give_up:
                        return  # never acknowledged: not counted, as a provider would give up
                    time.sleep(0.1)
                with lock:
                    if message_id not in acknowledged:
                        channels[webhook.channel] = channels.get(webhook.channel, 0) + 1
                    acknowledged.add(message_id)
                    report.duplicates_sent += copy

        batch = 200
        with ThreadPoolExecutor(plan.clients) as pool:
            for start in range(0, plan.messages, batch):
                list(pool.map(send, range(start, min(start + batch, plan.messages))))
                done = sent[0] = min(start + batch, plan.messages)
                if report.rss_after_warmup_kb == 0 and done - started_at >= warmup:
                    report.rss_after_warmup_kb = hub.rss_kb()
                if start < storm_at <= done:
                    destination.mode = "storm"
                    threading.Timer(plan.storm_seconds, _set, (destination, "outage")).start()
                    threading.Timer(plan.storm_seconds + plan.outage_seconds, _set, (destination, "ok")).start()
                if disk is not None and disk.mounted and start < plan.messages * 2 // 3 <= done:
                    report.disk_full = disk.fill_for(plan.disk_full_seconds, progress)
                if any(start < point <= done for point in kill_points):
                    hub.kill()
                    report.kills += 1
                    progress(f"killed the hub at {done} messages; restarting")
                    hub.start()
                    # Measured again once the new process has taken its own warm-up's webhooks.
                    report.rss_after_warmup_kb, started_at = 0, done
                progress(f"{done}/{plan.messages} sent")
        time.sleep(plan.storm_seconds + plan.outage_seconds)  # the storms and the outage run their course
        destination.mode = "ok"
        report.accepted = len(acknowledged)
        report.dead_letters_replayed = _drain(hub, destination, acknowledged, plan.drain_seconds, progress)
        report.rss_after_run_kb = hub.rss_kb()
        sampling.set()
        if report.rss_after_warmup_kb == 0:
            report.rss_after_warmup_kb = report.rss_after_run_kb
        with destination.lock:
            log = list(destination.log)
        check(report, log, acknowledged)
        report.data_dir_live = measure(workdir / "data", tables=False)
        report.data_dir_bytes = report.data_dir_live.total
        hub.stop()
        report.data_dir_at_rest = measure(workdir / "data")
    finally:
        sampling.set()
        hub.stop()
        destination.close()
        if disk is not None:
            disk.unmount()
        report.seconds = time.monotonic() - started
    return report


class DiskQuota:
    """The data directory on a tmpfs of `megabytes`, and a ballast file that fills it for a while
    (in a thread: the webhooks go on arriving meanwhile)."""

    def __init__(self, path: Path, megabytes: int) -> None:
        self.path, self.megabytes, self.mounted = path, megabytes, False

    def mount(self) -> str:
        self.path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.megabytes}m", "tmpfs", str(self.path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            return f"skipped: cannot mount a {self.megabytes} MB tmpfs ({done.stderr.strip() or 'mount refused'})"
        self.mounted = True
        return f"data directory on a {self.megabytes} MB tmpfs"

    def fill_for(self, seconds: float, progress) -> str:
        ballast = self.path / "ballast"
        written = 0
        try:
            with ballast.open("wb") as handle:
                while True:
                    handle.write(b"\0" * (1 << 20))
                    handle.flush()
                    written += 1
        except OSError:
            pass  # the disk is full
        progress(f"disk full ({written} MB of ballast) for {seconds:.0f} s")

        def release() -> None:
            ballast.unlink(missing_ok=True)
            progress("disk space back")

        threading.Timer(seconds, release).start()
        return f"ran: the {self.megabytes} MB data directory was full for {seconds:.0f} s"

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


def _set(destination: FlakyDestination, mode: str) -> None:
    destination.mode = mode


def _drain(hub: HubProcess, destination: FlakyDestination, acknowledged: set[str], seconds: float, progress) -> int:
    """Wait until every acknowledged message was delivered with a 2xx; replay dead letters once
    nothing moves any more. Returns how many were replayed."""
    deadline = time.monotonic() + seconds
    replayed, last, still = 0, -1, 0
    while time.monotonic() < deadline:
        with destination.lock:
            delivered = {pmid for _, pmid, _, status in destination.log if status == 200}
        left = len(acknowledged - delivered)
        if left == 0:
            return replayed
        still = still + 1 if left == last else 0
        last = left
        if still >= 20:  # ten seconds without progress: give everything the hub gave up on another go
            count = 0
            while letters := hub.api("GET", "/v1/dead-letters?limit=100").get("data", []):
                for letter in letters:  # a replayed letter leaves the list: the next page is the rest
                    hub.api("POST", f"/v1/dead-letters/{letter['id']}/replay")
                count += len(letters)
            replayed += count
            still = 0
            progress(f"{left} not delivered yet; replayed {count} dead letters")
        time.sleep(0.5)
    return replayed


def check(report: Report, log: list[tuple[str, str, str, int]], acknowledged: set[str]) -> None:
    """Fill `report`'s verdict from the destination's `log` of (webhook-id, provider message id,
    contact id, status answered) against the provider message ids the hub `acknowledged`."""
    contacts_of: dict[str, set[str]] = {}
    #: Contact → the webhook ids the destination accepted for it. A delivery the hub could not
    #: record before it was killed comes again with the same `webhook-id` (Standard Webhooks'
    #: deduplication key), which is one delivery; two ids for one contact would be two.
    accepted_ids: dict[str, set[str]] = {}
    for webhook_id, pmid, contact_id, status in log:
        report.destination_answers[status] = report.destination_answers.get(status, 0) + 1
        if not pmid:
            continue
        contacts_of.setdefault(pmid, set()).add(contact_id)
        if status == 200:
            accepted_ids.setdefault(contact_id, set()).add(webhook_id)
    report.missing = sorted(acknowledged - {p for p, ids in contacts_of.items() if any(c in accepted_ids for c in ids)})
    report.doubled_contacts = sorted(p for p, ids in contacts_of.items() if len(ids) > 1)
    report.doubled_deliveries = sorted(c for c, ids in accepted_ids.items() if len(ids) > 1)
    report.contacts = sum(len(ids) for ids in contacts_of.values())
    report.delivered = len(accepted_ids)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
