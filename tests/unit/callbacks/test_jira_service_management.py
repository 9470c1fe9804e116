"""Jira Service Management callbacks: the signed admin webhook read into agent replies and ticket
changes, the internal failure note, and the webhook the hub registers.

Fixtures: tests/fixtures/callbacks/jira_service_management/ (README names the sources). Every
signature here is computed with `hmac` in the test, never with the hub's code."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from chalicelib.adapters.callbacks.base import CallbackRequest
from chalicelib.adapters.callbacks.jira_service_management import (
    JiraServiceManagementCallbacks,
    comment_text,
)
from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.adapters.connectors.http import HttpResponse
from chalicelib.adapters.connectors.jira_service_management import JiraServiceManagementConnector
from chalicelib.domain.models import AgentReply, CaseStatusChange
from chalicelib.errors import ConfigError, MalformedPayloadError, SignatureError
from chalicelib.secrets import SecretResolver
from tests.support.fixtures import load

FIXTURES = "callbacks/jira_service_management"
SECRET = "It's a Secret to Everybody"
OLD_SECRET = "the secret before the rotation"
HUB_USER = "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077"
AGENT = "5b10ac8d82e05b22cc7d4ef5"
RECEIVED = datetime(2026, 1, 1, 0, 2, 5, tzinfo=UTC)
SITE = "https://acme.atlassian.net"
PUBLIC_URL = "https://hub.example.com/callbacks/service-desk"


class FakeHttp:
    """Jira's API: answers in order (`answers`: status, JSON), every request kept."""

    def __init__(self, *answers: tuple[int, object]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, str, dict | None]] = []

    def request(self, method, url, *, headers=None, body=None, timeout=None):
        self.requests.append((method, url.removeprefix(SITE), json.loads(body) if body else None))
        status, data = self.answers.pop(0) if self.answers else (200, {})
        return HttpResponse(status, {"content-type": "application/json"}, json.dumps(data).encode())


def side(http: FakeHttp | None = None, **callbacks) -> JiraServiceManagementCallbacks:
    settings = JiraServiceManagementConnector.Settings.model_validate({
        "base_url": SITE, "auth": {"type": "basic", "username": "hub@acme.com", "password": "token"},
        "service_desk_id": "10", "request_type_id": "25",
        "callbacks": {"secrets": [SECRET], "hub_author_ids": [HUB_USER], **callbacks},
    })
    connector = JiraServiceManagementConnector("service-desk", settings, SecretResolver({}),
                                               ConnectorRuntime(data_dir="/nonexistent", http=http or FakeHttp()))
    found = connector.callback_side()
    assert isinstance(found, JiraServiceManagementCallbacks)
    return found


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def request(body: bytes, headers: dict[str, str]) -> CallbackRequest:
    return CallbackRequest(method="POST", hook=None, headers={k.lower(): v for k, v in headers.items()}, query={},
                           body=body, received_at=RECEIVED)


def fixture(name: str) -> CallbackRequest:
    stored = load(FIXTURES, name)
    return request(stored.body, stored.headers)


def edited(name: str, change) -> CallbackRequest:
    """A fixture's payload changed by `change(payload)`, signed again."""
    stored = load(FIXTURES, name)
    payload = json.loads(stored.body)
    change(payload)
    body = json.dumps(payload, separators=(",", ":")).encode()
    return request(body, {**stored.headers, "x-hub-signature": sign(body)})


# --- verify ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["comment_public", "comment_internal", "comment_echo", "comment_customer",
                                  "comment_updated", "issue_assigned", "issue_resolved", "issue_reopened",
                                  "issue_commented", "worklog_created"])
def test_every_fixture_carries_jiras_signature_of_its_bytes(name):
    stored = load(FIXTURES, name)
    assert stored.headers["x-hub-signature"] == sign(stored.body)
    side().verify(fixture(name))


def test_a_secret_of_the_rotation_list_verifies():
    body = load(FIXTURES, "comment_public").body
    rotated = side(secrets=[OLD_SECRET, SECRET])
    rotated.verify(request(body, {"X-Hub-Signature": sign(body, OLD_SECRET)}))
    rotated.verify(request(body, {"X-Hub-Signature": sign(body, SECRET)}))


