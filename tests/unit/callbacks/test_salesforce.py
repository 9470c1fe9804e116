"""Salesforce callbacks: the Flow HTTP Callout bodies of tests/fixtures/callbacks/salesforce/,
verified by the External Credential's secret header, parsed into replies and status changes, the
CaseComment re-read, the private-comment note and the printed setup, against a scripted HTTP fake."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from chalicelib.adapters.callbacks.base import CallbackRequest
from chalicelib.adapters.callbacks.salesforce import SECRET_HEADER, SalesforceCallbacks, record_id
from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.adapters.connectors.http import HttpClient, HttpResponse
from chalicelib.adapters.connectors.salesforce import SalesforceConnector, SalesforceSettings
from chalicelib.domain.models import AgentReply, CaseStatusChange
from chalicelib.errors import (
    ConfigError,
    MalformedPayloadError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    SignatureError,
)
from chalicelib.secrets import SecretResolver
from tests.support.fakes import sample_job
from tests.support.fixtures import load

SECRET = "sf-hub-callback-secret-2026"
NEW_SECRET = "sf-hub-callback-secret-2027"
ORG = "00D5g000004SXyZEAW"
CASE = "5005g00000Ab1CdAAJ"
AGENT = "0055g00000Ag3NtAAJ"
HUB_USER = "0055g00000Hub01AAB"
BASE = "https://acme.my.salesforce.com"
API = "/services/data/v60.0/sobjects"
RECEIVED = datetime(2026, 1, 1, 0, 5, 30, tzinfo=UTC)
ENVIRON = {"SF_TOKEN": "00Dhub!token", "SF_CALLBACK": SECRET, "SF_CALLBACK_NEW": NEW_SECRET}


class ScriptedHttp(HttpClient):
    """Answers (method, path) from a table; keeps what it was sent."""

    def __init__(self, answers: dict[tuple[str, str], tuple[int, object]] | None = None) -> None:
        super().__init__()
        self.answers = answers or {}
        self.sent: list[tuple[str, str, dict | None]] = []

    def request(self, method, url, *, headers=None, body=None, timeout=None) -> HttpResponse:
        path = url.removeprefix(BASE)
        self.sent.append((method, path, json.loads(body) if body else None))
        status, data = self.answers.get((method, path), (404, [{"errorCode": "NOT_FOUND", "message": "no"}]))
        return HttpResponse(status, {"content-type": "application/json"}, json.dumps(data).encode())


def side(http: ScriptedHttp | None = None, tmp_path=None, **callbacks) -> SalesforceCallbacks:
    settings = SalesforceSettings.model_validate({
        "base_url": BASE, "auth": {"type": "bearer", "token": "env:SF_TOKEN"}, "use_instance_url": False,
        "callbacks": {"secrets": ["env:SF_CALLBACK"], "hub_author_ids": [HUB_USER], "organization_id": ORG,
                      "public_url": "https://hub.example.com/callbacks/salesforce", **callbacks},
    })
    runtime = ConnectorRuntime(data_dir=str(tmp_path or "."), http=http or ScriptedHttp())
    connector = SalesforceConnector("salesforce", settings, SecretResolver(ENVIRON), runtime)
    found = connector.callback_side()
    assert isinstance(found, SalesforceCallbacks)
    return found


def request(name: str | None = None, *, body: bytes | None = None, headers: dict | None = None) -> CallbackRequest:
    fixture = load("callbacks/salesforce", name) if name else None
    return CallbackRequest(
        method="POST", hook=None, query={},
        headers=headers if headers is not None else (fixture.headers if fixture else
                                                     {"content-type": "application/json",
                                                      SECRET_HEADER.lower(): SECRET}),
        body=body if body is not None else fixture.body, received_at=RECEIVED,
    )


def body_of(name: str, **changes) -> bytes:
    payload = json.loads(load("callbacks/salesforce", name).body)
    payload.update(changes)
    return json.dumps({k: v for k, v in payload.items() if v is not None}).encode()


# --- record ids ------------------------------------------------------------------------------------


def test_record_ids_take_their_18_character_form():
    # Salesforce's own example pair of a 15- and 18-character id.
    assert record_id("001A0000006Vm9r") == "001A0000006Vm9rIAC"
    assert record_id("001A0000006Vm9rIAC") == "001A0000006Vm9rIAC"
    assert record_id("001A0000006Vm9riac") == "001A0000006Vm9rIAC"
    assert record_id("5005g00000Ab1Cd") == CASE
    for bad in ("", "500", "5005g00000Ab1Cd-", "5005g00000Ab1CdAA", None, 5005):
        assert record_id(bad) is None


# --- verify ----------------------------------------------------------------------------------------


def test_the_flows_secret_header_is_accepted():
    side().verify(request("comment_published"))


@pytest.mark.parametrize("headers, problem", [
    ({"content-type": "application/json", SECRET_HEADER.lower(): "guessed"}, "does not match"),
    ({"content-type": "application/json", SECRET_HEADER.lower(): SECRET + " "}, "does not match"),
    ({"content-type": "application/json"}, "missing"),
    ({"content-type": "application/json", SECRET_HEADER.lower(): ""}, "missing"),
    ({"content-type": "application/json", "authorization": f"Bearer {SECRET}"}, "missing"),
])
def test_a_forged_or_missing_secret_is_refused(headers, problem):
    with pytest.raises(SignatureError, match=problem):
        side().verify(request("comment_published", headers=headers))


def test_during_a_rotation_both_secrets_are_accepted():
    rotating = side(secrets=["env:SF_CALLBACK_NEW", "env:SF_CALLBACK"])
    for secret in (SECRET, NEW_SECRET):
        rotating.verify(request("comment_published", headers={SECRET_HEADER.lower(): secret}))
    with pytest.raises(SignatureError):
        side().verify(request("comment_published", headers={SECRET_HEADER.lower(): NEW_SECRET}))


def test_a_replayed_callback_carries_the_same_event_ids_so_it_changes_things_once():
    # Salesforce signs no timestamp, so there is no replay window: a stale or replayed body is
    # recognised by its ids (the CaseComment id; the Case id with LastModifiedDate).
    for name in ("comment_published", "case_closed"):
        first = side().parse(request(name)).items[0]
        again = side().parse(request(name)).items[0]
        assert first.dedupe_key == again.dedupe_key


def test_a_body_from_another_org_is_refused_even_with_the_secret():
    with pytest.raises(SignatureError, match="OrganizationId"):
        side().parse(request(body=body_of("comment_published", OrganizationId="00D5g000009ZZZZ")))


def test_the_org_id_matches_in_its_15_character_form_and_is_not_required_in_the_body():
    assert side().parse(request("comment_hint")).items  # OrganizationId 00D5g000004SXyZ
    assert side().parse(request(body=body_of("comment_published", OrganizationId=None))).items
    assert side(organization_id=None).parse(request(body=body_of("comment_published",
                                                                 OrganizationId="00D5g000009ZZZZ"))).items


# --- parse: replies --------------------------------------------------------------------------------


def test_a_published_comment_is_a_confirmed_reply_on_the_case_the_connector_stores():
    http = ScriptedHttp({
        ("PATCH", f"{API}/Contact/Hub_Customer_Id__c/{sample_job().customer.id}"): (201, {"id": "0035g00000Zz1AbAAJ"}),
        ("POST", f"{API}/Case/"): (201, {"id": CASE, "success": True, "errors": []}),
    })
    callbacks = side(http)
    stored = callbacks.connector.deliver(sample_job(destination="salesforce")).case_ref

    parsed = callbacks.parse(request("comment_published"))

    [reply] = parsed.items
    assert isinstance(reply, AgentReply)
    assert reply.ticket == stored == CASE
    assert (reply.event_id, reply.comment_id) == ("00a5g00000Xy9ZqAAJ", "00a5g00000Xy9ZqAAJ")
    assert reply.text == "Hi Ana, your replacement ships today. Tracking: https://track.example.com/1Z999"
    assert reply.author.id == AGENT and reply.confirmed is True
    assert reply.occurred_at == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert reply.destination == "salesforce" and reply.received_at == RECEIVED
    assert parsed.ignored == [] and parsed.unhandled == []


def test_an_internal_comment_is_ignored():
    parsed = side().parse(request("comment_internal"))
    assert parsed.items == [] and parsed.ignored == ["internal CaseComment (IsPublished false)"]


def test_published_as_text_false_is_internal_too():
    parsed = side().parse(request(body=body_of("comment_published", IsPublished="false")))
    assert parsed.items == [] and parsed.ignored


def test_the_hubs_own_outbound_comment_is_ignored():
    parsed = side().parse(request("comment_echo"))
    assert parsed.items == [] and parsed.ignored == [f"comment by the hub's own user {HUB_USER}"]


def test_an_echo_is_recognised_by_its_marker_or_contact_line_whoever_wrote_it():
    marked = body_of("comment_echo", CreatedById=AGENT)
    customer = body_of("comment_published", CommentBody="Hi, my parcel is late\n\nHub: contact ct_01JD0000000000000000000009, case cs_1")
    assert side().parse(request(body=marked)).ignored == ["the hub's own comment for ct_01JD0000000000000000000001"]
    assert side().parse(request(body=customer)).ignored == ["the hub's own comment for ct_01JD0000000000000000000009"]


def test_the_integration_user_matches_in_its_15_character_form():
    parsed = side(hub_author_ids=["0055g00000Hub01"]).parse(request(body=body_of("comment_published",
                                                                                  CreatedById=HUB_USER)))
    assert parsed.items == [] and parsed.ignored


def test_a_body_without_the_published_flag_author_or_text_is_a_hint_to_re_read():
    for name, changes in (("comment_hint", {}), ("comment_published", {"IsPublished": None}),
                          ("comment_published", {"CreatedById": None}), ("comment_published", {"CommentBody": None})):
        [reply] = side().parse(request(body=body_of(name, **changes))).items
        assert reply.confirmed is False, changes
        assert reply.ticket == CASE


def test_a_comment_without_record_ids_is_kept_raw_naming_the_field():
    for field in ("Id", "ParentId"):
        parsed = side().parse(request(body=body_of("comment_published", **{field: "not-an-id"})))
        assert parsed.items == [] and f"CaseComment.{field}" in parsed.unhandled[0].reason
        assert parsed.unhandled[0].provider == "callback:salesforce"


# --- parse: status -----------------------------------------------------------------------------------


def test_a_closed_case_closes():
    [change] = side().parse(request("case_closed")).items
    assert isinstance(change, CaseStatusChange)
    assert (change.ticket, change.state, change.vendor_status) == (CASE, "closed", "Closed")
    assert (change.assignee, change.priority) == (AGENT, "High")
    assert change.occurred_at == datetime(2026, 1, 1, 0, 10, tzinfo=UTC)


def test_a_reopened_case_is_open_with_its_queue_and_the_rest_api_time_format():
    [change] = side().parse(request("case_reopened")).items
    assert (change.state, change.vendor_status, change.priority) == ("open", "Working", "Medium")
    assert change.assignee == "00G5g00000Q1tRsEAJ"
    assert change.occurred_at == datetime(2026, 1, 1, 0, 20, tzinfo=UTC)


@pytest.mark.parametrize("changes, closed_statuses, state", [
    ({"IsClosed": None, "Status": "Closed"}, None, "closed"),
    ({"IsClosed": None, "Status": "Resolved"}, None, "open"),
    ({"IsClosed": None, "Status": "resolved"}, ["Closed", "Resolved"], "closed"),
    ({"IsClosed": True, "Status": "Working"}, None, "closed"),
    ({"IsClosed": "false", "Status": "Closed"}, None, "open"),
    ({"IsClosed": None, "Status": None}, None, None),
])
def test_is_closed_decides_else_the_closed_statuses(changes, closed_statuses, state):
    callbacks = side(**({"closed_statuses": closed_statuses} if closed_statuses else {}))
    [change] = callbacks.parse(request(body=body_of("case_closed", **changes))).items
    assert change.state == state


def test_each_change_of_a_case_is_its_own_event():
    closed = side().parse(request("case_closed")).items[0]
    later = side().parse(request(body=body_of("case_closed", LastModifiedDate="2026-01-01T00:30:00.000Z"))).items[0]
    owner = side().parse(request(body=body_of("case_closed", OwnerId="0055g00000Zz9YxAAJ"))).items[0]
    assert len({closed.event_id, later.event_id, owner.event_id}) == 3


def test_a_case_without_its_change_time_is_kept_raw():
    parsed = side().parse(request(body=body_of("case_closed", LastModifiedDate=None)))
    assert parsed.items == [] and "LastModifiedDate" in parsed.unhandled[0].reason


def test_the_object_is_told_by_its_fields_when_sobject_is_left_out():
    assert isinstance(side().parse(request(body=body_of("case_closed", sobject=None))).items[0], CaseStatusChange)
    assert isinstance(side().parse(request(body=body_of("comment_published", sobject=None))).items[0], AgentReply)


def test_an_unknown_object_is_kept_raw():
    parsed = side().parse(request("other_sobject"))
    assert parsed.items == [] and "'Task'" in parsed.unhandled[0].reason
    assert parsed.unhandled[0].raw["Subject"] == "Call the customer back"


def test_several_records_in_one_body():
    body = b"[" + load("callbacks/salesforce", "comment_published").body + b"," + \
        load("callbacks/salesforce", "case_closed").body + b"]"
    assert [item.kind for item in side().parse(request(body=body)).items] == ["agent_reply", "case_status"]


@pytest.mark.parametrize("body", [b"", b"<soapenv:Envelope/>", b'"text"', b"[]", b"[1]", b"\xff"])
def test_a_body_that_is_not_a_flow_record_is_malformed(body):
    with pytest.raises(MalformedPayloadError):
        side().parse(request(body=body))


def test_the_answer_is_the_json_the_callout_action_was_given_as_sample():
    callbacks = side()
    answer = callbacks.ack(callbacks.parse(request("comment_published")))
    assert (answer.status, answer.content_type, json.loads(answer.body)) == (200, "application/json",
                                                                              {"received": True})


# --- confirm -----------------------------------------------------------------------------------------

COMMENT_PATH = f"{API}/CaseComment/00a5g00000Xy9ZsAAJ"


def stored_comment(**changes) -> dict:
    record = {"attributes": {"type": "CaseComment", "url": COMMENT_PATH}, "Id": "00a5g00000Xy9ZsAAJ",
              "ParentId": CASE, "IsPublished": True, "CommentBody": "  Your parcel is on its way.  ",
              "CreatedById": AGENT, "CreatedDate": "2026-01-01T00:07:00.000+0000", "IsDeleted": False}
    record.update(changes)
    return record


def hinted(http: ScriptedHttp) -> tuple[SalesforceCallbacks, AgentReply]:
    callbacks = side(http)
    return callbacks, callbacks.parse(request("comment_hint")).items[0]


def test_a_hint_is_re_read_and_confirmed():
    http = ScriptedHttp({("GET", COMMENT_PATH): (200, stored_comment())})
    callbacks, reply = hinted(http)

    confirmed = callbacks.confirm(reply)

    assert isinstance(confirmed, AgentReply) and confirmed.confirmed is True
    assert (confirmed.text, confirmed.author.id) == ("Your parcel is on its way.", AGENT)
    assert confirmed.occurred_at == datetime(2026, 1, 1, 0, 7, tzinfo=UTC)
    assert confirmed.event_id == reply.event_id == "00a5g00000Xy9ZsAAJ"
    assert http.sent == [("GET", COMMENT_PATH, None)]


@pytest.mark.parametrize("stored, status, reason", [
    (stored_comment(IsPublished=False), 200, "internal CaseComment"),
    (stored_comment(CreatedById=HUB_USER), 200, "hub's own user"),
    (stored_comment(CommentBody="ok\n[hub:ct_01JD0000000000000000000001]"), 200, "hub's own comment"),
    (stored_comment(ParentId="5005g00000Zz9YxAAJ"), 200, "another Case"),
    ([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}], 404, "no longer exists"),
])
def test_a_re_read_that_is_internal_the_hubs_own_elsewhere_or_gone_is_not_relayed(stored, status, reason):
    callbacks, reply = hinted(ScriptedHttp({("GET", COMMENT_PATH): (status, stored)}))
    outcome = callbacks.confirm(reply)
    assert isinstance(outcome, str) and reason in outcome


def test_a_re_read_salesforce_cannot_answer_now_is_retried():
    callbacks, reply = hinted(ScriptedHttp({("GET", COMMENT_PATH): (503, [{"errorCode": "SERVER_UNAVAILABLE"}])}))
    with pytest.raises(RetryableDeliveryError):
        callbacks.confirm(reply)


# --- note ----------------------------------------------------------------------------------------------


def test_a_failure_note_is_a_private_case_comment_within_4000_bytes():
    http = ScriptedHttp({("POST", f"{API}/CaseComment/"): (201, {"id": "00a5g00000Nt1AbAAJ", "success": True})})
    callbacks = side(http)
    assert callbacks.takes_notes is True

    note_id = callbacks.note(CASE, "Not delivered: the customer opted out. " + "é" * 3000)

    [(method, path, sent)] = http.sent
    assert (method, path, note_id) == ("POST", f"{API}/CaseComment/", "00a5g00000Nt1AbAAJ")
    assert sent["ParentId"] == CASE and sent["IsPublished"] is False
    assert sent["CommentBody"].startswith("Not delivered") and len(sent["CommentBody"].encode()) <= 4000


def test_a_note_for_a_ticket_that_is_not_a_case_id_is_refused_without_a_call():
    http = ScriptedHttp()
    with pytest.raises(PermanentDeliveryError, match="not a Case id"):
        side(http).note("../Account/001", "text")
    assert http.sent == []


# --- setup and settings ------------------------------------------------------------------------------


def test_setup_prints_the_credential_header_and_both_flow_bodies():
    printed = side().setup()
    values = {step.title: step.values for step in printed.steps}

    assert values["External Credential"]["Custom Header"] == \
        f"Name {SECRET_HEADER}, Value {{!$Credential.HubCallbacks.Secret}}"
    assert values["Named Credential"]["URL"] == "https://hub.example.com"
    comment = values["Flow 1: published CaseComments"]
    case = values["Flow 2: Case status, owner and priority"]
    assert "URL path /callbacks/salesforce" in comment["Action"] and "/callbacks/salesforce" in case["Action"]
    assert json.loads(comment["Body assignment"])["ParentId"] == "{!$Record.ParentId}"
    assert set(json.loads(comment["Sample request (JSON)"])) == {"sobject", "OrganizationId", "Id", "ParentId",
                                                                 "CommentBody", "IsPublished", "CreatedById",
                                                                 "CreatedDate"}
    assert set(json.loads(case["Body assignment"])) == {"sobject", "OrganizationId", "Id", "Status", "IsClosed",
                                                        "OwnerId", "Priority", "LastModifiedDate"}
    # The samples the wizard is given parse as the hub reads them.
    for sample in (comment["Sample request (JSON)"], case["Sample request (JSON)"]):
        assert side(organization_id=None).parse(request(body=sample.encode())).items
    assert printed.can_create is False and any("Attachments" in limit for limit in printed.limits)
    with pytest.raises(ConfigError):
        side().create_setup()


def test_setup_without_a_public_url_names_the_placeholder():
    values = {s.title: s.values for s in side(public_url=None).setup().steps}
    assert values["Named Credential"]["URL"] == "https://<your-api>"


@pytest.mark.parametrize("changes, field", [
    ({"organization_id": "005000000000001"}, "organization_id"),
    ({"organization_id": "00Dshort"}, "organization_id"),
    ({"closed_statuses": [" "]}, "closed_statuses"),
    ({"closed_statuses": []}, "closed_statuses"),
])
def test_bad_settings_name_the_field(changes, field):
    with pytest.raises(ValidationError, match=field):
        side(**changes)


def test_the_organization_id_is_kept_in_its_18_character_form():
    assert side(organization_id="00D5g000004SXyZ").settings.organization_id == ORG
