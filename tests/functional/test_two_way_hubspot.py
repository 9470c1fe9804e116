"""Two-way sync with HubSpot through HTTP on the embedded hub: the customer writes on WhatsApp,
the hub opens ticket 512 in a fake HubSpot, and HubSpot's signed app webhooks (the stored fixtures,
signed again here with `hmac` at the hub's time) close and reopen the case, record owner and
priority, and change nothing when forged, echoed or about a conversations message.

HubSpot cannot carry an agent's reply to the hub (its tickets have no reply thread), so there is
no reply to relay and no refused reply to note on the ticket: both are covered in the unit tests
of the callback side (`tests/unit/callbacks/test_hubspot.py`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta

import pytest

from tests.functional.two_way import (
    WRITTEN,
    case_events,
    case_view,
    customer_writes_whatsapp,
    post_callback,
    settle,
    two_way_hub,
    wait_case_event,
    wait_ticket,
    whatsapp_sends,
)
from tests.support.fake_hubspot import FakeHubSpot
from tests.support.fakes import Clock
from tests.support.fixtures import load
from tests.support.receiver import Receiver

SECRET = "6d8c5a2e-1f3b-4c7d-9e0a-2b4c6d8e0f1a"
URL = "https://hub.example.com/callbacks/helpdesk"
APP_ID = "2345678"


@pytest.fixture
def hubspot():
    with FakeHubSpot() as fake:
        yield fake


@pytest.fixture
def provider():
    with Receiver() as server:
        yield server


@pytest.fixture
def clock():
    return Clock(WRITTEN + timedelta(seconds=30))


@pytest.fixture
def hub(tmp_path, receiver, provider, hubspot, clock):
    destination = {
        "name": "helpdesk", "type": "hubspot", "base_url": hubspot.url,
        "auth": {"type": "bearer", "token": "pat-test"}, "create_tickets": True, "ticket_stage": "1",
        "callbacks": {"secrets": [SECRET], "public_url": URL, "app_id": APP_ID},
    }
    with two_way_hub(tmp_path, receiver, provider, destination, clock=clock) as running:
        yield running


def signed(body: bytes, clock: Clock, *, secret: str = SECRET) -> dict:
    """The headers HubSpot sends with `body`, signed now (the hub's clock) as HubSpot signs."""
    timestamp = str(int(clock().timestamp() * 1000))
    digest = hmac.new(secret.encode(), b"POST" + URL.encode() + body + timestamp.encode(), hashlib.sha256).digest()
    return {"Content-Type": "application/json", "X-HubSpot-Request-Timestamp": timestamp,
            "X-HubSpot-Signature-v3": base64.b64encode(digest).decode(), "X-HubSpot-Signature-Version": "v3"}


def post(hub, clock: Clock, name: str, *, body: bytes | None = None, secret: str = SECRET):
    body = load("callbacks/hubspot", name).body if body is None else body
    return post_callback(hub, "helpdesk", body, signed(body, clock, secret=secret))


def opened_case(hub) -> tuple[str, str]:
    contact = customer_writes_whatsapp(hub)
    case_id = contact["case_id"]
    ticket = wait_ticket(hub, case_id, "helpdesk")
    settle(hub)
    return case_id, ticket


def test_closing_the_ticket_closes_the_case_and_reopening_reopens_it(hub, receiver, clock):
    case_id, ticket = opened_case(hub)
    assert ticket == "512"

    answer = post(hub, clock, "ticket_closed")
    assert answer.status == 200, answer.body
    closed = wait_case_event(hub, receiver, "case.closed")
    case = case_view(hub, case_id)
    assert (case["status"], case["close_reason"], case["closed_by"]) == ("closed", "vendor_closed", "helpdesk")
    assert closed["data"]["case"] == {"id": case_id, "close_reason": "vendor_closed", "destination": "helpdesk"}
    assert closed["timestamp"] == "2026-01-01T00:00:55Z"  # the ticket's occurredAt

    assert post(hub, clock, "ticket_reopened").status == 200
    wait_case_event(hub, receiver, "case.reopened")
    case = case_view(hub, case_id)
    assert case["status"] == "open" and case["close_reason"] is None
    assert case["external_state"]["helpdesk"]["vendor_status"] == "2"


def test_a_workflow_closing_the_ticket_through_a_generic_event_closes_the_case(hub, receiver, clock):
    case_id, _ = opened_case(hub)
    assert post(hub, clock, "ticket_closed_generic").status == 200
    closed = wait_case_event(hub, receiver, "case.closed")
    assert closed["data"]["case"] == {"id": case_id, "close_reason": "vendor_closed", "destination": "helpdesk"}
    assert case_view(hub, case_id)["status"] == "closed"


def test_a_retried_callback_closes_once(hub, receiver, clock):
    case_id, _ = opened_case(hub)
    first = load("callbacks/hubspot", "ticket_closed").body
    retry = json.dumps([{**json.loads(first)[0], "attemptNumber": 1}], separators=(",", ":")).encode()
    assert post(hub, clock, "ticket_closed").status == 200
    wait_case_event(hub, receiver, "case.closed")
    clock.advance(60)
    assert post(hub, clock, "ticket_closed", body=retry).status == 200
    settle(hub)
    assert len(case_events(receiver, "case.closed")) == 1
    assert case_view(hub, case_id)["status"] == "closed"


def test_owner_and_priority_are_recorded_on_the_case(hub, clock):
    case_id, _ = opened_case(hub)
    assert post(hub, clock, "ticket_owner_priority").status == 200
    state = hub.wait_for(lambda: (s := case_view(hub, case_id).get("external_state", {}).get("helpdesk"))
                         and s.get("priority") and s, message="the ticket's state")
    assert (state["assignee"], state["priority"], state["state"]) == ("91234567", "high", "open")
    assert case_view(hub, case_id)["status"] == "open"


def test_the_hubs_own_change_is_an_echo(hub, receiver, clock):
    """Even a closing stage set by the hub's own app changes nothing."""
    case_id, _ = opened_case(hub)
    event = {**json.loads(load("callbacks/hubspot", "ticket_created_by_hub").body)[0], "propertyValue": "4"}
    assert post(hub, clock, "ticket_created_by_hub", body=json.dumps([event]).encode()).status == 200
    settle(hub)
    assert case_view(hub, case_id)["status"] == "open"
    assert case_events(receiver, "case.closed") == []


def test_a_conversations_message_sends_nothing(hub, provider, clock):
    case_id, _ = opened_case(hub)
    before = len(whatsapp_sends(provider))
    assert post(hub, clock, "conversation_new_message").status == 200
    settle(hub)
    assert len(whatsapp_sends(provider)) == before
    assert case_view(hub, case_id)["status"] == "open"


def test_a_forged_callback_is_refused_and_changes_nothing(hub, receiver, clock):
    case_id, _ = opened_case(hub)
    answer = post(hub, clock, "ticket_closed", secret="not-the-client-secret")
    assert answer.status == 401
    stale = load("callbacks/hubspot", "ticket_closed")  # signed at 00:01:00, valid until 00:06:00
    clock.advance(400)
    assert post_callback(hub, "helpdesk", stale.body, stale.headers).status == 401
    settle(hub)
    assert case_view(hub, case_id)["status"] == "open"
    assert case_events(receiver, "case.closed") == []
