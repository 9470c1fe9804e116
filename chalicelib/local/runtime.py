"""The embedded runtime: the Chalice app's HTTP server and the queue workers in one process.

Same app, same services, same handlers as on AWS; only the store (SQLite), the queues (SQLite)
and the blob store (a directory) differ. Everything durable lives under the data directory, so
stopping and restarting loses nothing: unfinished messages become visible again and resume.
"""

from __future__ import annotations

import logging
import threading

from chalicelib.bootstrap import Hub, use_hub
from chalicelib.local.http import HttpServer
from chalicelib.settings import Settings

logger = logging.getLogger(__name__)


class _Worker(threading.Thread):
    def __init__(self, name: str, hub: Hub, role: str, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self._hub, self._role, self._halt = hub, role, stop

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self._hub.workers.poll(self._role, wait_seconds=0.5)
            except Exception as exc:  # keep the worker alive; the message stays queued
                logger.error("worker %s: %s", self.name, type(exc).__name__)
                self._halt.wait(1.0)


class _TimerThread(threading.Thread):
    """The embedded scheduler: every second, the timers that are due go onto the events queue.
    Timers are rows in the data directory, so a restart fires what fell due while it was down."""

    def __init__(self, hub: Hub, stop: threading.Event, interval: float = 1.0) -> None:
        super().__init__(name="timers", daemon=True)
        self._hub, self._halt, self._interval = hub, stop, interval

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self._hub.timer_pump.run_once(self._hub.clock())
            except Exception as exc:  # keep the scheduler alive; the timers stay armed
                logger.error("timers: %s", type(exc).__name__)
            self._halt.wait(self._interval)


class EmbeddedRuntime:
    def __init__(self, settings: Settings | None = None, *, hub: Hub | None = None, port: int | None = None) -> None:
        self.hub = hub or Hub(settings or Settings.from_environ())
        use_hub(self.hub)
        # Fail at start-up, not on the first message, when the configuration is wrong.
        _ = self.hub.config
        from app import app

        settings = self.hub.settings
        self.server = HttpServer(app, settings.host, settings.port if port is None else port,
                                 threads=settings.http_threads)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self.server.address
        return f"http://{host}:{port}"

    def start(self, *, workers: bool = True) -> EmbeddedRuntime:
        """Serve HTTP and, unless `workers` is False (tests of queued work), run the workers."""
        if workers:
            self._prepare_workers()
        self.server.start()
        if workers:
            self._spawn_workers()
        logger.info("hub listening on %s (data in %s)", self.url, self.hub.settings.data_dir)
        return self

    def start_workers(self) -> None:
        """Start `HUB_LOCAL_WORKERS` worker threads per queue (after `start(workers=False)`, a
        benchmark lets a backlog build up first)."""
        if not self._threads:
            self._prepare_workers()
            self._spawn_workers()

    def _spawn_workers(self) -> None:
        for index in range(max(1, self.hub.settings.local_workers)):
            self._threads.append(_Worker(f"process-{index}", self.hub, "inbound", self._stop))
            self._threads.append(_Worker(f"deliver-{index}", self.hub, "delivery", self._stop))
            self._threads.append(_Worker(f"send-{index}", self.hub, "outbound", self._stop))
            self._threads.append(_Worker(f"events-{index}", self.hub, "events", self._stop))
        self._threads.append(_TimerThread(self.hub, self._stop))
        for thread in self._threads:
            thread.start()

    def _prepare_workers(self) -> None:
        # Fail at start, not on the first message: compile the rules, build the enricher.
        from chalicelib.routing.setup import check_rules_file

        check_rules_file(self.hub.router_factory, self.hub.rules_source)
        from pathlib import Path

        from chalicelib.routing.event_setup import check_event_config

        check_event_config(self.hub.config, base_dir=Path(self.hub.settings.config_path).parent)
        _ = self.hub.enricher, self.hub.workers

    def stop(self) -> None:
        self._stop.set()
        self.server.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        self.hub.close()
        use_hub(None)

    def request_stop(self) -> None:
        """Ask `wait()` to return (signal handlers call this); `stop()` then shuts down."""
        self._stop.set()

    def wait(self) -> None:
        self._stop.wait()
