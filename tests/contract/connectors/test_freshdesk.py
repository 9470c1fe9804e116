"""Freshdesk: the shared connector contract, the requests against Prism mocks of the hand-written
Freshdesk spec, and the exact payloads against the scripted Receiver.

The spec (tests/contract/specs/freshdesk/freshdesk-tickets.handwritten.openapi.yaml) covers ticket
create, notes and replies. The opt-in crash-safety lookup uses Filter Tickets
(https://developers.freshdesk.com/api/#filter_tickets), which it lacks, so `extended_spec`
derives a file that adds GET /api/v2/search/tickets: a `query` of at most 512 characters inside
double quotes, answering `{"results": [...], "total": n}`.
"""

from __future__ import annotations

import base64
import copy
import json
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from pydantic import ValidationError

from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.adapters.connectors.echo import marked_contact
from chalicelib.adapters.connectors.freshdesk import FreshdeskConnector
from chalicelib.adapters.connectors.http import HttpClient
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.models import Channel, ExternalRef, Priority
from chalicelib.errors import PermanentDeliveryError
from chalicelib.secrets import SecretResolver
from tests.support.connector_setup import ConnectorSetup
from tests.support.fakes import sample_job
from tests.support.outbound_jobs import OUTBOUND_ID, REPLY, outbound_job
from tests.support.prism import vendor_specs_dir
from tests.support.receiver import Answer, Receiver

SPEC = "freshdesk/freshdesk-tickets.handwritten.openapi.yaml"
ENVIRON = {"FRESHDESK_API_KEY": "fd-api-key"}
NAME = "freshdesk-test"
CUSTOMER = "cus_01JD0000000000000000000001"


def settings(base_url: str, **overrides) -> dict:
    return {"base_url": base_url, "api_key": "env:FRESHDESK_API_KEY", **overrides}


SETUP = ConnectorSetup(
    key="freshdesk",
    settings=settings,
    environ=ENVIRON,
    # Answers both the ticket create (`id`) and the note (`id`, `ticket_id`).
    created_body={"id": 43, "ticket_id": 43, "status": 2, "priority": 3, "source": 7, "requester_id": 129},
    created_ref="43",
)


class RecordingHttp(HttpClient):
    """The real client, keeping each exchange so tests see Prism's `sl-violations`."""

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[tuple[str, str, int, str | None]] = []

    def request(self, method, url, **kwargs):
        response = super().request(method, url, **kwargs)
        self.exchanges.append((method, urlsplit(url).path, response.status, response.headers.get("sl-violations")))
        return response

    @property
    def calls(self) -> list[tuple[str, str, int]]:
        return [(m, p, s) for m, p, s, _ in self.exchanges]

    @property
    def violations(self) -> list[str]:
        return [v for *_, v in self.exchanges if v]


def connector(base_url: str, tmp_path, http: HttpClient | None = None, **overrides) -> FreshdeskConnector:
    parsed = FreshdeskConnector.Settings.model_validate(settings(base_url, **overrides))
    return FreshdeskConnector(NAME, parsed, SecretResolver(ENVIRON),
                              ConnectorRuntime(data_dir=str(tmp_path), http=http or HttpClient()))


def follow_up(ref: str, *, contact_id: str = "ct_2", **job):
    first = sample_job(destination=NAME)
    case = first.case.model_copy(update={"external_refs": {NAME: ExternalRef(destination=NAME, ref=ref)}})
    return sample_job(destination=NAME, contact_id=contact_id, case=case, **job)


def with_identifiers(job, *identifiers: str):
    parsed = [Identifier.parse(i) for i in identifiers]
    return job.model_copy(update={"customer": job.customer.model_copy(update={"identifiers": parsed})})


def with_contact(job, **fields):
    return job.model_copy(update={"contact": job.contact.model_copy(update=fields)})


def with_priority(job, priority: Priority):
    return with_contact(job, routing=job.contact.routing.model_copy(update={"priority": priority}))


def without_name(job):
    customer = job.customer.model_copy(update={"attributes": {}})
    sender = job.contact.sender.model_copy(update={"display_name": None})
    return with_contact(job.model_copy(update={"customer": customer}), sender=sender)


