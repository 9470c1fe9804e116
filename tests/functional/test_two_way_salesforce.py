"""Two-way Salesforce through HTTP on the embedded hub: the customer writes on WhatsApp, the hub
opens a Case in the Salesforce fake, and the record-triggered Flows' HTTP callouts (the stored
bodies of tests/fixtures/callbacks/salesforce/, or bodies built the same way from what the fake
holds) come back to `POST /callbacks/salesforce` with the External Credential's secret header."""

from __future__ import annotations

import contextlib
import json

import pytest

from tests.functional.conftest import API_KEY
from tests.functional.outbound import send
from tests.functional.two_way import (
    INBOUND_WAMID,
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
from tests.support.fake_salesforce import CASE_ID, HUB_USER, FakeSalesforce
from tests.support.fixtures import load
from tests.support.receiver import Receiver

SECRET = "sf-hub-callback-secret-2026"
ORG = "00D5g000004SXyZEAW"
AGENT = "0055g00000Ag3NtAAJ"
HEADERS = {"Content-Type": "application/json", "X-Hub-Callback-Secret": SECRET}
REPLY_TEXT = "Hi Ana, your replacement ships today. Tracking: https://track.example.com/1Z999"


@pytest.fixture
def provider():
    with Receiver() as server:
        yield server


@pytest.fixture
def salesforce():
    with FakeSalesforce() as fake:
        yield fake


@contextlib.contextmanager
def hub_with_case(tmp_path, receiver, provider, salesforce):
    """The hub with the Salesforce destination, after the customer's WhatsApp message opened a Case."""
    destination = {
        "name": "salesforce", "type": "salesforce", "base_url": salesforce.url, "use_instance_url": False,
        "auth": {"type": "bearer", "token": "00Dhub!token"},
        "callbacks": {"secrets": [SECRET], "hub_author_ids": [HUB_USER], "organization_id": ORG},
    }
    with two_way_hub(tmp_path, receiver, provider, destination) as hub:
        contact = customer_writes_whatsapp(hub)
        assert wait_ticket(hub, contact["case_id"], "salesforce") == CASE_ID
        settle(hub)
        yield hub, contact


def fixture_post(hub, name: str, headers: dict | None = None):
    fixture = load("callbacks/salesforce", name)
    return post_callback(hub, "salesforce", fixture.body, headers or fixture.headers)


def flow_body(comment: dict) -> bytes:
    """What Flow 1 posts for a CaseComment the fake holds."""
    return json.dumps({"sobject": "CaseComment", "OrganizationId": ORG, **comment}, separators=(",", ":")).encode()


def test_an_agents_public_comment_reaches_whatsapp_on_the_thread_once(tmp_path, receiver, provider, salesforce):
    with hub_with_case(tmp_path, receiver, provider, salesforce) as (hub, contact):
        answer_whatsapp_sends(provider, 2)

        answer = fixture_post(hub, "comment_published")
        again = fixture_post(hub, "comment_published")  # the same callout, delivered twice

        assert (answer.status, answer.headers["content-type"], answer.json()) == (200, "application/json",
                                                                                   {"received": True})
        assert again.status == 200
        [sent] = wait_whatsapp_sends(hub, provider)
        assert sent["context"] == {"message_id": INBOUND_WAMID}
        assert sent["text"]["body"] == REPLY_TEXT and sent["to"] == "16505551234"
        settle(hub)
        assert len(whatsapp_sends(provider)) == 1
        [outbound] = outbound_contacts(hub, contact["customer_id"])
        assert outbound["case_id"] == contact["case_id"]
        assert outbound["metadata"]["agent_reply"] == {"destination": "salesforce", "vendor_ref": CASE_ID,
                                                       "author": AGENT, "author_id": AGENT,
                                                       "comment_id": "00a5g00000Xy9ZqAAJ"}
        assert salesforce.hub_comments(published=True) == [], "the agent's reply is not appended to its own Case"


def test_the_hubs_own_comment_coming_back_through_the_flow_is_not_sent_again(tmp_path, receiver, provider, salesforce):
    with hub_with_case(tmp_path, receiver, provider, salesforce) as (hub, contact):
        answer_whatsapp_sends(provider, 2)
        assert send(hub, {"to": {"case_id": contact["case_id"]}, "channel": "reply", "text": "We are on it."}).status == 202
        wait_whatsapp_sends(hub, provider)

        # message.sent appends it to the Case as a published comment; Flow 1 reports that comment.
        [echo] = hub.wait_for(lambda: salesforce.hub_comments(published=True), message="the outbound comment")
        assert "[hub:" in echo["CommentBody"]
        assert post_callback(hub, "salesforce", flow_body(echo), HEADERS).status == 200
        # The same comment as if an agent had shared the integration user: the marker still tells.
        shared = flow_body({**echo, "Id": echo["Id"].replace("cm", "cx"), "CreatedById": AGENT})
        assert post_callback(hub, "salesforce", shared, HEADERS).status == 200
        settle(hub)
        assert len(whatsapp_sends(provider)) == 1


def test_an_internal_comment_sends_nothing(tmp_path, receiver, provider, salesforce):
    with hub_with_case(tmp_path, receiver, provider, salesforce) as (hub, contact):
        assert fixture_post(hub, "comment_internal").status == 200
        settle(hub)
        assert whatsapp_sends(provider) == [] and outbound_contacts(hub, contact["customer_id"]) == []


def test_a_comment_the_flow_only_names_is_read_back_before_it_is_sent(tmp_path, receiver, provider, salesforce):
    with hub_with_case(tmp_path, receiver, provider, salesforce) as (hub, _):
        answer_whatsapp_sends(provider)
        comment = salesforce.agent_comment("Your parcel is on its way.", author=AGENT)
        internal = salesforce.agent_comment("Note to self: call the depot.", author=AGENT, published=False)

        for stored in (comment, internal):
            hint = {"sobject": "CaseComment", "Id": stored["Id"][:15], "ParentId": stored["ParentId"][:15]}
            assert post_callback(hub, "salesforce", json.dumps(hint).encode(), HEADERS).status == 200

        [sent] = wait_whatsapp_sends(hub, provider)
        settle(hub)
        assert sent["text"]["body"] == "Your parcel is on its way."
        assert len(whatsapp_sends(provider)) == 1, "the internal comment was read back and dropped"


def test_a_closed_case_closes_the_hubs_case_and_reopening_reopens_it(tmp_path, receiver, provider, salesforce):
    with hub_with_case(tmp_path, receiver, provider, salesforce) as (hub, contact):
        case_id = contact["case_id"]

        assert fixture_post(hub, "case_closed").status == 200
        closed = wait_case_event(hub, receiver, "case.closed")
        case = case_view(hub, case_id)
        assert (case["status"], case["close_reason"], case["closed_by"]) == ("closed", "vendor_closed", "salesforce")
        assert case["external_state"]["salesforce"]["vendor_status"] == "Closed"
        assert case["external_state"]["salesforce"]["priority"] == "High"
        assert closed["data"]["case"] == {"id": case_id, "close_reason": "vendor_closed", "destination": "salesforce"}
        assert closed["timestamp"] == "2026-01-01T00:10:00Z", "the Case's LastModifiedDate"

        assert fixture_post(hub, "case_reopened").status == 200
        wait_case_event(hub, receiver, "case.reopened")
        case = case_view(hub, case_id)
        assert case["status"] == "open" and case.get("close_reason") is None
        assert case["external_state"]["salesforce"]["assignee"] == "00G5g00000Q1tRsEAJ"
        assert [e["type"] for e in case_events(receiver) if e["type"] != "case.opened"] == ["case.closed",
                                                                                             "case.reopened"]


def test_a_forged_callback_is_refused_and_changes_nothing(tmp_path, receiver, provider, salesforce):
    with hub_with_case(tmp_path, receiver, provider, salesforce) as (hub, contact):
        forged = {"Content-Type": "application/json", "X-Hub-Callback-Secret": "guessed"}
        assert fixture_post(hub, "comment_published", forged).status == 401
        assert fixture_post(hub, "case_closed", {"Content-Type": "application/json"}).status == 401
        other_org = json.loads(load("callbacks/salesforce", "case_closed").body) | {"OrganizationId": "00D5g000009ZZZZ"}
        assert post_callback(hub, "salesforce", json.dumps(other_org).encode(), HEADERS).status == 401
        settle(hub)
        assert whatsapp_sends(provider) == []
        assert case_view(hub, contact["case_id"])["status"] == "open"


def test_a_reply_the_customer_refused_becomes_a_private_comment_on_the_case(tmp_path, receiver, provider, salesforce):
    with hub_with_case(tmp_path, receiver, provider, salesforce) as (hub, contact):
        opt_out = hub.request("PUT", f"/v1/customers/{contact['customer_id']}/consent",
                              json.dumps({"channel": "whatsapp", "purpose": "service", "state": "opted_out"}).encode(),
                              {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
        assert opt_out.status == 200

        assert fixture_post(hub, "comment_published").status == 200

        [note] = hub.wait_for(lambda: salesforce.hub_comments(published=False), message="the failure note")
        settle(hub)
        assert whatsapp_sends(provider) == []
        assert note["ParentId"] == CASE_ID
        assert "not delivered" in note["CommentBody"].lower()
