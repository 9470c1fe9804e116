"""Amazon EventBridge: the hub's own event envelope on an event bus (https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html).

`detail` is the signed webhook's body (chalicelib/domain/events.py, docs/schemas/
contact-event.schema.json) plus `delivery_id`, so rules and consumers see one schema wherever the
event is delivered. See docs/destinations/eventbridge.md.
"""

from __future__ import annotations

import copy
import json
from typing import Any, ClassVar


from chalicelib.adapters.connectors.aws_clients import regional_client
from chalicelib.adapters.connectors.base import MESSAGE_EVENTS, Connector, DeliveryResult
from chalicelib.adapters.connectors.settings.eventbridge import (  # noqa: F401 (re-exported)
    DEFAULT_MAX_ENTRY_BYTES,
    EventBridgeSettings,
)
from chalicelib.domain.events import contact_event, customer_event
from chalicelib.domain.models import CustomerEvent, DeliveryJob
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError

#: Per-entry error codes worth retrying (PutEventsResultEntry.ErrorCode documents InternalFailure
#: and ThrottlingException as retryable; the others mean the entry itself is refused).
RETRYABLE_ENTRY_CODES = frozenset({"InternalFailure", "InternalException", "ThrottlingException", "ServiceUnavailable"})
RETRYABLE_CODES = frozenset({
    "InternalException", "InternalFailure", "ThrottlingException", "Throttling", "ServiceUnavailable",
    "TooManyRequestsException",
})


class EventBridgeConnector(Connector[EventBridgeSettings]):
    """One PutEvents entry per delivery.

    EventBridge takes no idempotency key, so a delivery retried after a lost response is put
    twice, under two EventBridge ids: consumers dedupe on `detail.delivery_id`, which is stable
    across retries (EventBridge delivers to targets at least once anyway).
    """

    key = "eventbridge"
    docs_url = "https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html"
    Settings = EventBridgeSettings
    supports_customer_events = True
    takes_case_events = True
    case_timer_events = True
    #: The hub's outbound messages and their statuses, in the same envelope as contacts.
    message_events = MESSAGE_EVENTS

    vendor: ClassVar[str] = "eventbridge"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._events = None

    def deliver(self, job: DeliveryJob) -> DeliveryResult:
        detail = {"delivery_id": job.delivery_id, **contact_event(job, include_raw=self.settings.include_raw)}
        return self._put(self.entry_for(job.event_type, detail))

    def deliver_customer_event(self, event: CustomerEvent) -> DeliveryResult:
        detail = {"delivery_id": event.delivery_id, **customer_event(event)}
        return self._put(self.entry_for(event.event_type, detail))

    def entry_for(self, event_type: str, detail: dict[str, Any]) -> dict[str, Any]:
        """The PutEvents entry, trimmed to `max_entry_bytes` (raises PermanentDeliveryError when
        even the trimmed event is too large)."""
        settings = self.settings
        entry = {
            "Source": settings.source,
            "DetailType": settings.detail_type(event_type),
            "Detail": _json(detail),
            "EventBusName": settings.event_bus_name,
        }
        overhead = entry_size(entry) - len(entry["Detail"].encode())
        budget = settings.max_entry_bytes - overhead
        if len(entry["Detail"].encode()) > budget:
            entry["Detail"] = _json(trimmed(detail, budget))
        return entry

    def close(self) -> None:
        self._events = None

    def _put(self, entry: dict[str, Any]) -> DeliveryResult:
        from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

        try:
            response = self._client().put_events(Entries=[entry])
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", ""), error.get("Message", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            reason = f"{self.vendor}: {code}: {message}".rstrip(": ")
            if code in RETRYABLE_CODES or status >= 500 or status == 429:
                raise RetryableDeliveryError(reason) from None
            raise PermanentDeliveryError(reason) from None
        except ParamValidationError as exc:
            raise PermanentDeliveryError(f"{self.vendor}: invalid request: {exc}") from None
        except BotoCoreError as exc:
            raise RetryableDeliveryError(f"{self.vendor}: {type(exc).__name__}") from None
        # PutEvents answers 200 even when it refused the entry: the verdict is per entry.
        result = (response.get("Entries") or [{}])[0]
        if response.get("FailedEntryCount") or result.get("ErrorCode"):
            code = result.get("ErrorCode") or "UnknownError"
            reason = f"{self.vendor} refused the event: {code}: {result.get('ErrorMessage') or ''}".rstrip(": ")
            if code in RETRYABLE_ENTRY_CODES:
                raise RetryableDeliveryError(reason)
            raise PermanentDeliveryError(reason)
        return DeliveryResult(external_ref=result.get("EventId"))

    def _client(self):
        if self._events is None:
            # The events resource may live in another region than the hub.
            self._events = regional_client(self.runtime, "events", self.settings.bus_region)
        return self._events


def entry_size(entry: dict[str, Any]) -> int:
    """An entry's size as EventBridge counts it: Source, DetailType, Detail and each Resource in
    UTF-8, plus 14 bytes for Time (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html)."""
    size = 14 if entry.get("Time") is not None else 0
    size += len(entry.get("Source", "").encode()) + len(entry.get("DetailType", "").encode())
    size += len(entry.get("Detail", "").encode())
    size += sum(len(r.encode()) for r in entry.get("Resources") or [])
    return size


def trimmed(detail: dict[str, Any], budget: int) -> dict[str, Any]:
    """`detail` made to fit `budget` bytes: drop the raw payload, then the customer's observation
    history and the routing trace, then shorten the contact's text. The dropped paths are listed
    in `detail.truncated`. Raises PermanentDeliveryError when nothing more can go."""
    detail = copy.deepcopy(detail)
    dropped: list[str] = []
    data = detail.get("data") or {}
    contact, customer = data.get("contact") or {}, data.get("customer") or {}
    steps = (
        ("data.contact.raw", contact, "raw"),
        ("data.customer.observations", customer, "observations"),
        ("data.contact.routing.trace", contact.get("routing") or {}, "trace"),
    )
    for path, parent, key in steps:
        if _size(detail, dropped) <= budget:
            return _mark(detail, dropped)
        if parent.get(key):
            del parent[key]
            dropped.append(path)
    if _size(detail, dropped) > budget and contact.get("text"):
        text = contact["text"]
        # Binary search on characters: bytes per character vary in UTF-8.
        low, high = 0, len(text)
        dropped.append("data.contact.text")
        while low < high:
            middle = (low + high + 1) // 2
            contact["text"] = text[:middle] + "…"
            if _size(detail, dropped) <= budget:
                low = middle
            else:
                high = middle - 1
        contact["text"] = text[:low] + "…"
    if _size(detail, dropped) > budget:
        raise PermanentDeliveryError(
            f"eventbridge: the event is {_size(detail, dropped)} bytes even after trimming "
            f"{', '.join(dropped) or 'nothing'}; the entry limit is {budget} bytes for the detail")
    return _mark(detail, dropped)


def _mark(detail: dict[str, Any], dropped: list[str]) -> dict[str, Any]:
    if dropped:
        detail["truncated"] = dropped
    return detail


def _size(detail: dict[str, Any], dropped: list[str]) -> int:
    return len(_json(_mark(dict(detail), list(dropped))).encode())


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
