"""Zendesk's callback side without I/O: signature and replay window on the stored fixtures
(tests/fixtures/callbacks/zendesk), what the trigger bodies and ticket events become, the
comment read-back that decides what reaches the customer, and the failure note."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from chalicelib.adapters.channels.base import WebhookRequest
from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.adapters.connectors.http import HttpResponse
from chalicelib.adapters.connectors.zendesk import ZendeskConnector, ZendeskSettings
from chalicelib.domain.models import AgentReply, CaseStatusChange
from chalicelib.errors import MalformedPayloadError, RetryableDeliveryError, SignatureError
from chalicelib.secrets import SecretResolver
from tests.support.send_fixtures import ScriptedHttp

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "callbacks" / "zendesk"
SECRET = "test-zendesk-signing-secret"
SIGNED_AT = datetime(2026, 1, 1, 0, 2, tzinfo=timezone.utc)


def side(http=None, **callbacks):
    settings = ZendeskSettings.model_validate({
        "base_url": "https://acme.zendesk.com",
        "auth": {"type": "basic", "username": "hub@acme.example/token", "password": "token"},
        "callbacks": {"secrets": ["an-older-secret", SECRET], "hub_author_ids": ["5000"], **callbacks}})
    connector = ZendeskConnector("helpdesk", settings, SecretResolver({}),
                                 ConnectorRuntime(data_dir="/tmp", http=http or ScriptedHttp()))
    return connector.callback_side()


def stored(name: str, *, at: datetime = SIGNED_AT) -> WebhookRequest:
    headers = json.loads((FIXTURES / f"{name}.json").read_text())["headers"]
    return WebhookRequest(method="POST", hook=None, headers=headers, query={},
                          body=(FIXTURES / f"{name}.body").read_bytes(), received_at=at)


def request(body: bytes, *, timestamp: str = "2026-01-01T00:02:00Z", secret: str = SECRET,
            at: datetime = SIGNED_AT) -> WebhookRequest:
    signature = base64.b64encode(hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()).decode()
    return WebhookRequest(method="POST", hook=None, query={}, body=body, received_at=at, headers={
        "content-type": "application/json", "x-zendesk-webhook-signature": signature,
        "x-zendesk-webhook-signature-timestamp": timestamp})


def json_answer(body: dict, status: int = 200) -> HttpResponse:
    return HttpResponse(status, {"content-type": "application/json"}, json.dumps(body).encode())


# --- verify ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["trigger_reply", "trigger_reply_end_user", "trigger_status_solved",
                                  "event_ticket_status_changed"])
def test_the_stored_callbacks_verify_with_the_second_secret_of_the_rotation_list(name):
    side().verify(stored(name, at=SIGNED_AT + timedelta(minutes=3)))


def test_unix_second_timestamps_verify_too():
    body = b'{"hub_event":"status","ticket_id":"1"}'
    side().verify(request(body, timestamp=str(int(SIGNED_AT.timestamp()))))


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: {**r.headers, "x-zendesk-webhook-signature": "AAAA"}, "does not match"),
    (lambda r: {k: v for k, v in r.headers.items() if k != "x-zendesk-webhook-signature"}, "missing x-zendesk-webhook-signature"),
    (lambda r: {k: v for k, v in r.headers.items() if k != "x-zendesk-webhook-signature-timestamp"},
     "missing x-zendesk-webhook-signature-timestamp"),
    (lambda r: {**r.headers, "x-zendesk-webhook-signature-timestamp": "yesterday"}, "neither ISO 8601"),
])
def test_a_bad_or_missing_signature_is_refused_naming_the_header(change, message):
    original = stored("trigger_reply")
    forged = WebhookRequest(method="POST", hook=None, headers=change(original), query={}, body=original.body,
                            received_at=SIGNED_AT)
    with pytest.raises(SignatureError, match=message):
        side().verify(forged)


def test_a_changed_body_or_another_secret_is_refused():
    original = stored("trigger_status_solved", at=SIGNED_AT + timedelta(minutes=3))
    tampered = WebhookRequest(method="POST", hook=None, headers=original.headers, query={},
                              body=original.body.replace(b"Solved", b"Open"), received_at=original.received_at)
    with pytest.raises(SignatureError):
        side().verify(tampered)
    with pytest.raises(SignatureError):
        side().verify(request(b"{}", secret="someone-elses-secret"))


def test_a_timestamp_outside_the_window_is_a_replay():
    with pytest.raises(SignatureError, match="replay window"):
        side().verify(request(b"{}", at=SIGNED_AT + timedelta(minutes=6)))
    with pytest.raises(SignatureError, match="replay window"):
        side().verify(request(b"{}", at=SIGNED_AT - timedelta(minutes=6)))
    side(max_age_seconds=900).verify(request(b"{}", at=SIGNED_AT + timedelta(minutes=6)))


# --- parse -----------------------------------------------------------------------------------------


def test_an_agents_reply_trigger_is_a_reply_to_read_back():
    [reply] = side().parse(stored("trigger_reply")).items
    assert isinstance(reply, AgentReply)
    assert (reply.destination, reply.ticket, reply.case_id) == ("helpdesk", "35436", "case_6GPCA7XBWPYNS4Q3XDFYJ4VD3P")
    assert reply.confirmed is False
    assert reply.author.id == "5001"
    assert reply.occurred_at == datetime(2026, 1, 1, 0, 1, 58, tzinfo=timezone.utc)
    # The same rendered body derives the same id: a retried delivery is the same item.
    assert side().parse(stored("trigger_reply")).items[0].event_id == reply.event_id


def test_the_requesters_own_comment_and_the_hub_users_are_skipped_not_queued():
    parsed = side().parse(stored("trigger_reply_end_user"))
    assert (parsed.items, parsed.ignored) == ([], ["ticket 35436: the requester's own comment"])
    body = json.loads(stored("trigger_reply").body)
    parsed = side().parse(request(json.dumps({**body, "current_user_id": "5000"}).encode()))
    assert parsed.items == [] and parsed.ignored == ["ticket 35436: comment by the hub's own user 5000"]


def test_a_status_trigger_is_a_status_change_in_the_hubs_terms():
    [change] = side().parse(stored("trigger_status_solved")).items
    assert isinstance(change, CaseStatusChange)
    assert (change.state, change.vendor_status, change.priority, change.assignee) == ("closed", "solved", "high",
                                                                                      "Alex Agent")
    body = json.loads(stored("trigger_status_solved").body)
    [pending] = side().parse(request(json.dumps({**body, "status": "Pending"}).encode())).items
    assert (pending.state, pending.vendor_status) == ("open", "pending")
    [custom] = side(closed_statuses=["closed"]).parse(stored("trigger_status_solved")).items
    assert custom.state == "open"
    [unknown] = side().parse(request(json.dumps({**body, "status": ""}).encode())).items
    assert unknown.state is None


def test_a_ticket_event_subscription_payload_is_read_from_detail():
    [change] = side().parse(stored("event_ticket_status_changed")).items
    assert (change.ticket, change.state, change.vendor_status, change.event_id) == (
        "35436", "closed", "solved", "cbe4028c-7239-495d-b020-f22348516046")
    assert change.case_id == "case_6GPCA7XBWPYNS4Q3XDFYJ4VD3P"


@pytest.mark.parametrize(("body", "reason"), [
    ({"hello": "world"}, "neither a hub trigger body"),
    ({"hub_event": "reply", "ticket_id": "{{ticket.id}}"}, "ticket_id is not a ticket number"),
    ({"hub_event": "deleted", "ticket_id": "35436"}, "hub_event 'deleted'"),
    ({"type": "zen:event-type:ticket.comment_added", "detail": {"id": "35436"}}, "without a ticket status"),
])
def test_bodies_it_cannot_read_are_kept_raw(body, reason):
    parsed = side().parse(request(json.dumps(body).encode()))
    [unhandled] = parsed.unhandled
    assert parsed.items == [] and reason in unhandled.reason
    assert unhandled.provider == "callback:helpdesk" and unhandled.raw == body


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]"])
def test_a_body_that_is_not_a_json_object_is_malformed(body):
    with pytest.raises(MalformedPayloadError):
        side().parse(request(body))


# --- confirm ---------------------------------------------------------------------------------------


def hint() -> AgentReply:
    return side().parse(stored("trigger_reply")).items[0]


def test_the_read_back_relays_the_newest_public_comment_with_its_author_and_attachment():
    listed = json.loads((FIXTURES / "comments_list.json").read_text())
    http = ScriptedHttp(json_answer(listed))
    confirmed = side(http).confirm(hint())
    assert isinstance(confirmed, AgentReply) and confirmed.confirmed
    assert (confirmed.event_id, confirmed.comment_id, confirmed.text) == ("8004", "8004", "Ihr Paket kommt morgen.")
    assert (confirmed.author.id, confirmed.author.name) == ("5001", "Alex Agent")
    assert confirmed.occurred_at == datetime(2026, 1, 1, 0, 1, 58, tzinfo=timezone.utc)
    [attachment] = confirmed.attachments
    assert (attachment.filename, attachment.content_type) == ("lieferschein.pdf", "application/pdf")
    [sent] = http.sent
    assert sent.method == "GET"
    assert sent.url == "https://acme.zendesk.com/api/v2/tickets/35436/comments?sort_order=desc&include=users&per_page=10"


@pytest.mark.parametrize(("change", "reason"), [
    (lambda c: {**c, "public": False}, "has no public comment"),
    (lambda c: {**c, "author_id": 900}, "the requester's"),
    (lambda c: {**c, "author_id": 5000}, "the hub's own user 5000"),
    (lambda c: {**c, "plain_body": "Wir kümmern uns.\n\nSent to the customer on whatsapp by the hub "
                                   "[hub:ct_01JD0000000000000000000001]"}, "the hub's own comment for ct_01JD"),
])
def test_the_read_back_refuses_notes_requester_comments_and_the_hubs_own(change, reason):
    listed = json.loads((FIXTURES / "comments_list.json").read_text())
    listed["comments"] = [change(listed["comments"][0])] + [c for c in listed["comments"][1:]]
    result = side(ScriptedHttp(json_answer(listed))).confirm(hint())
    assert isinstance(result, str) and reason in result


def test_a_deleted_ticket_is_a_reason_and_an_unavailable_zendesk_is_retried():
    assert side(ScriptedHttp(json_answer({"error": "RecordNotFound"}, 404))).confirm(hint()) == "ticket 35436 is gone"
    with pytest.raises(RetryableDeliveryError):
        side(ScriptedHttp(json_answer({"error": "busy"}, 503))).confirm(hint())


# --- notes -----------------------------------------------------------------------------------------


def test_a_failure_note_is_a_private_comment_and_returns_its_id():
    http = ScriptedHttp(json_answer({"ticket": {"id": 35436}, "audit": {"id": 7009, "events": [
        {"id": 8009, "type": "Comment"}]}}))
    assert side(http).note("35436", "Not delivered") == "8009"
    [sent] = http.sent
    assert (sent.method, sent.url) == ("PUT", "https://acme.zendesk.com/api/v2/tickets/35436")
    assert json.loads(sent.body) == {"ticket": {"comment": {"body": "Not delivered", "public": False}}}


def test_closed_statuses_must_be_zendesk_statuses():
    with pytest.raises(ValueError, match="resolved not a Zendesk status"):
        side(closed_statuses=["resolved"])
