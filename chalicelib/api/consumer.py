"""The consumer API under `/v1`: customers, their contacts, cases, and the operator's queues.

Every route requires an API key with one scope (`SCOPES` in `hubconfig.py`), declared here per
route; a key without it gets 403 naming the scope. `ConsumerApi` parses parameters, authorizes,
calls the customer and operations services the composition root built, and shapes the answer.
Every lookup is by key; there is deliberately no "list all customers".
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import replace
from datetime import date
from typing import TYPE_CHECKING

from chalice import Blueprint, Response

from chalicelib.api.http import HttpRequest, answer, json_response
from chalicelib.errors import NotFoundError, RequestRejectedError

if TYPE_CHECKING:  # the services (and the store they reach) load with the first /v1 request
    from chalicelib.api.auth import ApiKeys
    from chalicelib.service.customers import CustomerService
    from chalicelib.service.operations import Operations

consumer = Blueprint(__name__)

DEFAULT_PAGE = 20
MAX_PAGE = 100
_LIMIT = re.compile(r"[0-9]{1,3}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class ConsumerApi:
    """The `/v1` routes' behaviour, given the API keys and the services."""

    def __init__(self, keys: ApiKeys, customers: CustomerService, operations: Operations) -> None:
        self._keys = keys
        self._customers = customers
        self._operations = operations

    # --- customers (customers:read / customers:write / customers:erase) ----------------------------

    def get_customer(self, request: HttpRequest, customer_id: str) -> Response:
        return self._answer(request, "customers:read", lambda caller: json_response(self._customers.customer(customer_id)),
                            customer=customer_id)

    def find_customers(self, request: HttpRequest) -> Response:
        def find(caller):
            text = request.query.get("identifier")
            if not text:
                raise RequestRejectedError("the identifier query parameter is required, e.g. ?identifier=phone:+4915123456789")
            return json_response({"data": self._customers.find(text)})

        return self._answer(request, "customers:read", find)

    def erase_customer(self, request: HttpRequest, customer_id: str) -> Response:
        return self._answer(request, "customers:erase", lambda caller: json_response(self._customers.erase(customer_id)),
                            customer=customer_id)

    def export_customer(self, request: HttpRequest, customer_id: str) -> Response:
        return self._answer(request, "customers:read", lambda caller: json_response(self._customers.export(customer_id)),
                            customer=customer_id)

    def merge_customer(self, request: HttpRequest, customer_id: str) -> Response:
        return self._answer(request, "customers:write", lambda caller: json_response(
            self._customers.merge(customer_id, request.json_object().get("customer_id"), actor=caller.actor)),
            customer=customer_id)

    def unmerge_customer(self, request: HttpRequest, customer_id: str) -> Response:
        return self._answer(request, "customers:write", lambda caller: json_response(
            self._customers.unmerge(customer_id, request.optional_json_object().get("merge_id"), actor=caller.actor)),
            customer=customer_id)

    def get_merge(self, request: HttpRequest, merge_id: str) -> Response:
        return self._answer(request, "customers:read", lambda caller: json_response(self._customers.merge_record(merge_id)),
                            merge=merge_id)

    def link_identifier(self, request: HttpRequest, customer_id: str) -> Response:
        return self._answer(request, "customers:write", lambda caller: json_response(
            self._customers.link(customer_id, request.json_object().get("identifier"))), customer=customer_id)

    def set_attributes(self, request: HttpRequest, customer_id: str) -> Response:
        def set_attributes(caller):
            body = request.json_object()
            return json_response(self._customers.set_attributes(customer_id, body.get("attributes"),
                                                                source=body.get("source", "api")))

        return self._answer(request, "customers:write", set_attributes, customer=customer_id)

    def set_consent(self, request: HttpRequest, customer_id: str) -> Response:
        return self._answer(request, "customers:write", lambda caller: json_response(
            self._customers.set_consent(customer_id, _object_or_list(request), actor=caller.actor,
                                        request_id=request.request_id)), customer=customer_id)

    def list_contacts(self, request: HttpRequest, customer_id: str) -> Response:
        def list_contacts(caller):
            items, cursor = self._customers.timeline(customer_id, limit=_limit(request), cursor=_cursor(request))
            return _page(items, cursor)

        return self._answer(request, "customers:read", list_contacts, customer=customer_id)

    def get_contact(self, request: HttpRequest, contact_id: str) -> Response:
        return self._answer(request, "customers:read", lambda caller: json_response(self._customers.contact(contact_id)),
                            contact=contact_id)

    def get_case(self, request: HttpRequest, case_id: str) -> Response:
        return self._answer(request, "customers:read", lambda caller: json_response(self._customers.case(case_id)),
                            case=case_id)

    def close_case(self, request: HttpRequest, case_id: str) -> Response:
        return self._answer(request, "customers:write", lambda caller: json_response(self._customers.close_case(case_id)),
                            case=case_id)

    # --- operations -----------------------------------------------------------------------------

    def list_exceptions(self, request: HttpRequest) -> Response:
        return self._answer(request, "operations", lambda caller: _page(
            *self._operations.parked(limit=_limit(request), cursor=_cursor(request))))

    def resolve_exception(self, request: HttpRequest, contact_id: str) -> Response:
        return self._answer(request, "operations", lambda caller: json_response(
            self._operations.release(contact_id, request.optional_json_object(), actor=caller.actor)), contact=contact_id)

    def explain_routing(self, request: HttpRequest) -> Response:
        return self._answer(request, "operations", lambda caller: json_response(
            self._operations.explain(request.json_object())))

    def list_dead_letters(self, request: HttpRequest) -> Response:
        return self._answer(request, "operations", lambda caller: _page(*self._operations.dead_letters(
            destination=request.query.get("destination"), kind=request.query.get("kind") or None, limit=_limit(request),
            cursor=_cursor(request, prefix="dlv_"))))

    def replay_dead_letters(self, request: HttpRequest) -> Response:
        return self._answer(request, "operations", lambda caller: json_response(
            self._operations.replay_batch(request.json_object()), status=202))

    def replay_dead_letter(self, request: HttpRequest, letter_id: str) -> Response:
        return self._answer(request, "operations", lambda caller: json_response(
            self._operations.replay(letter_id), status=202), dead_letter=letter_id)

    def list_unhandled(self, request: HttpRequest) -> Response:
        def list_unhandled(caller):
            day = _day(request.query.get("day")) or self._operations.today()
            items, cursor = self._operations.unhandled(day=day, provider=request.query.get("provider"),
                                                       limit=_limit(request),
                                                       cursor=_cursor(request, prefix=day.strftime("%Y%m%dT")))
            return _page(items, cursor)

        return self._answer(request, "operations", list_unhandled)

    # --- plumbing -------------------------------------------------------------------------------

    def _answer(self, request: HttpRequest, scope: str, handle, **ids: str) -> Response:
        """`handle(caller)`'s response once the key grants `scope`; `ids` are the path's ids by
        what they name (`customer=...`)."""

        def authorized() -> Response:
            caller = self._keys.authorize(request, scope)
            _check_text(request, ids)
            return handle(caller)

        return answer(request, authorized)


