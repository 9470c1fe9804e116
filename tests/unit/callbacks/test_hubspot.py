"""HubSpot's callback side: v3 signatures over the public URL and query string, ticket stage,
owner and priority changes, echoes of the hub's own app, notes and setup, against the stored
fixtures (tests/fixtures/callbacks/hubspot/) and signatures computed here with `hmac`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from chalicelib.adapters.callbacks.base import CallbackRequest
from chalicelib.adapters.callbacks.hubspot import HubSpotCallbacks
from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.adapters.connectors.http import HttpResponse
from chalicelib.adapters.connectors.hubspot import HubSpotConnector, HubSpotSettings
from chalicelib.domain.models import CaseStatusChange
from chalicelib.errors import (
    ConfigError,
    MalformedPayloadError,
    PermanentDeliveryError,
    SignatureError,
)
from chalicelib.secrets import SecretResolver
from tests.support.fixtures import load
from tests.support.send_fixtures import ScriptedHttp

SECRET = "6d8c5a2e-1f3b-4c7d-9e0a-2b4c6d8e0f1a"
OLD_SECRET = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
URL = "https://hub.example.com/callbacks/helpdesk"
#: The fixtures' X-HubSpot-Request-Timestamp, 2026-01-01T00:01:00Z.
SIGNED_AT = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
APP_ID = "2345678"
FIXTURES = ("ticket_closed", "ticket_reopened", "ticket_owner_priority", "ticket_closed_generic",
            "ticket_created_by_hub", "conversation_new_message")


def sign(body: bytes, *, uri: str = URL, timestamp: str = "1767225660000", secret: str = SECRET,
         method: str = "POST") -> str:
    """HubSpot's v3 signature, as its docs and official SDK compute it."""
    message = f"{method}{uri}{body.decode()}{timestamp}".encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def side(http: ScriptedHttp | None = None, **callbacks) -> HubSpotCallbacks:
    settings = HubSpotSettings.model_validate({
        "base_url": "https://api.hubapi.com", "auth": {"type": "bearer", "token": "pat-test"},
        "create_tickets": True, "ticket_stage": "1",
        "callbacks": {"secrets": [SECRET], "public_url": URL, "app_id": APP_ID, **callbacks},
    })
    connector = HubSpotConnector("helpdesk", settings, SecretResolver({}),
                                 ConnectorRuntime(data_dir="/tmp", http=http or ScriptedHttp()))
    callbacks_side = connector.callback_side()
    assert isinstance(callbacks_side, HubSpotCallbacks)
    return callbacks_side


def request(name: str, *, received_at: datetime = SIGNED_AT + timedelta(seconds=2), query: dict | None = None,
            headers: dict | None = None, body: bytes | None = None) -> CallbackRequest:
    fixture = load("callbacks/hubspot", name)
    return CallbackRequest(method="POST", hook=None, headers={**fixture.headers, **(headers or {})},
                           query=query or {}, body=fixture.body if body is None else body, received_at=received_at)


def items(name: str, **callbacks) -> list[CaseStatusChange]:
    callbacks_side = side(**callbacks)
    parsed = callbacks_side.parse(request(name))
    return parsed.items  # type: ignore[return-value]


# --- fixtures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_stored_signatures_are_hubspots(name):
    fixture = load("callbacks/hubspot", name)
    assert fixture.url == URL
    assert fixture.headers["x-hubspot-signature-v3"] == sign(fixture.body)


# --- verify --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_a_signed_fixture_verifies(name):
    side().verify(request(name))


def test_a_forged_body_is_refused():
    forged = load("callbacks/hubspot", "ticket_closed").body.replace(b'"4"', b'"5"')
    with pytest.raises(SignatureError, match="does not match"):
        side().verify(request("ticket_closed", body=forged))


def test_another_secret_is_refused():
    body = load("callbacks/hubspot", "ticket_closed").body
    with pytest.raises(SignatureError):
        side().verify(request("ticket_closed", headers={"x-hubspot-signature-v3": sign(body, secret="not-the-secret")}))


def test_a_signature_for_another_url_is_refused():
    body = load("callbacks/hubspot", "ticket_closed").body
    elsewhere = sign(body, uri="https://hub.example.com/callbacks/other")
    with pytest.raises(SignatureError):
        side().verify(request("ticket_closed", headers={"x-hubspot-signature-v3": elsewhere}))


