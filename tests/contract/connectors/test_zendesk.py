"""Zendesk Support: the shared connector contract, the requests against Prism mocks of the
hand-written Zendesk spec, and the exact payloads against the scripted Receiver.

The spec (tests/contract/specs/zendesk/zendesk-support-tickets.handwritten.openapi.yaml) covers
ticket create/show/update, uploads and the user upsert. The lookups and user operations the
connector also calls are not in it, so `extended_spec` derives a file that adds them, written
from Zendesk's reference (the paths, methods and parameters of Zendesk's published OAS, as
mirrored in api-evangelist/zendesk `openapi/{tickets,users,deleted-users}-openapi-original.yml`):
GET /api/v2/tickets?external_id (List Tickets), GET /api/v2/users/show_many?external_ids,
DELETE /api/v2/users/{id} (Delete User), DELETE /api/v2/deleted_users/{id} (Permanently Delete
User) and PUT /api/v2/users/{id}/merge (Merge End Users).
"""

from __future__ import annotations

import base64
import copy
import json
import time
import tracemalloc
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from pydantic import ValidationError

from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.adapters.connectors.echo import marked_contact
from chalicelib.adapters.connectors.http import HttpClient
from chalicelib.adapters.connectors.zendesk import ZendeskConnector
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.models import Attachment, CustomerEvent, ExternalRef, Priority
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError
from chalicelib.secrets import SecretResolver
from tests.support.connector_setup import ConnectorSetup
from tests.support.fakes import sample_job
from tests.support.outbound_jobs import OUTBOUND_ID, REPLY, outbound_job
from tests.support.origin import Origin, Reply, gzip_bomb
from tests.support.prism import vendor_specs_dir
from tests.support.receiver import Answer, Receiver

SPEC = "zendesk/zendesk-support-tickets.handwritten.openapi.yaml"
ENVIRON = {"ZENDESK_API_TOKEN": "zd-api-token"}
NAME = "zendesk-test"
CUSTOMER = "cus_01JD0000000000000000000001"
ABSORBED = "cus_01JD0000000000000000000002"
MEDIA_HOST = "media.example.com"


def settings(base_url: str, **overrides) -> dict:
    return {
        "base_url": base_url,
        "auth": {"type": "basic", "username": "agent@example.com/token", "password": "env:ZENDESK_API_TOKEN"},
        **overrides,
    }


SETUP = ConnectorSetup(
    key="zendesk",
    settings=settings,
    environ=ENVIRON,
    # One body for every answer of the scripted server: the user upsert reads `user`, the create
    # and the update read `ticket` and `audit`.
    created_body={"ticket": {"id": 35436, "status": "new"}, "user": {"id": 20978392},
                  "audit": {"id": 2127301143, "ticket_id": 35436, "events": []}},
    created_ref="35436",
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


def connector(base_url: str, tmp_path, http: HttpClient | None = None, media: Origin | None = None,
              **overrides) -> ZendeskConnector:
    """The connector; with `media`, attachment downloads reach that origin (for any host that
    passes the downloader's checks)."""
    parsed = ZendeskConnector.Settings.model_validate(settings(base_url, **overrides))
    zendesk = ZendeskConnector(NAME, parsed, SecretResolver(ENVIRON),
                               ConnectorRuntime(data_dir=str(tmp_path), http=http or HttpClient()))
    # Attachment hosts are not resolved offline: the media host is a public address, others fail.
    zendesk.resolve_host = lambda host: ["93.184.216.34"] if host == MEDIA_HOST else []
    if media is not None:
        zendesk.downloads = media.downloader(resolve=lambda host: zendesk.resolve_host(host))
    return zendesk


def follow_up(ref: str, *, contact_id: str = "ct_2", **job):
    first = sample_job(destination=NAME)
    case = first.case.model_copy(update={"external_refs": {NAME: ExternalRef(destination=NAME, ref=ref)}})
    return sample_job(destination=NAME, contact_id=contact_id, case=case, **job)


def with_identifiers(job, *identifiers: str):
    parsed = [Identifier.parse(i) for i in identifiers]
    return job.model_copy(update={"customer": job.customer.model_copy(update={"identifiers": parsed})})


def with_attachments(job, *attachments: Attachment):
    return job.model_copy(update={"contact": job.contact.model_copy(update={"attachments": list(attachments)})})


def with_priority(job, priority: Priority):
    routing = job.contact.routing.model_copy(update={"priority": priority})
    return job.model_copy(update={"contact": job.contact.model_copy(update={"routing": routing})})


def event(event_type: str, **fields) -> CustomerEvent:
    return CustomerEvent(event_id="evt_1", delivery_id="dlv_evt_1", destination=NAME, event_type=event_type,
                         customer_id=CUSTOMER, occurred_at=datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc), **fields)


def body(request) -> dict:
    return json.loads(request.body)


def query(request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.path).query)


def json_answer(status: int, payload) -> Answer:
    return Answer(status, json.dumps(payload).encode(), {"content-type": "application/json"})


NO_TICKETS = json_answer(200, {"tickets": [], "count": 0})
USER = json_answer(200, {"user": {"id": 501, "external_id": CUSTOMER, "role": "end-user"}})
CREATED = json_answer(201, {"ticket": {"id": 35436, "status": "new"}, "audit": {"id": 77, "events": []}})
UPDATED = json_answer(200, {"ticket": {"id": 35436, "status": "open"},
                            "audit": {"id": 78, "events": [{"id": 79, "type": "Comment"}, {"id": 80, "type": "Change"}]}})
PHOTO = Reply(200, b"\xff\xd8\xff\xe0 jpeg bytes", {"Content-Type": "image/jpeg"})


