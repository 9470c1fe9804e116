"""Jira Service Management, both ways, through HTTP on the embedded hub: a customer writes on
WhatsApp, the hub raises `SD-1` in the JSM fake, and Jira's signed admin webhook (the stored
fixtures, tests/fixtures/callbacks/jira_service_management/) reports what the agent did there."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from tests.functional.two_way import (
    INBOUND_WAMID,
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
from tests.functional.outbound import accepted
from tests.support.fake_jsm import FakeJsm
from tests.support.fixtures import load
from tests.support.receiver import Receiver

DESTINATION = "service-desk"
SECRET = "It's a Secret to Everybody"
HUB_USER = "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077"
FIXTURES = "callbacks/jira_service_management"


def destination(jsm: FakeJsm) -> dict:
    return {
        "name": DESTINATION, "type": "jira_service_management", "base_url": jsm.url,
        "auth": {"type": "basic", "username": "hub@acme.com", "password": "jsm-api-token"},
        "service_desk_id": "10", "request_type_id": "25",
        "callbacks": {"secrets": [SECRET], "hub_author_ids": [HUB_USER]},
    }


@pytest.fixture
def world(tmp_path):
    """The hub with JSM, the customer's WhatsApp message and its request `SD-1`."""
    with Receiver() as receiver, Receiver() as provider, FakeJsm() as jsm:
        with two_way_hub(tmp_path, receiver, provider, destination(jsm)) as hub:
            contact = customer_writes_whatsapp(hub)
            assert wait_ticket(hub, contact["case_id"], DESTINATION) == "SD-1"
            settle(hub)
            yield hub, receiver, provider, jsm, contact


def jira_sends(hub, name: str, *, headers: dict | None = None):
    """Jira's delivery of the stored fixture, exactly as stored (its signature checked here)."""
    stored = load(FIXTURES, name)
    assert stored.headers["x-hub-signature"] == "sha256=" + hmac.new(SECRET.encode(), stored.body,
                                                                     hashlib.sha256).hexdigest()
    return post_callback(hub, DESTINATION, stored.body, {**stored.headers, **(headers or {})})


def test_an_agents_public_comment_reaches_the_customer_on_the_whatsapp_thread(world):
    hub, _, provider, jsm, contact = world
    answer_whatsapp_sends(provider)

    assert jira_sends(hub, "comment_public").status == 200

    [sent] = wait_whatsapp_sends(hub, provider)
    assert sent["to"] == "16505551234" and sent["context"] == {"message_id": INBOUND_WAMID}
    assert sent["text"]["body"] == ("Hi! Your replacement ships *today*.\n"
                                    "Track it here: tracking (https://track.example.com/1Z999) [ref 42]")
    settle(hub)
    [message] = outbound_contacts(hub, contact["customer_id"])
    assert message["metadata"]["agent_reply"] == {"destination": DESTINATION, "vendor_ref": "SD-1",
                                                  "author": "Mia Krystof", "author_id": "5b10ac8d82e05b22cc7d4ef5",
                                                  "comment_id": "10100"}
    # The agent's comment already is the reply on the request: the hub writes nothing back.
    assert jsm.comments("SD-1") == []


def test_the_hubs_own_message_on_the_request_comes_back_and_is_not_sent_again(world):
    hub, _, provider, jsm, contact = world
    answer_whatsapp_sends(provider, 2)
    sent = accepted(hub, {"to": {"case_id": contact["case_id"]}, "text": "Your parcel left the warehouse."})
    wait_whatsapp_sends(hub, provider)
    # The hub's message goes on the request as a public comment by its API user, with the marker...
    [comment] = hub.wait_for(lambda: jsm.comments("SD-1", public=True), message="the outbound comment on SD-1")
    assert f"\\[hub:{sent['id']}\\]" in comment["body"]

    # ...and Jira reports that very comment back (the echo fixture, carrying its id and body).
    payload = json.loads(load(FIXTURES, "comment_echo").body)
    payload["comment"].update(id=comment["id"], body=comment["body"])
    body = json.dumps(payload, separators=(",", ":")).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert post_callback(hub, DESTINATION, body, {"Content-Type": "application/json; charset=UTF-8",
                                                  "X-Hub-Signature": signature}).status == 200
    settle(hub)

    assert len(whatsapp_sends(provider)) == 1
    assert [m["id"] for m in outbound_contacts(hub, contact["customer_id"])] == [sent["id"]]


@pytest.mark.parametrize("name", ["comment_internal", "comment_echo", "comment_customer", "comment_updated"])
def test_internal_notes_echoes_and_the_customers_own_comments_send_nothing(world, name):
    hub, _, provider, _, contact = world

    assert jira_sends(hub, name).status == 200
    settle(hub)

    assert whatsapp_sends(provider) == [] and outbound_contacts(hub, contact["customer_id"]) == []


def test_a_retried_delivery_sends_once(world):
    hub, _, provider, _, contact = world
    answer_whatsapp_sends(provider, 2)

    assert jira_sends(hub, "comment_public").status == 200
    assert jira_sends(hub, "comment_public", headers={"X-Atlassian-Webhook-Retry": "1"}).status == 200
    # The same comment through a second webhook an admin registered for the hub's URL.
    assert jira_sends(hub, "comment_public", headers={"X-Atlassian-Webhook-Identifier": "another"}).status == 200
    settle(hub)

    assert len(whatsapp_sends(provider)) == 1
    assert len(outbound_contacts(hub, contact["customer_id"])) == 1


