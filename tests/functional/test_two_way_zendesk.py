"""Zendesk two-way sync through HTTP on the embedded hub: a customer's WhatsApp message opens a
ticket in the Zendesk fake; the signed trigger callbacks then relay an agent's public reply to
WhatsApp (on the customer's thread, once), drop internal notes and the hub's own comments, close
and reopen the case with the ticket, and write a failure note when the customer opted out.

The trigger bodies are built from the JSON body the hub tells operators to paste
(`ZendeskCallbacks.trigger_body`, docs/destinations/zendesk.md), with the values Zendesk renders;
they are signed here as Zendesk documents it (base64 HMAC-SHA256 of timestamp + body), with the
standard library, independently of the hub's code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta

import pytest

from tests.functional.outbound import accepted
from tests.functional.two_way import (
    INBOUND_WAMID,
    WRITTEN,
    answer_whatsapp_sends,
    case_events,
    case_view,
    customer_writes_whatsapp,
    outbound_contacts,
    post_callback,
    settle,
    two_way_hub,
    wait_case_event,
    wait_ticket,
    wait_whatsapp_sends,
    whatsapp_sends,
)
from tests.support.fake_zendesk import AGENT_ID, HUB_USER_ID, FakeZendesk
from tests.support.fakes import Clock
from tests.support.receiver import Receiver

SECRET = "dGhpcyBpcyBhIHplbmRlc2sgc2lnbmluZyBzZWNyZXQ="
OLD_SECRET = "cm90YXRlZCBvdXQgc2VjcmV0"


@pytest.fixture
def provider():
    with Receiver() as server:
        yield server


@pytest.fixture
def zendesk():
    with FakeZendesk() as fake:
        yield fake


def destination(zendesk: FakeZendesk, **callbacks) -> dict:
    return {"name": "helpdesk", "type": "zendesk", "base_url": zendesk.url, "upload_attachments": False,
            "auth": {"type": "basic", "username": "hub@acme.example/token", "password": "zendesk-api-token"},
            "callbacks": {"secrets": [SECRET, OLD_SECRET], "hub_author_ids": [str(HUB_USER_ID)], **callbacks}}


def signed(body: dict, at, secret: str = SECRET) -> tuple[bytes, dict]:
    raw = json.dumps(body).encode()
    timestamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    signature = base64.b64encode(hmac.new(secret.encode(), timestamp.encode() + raw, hashlib.sha256).digest()).decode()
    return raw, {"Content-Type": "application/json", "X-Zendesk-Webhook-Signature": signature,
                 "X-Zendesk-Webhook-Signature-Timestamp": timestamp}


def trigger(event: str, ticket: str, case_id: str, *, status: str = "Open", user: int = AGENT_ID,
            role: str = "Agent", updated: str = "2026-01-01T00:02:00Z", priority: str = "Normal") -> dict:
    """What the hub's trigger body renders to (the values Zendesk fills into the placeholders)."""
    return {"hub_event": event, "ticket_id": ticket, "external_id": case_id, "status": status,
            "priority": priority, "assignee_id": str(AGENT_ID), "assignee_name": "Alex Agent",
            "updated_at": updated, "current_user_id": str(user), "current_user_role": role}


@pytest.fixture
def hub(tmp_path, receiver, provider, zendesk):
    clock = Clock(WRITTEN + timedelta(seconds=30))
    with two_way_hub(tmp_path, receiver, provider, destination(zendesk), clock=clock) as running:
        inbound = customer_writes_whatsapp(running)
        ticket = wait_ticket(running, inbound["case_id"], "helpdesk")
        yield running, clock, inbound, ticket