@pytest.fixture
def vendor():
    with Receiver() as server:
        yield server


@pytest.fixture
def site(vendor) -> str:
    return vendor.url.rsplit("/hooks", 1)[0]


@pytest.fixture
def origin():
    """The attachment host a sender's message points to."""
    with Origin() as server:
        yield server


# --- Prism: the hand-written Zendesk spec -------------------------------------------------------------

_TICKET_LIST = {
    "type": "object", "required": ["tickets"],
    "properties": {"tickets": {"type": "array", "items": {"$ref": "#/components/schemas/TicketResponse/properties/ticket"}},
                   "count": {"type": "integer"}},
}
_USER_ID = {"name": "user_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
_END_USERS = [{"id": 20978392, "name": "Jana Schmidt", "external_id": CUSTOMER, "role": "end-user"},
              {"id": 20978393, "name": "Jana S.", "external_id": ABSORBED, "role": "end-user"}]
EXTRA_PATHS = {
    "/api/v2/tickets": {"get": {
        "operationId": "ListTickets",
        "parameters": [{"name": "external_id", "in": "query", "required": False, "schema": {"type": "string", "minLength": 1},
                        "description": "External ids need not be unique: several tickets may be listed"}],
        "responses": {"200": {"description": "Tickets", "content": {"application/json": {
            "schema": _TICKET_LIST, "example": {"tickets": [], "count": 0}}}}},
    }},
    "/api/v2/users/show_many": {"get": {
        "operationId": "ShowManyUsers",
        "parameters": [{"name": "external_ids", "in": "query", "required": True,
                        "description": "Comma-separated, up to 100", "schema": {"type": "string", "minLength": 1}}],
        "responses": {"200": {"description": "Users", "content": {"application/json": {
            "schema": {"type": "object", "required": ["users"], "properties": {
                "users": {"type": "array", "items": {"$ref": "#/components/schemas/UserResponse/properties/user"}}}},
            "example": {"users": _END_USERS}}}}},
    }},
    "/api/v2/users/{user_id}": {"parameters": [_USER_ID], "delete": {
        "operationId": "DeleteUser",
        "responses": {"200": {"description": "Soft-deleted", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/UserResponse"},
            "example": {"user": {**_END_USERS[0], "active": False}}}}}},
    }},
    "/api/v2/deleted_users/{deleted_user_id}": {
        "parameters": [{**_USER_ID, "name": "deleted_user_id"}],
        "delete": {"operationId": "PermanentlyDeleteUser", "responses": {"200": {
            "description": "Permanently deleted", "content": {"application/json": {
                "schema": {"type": "object", "required": ["deleted_user"], "properties": {"deleted_user": {"type": "object"}}},
                "example": {"deleted_user": {"id": 20978392, "name": "Permanently Deleted User", "active": False}}}}}}},
    },
    "/api/v2/users/{user_id}/merge": {"parameters": [_USER_ID], "put": {
        "operationId": "MergeEndUsers",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "required": ["user"],
            "properties": {"user": {"type": "object", "additionalProperties": False, "required": ["id"],
                                    "properties": {"id": {"type": "integer", "minimum": 1}}}}}}}},
        "responses": {"200": {"description": "The surviving user", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/UserResponse"}, "example": {"user": _END_USERS[0]}}}}},
    }},
}


@pytest.fixture(scope="module")
def extended_spec(tmp_path_factory) -> str:
    spec = yaml.safe_load((vendor_specs_dir() / SPEC).read_text())
    for path, item in copy.deepcopy(EXTRA_PATHS).items():
        spec["paths"].setdefault(path, {}).update(item)
    path = tmp_path_factory.mktemp("zendesk-spec") / "zendesk-support-extended.openapi.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def test_prism_first_delivery_looks_up_upserts_the_requester_and_creates_the_ticket(prism, extended_spec, tmp_path):
    http = RecordingHttp()
    zendesk = connector(prism(extended_spec).url, tmp_path, http,
                        mapping={"custom_fields": {"360001234567": "customer.attributes.tier", "360001234568": "case.id"}})

    result = zendesk.deliver(sample_job(destination=NAME))

    assert http.calls == [("GET", "/api/v2/tickets", 200), ("POST", "/api/v2/users/create_or_update", 200),
                          ("POST", "/api/v2/tickets", 201)]
    assert http.violations == []
    assert (result.case_ref, result.external_ref) == ("35436", "35436")


@pytest.mark.prism_specs(SPEC)
def test_prism_follow_up_updates_the_ticket_with_a_comment(prism, tmp_path):
    http = RecordingHttp()

    result = connector(prism(SPEC).url, tmp_path, http).deliver(follow_up("35436"))

    assert http.calls == [("PUT", "/api/v2/tickets/35436", 200)]
    assert http.violations == []
    assert (result.case_ref, result.external_ref) == ("35436", "2127301144")


@pytest.mark.prism_specs(SPEC)
def test_prism_attachments_are_uploaded_and_referenced_by_token(prism, tmp_path, origin):
    http = RecordingHttp()
    origin.routes["/m/photo.jpg"] = PHOTO
    job = with_attachments(follow_up("35436"), Attachment(url=f"https://{MEDIA_HOST}/m/photo.jpg", content_type="image/jpeg"),
                           Attachment(url=f"https://{MEDIA_HOST}/m/gone.pdf", filename="invoice.pdf"))

    connector(prism(SPEC).url, tmp_path, http, origin).deliver(job)

    assert http.calls == [("POST", "/api/v2/uploads", 201), ("PUT", "/api/v2/tickets/35436", 200)]
    assert http.violations == []


