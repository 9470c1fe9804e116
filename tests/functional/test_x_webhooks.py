"""X through HTTP: the CRC GET, and a signed DM POST becoming a contact on the embedded hub."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import quote, urlencode

import pytest

from chalicelib.local.runtime import EmbeddedRuntime
from chalicelib.settings import Settings
from tests.functional.conftest import API_KEY, RunningHub
from tests.support.fixtures import load

SECRET = "test_x_consumer_secret"
US, CUSTOMER = "3001969357", "1221334455667788"

CONFIG = """
channels:
  x:
    consumer_secrets: ["{secret}"]
    user_ids: ["{us}"]
destinations:
  - name: outbox
    type: outbox
    path: outbox.jsonl
    case_events: false
api_keys:
  - name: tests
    sha256: {key_hash}
    scopes: [customers:read, customers:write, customers:erase, operations, messages:send]
"""


@pytest.fixture
def hub(tmp_path):
    config = tmp_path / "hub.yaml"
    config.write_text(CONFIG.format(secret=SECRET, us=US, key_hash=hashlib.sha256(API_KEY.encode()).hexdigest()))
    settings = Settings(config_path=str(config), data_dir=str(tmp_path / "data"), port=0, local_workers=1)
    runtime = EmbeddedRuntime(settings, port=0).start()
    try:
        yield RunningHub(runtime, None, tmp_path / "data")
    finally:
        runtime.stop()


def expected_crc(token: str) -> str:
    return "sha256=" + base64.b64encode(hmac.new(SECRET.encode(), token.encode(), hashlib.sha256).digest()).decode()


def test_crc_get_answers_with_the_response_token(hub):
    token = "9b4507b3-9040-4669-9ca3-6b94edb50553"
    answer = hub.request("GET", "/webhooks/x?" + urlencode({"crc_token": token}))
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == {"response_token": expected_crc(token)}
    assert answer.json()["response_token"] == "sha256=NwDKttF8Uq+AQpU/lSLhSVZhO9/psNSublF1+Rlo5pg="


@pytest.mark.parametrize("query", ["", "?nonce=1", "?crc_token=%7B%22a%22%3A1%7D"])
def test_crc_get_without_a_usable_token_is_400(hub, query):
    assert hub.request("GET", "/webhooks/x" + query).status == 400


def test_dm_becomes_a_contact_and_a_retry_does_not_duplicate_it(hub):
    fixture = load("x", "dm_text")
    first = hub.post("/webhooks/x", fixture.body, fixture.headers)
    second = hub.post("/webhooks/x", fixture.body, fixture.headers)
    assert first.status == second.status == 200
    hub.wait_for(lambda: hub.settled() and hub.outbox(), message="DM processed and delivered")

    [delivered] = hub.outbox()
    contact = delivered["data"]["contact"]
    assert (contact["channel"], contact["provider"], contact["text"]) == ("x", "x", "Hi! Is my refund processed?")
    assert contact["conversation_key"] == f"x:{US}:{CUSTOMER}"
    customers = hub.api(f"/v1/customers?identifier={quote('x:' + CUSTOMER)}").json()["data"]
    assert len(customers) == 1
    assert customers[0]["attributes"]["name"]["value"] == "Ana Souza"
    assert len(hub.api(f"/v1/customers/{customers[0]['id']}/contacts").json()["data"]) == 1


def test_unsigned_or_forged_posts_are_401_and_echoes_typing_and_mentions_are_acknowledged(hub):
    fixture = load("x", "dm_text")
    unsigned = {k: v for k, v in fixture.headers.items() if k != "x-twitter-webhooks-signature"}
    assert hub.post("/webhooks/x", fixture.body, unsigned).status == 401
    forged = json.dumps({"crc_token": "x"}).encode()
    assert hub.post("/webhooks/x", forged, fixture.headers).status == 401
    for name in ("dm_echo", "typing", "tweet_mention"):
        other = load("x", name)
        assert hub.post("/webhooks/x", other.body, other.headers).status == 200
    receipt = load("x", "read_receipt")
    assert hub.post("/webhooks/x", receipt.body, receipt.headers).status == 200
    hub.wait_for(hub.settled, message="queues drained")
    assert hub.outbox() == []
    assert [s.status for s in hub.hub.store.list_statuses("x", "1950000000000000005")] == ["read"]
