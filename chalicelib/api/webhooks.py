"""Provider webhooks: `POST /webhooks/{provider}[/{hook}]` and `GET` for handshakes.

One generic route for every provider: the registry decides who is served, so adding a provider
never touches this file. The route converts the request and calls `WebhookEndpoint`, which the
composition root builds with the ingest service; the adapter decides the ACK.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from chalice import Blueprint, Response

from chalicelib.adapters.channels.base import ChannelAdapter, WebhookRequest, WebhookResponse
from chalicelib.api.http import HttpRequest, answer
from chalicelib.errors import HubError, MethodNotAllowedError, NotFoundError
from chalicelib.service.ingest import Ingestion

webhooks = Blueprint(__name__)

#: The route takes every content type and each adapter narrows to its own (`Ingestion` answers 415
#: in the hub's error shape). Chalice refuses a route whose `content_types` mix binary and text
#: types, and API Gateway's binary list is API-wide anyway, so the route declares `*/*` (text to
#: Chalice) while `BINARY_REQUEST_TYPES` go into `app.api.binary_types`.
ANY_CONTENT_TYPE = ["*/*"]
#: Request types API Gateway must hand over base64-encoded: multipart posts (Mailgun and SendGrid
#: with attachments) carry raw file bytes, which its UTF-8 text path would mangle. `raw_body`
#: decodes them, so adapters see the exact bytes the provider sent.
BINARY_REQUEST_TYPES = ("multipart/form-data",)


class WebhookEndpoint:
    """What the webhook routes do, given the ingest service and the configured adapters."""

    def __init__(
        self,
        ingestion: Ingestion,
        adapters: Callable[[str], ChannelAdapter | None],
        *,
        clock: Callable[[], datetime],
        annotate: Callable[..., None] = lambda **values: None,
        correlate: Callable[[str | None], None] = lambda value: None,
    ) -> None:
        self._ingestion = ingestion
        self._adapters = adapters
        self._clock = clock
        self._annotate = annotate
        self._correlate = correlate

    def receive(self, request: HttpRequest, provider: str, hook: str | None) -> Response:
        def receive() -> Response:
            self._correlate(request.request_id)
            self._annotate(provider=provider)
            result = self._ingestion.webhook(self._adapter(provider), self._webhook_request(request, hook),
                                             content_type=request.header("content-type"))
            return _to_chalice(result.response)

        return self._with_cors(request, provider, hook, answer(request, receive, on_error=self._rejected(provider)))

    def handshake(self, request: HttpRequest, provider: str, hook: str | None) -> Response:
        response = answer(request, lambda: _to_chalice(self._adapter(provider).handshake(self._webhook_request(request, hook))),
                          on_error=self._rejected(provider))
        return self._with_cors(request, provider, hook, response)

    def preflight(self, request: HttpRequest, provider: str, hook: str | None) -> Response:
        def preflight() -> Response:
            headers = self._adapter(provider).cors_headers(self._webhook_request(request, hook))
            if not headers:
                raise MethodNotAllowedError(f"{provider} webhooks are not called from browsers")
            return Response(body="", status_code=204, headers=headers)

        return answer(request, preflight)

    def _adapter(self, provider: str) -> ChannelAdapter:
        adapter = self._adapters(provider)
        if adapter is None:
            raise NotFoundError(f"no channel provider {provider!r} is configured")
        return adapter

    def _rejected(self, provider: str) -> Callable[[HubError], None]:
        # Only configured providers become metric dimensions (see `Ingestion.rejected`).
        return lambda error: self._ingestion.rejected(provider if self._adapters(provider) else "unknown", error)

    def _webhook_request(self, request: HttpRequest, hook: str | None) -> WebhookRequest:
        return WebhookRequest(method=request.method, hook=hook, headers=request.headers, query=request.query,
                              body=request.body, received_at=self._clock())

    def _with_cors(self, request: HttpRequest, provider: str, hook: str | None, response: Response) -> Response:
        """Browsers read a response, success or error, only with the CORS headers on it. Only
        browsers send `Origin`; provider servers do not, so they cost nothing here."""
        if request.header("origin") is not None:
            adapter = self._adapters(provider)
            if adapter is not None:
                response.headers.update(adapter.cors_headers(self._webhook_request(request, hook)))
        return response


def _to_chalice(response: WebhookResponse) -> Response:
    return Response(body=response.body, status_code=response.status, headers={"Content-Type": response.content_type})


def _endpoint() -> WebhookEndpoint:
    from chalicelib.bootstrap import get_hub

    return get_hub().webhook_endpoint


def _request() -> HttpRequest:
    return HttpRequest.of(webhooks.current_request)


@webhooks.route("/webhooks/{provider}", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def receive(provider: str) -> Response:
    return _endpoint().receive(_request(), provider, None)


@webhooks.route("/webhooks/{provider}/{hook}", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def receive_hook(provider: str, hook: str) -> Response:
    return _endpoint().receive(_request(), provider, hook)


@webhooks.route("/webhooks/{provider}", methods=["OPTIONS"])
def preflight(provider: str) -> Response:
    return _endpoint().preflight(_request(), provider, None)


@webhooks.route("/webhooks/{provider}/{hook}", methods=["OPTIONS"])
def preflight_hook(provider: str, hook: str) -> Response:
    return _endpoint().preflight(_request(), provider, hook)


@webhooks.route("/webhooks/{provider}", methods=["GET"])
def verify_subscription(provider: str) -> Response:
    return _endpoint().handshake(_request(), provider, None)


@webhooks.route("/webhooks/{provider}/{hook}", methods=["GET"])
def verify_subscription_hook(provider: str, hook: str) -> Response:
    return _endpoint().handshake(_request(), provider, hook)
