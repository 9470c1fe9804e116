"""Ingest: verify → parse → durable enqueue → the provider's ACK, for every way in.

A webhook is acknowledged only after the queue accepted every event, so an acknowledged webhook
is never lost; if the queue fails, the caller answers 5xx and the provider retries. One queue call
per webhook (up to ten events), nothing else on the request path. A pull entry's announcement
(`PullEntry`) takes the same path after the adapter read what it points to. Both are counted here
and only here: received, enqueued, ignored, kept raw, rejected.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chalicelib.adapters.channels.base import (
    ChannelAdapter,
    ParsedWebhook,
    PullContext,
    PullEntry,
    WebhookRequest,
    WebhookResponse,
)
from chalicelib.adapters.queue.base import OutgoingMessage, Queue

if TYPE_CHECKING:
    from chalicelib.domain.stored import CallbackItem
    from chalicelib.adapters.callbacks.base import VendorCallbacks
from chalicelib.domain.ids import group_id
from chalicelib.domain.models import IdentityChange, InboundMessage, StatusEvent, UnhandledEvent
from chalicelib.errors import HubError, PayloadTooLargeError, UnsupportedMediaTypeError
from chalicelib.observability import Counters

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    response: WebhookResponse
    enqueued: int
    ignored: list[str] = field(default_factory=list)
    #: The reasons of the items kept raw as `UnhandledEvent`s (enqueued, not counted in `enqueued`).
    unhandled: list[str] = field(default_factory=list)


class Ingestion:
    """Takes in what providers send or leave, onto the inbound queue, and counts it."""

    def __init__(self, queue: Queue, counters: Counters, *, max_body_bytes: int,
                 aws_client: Callable[[str], Any] | None = None) -> None:
        self._queue = queue
        self._counters = counters
        self._max_body_bytes = max_body_bytes
        self._aws_client = aws_client

    def webhook(self, adapter: ChannelAdapter, request: WebhookRequest, *, content_type: str | None) -> IngestResult:
        """Raises the adapter's `SignatureError` / `MalformedPayloadError`, `PayloadTooLargeError`,
        `UnsupportedMediaTypeError`, and `QueueUnavailableError` (answer 5xx so the provider
        retries). The caller reports a raised `HubError` with `rejected`."""
        self._admit(request, content_type, adapter.content_types, adapter.key, "webhooks")
        adapter.verify(request)
        parsed = adapter.parse(request)
        # The ACK only once everything is enqueued: adapters may remember what they acknowledged.
        result = self._take(parsed, lambda: adapter.ack(parsed))
        self._counters.incr("WebhooksReceived", provider=adapter.key)
        self._report(adapter.key, "webhook", result)
        return result

    def callback(self, destination: str, side: VendorCallbacks, request: WebhookRequest, *,
                 content_type: str | None) -> IngestResult:
        """A destination vendor's callback (`POST /callbacks/{destination}`), with the webhook's
        guarantees: verified on the raw bytes, acknowledged only once every item is queued.
        Raises like `webhook`; the caller reports a raised `HubError` with `callback_rejected`."""
        self._admit(request, content_type, side.content_types, destination, "callbacks")
        side.verify(request)
        parsed = side.parse(request)
        enqueue(self._queue, [*parsed.items, *parsed.unhandled])
        result = IngestResult(response=side.ack(parsed), enqueued=len(parsed.items), ignored=parsed.ignored,
                              unhandled=[event.reason for event in parsed.unhandled])
        self._counters.incr("CallbacksReceived", destination=destination)
        self._counters.incr("CallbackItemsEnqueued", result.enqueued, destination=destination)
        if result.ignored:
            self._counters.incr("CallbackItemsIgnored", len(result.ignored), destination=destination)
        if result.unhandled:
            self._counters.incr("CallbackItemsUnhandled", len(result.unhandled), destination=destination)
        notes = sorted(set(result.ignored)) + [f"unhandled, kept raw: {r}" for r in sorted(set(result.unhandled))]
        self._counters.flush_with_line(
            logger, logging.INFO, "callback %s accepted: %d enqueued, %d ignored, %d unhandled%s", destination,
            result.enqueued, len(result.ignored), len(result.unhandled), f" ({'; '.join(notes)})" if notes else "")
        return result

    def _admit(self, request: WebhookRequest, content_type: str | None, accepted: tuple[str, ...], source: str,
               kind: str) -> None:
        """Size and media type, checked before anything reads the body; an error names what
        `source` sends (`kind`: "webhooks", "callbacks")."""
        if len(request.body) > self._max_body_bytes:
            raise PayloadTooLargeError(f"body of {len(request.body)} bytes exceeds the limit of {self._max_body_bytes}")
        media_type = (content_type or "").split(";")[0].strip().lower()
        if media_type not in accepted:
            raise UnsupportedMediaTypeError(f"{source} {kind} must be {' or '.join(accepted)}, not {media_type or 'untyped'}")

    def callback_rejected(self, destination: str, error: HubError) -> None:
        """Count and log a callback refused before anything was enqueued; `destination` is a
        configured two-way destination or "unknown" (see `rejected`)."""
        self._counters.incr("CallbacksRejected", destination=destination, reason=error.code)
        self._counters.flush_with_line(logger, logging.WARNING, "callback %s rejected: %s (%s)", destination,
                                       error.code, error.message)

    def pull(self, adapter: ChannelAdapter, entry: PullEntry, body: str, *, received_at: datetime) -> IngestResult:
        """One announcement of `entry`'s queue. Raises `TransientError` when what it points to
        cannot be read now, and `QueueUnavailableError`: the announcement is then retried."""
        parsed = adapter.pull(entry, body, PullContext(aws_client=self._require_aws(), received_at=received_at))
        result = self._take(parsed, WebhookResponse)
        self._report(adapter.key, entry.name, result)
        return result

    def rejected(self, provider: str, error: HubError) -> None:
        """Count and log a request refused before anything was enqueued. `provider` must be a
        configured one or "unknown": the path segment is caller-controlled, and a scan of random
        URLs must not mint unbounded metric dimensions."""
        self._counters.incr("WebhooksRejected", provider=provider, reason=error.code)
        self._counters.flush_with_line(logger, logging.WARNING, "webhook %s rejected: %s (%s)", provider,
                                       error.code, error.message)

    def _take(self, parsed: ParsedWebhook, respond: Callable[[], WebhookResponse]) -> IngestResult:
        enqueue(self._queue, [*parsed.events, *parsed.unhandled])
        return IngestResult(response=respond(), enqueued=len(parsed.events), ignored=parsed.ignored,
                            unhandled=[event.reason for event in parsed.unhandled])

    def _report(self, provider: str, way: str, result: IngestResult) -> None:
        self._counters.incr("EventsEnqueued", result.enqueued, provider=provider)
        if result.ignored:
            self._counters.incr("EventsIgnored", len(result.ignored), provider=provider)
        if result.unhandled:
            self._counters.incr("EventsUnhandled", len(result.unhandled), provider=provider)
        notes = ""
        if result.ignored or result.unhandled:
            reasons = sorted(set(result.ignored)) + [f"unhandled, kept raw: {r}" for r in sorted(set(result.unhandled))]
            notes = f" ({'; '.join(reasons)})"
        # The metrics and the line in one write (see `Counters.flush_with_line`).
        self._counters.flush_with_line(logger, logging.INFO, "%s %s accepted: %d enqueued, %d ignored, %d unhandled%s",
                                       way, provider, result.enqueued, len(result.ignored), len(result.unhandled), notes)

    def _require_aws(self) -> Callable[[str], Any]:
        if self._aws_client is None:
            from chalicelib.errors import ConfigError

            raise ConfigError("pull entries read from AWS; this hub has no AWS client factory")
        return self._aws_client


def enqueue(queue: Queue, events: Sequence[InboundMessage | StatusEvent | IdentityChange | UnhandledEvent
                                           | CallbackItem]) -> None:
    """Put parsed events on the inbound queue in one call: ordered per sender, deduplicated by the
    provider's message id. Every way in goes through here."""
    if events:
        queue.send(
            [
                OutgoingMessage(
                    body=event.model_dump_json(),
                    group=group_id(event.order_key),
                    dedupe_id=hashlib.sha256(event.dedupe_key.encode()).hexdigest(),
                )
                for event in events
            ]
        )


def handshake(adapter: ChannelAdapter, request: WebhookRequest) -> WebhookResponse:
    """A provider's GET handshake (verify token, CRC). Raises `ForbiddenError` / 405."""
    return adapter.handshake(request)
