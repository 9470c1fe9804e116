"""`GET /health` (no auth) and the JSON 404 for paths nothing else serves."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.api.http import error_response, json_response, request_id, translate_errors
from chalicelib.bootstrap import get_hub

system = Blueprint(__name__)


@system.route("/health", methods=["GET"])
@translate_errors(system)
def health() -> Response:
    hub = get_hub()
    hub.store.ping()
    return json_response({"status": "ok", "runtime": hub.settings.runtime, "stage": hub.settings.stage})


@system.route("/{proxy+}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def not_found(**_: str) -> Response:
    path = system.current_request.context.get("path") or "this path"
    return error_response(404, "not_found", f"no route for {path}", request_id=request_id(system))