def _check_text(request: HttpRequest, ids: dict[str, str]) -> None:
    """Refuse what no store key or record can hold, before any lookup: on AWS, API Gateway hands
    over decoded path and query parameters, which may carry lone surrogates (not encodable as
    UTF-8), NULs, or a key longer than DynamoDB's 2 KB."""
    from chalicelib.service.customers import ID_SHAPE

    for name, value in request.query.items():
        if not _encodable(name) or not _encodable(value):
            raise RequestRejectedError(f"query parameter {_shown(name)} is not valid UTF-8 (a lone surrogate)",
                                       detail={"parameter": _shown(name)})
    for noun, value in ids.items():
        if not ID_SHAPE.fullmatch(value):
            raise NotFoundError(f"no {noun.replace('_', ' ')} with this id")


def _object_or_list(request: HttpRequest) -> dict | list:
    """The body as a JSON object or array, with `json_object`'s checks (UTF-8, no lone
    surrogates, no NaN): an array is read as the value of a wrapping object."""
    if request.body.lstrip()[:1] == b"[":
        return replace(request, body=b'{"items": ' + request.body + b"}").json_object()["items"]
    return request.json_object()


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(name: str) -> str:
    return name.encode("utf-8", "replace").decode("utf-8")[:40]


def _page(items: list, cursor: str | None) -> Response:
    return json_response({"data": items, "next_cursor": _encode_cursor(cursor) if cursor else None})


def _limit(request: HttpRequest) -> int:
    text = request.query.get("limit")
    if text is None:
        return DEFAULT_PAGE
    # ASCII digits only: `str.isdigit` admits `²`, which `int` refuses.
    if not _LIMIT.fullmatch(text) or not 1 <= int(text) <= MAX_PAGE:
        raise RequestRejectedError(f"limit must be a whole number from 1 to {MAX_PAGE}", detail={"parameter": "limit"})
    return int(text)


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        if _DAY.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise RequestRejectedError("day must be a date as YYYY-MM-DD", detail={"parameter": "day"})


