"""`POST /v1/events` (scope `events:write`) and `POST /v1/events/explain` (scope `operations`).

An events request holds one event, `{"events": [...]}` or a bare array of at most 100. It is all or
nothing: one invalid event answers `400 invalid_event` with `detail.fields` naming each problem
(`events[3].occurred_at`), and nothing is queued. Accepted events answer `202` with
`{"data": [{"id", "status": "queued"}]}`; `?check_duplicates=true` answers an event processed
before with `duplicate` instead (one store read per event). The event worker does the rest.

Explain runs the event rules for an event without writing or sending anything: the body is
`{"event": {...}, "customer": {...}?}`, or an addressed event whose customer is read from the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Response

from chalicelib.api.http import HttpRequest, answer, json_response
from chalicelib.errors import PayloadTooLargeError, RequestRejectedError

if TYPE_CHECKING:  # the route module loads with every function's cold start: nothing more
    from typing import Protocol

    from chalicelib.api.auth import ApiKeys
    from chalicelib.service.event_intake import EventIntake

    class EventExplainer(Protocol):
        """What explain needs of the event processor (`service/events.EventProcessor`)."""

        def explain(self, body: dict) -> dict: ...

events = Blueprint(__name__)

MAX_BODY_BYTES = 1024 * 1024


class EventsApi:
    def __init__(self, keys: ApiKeys, intake: EventIntake, processor: Any) -> None:
        """`processor` is called on first use (an explain), returning an `EventExplainer`: the
        intake route never builds the rules."""
        self._keys = keys
        self._intake = intake
        self._processor = processor

    def post(self, request: HttpRequest) -> Response:
        def post() -> Response:
            caller = self._keys.authorize(request, "events:write")
            parsed = self._intake.parse(_events_body(request))
            accepted = self._intake.accept(parsed, source=caller.actor,
                                           check_duplicates=_flag(request, "check_duplicates"))
            return json_response({"data": [item.view() for item in accepted]}, status=202)

        return answer(request, post)

    def explain(self, request: HttpRequest) -> Response:
        def explain() -> Response:
            self._keys.authorize(request, "operations")
            body = request.json_object()
            self._intake.parse_explain(body)
            processor: EventExplainer = self._processor()
            return json_response(processor.explain(body))

        return answer(request, explain)


def _events_body(request: HttpRequest) -> dict | list:
    """The body as a JSON object or array, with `json_object`'s checks (UTF-8, no lone
    surrogates, no NaN): an array is read as the value of a wrapping object."""
    if len(request.body) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"the body is larger than {MAX_BODY_BYTES} bytes")
    if request.body.lstrip()[:1] == b"[":
        from dataclasses import replace

        return replace(request, body=b'{"events": ' + request.body + b"}").json_object()["events"]
    return request.json_object()


def _flag(request: HttpRequest, name: str) -> bool:
    value = request.query.get(name)
    if value is None:
        return False
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no", ""):
        return False
    raise RequestRejectedError(f"query parameter {name} must be true or false", detail={"parameter": name})


def _request() -> HttpRequest:
    return HttpRequest.of(events.current_request)


@events.route("/v1/events", methods=["POST"])
def post_events() -> Response:
    from chalicelib.bootstrap import get_hub

    return get_hub().events_api.post(_request())


@events.route("/v1/events/explain", methods=["POST"])
def explain_event() -> Response:
    from chalicelib.bootstrap import get_hub

    return get_hub().events_api.explain(_request())
