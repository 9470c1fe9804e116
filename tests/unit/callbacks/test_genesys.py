"""Genesys Cloud callbacks: the Open Messaging outbound webhook's signature, what its messages
become, the Failed receipt that tells the agent a reply was not delivered, and the webhook setup
through the integration API. Fixtures: tests/fixtures/callbacks/genesys/ (see its README);
signatures are computed here with hmac, independently of the hub's code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from chalicelib.adapters.callbacks.base import CallbackRequest
from chalicelib.adapters.callbacks.genesys import GenesysCallbacks
from chalicelib.adapters.connectors.base import ConnectorRuntime, DeliveryResult
from chalicelib.adapters.connectors.genesys import GenesysConnector, GenesysSettings
from chalicelib.adapters.connectors.http import HttpResponse
from chalicelib.domain.models import AgentReply, ExternalRef, OutboundStatus, StatusChange
from chalicelib.errors import ConfigError, MalformedPayloadError, PermanentDeliveryError, SignatureError
from chalicelib.secrets import SecretResolver
from tests.support.fakes import sample_job
from tests.support.fixtures import load
from tests.support.send_fixtures import ScriptedHttp

SECRET = "gc-webhook-secret-2026"
OLD_SECRET = "gc-webhook-secret-2025"
INTEGRATION_ID = "6f3e2d1c-0b9a-4877-8665-5443322110ff"
CUSTOMER = "cus_01JD0000000000000000000001"
BASE = "https://api.mypurecloud.ie"
RECEIVED = datetime(2026, 11, 23, 9, 5, 13, tzinfo=timezone.utc)
PUBLIC_URL = "https://hub.example.com/callbacks/genesys"


def settings(**callbacks) -> dict:
    return {
        "base_url": BASE,
        "auth": {"type": "oauth2_client_credentials", "token_url": "https://login.mypurecloud.ie/oauth/token",
                 "client_id": "gc-client", "client_secret": "gc-client-secret", "client_auth": "basic"},
        "mode": "open_messaging",
        "integration_id": INTEGRATION_ID,
        "callbacks": {"secrets": [SECRET], **callbacks},
    }


def build(http=None, **callbacks) -> GenesysConnector:
    runtime = ConnectorRuntime(data_dir="/nonexistent", http=http or ScriptedHttp())
    return GenesysConnector("genesys", GenesysSettings.model_validate(settings(**callbacks)), SecretResolver({}),
                            runtime)


def side(http=None, **callbacks) -> GenesysCallbacks:
    found = build(http, **callbacks).callback_side()
    assert isinstance(found, GenesysCallbacks)
    return found


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def request(body: bytes, headers: dict | None = None) -> CallbackRequest:
    return CallbackRequest(method="POST", hook=None, headers={k.lower(): v for k, v in (headers or {}).items()},
                           query={}, body=body, received_at=RECEIVED)


def fixture(name: str) -> CallbackRequest:
    stored = load("callbacks/genesys", name)
    return request(stored.body, stored.headers)


def signed(payload: dict, secret: str = SECRET) -> CallbackRequest:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return request(body, {"content-type": "application/json", "x-hub-signature-256": sign(body, secret)})


def payload(name: str) -> dict:
    return json.loads(load("callbacks/genesys", name).body)


def answer(status: int, body=None) -> HttpResponse:
    return HttpResponse(status, {"content-type": "application/json"}, json.dumps(body).encode() if body is not None else b"")


TOKEN = answer(200, {"access_token": "gc-token", "token_type": "bearer", "expires_in": 86399})


# --- verify ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["agent_text", "agent_attachment", "bot_text", "inbound_receipt_failed",
                                  "typing_event", "quick_reply"])
def test_the_stored_fixtures_carry_the_signature_genesys_computes(name):
    stored = load("callbacks/genesys", name)
    assert stored.headers["x-hub-signature-256"] == sign(stored.body)
    side().verify(fixture(name))


def test_a_forged_body_is_refused():
    stored = load("callbacks/genesys", "agent_text")
    forged = stored.body.replace(b"Techniker ist unterwegs", b"Bitte zahlen Sie hier")
    with pytest.raises(SignatureError):
        side().verify(request(forged, stored.headers))


def test_a_body_signed_with_another_secret_is_refused():
    with pytest.raises(SignatureError):
        side().verify(signed(payload("agent_text"), "not-the-secret"))


def test_every_secret_of_the_rotation_list_verifies():
    rotating = side(secrets=[SECRET, OLD_SECRET])
    rotating.verify(signed(payload("agent_text"), OLD_SECRET))
    rotating.verify(signed(payload("agent_text"), SECRET))


@pytest.mark.parametrize("header", [None, "", "sha256=", "sha1=" + "A" * 27 + "=",
                                    "sha256=" + hashlib.sha256(b"x").hexdigest()])
def test_a_missing_or_malformed_header_is_refused(header):
    stored = load("callbacks/genesys", "agent_text")
    headers = {"content-type": "application/json", **({"x-hub-signature-256": header} if header is not None else {})}
    with pytest.raises(SignatureError, match="X-Hub-Signature-256"):
        side().verify(request(stored.body, headers))


def test_the_hex_digest_meta_would_send_is_not_genesys_base64():
    body = load("callbacks/genesys", "agent_text").body
    hex_signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    with pytest.raises(SignatureError):
        side().verify(request(body, {"x-hub-signature-256": hex_signature}))


def test_a_pretty_printed_body_verifies_against_the_json_stringify_form_genesys_samples_sign():
    """Genesys's sample hashes JSON.stringify(body); a body sent with other whitespace still verifies."""
    compact = load("callbacks/genesys", "agent_text").body
    pretty = json.dumps(json.loads(compact), indent=2, ensure_ascii=False).encode()
    side().verify(request(pretty, {"x-hub-signature-256": sign(compact)}))