def body(request) -> dict:
    return json.loads(request.body)


def json_answer(status: int, payload) -> Answer:
    return Answer(status, json.dumps(payload).encode(), {"content-type": "application/json"})


CREATED = json_answer(201, {"id": 43, "status": 2, "priority": 3, "source": 7, "requester_id": 129})
NOTE = json_answer(201, {"id": 3000000007, "ticket_id": 43, "private": True})
NOTHING_FOUND = json_answer(200, {"results": [], "total": 0})


@pytest.fixture
def vendor():
    with Receiver() as server:
        yield server


@pytest.fixture
def site(vendor) -> str:
    return vendor.url.rsplit("/hooks", 1)[0]


# --- Prism: the hand-written Freshdesk spec -----------------------------------------------------------

SEARCH_PATH = {"/api/v2/search/tickets": {"get": {
    "operationId": "filterTickets",
    "parameters": [{"name": "query", "in": "query", "required": True,
                    "schema": {"type": "string", "pattern": '^".+"$', "maxLength": 514},
                    "description": "Double-quoted; strings single-quoted inside, e.g. \"cf_x:'v'\""},
                   {"name": "page", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 10}}],
    "responses": {
        "200": {"description": "Matching tickets, 30 a page", "content": {"application/json": {
            "schema": {"type": "object", "required": ["results", "total"], "properties": {
                "results": {"type": "array", "items": {"$ref": "#/components/schemas/Ticket"}}, "total": {"type": "integer"}}},
            "example": {"results": [], "total": 0}}}},
        "400": {"$ref": "#/components/responses/ValidationFailed"},
    },
}}}


@pytest.fixture(scope="module")
def extended_spec(tmp_path_factory) -> str:
    spec = yaml.safe_load((vendor_specs_dir() / SPEC).read_text())
    spec["paths"].update(copy.deepcopy(SEARCH_PATH))
    path = tmp_path_factory.mktemp("freshdesk-spec") / "freshdesk-tickets-extended.openapi.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


@pytest.mark.prism_specs(SPEC)
def test_prism_first_delivery_creates_a_ticket(prism, tmp_path):
    http = RecordingHttp()
    freshdesk = connector(prism(SPEC).url, tmp_path, http, ticket_type="Question", group_id=5,
                          mapping={"custom_fields": {"cf_tier": "customer.attributes.tier"}})

    result = freshdesk.deliver(sample_job(destination=NAME))

    assert http.calls == [("POST", "/api/v2/tickets", 201)]
    assert http.violations == []
    assert (result.case_ref, result.external_ref) == ("1", "1")


@pytest.mark.prism_specs(SPEC)
@pytest.mark.parametrize("identifiers", [("phone:+4915123456789",), ()])
def test_prism_accepts_the_other_requester_identities(prism, tmp_path, identifiers):
    http = RecordingHttp()

    connector(prism(SPEC).url, tmp_path, http).deliver(with_identifiers(sample_job(destination=NAME), *identifiers))

    assert http.calls == [("POST", "/api/v2/tickets", 201)] and http.violations == []


@pytest.mark.prism_specs(SPEC)
def test_prism_follow_up_adds_a_note(prism, tmp_path):
    http = RecordingHttp()

    result = connector(prism(SPEC).url, tmp_path, http).deliver(follow_up("1"))

    assert http.calls == [("POST", "/api/v2/tickets/1/notes", 201)]
    assert http.violations == []
    assert (result.case_ref, result.external_ref) == ("1", "3000000001")


def test_prism_lookup_by_case_field_then_create(prism, extended_spec, tmp_path):
    http = RecordingHttp()

    result = connector(prism(extended_spec).url, tmp_path, http, case_id_field="cf_hub_case_id").deliver(
        sample_job(destination=NAME))

    assert http.calls == [("GET", "/api/v2/search/tickets", 200), ("POST", "/api/v2/tickets", 201)]
    assert http.violations == []
    assert result.case_ref == "1"


# Negative controls (specs/README.md pitfall 1): each spec must refuse what Freshdesk refuses, or the
# tests above prove nothing. Each sends a broken variant of the connector's own request.


