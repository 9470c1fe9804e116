"""Freshdesk callbacks: the shared secret (header or basic auth), the body template as a hint, the
read-back of the ticket's conversations, statuses by id or name, notes, and the printed setup.
Fixtures: tests/fixtures/callbacks/freshdesk (sources in its README)."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from chalicelib.adapters.callbacks.base import CallbackRequest
from chalicelib.adapters.callbacks.freshdesk import FreshdeskCallbacks
from chalicelib.adapters.connectors.base import ConnectorRuntime, VendorResponse
from chalicelib.adapters.connectors.freshdesk import FreshdeskConnector, FreshdeskSettings
from chalicelib.domain.models import AgentReply, CaseStatusChange
from chalicelib.errors import (
    ConfigError,
    MalformedPayloadError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    SignatureError,
)
from chalicelib.secrets import SecretResolver
from tests.support.fixtures import FIXTURES, load

SECRET = "fd-callback-secret-1"
ENVIRON = {"FRESHDESK_API_KEY": "fd-api-key", "FD_CALLBACK_NEW": "fd-callback-secret-2",
           "FD_CALLBACK_OLD": SECRET}
#: After every conversation of the fixture was written.
RECEIVED = datetime(2026, 1, 1, 0, 0, 30, tzinfo=timezone.utc)
CONVERSATIONS = json.loads((FIXTURES / "callbacks" / "freshdesk" / "conversations.json").read_text())
CUSTOMER_NOTE, AGENT_REPLY, PRIVATE_NOTE, HUB_ECHO = CONVERSATIONS


class FakeApi:
    """Plays `VendorApi.call`: answers per (method, path prefix), records every call."""

    def __init__(self, answers: dict[tuple[str, str], object] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[tuple[str, str, object]] = []

    def call(self, method, path, *, json_body=None, allow=(), **_):
        self.calls.append((method, path, json_body))
        for (verb, prefix), answer in self.answers.items():
            if verb == method and path.startswith(prefix):
                if isinstance(answer, Exception):
                    raise answer
                status, data = answer if isinstance(answer, tuple) else (200, answer)
                if status >= 400 and status not in allow:
                    raise PermanentDeliveryError(f"freshdesk answered {status}")
                return VendorResponse(status, data, {})
        raise AssertionError(f"unexpected {method} {path}")


def side(tmp_path, api: FakeApi | None = None, **callbacks) -> FreshdeskCallbacks:
    settings = FreshdeskSettings.model_validate({
        "base_url": "https://acme.freshdesk.com", "api_key": "env:FRESHDESK_API_KEY",
        "callbacks": {"secrets": ["env:FD_CALLBACK_NEW", "env:FD_CALLBACK_OLD"], "hub_author_ids": ["7"],
                      "public_url": "https://hub.example.com/callbacks/helpdesk", **callbacks},
    })
    connector = FreshdeskConnector("helpdesk", settings, SecretResolver(ENVIRON), ConnectorRuntime(str(tmp_path)))
    if api is not None:
        connector.api = api
    callbacks_side = connector.callback_side()
    assert isinstance(callbacks_side, FreshdeskCallbacks)
    return callbacks_side


def request(name: str, *, headers: dict | None = None, body: bytes | None = None) -> CallbackRequest:
    fixture = load("callbacks/freshdesk", name)
    return CallbackRequest(method="POST", hook=None, headers=fixture.headers if headers is None else headers,
                           query={}, body=fixture.body if body is None else body, received_at=RECEIVED)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def hint(tmp_path, **update) -> AgentReply:
    reply = side(tmp_path).parse(request("reply")).items[0]
    return reply.model_copy(update=update)


# --- verify ----------------------------------------------------------------------------------------


def test_the_secret_header_verifies_with_any_secret_of_the_rotation_list(tmp_path):
    callbacks = side(tmp_path)
    callbacks.verify(request("reply"))  # the old secret, second in the list
    callbacks.verify(request("reply", headers={"content-type": "application/json",
                                                "x-hub-callback-secret": "fd-callback-secret-2"}))


@pytest.mark.parametrize("headers", [
    {"x-hub-callback-secret": "fd-callback-secret-3"},
    {"x-hub-callback-secret": SECRET + " "},
    {"authorization": basic("hub", "wrong")},
    {"authorization": basic(SECRET, "X")},  # the secret as user name is not the password
    {"authorization": "Bearer " + SECRET},
    {"authorization": "Basic not-base64!"},
], ids=["forged", "padded", "basic-wrong", "basic-user", "bearer", "garbage"])
def test_a_forged_secret_is_refused(tmp_path, headers):
    with pytest.raises(SignatureError):
        side(tmp_path).verify(request("reply", headers={"content-type": "application/json", **headers}))


def test_a_missing_secret_is_refused_naming_what_to_send(tmp_path):
    with pytest.raises(SignatureError, match="X-Hub-Callback-Secret"):
        side(tmp_path).verify(request("reply", headers={"content-type": "application/json"}))


def test_basic_auth_whose_password_is_the_secret_verifies(tmp_path):
    side(tmp_path).verify(request("reply", headers={"authorization": basic("hub", SECRET)}))


def test_there_is_no_replay_window_to_check_freshdesk_sends_no_time(tmp_path):
    """Freshdesk signs no timestamp, so an old request with the secret still verifies: what
    protects the customer is the read-back (a replayed reply finds the conversation already sent)."""
    late = request("reply")
    late = CallbackRequest(method="POST", hook=None, headers=late.headers, query={}, body=late.body,
                           received_at=datetime(2027, 1, 1, tzinfo=timezone.utc))
    side(tmp_path).verify(late)


# --- parse -----------------------------------------------------------------------------------------


def test_a_reply_callback_is_a_hint_to_read_back(tmp_path):
    parsed = side(tmp_path).parse(request("reply"))
    assert not parsed.ignored and not parsed.unhandled
    [reply] = parsed.items
    assert isinstance(reply, AgentReply)
    assert (reply.destination, reply.ticket, reply.confirmed, reply.text) == ("helpdesk", "43", False, None)
    assert reply.author.email == "maria.lopez@acme.example"
    assert reply.received_at == RECEIVED


def test_a_retried_reply_callback_is_a_new_hint_but_reads_back_the_same_conversation(tmp_path):
    """Two replies of the same agent render the same body, so the hint's id cannot dedupe them:
    the conversation id the read-back gives is the reply's idempotency key."""
    callbacks = side(tmp_path)
    first = callbacks.parse(request("reply")).items[0]
    again = request("reply")
    again = CallbackRequest(method="POST", hook=None, headers=again.headers, query={}, body=again.body,
                            received_at=datetime(2026, 1, 1, 0, 5, 30, tzinfo=timezone.utc))
    assert callbacks.parse(again).items[0].event_id != first.event_id
    assert callbacks.parse(request("reply")).items[0].event_id == first.event_id


