"""The shared contract of every vendor's callback side (`VendorCallbacks`), run against each
connector that names one: whatever arrives at `POST /callbacks/{destination}`, the side answers
with a refusal the edge maps to a 4xx (`SignatureError` → 401, `MalformedPayloadError` → 400) or
with parsed items, never with another exception (a 500); a request without credentials is never
accepted; and its setup names where the vendor must call."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.adapters.callbacks.base import CallbackSetup, ParsedCallback, VendorCallbacks
from chalicelib.adapters.channels.base import WebhookRequest
from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.adapters.connectors.registry import CONNECTORS
from chalicelib.domain.models import AgentReply, CaseStatusChange
from chalicelib.errors import MalformedPayloadError, PermanentDeliveryError, SignatureError
from chalicelib.secrets import SecretResolver

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
PUBLIC_URL = "https://hub.example.com/callbacks/vendor"
CALLBACKS = {"secrets": ["a-shared-or-signing-secret"], "hub_author_ids": ["5000"], "public_url": PUBLIC_URL}

#: The smallest valid settings of each two-way connector (its own required fields).
SETTINGS = {
    "zendesk": {"base_url": "https://acme.zendesk.com", "auth": {"type": "bearer", "token": "t"}},
    "freshdesk": {"base_url": "https://acme.freshdesk.com", "api_key": "k"},
    "jira_service_management": {"base_url": "https://acme.atlassian.net", "auth": {"type": "bearer", "token": "t"},
                                "service_desk_id": "10", "request_type_id": "25"},
    "hubspot": {"base_url": "https://api.hubapi.com", "auth": {"type": "bearer", "token": "t"},
                "create_tickets": True, "ticket_stage": "1"},
    "salesforce": {"base_url": "https://acme.my.salesforce.com", "auth": {"type": "bearer", "token": "t"},
                   "use_instance_url": False},
    "genesys": {"base_url": "https://api.mypurecloud.ie", "auth": {"type": "bearer", "token": "t"},
                "mode": "open_messaging", "integration_id": "5a9a8b0f-2b7c-4b39-9a3b-8d7c6e5f4a31"},
    "twilio_flex": {"base_url": "https://flex-api.twilio.com", "mode": "interaction",
                    "workspace_sid": "WS" + "1" * 32, "auth": {"type": "basic", "username": "SK" + "0" * 32,
                                                                "password": "p"}},
    "amazon_connect": {"instance_id": "arn:aws:connect:eu-central-1:123456789012:instance/"
                                      "1b2c3d4e-5f60-4a1b-9c2d-333333333333",
                       "contact_flow_id": "846ec553-a005-41c0-8341-222222222222"},
}
TWO_WAY = sorted(key for key, cls in CONNECTORS.items() if cls.callbacks)


def side_of(key: str) -> VendorCallbacks:
    cls = CONNECTORS[key]
    settings_ = cls.Settings.model_validate({**SETTINGS[key], "callbacks": CALLBACKS})
    connector = cls("vendor", settings_, SecretResolver({}), ConnectorRuntime(data_dir="/nonexistent"))
    side = connector.callback_side()
    assert isinstance(side, VendorCallbacks)
    return side


def request(body: bytes, headers: dict[str, str]) -> WebhookRequest:
    return WebhookRequest(method="POST", hook=None, headers={k.lower(): v for k, v in headers.items()}, query={},
                          body=body, received_at=NOW)


def test_every_two_way_connector_is_covered_here():
    assert TWO_WAY == sorted(SETTINGS), "add the new vendor's smallest settings to SETTINGS"


@pytest.mark.parametrize("key", TWO_WAY)
def test_a_request_without_credentials_is_refused_with_a_signature_error(key):
    side = side_of(key)
    for content_type in side.content_types:
        with pytest.raises(SignatureError):
            side.verify(request(b'{"hello": "world"}', {"content-type": content_type}))


@pytest.mark.parametrize("key", TWO_WAY)
def test_a_wrong_secret_in_any_usual_place_is_refused(key):
    side = side_of(key)
    forged = {"content-type": side.content_types[0], "authorization": "Basic d3Jvbmc6d3Jvbmc=",
              "x-hub-callback-secret": "wrong", "x-hub-signature": "sha256=" + "0" * 64,
              "x-hub-signature-256": "sha256=AAAA", "x-zendesk-webhook-signature": "AAAA",
              "x-zendesk-webhook-signature-timestamp": "2026-01-01T00:00:00Z", "x-twilio-signature": "AAAA",
              "x-hubspot-signature-v3": "AAAA", "x-hubspot-request-timestamp": str(int(NOW.timestamp() * 1000))}
    with pytest.raises(SignatureError):
        side.verify(request(b'{"hello": "world"}', forged))


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
                    max_leaves=20)
#: Bodies with the vendors' own keys, so the parsers go past their first checks.
KEYS = ["hub_event", "event", "ticket_id", "status", "type", "detail", "id", "webhookEvent", "comment", "issue",
        "changelog", "subscriptionType", "objectId", "propertyName", "propertyValue", "sobject", "Id", "ParentId",
        "CommentBody", "IsPublished", "IsClosed", "channel", "direction", "text", "source", "detail-type",
        "EventType", "ConversationSid", "MessageSid", "Body", "Author"]
VENDORISH = st.dictionaries(st.sampled_from(KEYS), JSON, max_size=8)


@pytest.mark.parametrize("key", TWO_WAY)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(VENDORISH.map(lambda d: json.dumps(d).encode()), st.lists(VENDORISH, max_size=3).map(
    lambda items: json.dumps(items).encode()), st.binary(max_size=200)))
def test_parse_answers_any_body_with_items_or_a_malformed_payload_never_a_crash(key, body):
    side = side_of(key)
    for content_type in side.content_types:
        headers = {"content-type": content_type}
        if content_type == "application/x-www-form-urlencoded":
            from urllib.parse import urlencode

            try:
                body = urlencode(json.loads(body)).encode() if body.startswith(b"{") else body
            except (ValueError, TypeError):
                pass
        try:
            parsed = side.parse(request(body, headers))
        except MalformedPayloadError:
            continue
        assert isinstance(parsed, ParsedCallback)
        for item in parsed.items:
            assert isinstance(item, AgentReply | CaseStatusChange)
            assert item.destination == "vendor" and item.ticket and item.event_id
        for unhandled in parsed.unhandled:
            assert unhandled.provider == "callback:vendor" and unhandled.reason


@pytest.mark.parametrize("key", TWO_WAY)
def test_setup_names_the_callback_url_and_notes_are_declared_honestly(key):
    side = side_of(key)
    setup = side.setup()
    assert isinstance(setup, CallbackSetup) and setup.steps
    assert side.callback_url() == PUBLIC_URL
    # Whole, or as the vendor splits it (Salesforce: a Named Credential's URL plus the path).
    printed = json.dumps([[step.values, step.text] for step in setup.steps])
    assert PUBLIC_URL in printed or ("https://hub.example.com" in printed and "/callbacks/" in printed), key
    if not side.takes_notes:
        with pytest.raises(PermanentDeliveryError):
            side.note("ticket-1", "Not delivered")