def _encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _cursor(request: HttpRequest, *, prefix: str = "ct_") -> str | None:
    text = request.query.get("cursor")
    if not text:
        return None
    try:
        value = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise RequestRejectedError("cursor is not one this API returned", detail={"parameter": "cursor"}) from None
    if not value.startswith(prefix) or not value.isprintable():
        raise RequestRejectedError("cursor is not one this API returned", detail={"parameter": "cursor"})
    return value


# --- routes: each hands the request to the ConsumerApi the composition root built ----------------


def _api() -> ConsumerApi:
    from chalicelib.bootstrap import get_hub

    return get_hub().consumer_api


def _request() -> HttpRequest:
    return HttpRequest.of(consumer.current_request)


@consumer.route("/v1/customers", methods=["GET"])
def find_customers() -> Response:
    return _api().find_customers(_request())


@consumer.route("/v1/customers/{customer_id}", methods=["GET"])
def get_customer(customer_id: str) -> Response:
    return _api().get_customer(_request(), customer_id)


@consumer.route("/v1/customers/{customer_id}", methods=["DELETE"])
def erase_customer(customer_id: str) -> Response:
    return _api().erase_customer(_request(), customer_id)


@consumer.route("/v1/customers/{customer_id}/export", methods=["GET"])
def export_customer(customer_id: str) -> Response:
    return _api().export_customer(_request(), customer_id)


@consumer.route("/v1/customers/{customer_id}/merge", methods=["POST"])
def merge_customer(customer_id: str) -> Response:
    return _api().merge_customer(_request(), customer_id)


@consumer.route("/v1/customers/{customer_id}/unmerge", methods=["POST"])
def unmerge_customer(customer_id: str) -> Response:
    return _api().unmerge_customer(_request(), customer_id)


@consumer.route("/v1/merges/{merge_id}", methods=["GET"])
def get_merge(merge_id: str) -> Response:
    return _api().get_merge(_request(), merge_id)


@consumer.route("/v1/customers/{customer_id}/identifiers", methods=["POST"])
def link_customer_identifier(customer_id: str) -> Response:
    return _api().link_identifier(_request(), customer_id)


@consumer.route("/v1/customers/{customer_id}/attributes", methods=["PATCH"])
def set_customer_attributes(customer_id: str) -> Response:
    return _api().set_attributes(_request(), customer_id)


@consumer.route("/v1/customers/{customer_id}/consent", methods=["PUT"])
def set_customer_consent(customer_id: str) -> Response:
    return _api().set_consent(_request(), customer_id)


@consumer.route("/v1/customers/{customer_id}/contacts", methods=["GET"])
def list_customer_contacts(customer_id: str) -> Response:
    return _api().list_contacts(_request(), customer_id)


@consumer.route("/v1/contacts/{contact_id}", methods=["GET"])
def get_contact(contact_id: str) -> Response:
    return _api().get_contact(_request(), contact_id)


@consumer.route("/v1/cases/{case_id}", methods=["GET"])
def get_case(case_id: str) -> Response:
    return _api().get_case(_request(), case_id)


@consumer.route("/v1/cases/{case_id}/close", methods=["POST"])
def close_customer_case(case_id: str) -> Response:
    return _api().close_case(_request(), case_id)


@consumer.route("/v1/exceptions", methods=["GET"])
def list_exceptions() -> Response:
    return _api().list_exceptions(_request())


@consumer.route("/v1/exceptions/{contact_id}/resolve", methods=["POST"])
def resolve_exception(contact_id: str) -> Response:
    return _api().resolve_exception(_request(), contact_id)


@consumer.route("/v1/routing/explain", methods=["POST"])
def explain_routing() -> Response:
    return _api().explain_routing(_request())


@consumer.route("/v1/dead-letters", methods=["GET"])
def list_dead_letters() -> Response:
    return _api().list_dead_letters(_request())


@consumer.route("/v1/dead-letters/replay", methods=["POST"])
def replay_dead_letters() -> Response:
    return _api().replay_dead_letters(_request())


@consumer.route("/v1/dead-letters/{letter_id}/replay", methods=["POST"])
def replay_dead_letter(letter_id: str) -> Response:
    return _api().replay_dead_letter(_request(), letter_id)


@consumer.route("/v1/unhandled-events", methods=["GET"])
def list_unhandled_events() -> Response:
    return _api().list_unhandled(_request())