def test_an_agents_public_reply_reaches_whatsapp_on_the_customers_thread_once(hub, zendesk, provider, receiver):
    running, clock, inbound, ticket = hub
    answer_whatsapp_sends(provider)
    comment = zendesk.agent_comment(int(ticket), "Ihr Paket kommt morgen.")
    body, headers = signed(trigger("reply", ticket, inbound["case_id"]), clock())

    assert post_callback(running, "helpdesk", body, headers).status == 200
    [sent] = wait_whatsapp_sends(running, provider)
    assert sent["to"] == "16505551234"
    assert sent["text"]["body"] == "Ihr Paket kommt morgen."
    assert sent["context"] == {"message_id": INBOUND_WAMID}

    # Zendesk retries the same delivery (and the trigger fires again for the same comment): one send.
    assert post_callback(running, "helpdesk", body, headers).status == 200
    again, headers = signed(trigger("reply", ticket, inbound["case_id"], updated="2026-01-01T00:02:05Z"), clock())
    assert post_callback(running, "helpdesk", again, headers).status == 200
    settle(running)
    assert len(whatsapp_sends(provider)) == 1

    [message] = outbound_contacts(running, inbound["customer_id"])
    assert message["case_id"] == inbound["case_id"]
    assert message["metadata"]["origin"] == "callback:helpdesk"
    assert message["metadata"]["agent_reply"] == {
        "destination": "helpdesk", "vendor_ref": ticket, "author": "Alex Agent", "author_id": str(AGENT_ID),
        "comment_id": str(comment["id"])}
    # The reply is already on the ticket: the hub does not append it there a second time.
    assert [c["body"] for c in zendesk.comments(int(ticket))].count("Ihr Paket kommt morgen.") == 1


def test_internal_notes_and_the_hubs_own_comments_never_reach_the_customer(hub, zendesk, provider):
    running, clock, inbound, ticket = hub
    # An internal note: the trigger does not fire for it (Comment is public), and if a trigger
    # fires anyway the read-back finds no new public comment by an agent.
    zendesk.agent_comment(int(ticket), "Kunde ist VIP, bitte schnell", public=False)
    body, headers = signed(trigger("reply", ticket, inbound["case_id"]), clock())
    assert post_callback(running, "helpdesk", body, headers).status == 200
    settle(running)
    assert whatsapp_sends(provider) == []

    # The hub's own answer, sent through the API, lands on the ticket as a public comment with
    # the echo marker; Zendesk's trigger then reports it like any public comment.
    answer_whatsapp_sends(provider)
    data = accepted(running, {"to": {"case_id": inbound["case_id"]}, "text": "Wir kümmern uns."})
    running.wait_for(lambda: any(data["id"] in c["body"] for c in zendesk.comments(int(ticket))),
                     message="the hub's comment on the ticket")
    # Written by the hub's API user (echo rule a) and carrying the marker (rule b): either way dropped.
    echo, headers = signed(trigger("reply", ticket, inbound["case_id"], user=HUB_USER_ID,
                                   updated="2026-01-01T00:03:00Z"), clock())
    assert post_callback(running, "helpdesk", echo, headers).status == 200
    shared_user, headers = signed(trigger("reply", ticket, inbound["case_id"], updated="2026-01-01T00:03:01Z"), clock())
    assert post_callback(running, "helpdesk", shared_user, headers).status == 200
    settle(running)
    assert len(whatsapp_sends(provider)) == 1  # only the API's own message


