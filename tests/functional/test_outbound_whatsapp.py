"""WhatsApp Cloud API through HTTP on the embedded hub: the customer's message (stored signed
fixture), the reply quoting it, Meta's signed statuses (a late `delivered` after `read` stays
`read`), and the 24-hour customer service window: refused free text, a template, the fallback."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.functional.conftest import META_TOKEN, WHATSAPP_NUMBER_ID
from tests.functional.outbound import (
    accepted,
    contact,
    inbound_contact,
    meta_signed,
    outbound_hub,
    requests_to,
    send,
    statuses,
    wait_requests,
    wait_status,
    whatsapp_accepted,
    whatsapp_status,
)
from tests.support.fakes import Clock
from tests.support.fixtures import load
from tests.support.receiver import Receiver

#: tests/fixtures/meta/whatsapp_text: written at 2026-01-01T00:00:00Z (`timestamp` 1767225600).
WRITTEN = datetime(2026, 1, 1, 0, 0, tzinfo=timezone.utc)
INBOUND_WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQUVCMDAwMDAwMDAwMDAwMD1A="
OUTBOUND_WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI0QUFCQ0RFRjAxMjM0NTY3OAA="
MESSAGES = f"/v23.0/{WHATSAPP_NUMBER_ID}/messages"


@pytest.fixture
def provider():
    with Receiver() as server:
        yield server


def customer_writes(running) -> dict:
    fixture = load("meta", "whatsapp_text")
    assert running.post(fixture.path, fixture.body, fixture.headers).status == 200
    return inbound_contact(running, INBOUND_WAMID)


def hub_at(tmp_path, receiver, provider, clock, **extra):
    return outbound_hub(tmp_path, receiver, provider, clock=clock, extra=extra or None)


def test_a_whatsapp_reply_quotes_the_customer_and_a_late_delivered_after_read_stays_read(tmp_path, receiver, provider):
    # Sent half a minute after the customer wrote, before the stored status reports (00:01, 00:02, 00:03).
    clock = Clock(WRITTEN + timedelta(seconds=30))
    with hub_at(tmp_path, receiver, provider, clock) as hub:
        inbound = customer_writes(hub)
        provider.script.append(whatsapp_accepted(OUTBOUND_WAMID))

        data = accepted(hub, {"to": {"case_id": inbound["case_id"]}, "channel": "reply", "text": "Das kostet 12 €."})

        assert (data["channel"], data["provider"], data["account"], data["to"]) == (
            "whatsapp", "meta", WHATSAPP_NUMBER_ID, "16505551234")
        [request] = wait_requests(hub, provider, "/messages")
        assert (request.method, request.path) == ("POST", MESSAGES)
        assert request.headers["authorization"] == f"Bearer {META_TOKEN}"
        assert json.loads(request.body) == {
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234",
            "context": {"message_id": INBOUND_WAMID}, "type": "text",
            "text": {"body": "Das kostet 12 €.", "preview_url": False}}
        assert wait_status(hub, data["id"], "sent")["provider_message_id"] == OUTBOUND_WAMID

        # Meta's stored delivered status first (signed with the app secret), then read, then a late delivered.
        fixture = load("meta", "whatsapp_status_delivered")
        assert hub.post(fixture.path, fixture.body, fixture.headers).status == 200
        wait_status(hub, data["id"], "delivered")
        body, headers = meta_signed(whatsapp_status(OUTBOUND_WAMID, "read", at=1767225720))
        assert hub.post("/webhooks/meta", body, headers).status == 200
        wait_status(hub, data["id"], "read")
        body, headers = meta_signed(whatsapp_status(OUTBOUND_WAMID, "delivered", at=1767225780))
        assert hub.post("/webhooks/meta", body, headers).status == 200
        hub.wait_for(hub.settled, message="the late status processed")

        found = contact(hub, data["id"])
        assert found["status"] == "read"
        assert statuses(found)[:4] == ["queued", "sent", "delivered", "read"]
        assert found["case_id"] == inbound["case_id"]


def test_free_text_after_24_hours_is_refused_and_nothing_is_queued(tmp_path, receiver, provider):
    clock = Clock(WRITTEN)
    with hub_at(tmp_path, receiver, provider, clock) as hub:
        inbound = customer_writes(hub)
        clock.advance(timedelta(hours=24, minutes=1).total_seconds())

        refused = send(hub, {"to": {"case_id": inbound["case_id"]}, "text": "Sind Sie noch da?"})

        assert refused.status == 422, refused.body
        error = refused.json()["error"]
        assert error["code"] == "outside_service_window"
        assert hub.hub.outbound_queue.depth() == 0
        assert requests_to(provider, "/messages") == []


def test_a_template_goes_out_after_24_hours(tmp_path, receiver, provider):
    clock = Clock(WRITTEN)
    with hub_at(tmp_path, receiver, provider, clock) as hub:
        inbound = customer_writes(hub)
        clock.advance(timedelta(hours=30).total_seconds())
        provider.script.append(whatsapp_accepted(OUTBOUND_WAMID))

        data = accepted(hub, {"to": {"case_id": inbound["case_id"]},
                              "template": {"name": "case_update", "language": "de", "parameters": ["Jana"]}})

        [request] = wait_requests(hub, provider, "/messages")
        sent = json.loads(request.body)
        assert sent["type"] == "template" and sent["to"] == "16505551234"
        assert sent["template"] == {"name": "case_update", "language": {"policy": "deterministic", "code": "de"},
                                    "components": [{"type": "body", "parameters": [{"type": "text", "text": "Jana"}]}]}
        assert "text" not in sent
        assert wait_status(hub, data["id"], "sent")["metadata"]["template"]["name"] == "case_update"


def test_the_configured_fallback_template_goes_instead_of_late_free_text(tmp_path, receiver, provider):
    clock = Clock(WRITTEN)
    fallback = {"channels": {"meta": {"whatsapp": {"numbers": {WHATSAPP_NUMBER_ID: {
        "fallback_template": {"name": "reopen_conversation", "language": "de"}}}}}}}
    with hub_at(tmp_path, receiver, provider, clock, **fallback) as hub:
        inbound = customer_writes(hub)
        clock.advance(timedelta(hours=25).total_seconds())
        provider.script.append(whatsapp_accepted(OUTBOUND_WAMID))

        data = accepted(hub, {"to": {"case_id": inbound["case_id"]}, "text": "Ihr Techniker kommt morgen."})

        [request] = wait_requests(hub, provider, "/messages")
        sent = json.loads(request.body)
        assert sent["type"] == "template"
        assert sent["template"]["name"] == "reopen_conversation"
        assert "Ihr Techniker" not in request.body.decode()
        assert wait_status(hub, data["id"], "sent")["metadata"]["template"]["name"] == "reopen_conversation"


def test_a_conversation_the_business_starts_on_whatsapp_needs_a_template(tmp_path, receiver, provider):
    clock = Clock(WRITTEN)
    with hub_at(tmp_path, receiver, provider, clock) as hub:
        sms = load("twilio", "sms_text")
        assert hub.post(sms.path, sms.body, sms.headers).status == 200
        customer_id = hub.wait_for(lambda: _customer_by_sms(hub), message="the SMS customer")
        body = {"to": {"customer_id": customer_id}, "channel": "whatsapp", "provider": "meta"}

        refused = send(hub, {**body, "text": "Hallo!"})
        provider.script.append(whatsapp_accepted(OUTBOUND_WAMID))
        data = accepted(hub, {**body, "template": {"name": "case_update", "language": "de", "parameters": ["Jana"]}})

        assert refused.status == 422 and refused.json()["error"]["code"] == "template_required"
        [request] = wait_requests(hub, provider, "/messages")
        phone = contact(hub, data["id"])["metadata"]["to"]
        assert json.loads(request.body)["to"] == phone and phone.isdigit()
        assert json.loads(request.body)["type"] == "template"


def _customer_by_sms(hub) -> str | None:
    from urllib.parse import parse_qs

    sender = parse_qs(load("twilio", "sms_text").body.decode())["From"][0]
    found = hub.api(f"/v1/customers?identifier=phone:{sender.replace('+', '%2B')}").json()["data"]
    if not found or not hub.api(f"/v1/customers/{found[0]['id']}/contacts").json()["data"]:
        return None
    return found[0]["id"]


def test_a_template_that_is_not_configured_is_refused_naming_the_field(tmp_path, receiver, provider):
    clock = Clock(WRITTEN)
    with hub_at(tmp_path, receiver, provider, clock) as hub:
        inbound = customer_writes(hub)
        clock.advance(timedelta(hours=30).total_seconds())

        refused = send(hub, {"to": {"case_id": inbound["case_id"]},
                             "template": {"name": "no_such_template", "language": "de"}})

        assert refused.status == 422, refused.body
        error = refused.json()["error"]
        assert error["code"] == "invalid_message"
        assert any(field.startswith("template") for field in error["detail"]["fields"])
        assert hub.hub.outbound_queue.depth() == 0 and requests_to(provider, "/messages") == []