def test_an_old_message_still_verifies_since_genesys_signs_no_timestamp():
    """No replay window: nothing signed says when it was sent; the message's id and time dedupe."""
    old = payload("agent_text")
    old["channel"]["time"] = "2020-01-01T00:00:00.000Z"
    side().verify(signed(old))


# --- parse -----------------------------------------------------------------------------------------


def test_an_agents_text_message_is_a_confirmed_reply_to_the_customer_it_is_addressed_to():
    parsed = side().parse(fixture("agent_text"))
    assert parsed.ignored == [] and parsed.unhandled == []
    [reply] = parsed.items
    assert isinstance(reply, AgentReply)
    assert reply.destination == "genesys" and reply.ticket == CUSTOMER and reply.case_id is None
    assert reply.event_id == "3b0c8e2f5d6a4c1e9f7b2a8d4e6c0f13:2026-11-23T09:05:12.345Z"
    assert reply.comment_id == "3b0c8e2f5d6a4c1e9f7b2a8d4e6c0f13"
    assert reply.text.startswith("Guten Tag Frau Schmidt") and reply.confirmed is True
    assert reply.author.name == "Maria Becker" and reply.author.id is None
    assert reply.occurred_at == datetime(2026, 11, 23, 9, 5, 12, 345000, tzinfo=timezone.utc)
    assert reply.received_at == RECEIVED


def test_the_reply_ticket_is_the_case_ref_the_connector_returns_for_the_customers_messages():
    job = sample_job(destination="genesys")
    http = ScriptedHttp(TOKEN, answer(202, {"id": "2d8f3c5a4b6e7f8091a2b3c4d5e6f708"}))
    result = build(http).deliver(job)
    sent = json.loads(http.sent[-1].body)
    assert result.case_ref == sent["channel"]["from"]["id"] == job.customer.id
    assert side().parse(fixture("agent_text")).items[0].ticket == result.case_ref


def test_an_attachment_is_relayed_as_its_link():
    [reply] = side().parse(fixture("agent_attachment")).items
    [attachment] = reply.attachments
    assert (attachment.url, attachment.content_type, attachment.filename, attachment.kind) == (
        "https://api.mypurecloud.ie/api/v2/downloads/0a1b2c3d4e5f6a7b", "image/png", "router-neustart.png", "image")


def test_a_bots_message_goes_to_the_customer_too_named_as_the_bot():
    [reply] = side().parse(fixture("bot_text")).items
    assert reply.author.name == "Acme Assistent (bot)" and reply.text.startswith("Danke")


@pytest.mark.parametrize("name, reason", [
    ("inbound_receipt_failed", "direction Inbound: not from Genesys to the customer (Failed: GeneralError)"),
    ("typing_event", "an event (typing indicator), not a message"),
])
def test_receipts_and_events_are_ignored_with_their_reason(name, reason):
    parsed = side().parse(fixture(name))
    assert parsed.items == [] and parsed.unhandled == []
    assert [r for r in parsed.ignored if reason in r], parsed.ignored