@pytest.mark.parametrize("headers, message", [
    ({}, "missing X-Hub-Signature"),
    ({"X-Hub-Signature": ""}, "missing X-Hub-Signature"),
    ({"X-Hub-Signature": sign(b"{}")}, "does not match"),                          # another body's
    ({"X-Hub-Signature": sign(load(FIXTURES, "comment_public").body, "guess")}, "does not match"),
    ({"X-Hub-Signature": sign(load(FIXTURES, "comment_public").body).removeprefix("sha256=")}, "'sha256='"),
    ({"X-Hub-Signature": "sha1=" + "0" * 40}, "'sha256='"),
    ({"X-Hub-Signature-256": sign(load(FIXTURES, "comment_public").body)}, "missing X-Hub-Signature"),
])
def test_forged_or_unsigned_requests_are_refused(headers, message):
    with pytest.raises(SignatureError, match=message):
        side().verify(request(load(FIXTURES, "comment_public").body, headers))


def test_a_changed_byte_breaks_the_signature():
    stored = load(FIXTURES, "comment_internal")
    tampered = stored.body.replace(b'"jsdPublic":false', b'"jsdPublic":true')
    assert tampered != stored.body
    with pytest.raises(SignatureError):
        side().verify(request(tampered, stored.headers))


def test_an_uppercase_hex_signature_is_the_same_signature():
    body = load(FIXTURES, "comment_public").body
    side().verify(request(body, {"X-Hub-Signature": "sha256=" + sign(body).removeprefix("sha256=").upper()}))


# --- parse: comments ------------------------------------------------------------------------------


def test_an_agents_public_comment_is_a_confirmed_reply_on_the_issue_key():
    parsed = side().parse(fixture("comment_public"))

    [reply] = parsed.items
    assert isinstance(reply, AgentReply)
    assert (reply.destination, reply.ticket, reply.case_id) == ("service-desk", "SD-1", "case_01JGZZZZZZZZZZZZZZZZZZZZZZ")
    assert reply.event_id == "comment:10100" and reply.comment_id == "10100"
    assert reply.confirmed is True
    assert (reply.author.id, reply.author.name) == (AGENT, "Mia Krystof")
    assert reply.text == "Hi! Your replacement ships *today*.\nTrack it here: tracking (https://track.example.com/1Z999) [ref 42]"
    assert reply.occurred_at == datetime(2026, 1, 1, 0, 2, tzinfo=UTC)
    assert parsed.ignored == [] and parsed.unhandled == []


def test_the_same_comment_delivered_again_has_the_same_event_id():
    first = side().parse(fixture("comment_public")).items[0]
    retried = side().parse(edited("comment_public", lambda p: None)).items[0]
    stored = load(FIXTURES, "comment_public")
    another_delivery = side().parse(request(stored.body, {**stored.headers, "x-atlassian-webhook-identifier": "other"}))
    assert first.event_id == retried.event_id == another_delivery.items[0].event_id


@pytest.mark.parametrize("name, reason", [
    ("comment_internal", "internal comment"),
    ("comment_echo", f"comment by the hub's own user {HUB_USER}"),
    ("comment_customer", "the customer's own comment"),
    ("comment_updated", "an edited comment is not a new reply"),
    ("issue_commented", "no status, assignee or priority change"),
])
def test_what_is_not_an_agents_new_public_reply_is_ignored_with_its_reason(name, reason):
    parsed = side().parse(fixture(name))
    assert parsed.items == [] and parsed.unhandled == []
    [ignored] = parsed.ignored
    assert reason in ignored


def test_the_hubs_marker_is_an_echo_even_from_an_agents_account():
    def by_agent(payload):
        payload["comment"]["author"]["accountId"] = AGENT
    [ignored] = side().parse(edited("comment_echo", by_agent)).ignored
    assert "the hub's own comment for ct_01JH0000000000000000000001" in ignored


def test_the_customers_message_the_hub_wrote_into_the_issue_is_an_echo():
    def footer(payload):
        payload["comment"]["author"]["accountId"] = AGENT
        payload["comment"]["body"] = "Where is my order?\n\nHub: contact ct_01JH0000000000000000000009, case case_1"
    [ignored] = side().parse(edited("comment_public", footer)).ignored
    assert "ct_01JH0000000000000000000009" in ignored


@pytest.mark.parametrize("change, reason", [
    (lambda p: p["comment"].pop("jsdPublic"), "internal comment"),
    (lambda p: p["comment"].update(visibility={"type": "role", "value": "Service Desk Team"}), "internal comment"),
    (lambda p: p["issue"]["fields"].update(reporter={"accountId": AGENT}), "the customer's own comment"),
    (lambda p: p["comment"].update(body="!screenshot.png|thumbnail! [^invoice.pdf]"), "no text"),
])
def test_a_comment_without_the_public_flag_or_by_the_reporter_is_not_relayed(change, reason):
    [ignored] = side().parse(edited("comment_public", change)).ignored
    assert reason in ignored