@pytest.mark.prism_specs(SPEC)
@pytest.mark.parametrize(("path", "payload", "reason"), [
    ("/api/v2/tickets", {"email": "a@example.com", "subject": "s", "description": "d", "priority": "high"}, "must be integer"),
    ("/api/v2/tickets", {"subject": "s", "description": "d", "status": 2}, "must have required property"),
    ("/api/v2/tickets", {"phone": "+4915123456789", "subject": "s", "description": "d"}, "must have required property 'name'"),
    ("/api/v2/tickets", {"email": "a@example.com", "subject": "s", "description": "d", "source": 4}, "allowed values"),
    ("/api/v2/tickets", {"email": "a@example.com", "subject": "s", "description_html": "d"}, "additional properties"),
    ("/api/v2/tickets/1/notes", {"body": "hi", "private": "yes"}, "must be boolean"),
])
def test_prism_rejects_a_malformed_request(prism, tmp_path, path, payload, reason):
    http = RecordingHttp()

    with pytest.raises(PermanentDeliveryError, match="answered 400"):
        connector(prism(SPEC).url, tmp_path, http).api.call("POST", path, json_body=payload)

    assert reason in (http.violations[0] or "").lower()


@pytest.mark.prism_specs(SPEC)
def test_prism_rejects_a_request_without_credentials(prism, tmp_path):
    freshdesk = connector(prism(SPEC).url, tmp_path, api_key=None,
                          auth={"type": "api_token", "header": "X-Api-Key", "token": "env:FRESHDESK_API_KEY"})

    with pytest.raises(PermanentDeliveryError, match="answered 401"):
        freshdesk.deliver(sample_job(destination=NAME))


def test_prism_extended_spec_rejects_an_unquoted_query(prism, extended_spec, tmp_path):
    http = RecordingHttp()

    with pytest.raises(PermanentDeliveryError, match="answered 400"):
        connector(prism(extended_spec).url, tmp_path, http).api.call("GET", "/api/v2/search/tickets?query=cf_x:1")

    assert "pattern" in (http.violations[0] or "").lower()


# --- payloads against the scripted Receiver ---------------------------------------------------------


def test_first_delivery_creates_an_open_ticket(vendor, site, tmp_path):
    vendor.script = [CREATED]
    job = sample_job(destination=NAME)

    result = connector(site, tmp_path).deliver(job)

    (create,) = vendor.requests
    assert (create.method, create.path) == ("POST", "/api/v2/tickets")
    ticket = body(create)
    assert set(ticket) == {"email", "name", "subject", "description", "status", "priority", "source", "tags"}
    assert (ticket["email"], ticket["name"]) == ("jana.schmidt@example.com", "Jana Schmidt")
    assert ticket["subject"] == f"[whatsapp] {job.contact.text}"
    assert ticket["description"].startswith("<div>Jana Schmidt via whatsapp (meta) at 2026-11-23T09:00:00Z:<br><br>")
    assert f"contact {job.contact.id}" in ticket["description"]
    assert (ticket["status"], ticket["priority"], ticket["source"], ticket["tags"]) == (2, 3, 7, ["outage"])
    assert create.headers["authorization"] == "Basic " + base64.b64encode(b"fd-api-key:X").decode()
    assert (result.case_ref, result.external_ref) == ("43", "43")


def test_basic_auth_settings_work_too(vendor, site, tmp_path):
    vendor.script = [CREATED]

    connector(site, tmp_path, api_key=None,
              auth={"type": "basic", "username": "agent-key", "password": "X"}).deliver(sample_job(destination=NAME))

    assert vendor.requests[0].headers["authorization"] == "Basic " + base64.b64encode(b"agent-key:X").decode()


@pytest.mark.parametrize(("priority", "mapping", "expected"), [
    (Priority.LOW, {}, 1),
    (Priority.NORMAL, {}, 2),
    (Priority.HIGH, {}, 3),
    (Priority.URGENT, {}, 4),
    (Priority.NORMAL, {"normal": 1}, 1),
])
def test_hub_priorities_map_to_freshdesk_codes(vendor, site, tmp_path, priority, mapping, expected):
    vendor.script = [CREATED]

    connector(site, tmp_path, mapping={"priority": mapping}).deliver(with_priority(sample_job(destination=NAME), priority))

    assert body(vendor.requests[0])["priority"] == expected


