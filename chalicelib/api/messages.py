"""`POST /v1/messages`: answer a customer on the channel they wrote on (scope `messages:send`).

The route validates the body (every problem names its field, values are never echoed), takes
the idempotency key from the `Idempotency-Key` header or the body, and hands the request to
`MessageService`: `202` with the queued message, or the refusal (`409 consent_refused`,
`422 outside_service_window` / `no_reachable_channel` / `template_required` / `invalid_message`,
`404` unknown customer or case) with nothing queued.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalice import Blueprint, Response
from pydantic import ValidationError

from chalicelib.api.http import HttpRequest, answer, json_response

if TYPE_CHECKING:
    from chalicelib.api.auth import ApiKeys
from chalicelib.errors import RequestRejectedError, UnsendableMessageError

messages = Blueprint(__name__)

MAX_BODY_BYTES = 1024 * 1024


class MessagesApi:
    def __init__(self, keys: ApiKeys, service) -> None:
        self._keys = keys
        self._service = service

    def send(self, request: HttpRequest) -> Response:
        def send() -> Response:
            caller = self._keys.authorize(request, "messages:send")
            accepted = self._service.send(send_request(request), origin=caller.actor)
            return json_response({"data": accepted.view()}, status=200 if accepted.repeated else 202)

        return answer(request, send)


def send_request(request: HttpRequest):
    """The body as a `SendRequest`, the header's idempotency key winning over the body's."""
    from chalicelib.service.send_request import SendRequest

    if len(request.body) > MAX_BODY_BYTES:
        raise RequestRejectedError(f"the body is larger than {MAX_BODY_BYTES} bytes")
    body = request.json_object()
    header_key = request.header("idempotency-key")
    if header_key is not None:
        if body.get("idempotency_key") not in (None, header_key):
            raise RequestRejectedError("Idempotency-Key header and idempotency_key differ; send one")
        body["idempotency_key"] = header_key
    try:
        return SendRequest.model_validate(body)
    except ValidationError as exc:
        raise UnsendableMessageError(_described(exc), detail={"fields": _fields(exc)}) from None


def _described(exc: ValidationError) -> str:
    """Field paths and reasons, never the values: an error body must not echo personal data."""
    return "; ".join(f"{path}: {reason}" for path, reason in list(_fields(exc).items())[:8])


def _fields(exc: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        path = ".".join(str(part) for part in error["loc"]) or "body"
        fields.setdefault(path, error["msg"])
    return fields


def _request() -> HttpRequest:
    return HttpRequest.of(messages.current_request)


@messages.route("/v1/messages", methods=["POST"])
def send_message() -> Response:
    from chalicelib.bootstrap import get_hub

    return get_hub().messages_api.send(_request())
