"""The OpenAPI document: every route described, a valid 3.1 document, the committed copy current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from app import app
from chalicelib.api.openapi.document import (
    CONTACT_EVENT_TYPES,
    CUSTOMER_EVENT_TYPES,
    UnregisteredRouteError,
    build_document,
    check_registry,
    render,
)
from chalicelib.api.openapi.registry import OPERATIONS, Operation, Reply
from chalicelib.hubconfig import SCOPES

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
#: Routes other work adds; in the registry before they are in the route table.


@pytest.fixture(scope="module")
def document() -> dict:
    return build_document(app.routes)


def operations(document: dict):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def test_every_route_of_the_table_has_an_entry_and_every_entry_a_route():
    check_registry(app.routes)


def test_a_route_without_an_entry_is_named():
    routes = {**app.routes, "/v1/new-thing": {"GET": object()}}
    with pytest.raises(UnregisteredRouteError, match=r"route GET /v1/new-thing has no entry"):
        build_document(routes)


def test_an_entry_without_a_route_is_named():
    stray = Operation("GET", "/v1/gone", "gone", "system", "Gone", (Reply(200, "ok"),), ())
    with pytest.raises(UnregisteredRouteError, match=r"registry entry GET /v1/gone names no route"):
        check_registry(app.routes, (*OPERATIONS, stray))


def test_a_path_served_by_another_route_names_a_route_of_the_table():
    served = {op.key: op.served_by for op in OPERATIONS if op.served_by}
    assert served == {("GET", "/console/"): "/console", ("POST", "/webhooks/webchat"): "/webhooks/{provider}",
                      ("GET", "/webhooks/webchat/messages"): "/webhooks/{provider}/{hook}"}
    stray = Operation("GET", "/v1/gone/", "gone", "system", "Gone", (Reply(200, "ok"),), (), served_by="/v1/gone")
    with pytest.raises(UnregisteredRouteError, match=r"registry entry GET /v1/gone/ names no route"):
        check_registry(app.routes, (*OPERATIONS, stray))


def test_operation_ids_are_unique():
    ids = [op.operation_id for op in OPERATIONS]
    assert len(ids) == len(set(ids))


def test_the_document_is_a_valid_openapi_3_1_document(document):
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_the_committed_document_is_the_generated_one(document):
    assert COMMITTED.exists(), "docs/openapi.json is missing: run  bin/hubctl openapi > docs/openapi.json"
    assert COMMITTED.read_text() == render(document), (
        "docs/openapi.json differs from the routes and the registry: run  bin/hubctl openapi > docs/openapi.json")


def test_every_error_status_is_the_one_error_shape(document):
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if status[0] in "45":
                assert response["content"] == {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}, \
                    f"{method} {path} {status}"
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert set(document["components"]["schemas"]["ErrorDetail"]["required"]) == {"code", "message", "detail"}


def test_every_v1_route_but_the_public_ones_names_its_scope(document):
    public = {("GET", "/v1/openapi.json"), ("GET", "/v1/media/{contact_id}/{name}")}
    for method, path, operation in operations(document):
        if (method, path) == ("GET", "/v1/me"):  # any valid key, whatever its scopes
            assert operation["security"] == [{"apiKey": []}] and operation["x-scopes"] == []
            assert "401" in operation["responses"] and "403" not in operation["responses"]
        elif path.startswith("/v1/") and (method, path) not in public:
            assert operation["security"] == [{"apiKey": []}], f"{method} {path}"
            assert len(operation["x-scopes"]) == 1 and operation["x-scopes"][0] in SCOPES, f"{method} {path}"
            assert {"401", "403"} <= operation["responses"].keys(), f"{method} {path}"
        else:
            assert operation["security"] == [], f"{method} {path}"
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_paged_routes_take_limit_and_cursor_and_answer_next_cursor(document):
    schemas = document["components"]["schemas"]
    paged = ["/v1/customers/{customer_id}/contacts", "/v1/exceptions", "/v1/dead-letters", "/v1/unhandled-events"]
    for path in paged:
        operation = document["paths"][path]["get"]
        names = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
        assert {"limit", "cursor"} <= names, path
        page = schemas[operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
        assert {"data", "next_cursor"} <= set(page["required"]), path


def test_webhook_routes_name_the_registered_providers(document):
    from chalicelib.adapters.channels.registry import CHANNELS

    for path in ("/webhooks/{provider}", "/webhooks/{provider}/{hook}"):
        assert set(document["paths"][path]) == {"get", "post", "options"}
        provider = next(p for p in document["paths"][path]["post"]["parameters"] if p["name"] == "provider")
        assert provider["schema"]["enum"] == sorted(CHANNELS)


def test_every_delivered_event_type_is_a_webhook(document):
    assert set(document["webhooks"]) == {*CONTACT_EVENT_TYPES, *CUSTOMER_EVENT_TYPES}
    assert {"contact.created", "message.sent", "customer.merged", "case.closed", "case.sla_breached"} <= set(document["webhooks"])
    created = document["webhooks"]["contact.created"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert created["allOf"][0] == {"$ref": "#/components/schemas/ContactEvent"}
    assert created["allOf"][1]["properties"]["type"] == {"const": "contact.created"}


def test_render_is_stable_and_sorted(document):
    text = render(document)
    assert text == render(json.loads(text))
    assert list(json.loads(text)) == sorted(json.loads(text))


def test_hubctl_openapi_prints_the_document(capsys, document):
    from chalicelib.cli import main

    assert main(["openapi"]) == 0
    assert capsys.readouterr().out == render(document)


def test_the_web_chat_widgets_api_is_in_the_document_with_its_real_shapes(document):
    """A browser client needs the message's and the replies' shapes, not "a provider's payload"."""
    send = document["paths"]["/webhooks/webchat"]["post"]
    replies = document["paths"]["/webhooks/webchat/messages"]["get"]

    assert send["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/WebchatMessage"}
    assert send["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/WebchatAccepted")
    assert {p["name"] for p in replies["parameters"]} >= {"site_id", "visitor_id", "after", "Authorization"}
    assert replies["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/WebchatReplies")