def test_an_adf_body_is_read_as_text():
    def adf(payload):
        payload["comment"]["body"] = {"type": "doc", "version": 1, "content": [
            {"type": "paragraph", "content": [
                {"type": "text", "text": "Hello "}, {"type": "mention", "attrs": {"id": AGENT, "text": "@Mia"}},
                {"type": "text", "text": "see "},
                {"type": "text", "text": "the tracking page", "marks": [{"type": "link", "attrs": {"href": "https://t.example/1"}}]},
                {"type": "hardBreak"}, {"type": "text", "text": "Thanks "}, {"type": "emoji", "attrs": {"shortName": ":smile:", "text": "😄"}},
            ]},
            {"type": "bulletList", "content": [
                {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "one"}]}]},
                {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "two"}]}]},
            ]},
        ]}
    [reply] = side().parse(edited("comment_public", adf)).items
    assert reply.text == "Hello see the tracking page (https://t.example/1)\nThanks 😄\n• one\n• two"


@pytest.mark.parametrize("body, text", [
    ("h3. Update\n* shipped\n* tracked", "Update\n• shipped\n• tracked"),
    ("Line one\\\\Line two", "Line one\nLine two"),
    ("Hi [~accountid:5b10ac8d82e05b22cc7d4ef5], mail [us|mailto:help@acme.com] or [https://acme.com]",
     "Hi , mail us (help@acme.com) or https://acme.com"),
    ("{quote}old text{quote}\n{color:red}now{color} {code:java}x = 1{code}", "old text\nnow x = 1"),
    ("Great!Thanks! costs 5\\*3", "Great!Thanks! costs 5*3"),
    ("  \n ", None),
    (None, None),
])
def test_wiki_markup_becomes_plain_text(body, text):
    assert comment_text(body) == text


# --- parse: issue changes -------------------------------------------------------------------------


def test_a_transition_into_the_done_category_closes():
    [change] = side().parse(fixture("issue_resolved")).items
    assert isinstance(change, CaseStatusChange)
    assert (change.ticket, change.state, change.vendor_status) == ("SD-1", "closed", "Resolved")
    assert change.event_id == "changelog:10200"
    assert change.case_id == "case_01JGZZZZZZZZZZZZZZZZZZZZZZ"
    assert change.occurred_at == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert (change.assignee, change.priority) == (None, None)


def test_a_transition_out_of_done_is_open():
    [change] = side().parse(fixture("issue_reopened")).items
    assert (change.state, change.vendor_status, change.event_id) == ("open", "In progress", "changelog:10201")


def test_assignee_and_priority_are_recorded_without_a_state():
    [change] = side().parse(fixture("issue_assigned")).items
    assert (change.state, change.vendor_status, change.assignee, change.priority) == (None, None, "Mia Krystof", "High")


def test_unassigning_is_recorded_as_empty():
    def unassign(payload):
        payload["changelog"]["items"] = [{"field": "assignee", "fieldtype": "jira", "fieldId": "assignee", "from": AGENT,
                                          "fromString": "Mia Krystof", "to": None, "toString": None}]
    [change] = side().parse(edited("issue_assigned", unassign)).items
    assert change.assignee == ""


def test_configured_status_names_decide_instead_of_the_category():
    configured = side(closed_statuses=["Waiting for customer", " resolved "])
    assert configured.parse(fixture("issue_resolved")).items[0].state == "closed"

    def waiting(payload):
        payload["changelog"]["items"][1]["toString"] = "Waiting for customer"
        payload["issue"]["fields"]["status"]["statusCategory"]["key"] = "indeterminate"
    assert configured.parse(edited("issue_resolved", waiting)).items[0].state == "closed"
    assert side().parse(edited("issue_resolved", waiting)).items[0].state == "open"


def test_a_status_without_its_category_is_recorded_but_decides_nothing():
    [change] = side().parse(edited("issue_resolved", lambda p: p["issue"]["fields"].pop("status"))).items
    assert (change.state, change.vendor_status) == (None, "Resolved")


def test_without_a_changelog_id_the_delivery_id_names_the_change():
    [change] = side().parse(edited("issue_resolved", lambda p: p["changelog"].pop("id"))).items
    assert change.event_id == "delivery:0b1c4a5e-7f7e-4d2e-9a31-6c0f1c2d3e46"