@pytest.mark.parametrize(("identifiers", "named", "expected"), [
    (("email:jana.schmidt@example.com", "phone:+4915123456789"), True,
     {"email": "jana.schmidt@example.com", "name": "Jana Schmidt"}),
    (("phone:+4915123456789",), True, {"phone": "+4915123456789", "name": "Jana Schmidt"}),
    (("phone:+4915123456789",), False, {"phone": "+4915123456789", "name": "+4915123456789"}),
    ((), True, {"unique_external_id": CUSTOMER, "name": "Jana Schmidt"}),
    ((), False, {"unique_external_id": CUSTOMER, "name": f"Customer {CUSTOMER}"}),
])
def test_the_requester_is_one_identity_with_a_name(vendor, site, tmp_path, identifiers, named, expected):
    vendor.script = [CREATED]
    job = with_identifiers(sample_job(destination=NAME), *identifiers)

    connector(site, tmp_path).deliver(job if named else without_name(job))

    ticket = body(vendor.requests[0])
    assert {k: ticket[k] for k in ("email", "phone", "unique_external_id", "name") if k in ticket} == expected


@pytest.mark.parametrize(("channel", "sources", "expected"), [
    (Channel.EMAIL, {}, 1),
    (Channel.WEBCHAT, {}, 7),
    (Channel.SMS, {}, None),
    (Channel.X, {}, None),
    (Channel.SMS, {"sms": 3}, 3),
    (Channel.WHATSAPP, {"whatsapp": 2}, 2),
])
def test_the_source_follows_the_channel(vendor, site, tmp_path, channel, sources, expected):
    vendor.script = [CREATED]

    connector(site, tmp_path, sources=sources).deliver(with_contact(sample_job(destination=NAME), channel=channel))

    assert body(vendor.requests[0]).get("source") == expected


def test_tags_custom_fields_type_and_group(vendor, site, tmp_path):
    vendor.script = [CREATED]
    freshdesk = connector(site, tmp_path, ticket_type="Incident", group_id=5, mapping={
        "tags": ["omnichannel"], "custom_fields": {"cf_tier": "customer.attributes.tier", "cf_skills": "routing.skills",
                                                   "cf_missing": "customer.attributes.missing"}})

    freshdesk.deliver(sample_job(destination=NAME))

    ticket = body(vendor.requests[0])
    assert ticket["tags"] == ["outage", "omnichannel"]
    assert ticket["custom_fields"] == {"cf_tier": "gold", "cf_skills": '{"german":3}'}
    assert (ticket["type"], ticket["group_id"]) == ("Incident", 5)


def test_the_description_is_escaped_html(vendor, site, tmp_path):
    vendor.script = [CREATED]

    connector(site, tmp_path).deliver(sample_job(destination=NAME, text='<script>alert("x")</script>\nzweite Zeile'))

    description = body(vendor.requests[0])["description"]
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;<br>zweite Zeile" in description
    assert "<script>" not in description


def test_a_follow_up_is_a_private_incoming_note(vendor, site, tmp_path):
    vendor.script = [NOTE]

    result = connector(site, tmp_path).deliver(follow_up("43"))

    (note,) = vendor.requests
    assert (note.method, note.path) == ("POST", "/api/v2/tickets/43/notes")
    sent = body(note)
    assert (sent["private"], sent["incoming"]) == (True, True) and set(sent) == {"body", "private", "incoming"}
    assert "contact ct_2" in sent["body"]
    assert (result.case_ref, result.external_ref) == ("43", "3000000007")


def test_public_notes_are_a_setting(vendor, site, tmp_path):
    vendor.script = [NOTE]

    connector(site, tmp_path, private_notes=False).deliver(follow_up("43"))

    assert body(vendor.requests[0])["private"] is False