def test_an_inbound_message_the_customer_wrote_through_the_hub_is_never_relayed_back():
    echo = payload("agent_text") | {"direction": "Inbound"}
    parsed = side().parse(signed(echo))
    assert parsed.items == [] and "direction Inbound" in parsed.ignored[0]


def test_a_message_carrying_the_hubs_echo_marker_is_ignored():
    marked = payload("agent_text") | {"text": "Weitergeleitet [hub:ct_01JD0000000000000000000009]"}
    parsed = side().parse(signed(marked))
    assert parsed.items == [] and "ct_01JD0000000000000000000009" in parsed.ignored[0]


def test_a_message_of_another_integration_is_ignored():
    other = payload("agent_text")
    other["channel"]["id"] = "00000000-0000-4000-8000-000000000000"
    parsed = side().parse(signed(other))
    assert parsed.items == [] and "another integration" in parsed.ignored[0]


def test_a_message_without_the_integration_id_is_still_read():
    bare = payload("agent_text")
    del bare["channel"]["id"]
    assert side().parse(signed(bare)).items[0].ticket == CUSTOMER


def test_quick_replies_are_kept_raw_as_unhandled():
    parsed = side().parse(fixture("quick_reply"))
    assert parsed.items == []
    [event] = parsed.unhandled
    assert event.provider == "callback:genesys" and "Structured" in event.reason


def test_a_text_message_with_nothing_relayable_is_kept_raw():
    empty = payload("agent_text") | {"text": "", "content": [{"contentType": "Notification"}]}
    [event] = side().parse(signed(empty)).unhandled
    assert "Notification" in event.reason


@pytest.mark.parametrize("body, field", [
    (b"not json", "JSON"),
    (b"[]", "JSON object"),
    (b'{"type":"Text"}', "channel"),
    (b'{"channel":{}}', "type"),
])
def test_a_body_that_is_no_open_normalized_message_is_malformed(body, field):
    with pytest.raises(MalformedPayloadError, match=field):
        side().parse(request(body))


@pytest.mark.parametrize("remove, field", [("id", "id"), ("to", "channel.to"), ("to.id", "channel.to.id")])
def test_an_outbound_text_without_its_ids_names_the_missing_field(remove, field):
    broken = payload("agent_text")
    if remove == "id":
        del broken["id"]
    elif remove == "to":
        del broken["channel"]["to"]
    else:
        del broken["channel"]["to"]["id"]
    with pytest.raises(MalformedPayloadError, match=field):
        side().parse(signed(broken))


# --- the failure receipt -----------------------------------------------------------------------------


def failed_reply_job(code: str = "consent_refused"):
    job = sample_job(destination="genesys")
    failed_at = datetime(2026, 11, 23, 9, 5, 14, 250000, tzinfo=timezone.utc)
    contact = job.contact.model_copy(update={
        "status": OutboundStatus.FAILED,
        "status_history": [StatusChange(at=failed_at, status=OutboundStatus.FAILED, code=code,
                                        reason="the customer opted out of whatsapp", source="hub")],
        "metadata": {"agent_reply": {"destination": "genesys", "vendor_ref": CUSTOMER,
                                     "comment_id": "3b0c8e2f5d6a4c1e9f7b2a8d4e6c0f13"},
                     "refusal": {"code": code, "message": "the customer opted out of whatsapp"}},
    })
    case = job.case.model_copy(update={"external_refs": {"genesys": ExternalRef(destination="genesys", ref=CUSTOMER)}})
    return job.model_copy(update={"event_type": "message.undelivered", "contact": contact, "case": case})


