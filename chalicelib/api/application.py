"""The Chalice application class: Chalice with one request object per thread, and its binary
media types read once instead of on every response.

Chalice keeps `current_request` (and `lambda_context`) as plain attributes of the app, which its
blueprints read through. Lambda runs one request per container at a time, so that is safe there;
the embedded runtime serves many requests at once from one process, where concurrent requests
would read each other's headers, bodies and API keys. Keeping both attributes thread-local gives
every request its own, on both runtimes, at the root: no view, blueprint or helper has to know.

Chalice also asks three times per response whether a content type is one of `api.binary_types`
(is the response binary, does the `Accept` header allow it, must the body be base64-encoded), and
each time lower-cases the whole list (38 types here) into a new one: about 12 µs of a 150 µs
webhook. `HubApp` answers the same question from a set built once per list contents.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from chalice import Chalice
from chalice.app import CaseInsensitiveMapping, Response, RestAPIEventHandler

from chalicelib.api.http import error_response


class HubApp(Chalice):
    """`Chalice` whose per-request attributes belong to the thread serving the request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Before Chalice's own __init__, which assigns the attributes below.
        self._request_scope = threading.local()
        self._binary_types: BinaryTypes | None = None
        super().__init__(*args, **kwargs)

    @property
    def current_request(self):  # type: ignore[override]
        return getattr(self._request_scope, "request", None)

    @current_request.setter
    def current_request(self, request) -> None:
        self._request_scope.request = request

    @property
    def lambda_context(self):  # type: ignore[override]
        return getattr(self._request_scope, "context", None)

    @lambda_context.setter
    def lambda_context(self, context) -> None:
        self._request_scope.context = context

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        # `Chalice.__call__` with `_RestApiHandler` in place of `RestAPIEventHandler`.
        self.lambda_context = context
        handler = _RestApiHandler(self.routes, self.api, self.log, self.debug,
                                  middleware_handlers=self._get_middleware_handlers("http"),
                                  binary_types=self.binary_types())
        self.current_request = handler.create_request_object(event, context)
        return handler(event, context)

    def binary_types(self) -> BinaryTypes:
        """`api.binary_types` as a set; built again only when the list changed (it is mutable,
        and app.py extends it after the app is created)."""
        current = self._binary_types
        if current is None or not current.built_from(self.api.binary_types):
            current = self._binary_types = BinaryTypes(self.api.binary_types)
        return current


class BinaryTypes:
    """Chalice's `_matches_content_type(content_type, binary_types)` with the list lower-cased once."""

    #: Answers kept per content type: responses and `Accept` headers come in a handful of spellings.
    MAX_KEPT = 256

    def __init__(self, types: list[str]) -> None:
        self._source = tuple(types)
        self._lowered = frozenset(t.lower() for t in types)
        self._any = "*/*" in self._lowered
        self._answers: dict[str, bool] = {}

    def built_from(self, types: list[str]) -> bool:
        return self._source == tuple(types)

    def match(self, content_type: str) -> bool:
        answer = self._answers.get(content_type)
        if answer is None:
            answer = self._match(content_type)
            if len(self._answers) >= self.MAX_KEPT:  # an Accept header is the caller's text: bounded
                self._answers.clear()
            self._answers[content_type] = answer
        return answer

    def _match(self, content_type: str) -> bool:
        content_type = content_type.lower()
        if self._any or "*/*" in content_type:
            return True
        return not self._lowered.isdisjoint(part.strip() for part in _SEPARATORS.split(content_type))


_SEPARATORS = re.compile("[,;]")


class _RestApiHandler(RestAPIEventHandler):
    """Chalice's REST handler asking `BinaryTypes` instead of lower-casing the list per call."""

    def __init__(self, *args: Any, binary_types: BinaryTypes, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._binary = binary_types

    def __call__(self, event: Any, context: Any) -> Any:
        def wrapped_event(request: Any) -> Any:
            return _in_hub_shape(self._main_rest_api_handler(event, context), event)

        final_handler = self._build_middleware_handlers(
            [self._global_error_handler, *self._middleware_handlers], original_handler=wrapped_event)
        response = final_handler(self.current_request)
        # `Response.to_dict` base64-encodes the body only when its content type is binary; when it
        # is not, passing no types skips the check (the same answer, without the list).
        binary = self._binary.match(_single_header(response.headers, "content-type") or "")
        return response.to_dict(self.api.binary_types if binary else None)

    def _validate_binary_response(self, request_headers: CaseInsensitiveMapping,
                                  response_headers: CaseInsensitiveMapping) -> bool:
        if not self._binary.match(response_headers.get("content-type", "application/json")):
            return True
        accept = request_headers.get("accept")
        return accept is not None and self._binary.match(accept)


#: Chalice's own refusals (a method the path does not have, a body type the route does not read),
#: by the code the hub's error shape gives them.
_CHALICE_REFUSALS = {"MethodNotAllowedError": "method_not_allowed", "UnsupportedMediaType": "unsupported_media_type"}


def _in_hub_shape(response: Response, event: Any) -> Response:
    """Chalice's own 405 and 415 (`{"Code", "Message"}`) in the hub's one error shape, so every
    error a client sees reads the same (`api/http.error_response`); every other response as it is."""
    body = response.body
    if not (isinstance(body, dict) and body.keys() == {"Code", "Message"} and body["Code"] in _CHALICE_REFUSALS):
        return response
    request_id = (event.get("requestContext") or {}).get("requestId") if isinstance(event, dict) else None
    return error_response(response.status_code, _CHALICE_REFUSALS[body["Code"]], str(body["Message"]),
                          request_id=request_id, headers=dict(response.headers or {}))


def _single_header(headers: dict[str, Any], name: str) -> str | None:
    """The header as `Response.to_dict` sees it: single-valued, names case-insensitive, the last wins."""
    value = None
    for key, item in headers.items():
        if key.lower() == name and not isinstance(item, list):
            value = item
    return value
