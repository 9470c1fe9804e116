"""Amazon Connect two-way, through HTTP on the embedded hub: the hub starts a task in a local
Connect (tests/support/fake_connect.py), and EventBridge's API destination posts the task's contact
events (tests/fixtures/callbacks/amazon_connect, with the fake's task id) to /callbacks/connect.

Connect tasks report status only: there are no agent replies, internal notes or echoes to relay,
so the cases here are status ones, and every one checks that nothing reached the customer."""

from __future__ import annotations

import pytest

from tests.functional.two_way import (
    answer_whatsapp_sends,
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
from tests.support.fake_connect import FakeConnect
from tests.support.fixtures import load
from tests.support.receiver import Receiver

INSTANCE_ARN = "arn:aws:connect:eu-central-1:123456789012:instance/a1b2c3d4-5678-90ab-cdef-111111111111"
FIXTURE_TASK = "c0ffee00-0000-4000-8000-000000000001"
AGENT = INSTANCE_ARN + "/agent/5b1b1c0e-7e4f-4d5c-9a43-222222222222"
SECRET = "connect-callback-secret-2026"


@pytest.fixture
def connect(monkeypatch):
    with FakeConnect() as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_CONNECT", fake.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
        yield fake


@pytest.fixture
def provider():
    with Receiver() as server:
        answer_whatsapp_sends(server, 3)
        yield server


@pytest.fixture
def hub(tmp_path, receiver, provider, connect):
    destination = {
        "name": "connect", "type": "amazon_connect", "instance_id": INSTANCE_ARN,
        "contact_flow_id": "846ec553-a005-41c0-8341-222222222222",
        "callbacks": {"secrets": [SECRET, "connect-callback-secret-2025"],
                      "public_url": "https://hub.example.com/callbacks/connect"},
    }
    with two_way_hub(tmp_path, receiver, provider, destination) as running:
        yield running


def opened_task(hub) -> tuple[str, str]:
    contact = customer_writes_whatsapp(hub)
    task = wait_ticket(hub, contact["case_id"], "connect")
    return contact["case_id"], task


def post_event(hub, name: str, task: str, *, secret: str = SECRET, replace: dict | None = None):
    """The fixture's exact bytes and headers, with the task id the fake Connect returned."""
    fixture = load("callbacks/amazon_connect", name)
    body = fixture.body.replace(FIXTURE_TASK.encode(), task.encode())
    for old, new in (replace or {}).items():
        body = body.replace(old.encode(), new.encode())
    return post_callback(hub, "connect", body, {**fixture.headers, "x-hub-callback-secret": secret})


def test_the_task_is_the_one_the_hub_started(hub, connect):
    _, task = opened_task(hub)
    assert task in connect.tasks and task != FIXTURE_TASK


def test_an_agent_taking_the_task_is_recorded_and_completing_it_closes_the_case(hub, receiver, provider):
    case_id, task = opened_task(hub)
    sent_before = len(whatsapp_sends(provider))

    assert post_event(hub, "task_connected_to_agent", task).status == 200
    settle(hub)
    case = case_view(hub, case_id)
    assert case["status"] == "open"
    assert case["external_state"]["connect"]["assignee"] == AGENT
    assert case["external_state"]["connect"]["vendor_status"] == "CONNECTED_TO_AGENT"

    assert post_event(hub, "task_disconnected", task).status == 200
    settle(hub)
    assert case_view(hub, case_id)["status"] == "open"

    assert post_event(hub, "task_completed", task).status == 200
    settle(hub)
    case = case_view(hub, case_id)
    assert (case["status"], case["close_reason"], case["closed_by"]) == ("closed", "vendor_closed", "connect")
    closed = wait_case_event(hub, receiver, "case.closed")
    assert closed["data"]["case"]["id"] == case_id
    assert len(whatsapp_sends(provider)) == sent_before


def test_a_retried_completion_closes_once(hub, receiver):
    case_id, task = opened_task(hub)
    assert post_event(hub, "task_completed", task).status == 200
    assert post_event(hub, "task_completed", task).status == 200
    settle(hub)
    wait_case_event(hub, receiver, "case.closed")
    settle(hub)
    assert len(case_events(receiver, "case.closed")) == 1


def test_a_transferred_task_taken_up_again_reopens_the_case(hub, receiver):
    case_id, task = opened_task(hub)
    assert post_event(hub, "task_completed", task).status == 200
    settle(hub)
    assert case_view(hub, case_id)["status"] == "closed"
    # The transferred contact is queued after the first agent completed theirs.
    assert post_event(hub, "task_transferred_queued", task,
                      replace={'"2026-01-01T00:08:00Z"': '"2026-01-01T00:12:00Z"'}).status == 200
    settle(hub)
    case = case_view(hub, case_id)
    assert case["status"] == "open"
    assert wait_case_event(hub, receiver, "case.reopened")["data"]["case"]["id"] == case_id


def test_a_forged_callback_is_refused_and_changes_nothing(hub, receiver):
    case_id, task = opened_task(hub)
    answer = post_event(hub, "task_completed", task, secret="connect-callback-secret-2099")
    assert answer.status == 401
    settle(hub)
    assert case_view(hub, case_id)["status"] == "open"
    assert case_events(receiver, "case.closed") == []


def test_a_voice_call_of_the_instance_is_ignored(hub):
    case_id, task = opened_task(hub)
    fixture = load("callbacks/amazon_connect", "voice_connected_to_agent")
    assert post_callback(hub, "connect", fixture.body, fixture.headers).status == 200
    settle(hub)
    assert "connect" not in (case_view(hub, case_id).get("external_state") or {})