def test_solved_closes_the_case_and_reopened_opens_it_again_with_case_events(hub, zendesk, receiver):
    running, clock, inbound, ticket = hub
    case_id = inbound["case_id"]
    wait_case_event(running, receiver, "case.opened")

    zendesk.set_status(int(ticket), "solved")
    body, headers = signed(trigger("status", ticket, case_id, status="Solved", updated="2026-01-01T00:05:00Z"), clock())
    assert post_callback(running, "helpdesk", body, headers).status == 200
    closed = wait_case_event(running, receiver, "case.closed")
    assert closed["data"]["case"] == {"id": case_id, "close_reason": "vendor_closed", "destination": "helpdesk"}
    case = case_view(running, case_id)
    assert (case["status"], case["close_reason"], case["closed_by"]) == ("closed", "vendor_closed", "helpdesk")
    assert case["external_state"]["helpdesk"]["vendor_status"] == "solved"
    assert case["external_state"]["helpdesk"]["assignee"] == "Alex Agent"
    customer = running.api(f"/v1/customers/{inbound['customer_id']}").json()
    assert customer["open_case"] is None

    # A late retry of an older report changes nothing; the reopening does.
    stale, headers = signed(trigger("status", ticket, case_id, status="Open", updated="2026-01-01T00:04:00Z"), clock())
    assert post_callback(running, "helpdesk", stale, headers).status == 200
    settle(running)
    assert case_view(running, case_id)["status"] == "closed"
    body, headers = signed(trigger("status", ticket, case_id, status="Open", updated="2026-01-01T00:06:00Z"), clock())
    assert post_callback(running, "helpdesk", body, headers).status == 200
    reopened = wait_case_event(running, receiver, "case.reopened")
    assert reopened["data"]["case"]["id"] == case_id
    case = case_view(running, case_id)
    assert (case["status"], case["close_reason"]) == ("open", None)
    assert running.api(f"/v1/customers/{inbound['customer_id']}").json()["open_case"]["id"] == case_id
    assert [e["type"] for e in case_events(receiver)] == ["case.opened", "case.closed", "case.reopened"]


def test_a_forged_or_stale_callback_is_refused_and_changes_nothing(hub, zendesk, provider):
    running, clock, inbound, ticket = hub
    zendesk.agent_comment(int(ticket), "Ihr Paket kommt morgen.")
    body, headers = signed(trigger("reply", ticket, inbound["case_id"]), clock(), secret="not-the-secret")
    forged = post_callback(running, "helpdesk", body, headers)
    assert forged.status == 401
    assert forged.json()["error"]["code"] == "invalid_signature"

    body, headers = signed(trigger("reply", ticket, inbound["case_id"]), clock() - timedelta(minutes=10))
    assert post_callback(running, "helpdesk", body, headers).status == 401

    tampered, headers = signed(trigger("status", ticket, inbound["case_id"], status="Solved"), clock())
    assert post_callback(running, "helpdesk", tampered.replace(b"Solved", b"Closed"), headers).status == 401
    settle(running)
    assert whatsapp_sends(provider) == []
    assert case_view(running, inbound["case_id"])["status"] == "open"

    # The previous signing secret still verifies during a rotation.
    body, headers = signed(trigger("status", ticket, inbound["case_id"], priority="High"), clock(), secret=OLD_SECRET)
    assert post_callback(running, "helpdesk", body, headers).status == 200
    running.wait_for(lambda: case_view(running, inbound["case_id"]).get("external_state", {}).get("helpdesk"),
                     message="the ticket state")
    assert case_view(running, inbound["case_id"])["external_state"]["helpdesk"]["priority"] == "high"


def test_a_callback_for_a_destination_without_callbacks_is_not_found(hub):
    running, clock, inbound, ticket = hub
    body, headers = signed(trigger("reply", ticket, inbound["case_id"]), clock())
    assert post_callback(running, "crm", body, headers).status == 404
    assert post_callback(running, "nowhere", body, headers).status == 404


def test_a_reply_to_a_customer_who_opted_out_is_refused_and_the_agent_gets_an_internal_note(hub, zendesk, provider):
    running, clock, inbound, ticket = hub
    answer = running.request("PUT", f"/v1/customers/{inbound['customer_id']}/consent",
                             json.dumps({"channel": "whatsapp", "purpose": "service", "state": "opted_out"}).encode(),
                             {"Authorization": "Bearer test-api-key", "Content-Type": "application/json"})
    assert answer.status == 200, answer.body
    zendesk.agent_comment(int(ticket), "Ihr Paket kommt morgen.")
    body, headers = signed(trigger("reply", ticket, inbound["case_id"]), clock())
    assert post_callback(running, "helpdesk", body, headers).status == 200

    note = running.wait_for(lambda: next((c for c in zendesk.comments(int(ticket))
                                          if not c["public"] and c["body"].startswith("Not delivered")), None),
                            message="the failure note")
    assert note["body"].startswith("Not delivered to the customer on whatsapp: ")
    assert "consent_refused" in note["body"] and "Ihr Paket kommt morgen." in note["body"]
    settle(running)
    assert whatsapp_sends(provider) == []
    [refused] = outbound_contacts(running, inbound["customer_id"])
    assert refused["status"] == "failed"
    assert refused["metadata"]["refusal"]["code"] == "consent_refused"


