"""The Chalice application class: Chalice with one request object per thread.

Chalice keeps `current_request` (and `lambda_context`) as plain attributes of the app, which its
blueprints read through. Lambda runs one request per container at a time, so that is safe there;
the embedded runtime serves many requests at once from one process, where concurrent requests
would read each other's headers, bodies and API keys. Keeping both attributes thread-local gives
every request its own, on both runtimes, at the root: no view, blueprint or helper has to know.
"""

from __future__ import annotations

import threading
from typing import Any

from chalice import Chalice


class HubApp(Chalice):
    """`Chalice` whose per-request attributes belong to the thread serving the request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Before Chalice's own __init__, which assigns the attributes below.
        self._request_scope = threading.local()
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