def test_a_deleted_ticket_makes_the_case_start_a_new_one(vendor, site, tmp_path):
    vendor.script = [Answer(404), json_answer(201, {"id": 44})]

    result = connector(site, tmp_path).deliver(follow_up("43"))

    assert [(r.method, r.path) for r in vendor.requests] == [("POST", "/api/v2/tickets/43/notes"), ("POST", "/api/v2/tickets")]
    assert result.case_ref == "44"


def test_a_stored_reference_that_is_not_a_ticket_id_is_permanent(vendor, site, tmp_path):
    with pytest.raises(PermanentDeliveryError, match="not a ticket id"):
        connector(site, tmp_path).deliver(follow_up("43/../../contacts"))

    assert vendor.requests == []


def test_without_a_case_field_nothing_is_looked_up(vendor, site, tmp_path):
    vendor.script = [CREATED]

    connector(site, tmp_path).deliver(sample_job(destination=NAME))

    assert [r.method for r in vendor.requests] == ["POST"]


def test_with_a_case_field_the_case_is_searched_for_then_marked_on_the_ticket(vendor, site, tmp_path):
    vendor.script = [NOTHING_FOUND, CREATED]
    job = sample_job(destination=NAME)

    connector(site, tmp_path, case_id_field="cf_hub_case_id").deliver(job)

    search, create = vendor.requests
    assert urlsplit(search.path).path == "/api/v2/search/tickets"
    assert parse_qs(urlsplit(search.path).query) == {"query": [f"\"cf_hub_case_id:'{job.case.id}'\""]}
    assert body(create)["custom_fields"] == {"cf_hub_case_id": job.case.id}


def test_a_retried_first_delivery_finds_its_own_ticket_and_sends_nothing_twice(vendor, site, tmp_path):
    job = sample_job(destination=NAME)
    vendor.script = [json_answer(200, {"total": 1, "results": [
        {"id": 43, "description_text": f"… Hub: contact {job.contact.id}, case {job.case.id} …"}]})]

    result = connector(site, tmp_path, case_id_field="cf_hub_case_id").deliver(job)

    assert [r.method for r in vendor.requests] == ["GET"]
    assert (result.case_ref, result.external_ref) == ("43", "43")


def test_a_found_ticket_of_the_case_gets_another_contact_as_a_note(vendor, site, tmp_path):
    vendor.script = [json_answer(200, {"total": 2, "results": [{"id": 50}, {"id": 43}]}), NOTE]

    result = connector(site, tmp_path, case_id_field="cf_hub_case_id").deliver(sample_job(destination=NAME, contact_id="ct_9"))

    assert vendor.requests[1].path == "/api/v2/tickets/43/notes"
    assert result.case_ref == "43"


# --- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "message"), [
    ({"api_key": None}, "exactly one of api_key and auth"),
    ({"auth": {"type": "basic", "username": "k", "password": "X"}}, "exactly one of api_key and auth"),
    ({"mapping": {"priority": {"high": 5}}}, "not a Freshdesk priority"),
    ({"mapping": {"custom_fields": {"tier": "customer.attributes.tier"}}}, "cf_"),
    ({"case_id_field": "hub case"}, "cf_hub_case_id"),
    ({"sources": {"email": 0}}, "positive"),
    ({"sources": {"fax": 1}}, "sources"),
])
def test_settings_refuse_what_freshdesk_cannot_take(overrides, message):
    with pytest.raises(ValidationError, match=message):
        FreshdeskConnector.Settings.model_validate({**settings("https://acme.freshdesk.com"), **overrides})


def test_the_api_key_stays_out_of_reprs():
    parsed = FreshdeskConnector.Settings.model_validate(settings("https://acme.freshdesk.com"))

    assert "FRESHDESK_API_KEY" not in repr(parsed)


# --- outbound messages (message.sent): a public note with the echo marker ---------------------------

NO_CONVERSATIONS = json_answer(200, [])


@pytest.mark.prism_specs(SPEC)
def test_prism_outbound_message_lists_conversations_then_adds_a_public_note(prism, tmp_path):
    http = RecordingHttp()

    result = connector(prism(SPEC).url, tmp_path, http, outbound_agent_id=42).deliver(outbound_job(NAME, ticket="43"))

    # The example page holds two conversations (fewer than a full page), neither of them this one.
    assert http.calls == [("GET", "/api/v2/tickets/43/conversations", 200), ("POST", "/api/v2/tickets/43/notes", 201)]
    assert http.violations == []
    assert result.case_ref == "43"


