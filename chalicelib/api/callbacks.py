"""Destination callbacks: `POST /callbacks/{destination}`, the way back from a helpdesk or CRM.

One route for every two-way destination, like the provider webhooks: the destination's connector
(its callback side) verifies and parses, so adding a vendor never touches this file. A destination
that is not configured, or configured one-way (no `callbacks` section), answers 404.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from chalice import Blueprint, Response

from chalicelib.adapters.channels.base import WebhookRequest
from chalicelib.api.http import HttpRequest, answer
from chalicelib.api.webhooks import ANY_CONTENT_TYPE
from chalicelib.errors import HubError, NotFoundError

if TYPE_CHECKING:  # the callback sides (every connector's base) load with the first callback
    from chalicelib.adapters.callbacks.base import VendorCallbacks
    from chalicelib.service.ingest import Ingestion

callbacks = Blueprint(__name__)


class CallbackEndpoint:
    def __init__(self, ingestion: Ingestion, sides: Callable[[str], VendorCallbacks | None], *,
                 clock: Callable[[], datetime], annotate: Callable[..., None] = lambda **values: None,
                 correlate: Callable[[str | None], None] = lambda value: None) -> None:
        self._ingestion = ingestion
        self._sides = sides
        self._clock = clock
        self._annotate = annotate
        self._correlate = correlate

    def receive(self, request: HttpRequest, destination: str) -> Response:
        def receive() -> Response:
            self._correlate(request.request_id)
            self._annotate(destination=destination)
            side = self._sides(destination)
            if side is None:
                raise NotFoundError(f"no two-way destination {destination!r} is configured "
                                    f"(destinations[].callbacks)")
            callback = WebhookRequest(method=request.method, hook=None, headers=request.headers, query=request.query,
                                      body=request.body, received_at=self._clock())
            result = self._ingestion.callback(destination, side, callback, content_type=request.header("content-type"))
            response = result.response
            return Response(body=response.body, status_code=response.status,
                            headers={"Content-Type": response.content_type})

        return answer(request, receive, on_error=self._rejected(destination))

    def _rejected(self, destination: str) -> Callable[[HubError], None]:
        # Only configured destinations become metric dimensions: the path is caller-controlled.
        return lambda error: self._ingestion.callback_rejected(
            destination if self._sides(destination) is not None else "unknown", error)


def _endpoint() -> CallbackEndpoint:
    from chalicelib.bootstrap import get_hub

    return get_hub().callback_endpoint


@callbacks.route("/callbacks/{destination}", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def receive(destination: str) -> Response:
    return _endpoint().receive(HttpRequest.of(callbacks.current_request), destination)