def test_prism_erasure_deletes_the_end_user_for_good(prism, extended_spec, tmp_path):
    http = RecordingHttp()

    result = connector(prism(extended_spec).url, tmp_path, http).deliver_customer_event(event("customer.erased"))

    assert http.calls == [("GET", "/api/v2/users/show_many", 200), ("DELETE", "/api/v2/users/20978392", 200),
                          ("DELETE", "/api/v2/deleted_users/20978392", 200)]
    assert http.violations == []
    assert result.external_ref == "user:20978392"


def test_prism_merge_merges_the_absorbed_end_user_into_the_survivor(prism, extended_spec, tmp_path):
    http = RecordingHttp()

    connector(prism(extended_spec).url, tmp_path, http).deliver_customer_event(
        event("customer.merged", other_customer_id=ABSORBED, merge_id="mrg_1"))

    assert http.calls == [("GET", "/api/v2/users/show_many", 200), ("PUT", "/api/v2/users/20978393/merge", 200)]
    assert http.violations == []


# Negative controls (specs/README.md pitfall 1): each spec must refuse what Zendesk refuses, or the tests
# above prove nothing. Each sends a broken variant of the connector's own request.


@pytest.mark.prism_specs(SPEC)
@pytest.mark.parametrize(("method", "path", "payload", "reason"), [
    ("POST", "/api/v2/tickets", {"ticket": {"comment": {"body": "hi"}, "description": "hi"}}, "additional properties"),
    ("POST", "/api/v2/tickets", {"ticket": {"comment": {"body": "hi"}, "priority": "critical"}}, "allowed values"),
    ("POST", "/api/v2/tickets", {"ticket": {"comment": {"body": "hi"}, "custom_fields": [{"id": "tier", "value": "gold"}]}},
     "must be integer"),
    ("PUT", "/api/v2/tickets/35436", {"ticket": {"comment": {"body": "hi", "public": "no"}}}, "must be boolean"),
    ("POST", "/api/v2/users/create_or_update", {"user": {"name": "Jana", "phone": "+4915123456789"}}, "external_id"),
])
def test_prism_rejects_a_malformed_request(prism, tmp_path, method, path, payload, reason):
    http = RecordingHttp()

    with pytest.raises(PermanentDeliveryError, match="answered 422"):
        connector(prism(SPEC).url, tmp_path, http).api.call(method, path, json_body=payload)

    assert reason in (http.violations[0] or "").lower()


@pytest.mark.prism_specs(SPEC)
def test_prism_rejects_a_request_without_credentials(prism, tmp_path):
    zendesk = connector(prism(SPEC).url, tmp_path, auth={"type": "api_token", "header": "X-Token", "token": "env:ZENDESK_API_TOKEN"})

    with pytest.raises(PermanentDeliveryError, match="answered 401"):
        zendesk.deliver(follow_up("35436"))


def test_prism_extended_spec_rejects_a_malformed_merge(prism, extended_spec, tmp_path):
    # Without a 4xx of its own in the spec, Prism puts the reasons in its 422 body.
    with pytest.raises(PermanentDeliveryError, match="answered 422") as raised:
        connector(prism(extended_spec).url, tmp_path).api.call(
            "PUT", "/api/v2/users/20978393/merge", json_body={"user": {"id": "20978392"}})

    assert "must be integer" in raised.value.message.lower()


# --- payloads against the scripted Receiver ---------------------------------------------------------


def test_first_delivery_creates_a_ticket_for_the_case_with_an_idempotency_key(vendor, site, tmp_path):
    vendor.script = [NO_TICKETS, USER, CREATED]
    job = sample_job(destination=NAME)

    result = connector(site, tmp_path).deliver(job)

    lookup, upsert, create = vendor.requests
    assert (lookup.method, urlsplit(lookup.path).path, query(lookup)) == ("GET", "/api/v2/tickets", {"external_id": [job.case.id]})
    assert (upsert.method, upsert.path) == ("POST", "/api/v2/users/create_or_update")
    assert body(upsert) == {"user": {"name": "Jana Schmidt", "external_id": CUSTOMER, "skip_verify_email": True,
                                     "email": "jana.schmidt@example.com", "phone": "+4915123456789"}}
    assert (create.method, create.path) == ("POST", "/api/v2/tickets")
    ticket = body(create)["ticket"]
    assert set(ticket) == {"subject", "comment", "requester_id", "external_id", "priority", "tags"}
    assert ticket["subject"] == f"[whatsapp] {job.contact.text}"
    assert ticket["comment"]["public"] is False and set(ticket["comment"]) == {"body", "public"}
    assert job.contact.text in ticket["comment"]["body"] and f"contact {job.contact.id}" in ticket["comment"]["body"]
    assert (ticket["requester_id"], ticket["external_id"], ticket["priority"], ticket["tags"]) == (
        501, job.case.id, "high", ["outage"])
    assert create.headers["idempotency-key"] == job.delivery_id
    assert "idempotency-key" not in lookup.headers and "idempotency-key" not in upsert.headers
    assert create.headers["authorization"] == "Basic " + base64.b64encode(b"agent@example.com/token:zd-api-token").decode()
    assert (result.case_ref, result.external_ref) == ("35436", "35436")


@pytest.mark.parametrize(("priority", "mapping", "expected"), [
    (Priority.LOW, {}, "low"),
    (Priority.NORMAL, {}, "normal"),
    (Priority.HIGH, {}, "high"),
    (Priority.URGENT, {}, "urgent"),
    (Priority.HIGH, {"high": "urgent"}, "urgent"),
    (Priority.LOW, {"high": "urgent"}, "low"),
])
def test_hub_priorities_map_to_zendesk_priorities(vendor, site, tmp_path, priority, mapping, expected):
    vendor.script = [NO_TICKETS, USER, CREATED]

    connector(site, tmp_path, mapping={"priority": mapping}).deliver(with_priority(sample_job(destination=NAME), priority))

    assert body(vendor.requests[2])["ticket"]["priority"] == expected


