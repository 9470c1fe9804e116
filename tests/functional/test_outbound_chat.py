"""The chat channels' round trips through HTTP on the embedded hub: the customer's stored, signed
webhook, `POST /v1/messages` with `channel: reply`, and the exact request the provider fake gets:
Slack's chat.postMessage in the customer's thread, Telegram's sendMessage replying to the
customer's message, X's DM to the participant, and Messenger's Send API (then Messenger's signed
delivery report). Slack, Telegram and X send no delivery reports for bot messages: their
contacts end `sent`."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from slack_sdk.signature import SignatureVerifier

from tests.functional.outbound import (
    accepted,
    inbound_contact,
    json_answer,
    outbound_hub,
    statuses,
    wait_requests,
    wait_status,
)
from tests.support.fakes import Clock
from tests.support.fixtures import FIXTURES, load
from tests.support.receiver import Answer, Receiver

SLACK_SECRET = "test_slack_signing_secret"
SLACK_TOKEN = "xoxb-test-bot-token"
TELEGRAM_SECRET = "test-telegram-secret_01"
TELEGRAM_TOKEN = "7000000001:AAtest-bot-token_0123456789abcdefghi"
X_SECRET = "test_x_consumer_secret"
X_TOKEN = "test-x-oauth2-user-token"
PAGE_TOKEN = "test-page-access-token"


@pytest.fixture
def provider():
    with Receiver() as server:
        yield server


def stored_answer(provider: str, name: str) -> Answer:
    meta = json.loads((FIXTURES / provider / "send" / f"{name}.json").read_text())
    return Answer(meta["status"], (FIXTURES / provider / "send" / f"{name}.body").read_bytes(), meta["headers"])


def slack_headers(body: bytes) -> dict[str, str]:
    """Signed now with slack_sdk, an independent signer."""
    timestamp = str(int(time.time()))
    return {"Content-Type": "application/json", "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=timestamp, body=body)}


def test_slack_answers_in_the_customers_thread(tmp_path, receiver, provider):
    slack = {"signing_secrets": [SLACK_SECRET], "app_id": "A0HUB0001", "bot_tokens": {"T0HUB0001": [SLACK_TOKEN]},
             "api_base_url": provider.url.split("/hooks")[0]}
    with outbound_hub(tmp_path, receiver, provider, slack=slack) as hub:
        body = load("slack", "shared_channel_thread").body
        assert hub.post("/webhooks/slack", body, slack_headers(body)).status == 200
        inbound = inbound_contact(hub, "C0SHARED1:1767225600.000300")
        provider.script.append(json_answer({"ok": True, "channel": "C0SHARED1", "ts": "1767225700.000400"}))

        data = accepted(hub, {"to": {"case_id": inbound["case_id"]}, "channel": "reply", "text": "Sie kommt <morgen> & heil."})

        assert (data["channel"], data["provider"], data["account"], data["to"]) == ("slack", "slack", "T0HUB0001", "C0SHARED1")
        [request] = wait_requests(hub, provider, "/api/chat.postMessage")
        assert request.method == "POST"
        assert request.headers["authorization"] == f"Bearer {SLACK_TOKEN}"
        assert json.loads(request.body) == {"channel": "C0SHARED1", "text": "Sie kommt &lt;morgen&gt; &amp; heil.",
                                            "thread_ts": "1767225500.000100"}
        sent = wait_status(hub, data["id"], "sent")
        assert sent["provider_message_id"] == "C0SHARED1:1767225700.000400"
        assert sent["case_id"] == inbound["case_id"]


def test_telegram_replies_to_the_customers_message(tmp_path, receiver, provider):
    telegram = {"secret_tokens": [TELEGRAM_SECRET], "bot_id": 7000000001, "bot_username": "acme_support_bot",
                "bot_tokens": [TELEGRAM_TOKEN], "api_base_url": provider.url.split("/hooks")[0]}
    with outbound_hub(tmp_path, receiver, provider, telegram=telegram) as hub:
        update = load("telegram", "text")
        assert hub.post("/webhooks/telegram", update.body, update.headers).status == 200
        inbound = inbound_contact(hub, "7000000001:912345678")
        provider.script.append(stored_answer("telegram", "ok"))

        data = accepted(hub, {"to": {"case_id": inbound["case_id"]}, "text": "Olá Ana, how can we help?"})

        assert (data["channel"], data["provider"], data["to"]) == ("telegram", "telegram", "123456789")
        [request] = wait_requests(hub, provider, "/sendMessage")
        assert (request.method, request.path) == ("POST", f"/bot{TELEGRAM_TOKEN}/sendMessage")
        sent_body = json.loads(request.body)
        assert sent_body["chat_id"] == 123456789
        assert sent_body["text"] == "Olá Ana, how can we help?"
        assert sent_body["reply_parameters"] == {"message_id": 4711, "allow_sending_without_reply": True}
        assert wait_status(hub, data["id"], "sent")["provider_message_id"] == "123456789:4714"


def test_x_sends_a_dm_to_the_participant(tmp_path, receiver, provider):
    x = {"consumer_secrets": [X_SECRET], "user_ids": ["3001969357"], "dm_access_tokens": {"3001969357": [X_TOKEN]},
         "api_base_url": provider.url.split("/hooks")[0]}
    with outbound_hub(tmp_path, receiver, provider, x=x) as hub:
        dm = load("x", "dm_text")
        assert hub.post("/webhooks/x", dm.body, dm.headers).status == 200
        inbound = inbound_contact(hub, "1950000000000000001")
        provider.script.append(stored_answer("x", "created"))

        data = accepted(hub, {"to": {"case_id": inbound["case_id"]}, "text": "Yes, refunded yesterday."})

        assert (data["channel"], data["provider"], data["account"], data["to"]) == ("x", "x", "3001969357", "1221334455667788")
        [request] = wait_requests(hub, provider, "/2/dm_conversations")
        assert (request.method, request.path) == ("POST", "/2/dm_conversations/with/1221334455667788/messages")
        assert request.headers["authorization"] == f"Bearer {X_TOKEN}"
        assert json.loads(request.body) == {"text": "Yes, refunded yesterday."}
        assert wait_status(hub, data["id"], "sent")["provider_message_id"] == "1950000000000000099"


def test_messenger_answers_with_response_and_its_delivery_report_delivers_it(tmp_path, receiver, provider):
    # The customer wrote at 00:00:00.001; the delivery report names 00:00:00.600.
    clock = Clock(datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=300))
    meta = {"pages": {"1234567890": {"access_tokens": [PAGE_TOKEN]}}}
    with outbound_hub(tmp_path, receiver, provider, clock=clock, meta=meta) as hub:
        fixture = load("meta", "messenger_text")
        assert hub.post(fixture.path, fixture.body, fixture.headers).status == 200
        inbound = inbound_contact(hub, "m_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789")
        provider.script.append(json_answer({"recipient_id": "6789012345678901",
                                            "message_id": "m_Out000000000000000000000000001"}))

        data = accepted(hub, {"to": {"case_id": inbound["case_id"]}, "text": "Yes, 10:00 to 16:00."})

        assert (data["channel"], data["provider"], data["account"], data["to"]) == (
            "messenger", "meta", "1234567890", "6789012345678901")
        [request] = wait_requests(hub, provider, "/messages")
        assert (request.method, request.path) == ("POST", "/v23.0/1234567890/messages")
        assert request.headers["authorization"] == f"Bearer {PAGE_TOKEN}"
        assert json.loads(request.body) == {"recipient": {"id": "6789012345678901"}, "messaging_type": "RESPONSE",
                                            "message": {"text": "Yes, 10:00 to 16:00."}}
        wait_status(hub, data["id"], "sent")

        delivery = load("meta", "messenger_delivery")
        assert hub.post(delivery.path, delivery.body, delivery.headers).status == 200

        delivered = wait_status(hub, data["id"], "delivered")
        assert statuses(delivered) == ["queued", "sent", "delivered"]
