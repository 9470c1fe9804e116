"""Jira Service Management: the shared connector contract, the requests against a Prism mock of
Atlassian's published spec, and the exact payloads against the scripted Receiver.

The derived spec (tests/contract/specs/jira-service-management/jsm-requests.derived.json) covers request
create/list and comments. The desk's customer list and "add customers" (used by
`raise_on_behalf`) are only in the full upstream copy, so `customer_spec` derives a file with
them, the same way the committed derived file was made (basic auth added, string examples decoded).
"""

from __future__ import annotations

import base64
import copy
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.adapters.connectors.echo import marked_contact
from chalicelib.adapters.connectors.http import HttpClient
from chalicelib.adapters.connectors.jira_service_management import JiraServiceManagementConnector
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.models import ExternalRef
from chalicelib.errors import PermanentDeliveryError
from chalicelib.secrets import SecretResolver
from tests.support.connector_setup import ConnectorSetup
from tests.support.fakes import sample_job
from tests.support.outbound_jobs import OUTBOUND_ID, outbound_job
from tests.support.prism import vendor_specs_dir
from tests.support.receiver import Answer, Receiver

SPEC = "jira-service-management/jsm-requests.derived.json"
FULL_SPEC = "jira-service-management/jsm-openapi.ballerina-derived.json"
CUSTOMERS = "/rest/servicedeskapi/servicedesk/{serviceDeskId}/customer"
ENVIRON = {"JSM_API_TOKEN": "jsm-api-token"}
NAME = "jsm-test"


def settings(base_url: str, **overrides) -> dict:
    return {
        "base_url": base_url,
        "auth": {"type": "basic", "username": "agent@example.com", "password": "env:JSM_API_TOKEN"},
        "service_desk_id": "10",
        "request_type_id": "25",
        **overrides,
    }


SETUP = ConnectorSetup(
    key="jira_service_management",
    settings=settings,
    environ=ENVIRON,
    created_body={"issueId": "107001", "issueKey": "HELPDESK-1", "requestTypeId": "25", "serviceDeskId": "10"},
    created_ref="HELPDESK-1",
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


def connector(base_url: str, tmp_path, http: HttpClient | None = None, **overrides) -> JiraServiceManagementConnector:
    parsed = JiraServiceManagementConnector.Settings.model_validate(settings(base_url, **overrides))
    runtime = ConnectorRuntime(data_dir=str(tmp_path), http=http or HttpClient())
    return JiraServiceManagementConnector(NAME, parsed, SecretResolver(ENVIRON), runtime)


def follow_up(ref: str, *, contact_id: str = "ct_2", **job):
    first = sample_job(destination=NAME)
    case = first.case.model_copy(update={"external_refs": {NAME: ExternalRef(destination=NAME, ref=ref)}})
    return sample_job(destination=NAME, contact_id=contact_id, case=case, **job)


def with_email(job, email: str):
    identifiers = [Identifier.parse(f"email:{email}"), Identifier.parse("phone:+4915123456789")]
    return job.model_copy(update={"customer": job.customer.model_copy(update={"identifiers": identifiers})})


def body(request) -> dict:
    return json.loads(request.body)


def query(request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.path).query)


def json_answer(status: int, payload) -> Answer:
    return Answer(status, json.dumps(payload).encode(), {"content-type": "application/json"})


NOTHING_FOUND = json_answer(200, {"size": 0, "start": 0, "limit": 50, "isLastPage": True, "values": []})


def listed(key: str, summary: str, description: str = "") -> Answer:
    return json_answer(200, {"size": 1, "isLastPage": True, "values": [{
        "issueKey": key, "requestFieldValues": [
            {"fieldId": "summary", "label": "Summary", "value": summary},
            {"fieldId": "description", "label": "Description", "value": description},
        ],
    }]})


@pytest.fixture
def vendor():
    with Receiver() as server:
        yield server


@pytest.fixture
def site(vendor) -> str:
    return vendor.url.rsplit("/hooks", 1)[0]


# --- Prism: Atlassian's published spec ------------------------------------------------------------


