"""`GET /health` (no auth) and the JSON 404 for paths nothing else serves."""

from __future__ import annotations

from collections.abc import Callable

from chalice import Blueprint, Response

from chalicelib.api.http import HttpRequest, answer, error_response, json_response

system = Blueprint(__name__)


class HealthEndpoint:
    def __init__(self, ping: Callable[[], None], *, runtime: str, stage: str) -> None:
        self._ping = ping
        self._runtime = runtime
        self._stage = stage

    def get(self, request: HttpRequest) -> Response:
        def health() -> Response:
            self._ping()
            return json_response({"status": "ok", "runtime": self._runtime, "stage": self._stage})

        return answer(request, health)


@system.route("/health", methods=["GET"])
def health() -> Response:
    from chalicelib.bootstrap import get_hub

    return get_hub().health_endpoint.get(HttpRequest.of(system.current_request))


@system.route("/{proxy+}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def not_found(**_: str) -> Response:
    request = HttpRequest.of(system.current_request)
    return error_response(404, "not_found", f"no route for {request.path or 'this path'}", request_id=request.request_id)