def test_a_stale_request_is_refused_even_when_signed():
    with pytest.raises(SignatureError, match="replay window"):
        side().verify(request("ticket_closed", received_at=SIGNED_AT + timedelta(seconds=301)))


def test_a_request_from_the_future_is_refused():
    with pytest.raises(SignatureError, match="replay window"):
        side().verify(request("ticket_closed", received_at=SIGNED_AT - timedelta(seconds=301)))


def test_the_window_follows_max_age_seconds():
    side(max_age_seconds=600).verify(request("ticket_closed", received_at=SIGNED_AT + timedelta(seconds=500)))


def test_a_rotated_secret_still_verifies():
    body = load("callbacks/hubspot", "ticket_closed").body
    rotated = side(secrets=[SECRET, OLD_SECRET])
    rotated.verify(request("ticket_closed", headers={"x-hubspot-signature-v3": sign(body, secret=OLD_SECRET)}))
    rotated.verify(request("ticket_closed"))


@pytest.mark.parametrize("header, message", [
    ("x-hubspot-signature-v3", "missing X-HubSpot-Signature-v3"),
    ("x-hubspot-request-timestamp", "missing X-HubSpot-Request-Timestamp"),
])
def test_missing_headers_are_refused(header, message):
    fixture = load("callbacks/hubspot", "ticket_closed")
    headers = {k: v for k, v in fixture.headers.items() if k != header}
    with pytest.raises(SignatureError, match=message):
        side().verify(CallbackRequest(method="POST", hook=None, headers=headers, query={}, body=fixture.body,
                                      received_at=SIGNED_AT))


def test_only_a_v1_signature_is_refused():
    fixture = load("callbacks/hubspot", "ticket_closed")
    v1 = hashlib.sha256(SECRET.encode() + fixture.body).hexdigest()
    headers = {"content-type": "application/json", "x-hubspot-signature": v1, "x-hubspot-signature-version": "v1"}
    with pytest.raises(SignatureError, match="v3"):
        side().verify(CallbackRequest(method="POST", hook=None, headers=headers, query={}, body=fixture.body,
                                      received_at=SIGNED_AT))


def test_a_timestamp_in_seconds_or_text_is_refused():
    with pytest.raises(SignatureError, match="milliseconds"):
        side().verify(request("ticket_closed", headers={"x-hubspot-request-timestamp": "2026-01-01T00:01:00Z"}))


def test_the_query_string_is_signed_with_the_characters_hubspot_decodes():
    """HubSpot decodes `%40`, `%3A`, `%2F`, `%2C`... in the URI before it signs; API Gateway hands
    the hub the query already decoded, in order."""
    body = load("callbacks/hubspot", "ticket_closed").body
    signed_uri = URL + "?team=support:emea/tier-1&notify=ops@example.com&tags=a,b(c)"
    query = {"team": "support:emea/tier-1", "notify": "ops@example.com", "tags": "a,b(c)"}
    signature = sign(body, uri=signed_uri)
    side().verify(request("ticket_closed", query=query, headers={"x-hubspot-signature-v3": signature}))
    with pytest.raises(SignatureError):
        side().verify(request("ticket_closed", query={**query, "team": "sales"},
                              headers={"x-hubspot-signature-v3": signature}))
    with pytest.raises(SignatureError):  # the query is part of what is signed
        side().verify(request("ticket_closed", headers={"x-hubspot-signature-v3": signature}))


@pytest.mark.parametrize("space", ["%20", "+"])
def test_a_space_in_the_query_verifies_either_way_hubspot_writes_it(space):
    body = load("callbacks/hubspot", "ticket_closed").body
    signature = sign(body, uri=URL + f"?team=first{space}line")
    side().verify(request("ticket_closed", query={"team": "first line"}, headers={"x-hubspot-signature-v3": signature}))


# --- settings ------------------------------------------------------------------------------------


def test_public_url_is_required():
    with pytest.raises(ValidationError, match=r"callbacks\.public_url\n.*required for HubSpot"):
        HubSpotSettings.model_validate({"base_url": "https://api.hubapi.com", "auth": {"type": "bearer", "token": "t"},
                                        "callbacks": {"secrets": [SECRET]}})