def test_tags_and_custom_fields_take_zendesks_shapes(vendor, site, tmp_path):
    vendor.script = [NO_TICKETS, USER, CREATED]
    zendesk = connector(site, tmp_path, group_id=360000111, mapping={
        "tags": ["omni channel", "outage"], "routing_tags": True,
        "custom_fields": {"360001234567": "customer.attributes.tier", "360001234568": "case.id",
                          "360001234569": "routing.skills", "360001234570": "customer.attributes.missing"},
    })
    job = sample_job(destination=NAME)

    zendesk.deliver(job)

    ticket = body(vendor.requests[2])["ticket"]
    assert ticket["tags"] == ["outage", "omni_channel"]
    assert ticket["custom_fields"] == [{"id": 360001234567, "value": "gold"}, {"id": 360001234568, "value": job.case.id},
                                       {"id": 360001234569, "value": '{"german":3}'}]
    assert ticket["group_id"] == 360000111


@pytest.mark.parametrize(("identifiers", "expected"), [
    (("email:jana.schmidt@example.com",), {"email": "jana.schmidt@example.com"}),
    (("phone:+4915123456789",), {"phone": "+4915123456789"}),
    ((), {}),
])
def test_the_requester_is_upserted_by_hub_customer_id_with_what_the_customer_has(vendor, site, tmp_path, identifiers, expected):
    vendor.script = [NO_TICKETS, USER, CREATED]

    connector(site, tmp_path).deliver(with_identifiers(sample_job(destination=NAME), *identifiers))

    assert body(vendor.requests[1])["user"] == {"name": "Jana Schmidt", "external_id": CUSTOMER,
                                                "skip_verify_email": True, **expected}
    assert body(vendor.requests[2])["ticket"]["requester_id"] == 501


def test_an_email_owned_by_another_user_falls_back_to_a_requester_by_email(vendor, site, tmp_path):
    refused = json_answer(422, {"error": "RecordInvalid", "details": {"email": [{"description": "is already being used"}]}})
    vendor.script = [NO_TICKETS, refused, CREATED]

    connector(site, tmp_path).deliver(sample_job(destination=NAME))

    ticket = body(vendor.requests[2])["ticket"]
    assert ticket["requester"] == {"name": "Jana Schmidt", "email": "jana.schmidt@example.com"}
    assert "requester_id" not in ticket


def test_a_refused_requester_without_email_is_permanent(vendor, site, tmp_path):
    vendor.script = [NO_TICKETS, json_answer(422, {"error": "RecordInvalid", "description": "Phone is invalid"})]

    with pytest.raises(PermanentDeliveryError, match="Phone is invalid"):
        connector(site, tmp_path).deliver(with_identifiers(sample_job(destination=NAME), "phone:+4915123456789"))


def test_a_follow_up_is_an_internal_comment_that_reopens_the_ticket(vendor, site, tmp_path):
    vendor.script = [UPDATED]
    job = follow_up("35436")

    result = connector(site, tmp_path).deliver(job)

    (update,) = vendor.requests
    assert (update.method, update.path) == ("PUT", "/api/v2/tickets/35436")
    sent = body(update)["ticket"]
    assert set(sent) == {"comment", "status"} and sent["status"] == "open"
    assert sent["comment"]["public"] is False and "contact ct_2" in sent["comment"]["body"]
    assert "idempotency-key" not in update.headers
    assert (result.case_ref, result.external_ref) == ("35436", "79")


def test_public_comments_and_no_reopening_are_settings(vendor, site, tmp_path):
    vendor.script = [UPDATED]

    connector(site, tmp_path, public_comments=True, reopen_on_follow_up=False).deliver(follow_up("35436"))

    sent = body(vendor.requests[0])["ticket"]
    assert set(sent) == {"comment"} and sent["comment"]["public"] is True


def test_a_retried_first_delivery_finds_its_own_ticket_and_sends_nothing_twice(vendor, site, tmp_path):
    job = sample_job(destination=NAME)
    vendor.script = [json_answer(200, {"tickets": [
        {"id": 35436, "status": "new", "description": f"… Hub: contact {job.contact.id}, case {job.case.id} …"}]})]

    result = connector(site, tmp_path).deliver(job)

    assert [r.method for r in vendor.requests] == ["GET"]
    assert (result.case_ref, result.external_ref) == ("35436", "35436")


def test_a_found_ticket_of_the_case_gets_another_contact_as_a_comment(vendor, site, tmp_path):
    job = sample_job(destination=NAME, contact_id="ct_later")
    vendor.script = [json_answer(200, {"tickets": [
        {"id": 35436, "status": "closed", "description": "Hub: contact ct_first"},
        {"id": 35500, "status": "open", "description": "Hub: contact ct_second"},
        {"id": 35400, "status": "solved", "description": "Hub: contact ct_zero"},
    ]}), UPDATED]

    result = connector(site, tmp_path).deliver(job)

    assert [(r.method, r.path) for r in vendor.requests][1] == ("PUT", "/api/v2/tickets/35500")
    assert result.case_ref == "35500"


def test_a_closed_ticket_gets_a_linked_follow_up_ticket(vendor, site, tmp_path):
    closed = json_answer(422, {"error": "RecordInvalid", "details": {"status": [{"description": "Status: closed prevents ticket update"}]}})
    vendor.script = [closed, USER, json_answer(201, {"ticket": {"id": 36000}})]
    job = follow_up("35436")

    result = connector(site, tmp_path).deliver(job)

    _, _, create = vendor.requests
    ticket = body(create)["ticket"]
    assert (ticket["via_followup_source_id"], ticket["external_id"]) == (35436, job.case.id)
    assert create.headers["idempotency-key"] == job.delivery_id
    assert (result.case_ref, result.external_ref) == ("36000", "36000")


