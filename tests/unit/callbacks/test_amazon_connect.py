"""Amazon Connect's callback side: the EventBridge API destination's secret header, contact events
as task status, and the EventBridge setup it prints. Fixtures: tests/fixtures/callbacks/amazon_connect."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from chalicelib.adapters.callbacks.amazon_connect import (
    AmazonConnectCallbacks,
    AmazonConnectCallbackSettings,
)
from chalicelib.adapters.channels.base import WebhookRequest
from chalicelib.adapters.connectors.amazon_connect import AmazonConnectConnector, AmazonConnectSettings
from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.domain.models import CaseStatusChange
from chalicelib.errors import ConfigError, MalformedPayloadError, PermanentDeliveryError, SignatureError
from chalicelib.secrets import SecretResolver
from tests.support.fixtures import load

FIXTURES = "callbacks/amazon_connect"
SECRET = "connect-callback-secret-2026"
OLD_SECRET = "connect-callback-secret-2025"
INSTANCE_ARN = "arn:aws:connect:eu-central-1:123456789012:instance/a1b2c3d4-5678-90ab-cdef-111111111111"
TASK = "c0ffee00-0000-4000-8000-000000000001"
TRANSFERRED = "c0ffee00-0000-4000-8000-0000000000f2"
AGENT = INSTANCE_ARN + "/agent/5b1b1c0e-7e4f-4d5c-9a43-222222222222"
QUEUE = INSTANCE_ARN + "/queue/0f6a5c2d-3b8e-4d1a-8e2b-333333333333"
RECEIVED = datetime(2026, 1, 1, 0, 11, tzinfo=UTC)


def side(*, instance_id: str = INSTANCE_ARN, **callbacks) -> AmazonConnectCallbacks:
    settings = AmazonConnectSettings(
        instance_id=instance_id, contact_flow_id="846ec553-a005-41c0-8341-222222222222",
        callbacks={"secrets": [SECRET, OLD_SECRET], "public_url": "https://hub.example.com/callbacks/connect",
                   **callbacks},
    )
    connector = AmazonConnectConnector("connect", settings, SecretResolver({}), ConnectorRuntime(data_dir="/x"))
    callbacks_side = connector.callback_side()
    assert isinstance(callbacks_side, AmazonConnectCallbacks)
    return callbacks_side


def request(name: str, *, body: bytes | None = None, **headers: str | None) -> WebhookRequest:
    fixture = load(FIXTURES, name)
    merged = dict(fixture.headers)
    for key, value in headers.items():
        key = key.replace("_", "-").lower()
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return WebhookRequest(method="POST", hook=None, headers=merged, query={},
                          body=fixture.body if body is None else body, received_at=RECEIVED)


def event(name: str) -> dict:
    return json.loads(load(FIXTURES, name).body)


def with_detail(name: str, **changes) -> bytes:
    """A fixture's event with detail fields changed (None removes one): shapes AWS has not shown."""
    data = event(name)
    for key, value in changes.items():
        if value is None:
            data["detail"].pop(key, None)
        else:
            data["detail"][key] = value
    return json.dumps(data).encode()


def only_item(parsed) -> CaseStatusChange:
    assert not parsed.ignored and not parsed.unhandled
    [item] = parsed.items
    assert isinstance(item, CaseStatusChange)
    return item


# --- verify ---------------------------------------------------------------------------------------


def test_the_connection_secret_verifies():
    side().verify(request("task_completed"))


def test_the_previous_secret_of_the_rotation_list_verifies_too():
    side().verify(request("task_completed", x_hub_callback_secret=OLD_SECRET))


@pytest.mark.parametrize("given", ["connect-callback-secret-2027", SECRET[:-1], SECRET + " ", SECRET.upper()])
def test_a_forged_secret_is_refused(given):
    with pytest.raises(SignatureError, match="X-Hub-Callback-Secret"):
        side().verify(request("task_completed", x_hub_callback_secret=given))


@pytest.mark.parametrize("given", [None, ""])
def test_a_missing_secret_header_is_refused(given):
    with pytest.raises(SignatureError, match="missing X-Hub-Callback-Secret"):
        side().verify(request("task_completed", x_hub_callback_secret=given))


def test_a_secret_dropped_from_the_rotation_list_is_refused():
    callbacks = side(secrets=[SECRET])
    with pytest.raises(SignatureError):
        callbacks.verify(request("task_completed", x_hub_callback_secret=OLD_SECRET))


