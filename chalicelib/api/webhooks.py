"""Provider webhooks: `POST /webhooks/{provider}[/{hook}]` and `GET` for handshakes.

One generic route for every provider: the registry decides who is served, so adding a provider
never touches this file. The route only converts the request, calls the ingest service and maps
errors; the adapter decides the ACK.
"""

from __future__ import annotations

import logging

from chalice import Blueprint, Response

from chalicelib.adapters.channels.base import WebhookRequest, WebhookResponse
from chalicelib.api.http import request_id, translate_errors
from chalicelib.bootstrap import get_hub
from chalicelib.errors import HubError, MethodNotAllowedError, NotFoundError
from chalicelib.observability import set_correlation_id
from chalicelib.service.ingest import handshake, ingest

logger = logging.getLogger(__name__)

webhooks = Blueprint(__name__)

#: The route takes every content type and each adapter narrows to its own (`ingest` answers 415 in
#: the hub's error shape). Chalice refuses a route whose `content_types` mix binary and text types,
#: and API Gateway's binary list is API-wide anyway, so the route declares `*/*` (text to Chalice)
#: while `BINARY_REQUEST_TYPES` go into `app.api.binary_types`.
ANY_CONTENT_TYPE = ["*/*"]
#: Request types API Gateway must hand over base64-encoded: multipart posts (Mailgun and SendGrid
#: with attachments) carry raw file bytes, which its UTF-8 text path would mangle. `raw_body`
#: decodes them, so adapters see the exact bytes the provider sent.
BINARY_REQUEST_TYPES = ("multipart/form-data",)


def _count_rejection(error: HubError) -> None:
    hub = get_hub()
    provider = (webhooks.current_request.uri_params or {}).get("provider", "")
    # The path segment is caller-controlled: only configured providers become metric dimensions,
    # so a scan of random URLs cannot mint unbounded CloudWatch metrics.
    if hub.adapter(provider) is None:
        provider = "unknown"
    hub.counters.incr("WebhooksRejected", provider=provider, reason=error.code)
    hub.counters.flush()
    logger.warning("webhook %s rejected: %s (%s)", provider, error.code, error.message)


def _request(hook: str | None) -> WebhookRequest:
    current = webhooks.current_request
    return WebhookRequest(
        method=current.method,
        hook=hook,
        headers={k.lower(): v for k, v in (current.headers or {}).items()},
        query=dict(current.query_params or {}),
        body=current.raw_body or b"",
        received_at=get_hub().clock(),
    )


def _adapter(provider: str):
    adapter = get_hub().adapter(provider)
    if adapter is None:
        raise NotFoundError(f"no channel provider {provider!r} is configured")
    return adapter


def _to_chalice(response: WebhookResponse) -> Response:
    return Response(body=response.body, status_code=response.status, headers={"Content-Type": response.content_type})


@webhooks.route("/webhooks/{provider}", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def receive(provider: str) -> Response:
    return _with_cors(provider, None, _receive(provider, None))


@webhooks.route("/webhooks/{provider}/{hook}", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def receive_hook(provider: str, hook: str) -> Response:
    return _with_cors(provider, hook, _receive(provider, hook))


@webhooks.route("/webhooks/{provider}", methods=["OPTIONS"])
def preflight(provider: str) -> Response:
    return _preflight(provider, None)


@webhooks.route("/webhooks/{provider}/{hook}", methods=["OPTIONS"])
def preflight_hook(provider: str, hook: str) -> Response:
    return _preflight(provider, hook)


@translate_errors(webhooks)
def _preflight(provider: str, hook: str | None) -> Response:
    headers = _adapter(provider).cors_headers(_request(hook))
    if not headers:
        raise MethodNotAllowedError(f"{provider} webhooks are not called from browsers")
    return Response(body="", status_code=204, headers=headers)


def _with_cors(provider: str, hook: str | None, response: Response) -> Response:
    """Browsers read a response, success or error, only with the CORS headers on it.

    Only browsers send `Origin`; provider servers do not, so they cost nothing here.
    """
    if "origin" in (webhooks.current_request.headers or {}):
        adapter = get_hub().adapter(provider)
        if adapter is not None:
            response.headers.update(adapter.cors_headers(_request(hook)))
    return response


@translate_errors(webhooks, on_error=_count_rejection)
def _receive(provider: str, hook: str | None) -> Response:
    hub = get_hub()
    set_correlation_id(request_id(webhooks))
    hub.annotate(provider=provider)
    adapter = _adapter(provider)
    result = ingest(
        adapter,
        _request(hook),
        hub.inbound_queue,
        max_body_bytes=hub.config.processing.max_body_bytes,
        content_type=webhooks.current_request.headers.get("content-type"),
    )
    hub.counters.incr("WebhooksReceived", provider=provider)
    hub.counters.incr("EventsEnqueued", result.enqueued, provider=provider)
    if result.ignored:
        hub.counters.incr("EventsIgnored", len(result.ignored), provider=provider)
    if result.unhandled:
        hub.counters.incr("EventsUnhandled", len(result.unhandled), provider=provider)
    hub.counters.flush()
    notes = sorted(set(result.ignored)) + [f"unhandled, kept raw: {r}" for r in sorted(set(result.unhandled))]
    logger.info(
        "webhook %s accepted: %d enqueued, %d ignored, %d unhandled%s", provider, result.enqueued,
        len(result.ignored), len(result.unhandled), f" ({'; '.join(notes)})" if notes else "",
    )
    return _to_chalice(result.response)


@webhooks.route("/webhooks/{provider}", methods=["GET"])
def verify_subscription(provider: str) -> Response:
    return _handshake(provider, None)


@webhooks.route("/webhooks/{provider}/{hook}", methods=["GET"])
def verify_subscription_hook(provider: str, hook: str) -> Response:
    return _handshake(provider, hook)


@translate_errors(webhooks, on_error=_count_rejection)
def _handshake(provider: str, hook: str | None) -> Response:
    return _to_chalice(handshake(_adapter(provider), _request(hook)))
