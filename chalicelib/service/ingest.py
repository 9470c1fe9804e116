"""Ingest one webhook: verify → parse → durable enqueue → the provider's ACK.

The ACK is returned only after the queue accepted every event, so an acknowledged webhook is
never lost; if the queue fails, the caller answers 5xx and the provider retries. One queue call
per webhook (up to ten events), nothing else on the request path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from chalicelib.adapters.channels.base import ChannelAdapter, WebhookRequest, WebhookResponse
from chalicelib.adapters.queue.base import OutgoingMessage, Queue
from chalicelib.domain.ids import group_id
from chalicelib.domain.models import IdentityChange, InboundMessage, StatusEvent, UnhandledEvent
from chalicelib.errors import PayloadTooLargeError, UnsupportedMediaTypeError


@dataclass(frozen=True)
class IngestResult:
    response: WebhookResponse
    enqueued: int
    ignored: list[str] = field(default_factory=list)
    #: The reasons of the items kept raw as `UnhandledEvent`s (enqueued, not counted in `enqueued`).
    unhandled: list[str] = field(default_factory=list)


def ingest(
    adapter: ChannelAdapter, request: WebhookRequest, queue: Queue, *, max_body_bytes: int, content_type: str | None
) -> IngestResult:
    """Raises the adapter's `SignatureError` / `MalformedPayloadError`, `PayloadTooLargeError`,
    `UnsupportedMediaTypeError`, and `QueueUnavailableError` (answer 5xx so the provider retries)."""
    if len(request.body) > max_body_bytes:
        raise PayloadTooLargeError(f"body of {len(request.body)} bytes exceeds the limit of {max_body_bytes}")
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type not in adapter.content_types:
        raise UnsupportedMediaTypeError(
            f"{adapter.key} webhooks must be {' or '.join(adapter.content_types)}, not {media_type or 'untyped'}"
        )
    adapter.verify(request)
    parsed = adapter.parse(request)
    enqueue(queue, [*parsed.events, *parsed.unhandled])
    return IngestResult(
        response=adapter.ack(parsed), enqueued=len(parsed.events), ignored=parsed.ignored,
        unhandled=[event.reason for event in parsed.unhandled],
    )


def enqueue(queue: Queue, events: Sequence[InboundMessage | StatusEvent | IdentityChange | UnhandledEvent]) -> None:
    """Put parsed events on the inbound queue in one call: ordered per sender, deduplicated by the
    provider's message id. Every entry path (webhooks, SES mail in S3) goes through here."""
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