def test_a_reply_after_the_whatsapp_window_uses_the_fallback_template(tmp_path, receiver, provider, zendesk):
    clock = Clock(WRITTEN + timedelta(seconds=30))
    extra = {"channels": {"meta": {"whatsapp": {"fallback_template": {"name": "reopen_conversation",
                                                                        "language": "de"}}}}}
    with two_way_hub(tmp_path, receiver, provider, destination(zendesk), clock=clock, extra=extra) as running:
        inbound = customer_writes_whatsapp(running)
        ticket = wait_ticket(running, inbound["case_id"], "helpdesk")
        clock.advance(25 * 3600)
        answer_whatsapp_sends(provider)
        zendesk.agent_comment(int(ticket), "Sind Sie noch da?")
        body, headers = signed(trigger("reply", ticket, inbound["case_id"], updated="2026-01-02T01:00:00Z"), clock())
        assert post_callback(running, "helpdesk", body, headers).status == 200
        [sent] = wait_whatsapp_sends(running, provider)
        assert sent["type"] == "template"
        assert sent["template"]["name"] == "reopen_conversation"



def test_a_body_zendesk_could_send_but_the_hub_cannot_read_is_kept_raw_and_a_wrong_type_is_refused(
        tmp_path, receiver, provider, zendesk):
    # On today's clock: unhandled items are kept for `processing.unhandled_days` from now.
    clock = Clock()
    with two_way_hub(tmp_path, receiver, provider, destination(zendesk), clock=clock) as running:
        odd = {"type": "zen:event-type:ticket.comment_added", "detail": {"id": "35436"}, "id": "evt-1"}
        body, headers = signed(odd, clock())
        assert post_callback(running, "helpdesk", body, headers).status == 200
        settle(running)
        listed = running.api("/v1/unhandled-events?provider=callback:helpdesk")
        assert listed.status == 200, listed.body
        [kept] = listed.json()["data"]
        assert kept["raw"] == odd and "without a ticket status" in kept["reason"]

        refused = post_callback(running, "helpdesk", body, {**headers, "Content-Type": "application/x-www-form-urlencoded"})
        assert refused.status == 415
        assert "helpdesk callbacks must be application/json" in refused.json()["error"]["message"]


def test_routing_sees_what_zendesk_reported_about_the_ticket(tmp_path, receiver, provider, zendesk):
    from tests.functional.two_way import customer_writes_sms

    clock = Clock(WRITTEN + timedelta(seconds=30))
    rules = {"routing": {"rules": [{"name": "alex-owns-it", "then": {"tags": ["with_alex"]}, "when": {
        "ticket": {"destination": "helpdesk", "field": "assignee", "equals": "Alex Agent"}}}]}}
    with two_way_hub(tmp_path, receiver, provider, destination(zendesk), clock=clock, extra=rules) as running:
        inbound = customer_writes_whatsapp(running)
        assert "with_alex" not in inbound["routing"]["tags"]
        ticket = wait_ticket(running, inbound["case_id"], "helpdesk")
        body, headers = signed(trigger("status", ticket, inbound["case_id"], updated="2026-01-01T00:01:00Z"), clock())
        assert post_callback(running, "helpdesk", body, headers).status == 200
        settle(running)

        clock.advance(120)
        follow_up = customer_writes_sms(running, "Und wann genau?")
        assert follow_up["case_id"] == inbound["case_id"]
        assert "with_alex" in follow_up["routing"]["tags"]