def test_an_old_event_is_not_stale_because_eventbridge_signs_no_time_and_retries_for_24_hours():
    """No replay window: EventBridge signs nothing, and its retries (up to 24 h, 185 times) carry
    the event's original `time`. A retry changes things once through the event id."""
    body = load(FIXTURES, "task_completed").body.replace(b'"2026-01-01T00:10:30Z"', b'"2025-12-31T00:10:30Z"')
    side().verify(request("task_completed", body=body))


# --- parse: the task's status -----------------------------------------------------------------------


@pytest.mark.parametrize("name, state, status, assignee", [
    ("task_queued", None, "QUEUED", QUEUE),
    ("task_connected_to_agent", None, "CONNECTED_TO_AGENT", AGENT),
    ("task_connected_pascal_case", None, "CONNECTED_TO_AGENT", AGENT),
    ("task_disconnected", None, "DISCONNECTED", None),
    ("task_completed", "closed", "COMPLETED", None),
])
def test_contact_events_of_the_task_become_status_changes(name, state, status, assignee):
    item = only_item(side().parse(request(name)))
    assert (item.ticket, item.state, item.vendor_status, item.assignee) == (TASK, state, status, assignee)
    assert item.destination == "connect" and item.case_id is None
    assert item.event_id == event(name)["id"]
    assert item.occurred_at == datetime.fromisoformat(event(name)["time"].replace("Z", "+00:00"))
    assert item.received_at == RECEIVED


def test_disconnected_closes_the_case_when_it_is_the_closing_event():
    callbacks = side(closing_event="DISCONNECTED")
    assert only_item(callbacks.parse(request("task_disconnected"))).state == "closed"
    assert only_item(callbacks.parse(request("task_completed"))).state == "closed"


def test_a_transferred_task_counts_for_the_hubs_task_and_reopens_it():
    item = only_item(side().parse(request("task_transferred_queued")))
    assert item.ticket == TASK and item.state == "open" and item.assignee == QUEUE


def test_a_transferred_contact_that_completes_closes_the_hubs_task():
    body = with_detail("task_transferred_queued", eventType="COMPLETED")
    item = only_item(side().parse(request("task_transferred_queued", body=body)))
    assert (item.ticket, item.state) == (TASK, "closed")


def test_the_initial_contact_id_stands_in_when_contact_id_is_absent():
    body = with_detail("task_completed", contactId=None, initialContactId=TASK)
    assert only_item(side().parse(request("task_completed", body=body))).ticket == TASK


def test_the_contact_id_wins_over_the_initial_one_of_a_task_that_was_not_transferred():
    """A task the hub linked to an earlier one (PreviousContactId) may name that one as its
    initial contact: the hub's reference is the task's own id."""
    body = with_detail("task_completed", initialContactId="c0ffee00-0000-4000-8000-000000000000")
    assert only_item(side().parse(request("task_completed", body=body))).ticket == TASK


def test_a_retried_event_keeps_its_event_id():
    callbacks = side()
    first = only_item(callbacks.parse(request("task_completed")))
    again = only_item(callbacks.parse(request("task_completed")))
    assert first.dedupe_key == again.dedupe_key == f"callback:connect:status:{event('task_completed')['id']}"


def test_an_event_without_an_id_gets_one_derived_from_what_it_reports():
    data = event("task_completed")
    del data["id"]
    body = json.dumps(data).encode()
    first = only_item(side().parse(request("task_completed", body=body)))
    assert first.event_id == only_item(side().parse(request("task_completed", body=body))).event_id
    assert first.event_id != only_item(side().parse(request("task_disconnected"))).event_id


# --- parse: what is ignored, unhandled or malformed -----------------------------------------------


@pytest.mark.parametrize("name, body, reason", [
    ("task_initiated", None, "contact event INITIATED not followed"),
    ("task_completed", with_detail("task_completed", eventType="CONTACT_SNOOZED"),
     "contact event CONTACT_SNOOZED not followed"),
    ("voice_connected_to_agent", None, "Voice contact, not a task"),
    ("task_completed", with_detail("task_completed",
                                   instanceArn=INSTANCE_ARN.replace("a1b2c3d4", "ffffffff")), "another instance"),
])
def test_events_of_no_interest_are_ignored_by_name(name, body, reason):
    parsed = side().parse(request(name, body=body))
    assert not parsed.items and not parsed.unhandled
    [ignored] = parsed.ignored
    assert reason in ignored


def test_other_connect_events_are_ignored_by_detail_type():
    data = event("task_completed")
    data["detail-type"] = "Contact Lens Realtime Rules Matched"
    parsed = side().parse(request("task_completed", body=json.dumps(data).encode()))
    assert parsed.ignored == ["EventBridge event 'Contact Lens Realtime Rules Matched' is not a contact event"]