@pytest.mark.parametrize("fixture, state, vendor_status, priority", [
    ("status_resolved", "closed", "Resolved", "medium"),
    ("status_reopened", "open", "Open", "high"),
    ("status_custom", None, "Awaiting customer", "low"),
])
def test_status_callbacks_map_freshdesk_status_names(tmp_path, fixture, state, vendor_status, priority):
    [change] = side(tmp_path).parse(request(fixture)).items
    assert isinstance(change, CaseStatusChange)
    assert (change.ticket, change.state, change.vendor_status, change.priority) == ("43", state, vendor_status,
                                                                                   priority)


def test_status_assignee_is_the_agent_and_empty_placeholders_are_absent(tmp_path):
    callbacks = side(tmp_path)
    assert callbacks.parse(request("status_resolved")).items[0].assignee == "maria.lopez@acme.example"
    assert callbacks.parse(request("status_custom")).items[0].assignee is None


@pytest.mark.parametrize("status, state", [
    ("2", "open"), ("3", "open"), ("4", "closed"), ("5", "closed"), ("pending", "open"), ("CLOSED", "closed"),
    ("12", "open"), ("13", "closed"), ("Awaiting customer", "open"), ("Done elsewhere", None),
    ("", None), ("{{ticket.status}}", None),
])
def test_status_ids_and_names_with_custom_statuses(tmp_path, status, state):
    callbacks = side(tmp_path, closed_statuses=[4, 5, 13], status_names={"Awaiting customer": 12})
    body = json.dumps({"event": "status", "ticket_id": "43", "status": status}).encode()
    assert callbacks.parse(request("status_resolved", body=body)).items[0].state == state


def test_by_default_only_resolved_and_closed_close(tmp_path):
    callbacks = side(tmp_path)
    assert [callbacks.state_of(s) for s in ("2", "3", "4", "5", "13")] == ["open", "open", "closed", "closed", "open"]


def test_an_unknown_event_is_kept_raw(tmp_path):
    parsed = side(tmp_path).parse(request("unknown_event"))
    assert not parsed.items
    [unhandled] = parsed.unhandled
    assert "Customer feedback received" in unhandled.reason


@pytest.mark.parametrize("body, field", [
    (b"ticket_id=43", "body"),
    (b"[1, 2]", "body"),
    (b'{"event": "reply"}', "ticket_id"),
    (b'{"event": "reply", "ticket_id": "{{ticket.id}}"}', "ticket_id"),
    (b'{"event": "reply", "ticket_id": "43; DROP"}', "ticket_id"),
    (b'{"event": "status", "ticket_id": true}', "ticket_id"),
])
def test_a_body_that_is_not_the_template_is_malformed_naming_the_field(tmp_path, body, field):
    with pytest.raises(MalformedPayloadError, match=field):
        side(tmp_path).parse(request("reply", body=body))