@pytest.fixture(scope="module")
def customer_spec(tmp_path_factory):
    """The derived spec plus the desk-customer paths from the full upstream copy."""
    specs = vendor_specs_dir()
    derived = json.loads((specs / SPEC).read_text())
    full = json.loads((specs / FULL_SPEC).read_text())
    item = copy.deepcopy(full["paths"][CUSTOMERS])
    for operation in item.values():
        operation["security"] = [{"basicAuth": []}]
        for response in operation.get("responses", {}).values():
            media = response.get("content", {}).get("application/json", {})
            if isinstance(media.get("example"), str):
                media["example"] = json.loads(media["example"])
    derived["paths"][CUSTOMERS] = item
    schemas, pending = derived["components"]["schemas"], [item]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            name = ref.rsplit("/", 1)[-1]
            if ref.startswith("#/components/schemas/") and name not in schemas:
                schemas[name] = copy.deepcopy(full["components"]["schemas"][name])
                pending.append(schemas[name])
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    path = tmp_path_factory.mktemp("jsm-spec") / "jsm-requests-and-customers.json"
    path.write_text(json.dumps(derived))
    return str(path)


@pytest.mark.prism_specs(SPEC)
def test_prism_first_delivery_looks_the_case_up_then_raises_a_request(prism, tmp_path):
    http = RecordingHttp()
    jsm = connector(prism(SPEC).url, tmp_path, http)

    result = jsm.deliver(sample_job(destination=NAME))

    # The spec's list example holds a request of another case, so a new one is raised.
    assert [(m, p, s) for m, p, s, _ in http.exchanges] == [
        ("GET", "/rest/servicedeskapi/request", 200), ("POST", "/rest/servicedeskapi/request", 201),
    ]
    assert http.violations == []
    assert (result.case_ref, result.external_ref) == ("HELPDESK-1", "HELPDESK-1")


@pytest.mark.prism_specs(SPEC)
def test_prism_follow_up_adds_a_comment(prism, tmp_path):
    http = RecordingHttp()
    jsm = connector(prism(SPEC).url, tmp_path, http, public_comments=True)

    result = jsm.deliver(follow_up("HELPDESK-1"))

    assert [(m, p, s) for m, p, s, _ in http.exchanges] == [("POST", "/rest/servicedeskapi/request/HELPDESK-1/comment", 201)]
    assert http.violations == []
    assert (result.case_ref, result.external_ref) == ("HELPDESK-1", "HELPDESK-1/comment/1000")


@pytest.mark.prism_specs(SPEC)
def test_prism_request_with_priority_labels_and_custom_fields_is_accepted(prism, tmp_path):
    http = RecordingHttp()
    jsm = connector(prism(SPEC).url, tmp_path, http, priority_field="priority", labels_field="labels",
                    case_id_in_summary=False, mapping={"custom_fields": {"customfield_10050": "case.id"}})

    jsm.deliver(sample_job(destination=NAME))

    assert [(m, s) for m, _, s, _ in http.exchanges] == [("POST", 201)]
    assert http.violations == []


def test_prism_raise_on_behalf_finds_or_creates_the_customer(prism, customer_spec, tmp_path):
    url = prism(customer_spec).url
    known, unknown = RecordingHttp(), RecordingHttp()

    # The spec's customer-list example holds fred@example.com.
    connector(url, tmp_path, known, raise_on_behalf=True, case_id_in_summary=False).deliver(
        with_email(sample_job(destination=NAME), "fred@example.com"))
    connector(url, tmp_path, unknown, raise_on_behalf=True, case_id_in_summary=False).deliver(
        sample_job(destination=NAME))

    assert [(m, p, s) for m, p, s, _ in known.exchanges] == [
        ("GET", "/rest/servicedeskapi/servicedesk/10/customer", 200), ("POST", "/rest/servicedeskapi/request", 201),
    ]
    assert [(m, p, s) for m, p, s, _ in unknown.exchanges] == [
        ("GET", "/rest/servicedeskapi/servicedesk/10/customer", 200), ("POST", "/rest/servicedeskapi/customer", 201),
        ("POST", "/rest/servicedeskapi/servicedesk/10/customer", 204), ("POST", "/rest/servicedeskapi/request", 201),
    ]
    assert known.violations == unknown.violations == []


