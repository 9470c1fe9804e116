"""Answering from Genesys Cloud, through HTTP on the embedded hub: the customer's WhatsApp message
becomes an Open Messaging inbound message from the hub customer id; the agent's answer comes back
on the integration's outbound webhook addressed to that id, and the customer receives it on
WhatsApp, quoting their message. A Genesys fake (`Receiver`) plays the Platform API.

Genesys cannot do everything the ticket vendors do, and these tests say so: its webhook has no
internal notes (nothing to test), and no conversation end or status (a Genesys callback never
closes or reopens the case). A refused reply is told to the agent as a `Failed` receipt for the
agent's message, Genesys's way of showing a message as not delivered."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from tests.functional.conftest import API_KEY
from tests.functional.two_way import (
    CUSTOMER_WA_ID,
    INBOUND_WAMID,
    answer_whatsapp_sends,
    case_events,
    case_view,
    customer_writes_whatsapp,
    outbound_contacts,
    post_callback,
    requests_of,
    settle,
    two_way_hub,
    wait_ticket,
    wait_whatsapp_sends,
    whatsapp_sends,
)
from tests.support.fixtures import load
from tests.support.receiver import Answer, Receiver

SECRET = "gc-webhook-secret-2026"
INTEGRATION_ID = "6f3e2d1c-0b9a-4877-8665-5443322110ff"
INBOUND = f"/api/v2/conversations/messages/{INTEGRATION_ID}/inbound/open/message"
RECEIPT = f"/api/v2/conversations/messages/{INTEGRATION_ID}/inbound/open/receipt"
#: One answer serves the token request, the inbound messages and the receipts.
GENESYS_ANSWER = Answer(202, json.dumps({"access_token": "gc-token", "token_type": "bearer", "expires_in": 86399,
                                         "id": "2d8f3c5a4b6e7f8091a2b3c4d5e6f708"}).encode(),
                        {"content-type": "application/json"})


@pytest.fixture
def provider():
    with Receiver() as server:
        yield server


@pytest.fixture
def genesys():
    with Receiver() as server:
        server.default = GENESYS_ANSWER
        yield server


def destination(genesys: Receiver) -> dict:
    base = genesys.url.rsplit("/hooks", 1)[0]
    return {
        "name": "genesys", "type": "genesys", "mode": "open_messaging", "base_url": base,
        "auth": {"type": "oauth2_client_credentials", "token_url": base + "/oauth/token", "client_id": "gc-client",
                 "client_secret": "gc-client-secret", "client_auth": "basic"},
        "integration_id": INTEGRATION_ID,
        "callbacks": {"secrets": [SECRET]},
    }


def agent_message(customer_id: str, name: str = "agent_text", **changes) -> tuple[bytes, dict]:
    """The stored Genesys message, addressed to `customer_id` and written a minute after the
    customer's message, signed as Genesys signs (base64 HMAC-SHA256 of the body)."""
    message = json.loads(load("callbacks/genesys", name).body)
    message["channel"]["to"]["id"] = customer_id
    message["channel"]["time"] = "2026-01-01T00:01:00.000Z"
    message.update(changes)
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    signature = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={signature}"}


def start(hub) -> dict:
    """The customer writes on WhatsApp; the case's Genesys reference is the customer id."""
    inbound = customer_writes_whatsapp(hub)
    assert wait_ticket(hub, inbound["case_id"], "genesys") == inbound["customer_id"]
    return inbound