def test_a_ticket_id_is_the_string_the_connector_stores_as_case_ref(tmp_path):
    body = json.dumps({"event": "reply", "ticket_id": 43}).encode()
    assert side(tmp_path).parse(request("reply", body=body)).items[0].ticket == "43"
    body = json.dumps({"event": "reply", "ticket_id": "#043"}).encode()
    assert side(tmp_path).parse(request("reply", body=body)).items[0].ticket == "43"


def test_a_case_id_placeholder_becomes_the_hint_and_an_unrendered_one_is_dropped(tmp_path):
    callbacks = side(tmp_path)
    body = json.dumps({"event": "reply", "ticket_id": "43", "case_id": "cs_01JD0000000000000000000001"}).encode()
    assert callbacks.parse(request("reply", body=body)).items[0].case_id == "cs_01JD0000000000000000000001"
    body = json.dumps({"event": "status", "ticket_id": "43", "case_id": "{{ticket.cf_hub_case_id}}"}).encode()
    assert callbacks.parse(request("reply", body=body)).items[0].case_id is None


# --- confirm ---------------------------------------------------------------------------------------


def conversations_api(*conversations) -> FakeApi:
    return FakeApi({("GET", "/api/v2/tickets/43/conversations"): list(conversations)})


def test_confirm_relays_the_newest_public_agent_conversation(tmp_path):
    api = conversations_api(*CONVERSATIONS)
    callbacks = side(tmp_path, api)
    confirmed = callbacks.confirm(hint(tmp_path))
    assert isinstance(confirmed, AgentReply) and confirmed.confirmed
    assert (confirmed.event_id, confirmed.comment_id, confirmed.author.id) == ("3000000002", "3000000002", "42")
    assert confirmed.text == "We are on it.\nYour replacement ships today."
    assert confirmed.occurred_at == datetime(2026, 1, 1, 0, 0, 20, tzinfo=timezone.utc)
    [attachment] = confirmed.attachments
    assert (attachment.filename, attachment.content_type, attachment.size) == ("label.pdf", "application/pdf", 20480)
    assert attachment.url.startswith("https://s3.amazonaws.com/cdn.freshdesk.com/")
    assert api.calls == [("GET", "/api/v2/tickets/43/conversations?per_page=100&page=1", None)]


def test_the_text_falls_back_to_the_html_body(tmp_path):
    reply = {**AGENT_REPLY, "body_text": ""}
    confirmed = side(tmp_path, conversations_api(reply)).confirm(hint(tmp_path))
    assert confirmed.text == "We are on it.\nYour replacement ships today."


@pytest.mark.parametrize("conversation, reason", [
    (PRIVATE_NOTE, "private note"),
    (CUSTOMER_NOTE, "private note"),
    ({**CUSTOMER_NOTE, "private": False}, "incoming"),
    (HUB_ECHO, "hub's own user 7"),
    ({**HUB_ECHO, "user_id": 42}, "hub's own comment for ct_01JD0000000000000000000077"),
    ({**CUSTOMER_NOTE, "private": False, "incoming": False, "user_id": 42}, "ct_01JD0000000000000000000009"),
    ({**AGENT_REPLY, "source": 8}, "source 8"),
], ids=["private", "customer", "incoming", "hub-user", "echo-marker", "contact-footer", "forward"])
def test_confirm_never_relays_notes_the_customers_messages_or_the_hubs_own(tmp_path, conversation, reason):
    result = side(tmp_path, conversations_api(conversation)).confirm(hint(tmp_path))
    assert isinstance(result, str) and reason in result


def test_a_reply_is_found_behind_newer_notes_and_echoes(tmp_path):
    """A private note or the hub's outbound note written after the reply does not hide it."""
    confirmed = side(tmp_path, conversations_api(*CONVERSATIONS)).confirm(hint(tmp_path))
    assert confirmed.event_id == str(AGENT_REPLY["id"])


def test_two_quick_replies_each_relay_their_own_conversation(tmp_path):
    second = {**AGENT_REPLY, "id": 3000000005, "body_text": "Tracking: 1Z999", "attachments": [],
              "created_at": "2026-01-01T00:01:30Z"}
    callbacks = side(tmp_path, conversations_api(*CONVERSATIONS, second))
    assert callbacks.confirm(hint(tmp_path)).event_id == "3000000002"
    later = hint(tmp_path, received_at=datetime(2026, 1, 1, 0, 1, 31, tzinfo=timezone.utc))
    assert callbacks.confirm(later).event_id == "3000000005"


