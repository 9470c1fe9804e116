"""Twilio Flex callbacks: Twilio's signature (computed by Twilio's SDK), Conversations messages and
states, TaskRouter events, the participants check, notes, and the setup through the API."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from pydantic import ValidationError
from twilio.request_validator import RequestValidator

from chalicelib.adapters.callbacks.base import CallbackRequest
from chalicelib.adapters.callbacks.twilio_flex import TwilioFlexCallbacks
from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.adapters.connectors.http import HttpClient, HttpResponse
from chalicelib.adapters.connectors.twilio_flex import TwilioFlexConnector, TwilioFlexSettings
from chalicelib.domain.models import AgentReply, CaseStatusChange
from chalicelib.errors import ConfigError, MalformedPayloadError, PermanentDeliveryError, SignatureError
from chalicelib.secrets import SecretResolver
from tests.support.fixtures import load

URL = "https://hub.example.com/callbacks/flex"
TOKEN = "flex-test-auth-token"
CONVERSATION = "CH" + "c" * 32
TASK = "WT" + "3" * 32
WORKSPACE = "WS" + "1" * 32
SERVICE = "IS" + "b" * 32
RECEIVED = datetime(2026, 1, 1, 0, 30, tzinfo=timezone.utc)
ENVIRON = {"FLEX_TOKEN": TOKEN, "OLD_TOKEN": "previous-auth-token", "API_SECRET": "api-key-secret"}


class ScriptedHttp(HttpClient):
    """Twilio's APIs, played from a script of (status, JSON) answers; remembers the requests."""

    def __init__(self, *answers: tuple[int, object]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[tuple[str, str, bytes]] = []

    def request(self, method, url, *, headers=None, body=None, timeout=None) -> HttpResponse:
        self.sent.append((method, url, body or b""))
        status, data = self.answers.pop(0)
        return HttpResponse(status, {"content-type": "application/json"}, json.dumps(data).encode())


def side(*answers: tuple[int, object], mode: str = "interaction", **callbacks) -> tuple[TwilioFlexCallbacks, ScriptedHttp]:
    http = ScriptedHttp(*answers)
    base = "https://flex-api.twilio.com" if mode == "interaction" else "https://taskrouter.twilio.com"
    settings = TwilioFlexSettings.model_validate({
        "base_url": base, "mode": mode, "workspace_sid": WORKSPACE,
        "auth": {"type": "basic", "username": "SK" + "0" * 32, "password": "env:API_SECRET"},
        "callbacks": {"secrets": ["env:FLEX_TOKEN"], "public_url": URL, **callbacks},
    })
    connector = TwilioFlexConnector("flex", settings, SecretResolver(ENVIRON), ConnectorRuntime(data_dir="/x", http=http))
    return connector.callback_side(), http


def request(name: str, **header_overrides) -> CallbackRequest:
    fixture = load("callbacks/twilio_flex", name)
    headers = {**fixture.headers, **{k.lower(): v for k, v in header_overrides.items()}}
    return CallbackRequest(method="POST", hook=None, headers={k: v for k, v in headers.items() if v is not None},
                           query={}, body=fixture.body, received_at=RECEIVED)


def signed(params: dict[str, str], token: str = TOKEN, url: str = URL) -> CallbackRequest:
    signature = RequestValidator(token).compute_signature(url, params)
    return CallbackRequest(method="POST", hook=None, headers={"content-type": "application/x-www-form-urlencoded",
                                                              "x-twilio-signature": signature},
                           query={}, body=urlencode(params).encode(), received_at=RECEIVED)


def participants(*bindings: dict | None) -> tuple[int, dict]:
    return 200, {"participants": [{"sid": f"MB{i:032d}", "identity": None if b else f"id{i}", "messaging_binding": b}
                                  for i, b in enumerate(bindings)], "meta": {}}


# --- verify ------------------------------------------------------------------------------------------------


def test_a_request_signed_by_twilio_passes():
    callbacks, _ = side()
    callbacks.verify(request("message_agent"))


@pytest.mark.parametrize("change", [
    {"x-twilio-signature": "bm90IHRoZSBzaWduYXR1cmU="},
    {"x-twilio-signature": None},
    {"x-twilio-signature": ""},
])
def test_a_forged_or_unsigned_request_is_refused(change):
    callbacks, _ = side()
    with pytest.raises(SignatureError, match="X-Twilio-Signature"):
        callbacks.verify(request("message_agent", **change))


def test_a_changed_body_breaks_the_signature():
    callbacks, _ = side()
    original = request("message_agent")
    tampered = CallbackRequest(method="POST", hook=None, headers=dict(original.headers), query={},
                               body=original.body.replace(b"technician", b"salesman"), received_at=RECEIVED)
    with pytest.raises(SignatureError):
        callbacks.verify(tampered)


def test_a_signature_for_another_url_is_refused():
    callbacks, _ = side()
    with pytest.raises(SignatureError, match="public_url"):
        callbacks.verify(signed({"EventType": "onMessageAdded"}, url="https://hub.example.com/callbacks/other"))


def test_the_second_token_of_a_rotation_is_accepted_and_an_unknown_one_is_not():
    callbacks, _ = side()
    callbacks.settings = callbacks.settings.model_copy(update={"secrets": ["env:OLD_TOKEN", "env:FLEX_TOKEN"]})
    callbacks.verify(request("task_completed"))
    with pytest.raises(SignatureError):
        callbacks.verify(signed({"EventType": "task.completed"}, token="someone-elses-token"))


def test_the_url_with_the_default_port_verifies_too():
    # Twilio keeps an explicit :443 for some products; the hub accepts both spellings, as the SDK does.
    callbacks, _ = side()
    callbacks.verify(signed({"EventType": "onMessageAdded"}, url="https://hub.example.com:443/callbacks/flex"))


def test_public_url_is_required_and_named():
    with pytest.raises(ValidationError, match=r"callbacks\.public_url"):
        TwilioFlexSettings.model_validate({
            "base_url": "https://taskrouter.twilio.com", "workspace_sid": WORKSPACE,
            "auth": {"type": "basic", "username": "AC" + "a" * 32, "password": "env:X"},
            "callbacks": {"secrets": ["env:FLEX_TOKEN"]}})


@pytest.mark.parametrize("field, value, problem", [
    ("chat_service_sid", "IS123", "Conversation Service SID"),
    ("public_url", "http://hub.example.com/callbacks/flex", "https://"),
    ("hub_author", "", "hub_author"),
])
def test_callback_settings_refuse_bad_values(field, value, problem):
    with pytest.raises(ValidationError, match=problem):
        side(**{field: value})


# --- parse: Conversations ------------------------------------------------------------------------------------


def test_an_agents_message_is_a_reply_on_the_conversation_to_confirm():
    callbacks, _ = side()
    parsed = callbacks.parse(request("message_agent"))

    (reply,) = parsed.items
    assert isinstance(reply, AgentReply)
    assert (reply.ticket, reply.event_id, reply.comment_id) == (CONVERSATION, "IM" + "1" * 32, "IM" + "1" * 32)
    assert reply.text == "Hi Jana, a technician will call you today between 2 and 4 pm."
    assert reply.author.id == "alice_40example_2Ecom"
    assert reply.occurred_at == datetime(2026, 1, 1, 0, 5, tzinfo=timezone.utc)
    assert reply.confirmed is False and not parsed.ignored and not parsed.unhandled


@pytest.mark.parametrize("name, reason", [
    ("message_customer_sms", "customer's own message (via SMS)"),
    ("message_hub_note", "written by the hub"),
    ("message_agent_media_only", "media only"),
    ("conversation_participant_added", "not an event the hub follows"),
])
def test_messages_that_are_not_agent_answers_are_ignored(name, reason):
    callbacks, _ = side()
    parsed = callbacks.parse(request(name))
    assert not parsed.items and not parsed.unhandled
    assert reason in parsed.ignored[0]


@pytest.mark.parametrize("author, source", [
    ("cus_01HZX3", "SDK"),            # the chat identity the connector gives the customer
    ("whatsapp:+16505551234", ""),     # a binding's address, no Source
    ("jana@example.com", "API"),
])
def test_the_customers_own_identity_or_address_is_ignored(author, source):
    callbacks, _ = side()
    params = {"EventType": "onMessageAdded", "ConversationSid": CONVERSATION, "MessageSid": "IM" + "9" * 32,
              "Author": author, "Source": source, "Body": "hello"}
    parsed = callbacks.parse(signed(params))
    assert not parsed.items and "customer's own message" in parsed.ignored[0]


def test_hub_author_ids_and_the_hubs_markers_are_echoes():
    callbacks, _ = side(hub_author_ids=["integration-bot"])
    base = {"EventType": "onMessageAdded", "ConversationSid": CONVERSATION, "Source": "API"}
    by_id = callbacks.parse(signed({**base, "MessageSid": "IM" + "5" * 32, "Author": "integration-bot", "Body": "x"}))
    marked = callbacks.parse(signed({**base, "MessageSid": "IM" + "6" * 32, "Author": "alice",
                                     "Body": "Where is my order?\n\nHub: contact ct_01HZX3, case cs_01"}))
    assert not by_id.items and "integration-bot" in by_id.ignored[0]
    assert not marked.items and "ct_01HZX3" in marked.ignored[0]


def test_a_closed_conversation_closes_and_an_active_one_is_open():
    callbacks, _ = side()
    (closed,) = callbacks.parse(request("conversation_closed")).items
    (active,) = callbacks.parse(request("conversation_active")).items

    assert isinstance(closed, CaseStatusChange)
    assert (closed.ticket, closed.state, closed.vendor_status) == (CONVERSATION, "closed", "closed")
    assert closed.occurred_at == datetime(2026, 1, 1, 0, 10, tzinfo=timezone.utc)
    assert (active.state, active.vendor_status) == ("open", "active")
    assert closed.event_id != active.event_id


def test_a_retried_state_event_keeps_its_id_and_the_older_state_name_reads_too():
    callbacks, _ = side()
    first = callbacks.parse(request("conversation_closed")).items[0]
    again = callbacks.parse(request("conversation_closed")).items[0]
    other_name = callbacks.parse(signed({"EventType": "onConversationStateUpdated", "ConversationSid": CONVERSATION,
                                         "State": "inactive", "DateUpdated": "2026-01-01T00:09:00Z"})).items[0]
    assert first.event_id == again.event_id
    assert (other_name.state, other_name.vendor_status) == (None, "inactive")


# --- parse: TaskRouter ------------------------------------------------------------------------------------------


def test_a_completed_task_closes_its_ticket_with_the_case_hint():
    callbacks, _ = side(mode="taskrouter")
    (change,) = callbacks.parse(request("task_completed")).items

    assert (change.ticket, change.case_id, change.state, change.vendor_status) == (TASK, "cs_01", "closed", "completed")
    assert change.event_id == "EV" + "7" * 32
    assert change.occurred_at == datetime.fromtimestamp(1767226200, tz=timezone.utc)


def test_a_canceled_task_is_recorded_without_closing_and_an_accepted_reservation_names_the_agent():
    callbacks, _ = side(mode="taskrouter")
    (canceled,) = callbacks.parse(request("task_canceled")).items
    (accepted,) = callbacks.parse(request("reservation_accepted")).items

    assert (canceled.state, canceled.vendor_status) == (None, "canceled")
    assert (accepted.state, accepted.vendor_status, accepted.assignee) == (None, "assigned", "alice@example.com")


def test_a_task_of_an_interaction_names_its_conversation():
    callbacks, _ = side()
    attributes = json.dumps({"conversationSid": CONVERSATION, "hub": {"case_id": "cs_02"}})
    (change,) = callbacks.parse(signed({"EventType": "task.completed", "TaskSid": TASK, "TaskAttributes": attributes,
                                        "Timestamp": "1767226200"})).items
    assert (change.ticket, change.case_id) == (CONVERSATION, "cs_02")


def test_a_missing_event_id_derives_the_same_one_each_time():
    callbacks, _ = side(mode="taskrouter")
    params = {"EventType": "task.completed", "TaskSid": TASK, "TaskAttributes": "not json", "Timestamp": "1767226200"}
    first, again = (callbacks.parse(signed(params)).items[0] for _ in range(2))
    assert first.event_id == again.event_id and first.case_id is None


# --- parse: shapes ---------------------------------------------------------------------------------------------


def test_an_unknown_event_type_is_kept_raw():
    callbacks, _ = side()
    parsed = callbacks.parse(signed({"EventType": "Something Else!", "ConversationSid": CONVERSATION}))
    assert not parsed.items and parsed.unhandled[0].reason.startswith("unknown Twilio event type")


@pytest.mark.parametrize("params", [
    {"EventType": "onMessageAdded", "MessageSid": "IM" + "1" * 32, "Body": "x"},
    {"EventType": "onConversationStateUpdated", "ConversationSid": CONVERSATION, "StateTo": "exploded"},
    {"EventType": "task.completed", "TaskSid": "nope"},
])
def test_a_known_event_without_its_ids_is_kept_raw(params):
    callbacks, _ = side()
    parsed = callbacks.parse(signed(params))
    assert not parsed.items and len(parsed.unhandled) == 1


@pytest.mark.parametrize("body", [b"Body=hello", b"\xff\xfe=1"])
def test_a_body_that_is_no_twilio_event_is_malformed(body):
    callbacks, _ = side()
    with pytest.raises(MalformedPayloadError):
        callbacks.parse(CallbackRequest(method="POST", hook=None, headers={}, query={}, body=body, received_at=RECEIVED))


# --- confirm and note --------------------------------------------------------------------------------------------


def reply() -> AgentReply:
    return AgentReply(destination="flex", ticket=CONVERSATION, event_id="IM1", text="hi", confirmed=False)


def test_a_reply_in_a_conversation_the_hub_bridges_is_confirmed():
    callbacks, http = side(participants(None, None))
    confirmed = callbacks.confirm(reply())

    assert isinstance(confirmed, AgentReply) and confirmed.confirmed
    method, url, _ = http.sent[0]
    assert (method, urlsplit(url).netloc, urlsplit(url).path) == (
        "GET", "conversations.twilio.com", f"/v1/Conversations/{CONVERSATION}/Participants")


def test_a_reply_twilio_delivers_itself_is_not_sent_again():
    callbacks, _ = side(participants(None, {"type": "whatsapp", "address": "whatsapp:+16505551234"}))
    assert callbacks.confirm(reply()) == "Twilio delivers this conversation to the customer's whatsapp address itself"


def test_the_service_scoped_path_is_used_when_a_service_is_configured():
    callbacks, http = side(participants(None), chat_service_sid=SERVICE)
    callbacks.confirm(reply())
    assert urlsplit(http.sent[0][1]).path == f"/v1/Services/{SERVICE}/Conversations/{CONVERSATION}/Participants"


def test_a_note_is_a_message_by_the_hub_author_that_only_the_agent_sees():
    callbacks, http = side(participants(None, None), (201, {"sid": "IM" + "8" * 32}))

    assert callbacks.note(CONVERSATION, "Not delivered to the customer: opted out") == "IM" + "8" * 32
    method, url, body = http.sent[1]
    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    assert (method, urlsplit(url).path) == ("POST", f"/v1/Conversations/{CONVERSATION}/Messages")
    assert form["Author"] == "hub" and form["Body"] == "Not delivered to the customer: opted out"
    # The note comes back as onMessageAdded by the hub's author: the hub's own, never relayed.
    note_back = callbacks.parse(request("message_hub_note"))
    assert not note_back.items


def test_no_note_where_it_would_reach_the_customer_or_on_a_task():
    callbacks, http = side(participants({"type": "sms", "address": "+16505551234"}))
    with pytest.raises(PermanentDeliveryError, match="would reach them"):
        callbacks.note(CONVERSATION, "x")
    assert [m for m, _, _ in http.sent] == ["GET"]
    with pytest.raises(PermanentDeliveryError, match="takes no notes"):
        callbacks.note(TASK, "x")


# --- setup ----------------------------------------------------------------------------------------------------------


def test_setup_names_the_url_the_events_and_the_secret():
    callbacks, _ = side(chat_service_sid=SERVICE)
    setup = callbacks.setup()

    conversations, workspace, secret = setup.steps
    assert conversations.values == {"Service": SERVICE, "Post-Event URL": URL, "Method": "POST",
                                    "Post-webhooks (Filters)": "onMessageAdded, onConversationStateUpdated"}
    assert workspace.values["Event Callback URL"] == URL and "task.completed" in workspace.values[
        "Callback Events (EventsFilter)"]
    assert "Auth Token" in secret.values["callbacks.secrets"] and setup.can_create


def test_taskrouter_mode_sets_up_workspace_events_only():
    callbacks, _ = side(mode="taskrouter")
    setup = callbacks.setup()
    assert [s.title.split(" ")[0] for s in setup.steps] == ["TaskRouter", "Signing"]
    assert "POST /v1/messages" in setup.limits[0]


def test_create_setup_configures_the_service_webhook_and_the_workspace_callback():
    callbacks, http = side((200, {"post_webhook_url": None}), (200, {}), (200, {"event_callback_url": None}), (200, {}),
                           chat_service_sid=SERVICE)

    done = callbacks.create_setup()

    assert len(done) == 2
    (_, get_hook, _), (_, post_hook, hook_body), (_, get_ws, _), (_, post_ws, ws_body) = http.sent
    assert urlsplit(post_hook).path == f"/v1/Services/{SERVICE}/Configuration/Webhooks"
    assert urlsplit(post_hook).netloc == "conversations.twilio.com"
    assert parse_qs(hook_body.decode()) == {"PostWebhookUrl": [URL], "Method": ["POST"],
                                            "Filters": ["onMessageAdded", "onConversationStateUpdated"]}
    assert urlsplit(post_ws).path == f"/v1/Workspaces/{WORKSPACE}" and urlsplit(post_ws).netloc == "taskrouter.twilio.com"
    assert parse_qs(ws_body.decode()) == {"EventCallbackUrl": [URL],
                                          "EventsFilter": ["task.completed,task.canceled,task.wrapup,reservation.accepted"]}


def test_create_setup_never_replaces_another_systems_url():
    callbacks, http = side((200, {"event_callback_url": "https://other.example.com/events"}), mode="taskrouter")
    with pytest.raises(ConfigError, match="other.example.com"):
        callbacks.create_setup()
    assert [m for m, _, _ in http.sent] == ["GET"]


def test_create_setup_in_interaction_mode_needs_the_service():
    callbacks, _ = side()
    with pytest.raises(ConfigError, match="callbacks.chat_service_sid"):
        callbacks.create_setup()