def test_a_deleted_ticket_makes_the_case_start_a_new_one(vendor, site, tmp_path):
    vendor.script = [json_answer(404, {"error": "RecordNotFound"}), USER, json_answer(201, {"ticket": {"id": 36001}})]

    result = connector(site, tmp_path).deliver(follow_up("35436"))

    assert [r.method for r in vendor.requests] == ["PUT", "POST", "POST"]
    assert "via_followup_source_id" not in body(vendor.requests[2])["ticket"]
    assert result.case_ref == "36001"


def test_other_update_rejections_are_permanent(vendor, site, tmp_path):
    vendor.script = [json_answer(422, {"error": "RecordInvalid", "details": {"base": [{"description": "Group is invalid"}]}})]

    with pytest.raises(PermanentDeliveryError, match="Group is invalid"):
        connector(site, tmp_path).deliver(follow_up("35436"))


def test_a_replayed_idempotency_key_with_other_parameters_is_retried(vendor, site, tmp_path):
    vendor.script = [NO_TICKETS, USER, json_answer(400, {"error": "IdempotentRequestError",
                                                         "description": "Request parameters don't match"})]

    with pytest.raises(RetryableDeliveryError) as raised:
        connector(site, tmp_path).deliver(sample_job(destination=NAME))

    assert raised.value.retry_after == 5.0


def test_another_bad_request_on_create_is_permanent(vendor, site, tmp_path):
    vendor.script = [NO_TICKETS, USER, json_answer(400, {"error": "InvalidEndpoint"})]

    with pytest.raises(PermanentDeliveryError, match="InvalidEndpoint"):
        connector(site, tmp_path).deliver(sample_job(destination=NAME))


def test_a_stored_reference_that_is_not_a_ticket_id_is_permanent(vendor, site, tmp_path):
    with pytest.raises(PermanentDeliveryError, match="not a ticket id"):
        connector(site, tmp_path).deliver(follow_up("../users/1"))

    assert vendor.requests == []


def test_fetchable_attachments_are_uploaded_and_the_rest_are_named_in_the_comment(vendor, site, tmp_path, origin):
    origin.routes = {"/m/photo.jpg": PHOTO, "/m/big.bin": Reply(200, b"x" * (1024 * 1024 + 1))}
    vendor.script = [json_answer(201, {"upload": {"token": "tok1"}}), UPDATED]
    job = with_attachments(
        follow_up("35436"),
        Attachment(url=f"https://{MEDIA_HOST}/m/photo.jpg", content_type="image/jpeg", filename="Foto 1.jpg"),
        Attachment(url="http://media.example.com/m/plain.jpg"),
        Attachment(url="https://10.0.0.5/internal.png"),
        Attachment(url="https://metadata.internal/latest"),
        Attachment(url=f"https://{MEDIA_HOST}/m/missing.pdf", filename="invoice.pdf"),
        Attachment(url=f"https://{MEDIA_HOST}/m/huge.mp4", size=50 * 1024 * 1024),
        Attachment(url=f"https://{MEDIA_HOST}/m/big.bin"),
        Attachment(provider_media_id="wamid.media.1", content_type="audio/ogg"),
    )

    connector(site, tmp_path, media=origin, max_attachment_bytes=1024 * 1024).deliver(job)

    upload, update = vendor.requests
    assert (upload.method, upload.path) == ("POST", "/api/v2/uploads?filename=Foto%201.jpg")
    assert (upload.headers["content-type"], upload.body) == ("image/jpeg", PHOTO.body)
    assert upload.headers["authorization"].startswith("Basic ")
    comment = body(update)["ticket"]["comment"]
    assert comment["uploads"] == ["tok1"]
    assert comment["body"].endswith("\n".join([
        "Not attached (not an https URL): plain.jpg",
        "Not attached (host not allowed): internal.png",
        "Not attached (host not allowed): latest",
        "Not attached (download answered 404): invoice.pdf",
        "Not attached (larger than 1 MB): huge.mp4",
        "Not attached (larger than 1 MB): big.bin",
        "Not attached (no URL): attachment",
    ]))


def test_attachments_are_only_listed_when_uploads_are_off(vendor, site, tmp_path, origin):
    vendor.script = [UPDATED]
    job = with_attachments(follow_up("35436"), Attachment(url=f"https://{MEDIA_HOST}/m/photo.jpg"))

    origin.routes["/m/photo.jpg"] = PHOTO
    connector(site, tmp_path, media=origin, upload_attachments=False).deliver(job)

    (update,) = vendor.requests
    comment = body(update)["ticket"]["comment"]
    assert "uploads" not in comment and f"https://{MEDIA_HOST}/m/photo.jpg" in comment["body"]


def test_a_failed_upload_is_classified_like_any_vendor_answer(vendor, site, tmp_path, origin):
    vendor.script = [json_answer(503, {"error": "down"})]
    job = with_attachments(follow_up("35436"), Attachment(url=f"https://{MEDIA_HOST}/m/photo.jpg"))

    with pytest.raises(RetryableDeliveryError):
        connector(site, tmp_path, media=origin).deliver(job)


# --- attachment downloads: bounded, never inflated, pinned to the checked address -------------------
#
# A web chat visitor chooses attachment URLs, so the copy into Zendesk is an attacker-chosen
# download. The origin plays the attachment host. `OriginHttp` also sends the shared client's
# requests for it there, so a copy that went back to the shared client would meet the same
# bomb and trickle (and fail these tests), not a 404.

