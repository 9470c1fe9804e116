"""E1: the embedded runtime's HTTP front under concurrent providers.

The hub (waitress + the Chalice app, with its queue workers draining what arrives, as `make run`
runs it) runs in this process; the clients run in a child process, 16 threads with
keep-alive connections posting distinct signed Twilio SMS, so client CPU does not compete with
the server for this interpreter's GIL. Measured twice in the same run:

- isolated: every request has its own request object (`HubApp`), requests run concurrently;
- serialized: the same server with one lock around the app (the alternative fix for the
  request-isolation defect), the floor the isolated design is compared with. Serialized, a
  request that waits for SQLite's write lock (held by a worker) holds up every other request;
  measured on the 2-core machine: isolated 363-531/s, serialized 185-191/s. Without workers the
  two are within 10 % (about 700/s), as the GIL serializes the CPU work either way.

Then 64 clients open fresh connections at once (no keep-alive), counting connection resets.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import tempfile
import threading
from pathlib import Path

from bench.common import TWILIO_TOKEN, Result

NAME = "embedded_http"
CLIENTS = 16
MESSAGES = 2000
BURST_CLIENTS = 64
WORKERS = True

_CONFIG = """
identity: {{default_region: US}}
channels:
  twilio:
    auth_tokens: ["{token}"]
    public_url: https://hub.example.com/webhooks/twilio
destinations:
  - {{name: outbox, type: outbox, path: outbox.jsonl}}
media: {{enabled: false}}
api_keys: [{{name: bench, sha256: "{key}", scopes: [customers:read]}}]
"""


def _client_run(url: str, start: int, count: int, clients: int, fresh_connections: bool, out) -> None:
    """Child process: post `count` signed SMS from `clients` threads; report (seconds, statuses)."""
    import http.client
    import time
    import urllib.parse
    from concurrent.futures import ThreadPoolExecutor
    from urllib.parse import urlencode

    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TWILIO_TOKEN)
    parts = urllib.parse.urlsplit(url)
    local = threading.local()
    requests = []
    for index in range(start, start + count):
        params = {"MessageSid": f"SM{index:032x}", "AccountSid": "AC" + "0" * 32, "From": f"+1650555{index % 500:04d}",
                  "To": "+15005550006", "Body": f"message {index}", "NumMedia": "0"}
        signature = validator.compute_signature("https://hub.example.com/webhooks/twilio/messaging", params)
        requests.append((urlencode(params).encode(), {
            "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}))

    def send(request) -> str:
        body, headers = request
        try:
            if fresh_connections or getattr(local, "conn", None) is None:
                local.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
            local.conn.request("POST", "/webhooks/twilio/messaging", body=body, headers=headers)
            response = local.conn.getresponse()
            response.read()
            if fresh_connections:
                local.conn.close()
            return str(response.status)
        except ConnectionResetError:
            local.conn = None
            return "reset"
        except OSError as exc:
            local.conn = None
            return type(exc).__name__

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        outcomes = list(pool.map(send, requests))
    elapsed = time.perf_counter() - started
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    out.send((elapsed, counts))


def _load(url: str, start: int, count: int, clients: int, fresh: bool) -> tuple[float, dict[str, int]]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_client_run, args=(url, start, count, clients, fresh, child))
    process.start()
    result = parent.recv()
    process.join()
    return result


def _serialize(runtime) -> None:
    """Wrap the WSGI app in one lock: the serialized alternative, for comparison only."""
    server = runtime.server._server
    app, lock = server.application, threading.Lock()

    def serialized(environ, start_response):
        with lock:
            return app(environ, start_response)

    server.application = serialized


def run() -> list[Result]:
    from chalicelib.local.runtime import EmbeddedRuntime
    from chalicelib.settings import Settings

    rates = {}
    resets = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("isolated", "serialized"):
            config = Path(tmp) / f"{variant}.yaml"
            config.write_text(_CONFIG.format(token=TWILIO_TOKEN, key=hashlib.sha256(b"bench").hexdigest()))
            settings = Settings(config_path=str(config), data_dir=str(Path(tmp) / variant), port=0)
            runtime = EmbeddedRuntime(settings, port=0).start(workers=WORKERS)
            try:
                if variant == "serialized":
                    _serialize(runtime)
                _load(runtime.url, 0, 200, CLIENTS, False)  # warm-up
                elapsed, counts = _load(runtime.url, 1000, MESSAGES, CLIENTS, False)
                rates[variant] = (counts.get("200", 0) / elapsed, counts)
                if variant == "isolated":
                    _, burst = _load(runtime.url, 10_000, BURST_CLIENTS * 10, BURST_CLIENTS, True)
                    resets = burst
            finally:
                runtime.stop()
    isolated, serialized = rates["isolated"][0], rates["serialized"][0]
    failures = sum(n for status, n in resets.items() if status != "200")
    return [
        Result(f"E1 accepted webhooks/s, {CLIENTS} clients (isolated vs serialized app)", round(isolated, 1),
               round(serialized, 1), isolated / serialized, ">= 1.0x", isolated >= serialized, "/s",
               note=f"isolated {rates['isolated'][1]}, serialized {rates['serialized'][1]}"),
        Result(f"E1 failed requests, {BURST_CLIENTS} clients on fresh connections", failures, None, None, "0",
               failures == 0, note=f"outcomes {resets}"),
    ]
