"""The OpenAPI 3.1 document: the route table's operations, described by the registry, with the
pydantic models' JSON Schemas as components and the delivered event envelopes as `webhooks`.

Built from data only (no request, no store), so `hubctl openapi`, the route and the tests make the
same document; `render` gives it a stable text (sorted keys, two-space indents) for docs/openapi.json.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from chalicelib.adapters.connectors.base import CASE_EVENTS, CASE_TIMER_EVENTS, CUSTOMER_EVENTS, MESSAGE_EVENTS
from chalicelib.api.openapi import models as m
from chalicelib.api.openapi.registry import NOT_OPERATIONS, OPERATIONS, Operation, Param
from chalicelib.domain.schema import ContactEvent

REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"{([^}+]+)\+?}")

#: Contact events (`ContactEvent`); the rest carry ids only (`CustomerEventEnvelope`).
CONTACT_EVENT_TYPES = ("contact.created", *sorted(MESSAGE_EVENTS), "event.forwarded")
CUSTOMER_EVENT_TYPES = tuple(sorted(CUSTOMER_EVENTS | CASE_EVENTS | CASE_TIMER_EVENTS))

_STATUS_TEXT = {
    400: "The request is malformed: a parameter or the body is wrong (the message names it).",
    401: "No API key, an unknown key, or a bad signature.",
    403: "The key lacks the scope (`detail.required_scope`), or the signature is refused.",
    404: "Nothing with this id (or nothing configured under this name).",
    405: "Not answered for this provider.",
    409: "Conflicts with the current state (the message says which).",
    413: "The body or the resulting record is too large.",
    415: "The content type is not one this endpoint reads.",
    422: "Well-formed but refused (a rule, a limit, or a field that is wrong).",
    503: "Briefly unavailable (store or queue); retry after `Retry-After` seconds.",
}


class UnregisteredRouteError(Exception):
    """The route table has routes the registry does not describe (or the other way round)."""


def route_keys(routes: Mapping[str, Mapping[str, Any]]) -> set[tuple[str, str]]:
    """(method, path) of every route of a Chalice route table (`app.routes`)."""
    return {(method, path) for path, methods in routes.items() for method in methods}


def check_registry(routes: Mapping[str, Mapping[str, Any]], operations: Iterable[Operation] = OPERATIONS) -> None:
    """Raises `UnregisteredRouteError` naming routes without an entry and entries without a route."""
    table = route_keys(routes) - NOT_OPERATIONS
    operations = tuple(operations)
    missing = sorted(table - {op.route_key for op in operations})
    unknown = sorted(op.key for op in operations if op.route_key not in table)
    problems = [f"route {method} {path} has no entry in chalicelib/api/openapi/registry.py" for method, path in missing]
    problems += [f"registry entry {method} {path} names no route of the app" for method, path in unknown]
    if problems:
        raise UnregisteredRouteError("; ".join(problems))


def build_document(routes: Mapping[str, Mapping[str, Any]], operations: Iterable[Operation] = OPERATIONS) -> dict:
    """The document for the route table `routes`. Raises `UnregisteredRouteError`."""
    operations = tuple(operations)
    check_registry(routes, operations)
    definitions, refs = _schemas(operations)
    paths: dict[str, dict] = {}
    for op in sorted(operations, key=lambda op: (op.path, op.method)):
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Omnichannel integration hub",
            "version": "1",
            "description": "The hub's consumer API (`/v1`), the provider webhooks and destination callbacks it "
                           "receives, its static surfaces, and the events it delivers to destinations "
                           "(`webhooks`). Every error has one shape (`Error`).",
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "servers": [{"url": "/", "description": "The hub's base URL (API Gateway stage or `make run`)."}],
        "security": [],
        "tags": [{"name": name} for name in sorted({op.tag for op in operations} | {"events"})],
        "paths": paths,
        "webhooks": _webhooks(refs),
        "components": {
            "schemas": definitions,
            "securitySchemes": {"apiKey": {
                "type": "http", "scheme": "bearer", "bearerFormat": "API key",
                "description": "`Authorization: Bearer <key>`; `hubctl api-key` makes one. Each operation names "
                               "the scope it needs in `x-scopes`."}},
        },
    }


def render(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


# --- pieces --------------------------------------------------------------------------------------


def _models(operations: Iterable[Operation]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    """Every model the operations name: bodies the routes answer with in serialization mode (what
    `model_dump` writes), request bodies in validation mode (what the routes accept)."""
    found: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (m.Error, "serialization"), (ContactEvent, "serialization"), (m.CustomerEventEnvelope, "serialization")]
    for op in operations:
        found += [(reply.model, "serialization") for reply in op.replies if _is_model(reply.model)]
        if op.body is not None:
            found += [(model, "validation") for model in (*op.body.schemas.values(), *op.body.refs) if _is_model(model)]
    return list(dict.fromkeys(found))


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _schemas(operations: Iterable[Operation]) -> tuple[dict, dict]:
    """Components for every model, and each model's reference by (model, mode). A field with a
    default is not required (pydantic's default in both modes): the timeline, for one, leaves out
    delivery logs."""
    models = _models(operations)
    mapping, top = models_json_schema(models, ref_template=REF)
    return top.get("$defs", {}), dict(mapping)


def _schema(value: Any, refs: dict, mode: JsonSchemaMode = "serialization") -> dict:
    return refs[(value, mode)] if _is_model(value) else value


def _operation(op: Operation, refs: dict) -> dict:
    result: dict[str, Any] = {
        "operationId": op.operation_id,
        "tags": [op.tag],
        "summary": op.summary,
        "responses": _responses(op, refs),
    }
    if op.description:
        result["description"] = op.description
    if op.any_key:
        result["security"] = [{"apiKey": []}]
        result["x-scopes"] = []
    elif op.scope is None:
        result["security"] = []
    else:
        result["security"] = [{"apiKey": []}]
        result["x-scopes"] = [op.scope]
        result["description"] = f"{op.description}\n\nScope: `{op.scope}`.".strip()
    parameters = [_parameter(op.path_params.get(name) or Param(name, name), "path", required=True)
                  for name in _PATH_PARAM.findall(op.path)]
    parameters += [_parameter(param, "query") for param in op.query]
    parameters += [_parameter(param, "header") for param in op.headers]
    if parameters:
        result["parameters"] = parameters
    if op.body is not None:
        body: dict[str, Any] = {"required": op.body.required,
                                "content": {media: {"schema": _schema(schema, refs, "validation")}
                                            for media, schema in op.body.schemas.items()}}
        if op.body.description:
            body["description"] = op.body.description
        result["requestBody"] = body
    return result


def _parameter(param: Param, where: str, *, required: bool | None = None) -> dict:
    return {"name": param.name, "in": where, "required": param.required if required is None else required,
            "description": param.description, "schema": param.schema}


def _responses(op: Operation, refs: dict) -> dict:
    responses: dict[str, Any] = {}
    for reply in op.replies:
        response: dict[str, Any] = {"description": reply.description}
        if reply.media is not None:
            schema = _schema(reply.model, refs) if reply.model is not None else {}
            response["content"] = {reply.media: {"schema": schema}}
        if reply.headers:
            response["headers"] = {name: {"schema": {"type": "string"}} for name in reply.headers}
        responses[str(reply.status)] = response
    for status in op.errors:
        responses[str(status)] = {"description": _STATUS_TEXT[status],
                                  "content": {"application/json": {"schema": refs[(m.Error, "serialization")]}}}
    return responses


def _webhooks(refs: dict) -> dict:
    """One webhook per delivered event type: the signed POST (Standard Webhooks) a `webhook`
    destination receives; the outbox and EventBridge carry the same envelope."""
    headers = [
        {"name": "webhook-id", "in": "header", "required": True, "schema": {"type": "string"},
         "description": "The delivery id: stable across retries, so dedupe on it."},
        {"name": "webhook-timestamp", "in": "header", "required": True, "schema": {"type": "string"},
         "description": "Unix seconds; refuse deliveries outside your replay window."},
        {"name": "webhook-signature", "in": "header", "required": True, "schema": {"type": "string"},
         "description": "`v1,<base64 HMAC-SHA256 of id.timestamp.body>`, space-separated during key rotation."},
    ]
    responses = {"2XX": {"description": "Accepted."},
                 "4XX": {"description": "Refused: dead-lettered with your response as the reason, never retried "
                                        "(except 408 and 429, which are retried honouring `Retry-After`)."},
                 "5XX": {"description": "Retried with backoff, then dead-lettered."}}
    webhooks = {}
    for event_type in (*CONTACT_EVENT_TYPES, *CUSTOMER_EVENT_TYPES):
        envelope = ContactEvent if event_type in CONTACT_EVENT_TYPES else m.CustomerEventEnvelope
        schema = {"allOf": [refs[(envelope, "serialization")], {"type": "object", "properties": {"type": {"const": event_type}}}]}
        webhooks[event_type] = {"post": {
            "operationId": f"event_{event_type.replace('.', '_')}",
            "tags": ["events"],
            "summary": f"`{event_type}` delivered to a destination",
            "parameters": headers,
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": responses,
        }}
    return webhooks
