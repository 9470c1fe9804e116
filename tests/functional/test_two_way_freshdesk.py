"""Answering from Freshdesk, through HTTP on the embedded hub: the automation rules' webhooks
(tests/fixtures/callbacks/freshdesk, with the shared secret the operator put into the action)
reach `POST /callbacks/helpdesk`, the hub reads the ticket's conversations back from a stateful
Freshdesk fake, and the customer gets the agent's answer on WhatsApp, on the thread they wrote on."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest

from tests.functional.two_way import (
    INBOUND_WAMID,
    WRITTEN,
    answer_whatsapp_sends,
    api_headers,
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
from tests.support.fake_freshdesk import AGENT_ID, API_AGENT_ID, FakeFreshdesk
from tests.support.fakes import Clock
from tests.support.fixtures import load
from tests.support.receiver import Receiver

SECRET = "fd-callback-secret-1"
DESTINATION = "helpdesk"


@pytest.fixture
def freshdesk():
    with FakeFreshdesk() as fake:
        yield fake


@pytest.fixture
def receiver():
    with Receiver() as server:
        yield server


@pytest.fixture
def provider():
    with Receiver() as server:
        yield server


@pytest.fixture
def clock():
    """The hub's clock. Callbacks are told apart by when they arrive (Freshdesk sends no delivery
    id), so a test moves it on between two callbacks, as real time would."""
    return Clock(WRITTEN + timedelta(seconds=30))


@pytest.fixture
def hub(tmp_path, receiver, provider, freshdesk, clock):
    destination = {
        "name": DESTINATION, "type": "freshdesk", "base_url": freshdesk.url, "api_key": "fd-api-key",
        "callbacks": {"secrets": ["fd-callback-secret-0", SECRET], "hub_author_ids": [str(API_AGENT_ID)]},
    }
    with two_way_hub(tmp_path, receiver, provider, destination, clock=clock) as running:
        yield running


def callback(hub, name: str, **headers):
    fixture = load("callbacks/freshdesk", name)
    return post_callback(hub, DESTINATION, fixture.body, {**fixture.headers, **headers})


def ticket_of_the_customer(hub) -> tuple[dict, str]:
    contact = customer_writes_whatsapp(hub)
    ticket = wait_ticket(hub, contact["case_id"], DESTINATION)
    assert ticket == "43", "the fixtures name ticket 43"
    return contact, ticket


def test_an_agent_reply_reaches_the_customer_on_their_whatsapp_thread_once(hub, provider, freshdesk, clock):
    contact, ticket = ticket_of_the_customer(hub)
    answer_whatsapp_sends(provider, 2)
    reply = freshdesk.agent_writes(ticket, "<div>We are on it.<br>Your replacement ships today.</div>")

    assert callback(hub, "reply").status == 200
    [sent] = wait_whatsapp_sends(hub, provider)
    assert sent["text"]["body"] == "We are on it.\nYour replacement ships today."
    assert sent["context"]["message_id"] == INBOUND_WAMID
    assert sent["to"] == "16505551234"

    # Freshdesk retries a webhook it thinks failed (5 minutes later): the read-back finds the same
    # conversation, whose id is the reply's idempotency key, so nothing is sent again.
    clock.advance(300)
    reads = freshdesk.conversation_reads()
    assert callback(hub, "reply").status == 200
    settle(hub)
    assert len(whatsapp_sends(provider)) == 1
    assert freshdesk.conversation_reads() == reads + 1
    [message] = outbound_contacts(hub, contact["customer_id"])
    assert message["metadata"]["agent_reply"] == {"destination": DESTINATION, "vendor_ref": ticket,
                                                  "author": str(AGENT_ID), "author_id": str(AGENT_ID),
                                                  "comment_id": str(reply["id"])}
    # The answer is already on the ticket: the hub adds no copy of it there.
    assert not any("hub:" in n["body"] for n in freshdesk.notes(ticket))


def test_internal_notes_and_the_hubs_own_notes_never_reach_the_customer(hub, provider, freshdesk, clock):
    contact, ticket = ticket_of_the_customer(hub)
    answer_whatsapp_sends(provider, 1)
    # The hub's own answer (sent through the API) comes back onto the ticket as a public note.
    sent = hub.request("POST", "/v1/messages", json.dumps({"to": {"case_id": contact["case_id"]},
                                                             "text": "Your parcel left the depot."}).encode(),
                       {**api_headers(), "Content-Type": "application/json"})
    assert sent.status == 202, sent.body
    wait_whatsapp_sends(hub, provider)
    hub.wait_for(lambda: any("hub:" in n["body"] for n in freshdesk.notes(ticket)), message="the outbound note")
    settle(hub)
    reads = freshdesk.conversation_reads()
    assert callback(hub, "reply").status == 200  # a rule that also fires on notes: the echo
    settle(hub)

    clock.advance(5)
    freshdesk.agent_writes(ticket, "<div>Customer seems upset; check the carrier.</div>", private=True, source=2)
    assert callback(hub, "reply").status == 200
    settle(hub)

    assert len(whatsapp_sends(provider)) == 1, "only the API message went out"
    # Each callback was read back (besides the connector's own look-up before its note).
    assert freshdesk.conversation_reads() == reads + 2


def test_resolved_closes_the_case_and_reopened_reopens_it(hub, receiver, freshdesk, clock):
    contact, ticket = ticket_of_the_customer(hub)

    assert callback(hub, "status_resolved").status == 200
    closed = wait_case_event(hub, receiver, "case.closed")
    case = case_view(hub, contact["case_id"])
    assert (case["status"], case["close_reason"], case["closed_by"]) == ("closed", "vendor_closed", DESTINATION)
    assert case["external_state"][DESTINATION]["vendor_status"] == "Resolved"
    assert closed["data"]["case"]["id"] == contact["case_id"]

    clock.advance(60)
    assert callback(hub, "status_reopened").status == 200
    wait_case_event(hub, receiver, "case.reopened")
    case = case_view(hub, contact["case_id"])
    assert case["status"] == "open"
    assert case["external_state"][DESTINATION]["priority"] == "high"
    assert [e["type"] for e in case_events(receiver)][-2:] == ["case.closed", "case.reopened"]


@pytest.mark.parametrize("headers", [
    {"X-Hub-Callback-Secret": "not-the-secret"},
    {"X-Hub-Callback-Secret": "", "Authorization": "Basic " + base64.b64encode(b"hub:guess").decode()},
], ids=["header", "basic"])
def test_a_forged_callback_is_refused_and_changes_nothing(hub, provider, freshdesk, headers):
    contact, ticket = ticket_of_the_customer(hub)
    freshdesk.agent_writes(ticket, "<div>We are on it.</div>")
    settle(hub)
    reads = freshdesk.conversation_reads()

    assert callback(hub, "reply", **headers).status == 401
    assert callback(hub, "status_resolved", **headers).status == 401
    settle(hub)

    assert freshdesk.conversation_reads() == reads
    assert whatsapp_sends(provider) == []
    assert case_view(hub, contact["case_id"])["status"] == "open"


def test_basic_auth_with_the_secret_as_password_is_accepted(hub, receiver):
    contact, _ = ticket_of_the_customer(hub)
    basic = "Basic " + base64.b64encode(f"hub:{SECRET}".encode()).decode()
    assert callback(hub, "status_resolved", **{"X-Hub-Callback-Secret": "", "Authorization": basic}).status == 200
    wait_case_event(hub, receiver, "case.closed")


def test_a_refused_reply_becomes_a_private_note_for_the_agent(hub, provider, freshdesk):
    contact, ticket = ticket_of_the_customer(hub)
    opted_out = hub.request("PUT", f"/v1/customers/{contact['customer_id']}/consent",
                            json.dumps({"channel": "whatsapp", "purpose": "service", "state": "opted_out"}).encode(),
                            {**api_headers(), "Content-Type": "application/json"})
    assert opted_out.status == 200, opted_out.body
    freshdesk.agent_writes(ticket, "<div>We are on it.</div>")

    assert callback(hub, "reply").status == 200
    note = hub.wait_for(lambda: [n for n in freshdesk.notes(ticket) if "Not delivered" in n["body"]],
                        message="the failure note")[0]
    settle(hub)

    assert note["private"] is True and "We are on it." in note["body"]
    assert whatsapp_sends(provider) == []
