"""Salesforce connector: the shared contract suite's setup, the exact requests against a scripted
server, and the requests against Prism mocks of the Salesforce spec (the hand-written one, and the
one derived from it for the Case upsert and the Contact delete; both in tests/contract/specs/salesforce/)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
from pydantic import ValidationError

from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.adapters.connectors.echo import marked_contact
from chalicelib.adapters.connectors.http import HttpClient, HttpResponse
from chalicelib.adapters.connectors.salesforce import SalesforceConnector, SalesforceSettings, contact_fields
from chalicelib.domain.models import AttributeValue, CustomerEvent, ExternalRef, Priority
from chalicelib.errors import PermanentDeliveryError
from chalicelib.secrets import SecretResolver
from tests.support.connector_setup import ConnectorSetup
from tests.support.fakes import sample_job
from tests.support.outbound_jobs import OUTBOUND_ID, REPLY, outbound_job
from tests.support.prism import violations
from tests.support.receiver import Answer, Receiver

CASE_ID = "500000000000001AAA"
CONTACT_ID = "003000000000001AAA"
COMMENT_ID = "00a000000000001AAA"
TOKEN_PATH = "/services/oauth2/token"
API = "/services/data/v60.0/sobjects"
ENVIRON = {"SF_CLIENT_SECRET": "sf-secret"}

HANDWRITTEN_SPEC = "salesforce/salesforce-rest-case-contact.handwritten.openapi.yaml"
DERIVED_SPEC = "salesforce/salesforce-rest-case-contact.derived.openapi.yaml"


def settings_for(base_url: str, **overrides) -> dict:
    return {
        "base_url": base_url,
        "auth": {"type": "oauth2_client_credentials", "token_url": base_url + TOKEN_PATH,
                 "client_id": "3MVG9hub", "client_secret": "env:SF_CLIENT_SECRET"},
        "api_version": "60.0",
        "case_external_id_field": "Hub_Case_Id__c",
        **overrides,
    }


# The scripted server answers the token request and the API calls alike.
SETUP = ConnectorSetup(
    key="salesforce",
    settings=settings_for,
    environ=ENVIRON,
    created_body={"access_token": "00Dhub!token", "instance_url": None, "id": CASE_ID, "success": True,
                  "errors": [], "created": True},
    created_ref=CASE_ID,
)


class RecordingHttp(HttpClient):
    """The real client, keeping every response: a Prism violation shows in its headers."""

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[tuple[str, str, HttpResponse]] = []

    def request(self, method, url, **kwargs) -> HttpResponse:
        response = super().request(method, url, **kwargs)
        self.exchanges.append((method, url, response))
        return response


def connector(base_url: str, tmp_path, *, http: HttpClient | None = None, **overrides) -> SalesforceConnector:
    settings = SalesforceSettings.model_validate(settings_for(base_url, **overrides))
    runtime = ConnectorRuntime(data_dir=str(tmp_path), http=http or HttpClient())
    return SalesforceConnector("salesforce-test", settings, SecretResolver(ENVIRON), runtime)


def answer(body, status: int = 200) -> Answer:
    return Answer(status, json.dumps(body).encode(), {"content-type": "application/json"})


TOKEN = answer({"access_token": "00Dhub!first", "instance_url": None, "token_type": "Bearer"})
CONTACT = answer({"id": CONTACT_ID, "success": True, "errors": [], "created": False})
CASE = answer({"id": CASE_ID, "success": True, "errors": [], "created": True}, 201)
COMMENT = answer({"id": COMMENT_ID, "success": True, "errors": []}, 201)


def follow_up(name: str, *, text: str = "Immer noch kein Internet"):
    first = sample_job(destination=name)
    return sample_job(destination=name, contact_id="ct_01JD0000000000000000000002", text=text,
                      case=first.case.model_copy(update={"external_refs": {
                          name: ExternalRef(destination=name, ref=CASE_ID)}}))


def sent(request) -> dict:
    return json.loads(request.body)


@pytest.fixture
def vendor():
    with Receiver() as server:
        yield server


def root(server: Receiver) -> str:
    return server.url.rsplit("/hooks", 1)[0]


# --- exact requests (scripted server) -------------------------------------------------------------


def test_a_first_delivery_upserts_the_contact_then_the_case_by_the_hub_case_id(vendor, tmp_path):
    vendor.script = [TOKEN, CONTACT, CASE]
    job = sample_job(destination="salesforce-test")

    result = connector(root(vendor), tmp_path).deliver(job)

    token, contact, case = vendor.requests
    assert (token.method, token.path) == ("POST", TOKEN_PATH)
    assert parse_qs(token.body.decode()) == {"grant_type": ["client_credentials"], "client_id": ["3MVG9hub"],
                                             "client_secret": ["sf-secret"]}
    assert (contact.method, contact.path) == ("PATCH", f"{API}/Contact/Hub_Customer_Id__c/{job.customer.id}")
    assert sent(contact) == {"LastName": "Schmidt", "FirstName": "Jana", "Email": "jana.schmidt@example.com",
                             "Phone": "+4915123456789"}
    assert (case.method, case.path) == ("PATCH", f"{API}/Case/Hub_Case_Id__c/{job.case.id}")
    body = sent(case)
    assert body.pop("Description").startswith("Jana Schmidt via whatsapp (meta) at 2026-11-23T09:00:00Z:\n\n"
                                               "Mein Internet geht seit heute nicht")
    assert body == {"ContactId": CONTACT_ID, "Subject": "[whatsapp] Mein Internet geht seit heute nicht, bitte "
                    "dringend melden", "Priority": "High", "Origin": "Web"}
    assert case.headers["sforce-auto-assign"] == "TRUE"
    assert all(r.headers["authorization"] == "Bearer 00Dhub!first" for r in (contact, case))
    assert result.case_ref == result.external_ref == CASE_ID


def test_without_a_case_external_id_field_the_case_is_created(vendor, tmp_path):
    vendor.script = [TOKEN, CONTACT, CASE]

    result = connector(root(vendor), tmp_path, case_external_id_field=None).deliver(sample_job())

    case = vendor.requests[-1]
    assert (case.method, case.path) == ("POST", f"{API}/Case/")
    assert sent(case)["ContactId"] == CONTACT_ID
    assert result.case_ref == CASE_ID


def test_a_follow_up_adds_a_private_comment_to_the_case_the_first_delivery_opened(vendor, tmp_path):
    vendor.script = [TOKEN, CONTACT, COMMENT]

    result = connector(root(vendor), tmp_path).deliver(follow_up("salesforce-test"))

    token, contact, comment = vendor.requests
    assert contact.method == "PATCH"
    assert (comment.method, comment.path) == ("POST", f"{API}/CaseComment/")
    body = sent(comment)
    assert body["ParentId"] == CASE_ID and body["IsPublished"] is False
    assert "Immer noch kein Internet" in body["CommentBody"]
    assert result.case_ref == CASE_ID and result.external_ref == COMMENT_ID


def test_a_long_comment_is_cut_to_4000_bytes_not_characters(vendor, tmp_path):
    vendor.script = [TOKEN, CONTACT, COMMENT]

    connector(root(vendor), tmp_path).deliver(follow_up("salesforce-test", text="ü" * 3000))

    body = sent(vendor.requests[-1])["CommentBody"]
    assert len(body.encode()) <= 4000 < len(("ü" * 3000).encode())
    assert body.endswith("…")


def test_routing_settings_shape_the_case(vendor, tmp_path):
    vendor.script = [TOKEN, CONTACT, CASE]
    job = sample_job(destination="salesforce-test")
    job.contact.routing.priority = Priority.URGENT
    sf = connector(root(vendor), tmp_path, queues={"technical": "00G000000000001AAA"},
                   origins={"whatsapp": "WhatsApp"}, case_fields={"Type": "Problem"},
                   mapping={"priority": {"urgent": "Critical"},
                            "custom_fields": {"Tier__c": "customer.attributes.tier"}})

    sf.deliver(job)

    case = vendor.requests[-1]
    body = sent(case)
    assert {k: body[k] for k in ("OwnerId", "Origin", "Type", "Priority", "Tier__c")} == {
        "OwnerId": "00G000000000001AAA", "Origin": "WhatsApp", "Type": "Problem", "Priority": "Critical",
        "Tier__c": "gold"}
    # An explicit owner must not be overwritten by the org's assignment rules.
    assert case.headers["sforce-auto-assign"] == "FALSE"


@pytest.mark.parametrize("priority, expected", [(Priority.LOW, "Low"), (Priority.NORMAL, "Medium"),
                                                (Priority.HIGH, "High"), (Priority.URGENT, "High")])
def test_hub_priorities_map_to_the_standard_picklist(vendor, tmp_path, priority, expected):
    vendor.script = [TOKEN, CONTACT, CASE]
    job = sample_job()
    job.contact.routing.priority = priority

    connector(root(vendor), tmp_path).deliver(job)

    assert sent(vendor.requests[-1])["Priority"] == expected


def test_an_external_id_matching_several_records_is_permanent(vendor, tmp_path):
    vendor.script = [TOKEN, answer([f"{API}/Contact/{CONTACT_ID}", f"{API}/Contact/003000000000002AAA"], 300)]

    with pytest.raises(PermanentDeliveryError, match="several Contact records"):
        connector(root(vendor), tmp_path).deliver(sample_job())


def test_an_answer_without_an_id_is_permanent(vendor, tmp_path):
    vendor.script = [TOKEN, answer({"success": True}, 201)]

    with pytest.raises(PermanentDeliveryError, match="without the Contact id"):
        connector(root(vendor), tmp_path).deliver(sample_job())


def test_contact_fields_fall_back_when_the_golden_record_has_no_name():
    job = sample_job()
    job.customer.attributes.pop("name")
    job.contact.sender.display_name = None

    assert contact_fields(job)["LastName"] == "Unknown" and "FirstName" not in contact_fields(job)

    at = job.customer.created_at
    job.customer.attributes.update({"first_name": AttributeValue(value="Jana Maria", source="crm", updated_at=at),
                                    "last_name": AttributeValue(value="Schmidt-Öz", source="crm", updated_at=at)})
    assert contact_fields(job)["FirstName"] == "Jana Maria" and contact_fields(job)["LastName"] == "Schmidt-Öz"


# --- OAuth2 (scripted server) ---------------------------------------------------------------------


def test_the_token_is_fetched_once_for_many_deliveries(vendor, tmp_path):
    vendor.script = [TOKEN, CONTACT, CASE, CONTACT, CASE]
    sf = connector(root(vendor), tmp_path)

    sf.deliver(sample_job())
    sf.deliver(sample_job(contact_id="ct_2"))

    assert [r.path for r in vendor.requests].count(TOKEN_PATH) == 1


def test_a_401_fetches_a_new_token_and_retries_once(vendor, tmp_path):
    expired = answer([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], 401)
    fresh = answer({"access_token": "00Dhub!second", "instance_url": None})
    vendor.script = [TOKEN, expired, fresh, CONTACT, CASE]

    result = connector(root(vendor), tmp_path).deliver(sample_job())

    paths = [r.path for r in vendor.requests]
    assert paths.count(TOKEN_PATH) == 2
    retried = vendor.requests[3]
    assert retried.method == "PATCH" and retried.headers["authorization"] == "Bearer 00Dhub!second"
    assert result.case_ref == CASE_ID


def test_a_second_401_is_permanent(vendor, tmp_path):
    expired = answer([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], 401)
    vendor.script = [TOKEN, expired, TOKEN, expired]

    with pytest.raises(PermanentDeliveryError, match="INVALID_SESSION_ID"):
        connector(root(vendor), tmp_path).deliver(sample_job())
    assert len(vendor.requests) == 4


def test_api_calls_go_to_the_instance_url_from_the_token_response(vendor, tmp_path):
    with Receiver() as instance:
        instance.script = [CONTACT, CASE]
        vendor.script = [answer({"access_token": "00Dhub!first", "instance_url": root(instance)})]

        connector(root(vendor), tmp_path).deliver(sample_job())

        assert [r.path for r in vendor.requests] == [TOKEN_PATH]
        assert [r.method for r in instance.requests] == ["PATCH", "PATCH"]


def test_the_instance_url_can_be_ignored(vendor, tmp_path):
    vendor.script = [answer({"access_token": "00Dhub!first", "instance_url": "https://elsewhere.invalid"}),
                     CONTACT, CASE]

    connector(root(vendor), tmp_path, use_instance_url=False).deliver(sample_job())

    assert len(vendor.requests) == 3


# --- customer events (scripted server) ------------------------------------------------------------


def event(event_type: str) -> CustomerEvent:
    job = sample_job()
    return CustomerEvent(event_id="evt_1", delivery_id="dlv_evt_1", destination="salesforce-test",
                         event_type=event_type, customer_id=job.customer.id, occurred_at=job.contact.received_at)


def test_erasure_deletes_the_contact_by_its_external_id(vendor, tmp_path):
    vendor.script = [TOKEN, Answer(204)]

    connector(root(vendor), tmp_path).deliver_customer_event(event("customer.erased"))

    delete = vendor.requests[-1]
    assert (delete.method, delete.path) == ("DELETE", f"{API}/Contact/Hub_Customer_Id__c/{event('x').customer_id}")


def test_erasing_a_contact_salesforce_never_had_succeeds(vendor, tmp_path):
    missing = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
    vendor.script = [TOKEN, answer(missing, 404)]

    connector(root(vendor), tmp_path).deliver_customer_event(event("customer.erased"))


def test_erasure_with_an_unknown_external_id_field_is_permanent(vendor, tmp_path):
    unknown = [{"errorCode": "NOT_FOUND",
                "message": "Provided external ID field does not exist or is not accessible: Hub_Customer_Id__c"}]
    vendor.script = [TOKEN, answer(unknown, 404)]

    with pytest.raises(PermanentDeliveryError, match="external ID field"):
        connector(root(vendor), tmp_path).deliver_customer_event(event("customer.erased"))


@pytest.mark.parametrize("event_type, overrides", [("customer.merged", {}), ("customer.unmerged", {}),
                                                   ("customer.erased", {"delete_contacts_on_erasure": False})])
def test_other_events_change_nothing_in_salesforce(vendor, tmp_path, event_type, overrides):
    connector(root(vendor), tmp_path, **overrides).deliver_customer_event(event(event_type))

    assert vendor.requests == []


# --- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, field", [
    ({"api_version": "45.0"}, "api_version"), ({"api_version": "60"}, "api_version"),
    ({"contact_external_id_field": "Hub/Id__c"}, "contact_external_id_field"),
    ({"case_external_id_field": "x y"}, "case_external_id_field"),
    ({"case_fields": {"Bad Name": 1}}, "case_fields"),
])
def test_settings_refuse_bad_values(overrides, field):
    with pytest.raises(ValidationError) as raised:
        SalesforceSettings.model_validate(settings_for("https://acme.my.salesforce.com", **overrides))
    assert field in str(raised.value)


def test_a_leading_v_in_the_api_version_is_accepted():
    settings = SalesforceSettings.model_validate(settings_for("https://acme.my.salesforce.com", api_version="v62.0"))
    assert settings.api_version == "62.0"


def test_the_client_secret_never_shows_in_the_settings():
    settings = SalesforceSettings.model_validate(settings_for("https://acme.my.salesforce.com"))
    assert "SF_CLIENT_SECRET" not in repr(settings) and "sf-secret" not in repr(settings)


# --- Prism mocks of the Salesforce spec -----------------------------------------------------------


def prism_connector(server, tmp_path, **overrides):
    http = RecordingHttp()
    sf = connector(server.url, tmp_path, http=http, use_instance_url=False, **overrides)
    return sf, http


def assert_spec_accepted(http: RecordingHttp) -> None:
    for method, url, response in http.exchanges:
        assert violations(response.headers) == [], f"{method} {url}"
        assert response.ok, f"{method} {url} → {response.status} {response.text()}"


def rejected_because(http: RecordingHttp) -> str:
    return " | ".join(v.get("message", "") for _, _, r in http.exchanges for v in violations(r.headers))


@pytest.mark.prism_specs(HANDWRITTEN_SPEC)
def test_spec_token_contact_upsert_and_case_create(prism, tmp_path):
    sf, http = prism_connector(prism(HANDWRITTEN_SPEC), tmp_path, case_external_id_field=None)

    result = sf.deliver(sample_job(destination=sf.name))

    assert [(m, u.split("/services", 1)[1]) for m, u, _ in http.exchanges] == [
        ("POST", "/oauth2/token"),
        ("PATCH", f"/data/v60.0/sobjects/Contact/Hub_Customer_Id__c/{sample_job().customer.id}"),
        ("POST", "/data/v60.0/sobjects/Case/"),
    ]
    assert_spec_accepted(http)
    assert result.case_ref == CASE_ID  # the spec's example


@pytest.mark.prism_specs(HANDWRITTEN_SPEC)
def test_spec_case_comment(prism, tmp_path):
    sf, http = prism_connector(prism(HANDWRITTEN_SPEC), tmp_path)

    result = sf.deliver(follow_up(sf.name))

    assert http.exchanges[-1][1].endswith("/sobjects/CaseComment/")
    assert_spec_accepted(http)
    assert result.case_ref == CASE_ID and result.external_ref == COMMENT_ID


@pytest.mark.prism_specs(HANDWRITTEN_SPEC)
def test_spec_negative_control_external_id_field_must_be_custom(prism, tmp_path):
    sf, http = prism_connector(prism(HANDWRITTEN_SPEC), tmp_path, contact_external_id_field="HubCustomerId")

    with pytest.raises(PermanentDeliveryError):
        sf.deliver(sample_job(destination=sf.name))

    assert "must match pattern" in rejected_because(http)


@pytest.mark.prism_specs(HANDWRITTEN_SPEC)
def test_spec_negative_control_comment_parent_must_be_a_case(prism, tmp_path):
    sf, http = prism_connector(prism(HANDWRITTEN_SPEC), tmp_path)
    job = follow_up(sf.name)
    job.case.external_refs[sf.name] = ExternalRef(destination=sf.name, ref="001000000000001AAA")  # an Account

    with pytest.raises(PermanentDeliveryError):
        sf.deliver(job)

    assert "ParentId must match pattern" in rejected_because(http)


@pytest.mark.prism_specs(DERIVED_SPEC)
def test_derived_spec_case_upsert_by_hub_case_id(prism, tmp_path):
    sf, http = prism_connector(prism(DERIVED_SPEC), tmp_path, queues={"technical": "00G000000000001AAA"})

    result = sf.deliver(sample_job(destination=sf.name))

    method, url, _ = http.exchanges[-1]
    assert method == "PATCH" and url.endswith(f"/sobjects/Case/Hub_Case_Id__c/{sample_job().case.id}")
    assert_spec_accepted(http)
    assert result.case_ref == CASE_ID


@pytest.mark.prism_specs(DERIVED_SPEC)
def test_derived_spec_erasure_deletes_the_contact(prism, tmp_path):
    sf, http = prism_connector(prism(DERIVED_SPEC), tmp_path)

    sf.deliver_customer_event(event("customer.erased"))

    assert [m for m, _, _ in http.exchanges] == ["POST", "DELETE"]
    assert http.exchanges[-1][2].status == 204
    assert_spec_accepted(http)


@pytest.mark.prism_specs(DERIVED_SPEC)
def test_derived_spec_negative_control_unknown_case_field(prism, tmp_path):
    sf, http = prism_connector(prism(DERIVED_SPEC), tmp_path, case_fields={"Subjekt": "typo"})

    with pytest.raises(PermanentDeliveryError):
        sf.deliver(sample_job(destination=sf.name))

    assert "Subjekt" in rejected_because(http)


@pytest.mark.prism_specs(DERIVED_SPEC)
def test_derived_spec_negative_control_delete_needs_a_custom_field(prism, tmp_path):
    sf, http = prism_connector(prism(DERIVED_SPEC), tmp_path, contact_external_id_field="Email")

    with pytest.raises(PermanentDeliveryError):
        sf.deliver_customer_event(event("customer.erased"))

    assert "must match pattern" in rejected_because(http)



# --- outbound messages (message.sent): a published CaseComment with the echo marker ----------------

NO_RECORDS = answer({"totalSize": 0, "done": True, "records": []})


@pytest.mark.prism_specs(HANDWRITTEN_SPEC)
def test_spec_outbound_message_queries_then_adds_a_published_comment(prism, tmp_path):
    sf, http = prism_connector(prism(HANDWRITTEN_SPEC), tmp_path)

    result = sf.deliver(outbound_job(sf.name, ticket=CASE_ID))

    assert [(m, u.split("/services", 1)[1].split("?")[0]) for m, u, _ in http.exchanges] == [
        ("POST", "/oauth2/token"), ("GET", "/data/v60.0/query"), ("POST", "/data/v60.0/sobjects/CaseComment/")]
    assert_spec_accepted(http)
    assert (result.external_ref, result.case_ref) == (COMMENT_ID, CASE_ID)


@pytest.mark.prism_specs(HANDWRITTEN_SPEC)
def test_spec_negative_control_query_needs_soql(prism, tmp_path):
    sf, http = prism_connector(prism(HANDWRITTEN_SPEC), tmp_path)

    with pytest.raises(PermanentDeliveryError):
        sf.api.call("GET", "/services/data/v60.0/query?q=DELETE%20Case")


def test_outbound_message_is_a_published_comment_ending_in_the_marker(vendor, tmp_path):
    vendor.script = [TOKEN, NO_RECORDS, COMMENT]
    job = outbound_job("salesforce-test", ticket=CASE_ID)

    result = connector(root(vendor), tmp_path).deliver(job)

    _, lookup, create = vendor.requests
    soql = parse_qs(lookup.path.split("?", 1)[1])["q"][0]
    assert lookup.path.startswith("/services/data/v60.0/query?")
    assert soql == (f"SELECT Id, CommentBody FROM CaseComment WHERE ParentId = '{CASE_ID}' AND CommentBody LIKE "
                    "'%hub:ct\\_01JD0000000000000000000099%' ORDER BY CreatedDate DESC LIMIT 10")
    assert create.path == "/services/data/v60.0/sobjects/CaseComment/"
    assert sent(create) == {"ParentId": CASE_ID, "IsPublished": True, "CommentBody":
                            f"{REPLY}\n\nSent to the customer on whatsapp by the hub [hub:{OUTBOUND_ID}]"}
    assert (result.external_ref, result.case_ref) == (COMMENT_ID, CASE_ID)


def test_a_long_outbound_message_is_shortened_but_keeps_its_marker(vendor, tmp_path):
    vendor.script = [TOKEN, NO_RECORDS, COMMENT]

    connector(root(vendor), tmp_path).deliver(outbound_job("salesforce-test", ticket=CASE_ID, text="Störung " * 800))

    body = sent(vendor.requests[2])["CommentBody"]
    assert len(body.encode()) <= 4000
    assert body.endswith(f"[hub:{OUTBOUND_ID}]") and "…" in body
    assert marked_contact(body) == OUTBOUND_ID


def test_an_outbound_comment_already_on_the_case_is_not_added_twice(vendor, tmp_path):
    found = answer({"totalSize": 2, "done": True, "records": [
        # LIKE ignores case; only the exact marker counts.
        {"attributes": {"type": "CaseComment"}, "Id": "00a000000000009AAA", "CommentBody": f"x [HUB:{OUTBOUND_ID.upper()}]"},
        {"attributes": {"type": "CaseComment"}, "Id": "00a000000000002AAA", "CommentBody": f"Hallo\n[hub:{OUTBOUND_ID}]"}]})
    vendor.script = [TOKEN, found]

    result = connector(root(vendor), tmp_path).deliver(outbound_job("salesforce-test", ticket=CASE_ID))

    assert [r.method for r in vendor.requests] == ["POST", "GET"]
    assert (result.external_ref, result.case_ref) == ("00a000000000002AAA", CASE_ID)


def test_salesforce_takes_message_sent_only_and_checks_the_case_reference(vendor, tmp_path):
    assert SalesforceConnector.message_events == frozenset({"message.sent"})
    assert connector(root(vendor), tmp_path, outbound_messages=False).message_events == frozenset()
    with pytest.raises(PermanentDeliveryError, match="does not take message.status"):
        connector(root(vendor), tmp_path).deliver(outbound_job("salesforce-test", ticket=CASE_ID, event_type="message.status"))
    with pytest.raises(PermanentDeliveryError, match="has no Case"):
        connector(root(vendor), tmp_path).deliver(outbound_job("salesforce-test"))
    with pytest.raises(PermanentDeliveryError, match="not a record id"):
        connector(root(vendor), tmp_path).deliver(outbound_job("salesforce-test", ticket="500' OR Id != '"))
    assert vendor.requests == []
