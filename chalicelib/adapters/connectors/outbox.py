"""A JSON-lines file as a destination, for the embedded runtime: `tail -f data/outbox.jsonl`.

Docs: README.md, "See the result". Each line is the same event a signed webhook would carry, plus
the delivery id; a delivery already in the file is not written twice.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from chalicelib.adapters.connectors.base import MESSAGE_EVENTS, Connector, DeliveryResult
from chalicelib.adapters.connectors.settings.outbox import OutboxSettings
from chalicelib.domain.events import contact_event, customer_event
from chalicelib.domain.models import CustomerEvent, DeliveryJob
from chalicelib.errors import RetryableDeliveryError


class OutboxConnector(Connector[OutboxSettings]):
    key = "outbox"
    docs_url = "https://jsonlines.org/"
    Settings = OutboxSettings
    supports_customer_events = True
    takes_case_events = True
    #: The hub's outbound messages and their statuses, in the same envelope as contacts.
    message_events = MESSAGE_EVENTS

    _lock = threading.Lock()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        path = Path(self.settings.path)
        self.path = path if path.is_absolute() else Path(self.runtime.data_dir) / path
        self._written: set[str] | None = None

    def deliver(self, job: DeliveryJob) -> DeliveryResult:
        return self._append(job.delivery_id, contact_event(job, include_raw=self.settings.include_raw))

    def deliver_customer_event(self, event: CustomerEvent) -> DeliveryResult:
        return self._append(event.delivery_id, customer_event(event))

    def _append(self, delivery_id: str, payload: dict) -> DeliveryResult:
        line = json.dumps({"delivery_id": delivery_id, **payload}, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            written = self._load_written()
            if delivery_id in written:
                return DeliveryResult(external_ref=f"{self.path.name}#{delivery_id}")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as exc:
                raise RetryableDeliveryError(f"outbox file not writable: {exc.strerror}") from None
            written.add(delivery_id)
        return DeliveryResult(external_ref=f"{self.path.name}#{delivery_id}")

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
