"""HubSpot: the shared connector contract, the requests against a Prism mock of the hand-written
CRM subset, and the exact payloads against the scripted Receiver.

The subset (tests/contract/specs/hubspot/…handwritten.openapi.yaml) covers contacts (batch upsert,
search, create, update) and notes. Tickets, ticket search and GDPR delete are not in it yet, so
those requests are checked against the Receiver only, with the shapes from HubSpot's docs.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.adapters.connectors.http import HttpClient
from chalicelib.adapters.connectors.hubspot import HubSpotConnector
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.models import CustomerEvent, ExternalRef
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError
from chalicelib.secrets import SecretResolver
from tests.support.connector_setup import ConnectorSetup
from tests.support.fakes import sample_job
from tests.support.outbound_jobs import OUTBOUND_ID, REPLY, outbound_job
from tests.support.receiver import Answer, Receiver

SPEC = "hubspot/hubspot-crm-hub-subset.handwritten.openapi.yaml"
ENVIRON = {"HUBSPOT_TOKEN": "pat-eu1-test"}
NAME = "hubspot-test"


def settings(base_url: str, **overrides) -> dict:
    return {"base_url": base_url, "auth": {"type": "bearer", "token": "env:HUBSPOT_TOKEN"}, **overrides}


def ticket_settings(base_url: str, **overrides) -> dict:
    return settings(base_url, create_tickets=True, ticket_pipeline="0", ticket_stage="1", **overrides)


#: One body for every answer of the scripted server: a batch result, a search hit and a record.
SETUP = ConnectorSetup(
    key="hubspot",
    settings=ticket_settings,
    environ=ENVIRON,
    created_body={"id": "512", "status": "COMPLETE", "total": 1, "results": [{"id": "512", "properties": {}}]},
    created_ref="512",
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
    def violations(self) -> list[str]:
        return [v for *_, v in self.exchanges if v]


def connector(base_url: str, tmp_path, http: HttpClient | None = None, *, tickets: bool = False, **overrides):
    raw = ticket_settings(base_url, **overrides) if tickets else settings(base_url, **overrides)
    runtime = ConnectorRuntime(data_dir=str(tmp_path), http=http or HttpClient())
    return HubSpotConnector(NAME, HubSpotConnector.Settings.model_validate(raw), SecretResolver(ENVIRON), runtime)


def with_identifiers(job, *keys: str, name: str | None = "Jana Schmidt"):
    customer = job.customer.model_copy(update={"identifiers": [Identifier.parse(k) for k in keys]})
    if name is None:
        customer = customer.model_copy(update={"attributes": {}})
        job = job.model_copy(update={"contact": job.contact.model_copy(update={
            "sender": job.contact.sender.model_copy(update={"display_name": None})})})
    return job.model_copy(update={"customer": customer})


def follow_up(ticket_id: str):
    first = sample_job(destination=NAME)
    case = first.case.model_copy(update={"external_refs": {NAME: ExternalRef(destination=NAME, ref=ticket_id)}})
    return sample_job(destination=NAME, contact_id="ct_2", case=case)


def body(request) -> dict:
    return json.loads(request.body)


def json_answer(status: int, payload) -> Answer:
    return Answer(status, json.dumps(payload).encode(), {"content-type": "application/json"})


def record(record_id: str) -> Answer:
    return json_answer(201, {"id": record_id, "properties": {}})


def upserted(record_id: str) -> Answer:
    return json_answer(200, {"status": "COMPLETE", "results": [{"id": record_id, "new": False, "properties": {}}]})


def hits(*ids: str) -> Answer:
    return json_answer(200, {"total": len(ids), "results": [{"id": i, "properties": {}} for i in ids]})


def association(record_id: str, type_id: int) -> dict:
    return {"to": {"id": record_id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}


@pytest.fixture
def vendor():
    with Receiver() as server:
        yield server


@pytest.fixture
def api(vendor) -> str:
    return vendor.url.rsplit("/hooks", 1)[0]


# --- Prism: the hand-written HubSpot subset ---------------------------------------------------------


@pytest.mark.prism_specs(SPEC)
def test_prism_contact_upserted_by_email_then_a_note_on_it(prism, tmp_path):
    http = RecordingHttp()
    hubspot = connector(prism(SPEC).url, tmp_path, http, customer_id_property="hub_customer_id",
                        mapping={"custom_fields": {"hub_tier": "customer.attributes.tier"}})

    result = hubspot.deliver(sample_job(destination=NAME))

    assert [(m, p, s) for m, p, s, _ in http.exchanges] == [
        ("POST", "/crm/v3/objects/contacts/batch/upsert", 200), ("POST", "/crm/v3/objects/notes", 201),
    ]
    assert http.violations == []
    assert (result.external_ref, result.case_ref) == ("9001", None)


@pytest.mark.prism_specs(SPEC)
def test_prism_contact_without_email_found_by_phone_and_updated(prism, tmp_path):
    http = RecordingHttp()
    hubspot = connector(prism(SPEC).url, tmp_path, http, customer_id_property="hub_customer_id")

    hubspot.deliver(with_identifiers(sample_job(destination=NAME), "phone:+4915123456789"))

    # The spec's search example finds contact 512.
    assert [(m, p, s) for m, p, s, _ in http.exchanges] == [
        ("POST", "/crm/v3/objects/contacts/search", 200), ("PATCH", "/crm/v3/objects/contacts/512", 200),
        ("POST", "/crm/v3/objects/notes", 201),
    ]
    assert http.violations == []


@pytest.mark.prism_specs(SPEC)
def test_prism_accepts_the_contact_create_the_connector_sends_for_a_new_number(prism, tmp_path):
    http = RecordingHttp()
    hubspot = connector(prism(SPEC).url, tmp_path, http)
    job = with_identifiers(sample_job(destination=NAME), "phone:+4915123456789", name=None)

    # What `deliver` sends when the search finds nothing (the spec's search example always finds).
    properties = hubspot._contact_properties(job, "+4915123456789") | {"lastname": "+4915123456789"}
    hubspot.api.call("POST", "/crm/v3/objects/contacts", json_body={"properties": properties})

    assert [(m, s) for m, _, s, _ in http.exchanges] == [("POST", 201)]
    assert http.violations == []


# Negative controls (specs/README.md pitfall 1): broken variants of the connector's requests, sent
# through its own API client, must be refused.


@pytest.mark.prism_specs(SPEC)
@pytest.mark.parametrize(("path", "payload", "reason"), [
    ("/crm/v3/objects/contacts/batch/upsert", {"inputs": [{"id": "a@example.com", "properties": {}}]}, "idproperty"),
    ("/crm/v3/objects/contacts/batch/upsert", {"inputs": [{"idProperty": "email", "id": "a@example.com",
                                                           "properties": {"hs_lead": 3}}]}, "must be string"),
    ("/crm/v3/objects/notes", {"properties": {"hs_note_body": "hi"}}, "hs_timestamp"),
    ("/crm/v3/objects/notes", {"properties": {"hs_timestamp": "2026-11-23 09:00"}}, "pattern"),
    ("/crm/v3/objects/notes", {"properties": {"hs_timestamp": "1700000000000"},
                               "associations": [{"to": {"id": "512"}, "types": [{"associationTypeId": 202}]}]},
     "associationcategory"),
    ("/crm/v3/objects/contacts", {"properties": {"phone": "+4915123456789"}}, "must match"),
])
def test_prism_rejects_a_malformed_request(prism, tmp_path, path, payload, reason):
    http = RecordingHttp()
    hubspot = connector(prism(SPEC).url, tmp_path, http)

    with pytest.raises(PermanentDeliveryError, match="answered 400"):
        hubspot.api.call("POST", path, json_body=payload)

    assert reason in (http.violations[0] or "").lower()


@pytest.mark.prism_specs(SPEC)
def test_prism_rejects_a_request_without_a_token(prism, tmp_path):
    hubspot = connector(prism(SPEC).url, tmp_path, auth={"type": "api_token", "header": "X-Token", "token": "env:HUBSPOT_TOKEN"})

    with pytest.raises(PermanentDeliveryError, match="answered 401"):
        hubspot.deliver(sample_job(destination=NAME))


# --- payloads against the scripted Receiver --------------------------------------------------------


def test_contact_upsert_by_email_and_note_payloads(vendor, api, tmp_path):
    vendor.script = [upserted("512"), record("9001")]
    hubspot = connector(api, tmp_path, customer_id_property="hub_customer_id",
                        mapping={"custom_fields": {"hub_tier": "customer.attributes.tier", "hub_urgent": "enrichment.intent.urgent"}})
    job = sample_job(destination=NAME)

    result = hubspot.deliver(job)

    upsert, note = vendor.requests
    assert (upsert.method, upsert.path) == ("POST", "/crm/v3/objects/contacts/batch/upsert")
    assert body(upsert) == {"inputs": [{"idProperty": "email", "id": "jana.schmidt@example.com", "properties": {
        "firstname": "Jana", "lastname": "Schmidt", "phone": "+4915123456789", "hub_customer_id": job.customer.id,
        "hub_tier": "gold", "hub_urgent": "true",
    }}]}
    assert upsert.headers["authorization"] == "Bearer pat-eu1-test"
    assert (note.method, note.path) == ("POST", "/crm/v3/objects/notes")
    sent = body(note)
    assert sent["associations"] == [association("512", 202)]
    assert sent["properties"]["hs_timestamp"] == "2026-11-23T09:00:00.000Z"
    assert job.contact.text in sent["properties"]["hs_note_body"] and "<br>" in sent["properties"]["hs_note_body"]
    assert (result.external_ref, result.case_ref) == ("9001", None)


def test_empty_values_are_left_out_so_hubspot_keeps_what_it_has(vendor, api, tmp_path):
    vendor.script = [upserted("512"), record("9001")]
    job = sample_job(destination=NAME)
    attributes = dict(job.customer.attributes)
    attributes["nickname"] = attributes["tier"].model_copy(update={"value": ""})
    job = job.model_copy(update={"customer": job.customer.model_copy(update={"attributes": attributes})})

    connector(api, tmp_path, mapping={"custom_fields": {"hub_nickname": "customer.attributes.nickname",
                                                        "hub_tier": "customer.attributes.tier"}}).deliver(job)

    properties = body(vendor.requests[0])["inputs"][0]["properties"]
    assert "hub_nickname" not in properties and properties["hub_tier"] == "gold"


def test_without_email_the_contact_is_searched_by_customer_id_and_phone_then_created(vendor, api, tmp_path):
    vendor.script = [hits(), record("600"), record("9002")]
    hubspot = connector(api, tmp_path, customer_id_property="hub_customer_id")
    job = with_identifiers(sample_job(destination=NAME), "phone:+4915123456789", name=None)

    hubspot.deliver(job)

    search, create, note = vendor.requests
    assert search.path == "/crm/v3/objects/contacts/search"
    assert body(search)["filterGroups"] == [
        {"filters": [{"propertyName": "hub_customer_id", "operator": "EQ", "value": job.customer.id}]},
        {"filters": [{"propertyName": "phone", "operator": "EQ", "value": "+4915123456789"}]},
        {"filters": [{"propertyName": "mobilephone", "operator": "EQ", "value": "+4915123456789"}]},
    ]
    # A new contact needs an email, first name or last name: the number stands in for the name.
    assert body(create) == {"properties": {"phone": "+4915123456789", "hub_customer_id": job.customer.id,
                                           "lastname": "+4915123456789"}}
    assert body(note)["associations"] == [association("600", 202)]


def test_a_contact_found_by_search_is_updated_not_created(vendor, api, tmp_path):
    vendor.script = [hits("512"), json_answer(200, {"id": "512"}), record("9003")]

    connector(api, tmp_path).deliver(with_identifiers(sample_job(destination=NAME), "phone:+4915123456789"))

    search, update, _ = vendor.requests
    assert (update.method, update.path) == ("PATCH", "/crm/v3/objects/contacts/512")
    assert body(update) == {"properties": {"firstname": "Jana", "lastname": "Schmidt", "phone": "+4915123456789"}}


def test_a_customer_without_email_phone_or_id_property_cannot_be_found(vendor, api, tmp_path):
    job = with_identifiers(sample_job(destination=NAME), "webchat:site/visitor-1")

    with pytest.raises(PermanentDeliveryError, match="email address or phone number"):
        connector(api, tmp_path).deliver(job)
    assert vendor.requests == []


def test_a_refused_upsert_input_is_permanent_with_hubspots_message(vendor, api, tmp_path):
    vendor.script = [json_answer(207, {"status": "COMPLETE", "results": [], "numErrors": 1, "errors": [
        {"status": "error", "category": "VALIDATION_ERROR", "message": "Property values were not valid: phone"}]})]

    with pytest.raises(PermanentDeliveryError, match="Property values were not valid"):
        connector(api, tmp_path).deliver(sample_job(destination=NAME))


def test_first_delivery_of_a_case_creates_a_ticket_and_notes_it(vendor, api, tmp_path):
    vendor.script = [upserted("512"), hits(), record("7001"), record("9004")]
    hubspot = connector(api, tmp_path, tickets=True, case_id_property="hub_case_id",
                        ticket_custom_fields={"hub_queue": "routing.queue"})
    job = sample_job(destination=NAME)

    result = hubspot.deliver(job)

    _, search, ticket, note = vendor.requests
    assert search.path == "/crm/v3/objects/tickets/search"
    assert body(search)["filterGroups"] == [
        {"filters": [{"propertyName": "hub_case_id", "operator": "EQ", "value": job.case.id}]}]
    assert ticket.path == "/crm/v3/objects/tickets"
    assert body(ticket) == {
        "properties": {"subject": f"[whatsapp] {job.contact.text}", "hs_pipeline_stage": "1", "hs_pipeline": "0",
                       "hs_ticket_priority": "HIGH", "hub_case_id": job.case.id, "hub_queue": "technical"},
        "associations": [association("512", 16)],
    }
    assert body(note)["associations"] == [association("512", 202), association("7001", 228)]
    assert (result.case_ref, result.external_ref) == ("7001", "9004")


def test_a_follow_up_notes_the_cases_ticket_without_searching(vendor, api, tmp_path):
    vendor.script = [upserted("512"), record("9005")]

    result = connector(api, tmp_path, tickets=True, case_id_property="hub_case_id").deliver(follow_up("7001"))

    assert [r.path for r in vendor.requests] == ["/crm/v3/objects/contacts/batch/upsert", "/crm/v3/objects/notes"]
    assert body(vendor.requests[1])["associations"] == [association("512", 202), association("7001", 228)]
    assert result.case_ref == "7001"


def test_a_retried_first_delivery_finds_the_ticket_by_case_id(vendor, api, tmp_path):
    vendor.script = [upserted("512"), hits("7001"), record("9006")]

    result = connector(api, tmp_path, tickets=True, case_id_property="hub_case_id").deliver(sample_job(destination=NAME))

    assert "/crm/v3/objects/tickets" not in [r.path for r in vendor.requests]
    assert result.case_ref == "7001"


def test_a_ticket_conflict_on_the_case_id_is_searched_again(vendor, api, tmp_path):
    conflict = json_answer(409, {"status": "error", "category": "CONFLICT", "message": "hub_case_id already has that value"})
    vendor.script = [upserted("512"), hits(), conflict, hits("7001"), record("9007")]

    result = connector(api, tmp_path, tickets=True, case_id_property="hub_case_id").deliver(sample_job(destination=NAME))

    assert result.case_ref == "7001"


def test_a_conflicting_ticket_search_cannot_see_yet_is_retried(vendor, api, tmp_path):
    conflict = json_answer(409, {"status": "error", "category": "CONFLICT", "message": "already has that value"})
    vendor.script = [upserted("512"), hits(), conflict, hits()]

    with pytest.raises(RetryableDeliveryError) as raised:
        connector(api, tmp_path, tickets=True, case_id_property="hub_case_id").deliver(sample_job(destination=NAME))
    assert raised.value.retry_after == 5


def test_without_a_case_id_property_the_ticket_is_created_without_a_search(vendor, api, tmp_path):
    vendor.script = [upserted("512"), record("7002"), record("9008")]

    connector(api, tmp_path, tickets=True, mapping={"priority": {"high": "MEDIUM"}}).deliver(sample_job(destination=NAME))

    assert [r.path for r in vendor.requests] == [
        "/crm/v3/objects/contacts/batch/upsert", "/crm/v3/objects/tickets", "/crm/v3/objects/notes"]
    assert body(vendor.requests[1])["properties"]["hs_ticket_priority"] == "MEDIUM"


def test_threading_follows_create_tickets(api, tmp_path):
    assert connector(api, tmp_path).threads_cases is False
    assert connector(api, tmp_path, tickets=True).threads_cases is True


def test_long_note_bodies_are_cut_within_hubspots_limit_without_breaking_an_entity(vendor, api, tmp_path):
    vendor.script = [upserted("512"), record("9009")]

    connector(api, tmp_path).deliver(sample_job(destination=NAME, text="<&>" * 30_000))

    note = body(vendor.requests[1])["properties"]["hs_note_body"]
    assert len(note) <= 65_536 and note.endswith("…")
    assert note[:-1].endswith(("&lt;", "&amp;", "&gt;"))


# --- customer events ---------------------------------------------------------------------------------


def event(event_type: str = "customer.erased") -> CustomerEvent:
    from datetime import datetime, timezone

    return CustomerEvent(event_id="ev_1", delivery_id="dl_1", destination=NAME, event_type=event_type,
                         customer_id="cus_01JD0000000000000000000001", occurred_at=datetime(2026, 11, 23, tzinfo=timezone.utc))


def test_erasure_gdpr_deletes_every_contact_holding_the_customer_id(vendor, api, tmp_path):
    vendor.script = [hits("512", "513"), Answer(204), json_answer(404, {"message": "resource not found"})]

    result = connector(api, tmp_path, customer_id_property="hub_customer_id").deliver_customer_event(event())

    search, first, second = vendor.requests
    assert body(search)["filterGroups"] == [{"filters": [
        {"propertyName": "hub_customer_id", "operator": "EQ", "value": "cus_01JD0000000000000000000001"}]}]
    assert [(r.path, body(r)) for r in (first, second)] == [
        ("/crm/v3/objects/contacts/gdpr-delete", {"objectId": "512"}),
        ("/crm/v3/objects/contacts/gdpr-delete", {"objectId": "513"}),
    ]
    assert result.external_ref == "512,513"


def test_erasure_without_a_customer_id_property_is_permanent(vendor, api, tmp_path):
    with pytest.raises(PermanentDeliveryError, match="customer_id_property"):
        connector(api, tmp_path).deliver_customer_event(event())
    assert vendor.requests == []


@pytest.mark.parametrize("event_type", ["customer.merged", "customer.unmerged"])
def test_other_customer_events_change_nothing(vendor, api, tmp_path, event_type):
    result = connector(api, tmp_path, customer_id_property="hub_customer_id").deliver_customer_event(event(event_type))

    assert (vendor.requests, result.external_ref) == ([], None)


# --- settings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "field"), [
    ({"auth": {"type": "basic", "username": "x", "password": "env:HUBSPOT_TOKEN"}}, "auth"),
    ({"create_tickets": True}, "ticket_stage"),
    ({"ticket_custom_fields": {"hub_queue": "queue"}}, "ticket_custom_fields"),
])
def test_settings_refuse_what_hubspot_would_reject(overrides, field):
    with pytest.raises(ValidationError, match=field):
        HubSpotConnector.Settings.model_validate(settings("https://api.hubapi.com", **overrides))


# --- outbound messages (message.sent): a note on the ticket (or contact) with the echo marker ---------

NO_NOTES = json_answer(200, {"total": 0, "results": []})


@pytest.mark.prism_specs(SPEC)
def test_prism_outbound_message_searches_the_tickets_notes_then_adds_one(prism, tmp_path):
    http = RecordingHttp()

    result = connector(prism(SPEC).url, tmp_path, http, tickets=True).deliver(outbound_job(NAME, ticket="7001"))

    assert [(m, p, s) for m, p, s, _ in http.exchanges] == [
        ("POST", "/crm/v3/objects/notes/search", 200), ("POST", "/crm/v3/objects/notes", 201)]
    assert http.violations == []
    assert result.case_ref == "7001"


@pytest.mark.prism_specs(SPEC)
def test_prism_rejects_a_malformed_note_search(prism, tmp_path):
    http = RecordingHttp()

    with pytest.raises(PermanentDeliveryError, match="answered 4"):
        connector(prism(SPEC).url, tmp_path, http).api.call("POST", "/crm/v3/objects/notes/search", json_body={
            "filterGroups": [{"filters": [{"propertyName": "associations.ticket", "operator": "MATCHES", "value": "7001"}]}]})

    assert "allowed values" in (http.violations[0] or "").lower()


def test_outbound_message_is_a_ticket_note_ending_in_the_marker(vendor, tmp_path):
    vendor.script = [NO_NOTES, record("9002")]
    api = vendor.url.rsplit("/hooks", 1)[0]

    result = connector(api, tmp_path, tickets=True).deliver(outbound_job(NAME, ticket="7001"))

    search, note = vendor.requests
    assert (search.path, body(search)) == ("/crm/v3/objects/notes/search", {
        "filterGroups": [{"filters": [{"propertyName": "associations.ticket", "operator": "EQ", "value": "7001"}]}],
        "sorts": [{"propertyName": "hs_timestamp", "direction": "DESCENDING"}],
        "properties": ["hs_note_body"], "limit": 100})
    assert (note.path, body(note)) == ("/crm/v3/objects/notes", {
        "properties": {"hs_timestamp": "2026-11-23T09:05:00.000Z", "hs_note_body":
                       f"<div>{REPLY}<br><br>Sent to the customer on whatsapp by the hub [hub:{OUTBOUND_ID}]</div>"},
        "associations": [association("7001", 228)]})
    assert (result.external_ref, result.case_ref) == ("9002", "7001")


def test_without_tickets_the_outbound_note_goes_on_the_contact(vendor, tmp_path):
    vendor.script = [upserted("512"), NO_NOTES, record("9003")]
    api = vendor.url.rsplit("/hooks", 1)[0]

    result = connector(api, tmp_path).deliver(outbound_job(NAME))

    upsert, search, note = vendor.requests
    assert upsert.path == "/crm/v3/objects/contacts/batch/upsert"
    assert body(search)["filterGroups"] == [{"filters": [{"propertyName": "associations.contact", "operator": "EQ",
                                                          "value": "512"}]}]
    assert body(note)["associations"] == [association("512", 202)]
    assert (result.external_ref, result.case_ref) == ("9003", None)


def test_an_outbound_note_already_on_the_ticket_is_not_added_twice(vendor, tmp_path):
    vendor.script = [json_answer(200, {"total": 2, "results": [
        {"id": "9001", "properties": {"hs_note_body": "<div>Jana: Hilfe</div>"}},
        {"id": "9002", "properties": {"hs_note_body": f"<div>Hallo<br>[hub:{OUTBOUND_ID}]</div>"}}]})]
    api = vendor.url.rsplit("/hooks", 1)[0]

    result = connector(api, tmp_path, tickets=True).deliver(outbound_job(NAME, ticket="7001"))

    assert [r.path for r in vendor.requests] == ["/crm/v3/objects/notes/search"]
    assert result.external_ref == "9002"


def test_hubspot_takes_message_sent_only(vendor, tmp_path):
    api = vendor.url.rsplit("/hooks", 1)[0]
    assert HubSpotConnector.message_events == frozenset({"message.sent"})
    assert connector(api, tmp_path, outbound_messages=False).message_events == frozenset()
    with pytest.raises(PermanentDeliveryError, match="does not take message.status"):
        connector(api, tmp_path).deliver(outbound_job(NAME, event_type="message.status"))
    with pytest.raises(PermanentDeliveryError, match="has no ticket"):
        connector(api, tmp_path, tickets=True).deliver(outbound_job(NAME))
    assert vendor.requests == []