@pytest.mark.prism_specs(SPEC)
def test_prism_rejects_an_oversized_conversation_page(prism, tmp_path):
    http = RecordingHttp()

    with pytest.raises(PermanentDeliveryError, match="answered 4"):
        connector(prism(SPEC).url, tmp_path, http).api.call("GET", "/api/v2/tickets/43/conversations?per_page=500")


def test_outbound_message_is_a_public_agent_note_ending_in_the_marker(vendor, site, tmp_path):
    vendor.script = [NO_CONVERSATIONS, NOTE]

    result = connector(site, tmp_path, outbound_agent_id=42).deliver(outbound_job(NAME, ticket="43"))

    listing, note = vendor.requests
    assert (listing.method, urlsplit(listing.path).path, parse_qs(urlsplit(listing.path).query)) == (
        "GET", "/api/v2/tickets/43/conversations", {"per_page": ["100"], "page": ["1"]})
    assert (note.method, note.path) == ("POST", "/api/v2/tickets/43/notes")
    assert body(note) == {
        "body": f"<div>{REPLY}<br><br>Sent to the customer on whatsapp by the hub [hub:{OUTBOUND_ID}]</div>",
        "private": False, "incoming": False, "user_id": 42}
    assert marked_contact(body(note)["body"]) == OUTBOUND_ID
    assert (result.external_ref, result.case_ref) == ("3000000007", "43")


def test_outbound_text_is_escaped_in_the_note(vendor, site, tmp_path):
    vendor.script = [NO_CONVERSATIONS, NOTE]

    connector(site, tmp_path).deliver(outbound_job(NAME, ticket="43", text="<b>1 < 2</b>"))

    assert body(vendor.requests[1])["body"].startswith("<div>&lt;b&gt;1 &lt; 2&lt;/b&gt;<br>")
    assert "user_id" not in body(vendor.requests[1])


def test_an_outbound_note_already_on_the_ticket_is_not_added_twice(vendor, site, tmp_path):
    full_page = [{"id": 3000000100 + n, "body_text": f"note {n}", "ticket_id": 43} for n in range(100)]
    second = [{"id": 3000000300, "ticket_id": 43, "body": "<div>Hallo</div>",
               "body_text": f"Hallo Sent to the customer on whatsapp by the hub [hub:{OUTBOUND_ID}]"}]
    vendor.script = [json_answer(200, full_page), json_answer(200, second)]

    result = connector(site, tmp_path).deliver(outbound_job(NAME, ticket="43"))

    assert [(r.method, parse_qs(urlsplit(r.path).query)["page"]) for r in vendor.requests] == [
        ("GET", ["1"]), ("GET", ["2"])]
    assert (result.external_ref, result.case_ref) == ("3000000300", "43")


@pytest.mark.parametrize("answers", [
    [json_answer(404, {"code": "not_found"})],
    [NO_CONVERSATIONS, json_answer(404, {"code": "not_found"})],
])
def test_a_deleted_ticket_takes_no_outbound_note_and_opens_nothing(vendor, site, tmp_path, answers):
    vendor.script = list(answers)

    result = connector(site, tmp_path).deliver(outbound_job(NAME, ticket="43"))

    assert [r.method for r in vendor.requests] == ["GET", "POST"][: len(answers)]
    assert (result.external_ref, result.case_ref) == (None, None)


def test_freshdesk_takes_message_sent_only_and_a_destination_can_turn_it_off(vendor, site, tmp_path):
    assert FreshdeskConnector.message_events == frozenset({"message.sent"})
    assert connector(site, tmp_path, outbound_messages=False).message_events == frozenset()
    with pytest.raises(PermanentDeliveryError, match="does not take message.status"):
        connector(site, tmp_path).deliver(outbound_job(NAME, ticket="43", event_type="message.status"))
    with pytest.raises(PermanentDeliveryError, match="has no ticket"):
        connector(site, tmp_path).deliver(outbound_job(NAME))
    assert vendor.requests == []
