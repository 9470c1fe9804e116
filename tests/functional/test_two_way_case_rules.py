"""When two helpdesks thread one case, through HTTP on the embedded hub: the case stays open until
every two-way destination with a ticket for it has closed that ticket, unless `cases.close_on`
names the destination that decides (docs/two-way.md, "When destinations disagree")."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from contextlib import ExitStack

import pytest

from tests.functional.two_way import (
    case_events,
    case_view,
    customer_writes_whatsapp,
    post_callback,
    settle,
    two_way_hub,
    wait_ticket,
)
from tests.support.fake_zendesk import AGENT_ID, HUB_USER_ID, FakeZendesk
from tests.support.receiver import Receiver

SECRETS = {"support": "c3VwcG9ydCBzZWNyZXQ=", "billing": "YmlsbGluZyBzZWNyZXQ="}


def zendesk(name: str, fake: FakeZendesk) -> dict:
    return {"name": name, "type": "zendesk", "base_url": fake.url, "upload_attachments": False,
            "auth": {"type": "basic", "username": "hub@acme.example/token", "password": "zendesk-api-token"},
            "callbacks": {"secrets": [SECRETS[name]], "hub_author_ids": [str(HUB_USER_ID)]}}


def solved(hub, name: str, ticket: str, case_id: str, at: str) -> None:
    body = json.dumps({"hub_event": "status", "ticket_id": ticket, "external_id": case_id, "status": "Solved",
                       "priority": "Normal", "assignee_id": str(AGENT_ID), "assignee_name": "Alex Agent",
                       "updated_at": at, "current_user_id": str(AGENT_ID), "current_user_role": "Agent"}).encode()
    timestamp = hub.hub.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
    signature = base64.b64encode(hmac.new(SECRETS[name].encode(), timestamp.encode() + body,
                                          hashlib.sha256).digest()).decode()
    answer = post_callback(hub, name, body, {"Content-Type": "application/json", "X-Zendesk-Webhook-Signature": signature,
                                             "X-Zendesk-Webhook-Signature-Timestamp": timestamp})
    assert answer.status == 200, answer.body
    settle(hub)


@pytest.fixture
def two_helpdesks(tmp_path, receiver, request):
    cases = getattr(request, "param", None)
    with ExitStack() as stack:
        provider = stack.enter_context(Receiver())
        support, billing = stack.enter_context(FakeZendesk()), stack.enter_context(FakeZendesk())
        hub = stack.enter_context(two_way_hub(
            tmp_path, receiver, provider, zendesk("support", support), cases=cases,
            extra={"destinations": [
                {"name": "outbox", "type": "outbox", "path": "outbox.jsonl"},
                {"name": "crm", "type": "webhook", "url": receiver.url, "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
                 "timeout_seconds": 5},
                zendesk("support", support), zendesk("billing", billing)]}))
        inbound = customer_writes_whatsapp(hub)
        tickets = {name: wait_ticket(hub, inbound["case_id"], name) for name in ("support", "billing")}
        yield hub, inbound["case_id"], tickets


def test_the_case_stays_open_until_every_helpdesk_closed_its_ticket(two_helpdesks, receiver):
    hub, case_id, tickets = two_helpdesks
    solved(hub, "support", tickets["support"], case_id, "2026-01-01T00:05:00Z")
    case = case_view(hub, case_id)
    assert case["status"] == "open"
    assert case["external_state"]["support"]["state"] == "closed"
    assert case_events(receiver, "case.closed") == []

    solved(hub, "billing", tickets["billing"], case_id, "2026-01-01T00:06:00Z")
    case = case_view(hub, case_id)
    assert (case["status"], case["close_reason"], case["closed_by"]) == ("closed", "vendor_closed", "billing")
    hub.wait_for(lambda: case_events(receiver, "case.closed"), message="case.closed")


@pytest.mark.parametrize("two_helpdesks", [{"close_on": ["billing"]}], indirect=True)
def test_close_on_names_the_helpdesk_that_decides(two_helpdesks, receiver):
    hub, case_id, tickets = two_helpdesks
    solved(hub, "support", tickets["support"], case_id, "2026-01-01T00:05:00Z")
    assert case_view(hub, case_id)["status"] == "open"

    solved(hub, "billing", tickets["billing"], case_id, "2026-01-01T00:06:00Z")
    assert case_view(hub, case_id)["closed_by"] == "billing"


def test_close_on_must_name_a_two_way_destination(tmp_path):
    from chalicelib.hubconfig import parse_config
    from chalicelib.errors import ConfigError

    with pytest.raises(ConfigError, match=r"cases.close_on\[0\]: no destination named 'helpdesk'"):
        parse_config("cases: {close_on: [helpdesk]}")
    with pytest.raises(ConfigError, match=r"cases.close_on\[0\]: destination 'crm' has no callbacks section"):
        parse_config("destinations: [{name: crm, type: webhook, url: 'https://crm.example/hooks', "
                     "secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]}]\ncases: {close_on: [crm]}")
