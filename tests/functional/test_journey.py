"""End to end through HTTP: a signed provider webhook in, a resolved contact out at the destinations."""

from __future__ import annotations

from urllib.parse import quote

import time_machine
from standardwebhooks import Webhook

from tests.functional.conftest import WEBHOOK_SECRET
from tests.support.fixtures import load


def test_twilio_sms_becomes_a_contact_delivered_to_every_destination(running):
    fixture = load("twilio", "sms_text")

    response = running.post(fixture.path, fixture.body, fixture.headers)

    assert response.status == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert b"<Response></Response>" in response.body
    running.wait_for(lambda: running.settled() and len(running.receiver.requests) == 1, message="delivery")

    [line] = running.outbox()
    contact = line["data"]["contact"]
    assert line["type"] == "contact.created"
    assert contact["channel"] == "sms"
    assert contact["provider_message_id"] == "SM11111111111111111111111111111111"
    assert contact["text"] == "Where is my order #1042?"
    assert contact["sender"]["identifiers"] == [{"kind": "phone", "value": "+14155550101", "scope": None}]
    assert line["data"]["customer"]["id"] == contact["customer_id"]
    assert line["data"]["case"]["id"] == contact["case_id"]

    # The signed webhook verifies with the Standard Webhooks reference library.
    [request] = running.receiver.requests
    with time_machine.travel(int(request.headers["webhook-timestamp"]), tick=False):
        payload = Webhook(WEBHOOK_SECRET).verify(request.body, request.headers)
    assert payload["data"]["contact"]["id"] == contact["id"]
    assert request.headers["webhook-id"].startswith("dlv_")

    api = running.api(f"/v1/contacts/{contact['id']}").json()
    assert {d["destination"]: d["status"] for d in api["deliveries"]} == {"crm": "delivered", "outbox": "delivered"}
    assert api["routing"]["destinations"] == ["outbox", "crm"]
    found = running.api("/v1/customers?identifier=" + quote("phone:+14155550101")).json()
    assert [c["id"] for c in found["data"]] == [contact["customer_id"]]