# Negative controls (specs/README.md pitfall 1): the mock must refuse what the real API refuses, or the
# tests above prove nothing. Each sends a broken variant of the connector's request through its
# own API client.


@pytest.mark.prism_specs(SPEC)
@pytest.mark.parametrize(("path", "payload", "reason"), [
    ("/rest/servicedeskapi/request", {"serviceDeskId": "10", "requestTypId": "25", "requestFieldValues": {}},
     "additional properties"),
    ("/rest/servicedeskapi/request", {"serviceDeskId": 10, "requestTypeId": "25"}, "must be string"),
    ("/rest/servicedeskapi/request/HELPDESK-1/comment", {"body": "hi", "public": "yes"}, "must be boolean"),
    ("/rest/servicedeskapi/request/HELPDESK-1/comment", {"body": "hi", "internal": True}, "additional properties"),
])
def test_prism_rejects_a_malformed_request(prism, tmp_path, path, payload, reason):
    http = RecordingHttp()
    jsm = connector(prism(SPEC).url, tmp_path, http)

    with pytest.raises(PermanentDeliveryError) as raised:
        jsm.api.call("POST", path, json_body=payload)

    assert "answered 400" in raised.value.message
    assert reason in (http.violations[0] or "").lower()


@pytest.mark.prism_specs(SPEC)
def test_prism_rejects_a_request_without_credentials(prism, tmp_path):
    # The token in a header the API does not read: no Authorization at all.
    jsm = connector(prism(SPEC).url, tmp_path, auth={"type": "api_token", "header": "X-Token", "token": "env:JSM_API_TOKEN"})

    with pytest.raises(PermanentDeliveryError, match="answered 401"):
        jsm.deliver(sample_job(destination=NAME))


def test_prism_rejects_a_malformed_customer_request(prism, customer_spec, tmp_path):
    http = RecordingHttp()
    jsm = connector(prism(customer_spec).url, tmp_path, http)

    with pytest.raises(PermanentDeliveryError, match="answered 400"):
        jsm.api.call("POST", "/rest/servicedeskapi/servicedesk/10/customer", json_body={"accountId": "qm:1"})

    assert "additional properties" in (http.violations[0] or "").lower()


# --- payloads against the scripted Receiver --------------------------------------------------------


def test_first_delivery_raises_a_request_marked_with_the_case_id(vendor, site, tmp_path):
    vendor.script = [NOTHING_FOUND, json_answer(201, {"issueId": "10001", "issueKey": "SD-7"})]
    job = sample_job(destination=NAME)

    result = connector(site, tmp_path).deliver(job)

    lookup, create = vendor.requests
    assert (lookup.method, urlsplit(lookup.path).path) == ("GET", "/rest/servicedeskapi/request")
    assert query(lookup) == {"searchTerm": [job.case.id], "serviceDeskId": ["10"], "requestStatus": ["ALL_REQUESTS"],
                             "requestOwnership": ["ALL_REQUESTS"], "limit": ["50"]}
    sent = body(create)
    assert (create.method, create.path) == ("POST", "/rest/servicedeskapi/request")
    assert set(sent) == {"serviceDeskId", "requestTypeId", "requestFieldValues"}
    assert (sent["serviceDeskId"], sent["requestTypeId"]) == ("10", "25")
    assert set(sent["requestFieldValues"]) == {"summary", "description"}
    assert sent["requestFieldValues"]["summary"] == f"[whatsapp] {job.contact.text} [{job.case.id}]"
    assert job.contact.text in sent["requestFieldValues"]["description"]
    assert f"contact {job.contact.id}" in sent["requestFieldValues"]["description"]
    assert create.headers["authorization"] == "Basic " + base64.b64encode(b"agent@example.com:jsm-api-token").decode()
    assert (result.case_ref, result.external_ref) == ("SD-7", "SD-7")


