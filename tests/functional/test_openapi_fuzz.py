"""Schemathesis against the embedded hub, from the committed docs/openapi.json: every operation,
a bounded number of generated requests each, with a key that holds every scope so requests get
past authorization. No answer may be a server error or disagree with the document (status,
content type, body schema).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chalicelib.hubconfig import SCOPES
from tests.functional.conftest import RunningHub, start_hub
from tests.support.receiver import Receiver

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
FUZZ_KEY = "fuzz-every-scope-key"
#: Per operation: enough to reach each parameter's and body's edges, few enough for `make test`
#: (about 50 operations on 2 CPUs).
EXAMPLES = 20
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_path(DOCUMENT)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    keys = [{"name": "fuzz", "sha256": hashlib.sha256(FUZZ_KEY.encode()).hexdigest(), "scopes": list(SCOPES)}]
    # One rule that parks, so the exception queue has an entry to show (`test_operator_lists_...`).
    routing = {"default": {"queue": "general", "priority": "normal", "destinations": ["outbox", "crm"]},
               "rules": [{"name": "park-attachments-of-strangers", "when": [{"new_customer": True}, {"has_attachments": True}],
                          "then": {"park": "unknown sender with attachments"}, "stop": True}]}
    with Receiver() as receiver:
        runtime = start_hub(tmp_path, receiver, extra={"api_keys": keys, "routing": routing}).start()
        try:
            yield RunningHub(runtime, receiver, tmp_path / "data")
        finally:
            runtime.stop()


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_answers_as_documented(case, hub):
    case.call_and_validate(base_url=hub.url, headers={"Authorization": f"Bearer {FUZZ_KEY}"}, checks=CHECKS)


def test_the_hub_serves_the_committed_document_without_a_key(hub):
    served = hub.request("GET", "/v1/openapi.json")
    assert served.status == 200
    assert served.headers["content-type"] == "application/json"
    assert served.json() == json.loads(DOCUMENT.read_text())


def test_chalices_own_refusals_come_in_the_one_error_shape(hub):
    auth = {"Authorization": f"Bearer {FUZZ_KEY}"}
    wrong_type = hub.request("POST", "/v1/messages", b"a=b", {**auth, "Content-Type": "application/x-www-form-urlencoded"})
    wrong_method = hub.request("GET", "/v1/messages", None, auth)
    assert (wrong_type.status, wrong_type.json()["error"]["code"]) == (415, "unsupported_media_type")
    assert (wrong_method.status, wrong_method.json()["error"]["code"]) == (405, "method_not_allowed")
    assert wrong_method.headers["allow"] == "POST"


# --- real records: what random ids cannot reach (200 bodies) conforms too ----------------------------


@pytest.fixture(scope="module")
def seeded(hub) -> dict[str, str]:
    """A customer with a contact and a case, from a signed Twilio SMS."""
    from tests.functional.test_ingest_edges import twilio_request

    path, data, headers = twilio_request({
        "MessageSid": "SM" + "f" * 32, "AccountSid": "AC" + "a" * 32, "From": "+16505550199",
        "To": "+14155550100", "Body": "hello", "NumMedia": "0",
    })
    assert hub.post(path, data, headers).status == 200
    envelope = hub.wait_for(lambda: hub.settled() and next(
        (line for line in hub.outbox() if line["data"]["contact"]["text"] == "hello"), None), message="the contact")
    data = envelope["data"]
    return {"customer": data["customer"]["id"], "contact": data["contact"]["id"], "case": data["case"]["id"],
            "envelope": envelope}


def second_customer(hub) -> str:
    from tests.functional.test_ingest_edges import twilio_request

    path, data, headers = twilio_request({
        "MessageSid": "SM" + "c" * 32, "AccountSid": "AC" + "a" * 32, "From": "+16505550197",
        "To": "+14155550100", "Body": "second", "NumMedia": "0",
    })
    assert hub.post(path, data, headers).status == 200
    return hub.wait_for(lambda: hub.settled() and next(
        (line["data"]["customer"]["id"] for line in hub.outbox() if line["data"]["contact"]["text"] == "second"), None),
        message="the second customer")


def documented(hub, method: str, template: str, path: str, body: dict | list | None = None, **send) -> int:
    """Call `path` (with the every-scope key, `body` as JSON or `send`'s `data` and `headers`) and
    validate the answer against `template`'s operation."""
    import requests

    headers = {"Authorization": f"Bearer {FUZZ_KEY}", **send.pop("headers", {})}
    response = requests.request(method, hub.url + path, json=body, headers=headers, timeout=10,
                                allow_redirects=False, **send)
    operation = schema[template][method]
    assert str(response.status_code) in operation.definition.raw["responses"], (method, path, response.status_code, response.text[:300])
    operation.validate_response(response)
    return response.status_code


def test_answers_about_a_real_customer_conform_to_the_document(hub, seeded):
    customer, contact, case = seeded["customer"], seeded["contact"], seeded["case"]
    assert documented(hub, "GET", "/v1/customers", "/v1/customers?identifier=phone:+16505550199") == 200
    assert documented(hub, "GET", "/v1/customers/{customer_id}", f"/v1/customers/{customer}") == 200
    assert documented(hub, "GET", "/v1/customers/{customer_id}/contacts", f"/v1/customers/{customer}/contacts?limit=1") == 200
    assert documented(hub, "GET", "/v1/contacts/{contact_id}", f"/v1/contacts/{contact}") == 200
    assert documented(hub, "GET", "/v1/cases/{case_id}", f"/v1/cases/{case}") == 200
    assert documented(hub, "GET", "/v1/customers/{customer_id}/export", f"/v1/customers/{customer}/export") == 200
    assert documented(hub, "PATCH", "/v1/customers/{customer_id}/attributes", f"/v1/customers/{customer}/attributes",
                      {"source": "crm", "attributes": {"tier": "gold"}}) == 200
    assert documented(hub, "POST", "/v1/customers/{customer_id}/identifiers", f"/v1/customers/{customer}/identifiers",
                      {"identifier": "external:CRM-77"}) == 200
    assert documented(hub, "PUT", "/v1/customers/{customer_id}/consent", f"/v1/customers/{customer}/consent",
                      {"channel": "sms", "purpose": "marketing", "state": "opted_in"}) == 200
    assert documented(hub, "POST", "/v1/routing/explain", "/v1/routing/explain",
                      {"contact": {"channel": "sms", "text": "hello"}}) == 200
    assert documented(hub, "POST", "/v1/events", "/v1/events",
                      {"type": "parcel.late", "id": "fuzz-seeded-1", "occurred_at": "2026-01-02T10:00:00Z",
                       "customer": {"customer_id": customer}}) == 202
    assert documented(hub, "POST", "/v1/messages", "/v1/messages", {"to": {"customer_id": customer}, "text": "Hallo"}) in (202, 422)
    for listing in ("/v1/exceptions", "/v1/dead-letters", "/v1/unhandled-events"):
        assert documented(hub, "GET", listing, listing + "?limit=5") == 200
    other = second_customer(hub)
    assert documented(hub, "POST", "/v1/customers/{customer_id}/merge", f"/v1/customers/{customer}/merge",
                      {"customer_id": other}) == 200
    merge = hub.api(f"/v1/customers/{customer}", key=FUZZ_KEY).json()["merges"][-1]["merge_id"]
    assert documented(hub, "GET", "/v1/merges/{merge_id}", f"/v1/merges/{merge}") == 200
    assert documented(hub, "POST", "/v1/customers/{customer_id}/unmerge", f"/v1/customers/{customer}/unmerge",
                      {"merge_id": merge}) == 200
    assert documented(hub, "POST", "/v1/cases/{case_id}/close", f"/v1/cases/{case}/close") == 200
    assert documented(hub, "DELETE", "/v1/customers/{customer_id}", f"/v1/customers/{customer}") == 200


def test_the_delivered_envelope_is_the_documented_webhook(seeded):
    import jsonschema

    document = json.loads(DOCUMENT.read_text())
    body = document["webhooks"]["contact.created"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    envelope = {key: value for key, value in seeded["envelope"].items() if key != "delivery_id"}
    jsonschema.validate(envelope, {**body, "components": document["components"]},
                        cls=jsonschema.Draft202012Validator)


def test_provider_webhook_answers_conform_to_the_document(hub):
    from tests.functional.test_ingest_edges import twilio_request

    path, data, headers = twilio_request({
        "MessageSid": "SM" + "d" * 32, "AccountSid": "AC" + "a" * 32, "From": "+16505550198",
        "To": "+14155550100", "Body": "hi", "NumMedia": "0",
    })
    chat = {"site_id": "acme", "visitor_id": "v-openapi", "message_id": "m-openapi", "text": "Hallo"}
    origin = {"Origin": "https://shop.example.com"}
    assert documented(hub, "POST", "/webhooks/{provider}/{hook}", path, data=data, headers=headers) == 200
    assert documented(hub, "POST", "/webhooks/{provider}", "/webhooks/webchat", chat, headers=origin) == 202
    assert documented(hub, "OPTIONS", "/webhooks/{provider}", "/webhooks/webchat",
                      headers={**origin, "Access-Control-Request-Method": "POST"}) == 204
    assert documented(hub, "OPTIONS", "/webhooks/{provider}", "/webhooks/twilio", headers=origin) == 405
    assert documented(hub, "POST", "/webhooks/{provider}/{hook}", path, data=data,
                      headers={**headers, "X-Twilio-Signature": "AAAA"}) in (401, 403)


def test_operator_lists_with_entries_conform_to_the_document(hub):
    """An entry in each of the exception queue, the dead letters and the unhandled events."""
    from tests.functional.test_ingest_edges import meta_request, twilio_request
    from tests.support.receiver import Answer

    parked_path, parked_data, parked_headers = twilio_request({
        "MessageSid": "SM" + "b" * 32, "AccountSid": "AC" + "a" * 32, "From": "+16505550196", "To": "+14155550100",
        "Body": "see attached", "NumMedia": "1", "MediaUrl0": "https://api.twilio.com/media/ME1",
        "MediaContentType0": "image/jpeg",
    })
    assert hub.post(parked_path, parked_data, parked_headers).status == 200
    hub.receiver.default = Answer(400, b'{"error": "refused"}')
    try:
        dead_path, dead_data, dead_headers = twilio_request({
            "MessageSid": "SM" + "9" * 32, "AccountSid": "AC" + "a" * 32, "From": "+16505550195",
            "To": "+14155550100", "Body": "refused by the crm", "NumMedia": "0",
        })
        assert hub.post(dead_path, dead_data, dead_headers).status == 200
        hub.wait_for(lambda: hub.settled() and hub.api("/v1/dead-letters?limit=5", key=FUZZ_KEY).json()["data"],
                     message="a dead letter")
    finally:
        hub.receiver.default = Answer(200, b'{"ok":true}')
    edit = {"sender": {"id": "6789012345678901"}, "recipient": {"id": "1234567890"}, "timestamp": 1767225600000,
            "message_edit": {"mid": "m_1", "text": "Corrected", "num_edit": 1}}
    body, headers = meta_request(json.dumps({"object": "page", "entry": [{"id": "1234567890", "time": 1,
                                                                          "messaging": [edit]}]}).encode())
    assert hub.post("/webhooks/meta", body, headers).status == 200
    hub.wait_for(lambda: hub.settled() and hub.api("/v1/unhandled-events?limit=5", key=FUZZ_KEY).json()["data"],
                 message="an unhandled item")

    parked = hub.api("/v1/exceptions?limit=5", key=FUZZ_KEY).json()["data"]
    letters = hub.api("/v1/dead-letters?limit=5", key=FUZZ_KEY).json()["data"]
    assert parked and letters
    for listing in ("/v1/exceptions", "/v1/dead-letters", "/v1/unhandled-events"):
        assert documented(hub, "GET", listing, listing + "?limit=1") == 200
    contact = parked[0]["contact_id"]
    assert documented(hub, "POST", "/v1/exceptions/{contact_id}/resolve", f"/v1/exceptions/{contact}/resolve",
                      {"note": "checked by the fuzz test"}) == 200
    assert documented(hub, "POST", "/v1/dead-letters/{letter_id}/replay", f"/v1/dead-letters/{letters[0]['id']}/replay") == 202
