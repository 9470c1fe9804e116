"""`GET /v1/me` (any valid key) and `GET /v1/status` (scope operations) through the embedded hub."""

from __future__ import annotations

import hashlib

import pytest

from tests.functional.conftest import API_KEY, RunningHub, start_hub

READER_KEY = "reader-key"


@pytest.fixture
def hub(tmp_path, receiver):
    keys = [
        {"name": "tests", "sha256": hashlib.sha256(API_KEY.encode()).hexdigest(),
         "scopes": ["customers:read", "customers:write", "customers:erase", "operations", "messages:send"]},
        {"name": "reader", "sha256": hashlib.sha256(READER_KEY.encode()).hexdigest(), "scopes": ["customers:read"]},
    ]
    runtime = start_hub(tmp_path, receiver, extra={"api_keys": keys}).start()
    try:
        yield RunningHub(runtime, receiver, tmp_path / "data")
    finally:
        runtime.stop()


def test_me_names_the_key_and_its_scopes_for_any_valid_key(hub):
    full = hub.api("/v1/me")
    reader = hub.api("/v1/me", key=READER_KEY)

    assert full.status == 200
    assert full.json() == {"name": "tests", "scopes": sorted(
        ["customers:read", "customers:write", "customers:erase", "operations", "messages:send"])}
    assert reader.json() == {"name": "reader", "scopes": ["customers:read"]}


@pytest.mark.parametrize("path", ["/v1/me", "/v1/status"])
def test_a_missing_or_unknown_key_is_a_401_in_the_one_error_shape(hub, path):
    missing = hub.api(path, key=None)
    unknown = hub.api(path, key="not-a-key")

    assert missing.status == unknown.status == 401
    assert missing.json()["error"]["message"] == "missing API key: send Authorization: Bearer <key>"
    assert unknown.json()["error"] == {"code": "unauthorized", "message": "invalid API key", "detail": {}}
    assert unknown.headers["www-authenticate"] == "Bearer"


def test_status_needs_the_operations_scope(hub):
    answer = hub.api("/v1/status", key=READER_KEY)

    assert answer.status == 403
    assert answer.json()["error"]["detail"] == {"required_scope": "operations"}


def test_status_shows_queue_depths_rules_circuits_and_what_waits(hub):
    answer = hub.api("/v1/status")

    assert answer.status == 200, answer.body
    status = answer.json()
    assert (status["runtime"], status["stage"]) == ("embedded", "local")
    queues = {q["name"]: q["depth"] for q in status["queues"]}
    assert set(queues) == {"inbound", "delivery", "delivery dead letters", "outbound", "outbound dead letters",
                           "events", "events dead letters"}
    assert all(isinstance(depth, int) and depth >= 0 for depth in queues.values())
    assert status["rules"]["routing"] == {"version": "inline", "source": "routing.rules"}
    assert status["rules"]["events"]["version"] == "inline"
    assert status["exceptions"] == {"count": 0, "more": False}
    assert status["dead_letters"] == {"count": 0, "more": False}
    # The embedded runtime delivers in this process: its circuits are observed, all closed.
    assert status["circuits"]["open"] == []
