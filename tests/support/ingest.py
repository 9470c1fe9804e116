"""Ingest one request the way the webhook route does, for adapter tests that need the queue step."""

from __future__ import annotations

from chalicelib.adapters.channels.base import ChannelAdapter, WebhookRequest
from chalicelib.adapters.queue.base import Queue
from chalicelib.observability import Counters
from chalicelib.service.ingest import IngestResult, Ingestion


def ingest(adapter: ChannelAdapter, request: WebhookRequest, queue: Queue, *, max_body_bytes: int,
           content_type: str | None) -> IngestResult:
    return Ingestion(queue, Counters(emit_emf=False), max_body_bytes=max_body_bytes).webhook(
        adapter, request, content_type=content_type)