def test_closed_stages_cannot_be_empty():
    with pytest.raises(ValidationError, match="closed_stages"):
        side(closed_stages=[" "])


# --- parse ---------------------------------------------------------------------------------------


def test_the_closed_stage_closes_the_case():
    [change] = items("ticket_closed")
    assert (change.destination, change.ticket, change.state, change.vendor_status) == ("helpdesk", "512", "closed", "4")
    assert change.occurred_at == datetime(2026, 1, 1, 0, 0, 55, tzinfo=UTC)
    assert change.assignee is None and change.priority is None


def test_an_open_stage_reopens():
    [change] = items("ticket_reopened")
    assert (change.state, change.vendor_status) == ("open", "2")


def test_closed_stages_are_per_portal():
    [change] = items("ticket_reopened", closed_stages=["2", "4"])
    assert change.state == "closed"


def test_a_generic_ticket_event_is_read_like_the_legacy_one():
    [change] = items("ticket_closed_generic")
    assert (change.ticket, change.state) == ("512", "closed")


def test_owner_and_priority_changes_are_recorded_without_a_state():
    owner, priority = items("ticket_owner_priority")
    assert (owner.state, owner.assignee, owner.priority) == (None, "91234567", None)
    assert (priority.state, priority.priority, priority.assignee) == (None, "high", None)
    assert owner.event_id != priority.event_id


def test_event_ids_survive_a_redelivery_and_tell_events_apart():
    first = json.loads(load("callbacks/hubspot", "ticket_closed").body)
    again = [{**first[0], "attemptNumber": 3}]
    other = [{**first[0], "occurredAt": first[0]["occurredAt"] + 1}]
    ids = [side().parse(request("ticket_closed", body=json.dumps(b).encode())).items[0].event_id
           for b in (first, again, other)]
    assert ids[0] == ids[1] != ids[2]


def test_the_hubs_own_app_is_an_echo():
    parsed = side().parse(request("ticket_created_by_hub"))
    assert parsed.items == [] and "hub's own app" in parsed.ignored[0]


@pytest.mark.parametrize("source_id", ["2345678", "appId:2345678"])
def test_the_echo_matches_hub_author_ids_too(source_id):
    event = {**json.loads(load("callbacks/hubspot", "ticket_created_by_hub").body)[0], "sourceId": source_id}
    parsed = side(app_id=None, hub_author_ids=["2345678"]).parse(
        request("ticket_created_by_hub", body=json.dumps([event]).encode()))
    assert parsed.items == [] and len(parsed.ignored) == 1


def test_without_the_app_id_the_hubs_change_is_only_a_stage_report():
    [change] = side(app_id=None).parse(request("ticket_created_by_hub")).items
    assert change.state == "open"


def test_a_conversation_message_is_not_relayed():
    parsed = side().parse(request("conversation_new_message"))
    assert parsed.items == [] and parsed.unhandled == []
    assert "thread" in parsed.ignored[0]


def test_other_properties_and_objects_are_skipped():
    base = json.loads(load("callbacks/hubspot", "ticket_closed").body)[0]
    events = [
        {**base, "propertyName": "subject", "propertyValue": "Hi"},
        {**base, "subscriptionType": "object.propertyChange", "objectTypeId": "0-3"},
        {**base, "subscriptionType": "ticket.creation"},
    ]
    parsed = side().parse(request("ticket_closed", body=json.dumps(events).encode()))
    assert parsed.items == [] and parsed.unhandled == [] and len(parsed.ignored) == 3


def test_events_of_another_account_are_skipped():
    parsed = side(portal_id="99999").parse(request("ticket_closed"))
    assert parsed.items == [] and "62515" in parsed.ignored[0]
    assert side(portal_id=62515).parse(request("ticket_closed")).items


