"""The HTTP edge's shared pieces: the request as a typed value, one JSON error shape, and error
translation in one place.

Routes turn Chalice's request into an `HttpRequest` and hand it to an endpoint object the
composition root built with its dependencies (`bootstrap.Hub`), so an endpoint is tested with
fakes and never reads a global. Every error response is
`{"error": {"code", "message", "detail"}, "request_id"}`. Hub errors map to their own status;
anything unexpected is a 500 that names no internals (and is a bug: bad input must never get here).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chalice import Response

from chalicelib.errors import HubError, RequestRejectedError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpRequest:
    """One request as an endpoint sees it: what Chalice (on AWS, API Gateway) handed over."""

    method: str
    path: str
    #: Header names lower-cased.
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: API Gateway's request id, for error bodies and logs.
    request_id: str | None = None

    @classmethod
    def of(cls, request: Any) -> HttpRequest:
        """From a `chalice.app.Request`."""
        context = getattr(request, "context", None) or {}
        return cls(
            method=request.method,
            path=context.get("path") or "",
            headers=_lowered_headers(request),
            query=dict(request.query_params or {}),
            body=_raw_body(request),
            request_id=context.get("requestId"),
        )

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json_object(self) -> dict:
        """The body as a JSON object. Raises `RequestRejectedError` (400) naming what is wrong:
        not UTF-8, not JSON, a lone surrogate, a number JSON cannot carry, or not an object."""
        try:
            text = self.body.decode("utf-8")
            body = _DECODER.decode(text)
            # A lone surrogate (`"\ud800"`) decodes to a str nothing can encode again.
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeError:
            raise RequestRejectedError("body is not valid UTF-8 JSON (a lone surrogate escape, or bytes that are not UTF-8)") from None
        except _NotANumberError as exc:
            raise RequestRejectedError(f"body is not valid JSON: {exc}") from None
        except (ValueError, RecursionError):
            raise RequestRejectedError("body is not valid JSON") from None
        if not isinstance(body, dict):
            raise RequestRejectedError("body must be a JSON object")
        return body

    def optional_json_object(self) -> dict:
        """`json_object`, or {} when the body is empty."""
        return self.json_object() if self.body.strip() else {}


def _lowered_headers(request: Any) -> dict[str, str]:
    """The request's headers, names lower-cased, as Chalice's `CaseInsensitiveMapping` holds them.
    Read from the event Chalice built that mapping from: copying the mapping itself goes through
    its Python `__getitem__`, which lower-cases each name again."""
    event = request.to_original_event() if hasattr(request, "to_original_event") else None
    headers = event.get("headers") if isinstance(event, dict) else request.headers
    return {k.lower(): v for k, v in (headers or {}).items()}


def _raw_body(request: Any) -> bytes:
    try:
        return request.raw_body or b""
    except UnicodeEncodeError:
        # A Lambda event's body is a str, and a `\ud800` escape in the event's JSON makes it hold
        # a lone surrogate, which Chalice cannot encode. Kept as the bytes that are not UTF-8,
        # so the endpoint's parsing names the problem (a 400, not Chalice's 500).
        return request.to_original_event()["body"].encode("utf-8", "surrogatepass")


class _NotANumberError(ValueError):
    pass


def _no_constant(name: str):
    # Python's json reads NaN and Infinity, which RFC 8259 does not have: stored, they would
    # come back as null (pydantic) or as output no other JSON parser reads.
    raise _NotANumberError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NotANumberError(f"the number {text[:20]}{'…' if len(text) > 20 else ''} is too large for a double")
    return value


#: `json.loads` with these options builds a decoder per call; decoders keep no state between calls.
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)


def error_response(status: int, code: str, message: str, *, detail: dict | None = None,
                   request_id: str | None = None, headers: dict | None = None) -> Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message, "detail": detail or {}}}
    if request_id:
        body["request_id"] = request_id
    return Response(
        body=json.dumps(body), status_code=status, headers={"Content-Type": "application/json", **(headers or {})}
    )


def json_response(payload: object, status: int = 200) -> Response:
    return Response(body=json.dumps(payload), status_code=status, headers={"Content-Type": "application/json"})


def answer(request: HttpRequest, handle: Callable[[], Response], *,
           on_error: Callable[[HubError], None] | None = None) -> Response:
    """`handle()`'s response; hub errors become their status, anything else a logged 500."""
    try:
        return handle()
    except HubError as exc:
        if on_error is not None:
            on_error(exc)
        headers = {"WWW-Authenticate": "Bearer"} if exc.code == "unauthorized" else None
        if exc.http_status >= 500:
            headers = {**(headers or {}), "Retry-After": "5"}
        return error_response(exc.http_status, exc.code, exc.message, detail=exc.detail,
                              request_id=request.request_id, headers=headers)
    except Exception as exc:  # a bug; never let internals or payload text escape
        logger.exception("unhandled %s on %s %s", type(exc).__name__, request.method, request.path)
        return error_response(500, "internal_error", "internal error", request_id=request.request_id)