def test_an_undelivered_reply_becomes_a_failed_receipt_for_the_agents_message():
    http = ScriptedHttp(TOKEN, answer(202, {"id": "3b0c8e2f5d6a4c1e9f7b2a8d4e6c0f13"}))
    connector = build(http)
    assert connector.takes_failure_notes()
    result = connector.deliver_failure_note(failed_reply_job())
    assert result == DeliveryResult(external_ref="3b0c8e2f5d6a4c1e9f7b2a8d4e6c0f13")
    call = http.sent[-1]
    assert (call.method, call.url) == ("POST", f"{BASE}/api/v2/conversations/messages/{INTEGRATION_ID}/inbound/open/receipt")
    assert call.headers["Authorization"] == "Bearer gc-token"
    body = json.loads(call.body)
    assert body["id"] == "3b0c8e2f5d6a4c1e9f7b2a8d4e6c0f13"
    assert body["channel"] == {"to": {"id": CUSTOMER, "idType": "Opaque"}, "time": "2026-11-23T09:05:14.250Z"}
    assert (body["status"], body["isFinalReceipt"], body["direction"]) == ("Failed", True, "Outbound")
    [reason] = body["reasons"]
    assert reason["code"] == "MessageNotAllowed"
    assert reason["message"].startswith("Not delivered to the customer on whatsapp: the customer opted out")


@pytest.mark.parametrize("code, expected", [("outside_service_window", "MessageExpired"),
                                            ("invalid_message", "UnsupportedMessage"),
                                            ("131047", "GeneralError")])
def test_the_receipt_reason_code_follows_the_hubs_failure(code, expected):
    http = ScriptedHttp(TOKEN, answer(202, {}))
    build(http).deliver_failure_note(failed_reply_job(code))
    assert json.loads(http.sent[-1].body)["reasons"][0]["code"] == expected


def test_a_note_without_the_agents_message_id_is_refused_since_genesys_has_no_notes():
    with pytest.raises(PermanentDeliveryError, match="message id"):
        side().note(CUSTOMER, "Not delivered")


def test_failure_receipts_can_be_turned_off():
    assert build(failure_notes=False).takes_failure_notes() is False


# --- the connector's two-way settings ---------------------------------------------------------------


def test_a_two_way_open_messaging_destination_threads_cases_by_customer_and_a_one_way_one_does_not():
    assert build().threads_cases is True
    one_way = {k: v for k, v in settings().items() if k != "callbacks"}
    connector = GenesysConnector("genesys", GenesysSettings.model_validate(one_way), SecretResolver({}),
                                 ConnectorRuntime(data_dir="/nonexistent"))
    assert connector.threads_cases is False and connector.callback_side() is None


def test_workitem_destinations_refuse_callbacks():
    workitems = settings() | {"mode": "workitem", "type_id": "9a3d2b1c-6f4e-4d2a-8b7c-1e2f3a4b5c6d",
                              "integration_id": None}
    with pytest.raises(ValidationError, match="callbacks: two-way sync needs mode open_messaging"):
        GenesysSettings.model_validate(workitems)


# --- setup -------------------------------------------------------------------------------------------


def test_setup_names_the_integration_webhook_url_and_the_secret_and_says_what_genesys_cannot():
    printed = side(public_url=PUBLIC_URL).setup()
    assert printed.can_create is True
    values = printed.steps[0].values
    assert values["Outbound Notification Webhook URL"] == PUBLIC_URL and values["Integration"] == INTEGRATION_ID
    assert SECRET not in json.dumps([s.values for s in printed.steps]) + json.dumps([s.text for s in printed.steps])
    limits = " ".join(printed.limits)
    assert "no internal notes" in limits and "does not follow Genesys" in limits


def test_create_setup_patches_the_integrations_webhook_url_and_secret_keeping_its_name():
    http = ScriptedHttp(TOKEN, answer(200, {"id": INTEGRATION_ID, "name": "Hub messaging",
                                            "outboundNotificationWebhookUrl": "https://old.example.com/genesys"}),
                        answer(200, {"id": INTEGRATION_ID, "name": "Hub messaging"}))
    lines = side(http, public_url=PUBLIC_URL, secrets=[SECRET, OLD_SECRET]).create_setup()
    get, patch = http.sent[-2:]
    path = f"{BASE}/api/v2/conversations/messaging/integrations/open/{INTEGRATION_ID}"
    assert (get.method, get.url, patch.method, patch.url) == ("GET", path, "PATCH", path)
    assert json.loads(patch.body) == {"name": "Hub messaging", "outboundNotificationWebhookUrl": PUBLIC_URL,
                                      "outboundNotificationWebhookSignatureSecretToken": SECRET}
    assert "was https://old.example.com/genesys" in lines[0] and all(SECRET not in line for line in lines)


def test_create_setup_needs_the_public_url():
    with pytest.raises(ConfigError, match="callbacks.public_url"):
        side().create_setup()
