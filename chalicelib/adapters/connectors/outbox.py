"""A JSON-lines file as a destination, for the embedded runtime: `tail -f data/outbox.jsonl`.

Docs: README.md, "See the result". Each line is the same event a signed webhook would carry, plus
the delivery id; a delivery already in the file is not written twice.

A line is on disk (fsync) before `deliver` returns, so a delivery marked done is never lost. An
fsync costs milliseconds while the rest of a delivery costs a fraction of one, and one fsync per
line under a lock capped every worker at one delivery per fsync; lines are therefore committed in
groups: the lines that concurrent workers append while a write is in progress go out together in
the next write and share its fsync, and each caller still returns only once its own line is durable.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from chalicelib.adapters.connectors.base import MESSAGE_EVENTS, Connector, DeliveryResult
from chalicelib.adapters.connectors.settings.outbox import OutboxSettings
from chalicelib.domain.events import contact_event, customer_event
from chalicelib.domain.models import CustomerEvent, DeliveryJob
from chalicelib.errors import RetryableDeliveryError


@dataclass
class _Pending:
    """A line waiting for its group's write: `done` once written and synced, else `error`."""

    delivery_id: str
    line: str
    done: bool = False
    error: OSError | None = None


class OutboxConnector(Connector[OutboxSettings]):
    key = "outbox"
    docs_url = "https://jsonlines.org/"
    Settings = OutboxSettings
    supports_customer_events = True
    takes_case_events = True
    case_timer_events = True
    #: The hub's outbound messages and their statuses, in the same envelope as contacts.
    message_events = MESSAGE_EVENTS

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        path = Path(self.settings.path)
        self.path = path if path.is_absolute() else Path(self.runtime.data_dir) / path
        self._written: set[str] | None = None
        # Guards `_written`, `_queued`, `_by_id` and `_writing`; the write itself runs outside it.
        self._changed = threading.Condition()
        self._queued: list[_Pending] = []
        self._by_id: dict[str, _Pending] = {}
        self._writing = False

    def deliver(self, job: DeliveryJob) -> DeliveryResult:
        return self._append(job.delivery_id, contact_event(job, include_raw=self.settings.include_raw))

    def deliver_customer_event(self, event: CustomerEvent) -> DeliveryResult:
        return self._append(event.delivery_id, customer_event(event))

    def _append(self, delivery_id: str, payload: dict) -> DeliveryResult:
        line = json.dumps({"delivery_id": delivery_id, **payload}, ensure_ascii=False, separators=(",", ":"))
        with self._changed:
            if delivery_id in self._load_written():
                return DeliveryResult(external_ref=f"{self.path.name}#{delivery_id}")
            # The same delivery already waiting (a redelivered job) shares that line's outcome.
            pending = self._by_id.get(delivery_id)
            if pending is None:
                pending = self._by_id[delivery_id] = _Pending(delivery_id, line)
                self._queued.append(pending)
            while not pending.done:
                if self._writing:
                    self._changed.wait()
                else:
                    self._write_queued()
        if pending.error is not None:
            raise RetryableDeliveryError(f"outbox file not writable: {pending.error.strerror}")
        return DeliveryResult(external_ref=f"{self.path.name}#{delivery_id}")

    def _write_queued(self) -> None:
        """Write every queued line with one fsync (called holding `_changed`, released while writing)."""
        group, self._queued, self._writing = self._queued, [], True
        error: OSError | None = None
        self._changed.release()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One O_APPEND write per group: another writer of the file cannot split a line.
            data = memoryview("".join(pending.line + "\n" for pending in group).encode("utf-8"))
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                while data:
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            error = exc
        finally:
            self._changed.acquire()
            self._writing = False
        written = self._load_written()
        for pending in group:
            pending.done, pending.error = True, error
            del self._by_id[pending.delivery_id]
            if error is None:
                written.add(pending.delivery_id)
        self._changed.notify_all()

    def _load_written(self) -> set[str]:
        if self._written is None:
            self._written = set()
            if self.path.exists():
                with self.path.open(encoding="utf-8") as handle:
                    for raw in handle:
                        try:
                            self._written.add(json.loads(raw)["delivery_id"])
                        except (ValueError, KeyError):
                            continue
        return self._written