def test_mapped_fields_go_into_request_field_values(vendor, site, tmp_path):
    vendor.script = [json_answer(201, {"issueKey": "SD-8"})]
    jsm = connector(site, tmp_path, case_id_in_summary=False, priority_field="priority", labels_field="labels",
                    fields={"description": "customfield_10010"},
                    mapping={"priority": {"high": "Critical"}, "tags": ["omni channel"],
                             "custom_fields": {"customfield_10050": "case.id", "customfield_10051": "customer.attributes.tier"}})
    job = sample_job(destination=NAME)

    jsm.deliver(job)

    (create,) = vendor.requests
    values = body(create)["requestFieldValues"]
    assert values["priority"] == {"name": "Critical"}
    assert values["labels"] == ["outage", "omni-channel"]
    assert (values["customfield_10050"], values["customfield_10051"]) == (job.case.id, "gold")
    assert "description" not in values and job.contact.text in values["customfield_10010"]
    assert values["summary"] == f"[whatsapp] {job.contact.text}"


def test_the_summary_keeps_the_marker_within_jiras_limit(vendor, site, tmp_path):
    vendor.script = [NOTHING_FOUND, json_answer(201, {"issueKey": "SD-9"})]
    job = sample_job(destination=NAME, text="x" * 400)

    connector(site, tmp_path).deliver(job)

    summary = body(vendor.requests[1])["requestFieldValues"]["summary"]
    assert len(summary) <= 255 and summary.endswith(f"… [{job.case.id}]")


def test_a_follow_up_is_an_internal_comment_on_the_cases_request(vendor, site, tmp_path):
    vendor.default = json_answer(201, {"id": "20001", "body": "…", "public": False})
    job = follow_up("SD-7")

    result = connector(site, tmp_path).deliver(job)

    (comment,) = vendor.requests
    assert (comment.method, comment.path) == ("POST", "/rest/servicedeskapi/request/SD-7/comment")
    assert body(comment)["public"] is False and set(body(comment)) == {"body", "public"}
    assert job.contact.text in body(comment)["body"] and "contact ct_2" in body(comment)["body"]
    assert (result.case_ref, result.external_ref) == ("SD-7", "SD-7/comment/20001")


def test_a_retried_first_delivery_finds_its_request_and_sends_nothing_twice(vendor, site, tmp_path):
    job = sample_job(destination=NAME)
    vendor.script = [listed("SD-7", f"[whatsapp] earlier [{job.case.id}]", f"… Hub: contact {job.contact.id}, case …")]

    result = connector(site, tmp_path).deliver(job)

    assert [r.method for r in vendor.requests] == ["GET"]
    assert (result.case_ref, result.external_ref) == ("SD-7", "SD-7")


def test_a_found_request_of_the_case_gets_another_contact_as_a_comment(vendor, site, tmp_path):
    job = sample_job(destination=NAME, contact_id="ct_later")
    vendor.script = [listed("SD-7", f"[whatsapp] earlier [{job.case.id}]", "… Hub: contact ct_first, case …"),
                     json_answer(201, {"id": "3"})]

    result = connector(site, tmp_path).deliver(job)

    assert vendor.requests[1].path == "/rest/servicedeskapi/request/SD-7/comment"
    assert (result.case_ref, result.external_ref) == ("SD-7", "SD-7/comment/3")


def test_a_search_hit_without_the_exact_marker_is_not_taken_for_the_cases_request(vendor, site, tmp_path):
    job = sample_job(destination=NAME)
    vendor.script = [listed("SD-1", f"about {job.case.id} and more"), json_answer(201, {"issueKey": "SD-2"})]

    result = connector(site, tmp_path).deliver(job)

    assert [r.method for r in vendor.requests] == ["GET", "POST"]
    assert result.case_ref == "SD-2"


def test_a_deleted_request_makes_the_case_start_a_new_one(vendor, site, tmp_path):
    vendor.script = [json_answer(404, {"errorMessage": "Request does not exist"}), NOTHING_FOUND,
                     json_answer(201, {"issueKey": "SD-12"})]

    result = connector(site, tmp_path).deliver(follow_up("SD-7"))

    assert [r.method for r in vendor.requests] == ["POST", "GET", "POST"]
    assert result.case_ref == "SD-12"