def test_a_forged_callback_is_refused_and_changes_nothing(world):
    hub, receiver, provider, _, contact = world
    stored = load(FIXTURES, "issue_resolved")
    forged = "sha256=" + hmac.new(b"guessed", stored.body, hashlib.sha256).hexdigest()

    assert post_callback(hub, DESTINATION, stored.body, {**stored.headers, "x-hub-signature": forged}).status == 401
    unsigned = {k: v for k, v in stored.headers.items() if k != "x-hub-signature"}
    assert post_callback(hub, DESTINATION, stored.body, unsigned).status == 401
    settle(hub)

    assert case_view(hub, contact["case_id"])["status"] == "open"
    assert case_events(receiver, "case.closed") == [] and whatsapp_sends(provider) == []


def test_resolving_the_request_closes_the_case_and_reopening_reopens_it(world):
    hub, receiver, _, _, contact = world
    case_id = contact["case_id"]

    assert jira_sends(hub, "issue_assigned").status == 200
    assert jira_sends(hub, "issue_resolved").status == 200
    closed = wait_case_event(hub, receiver, "case.closed")

    case = case_view(hub, case_id)
    assert (case["status"], case["close_reason"], case["closed_by"]) == ("closed", "vendor_closed", DESTINATION)
    assert case["external_state"][DESTINATION] | {"updated_at": None} == {
        "state": "closed", "vendor_status": "Resolved", "assignee": "Mia Krystof", "priority": "High",
        "updated_at": None, "ticket": "SD-1"}
    assert closed["data"]["case"]["id"] == case_id

    assert jira_sends(hub, "issue_reopened").status == 200
    wait_case_event(hub, receiver, "case.reopened")
    case = case_view(hub, case_id)
    assert (case["status"], case["close_reason"]) == ("open", None)
    assert case["external_state"][DESTINATION]["vendor_status"] == "In progress"

    # Jira's late retry of the resolution changes nothing.
    assert jira_sends(hub, "issue_resolved").status == 200
    settle(hub)
    assert case_view(hub, case_id)["status"] == "open"
    assert len(case_events(receiver, "case.closed")) == 1


def test_a_reply_the_customer_opted_out_of_becomes_an_internal_note_on_the_request(world):
    hub, _, provider, jsm, contact = world
    answer = hub.request("PUT", f"/v1/customers/{contact['customer_id']}/consent",
                         json.dumps({"channel": "whatsapp", "purpose": "service", "state": "opted_out"}).encode(),
                         {**api_headers(), "Content-Type": "application/json"})
    assert answer.status == 200, answer.body

    assert jira_sends(hub, "comment_public").status == 200

    [note] = hub.wait_for(lambda: jsm.comments("SD-1", public=False), message="the failure note on SD-1")
    assert note["body"].startswith("Not delivered")
    assert "Your reply: Hi! Your replacement ships" in note["body"]
    settle(hub)
    assert whatsapp_sends(provider) == []
    # The note is internal: Jira reports it back, and it stays with the agents.
    assert jira_sends(hub, "comment_internal").status == 200
    settle(hub)
    assert whatsapp_sends(provider) == []


CLI_CONFIG = """
destinations:
  - name: service-desk
    type: jira_service_management
    base_url: {url}
    auth: {{type: basic, username: hub@acme.com, password: jsm-api-token}}
    service_desk_id: "10"
    request_type_id: "25"
    callbacks:
      secrets: ["env:JSM_WEBHOOK_SECRET", "the old secret"]
      hub_author_ids: ["{hub_user}"]
      public_url: https://hub.acme.example/callbacks/service-desk
"""


def test_hubctl_prints_the_webhook_and_creates_it_once(tmp_path, monkeypatch, capsys):
    from chalicelib.cli import main

    with FakeJsm() as jsm:
        config = tmp_path / "hub.yaml"
        config.write_text(CLI_CONFIG.format(url=jsm.url, hub_user=HUB_USER))
        monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("JSM_WEBHOOK_SECRET", SECRET)

        assert main(["callbacks", "setup", DESTINATION, "--config", str(config)]) == 0
        printed = capsys.readouterr().out
        assert "URL: https://hub.acme.example/callbacks/service-desk" in printed
        assert "Events: Comment: created; Issue: updated" in printed
        assert jsm.webhooks == []

        assert main(["callbacks", "setup", DESTINATION, "--create", "--config", str(config)]) == 0
        assert main(["callbacks", "setup", DESTINATION, "--create", "--config", str(config)]) == 0
        printed = capsys.readouterr().out

    [webhook] = jsm.webhooks
    assert webhook == {"name": "omnichannel hub", "url": "https://hub.acme.example/callbacks/service-desk",
                       "events": ["comment_created", "jira:issue_updated"],
                       "filters": {"issue-related-events-section": 'project = "SD"'}, "excludeBody": False,
                       "secret": SECRET, "self": f"{jsm.url}/rest/webhooks/1.0/webhook/1"}
    assert "created Jira webhook 'omnichannel hub'" in printed
    assert "created nothing: Jira webhook 'omnichannel hub' already posts" in printed
