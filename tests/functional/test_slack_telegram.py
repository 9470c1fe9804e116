"""Slack and Telegram through HTTP on the running hub: a customer's message becomes a contact on
a customer, and the provider's redelivery of it is a duplicate."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest
import yaml
from slack_sdk.signature import SignatureVerifier

from chalicelib.local.runtime import EmbeddedRuntime
from chalicelib.settings import Settings
from tests.functional.conftest import RunningHub, make_config
from tests.support.fixtures import load

SLACK_SECRET = "test_slack_signing_secret"
TELEGRAM_TOKEN = "test-telegram-secret_01"
TELEGRAM_BOT_ID = 7000000001


@pytest.fixture
def hub(tmp_path, receiver):
    """The functional hub of conftest.py with the Slack and Telegram channels added."""
    path = make_config(tmp_path / "hub.yaml", receiver.url)
    config = yaml.safe_load(path.read_text())
    config["channels"]["slack"] = {"signing_secrets": [SLACK_SECRET], "app_id": "A0HUB0001"}
    config["channels"]["telegram"] = {
        "secret_tokens": [TELEGRAM_TOKEN], "bot_id": TELEGRAM_BOT_ID, "bot_username": "acme_support_bot",
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    settings = Settings(config_path=str(path), data_dir=str(tmp_path / "data"), port=0, local_workers=1)
    runtime = EmbeddedRuntime(settings, port=0).start()
    try:
        yield RunningHub(runtime, receiver, tmp_path / "data")
    finally:
        runtime.stop()


def slack_headers(body: bytes, *, at: int | None = None, **extra: str) -> dict[str, str]:
    """Signed now (the hub's clock is real) with slack_sdk, an independent signer."""
    timestamp = str(at if at is not None else int(time.time()))
    signature = SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=timestamp, body=body)
    return {"Content-Type": "application/json", "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature, **extra}  # fmt: skip


def contacts_of(hub: RunningHub, identifier: str) -> tuple[dict, list[dict]]:
    found = hub.api(f"/v1/customers?identifier={quote(identifier)}").json()["data"]
    assert len(found) == 1, f"one customer for {identifier}"
    customer = found[0]
    return customer, hub.api(f"/v1/customers/{customer['id']}/contacts").json()["data"]


def test_slack_dm_becomes_a_contact_and_the_retry_is_a_duplicate(hub):
    challenge = load("slack", "url_verification").body
    handshake = hub.post("/webhooks/slack", challenge, slack_headers(challenge))
    assert (handshake.status, handshake.body) == (200, b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    assert handshake.headers["content-type"].startswith("text/plain")

    dm = load("slack", "dm_text").body
    first = hub.post("/webhooks/slack", dm, slack_headers(dm))
    hub.wait_for(lambda: hub.settled() and hub.outbox(), message="the DM processed")
    retry = hub.post("/webhooks/slack", dm, slack_headers(dm, **{"X-Slack-Retry-Num": "1",
                                                                  "X-Slack-Retry-Reason": "http_timeout"}))  # fmt: skip
    hub.wait_for(hub.settled, message="the retry processed")

    assert (first.status, first.body) == (200, b"")
    assert (retry.status, retry.body) == (200, b"")
    assert len(hub.outbox()) == 1
    contact = hub.outbox()[0]["data"]["contact"]
    assert (contact["channel"], contact["text"]) == ("slack", "Hi, my order hasn't arrived")
    assert contact["provider_message_id"] == "D0HUB0001:1767225599.000100"
    customer, contacts = contacts_of(hub, "slack:T0HUB0001/U0CUST001")
    assert [c["id"] for c in contacts] == [contact["id"]]
    assert customer["id"] == contact["customer_id"]


def test_slack_stale_or_forged_requests_are_401(hub):
    dm = load("slack", "dm_text").body
    stale = hub.post("/webhooks/slack", dm, slack_headers(dm, at=int(time.time()) - 600))
    forged = hub.post("/webhooks/slack", dm.replace(b"arrived", b"arrivee"), slack_headers(dm))
    assert stale.status == forged.status == 401
    assert "replay window" in stale.json()["error"]["message"]
    assert hub.hub.inbound_queue.depth() == 0


def test_telegram_message_becomes_a_contact_and_the_redelivery_is_a_duplicate(hub):
    update = load("telegram", "text")
    first = hub.post("/webhooks/telegram", update.body, update.headers)
    hub.wait_for(lambda: hub.settled() and hub.outbox(), message="the update processed")
    again = hub.post("/webhooks/telegram", update.body, update.headers)
    hub.wait_for(hub.settled, message="the redelivery processed")

    assert (first.status, first.body) == (again.status, again.body) == (200, b"")
    assert len(hub.outbox()) == 1
    contact = hub.outbox()[0]["data"]["contact"]
    assert (contact["channel"], contact["text"]) == ("telegram", "Olá! /start")
    assert contact["provider_message_id"] == f"{TELEGRAM_BOT_ID}:912345678"
    customer, contacts = contacts_of(hub, "telegram:123456789")
    assert [c["id"] for c in contacts] == [contact["id"]]
    assert customer["attributes"]["name"]["value"] == "Ana Souza"


def test_telegram_button_press_is_answered_in_the_ack_and_a_wrong_token_is_401(hub):
    press = load("telegram", "callback_query")
    answered = hub.post("/webhooks/telegram", press.body, press.headers)
    assert answered.status == 200
    assert json.loads(answered.body) == {"method": "answerCallbackQuery", "callback_query_id": "4382bfdwdsb323b2d9"}

    forged = hub.post("/webhooks/telegram", press.body, {**press.headers, "x-telegram-bot-api-secret-token": "guess"})
    assert forged.status == 401
    hub.wait_for(lambda: hub.settled() and hub.outbox(), message="the press processed")
    assert hub.outbox()[0]["data"]["contact"]["content_type"] == "interactive"
