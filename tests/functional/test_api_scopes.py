"""API key scopes through HTTP: every `/v1` route requires its scope, and only that.

The defect this guards against: any configured API key could erase customers (and run the
operator's routes), because a key was only ever checked for being known.
"""

from __future__ import annotations

import hashlib
import json
import logging

import pytest

from chalicelib.hubconfig import SCOPES, load_config
from tests.functional.conftest import RunningHub, make_config
from tests.functional.test_ingest_edges import twilio_request
from tests.functional.v1_routes import KEYED, ROUTES
from tests.support.receiver import Receiver

LEGACY_KEY = "legacy-read-key"


def key_for(name: str) -> str:
    return f"key-{name}"


def entry(name: str, scopes: list[str] | None) -> str:
    digest = hashlib.sha256(key_for(name).encode()).hexdigest()
    return f"  - name: {name}\n    sha256: {digest}\n" + (f"    scopes: [{', '.join(scopes)}]\n" if scopes is not None else "")


def write_config(path, receiver_url: str, entries: list[str]):
    """The functional tests' configuration with these API keys instead of its own."""
    config = make_config(path, receiver_url)
    text = config.read_text()
    config.write_text(text[: text.index("api_keys:")] + "api_keys:\n" + "".join(entries))
    return config


def call(running: RunningHub, route, key: str):
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return running.request(route.method, route.path, route.body, headers)


def sms_customer(running: RunningHub, sid: str = "SM" + "5" * 32) -> str:
    path, data, headers = twilio_request({
        "MessageSid": sid, "AccountSid": "AC" + "a" * 32, "From": "+16505550100", "To": "+14155550100",
        "Body": "hi", "NumMedia": "0",
    })
    assert running.post(path, data, headers).status == 200
    running.wait_for(lambda: running.settled() and running.outbox(), message="the first contact")
    return running.outbox()[-1]["data"]["customer"]["id"]


@pytest.fixture(scope="module")
def scoped(tmp_path_factory):
    """A hub with, per scope, a key holding every other scope and a key holding only it."""
    tmp_path = tmp_path_factory.mktemp("scopes")
    entries = [entry(f"without-{scope}", [s for s in SCOPES if s != scope]) for scope in SCOPES]
    entries += [entry(f"only-{scope}", [scope]) for scope in SCOPES]
    with Receiver() as receiver:
        config = write_config(tmp_path / "hub.yaml", receiver.url, entries)
        from chalicelib.local.runtime import EmbeddedRuntime
        from chalicelib.settings import Settings

        settings = Settings(config_path=str(config), data_dir=str(tmp_path / "data"), port=0, local_workers=1)
        runtime = EmbeddedRuntime(settings, port=0).start()
        try:
            yield RunningHub(runtime, receiver, tmp_path / "data")
        finally:
            runtime.stop()


@pytest.fixture
def legacy(tmp_path, receiver):
    """A hub whose only key is configured as before scopes existed (no `scopes`)."""
    config = make_config(tmp_path / "hub.yaml", receiver.url)
    text = config.read_text()
    digest = hashlib.sha256(LEGACY_KEY.encode()).hexdigest()
    config.write_text(text[: text.index("api_keys:")] + f"api_keys:\n  - name: legacy\n    sha256: {digest}\n")
    from chalicelib.local.runtime import EmbeddedRuntime
    from chalicelib.settings import Settings

    settings = Settings(config_path=str(config), data_dir=str(tmp_path / "data"), port=0, local_workers=1)
    runtime = EmbeddedRuntime(settings, port=0).start()
    try:
        yield RunningHub(runtime, receiver, tmp_path / "data")
    finally:
        runtime.stop()


def test_the_route_table_lists_every_v1_route():
    from app import app

    served = {(method, path) for path, methods in app.routes.items() if path.startswith("/v1/") for method in methods}

    assert served == {(route.method, route.template) for route in ROUTES}


def test_every_scope_guards_some_route():
    assert {route.scope for route in KEYED} == set(SCOPES)


@pytest.mark.parametrize("route", KEYED, ids=lambda route: route.name)
def test_a_key_with_every_scope_but_the_routes_own_gets_403_naming_it(scoped, route):
    response = call(scoped, route, key_for(f"without-{route.scope}"))

    assert response.status == 403, response.body
    error = json.loads(response.body)["error"]
    assert error["code"] == "insufficient_scope"
    assert error["detail"] == {"required_scope": route.scope}
    assert route.scope in error["message"]


@pytest.mark.parametrize("route", KEYED, ids=lambda route: route.name)
def test_a_key_with_only_the_routes_scope_gets_past_authorization(scoped, route):
    response = call(scoped, route, key_for(f"only-{route.scope}"))

    assert response.status not in (401, 403), response.body
    assert response.status < 500, response.body


@pytest.mark.parametrize("route", KEYED, ids=lambda route: route.name)
def test_an_unknown_key_and_no_key_get_401(scoped, route):
    unknown = call(scoped, route, "not-a-configured-key")
    missing = scoped.request(route.method, route.path, route.body, {"Content-Type": "application/json"})

    assert unknown.status == missing.status == 401
    assert unknown.headers["www-authenticate"] == "Bearer"


def test_a_key_not_granted_erasure_cannot_erase_a_customer(scoped):
    customer_id = sms_customer(scoped)
    headers = {"Authorization": f"Bearer {key_for('without-customers:erase')}"}

    refused = scoped.request("DELETE", f"/v1/customers/{customer_id}", None, headers)
    still_there = scoped.request("GET", f"/v1/customers/{customer_id}", None, headers)

    assert refused.status == 403, refused.body
    assert json.loads(refused.body)["error"]["detail"] == {"required_scope": "customers:erase"}
    assert still_there.status == 200
    scoped.wait_for(scoped.settled, message="queues drained")
    assert not [event for event in scoped.outbox() if event["type"] == "customer.erased"]


def test_a_key_configured_without_scopes_reads_but_cannot_erase_write_or_operate(legacy):
    customer_id = sms_customer(legacy)
    headers = {"Authorization": f"Bearer {LEGACY_KEY}", "Content-Type": "application/json"}

    read = legacy.request("GET", f"/v1/customers/{customer_id}", None, headers)
    erase = legacy.request("DELETE", f"/v1/customers/{customer_id}", None, headers)
    write = legacy.request("PATCH", f"/v1/customers/{customer_id}/attributes",
                           b'{"source": "crm", "attributes": {"tier": "gold"}}', headers)
    operate = legacy.request("GET", "/v1/exceptions", None, headers)

    assert read.status == 200, read.body
    assert erase.status == 403, erase.body
    assert [json.loads(r.body)["error"]["detail"]["required_scope"] for r in (erase, write, operate)] == [
        "customers:erase", "customers:write", "operations"]
    after = legacy.request("GET", f"/v1/customers/{customer_id}", None, headers).json()
    assert after["id"] == customer_id and "tier" not in after["attributes"]


def test_loading_a_key_without_scopes_warns_that_it_may_only_read(tmp_path, caplog):
    config = write_config(tmp_path / "hub.yaml", "http://127.0.0.1:9/", [
        entry("portal", None), entry("crm", ["customers:read", "customers:write"])])

    with caplog.at_level(logging.WARNING, logger="chalicelib.hubconfig"):
        loaded = load_config(config)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "chalicelib.hubconfig"]
    assert len(warnings) == 1
    assert "portal" in warnings[0] and "customers:read" in warnings[0] and "scopes" in warnings[0]
    assert [key.granted for key in loaded.api_keys] == [
        frozenset({"customers:read"}), frozenset({"customers:read", "customers:write"})]
