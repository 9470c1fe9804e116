"""Business events in: validate a batch, then enqueue it on the events queue, all or nothing.

Every way in (`POST /v1/events`, `hubctl event`, the EventBridge function) ends here, so an event
is checked once, in one place, against one contract (`domain/business_events.EventIn`). Nothing is
looked up: whether a customer holds the identifier, and whether the id was seen before, are the
event worker's questions. A repeated id is queued again and dropped there (or already by the
FIFO queue, within its five-minute deduplication window), so accepting never loses an event to a
lookup that raced with a failed enqueue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from chalicelib.domain.business_events import (
    MAX_EVENTS_PER_BATCH,
    BusinessEvent,
    EventIn,
    EventMessage,
    event_dedupe_key,
    event_group,
    event_queue_dedupe_id,
)
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.models import UnhandledEvent
from chalicelib.errors import InvalidEventError, InvalidIdentifierError

if TYPE_CHECKING:
    from chalicelib.adapters.queue.base import Queue
    from chalicelib.observability import Counters

logger = logging.getLogger(__name__)

#: The `provider` under which rejected EventBridge events are kept (`GET /v1/unhandled-events`).
UNHANDLED_PROVIDER = "events"


@dataclass(frozen=True)
class AcceptedEvent:
    id: str
    #: `queued`, or `duplicate` when the caller asked to check and the event was processed before.
    status: str

    def view(self) -> dict[str, str]:
        return {"id": self.id, "status": self.status}


class EventIntake:
    """Validates business events and puts them on the events queue.

    `queue` is called on first use (the API's cold start builds no queue client it does not
    need). `is_done(dedupe_key, now)` answers whether an event was processed before; it is only
    used when a caller asks for duplicates to be reported (`check_duplicates`). `record_unhandled`
    keeps an EventBridge event that can never be accepted, for `GET /v1/unhandled-events`."""

    def __init__(
        self,
        queue: Callable[[], Queue],
        default_region: str | None,
        clock: Callable[[], datetime],
        *,
        is_done: Callable[[str, datetime], bool] | None = None,
        record_unhandled: Callable[[UnhandledEvent], None] | None = None,
        counters: Counters | None = None,
    ) -> None:
        self._queue = queue
        self._default_region = default_region
        self._clock = clock
        self._is_done = is_done
        self._record_unhandled = record_unhandled
        self._counters = counters

    def parse(self, body: Any, *, now: datetime | None = None) -> list[EventIn]:
        """The events of a request body: one event object, `{"events": [...]}`, or an array.
        Raises `InvalidEventError` naming every invalid field of every event (`events[3].id`;
        a single event's fields without the prefix); nothing is accepted then."""
        now = now or self._clock()
        if isinstance(body, Mapping) and "events" in body:
            unknown = sorted(str(key)[:40] for key in body if key != "events")
            if unknown:
                raise InvalidEventError(f"unknown fields next to events: {', '.join(unknown)}",
                                        detail={"fields": {key: "Extra inputs are not permitted" for key in unknown}})
            items, prefix = body["events"], "events"
        elif isinstance(body, list):
            items, prefix = body, "events"
        else:
            items, prefix = [body], ""
        if not isinstance(items, list):
            raise InvalidEventError("events must be an array", detail={"fields": {"events": "must be an array"}})
        if not items:
            raise InvalidEventError("no events given", detail={"fields": {"events": "must hold at least one event"}})
        if len(items) > MAX_EVENTS_PER_BATCH:
            reason = f"at most {MAX_EVENTS_PER_BATCH} events per request, not {len(items)}"
            raise InvalidEventError(reason, detail={"fields": {"events": reason}})
        events: list[EventIn] = []
        fields: dict[str, str] = {}
        for index, item in enumerate(items):
            event = self._validated(item, f"{prefix}[{index}]" if prefix else "", now, fields)
            if event is not None:
                events.append(event)
        if fields:
            raise InvalidEventError(_described(fields), detail={"fields": fields})
        return events

    def parse_explain(self, body: Mapping[str, Any], *, now: datetime | None = None) -> EventIn:
        """The event of an explain request, `{"event": {...}, "customer": {...}?}`: checked like
        an event to send, so a trace is never shown for an event the hub would refuse. Raises
        `InvalidEventError` naming the fields (`event.occurred_at`)."""
        fields: dict[str, str] = {}
        for key in body:
            if key not in ("event", "customer"):
                fields[str(key)[:40]] = "Extra inputs are not permitted"
        if "event" not in body:
            fields["event"] = "Field required"
        if body.get("customer") is not None and not isinstance(body["customer"], Mapping):
            fields["customer"] = "must be an object (a customer record to explain against)"
        event = self._validated(body["event"], "event", now or self._clock(), fields) if "event" in body else None
        if fields or event is None:
            raise InvalidEventError(_described(fields), detail={"fields": fields})
        return event

    def _validated(self, item: Any, where: str, now: datetime, fields: dict[str, str]) -> EventIn | None:
        """`item` as an event, or None with its problems added to `fields` under `where`."""
        try:
            event = EventIn.model_validate(item, context={"now": now})
        except ValidationError as exc:
            fields.update(_fields(exc, where))
            return None
        problem = self._identifier_problem(event)
        if problem is not None:
            fields[_join(where, "customer.identifier")] = problem
            return None
        return event

    def accept(self, events: Sequence[EventIn], *, source: str, received_at: datetime | None = None,
               check_duplicates: bool = False) -> list[AcceptedEvent]:
        """Enqueue valid events (from `parse`), in order, in one `Queue.send`: all are queued or
        it raises `QueueUnavailableError` (a 503: the producer retries, and the retry is deduped).
        With `check_duplicates`, an event already processed is answered `duplicate` and not
        queued again: one store read per event."""
        from chalicelib.adapters.queue.base import OutgoingMessage

        received_at = received_at or self._clock()
        outgoing, answers = [], []
        for event in events:
            if check_duplicates and self._is_done is not None and self._is_done(event_dedupe_key(event.id), received_at):
                answers.append(AcceptedEvent(event.id, "duplicate"))
                continue
            message = EventMessage(event=BusinessEvent.accepted(event, source=source, received_at=received_at))
            outgoing.append(OutgoingMessage(body=message.model_dump_json(), group=event_group(event, self._key(event)),
                                            dedupe_id=event_queue_dedupe_id(event.id)))
            answers.append(AcceptedEvent(event.id, "queued"))
        if outgoing:
            self._queue().send(outgoing)
            self._count("EventsQueued", len(outgoing))
        return answers

    def from_eventbridge(self, envelope: Mapping[str, Any]) -> str:
        """One EventBridge event (`{id, detail-type, source, time, detail}`) onto the events queue.

        The detail may carry the event's own fields (`type`, `id`, `occurred_at`, `customer`,
        `data`); the envelope fills in what it leaves out, and a detail without `data` is the
        data. An event that can never be valid is kept as unhandled, counted (EventsRejected)
        and answered `rejected`, so EventBridge does not retry it; a queue failure raises, so
        EventBridge retries and then dead-letters it. Returns `queued` or `rejected`."""
        now = self._clock()
        source = str(envelope.get("source") or "unknown")[:200]
        candidate = _from_envelope(envelope)
        try:
            events = self.parse(candidate, now=now)
        except InvalidEventError as exc:
            logger.warning("EventBridge event from %s rejected: %s", source, exc.message)
            self._count("EventsRejected", 1)
            if self._record_unhandled is not None:
                raw = {"envelope": {k: v for k, v in envelope.items() if k != "detail"}, "detail": envelope.get("detail")}
                self._record_unhandled(UnhandledEvent.of(UNHANDLED_PROVIDER, f"eventbridge:{source}: {exc.message}",
                                                         raw, now))
            return "rejected"
        self.accept(events, source=f"eventbridge:{source}", received_at=now)
        return "queued"

    def _identifier_problem(self, event: EventIn) -> str | None:
        if event.customer is None or event.customer.identifier is None:
            return None
        try:
            Identifier.parse(event.customer.identifier, default_region=self._default_region)
        except InvalidIdentifierError as exc:
            return exc.message
        return None

    def _key(self, event: EventIn) -> str | None:
        if event.customer is None or event.customer.identifier is None:
            return None
        return Identifier.parse(event.customer.identifier, default_region=self._default_region).key

    def _count(self, metric: str, value: int) -> None:
        if self._counters is not None:
            self._counters.incr(metric, value, stage="events")


def _from_envelope(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The `EventIn` fields of an EventBridge event: the detail's own, else the envelope's."""
    detail = envelope.get("detail")
    detail = detail if isinstance(detail, dict) else {}
    event: dict[str, Any] = {
        "type": detail.get("type") or envelope.get("detail-type"),
        "id": detail.get("id") or envelope.get("id"),
        "occurred_at": detail.get("occurred_at") or envelope.get("time"),
        "customer": detail.get("customer"),
        "data": detail.get("data", detail),
    }
    if not detail.get("type") and isinstance(event["type"], str):
        # `detail-type` is free text ("Parcel Late"); as an event type it reads `parcel_late`.
        event["type"] = "_".join(event["type"].lower().split())
    return event


def _fields(exc: ValidationError, where: str) -> dict[str, str]:
    """Field path → reason (`events[3].customer.identifier`), never the values: an error body
    must not echo personal data."""
    fields: dict[str, str] = {}
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        path = where
        for part in error["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        # A validator's own ValueError reads "Value error, <our message>": the prefix says nothing.
        fields.setdefault(path or "event", error["msg"].removeprefix("Value error, "))
    return fields


def _join(where: str, field: str) -> str:
    return f"{where}.{field}" if where else field


def _described(fields: Mapping[str, str]) -> str:
    shown = "; ".join(f"{path}: {reason}" for path, reason in list(fields.items())[:8])
    more = len(fields) - 8
    return shown + (f" (and {more} more)" if more > 0 else "")


def parse_json_events(text: str) -> Any:
    """A JSON document of events (`hubctl event --file`). Raises `InvalidEventError`."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidEventError(f"not valid JSON: {exc}", detail={"fields": {"body": "not valid JSON"}}) from None