def test_conversations_are_read_page_by_page_to_the_newest(tmp_path):
    page = [{**PRIVATE_NOTE, "id": 4000000000 + i} for i in range(100)]

    class Pages(FakeApi):
        def call(self, method, path, **kwargs):
            self.calls.append((method, path, None))
            return VendorResponse(200, page if path.endswith("page=1") else [AGENT_REPLY], {})

    api = Pages()
    assert side(tmp_path, api).confirm(hint(tmp_path)).event_id == "3000000002"
    assert [c[1].rsplit("&", 1)[1] for c in api.calls] == ["page=1", "page=2"]


def test_a_deleted_ticket_relays_nothing(tmp_path):
    api = FakeApi({("GET", "/api/v2/tickets/43/conversations"): (404, {"code": "access_denied"})})
    assert "no longer exists" in side(tmp_path, api).confirm(hint(tmp_path))


def test_a_ticket_without_an_answer_says_so(tmp_path):
    assert "no conversation" in side(tmp_path, conversations_api()).confirm(hint(tmp_path))


def test_an_unreachable_freshdesk_is_retried(tmp_path):
    api = FakeApi({("GET", "/api/v2/tickets/43/"): RetryableDeliveryError("freshdesk answered 503")})
    with pytest.raises(RetryableDeliveryError):
        side(tmp_path, api).confirm(hint(tmp_path))


# --- note ------------------------------------------------------------------------------------------


def test_a_note_is_private_and_html_escaped(tmp_path):
    api = FakeApi({("POST", "/api/v2/tickets/43/notes"): (201, {"id": 3000000099, "private": True})})
    assert side(tmp_path, api).note("43", "Not delivered: <opted out>\nHub message ct_1") == "3000000099"
    [(method, path, body)] = api.calls
    assert body == {"body": "<div>Not delivered: &lt;opted out&gt;<br>Hub message ct_1</div>", "private": True}
    assert FreshdeskCallbacks.takes_notes


def test_a_note_on_a_ticket_reference_that_is_not_an_id_is_refused(tmp_path):
    with pytest.raises(PermanentDeliveryError, match="not a ticket id"):
        side(tmp_path, FakeApi()).note("zen:43", "text")


# --- setup -----------------------------------------------------------------------------------------


def test_setup_prints_both_rules_with_the_url_header_and_body_but_never_the_secret(tmp_path):
    setup = side(tmp_path).setup()
    printed = json.dumps([step.__dict__ for step in setup.steps]) + " ".join(setup.limits)
    assert SECRET not in printed and "fd-callback-secret-2" not in printed
    replies, status, author = setup.steps
    assert replies.values["URL"] == "https://hub.example.com/callbacks/helpdesk"
    assert replies.values["Custom headers"].startswith("X-Hub-Callback-Secret: <the value of env:FD_CALLBACK_NEW")
    assert replies.values["Involves any of these events"] == "Reply is sent"
    assert status.values["Involves any of these events"] == "Status is changed"
    assert json.loads(replies.values["Body"])["event"] == "reply"
    assert json.loads(status.values["Body"]) == {
        "event": "status", "ticket_id": "{{ticket.id}}", "status": "{{ticket.status}}",
        "priority": "{{ticket.priority}}", "agent_email": "{{ticket.agent.email}}",
        "agent_name": "{{ticket.agent.name}}"}
    assert "hub_author_ids" in json.dumps(author.values)
    assert not setup.can_create


def test_an_inline_secret_is_never_printed(tmp_path):
    setup = side(tmp_path, secrets=["inline-secret-value"]).setup()
    printed = json.dumps([step.__dict__ for step in setup.steps])
    assert "inline-secret-value" not in printed and "<your callbacks.secrets value>" in printed


def test_the_printed_body_parses_once_freshdesk_renders_it(tmp_path):
    callbacks = side(tmp_path)
    for event, kind in (("reply", AgentReply), ("status", CaseStatusChange)):
        rendered = callbacks.body_template(event).replace("{{ticket.id}}", "43").replace("{{ticket.status}}", "Closed")
        [item] = callbacks.parse(request("reply", body=rendered.encode())).items
        assert isinstance(item, kind) and item.ticket == "43"


def test_the_case_id_field_joins_the_template(tmp_path):
    callbacks = side(tmp_path)
    callbacks.connector.settings = callbacks.connector.settings.model_copy(update={"case_id_field": "cf_hub_case_id"})
    assert json.loads(callbacks.body_template("reply"))["case_id"] == "{{ticket.cf_hub_case_id}}"


def test_the_rules_cannot_be_created_through_the_api(tmp_path):
    with pytest.raises(ConfigError):
        side(tmp_path).create_setup()


def test_settings_refuse_an_empty_closed_status_list(tmp_path):
    with pytest.raises(ValidationError, match="closed_statuses"):
        side(tmp_path, closed_statuses=[])