def test_an_agents_answer_reaches_the_customer_on_whatsapp_once_however_often_genesys_retries(
        tmp_path, receiver, provider, genesys):
    with two_way_hub(tmp_path, receiver, provider, destination(genesys)) as hub:
        inbound = start(hub)
        [sent] = requests_of(genesys, "POST", INBOUND)
        sender = json.loads(sent.body)["channel"]["from"]
        assert (sender["id"], sender["idType"]) == (inbound["customer_id"], "Opaque")
        answer_whatsapp_sends(provider)

        body, headers = agent_message(inbound["customer_id"])
        assert post_callback(hub, "genesys", body, headers).status == 200
        assert post_callback(hub, "genesys", body, headers).status == 200  # Genesys's retry

        [send] = wait_whatsapp_sends(hub, provider)
        assert send["to"] == CUSTOMER_WA_ID and send["context"] == {"message_id": INBOUND_WAMID}
        assert send["text"]["body"].startswith("Guten Tag Frau Schmidt")
        settle(hub)
        assert len(whatsapp_sends(provider)) == 1
        [reply] = outbound_contacts(hub, inbound["customer_id"])
        assert reply["case_id"] == inbound["case_id"]
        assert reply["metadata"]["agent_reply"]["destination"] == "genesys"
        assert reply["metadata"]["agent_reply"]["comment_id"] == "3b0c8e2f5d6a4c1e9f7b2a8d4e6c0f13"
        # The case does not follow Genesys: an answer leaves it open, and nothing is announced.
        assert case_view(hub, inbound["case_id"])["status"] == "open"
        assert case_events(receiver, "case.closed") == []


@pytest.mark.parametrize("name, changes", [
    ("agent_text", {"direction": "Inbound"}),       # the customer's own message, which the hub sent in
    ("inbound_receipt_failed", {}),                 # Genesys's receipt for it
    ("typing_event", {}),                           # the agent typing
])
def test_the_hubs_own_messages_receipts_and_typing_send_nothing(tmp_path, receiver, provider, genesys, name,
                                                                 changes):
    with two_way_hub(tmp_path, receiver, provider, destination(genesys)) as hub:
        inbound = start(hub)
        body, headers = agent_message(inbound["customer_id"], name, **changes)
        assert post_callback(hub, "genesys", body, headers).status == 200
        settle(hub)
        assert whatsapp_sends(provider) == [] and outbound_contacts(hub, inbound["customer_id"]) == []


def test_a_forged_callback_is_refused_and_changes_nothing(tmp_path, receiver, provider, genesys):
    with two_way_hub(tmp_path, receiver, provider, destination(genesys)) as hub:
        inbound = start(hub)
        body, headers = agent_message(inbound["customer_id"])
        forged = body.replace(b"Ein Techniker ist unterwegs", b"Zahlen Sie jetzt hier")
        assert post_callback(hub, "genesys", forged, headers).status == 401
        unsigned = {"Content-Type": "application/json"}
        assert post_callback(hub, "genesys", body, unsigned).status == 401
        settle(hub)
        assert whatsapp_sends(provider) == [] and outbound_contacts(hub, inbound["customer_id"]) == []


def test_a_refused_answer_is_marked_failed_on_the_agents_genesys_message(tmp_path, receiver, provider, genesys):
    with two_way_hub(tmp_path, receiver, provider, destination(genesys)) as hub:
        inbound = start(hub)
        for purpose in ("service", "marketing"):
            consent = hub.request("PUT", f"/v1/customers/{inbound['customer_id']}/consent",
                                  json.dumps({"channel": "whatsapp", "purpose": purpose, "state": "opted_out"}).encode(),
                                  {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
            assert consent.status == 200, consent.body

        body, headers = agent_message(inbound["customer_id"])
        assert post_callback(hub, "genesys", body, headers).status == 200

        [receipt] = hub.wait_for(lambda: requests_of(genesys, "POST", RECEIPT), message="the Failed receipt")
        sent = json.loads(receipt.body)
        assert sent["id"] == "3b0c8e2f5d6a4c1e9f7b2a8d4e6c0f13"
        assert sent["channel"]["to"] == {"id": inbound["customer_id"], "idType": "Opaque"}
        assert (sent["status"], sent["isFinalReceipt"]) == ("Failed", True)
        assert sent["reasons"][0]["code"] == "MessageNotAllowed"
        assert sent["reasons"][0]["message"].startswith(
            "Not delivered to the customer on whatsapp: the customer has not consented to service messages")
        settle(hub)
        assert whatsapp_sends(provider) == []
        [refused] = outbound_contacts(hub, inbound["customer_id"])
        assert refused["status"] == "failed"