def test_raise_on_behalf_uses_the_listed_customer_and_remembers_it(vendor, site, tmp_path):
    customers = json_answer(200, {"values": [
        {"accountId": "qm:other", "emailAddress": "jana.schmidt@example.com.au"},
        {"accountId": "qm:jana", "emailAddress": "Jana.Schmidt@example.com"},
    ]})
    vendor.script = [customers, json_answer(201, {"issueKey": "SD-1"}), json_answer(201, {"issueKey": "SD-2"})]
    jsm = connector(site, tmp_path, raise_on_behalf=True, case_id_in_summary=False)

    jsm.deliver(sample_job(destination=NAME))
    jsm.deliver(sample_job(destination=NAME, contact_id="ct_3"))

    listing, first, second = vendor.requests
    assert urlsplit(listing.path).path == "/rest/servicedeskapi/servicedesk/10/customer"
    assert query(listing)["query"] == ["jana.schmidt@example.com"]
    assert listing.headers["x-experimentalapi"] == "opt-in"
    assert body(first)["raiseOnBehalfOf"] == body(second)["raiseOnBehalfOf"] == "qm:jana"


def test_raise_on_behalf_creates_a_missing_customer_and_adds_it_to_the_desk(vendor, site, tmp_path):
    vendor.script = [json_answer(200, {"values": []}), json_answer(201, {"accountId": "qm:new"}), Answer(204),
                     json_answer(201, {"issueKey": "SD-1"})]

    connector(site, tmp_path, raise_on_behalf=True, case_id_in_summary=False).deliver(sample_job(destination=NAME))

    _, create_customer, add, request = vendor.requests
    assert create_customer.path == "/rest/servicedeskapi/customer?strictConflictStatusCode=true"
    assert body(create_customer) == {"email": "jana.schmidt@example.com", "displayName": "Jana Schmidt"}
    assert (add.path, body(add)) == ("/rest/servicedeskapi/servicedesk/10/customer", {"accountIds": ["qm:new"]})
    assert body(request)["raiseOnBehalfOf"] == "qm:new"


def test_an_account_the_desk_cannot_list_raises_as_the_api_user_naming_the_customer(vendor, site, tmp_path):
    vendor.script = [json_answer(200, {"values": []}),
                     json_answer(409, {"errorMessage": "An account already exists for this email"}),
                     json_answer(201, {"issueKey": "SD-1"})]

    connector(site, tmp_path, raise_on_behalf=True, case_id_in_summary=False).deliver(sample_job(destination=NAME))

    sent = body(vendor.requests[2])
    assert "raiseOnBehalfOf" not in sent
    assert sent["requestFieldValues"]["description"].startswith("Raised for jana.schmidt@example.com")


def test_a_create_answer_without_an_issue_key_is_permanent(vendor, site, tmp_path):
    vendor.script = [NOTHING_FOUND, json_answer(201, {"unexpected": True})]

    with pytest.raises(PermanentDeliveryError, match="without an issueKey"):
        connector(site, tmp_path).deliver(sample_job(destination=NAME))


@pytest.mark.parametrize(("overrides", "field"), [
    ({"service_desk_id": "HELP"}, "service_desk_id"),
    ({"request_type_id": "25a"}, "request_type_id"),
    ({"fields": {"summary": None}}, "case_id_in_summary"),
    ({"fields": {"subject": "summary"}}, "subject"),
])
def test_settings_refuse_what_jsm_would_reject(overrides, field):
    with pytest.raises(ValidationError, match=field):
        JiraServiceManagementConnector.Settings.model_validate(settings("https://acme.atlassian.net", **overrides))


# --- outbound messages (message.sent): a public comment with the echo marker -------------------------

COMMENTED = json_answer(201, {"id": "1001", "body": "…", "public": True})


def comments(*bodies: str, last: bool = True) -> Answer:
    return json_answer(200, {"size": len(bodies), "start": 0, "limit": 100, "isLastPage": last,
                             "values": [{"id": str(1000 + n), "body": b, "public": True} for n, b in enumerate(bodies)]})