BOMB_INFLATED = 100 * 1024 * 1024


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb(BOMB_INFLATED)


class OriginHttp(HttpClient):
    """The real shared client; requests for `host` go to the origin instead (same path)."""

    def __init__(self, origin: Origin, host: str = MEDIA_HOST) -> None:
        super().__init__()
        self.origin, self.host = origin, host

    def request(self, method, url, **kwargs):
        parts = urlsplit(url)
        if parts.hostname == self.host:
            url = f"{self.origin.base}{parts.path}"
        return super().request(method, url, **kwargs)


def origin_connector(site, tmp_path, origin: Origin, resolve=None, **overrides) -> ZendeskConnector:
    zendesk = connector(site, tmp_path, OriginHttp(origin), origin, **overrides)
    if resolve is not None:
        zendesk.resolve_host = resolve
    return zendesk


def comment_of(vendor) -> dict:
    return body(vendor.requests[-1])["ticket"]["comment"]


def test_a_gzip_bomb_attachment_is_refused_without_ever_being_inflated(vendor, site, tmp_path, origin, bomb):
    origin.routes["/m/bomb.jpg"] = Reply(200, bomb, {"Content-Type": "image/jpeg", "Content-Encoding": "gzip"})
    vendor.script = [UPDATED]
    job = with_attachments(follow_up("35436"), Attachment(url=f"https://{MEDIA_HOST}/m/bomb.jpg", filename="bomb.jpg"))
    zendesk = origin_connector(site, tmp_path, origin)

    tracemalloc.start()
    try:
        zendesk.deliver(job)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(bomb) < 200 * 1024 and peak < 10 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a {len(bomb)} byte body"
    assert comment_of(vendor)["body"].endswith("Not attached (compressed download refused): bomb.jpg")
    assert "uploads" not in comment_of(vendor)
    assert origin.requests[0].headers["accept-encoding"] == "identity"


def test_a_trickled_attachment_stops_at_the_deadline_though_no_read_ever_times_out(vendor, site, tmp_path, origin):
    # 10 bytes every 50 ms: 8 s for the file, each read far inside any per-read timeout.
    origin.routes["/m/slow.pdf"] = Reply(200, b"%PDF-" + b"x" * 1595, {"Content-Type": "application/pdf"},
                                         piece=10, pause=0.05)
    vendor.script = [UPDATED]
    job = with_attachments(follow_up("35436"), Attachment(url=f"https://{MEDIA_HOST}/m/slow.pdf", filename="slow.pdf"))

    started = time.monotonic()
    origin_connector(site, tmp_path, origin, timeout_seconds=1).deliver(job)
    elapsed = time.monotonic() - started

    assert elapsed < 2.5, f"the download took {elapsed:.1f} s with a 1 s deadline"
    assert comment_of(vendor)["body"].endswith("Not attached (download failed): slow.pdf")


def test_an_announced_length_over_the_limit_is_refused_before_any_body_byte(vendor, site, tmp_path, origin):
    # The origin announces 50 MB and then sends nothing for 5 s: only reading the header is fast.
    origin.routes["/m/huge.bin"] = Reply(200, b"", {"Content-Type": "application/octet-stream"},
                                         length=50 * 1024 * 1024, stall=5)
    vendor.script = [UPDATED]
    job = with_attachments(follow_up("35436"), Attachment(url=f"https://{MEDIA_HOST}/m/huge.bin", filename="huge.bin"))

    started = time.monotonic()
    origin_connector(site, tmp_path, origin, max_attachment_bytes=1024 * 1024, timeout_seconds=3).deliver(job)

    assert time.monotonic() - started < 1.5
    assert comment_of(vendor)["body"].endswith("Not attached (larger than 1 MB): huge.bin")


@pytest.mark.parametrize("address", ["127.0.0.1", "169.254.169.254", "10.1.2.3", "100.64.0.7", "::1",
                                     "::ffff:169.254.169.254", "fd00:ec2::254", "fe80::1"])
def test_a_name_that_resolves_to_an_internal_address_is_never_connected_to(vendor, site, tmp_path, origin, address):
    vendor.script = [UPDATED]
    job = with_attachments(follow_up("35436"), Attachment(url="https://files.attacker.example/x.png", filename="x.png"))

    origin_connector(site, tmp_path, origin, resolve=lambda host: [address]).deliver(job)

    assert comment_of(vendor)["body"].endswith("Not attached (host not allowed): x.png")
    assert origin.connections == 0 and origin.endpoints == []


