"""The HTTP edge's shared pieces: one JSON error shape, and error translation in one place.

Every error response is `{"error": {"code", "message", "detail"}, "request_id"}`. Hub errors map
to their own status; anything unexpected is a 500 that names no internals (and is a bug: bad input
must never get here).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable

from chalice import Response

from chalicelib.errors import HubError

logger = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, *, detail: dict | None = None,
                   request_id: str | None = None, headers: dict | None = None) -> Response:
    body = {"error": {"code": code, "message": message, "detail": detail or {}}}
    if request_id:
        body["request_id"] = request_id
    return Response(
        body=json.dumps(body), status_code=status, headers={"Content-Type": "application/json", **(headers or {})}
    )


def json_response(payload: object, status: int = 200) -> Response:
    return Response(body=json.dumps(payload), status_code=status, headers={"Content-Type": "application/json"})


def request_id(app) -> str | None:
    request = app.current_request
    context = getattr(request, "context", None) or {}
    return context.get("requestId")


def translate_errors(app, *, on_error: Callable[[HubError], None] | None = None):
    """Decorator for views: hub errors become their status; anything else a logged 500."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            try:
                return view(*args, **kwargs)
            except HubError as exc:
                if on_error is not None:
                    on_error(exc)
                headers = {"WWW-Authenticate": "Bearer"} if exc.code == "unauthorized" else None
                if exc.http_status >= 500:
                    headers = {**(headers or {}), "Retry-After": "5"}
                return error_response(
                    exc.http_status, exc.code, exc.message, detail=exc.detail, request_id=request_id(app),
                    headers=headers,
                )
            except Exception as exc:  # a bug; never let internals or payload text escape
                logger.exception("unhandled %s in %s", type(exc).__name__, view.__name__)
                return error_response(500, "internal_error", "internal error", request_id=request_id(app))

        return wrapper

    return decorator