@pytest.mark.prism_specs(SPEC)
def test_prism_outbound_message_reads_public_comments_then_adds_a_public_comment(prism, tmp_path):
    http = RecordingHttp()

    result = connector(prism(SPEC).url, tmp_path, http).deliver(outbound_job(NAME, ticket="HELPDESK-1"))

    assert [(m, p, s) for m, p, s, _ in http.exchanges] == [
        ("GET", "/rest/servicedeskapi/request/HELPDESK-1/comment", 200),
        ("POST", "/rest/servicedeskapi/request/HELPDESK-1/comment", 201)]
    assert http.violations == []
    assert result.case_ref == "HELPDESK-1"


@pytest.mark.prism_specs(SPEC)
def test_prism_rejects_a_comment_listing_with_a_malformed_page(prism, tmp_path):
    http = RecordingHttp()

    with pytest.raises(PermanentDeliveryError, match="answered 4"):
        connector(prism(SPEC).url, tmp_path, http).api.call(
            "GET", "/rest/servicedeskapi/request/HELPDESK-1/comment?public=yes&start=first")


def test_outbound_message_is_a_public_comment_with_an_escaped_marker(vendor, site, tmp_path):
    vendor.script = [comments("Jana via whatsapp: Hilfe"), COMMENTED]

    result = connector(site, tmp_path).deliver(outbound_job(NAME, ticket="HELPDESK-1", text="Gerät {neu} [starten]"))

    listing, comment = vendor.requests
    assert (listing.method, urlsplit(listing.path).path, query(listing)) == (
        "GET", "/rest/servicedeskapi/request/HELPDESK-1/comment",
        {"public": ["true"], "internal": ["false"], "start": ["0"], "limit": ["100"]})
    assert (comment.method, comment.path) == ("POST", "/rest/servicedeskapi/request/HELPDESK-1/comment")
    assert body(comment) == {"body": "Gerät \\{neu\\} \\[starten\\]\n\n"
                                     f"Sent to the customer on whatsapp by the hub \\[hub:{OUTBOUND_ID}\\]",
                             "public": True}
    assert marked_contact(body(comment)["body"]) == OUTBOUND_ID
    assert (result.external_ref, result.case_ref) == ("HELPDESK-1/comment/1001", "HELPDESK-1")


def test_an_outbound_comment_already_on_the_request_is_not_added_twice(vendor, site, tmp_path):
    vendor.script = [comments(*[f"comment {n}" for n in range(100)], last=False),
                     comments(f"Hallo\n\nSent to the customer on whatsapp by the hub \\[hub:{OUTBOUND_ID}\\]")]

    result = connector(site, tmp_path).deliver(outbound_job(NAME, ticket="HELPDESK-1"))

    assert [(r.method, query(r)["start"]) for r in vendor.requests] == [("GET", ["0"]), ("GET", ["100"])]
    assert result.external_ref == "HELPDESK-1/comment/1000"


@pytest.mark.parametrize("answers", [
    [json_answer(404, {"errorMessage": "Request does not exist"})],
    [NOTHING_FOUND, json_answer(404, {"errorMessage": "Request does not exist"})],
])
def test_a_deleted_request_takes_no_outbound_comment_and_raises_nothing_new(vendor, site, tmp_path, answers):
    vendor.script = list(answers)

    result = connector(site, tmp_path).deliver(outbound_job(NAME, ticket="HELPDESK-1"))

    assert [r.method for r in vendor.requests] == ["GET", "POST"][: len(answers)]
    assert (result.external_ref, result.case_ref) == (None, None)


def test_jsm_takes_message_sent_only_and_a_destination_can_turn_it_off(vendor, site, tmp_path):
    assert JiraServiceManagementConnector.message_events == frozenset({"message.sent"})
    assert connector(site, tmp_path, outbound_messages=False).message_events == frozenset()
    with pytest.raises(PermanentDeliveryError, match="does not take message.status"):
        connector(site, tmp_path).deliver(outbound_job(NAME, ticket="HELPDESK-1", event_type="message.status"))
    with pytest.raises(PermanentDeliveryError, match="has no request"):
        connector(site, tmp_path).deliver(outbound_job(NAME))
    assert vendor.requests == []
