"""The consumer API under `/v1`: customers, their contacts, cases. Bearer API keys.

Keys are configured as SHA-256 hashes (`hubctl api-key` makes one), so the configuration never
holds a usable key. Every lookup is by key; there is deliberately no "list all customers".
The services behind the commands are imported on first use: this module loads with the webhook
routes in the same Lambda, whose cold start must not pay for them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import date

from chalice import Blueprint, Response

from chalicelib.api.http import json_response, translate_errors
from chalicelib.bootstrap import get_hub
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.ids import delivery_id
from chalicelib.domain.models import Contact, Customer, Delivery, DeliveryStatus
from chalicelib.errors import NotFoundError, RequestRejectedError, RuleRefusedError, UnauthorizedError

consumer = Blueprint(__name__)

#: Attribute and source names: lower-case, dotted for namespaces (custom.contract_id).
_NAME = re.compile(r"[a-z][a-z0-9_.]{0,63}")
_MERGE_ID = re.compile(r"mrg_[0-9A-HJKMNP-TV-Z]{26}")
MAX_ATTRIBUTE_BYTES = 4096
DEFAULT_PAGE = 20
MAX_PAGE = 100


def _authenticate() -> str:
    header = (consumer.current_request.headers or {}).get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("missing API key: send Authorization: Bearer <key>")
    name = get_hub().api_key_name(token.strip())
    if name is None:
        raise UnauthorizedError("invalid API key")
    return name


def _query(name: str) -> str | None:
    return (consumer.current_request.query_params or {}).get(name)


@consumer.route("/v1/customers/{customer_id}", methods=["GET"])
@translate_errors(consumer)
def get_customer(customer_id: str) -> Response:
    _authenticate()
    customer = get_hub().store.get_customer(customer_id)
    if customer is None:
        raise NotFoundError(f"no customer {customer_id}")
    return json_response(_customer_view(customer))


@consumer.route("/v1/customers/{customer_id}", methods=["DELETE"])
@translate_errors(consumer)
def erase_customer_data(customer_id: str) -> Response:
    """Erase the customer everywhere (GDPR Art. 17); destinations that take customer events get
    `customer.erased`. Idempotent."""
    _authenticate()
    hub = get_hub()
    from chalicelib.service.gdpr import erase_customer

    result = erase_customer(hub.store, hub.blobs, hub.delivery_queue, customer_id, now=hub.clock(),
                            event_destinations=hub.customer_event_destinations())
    return json_response(result)


@consumer.route("/v1/customers/{customer_id}/merge", methods=["POST"])
@translate_errors(consumer)
def merge_customer(customer_id: str) -> Response:
    """Body: {"customer_id": "cus_..."}: merge that customer and this one (the older survives),
    under the same merge protection as automatic merges. Idempotent."""
    key_name = _authenticate()
    other = _json_body().get("customer_id")
    if not isinstance(other, str) or not other:
        raise RequestRejectedError('body must be {"customer_id": "<the customer to merge with>"}')
    hub = get_hub()
    from chalicelib.service.customer_events import merge_event_messages
    from chalicelib.service.merge import Merges

    outcome = Merges(hub.store, hub.config).merge(customer_id, other, now=hub.clock(), trigger=f"api:{key_name}",
                                                  explicit=True)
    if outcome.refusal is not None:
        raise RuleRefusedError(f"the customers are not merged: {outcome.refusal}")
    if outcome.record is not None:
        _announce(merge_event_messages(outcome.record, destinations=hub.customer_event_destinations()))
    survivor = hub.store.get_customer(outcome.customer_id)
    if survivor is None:
        raise NotFoundError(f"no customer {outcome.customer_id}")
    return json_response({"merge_id": outcome.record.id if outcome.record else None, "customer": _customer_view(survivor)})


@consumer.route("/v1/customers/{customer_id}/unmerge", methods=["POST"])
@translate_errors(consumer)
def unmerge_customer(customer_id: str) -> Response:
    """Reverse a merge: body {"merge_id": "mrg_..."}, or empty for the customer's latest merge
    (the one that absorbed it, or the latest it absorbed). Restores both customers. Idempotent."""
    key_name = _authenticate()
    merge_id = _optional_json_body().get("merge_id")
    if merge_id is not None and not (isinstance(merge_id, str) and _MERGE_ID.fullmatch(merge_id)):
        raise RequestRejectedError('merge_id must be a merge id such as "mrg_0123456789ABCDEFGHJKMNPQRS"')
    hub = get_hub()
    from chalicelib.service.customer_events import merge_event_messages
    from chalicelib.service.merge import Merges

    record = Merges(hub.store, hub.config).unmerge(customer_id, now=hub.clock(), actor=f"api:{key_name}", merge_id=merge_id)
    _announce(merge_event_messages(record, destinations=hub.customer_event_destinations()))
    customers = [hub.store.get_customer(record.survivor_id), hub.store.get_customer(record.absorbed_id)]
    return json_response({
        "merge_id": record.id,
        "reverted_at": record.reverted_at.isoformat().replace("+00:00", "Z"),
        "customers": [_customer_view(c) for c in customers if c is not None],
    })


@consumer.route("/v1/merges/{merge_id}", methods=["GET"])
@translate_errors(consumer)
def get_merge(merge_id: str) -> Response:
    """The audit record of one merge, with both customers as they were before it."""
    _authenticate()
    record = get_hub().store.get_merge(merge_id) if _MERGE_ID.fullmatch(merge_id) else None
    if record is None:
        raise NotFoundError(f"no merge {merge_id}")
    return json_response(record.model_dump(mode="json"))


@consumer.route("/v1/customers/{customer_id}/export", methods=["GET"])
@translate_errors(consumer)
def export_customer_data(customer_id: str) -> Response:
    """Everything held about the customer (GDPR Art. 15)."""
    _authenticate()
    hub = get_hub()
    from chalicelib.service.gdpr import export_customer

    return json_response(export_customer(hub.store, hub.blobs, customer_id, now=hub.clock()))


@consumer.route("/v1/customers", methods=["GET"])
@translate_errors(consumer)
def find_customers() -> Response:
    _authenticate()
    text = _query("identifier")
    if not text:
        raise RequestRejectedError("the identifier query parameter is required, e.g. ?identifier=phone:+4915123456789")
    hub = get_hub()
    identifier = Identifier.parse(text, default_region=hub.config.identity.default_region)
    customer_id = hub.store.find_customer_ids([identifier]).get(identifier.key)
    customer = hub.store.get_customer(customer_id) if customer_id else None
    return json_response({"data": [_customer_view(customer)] if customer else []})


@consumer.route("/v1/customers/{customer_id}/identifiers", methods=["POST"])
@translate_errors(consumer)
def link_customer_identifier(customer_id: str) -> Response:
    """Body: {"identifier": "kind:value"}, e.g. {"identifier": "external:CRM-1042"}."""
    _authenticate()
    hub = get_hub()
    text = _json_body().get("identifier")
    if not isinstance(text, str):
        raise RequestRejectedError('body must be {"identifier": "kind:value"}')
    identifier = Identifier.parse(text, default_region=hub.config.identity.default_region)
    from chalicelib.service.commands import link_identifier

    customer = link_identifier(hub.store, hub.identity_rules, customer_id, identifier, now=hub.clock())
    return json_response(_customer_view(customer))


@consumer.route("/v1/customers/{customer_id}/attributes", methods=["PATCH"])
@translate_errors(consumer)
def set_customer_attributes(customer_id: str) -> Response:
    """Body: {"source": "crm", "attributes": {"tier": "gold", "language": "de"}}; null withdraws."""
    _authenticate()
    hub = get_hub()
    body = _json_body()
    source, values = body.get("source", "api"), body.get("attributes")
    if not isinstance(source, str) or not _NAME.fullmatch(source):
        raise RequestRejectedError("source must be a short lower-case name such as crm")
    if not isinstance(values, dict) or not values:
        raise RequestRejectedError('body must be {"source": "...", "attributes": {"name": value, ...}}')
    for name, value in values.items():
        if not _NAME.fullmatch(name):
            raise RequestRejectedError(f"attribute name {name[:40]!r} must be lower-case letters, digits, '_' or '.'")
        if len(json.dumps(value)) > MAX_ATTRIBUTE_BYTES:
            raise RequestRejectedError(f"attribute {name} is larger than {MAX_ATTRIBUTE_BYTES} bytes")
    from chalicelib.service.commands import set_attributes

    customer = set_attributes(hub.store, customer_id, values, source=source, now=hub.clock(), rules=hub.config.survivorship)
    return json_response(_customer_view(customer))


@consumer.route("/v1/cases/{case_id}/close", methods=["POST"])
@translate_errors(consumer)
def close_customer_case(case_id: str) -> Response:
    _authenticate()
    hub = get_hub()
    from chalicelib.service.commands import close_case

    case = close_case(hub.store, case_id, now=hub.clock(), settings=hub.config.cases)
    return json_response(case.model_dump(mode="json"))


@consumer.route("/v1/customers/{customer_id}/contacts", methods=["GET"])
@translate_errors(consumer)
def list_customer_contacts(customer_id: str) -> Response:
    _authenticate()
    limit = _limit(_query("limit"))
    cursor = _decode_cursor(_query("cursor"))
    hub = get_hub()
    customer = hub.store.get_customer(customer_id)
    if customer is None:
        raise NotFoundError(f"no customer {customer_id}")
    from chalicelib.service.timeline import timeline_page

    page = timeline_page(hub.store, customer, limit=limit, cursor=cursor)
    # The list is the customer's timeline (with the contacts of customers it absorbed); each
    # contact's delivery log is on /v1/contacts/{id}.
    return json_response(
        {
            "data": [c.model_dump(mode="json", exclude={"deliveries", "raw"}) for c in page.items],
            "next_cursor": _encode_cursor(page.cursor) if page.cursor else None,
        }
    )


@consumer.route("/v1/contacts/{contact_id}", methods=["GET"])
@translate_errors(consumer)
def get_contact(contact_id: str) -> Response:
    _authenticate()
    contact = get_hub().store.get_contact(contact_id)
    if contact is None:
        raise NotFoundError(f"no contact {contact_id}")
    return json_response(_with_pending_deliveries(contact))


@consumer.route("/v1/cases/{case_id}", methods=["GET"])
@translate_errors(consumer)
def get_case(case_id: str) -> Response:
    _authenticate()
    hub = get_hub()
    case = hub.store.get_case(case_id)
    if case is None:
        raise NotFoundError(f"no case {case_id}")
    from chalicelib.service.cases import effective

    return json_response(effective(case, hub.clock(), hub.config.cases).model_dump(mode="json"))


@consumer.route("/v1/exceptions", methods=["GET"])
@translate_errors(consumer)
def list_exceptions() -> Response:
    """The exception queue: contacts rules parked for manual handling, oldest first."""
    _authenticate()
    limit = _limit(_query("limit"))
    cursor = _decode_cursor(_query("cursor"))
    page = get_hub().store.list_parked(limit=limit, cursor=cursor)
    return json_response({
        "data": [entry.model_dump(mode="json") for entry in page.items],
        "next_cursor": _encode_cursor(page.cursor) if page.cursor else None,
    })


@consumer.route("/v1/exceptions/{contact_id}/resolve", methods=["POST"])
@translate_errors(consumer)
def resolve_exception(contact_id: str) -> Response:
    """Release a parked contact with a chosen route: {"queue", "priority", "skills", "tags",
    "destinations", "note"}, each optional (omitted: what the rules chose). Idempotent."""
    key_name = _authenticate()
    hub = get_hub()
    from pydantic import ValidationError

    from chalicelib.service.exceptions import Release, release

    try:
        choice = Release.model_validate(_optional_json_body())
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RequestRejectedError(f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}") from None
    contact = release(hub.store, hub.delivery_queue, hub.config, contact_id, choice, actor=f"api:{key_name}",
                      now=hub.clock())
    return json_response(_with_pending_deliveries(contact))


@consumer.route("/v1/routing/explain", methods=["POST"])
@translate_errors(consumer)
def explain_routing() -> Response:
    """What the rules in force decide for a contact, with the trace; stores and sends nothing.
    Body: {"contact": {...}, "customer": {...}?, "case": {...}?}."""
    _authenticate()
    hub = get_hub()
    from chalicelib.service.explain import explain

    return json_response(explain(_json_body(), router=hub.live_router.current(), enricher=hub.enricher, now=hub.clock()))


@consumer.route("/v1/dead-letters", methods=["GET"])
@translate_errors(consumer)
def list_dead_letters() -> Response:
    """Deliveries the hub gave up on, with the reason: ?destination=crm&limit=&cursor=."""
    _authenticate()
    limit = _limit(_query("limit"))
    cursor = _decode_cursor(_query("cursor"), prefix="dlv_")
    from chalicelib.service.dead_letters import summary

    page = get_hub().store.list_dead_letters(destination=_query("destination"), limit=limit, cursor=cursor)
    return json_response({
        "data": [summary(letter) for letter in page.items],
        "next_cursor": _encode_cursor(page.cursor) if page.cursor else None,
    })


@consumer.route("/v1/dead-letters/{letter_id}/replay", methods=["POST"])
@translate_errors(consumer)
def replay_dead_letter(letter_id: str) -> Response:
    """Queue a dead delivery again (same delivery id: the vendor sees the same idempotency key)."""
    _authenticate()
    hub = get_hub()
    from chalicelib.service.dead_letters import replay

    letter = replay(hub.store, hub.delivery_queue, letter_id, now=hub.clock())
    return json_response({"id": letter.id, "destination": letter.destination, "status": "queued"}, status=202)


@consumer.route("/v1/unhandled-events", methods=["GET"])
@translate_errors(consumer)
def list_unhandled_events() -> Response:
    """Webhook items no channel adapter could read, kept raw: ?day=YYYY-MM-DD (UTC, default
    today)&provider=meta&limit=&cursor=. What a provider started sending that the hub ignores."""
    _authenticate()
    hub = get_hub()
    day = _day(_query("day")) or hub.clock().date()
    limit = _limit(_query("limit"))
    cursor = _decode_cursor(_query("cursor"), prefix=day.strftime("%Y%m%dT"))
    page = hub.store.list_unhandled(day=day, provider=_query("provider"), limit=limit, cursor=cursor)
    return json_response({
        "data": [{"id": event.id, **event.model_dump(mode="json", exclude={"kind"})} for event in page.items],
        "next_cursor": _encode_cursor(page.cursor) if page.cursor else None,
    })


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text) if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text) else _bad_day()
    except ValueError:
        return _bad_day()


def _bad_day():
    raise RequestRejectedError("day must be a date as YYYY-MM-DD")


def _customer_view(customer: Customer) -> dict:
    """The customer as consumers see it: an open case inactive past the limit is no longer open."""
    from chalicelib.domain.golden_record import quality_flags
    from chalicelib.service.cases import is_inactive

    hub = get_hub()
    body = customer.model_dump(mode="json")
    if customer.open_case is not None and is_inactive(customer.open_case, hub.clock(), hub.config.cases):
        body["open_case"] = None
    body["quality_flags"] = quality_flags(customer)
    return body


def _announce(messages: list) -> None:
    if messages:
        get_hub().delivery_queue.send(messages)


def _optional_json_body() -> dict:
    if not consumer.current_request.raw_body:
        return {}
    return _json_body()


def _json_body() -> dict:
    try:
        body = consumer.current_request.json_body
    except Exception:  # Chalice raises its own BadRequestError for invalid JSON
        raise RequestRejectedError("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RequestRejectedError("body must be a JSON object")
    return body


def _with_pending_deliveries(contact: Contact) -> dict:
    """A contact whose deliveries include the routed destinations not yet attempted, as pending."""
    attempted = {d.destination for d in contact.deliveries}
    pending = [
        Delivery(
            id=delivery_id(contact.id, name), contact_id=contact.id, destination=name,
            status=DeliveryStatus.PENDING, updated_at=contact.received_at,
        )
        for name in contact.routing.destinations
        if name not in attempted
    ]
    body = contact.model_dump(mode="json")
    body["deliveries"] = [d.model_dump(mode="json") for d in [*contact.deliveries, *pending]]
    return body


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_PAGE
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise RequestRejectedError(f"limit must be a whole number from 1 to {MAX_PAGE}")
    return int(text)


def _encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _decode_cursor(text: str | None, *, prefix: str = "ct_") -> str | None:
    if not text:
        return None
    try:
        value = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise RequestRejectedError("cursor is not one this API returned") from None
    if not value.startswith(prefix):
        raise RequestRejectedError("cursor is not one this API returned")
    return value
