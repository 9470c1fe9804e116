"""Auto-replies through HTTP on the embedded hub: a routing rule's `reply` goes out on the
customer's own conversation through the provider, once per contact, whether the provider retries
its webhook or the hub processes the contact again; the contact records what was sent."""

from __future__ import annotations

import pytest

from tests.functional.outbound import (
    contact,
    form,
    inbound_contact,
    outbound_hub,
    requests_to,
    twilio_created,
    wait_requests,
    wait_status,
)
from tests.support.fixtures import load
from tests.support.receiver import Receiver

ACK = "Danke für Ihre Nachricht! Wir melden uns heute."
ROUTING = {"routing": {
    "templates": {"ack": {"de": ACK}},
    "rules": [{"name": "acknowledge-sms", "when": {"channel": "sms"}, "then": {"reply": "ack", "tags": ["acked"]}}],
}}
SID = "SM11111111111111111111111111111111"


@pytest.fixture
def provider():
    with Receiver() as server:
        yield server


@pytest.fixture
def hub(tmp_path, receiver, provider):
    provider.default = twilio_created("SM" + "a1" * 16)
    with outbound_hub(tmp_path, receiver, provider, extra=ROUTING) as running:
        yield running


def _auto_reply(running, inbound: dict) -> dict:
    [outcome] = inbound["enrichment"]["auto_replies"]
    assert (outcome["rule"], outcome["sent"], outcome["channel"]) == ("acknowledge-sms", True, "sms")
    return wait_status(running, outcome["message_id"], "sent")


def test_a_rules_reply_is_sent_to_the_customer_once_though_twilio_retries_its_webhook(hub, provider):
    fixture = load("twilio", "sms_text")

    assert hub.post(fixture.path, fixture.body, fixture.headers).status == 200
    inbound = inbound_contact(hub, SID)
    # Twilio retries the same webhook (its own retry, same MessageSid).
    assert hub.post(fixture.path, fixture.body, fixture.headers).status == 200
    hub.wait_for(hub.settled, message="the retry processed")

    reply = _auto_reply(hub, inbound)
    assert reply["direction"] == "outbound" and reply["case_id"] == inbound["case_id"]
    assert reply["metadata"]["origin"] == "routing:acknowledge-sms"
    [request] = wait_requests(hub, provider, "/Messages.json")
    assert form(request)["Body"] == [ACK]
    assert form(request)["To"] == ["+14155550101"]
    hub.wait_for(lambda: hub.hub.outbound_queue.depth() == 0, message="the outbound queue drained")
    assert len(requests_to(provider, "/Messages.json")) == 1


def test_a_contact_processed_again_after_a_crash_sends_its_reply_once_and_it_stays_sent(hub, provider):
    store = hub.hub.store
    commit_contact, crashes = store.commit_contact, []

    def crash_once(*args, **kwargs):
        # The process worker dies after queueing the auto-reply and before committing the contact.
        if not crashes:
            crashes.append(True)
            raise RuntimeError("the process worker crashed")
        return commit_contact(*args, **kwargs)

    store.commit_contact = crash_once
    # The crashed receive comes back once its visibility timeout ends, as on SQS.
    hub.hub.inbound_queue.visibility_timeout = 1
    fixture = load("twilio", "sms_text")

    assert hub.post(fixture.path, fixture.body, fixture.headers).status == 200
    inbound = inbound_contact(hub, SID)

    assert crashes == [True]
    reply = _auto_reply(hub, inbound)
    hub.wait_for(lambda: hub.settled() and hub.hub.outbound_queue.depth() == 0, message="everything processed")
    assert len(requests_to(provider, "/Messages.json")) == 1
    # The second processing found the reply already sent and left it alone (it used to put it
    # back to `queued`, where it stayed: the queue had already taken that message id).
    final = contact(hub, reply["id"])
    assert final["status"] == "sent"
    assert [c["status"] for c in final["status_history"]] == ["queued", "sent"]


def test_a_stop_message_gets_no_auto_reply_and_the_contact_says_why(hub, provider):
    from tests.functional.test_outbound_twilio import sms

    first = sms(hub, 1, "Wo ist meine Bestellung?")
    hub.wait_for(lambda: hub.hub.outbound_queue.depth() == 0 and len(requests_to(provider, "/Messages.json")) == 1,
                 message="the first contact's auto-reply")

    stop = sms(hub, 2, "STOP")

    assert first["enrichment"]["auto_replies"][0]["sent"] is True
    [refused] = stop["enrichment"]["auto_replies"]
    assert (refused["rule"], refused["sent"], refused["reason"]) == ("acknowledge-sms", False, "consent_refused")
    hub.wait_for(hub.settled, message="everything processed")
    assert hub.hub.outbound_queue.depth() == 0
    assert len(requests_to(provider, "/Messages.json")) == 1


def test_each_contacts_auto_reply_goes_on_its_own_channel_even_when_another_channel_spoke_later(
        tmp_path, receiver, provider):
    """Meta redelivers a WhatsApp message an hour late (its `timestamp` is when the customer
    wrote); meanwhile the customer's SMS arrived. The WhatsApp message's reply goes on WhatsApp."""
    from datetime import datetime, timezone

    from tests.functional.outbound import whatsapp_accepted
    from tests.functional.test_outbound_twilio import sms
    from tests.support.fakes import Clock

    routing = {"routing": {"templates": {"ack": {"de": ACK}}, "rules": [{"name": "acknowledge", "then": {"reply": "ack"}}]}}
    clock = Clock(datetime(2026, 1, 1, 0, 50, tzinfo=timezone.utc))
    with outbound_hub(tmp_path, receiver, provider, clock=clock, extra=routing) as running:
        first = sms(running, 1, "Hallo, kurze Frage", phone="+16505551234")
        running.wait_for(lambda: len(requests_to(provider, "/Messages.json")) == 1, message="the SMS auto-reply")
        provider.script.append(whatsapp_accepted("wamid.OUT-ACK"))
        clock.advance(600)
        # tests/fixtures/meta/whatsapp_text: written at 00:00 by the same phone, delivered at 01:00.
        fixture = load("meta", "whatsapp_text")
        assert running.post(fixture.path, fixture.body, fixture.headers).status == 200
        late = inbound_contact(running, "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQUVCMDAwMDAwMDAwMDAwMD1A=")

        assert late["customer_id"] == first["customer_id"]
        [outcome] = late["enrichment"]["auto_replies"]
        assert (outcome["sent"], outcome["channel"]) == (True, "whatsapp"), outcome
        [request] = wait_requests(running, provider, "/messages")
        assert request.path.endswith("/106540352242922/messages")
        running.wait_for(lambda: running.hub.outbound_queue.depth() == 0, message="the outbound queue drained")
        assert len(requests_to(provider, "/Messages.json")) == 1