def test_without_any_id_a_digest_of_the_event_names_it_the_same_on_a_retry():
    def strip(payload):
        payload["changelog"].pop("id")
    first = edited("issue_resolved", strip)
    bare = request(first.body, {"x-hub-signature": first.headers["x-hub-signature"]})
    once, again = side().parse(bare).items[0], side().parse(bare).items[0]
    assert once.event_id.startswith("digest:") and once.event_id == again.event_id


# --- parse: other bodies --------------------------------------------------------------------------


def test_an_event_the_hub_does_not_follow_is_kept_raw():
    parsed = side().parse(fixture("worklog_created"))
    assert parsed.items == [] and parsed.ignored == []
    [unhandled] = parsed.unhandled
    assert "worklog_created" in unhandled.reason


def test_a_comment_event_without_its_issue_key_is_kept_raw():
    parsed = side().parse(edited("comment_public", lambda p: p["issue"].pop("key")))
    assert parsed.items == [] and "issue.key missing" in parsed.unhandled[0].reason


@pytest.mark.parametrize("body, field", [(b"not json", "not JSON"), (b"[]", "webhookEvent"),
                                         (b'{"issue": {"key": "SD-1"}}', "webhookEvent")])
def test_a_body_that_is_not_a_jira_webhook_is_malformed(body, field):
    with pytest.raises(MalformedPayloadError, match=field):
        side().parse(request(body, {}))


# --- note, setup ----------------------------------------------------------------------------------


def test_a_failure_note_is_an_internal_comment_with_its_brackets_escaped():
    http = FakeHttp((201, {"id": "10400", "body": "…", "public": False}))
    ref = side(http).note("SD-1", "Not delivered: opted out\n\nHub message [ct_1]")
    assert ref == "SD-1/comment/10400"
    assert http.requests == [("POST", "/rest/servicedeskapi/request/SD-1/comment",
                              {"body": "Not delivered: opted out\n\nHub message \\[ct_1\\]", "public": False})]


def test_the_printed_setup_names_the_url_events_and_secret():
    setup = side(public_url=PUBLIC_URL, jql_filter="project = SD").setup()
    values = setup.steps[0].values
    assert values["URL"] == PUBLIC_URL and values["Issue related events (JQL)"] == "project = SD"
    assert values["Events"] == "Comment: created; Issue: updated"
    assert setup.can_create and any("Attachments" in limit for limit in setup.limits)


def test_create_setup_registers_a_signed_webhook_filtered_to_the_desks_project():
    http = FakeHttp((200, []), (200, {"id": "10", "projectId": "10000", "projectKey": "SD", "projectName": "Support"}),
                    (201, {"self": f"{SITE}/rest/webhooks/1.0/webhook/7", "name": "omnichannel hub"}))
    lines = side(http, public_url=PUBLIC_URL).create_setup()

    assert [r[:2] for r in http.requests] == [("GET", "/rest/webhooks/1.0/webhook"),
                                              ("GET", "/rest/servicedeskapi/servicedesk/10"),
                                              ("POST", "/rest/webhooks/1.0/webhook")]
    assert http.requests[2][2] == {"name": "omnichannel hub", "url": PUBLIC_URL,
                                   "events": ["comment_created", "jira:issue_updated"],
                                   "filters": {"issue-related-events-section": 'project = "SD"'},
                                   "excludeBody": False, "secret": SECRET}
    assert lines == [f"Jira webhook 'omnichannel hub' → {PUBLIC_URL}, events comment_created, jira:issue_updated "
                     f"({SITE}/rest/webhooks/1.0/webhook/7)"]


def test_create_setup_creates_nothing_when_a_webhook_already_posts_to_the_hub():
    http = FakeHttp((200, [{"name": "by hand", "url": PUBLIC_URL, "self": f"{SITE}/rest/webhooks/1.0/webhook/3"}]))
    [line] = side(http, public_url=PUBLIC_URL, jql_filter="project = SD").create_setup()
    assert line.startswith("nothing: Jira webhook 'by hand' already posts") and len(http.requests) == 1


def test_create_setup_explains_a_refusal_and_needs_the_public_url():
    with pytest.raises(ConfigError, match="public_url"):
        side().create_setup()
    with pytest.raises(ConfigError, match="Jira administrator"):
        side(FakeHttp((403, {"errorMessages": ["Forbidden"]})), public_url=PUBLIC_URL).create_setup()


def test_bad_callback_settings_name_the_field():
    with pytest.raises(ValidationError, match="callbacks.webhook_name"):
        side(webhook_name="")
    with pytest.raises(ValidationError, match="callbacks.closed_status"):
        side(closed_status=["Done"])
