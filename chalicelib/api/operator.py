"""What the operator console asks of the hub beyond the consumer API: who the pasted key is
(`GET /v1/me`, any valid key) and how the hub is doing (`GET /v1/status`, scope `operations`).

The console disables what a key may not do, so it has to learn the key's scopes without trying
each route; `/v1/me` answers that for any key the hub knows. `/v1/status` is
`service/status.py`'s report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from chalice import Blueprint, Response

from chalicelib.api.http import HttpRequest, answer, json_response

if TYPE_CHECKING:  # loaded with the first request
    from chalicelib.api.auth import ApiKeys
    from chalicelib.service.status import StatusSources

operator = Blueprint(__name__)


class OperatorApi:
    def __init__(self, keys: ApiKeys, status: Callable[[], StatusSources]) -> None:
        self._keys = keys
        self._status = status

    def me(self, request: HttpRequest) -> Response:
        def me() -> Response:
            caller = self._keys.authenticate(request)
            return json_response({"name": caller.name, "scopes": sorted(caller.scopes)})

        return answer(request, me)

    def status(self, request: HttpRequest) -> Response:
        def status() -> Response:
            from chalicelib.service.status import status_report

            self._keys.authorize(request, "operations")
            return json_response(status_report(self._status()))

        return answer(request, status)


# --- routes -------------------------------------------------------------------------------------


def _api() -> OperatorApi:
    from chalicelib.api.auth import ApiKeys
    from chalicelib.bootstrap import get_hub
    from chalicelib.service.status import hub_status_sources

    hub = get_hub()
    return OperatorApi(ApiKeys(hub.config.api_keys), lambda: hub_status_sources(hub))


def _request() -> HttpRequest:
    return HttpRequest.of(operator.current_request)


@operator.route("/v1/me", methods=["GET"])
def who_am_i() -> Response:
    return _api().me(_request())


@operator.route("/v1/status", methods=["GET"])
def hub_status() -> Response:
    return _api().status(_request())