def test_unknown_items_are_kept_raw():
    base = json.loads(load("callbacks/hubspot", "ticket_closed").body)[0]
    events = [{**base, "subscriptionType": "ticket.someFutureThing"}, "not an event",
              {k: v for k, v in base.items() if k != "objectId"}, base]
    parsed = side().parse(request("ticket_closed", body=json.dumps(events).encode()))
    assert len(parsed.items) == 1
    assert [u.reason.split(" ")[0] for u in parsed.unhandled] == ["[0]", "[1]", "[2]"]
    assert parsed.unhandled[0].provider == "callback:helpdesk" and parsed.unhandled[0].raw["eventId"] == 1001


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not JSON"),
    (b'{"eventId": 1}', "JSON array"),
    (json.dumps([{}] * 101).encode(), "at most 100"),
])
def test_a_body_that_is_not_hubspots_shape_is_malformed(body, message):
    with pytest.raises(MalformedPayloadError, match=message):
        side().parse(request("ticket_closed", body=body))


# --- note, setup ---------------------------------------------------------------------------------


def test_a_note_is_written_on_the_ticket():
    http = ScriptedHttp(HttpResponse(201, {}, b'{"id": "88001"}'))
    note_id = side(http).note("512", "Not delivered: <opted out>\nsecond line")
    assert note_id == "88001"
    [sent] = http.sent
    assert (sent.method, sent.url) == ("POST", "https://api.hubapi.com/crm/v3/objects/notes")
    assert sent.headers["Authorization"] == "Bearer pat-test"
    body = sent.json()
    assert body["properties"]["hs_note_body"] == "Not delivered: &lt;opted out&gt;<br>second line"
    assert body["properties"]["hs_timestamp"].endswith("Z")
    assert body["associations"] == [{"to": {"id": "512"}, "types": [
        {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 228}]}]
    assert side().takes_notes


def test_a_refused_note_raises_like_a_delivery():
    http = ScriptedHttp(HttpResponse(400, {}, b'{"message": "association invalid"}'))
    with pytest.raises(PermanentDeliveryError, match="association invalid"):
        side(http).note("512", "text")


def test_setup_names_the_url_the_subscriptions_and_the_limits():
    setup = side().setup()
    values = {k: v for step in setup.steps for k, v in step.values.items()}
    assert values["Target URL"] == URL
    assert values["Properties"] == "hs_pipeline_stage, hubspot_owner_id, hs_ticket_priority"
    assert values["callbacks.closed_stages"] == "4"
    assert json.loads(values["subscriptions.crmObjects"])[0] == {
        "subscriptionType": "object.propertyChange", "objectName": "ticket", "propertyName": "hs_pipeline_stage",
        "active": True}
    assert not setup.can_create
    assert any("replies are not relayed" in limit for limit in setup.limits)


def test_create_setup_needs_a_public_apps_developer_key():
    with pytest.raises(ConfigError, match="developer_api_key"):
        side().create_setup()


def test_create_setup_sets_the_target_url_and_adds_missing_subscriptions():
    http = ScriptedHttp(
        HttpResponse(200, {}, b'{"targetUrl": "x"}'),
        HttpResponse(200, {}, json.dumps({"results": [
            {"id": "12", "eventType": "ticket.propertyChange", "propertyName": "hs_pipeline_stage", "active": True},
        ]}).encode()),
        HttpResponse(201, {}, b'{"id": "13"}'),
        HttpResponse(201, {}, b'{"id": "14"}'),
    )
    done = side(http, developer_api_key="dev-key-1").create_setup()
    assert [(s.method, s.url) for s in http.sent] == [
        ("PUT", "https://api.hubapi.com/webhooks/v3/2345678/settings?hapikey=dev-key-1"),
        ("GET", "https://api.hubapi.com/webhooks/v3/2345678/subscriptions?hapikey=dev-key-1"),
        ("POST", "https://api.hubapi.com/webhooks/v3/2345678/subscriptions?hapikey=dev-key-1"),
        ("POST", "https://api.hubapi.com/webhooks/v3/2345678/subscriptions?hapikey=dev-key-1"),
    ]
    assert http.sent[0].json()["targetUrl"] == URL
    assert [s.json() for s in http.sent[2:]] == [
        {"eventType": "ticket.propertyChange", "propertyName": "hubspot_owner_id", "active": True},
        {"eventType": "ticket.propertyChange", "propertyName": "hs_ticket_priority", "active": True},
    ]
    assert "already subscribed" in done[1] and "subscription 14" in done[3]
    assert all("Bearer" not in str(s.headers) for s in http.sent)