def test_the_connection_goes_to_the_address_that_was_checked_not_to_a_second_answer(vendor, site, tmp_path, origin):
    """DNS rebinding: the name is public when checked and loopback when looked up again. The
    download must connect to the checked address (TLS and Host still carry the name)."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    asked: list[str] = []

    def rebinding(host: str) -> list[str]:
        asked.append(host)
        return next(answers, ["127.0.0.1"])

    origin.routes["/m/photo.jpg"] = Reply(200, PHOTO.body, {"Content-Type": "image/jpeg"})
    vendor.script = [json_answer(201, {"upload": {"token": "tok1"}}), UPDATED]
    url = f"https://localhost:{origin.port}/m/photo.jpg"  # the shared client would find the origin on loopback
    job = with_attachments(follow_up("35436"), Attachment(url=url, content_type="image/jpeg", filename="photo.jpg"))

    origin_connector(site, tmp_path, origin, resolve=rebinding).deliver(job)

    assert [(e.address, e.host) for e in origin.endpoints] == [("93.184.216.34", "localhost")]
    assert origin.connections == len(origin.endpoints), "every connection went through the checked endpoint"
    assert asked == ["localhost"], "resolved once"
    assert origin.requests[0].headers["host"] == f"localhost:{origin.port}"
    assert comment_of(vendor)["uploads"] == ["tok1"] and vendor.requests[0].body == PHOTO.body


# --- customer events ----------------------------------------------------------------------------------


def users(*entries: dict) -> Answer:
    return json_answer(200, {"users": list(entries)})


def test_erasure_soft_then_permanently_deletes_the_end_user(vendor, site, tmp_path):
    vendor.script = [users({"id": 501, "external_id": CUSTOMER.upper(), "role": "end-user"}), USER,
                     json_answer(200, {"deleted_user": {"id": 501}})]

    result = connector(site, tmp_path).deliver_customer_event(event("customer.erased"))

    lookup, soft, hard = vendor.requests
    assert (lookup.method, urlsplit(lookup.path).path, query(lookup)) == (
        "GET", "/api/v2/users/show_many", {"external_ids": [CUSTOMER]})
    assert [(soft.method, soft.path), (hard.method, hard.path)] == [
        ("DELETE", "/api/v2/users/501"), ("DELETE", "/api/v2/deleted_users/501")]
    assert result.external_ref == "user:501"


def test_erasure_can_stop_at_the_soft_delete(vendor, site, tmp_path):
    vendor.script = [users({"id": 501, "external_id": CUSTOMER, "role": "end-user"}), USER]

    connector(site, tmp_path, permanently_delete_users=False).deliver_customer_event(event("customer.erased"))

    assert [r.method for r in vendor.requests] == ["GET", "DELETE"]


@pytest.mark.parametrize("found", [
    [],
    [{"id": 7, "external_id": CUSTOMER, "role": "agent"}],
    [{"id": 8, "external_id": "cus_someone_else", "role": "end-user"}],
])
def test_erasure_deletes_nothing_but_the_customers_end_user(vendor, site, tmp_path, found):
    vendor.script = [users(*found)]

    result = connector(site, tmp_path).deliver_customer_event(event("customer.erased"))

    assert [r.method for r in vendor.requests] == ["GET"]
    assert result.external_ref is None


def test_erasure_of_a_user_deleted_meanwhile_succeeds(vendor, site, tmp_path):
    vendor.script = [users({"id": 501, "external_id": CUSTOMER, "role": "end-user"}),
                     json_answer(404, {"error": "RecordNotFound"}), json_answer(404, {"error": "RecordNotFound"})]

    assert connector(site, tmp_path).deliver_customer_event(event("customer.erased")).external_ref == "user:501"


def test_merge_merges_the_absorbed_end_user_into_the_survivors(vendor, site, tmp_path):
    vendor.script = [users({"id": 501, "external_id": CUSTOMER, "role": "end-user"},
                           {"id": 502, "external_id": ABSORBED, "role": "end-user"}), USER]

    result = connector(site, tmp_path).deliver_customer_event(event("customer.merged", other_customer_id=ABSORBED))

    lookup, merge = vendor.requests
    assert query(lookup) == {"external_ids": [f"{CUSTOMER},{ABSORBED}"]}
    assert (merge.method, merge.path, body(merge)) == ("PUT", "/api/v2/users/502/merge", {"user": {"id": 501}})
    assert result.external_ref == "user:501"


@pytest.mark.parametrize("found", [
    [{"id": 501, "external_id": CUSTOMER, "role": "end-user"}],
    [{"id": 502, "external_id": ABSORBED, "role": "end-user"}],
    [{"id": 501, "external_id": CUSTOMER, "role": "end-user"}, {"id": 502, "external_id": ABSORBED, "role": "admin"}],
])
def test_merge_is_a_no_op_unless_both_end_users_exist(vendor, site, tmp_path, found):
    vendor.script = [users(*found)]

    result = connector(site, tmp_path).deliver_customer_event(event("customer.merged", other_customer_id=ABSORBED))

    assert [r.method for r in vendor.requests] == ["GET"]
    assert result.external_ref is None


def test_unmerge_sends_nothing(vendor, site, tmp_path, caplog):
    with caplog.at_level("INFO"):
        result = connector(site, tmp_path).deliver_customer_event(
            event("customer.unmerged", other_customer_id=ABSORBED, merge_id="mrg_1"))

    assert vendor.requests == [] and result.external_ref is None
    assert "Zendesk merges are final" in caplog.text


def test_an_unknown_customer_event_is_permanent(vendor, site, tmp_path):
    with pytest.raises(PermanentDeliveryError, match="customer.renamed"):
        connector(site, tmp_path).deliver_customer_event(event("customer.renamed"))


# --- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "message"), [
    ({"mapping": {"priority": {"high": "critical"}}}, "not a Zendesk priority"),
    ({"mapping": {"custom_fields": {"tier": "customer.attributes.tier"}}}, "ticket field id"),
    ({"max_attachment_bytes": 51 * 1024 * 1024}, "max_attachment_bytes"),
    ({"base_url": "http://acme.zendesk.com"}, "https"),
])
def test_settings_refuse_what_zendesk_cannot_take(overrides, message):
    with pytest.raises(ValidationError, match=message):
        ZendeskConnector.Settings.model_validate({**settings("https://acme.zendesk.com"), **overrides})


def test_the_api_token_stays_out_of_the_settings_repr():
    parsed = ZendeskConnector.Settings.model_validate(settings("https://acme.zendesk.com"))

    assert "ZENDESK_API_TOKEN" not in repr(parsed)


# --- outbound messages (message.sent): the hub's public comment with its echo marker ------------------

OUTBOUND_COMMENTS_NONE = json_answer(200, {"comments": [], "next_page": None, "count": 0})


def test_prism_outbound_message_reads_the_newest_comments_then_adds_a_public_comment(prism, tmp_path):
    http = RecordingHttp()
    job = outbound_job(NAME, ticket="35436")

    result = connector(prism(SPEC).url, tmp_path, http, outbound_author_id=20978391,
                       outbound_status="pending").deliver(job)

    assert http.calls == [("GET", "/api/v2/tickets/35436/comments", 200), ("PUT", "/api/v2/tickets/35436", 200)]
    assert http.violations == []
    assert result.case_ref == "35436"


@pytest.mark.prism_specs(SPEC)
def test_prism_rejects_a_malformed_comment_listing(prism, tmp_path):
    # Without a 422 of its own in the spec, Prism puts the reasons in its 422 body.
    with pytest.raises(PermanentDeliveryError, match="answered 422") as raised:
        connector(prism(SPEC).url, tmp_path).api.call("GET", "/api/v2/tickets/35436/comments?sort_order=newest")

    assert "allowed values" in raised.value.message.lower()


def test_outbound_message_is_a_public_comment_ending_in_the_marker(vendor, site, tmp_path):
    vendor.script = [OUTBOUND_COMMENTS_NONE, UPDATED]
    job = outbound_job(NAME, ticket="35436")

    result = connector(site, tmp_path, outbound_author_id=20978391, outbound_status="pending").deliver(job)

    listing, update = vendor.requests
    assert (listing.method, urlsplit(listing.path).path, query(listing)) == (
        "GET", "/api/v2/tickets/35436/comments", {"sort_order": ["desc"]})
    assert (update.method, update.path) == ("PUT", "/api/v2/tickets/35436")
    ticket = body(update)["ticket"]
    assert ticket["comment"] == {"body": f"{REPLY}\n\nSent to the customer on whatsapp by the hub [hub:{OUTBOUND_ID}]",
                                 "public": True, "author_id": 20978391}
    assert ticket["status"] == "pending"
    assert ticket["metadata"] == {"hub": {"contact_id": OUTBOUND_ID, "delivery_id": job.delivery_id}}
    assert marked_contact(ticket["comment"]["body"]) == OUTBOUND_ID
    # Zendesk takes Idempotency-Key on ticket creation only; the lookup stands in for it.
    assert "idempotency-key" not in update.headers
    assert (result.external_ref, result.case_ref) == ("79", "35436")


def test_outbound_defaults_leave_the_author_and_status_alone(vendor, site, tmp_path):
    vendor.script = [OUTBOUND_COMMENTS_NONE, UPDATED]

    connector(site, tmp_path).deliver(outbound_job(NAME, ticket="35436"))

    assert set(body(vendor.requests[1])["ticket"]) == {"comment", "metadata"}
    assert set(body(vendor.requests[1])["ticket"]["comment"]) == {"body", "public"}


def test_an_outbound_message_already_on_the_ticket_is_not_added_twice(vendor, site, tmp_path):
    earlier = json_answer(200, {"comments": [
        {"id": 91, "public": True, "body": f"Hallo\n\nSent to the customer on whatsapp by the hub [hub:{OUTBOUND_ID}]"},
        {"id": 90, "public": False, "body": "Jana Schmidt via whatsapp: thanks"}]})
    vendor.script = [earlier]

    result = connector(site, tmp_path).deliver(outbound_job(NAME, ticket="35436"))

    assert [r.method for r in vendor.requests] == ["GET"]
    assert (result.external_ref, result.case_ref) == ("91", "35436")


def test_another_outbound_marker_does_not_count_as_this_one(vendor, site, tmp_path):
    other = json_answer(200, {"comments": [{"id": 91, "body": f"Hi [hub:{OUTBOUND_ID}0]"},
                                           {"id": 92, "body": "Hi [hub:ct_01JD0000000000000000000098]"}]})
    vendor.script = [other, UPDATED]

    connector(site, tmp_path).deliver(outbound_job(NAME, ticket="35436"))

    assert [r.method for r in vendor.requests] == ["GET", "PUT"]


@pytest.mark.parametrize("answers", [
    [json_answer(404, {"error": "RecordNotFound"})],
    [OUTBOUND_COMMENTS_NONE, json_answer(404, {"error": "RecordNotFound"})],
    [OUTBOUND_COMMENTS_NONE, json_answer(422, {"error": "RecordInvalid", "details": {
        "status": [{"description": "Status: closed prevents ticket update"}]}})],
])
def test_a_deleted_or_closed_ticket_takes_no_outbound_comment_and_opens_nothing(vendor, site, tmp_path, answers):
    vendor.script = list(answers)

    result = connector(site, tmp_path).deliver(outbound_job(NAME, ticket="35436"))

    assert [r.method for r in vendor.requests] == ["GET", "PUT"][: len(answers)]
    assert (result.external_ref, result.case_ref) == (None, None)


def test_outbound_message_without_the_cases_ticket_is_refused(vendor, site, tmp_path):
    with pytest.raises(PermanentDeliveryError, match="has no ticket"):
        connector(site, tmp_path).deliver(outbound_job(NAME))
    assert vendor.requests == []


def test_zendesk_takes_message_sent_only_and_a_destination_can_turn_it_off(tmp_path):
    assert ZendeskConnector.message_events == frozenset({"message.sent"})
    assert connector("https://acme.zendesk.com", tmp_path).takes("message.sent")
    assert not connector("https://acme.zendesk.com", tmp_path).takes("message.status")
    assert connector("https://acme.zendesk.com", tmp_path, outbound_messages=False).message_events == frozenset()
    with pytest.raises(PermanentDeliveryError, match="does not take message.status"):
        connector("https://acme.zendesk.com", tmp_path).deliver(
            outbound_job(NAME, ticket="35436", event_type="message.status"))