@pytest.mark.parametrize("body, reason", [
    (with_detail("task_completed", eventType=None), "without detail.eventType"),
    (with_detail("task_completed", eventType=7), "without detail.eventType"),
    (with_detail("task_completed", contactId=None, initialContactId=None), "without detail.contactId"),
    (json.dumps({**event("task_completed"), "detail": ["COMPLETED"]}).encode(), "detail is not an object"),
])
def test_an_unknown_shape_is_kept_raw(body, reason):
    parsed = side().parse(request("task_completed", body=body))
    assert not parsed.items and not parsed.ignored
    [unhandled] = parsed.unhandled
    assert reason in unhandled.reason and unhandled.provider == "callback:connect"
    assert unhandled.raw["source"] == "aws.connect"


@pytest.mark.parametrize("body, reason", [
    (b"not json", "not JSON"),
    (b"[]", "not a JSON object"),
    (json.dumps({k: v for k, v in event("task_completed").items() if k != "detail-type"}).encode(), "'detail-type'"),
    (json.dumps({**event("task_completed"), "source": "aws.ec2"}).encode(), "'aws.ec2' is not aws.connect"),
])
def test_a_body_that_is_no_connect_event_is_malformed(body, reason):
    with pytest.raises(MalformedPayloadError, match=reason):
        side().parse(request("task_completed", body=body))


# --- settings, notes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, message", [
    ("closing_event", "ENDED", "closing_event"),
    ("resource_name", "hub connect", "resource_name"),
    ("target_role_arn", "role/hub", "target_role_arn"),
    ("secrets", [], "secrets"),
])
def test_bad_callback_settings_name_the_field(field, value, message):
    with pytest.raises(ValidationError, match=message):
        AmazonConnectCallbackSettings(**{"secrets": [SECRET], field: value})


def test_tasks_take_no_notes():
    callbacks = side()
    assert callbacks.takes_notes is False and callbacks.connector.takes_failure_notes() is False
    with pytest.raises(PermanentDeliveryError, match="no internal notes"):
        callbacks.note(TASK, "not delivered")


# --- setup ----------------------------------------------------------------------------------------


def test_setup_prints_the_connection_api_destination_and_rule():
    setup = side().setup()
    steps = {step.title: step.values for step in setup.steps}
    connection = steps["EventBridge connection"]
    assert connection["AuthorizationType"] == "API_KEY" and connection["API key name"] == "X-Hub-Callback-Secret"
    destination = steps["EventBridge API destination"]
    assert destination["API destination endpoint"] == "https://hub.example.com/callbacks/connect"
    assert destination["HTTP method"] == "POST" and destination["Connection"] == "hub-connect"
    pattern = json.loads(steps["EventBridge rule"]["Event pattern"])
    assert pattern == {"source": ["aws.connect"], "detail-type": ["Amazon Connect Contact Event"],
                       "detail": {"instanceArn": [INSTANCE_ARN],
                                  "eventType": ["QUEUED", "CONNECTED_TO_AGENT", "DISCONNECTED", "COMPLETED"]}}
    command = steps["Or all of it with CloudFormation"]["Command"]
    assert "infra/connect-callbacks.yaml" in command and f"InstanceArn={INSTANCE_ARN}" in command
    assert "--region eu-central-1" in command
    assert setup.can_create and setup.vendor == "Amazon Connect"
    assert any("status only" in limit and "no agent replies" in limit for limit in setup.limits)


def test_setup_never_prints_a_secret():
    printed = repr(side().setup())
    assert SECRET not in printed and OLD_SECRET not in printed


def test_setup_without_an_instance_arn_or_url_shows_placeholders():
    callbacks = side(instance_id="a1b2c3d4-5678-90ab-cdef-111111111111", public_url=None)
    pattern = callbacks.event_pattern()
    assert pattern["detail"]["instanceArn"] == ["arn:aws:connect:<region>:<account>:instance/"
                                                "a1b2c3d4-5678-90ab-cdef-111111111111"]
    values = {step.title: step.values for step in callbacks.setup().steps}
    assert values["EventBridge API destination"]["API destination endpoint"] == "https://<your-api>/callbacks/connect"


@pytest.mark.parametrize("overrides, message", [
    ({"instance_id": "a1b2c3d4-5678-90ab-cdef-111111111111"}, "instance_id"),
    ({"public_url": None}, "callbacks.public_url"),
])
def test_create_setup_needs_the_instance_arn_and_the_public_url(overrides, message):
    with pytest.raises(ConfigError, match=message):
        side(**overrides).create_setup()
