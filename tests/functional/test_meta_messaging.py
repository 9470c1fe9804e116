"""Messenger and Instagram through HTTP on the running hub: a customer's message becomes a contact
on a customer with a page-scoped identifier, receipts become status events, our echoes nothing;
and `hubctl simulate --channel` for the adapters that sign like Meta, Twilio and our widget."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from chalicelib.simulate import send_one
from tests.support.fixtures import load

PAGE_ID, PSID = "1234567890", "6789012345678901"
MESSENGER_ID = f"messenger:{PAGE_ID}/{PSID}"


def post(running, name: str):
    fixture = load("meta", name)
    return running.post("/webhooks/meta", fixture.body, fixture.headers)


def test_a_messenger_message_becomes_a_contact_on_a_customer_with_a_messenger_identifier(running):
    response = post(running, "messenger_text")
    running.wait_for(lambda: running.settled() and running.outbox(), message="messenger contact delivered")

    assert (response.status, response.body) == (200, b"EVENT_RECEIVED")
    [line] = running.outbox()
    contact, customer = line["data"]["contact"], line["data"]["customer"]
    assert (contact["channel"], contact["provider"], contact["text"]) == (
        "messenger",
        "meta",
        "Is the store open on Sunday?",
    )
    assert contact["provider_message_id"] == "m_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
    assert {"kind": "messenger", "value": PSID, "scope": PAGE_ID} in [
        {k: i.get(k) for k in ("kind", "value", "scope")} for i in customer["identifiers"]
    ]
    found = running.api(f"/v1/customers?identifier={quote(MESSENGER_ID)}").json()["data"]
    assert [c["id"] for c in found] == [customer["id"]]


def test_a_read_receipt_becomes_a_status_event_and_never_a_contact(running):
    assert post(running, "messenger_read").status == 200
    assert post(running, "messenger_delivery").status == 200
    running.wait_for(running.settled, message="receipts processed")

    assert running.outbox() == []
    store = running.hub.store
    assert [s.status for s in store.list_statuses("meta", f"watermark:{PAGE_ID}:{PSID}:1767225600450")] == ["read"]
    assert [s.status for s in store.list_statuses("meta", "m_Out000000000000000000000000001")] == ["delivered"]
    assert running.hub.counters.total("StatusesRecorded", stage="process") == 3


def test_echoes_are_acknowledged_and_counted_but_make_nothing(running):
    response = post(running, "messenger_echo")
    running.wait_for(running.settled, message="echo settled")

    assert (response.status, response.body) == (200, b"EVENT_RECEIVED")
    assert running.hub.counters.total("EventsEnqueued", provider="meta") == 0, "nothing was queued"
    assert running.outbox() == []
    assert running.hub.counters.total("EventsIgnored", provider="meta") == 1


def test_a_retried_messenger_webhook_makes_one_contact_and_instagram_its_own_customer(running):
    for name in ("messenger_quick_reply", "messenger_quick_reply", "instagram_story_reply"):
        assert post(running, name).status == 200
    running.wait_for(lambda: running.settled() and len(running.outbox()) == 2, message="two contacts")
    running.wait_for(running.settled, message="retry processed")

    messenger, instagram = running.outbox()
    assert messenger["data"]["contact"]["metadata"]["reply_id"] == "TRACK_ORDER"
    assert instagram["data"]["contact"]["channel"] == "instagram"
    assert instagram["data"]["contact"]["text"] == "¡Me encanta! ¿Lo tienen en azul?"
    # A PSID and an IGSID say nothing about each other: two customers.
    assert messenger["data"]["customer"]["id"] != instagram["data"]["customer"]["id"]
    assert len(running.outbox()) == 2


def test_a_bsuid_only_whatsapp_user_is_found_by_the_bsuid(running):
    assert post(running, "whatsapp_bsuid_only").status == 200
    running.wait_for(lambda: running.settled() and running.outbox(), message="bsuid contact")

    customer = running.outbox()[0]["data"]["customer"]
    identifiers = [f"{i['kind']}:{i['value']}" for i in customer["identifiers"]]
    assert identifiers == ["whatsapp_user:BR.1502576394655843"]
    found = running.api(f"/v1/customers?identifier={quote('whatsapp_user:BR.1502576394655843')}").json()["data"]
    assert [c["id"] for c in found] == [customer["id"]]


@pytest.mark.parametrize(("channel", "expected"), [("meta", "whatsapp"), ("twilio", "sms"), ("webchat", "webchat")])
def test_hubctl_simulate_channel_sends_a_request_the_hub_accepts(running, tmp_path, capsys, channel, expected):
    code = send_one(
        base_url=running.url, config_path=str(tmp_path / "hub.yaml"), channel=channel,
        phone="+4917612345678", email="jana@example.com", text="Hallo, wo bleibt mein Paket?",
    )
    running.wait_for(lambda: running.settled() and running.outbox(), message=f"{channel} contact")

    assert code == 0
    assert "→ 20" in capsys.readouterr().out
    contact = running.outbox()[0]["data"]["contact"]
    assert (contact["channel"], contact["text"]) == (expected, "Hallo, wo bleibt mein Paket?")
    found = running.api(f"/v1/customers?identifier={quote('phone:+4917612345678')}").json()["data"]
    assert len(found) == 1
