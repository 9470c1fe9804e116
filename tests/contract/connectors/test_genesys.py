"""Genesys Cloud connector: the shared contract suite's setup (workitem mode), the exact requests
against a scripted server in both modes, and the requests against Prism mocks of the Genesys spec
(the hand-written one, and the one derived from it, which adds the workitem update and query; both
in tests/contract/specs/genesys/)."""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import parse_qs

import pytest
from pydantic import ValidationError

from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.adapters.connectors.genesys import GenesysConnector, GenesysSettings, open_message, summary
from chalicelib.adapters.connectors.http import HttpClient, HttpResponse
from chalicelib.domain.models import Attachment, ContentType, ExternalRef, Priority
from chalicelib.errors import PermanentDeliveryError
from chalicelib.secrets import SecretResolver
from tests.support.connector_setup import ConnectorSetup
from tests.support.fakes import sample_job
from tests.support.prism import call, violations
from tests.support.receiver import Answer, Receiver

WORKITEM_ID = "7e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
TYPE_ID = "9a3d2b1c-6f4e-4d2a-8b7c-1e2f3a4b5c6d"
INTEGRATION_ID = "6f3e2d1c-0b9a-4877-8665-5443322110ff"
QUEUE_ID = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
SKILL_ID = "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a"
LANGUAGE_ID = "3e4f5a6b-7c8d-4e9f-8a1b-2c3d4e5f6a7b"
TOKEN_PATH = "/oauth/token"
WORKITEMS = "/api/v2/taskmanagement/workitems"
ENVIRON = {"GENESYS_CLIENT_SECRET": "gc-secret"}

HANDWRITTEN_SPEC = "genesys/genesys-cloud-workitems-openmessaging.handwritten.openapi.yaml"
DERIVED_SPEC = "genesys/genesys-cloud-workitems-openmessaging.derived.openapi.yaml"


def settings_for(base_url: str, **overrides) -> dict:
    return {
        "base_url": base_url,
        "auth": {"type": "oauth2_client_credentials", "token_url": base_url + TOKEN_PATH, "client_id": "gc-client",
                 "client_secret": "env:GENESYS_CLIENT_SECRET", "client_auth": "basic"},
        "mode": "workitem",
        "type_id": TYPE_ID,
        **overrides,
    }


def open_messaging(base_url: str, **overrides) -> dict:
    return settings_for(base_url, **{"mode": "open_messaging", "type_id": None, "integration_id": INTEGRATION_ID,
                                     **overrides})


# Workitem mode, the one that threads cases. The scripted server's one answer serves the token
# request, the lookup (no entities: nothing to find) and the create.
SETUP = ConnectorSetup(
    key="genesys",
    settings=settings_for,
    environ=ENVIRON,
    created_body={"access_token": "gc-token", "token_type": "bearer", "expires_in": 86399, "id": WORKITEM_ID,
                  "entities": []},
    created_ref=WORKITEM_ID,
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


def connector(settings: dict, tmp_path, *, http: HttpClient | None = None) -> GenesysConnector:
    runtime = ConnectorRuntime(data_dir=str(tmp_path), http=http or HttpClient())
    return GenesysConnector("genesys-test", GenesysSettings.model_validate(settings), SecretResolver(ENVIRON), runtime)


def answer(body, status: int = 200) -> Answer:
    return Answer(status, json.dumps(body).encode(), {"content-type": "application/json"})


TOKEN = answer({"access_token": "gc-first", "token_type": "bearer", "expires_in": 86399})
NOTHING_FOUND = answer({"entities": [], "count": 0})
WORKITEM = answer({"id": WORKITEM_ID, "name": "x"})
MESSAGE = answer({"id": "2d8f3c5a4b6e7f8091a2b3c4d5e6f708", "type": "Text", "channel": {}})


def follow_up(name: str, *, text: str = "Immer noch kein Internet"):
    first = sample_job(destination=name)
    return sample_job(destination=name, contact_id="ct_01JD0000000000000000000002", text=text,
                      case=first.case.model_copy(update={"external_refs": {
                          name: ExternalRef(destination=name, ref=WORKITEM_ID)}}))


def sent(request) -> dict:
    return json.loads(request.body)


@pytest.fixture
def vendor():
    with Receiver() as server:
        yield server


def root(server: Receiver) -> str:
    return server.url.rsplit("/hooks", 1)[0]


# --- Open Messaging (scripted server) -------------------------------------------------------------


def test_open_messaging_sends_the_contact_as_an_inbound_message_from_the_customer(vendor, tmp_path):
    vendor.script = [TOKEN, MESSAGE]
    gc = connector(open_messaging(root(vendor)), tmp_path)
    job = sample_job(destination=gc.name)

    result = gc.deliver(job)

    token, message = vendor.requests
    assert (message.method, message.path) == (
        "POST", f"/api/v2/conversations/messages/{INTEGRATION_ID}/inbound/open/message")
    assert sent(message) == {
        "channel": {
            "messageId": job.delivery_id,
            "time": "2026-11-23T09:00:00.000Z",
            "from": {"id": job.customer.id, "idType": "Opaque", "nickname": "Jana Schmidt", "firstName": "Jana",
                     "lastName": "Schmidt"},
        },
        "text": "Mein Internet geht seit heute nicht, bitte dringend melden",
    }
    assert message.headers["authorization"] == "Bearer gc-first"
    assert result.external_ref == "2d8f3c5a4b6e7f8091a2b3c4d5e6f708" and result.case_ref is None


def test_open_messaging_destinations_do_not_thread_cases(tmp_path):
    # Genesys keeps one conversation per sender: the deliverer must not hand it case references.
    assert connector(open_messaging("https://api.mypurecloud.ie"), tmp_path).threads_cases is False
    assert connector(settings_for("https://api.mypurecloud.ie"), tmp_path).threads_cases is True
    assert GenesysConnector.threads_cases is True


def test_a_message_without_text_still_says_what_arrived():
    job = sample_job(text="")
    job.contact.text = None
    job.contact.content_type = ContentType.MEDIA
    job.contact.attachments = [Attachment(content_type="image/jpeg", url="https://media.example/1.jpg",
                                          filename="router.jpg")]

    assert open_message(job)["text"] == "Attachment: router.jpg https://media.example/1.jpg"

    job.contact.attachments = []
    assert open_message(job)["text"] == "(media message on whatsapp)"


def test_the_token_request_uses_basic_client_authentication(vendor, tmp_path):
    vendor.script = [TOKEN, MESSAGE]

    connector(open_messaging(root(vendor), auth={**settings_for(root(vendor))["auth"], "scope": "conversations"}),
              tmp_path).deliver(sample_job())

    token = vendor.requests[0]
    assert (token.method, token.path) == ("POST", TOKEN_PATH)
    assert token.headers["authorization"] == "Basic " + base64.b64encode(b"gc-client:gc-secret").decode()
    assert parse_qs(token.body.decode()) == {"grant_type": ["client_credentials"], "scope": ["conversations"]}


# --- workitems (scripted server) ------------------------------------------------------------------


def test_a_first_delivery_looks_the_case_up_then_creates_its_workitem(vendor, tmp_path):
    vendor.script = [TOKEN, NOTHING_FOUND, WORKITEM]
    gc = connector(settings_for(root(vendor), queues={"technical": QUEUE_ID}, skills={"german": SKILL_ID},
                                languages={"de": LANGUAGE_ID},
                                mapping={"custom_fields": {"tier_text": "customer.attributes.tier"}}), tmp_path)
    job = sample_job(destination=gc.name)

    result = gc.deliver(job)

    token, query, create = vendor.requests
    assert (query.method, query.path) == ("POST", f"{WORKITEMS}/query")
    filters = sent(query)["filters"]
    assert filters == [
        {"name": "typeId", "type": "String", "operator": "EQ", "values": [TYPE_ID]},
        {"name": "externalTag", "type": "String", "operator": "EQ", "values": [job.case.id]},
    ]
    # Genesys: at most three filters, one a single EQ on an indexed attribute.
    assert len(filters) <= 3 and any(f["operator"] == "EQ" and len(f["values"]) == 1 and f["name"] in
                                     {"queueId", "typeId", "assigneeId", "workbinId"} for f in filters)
    assert (create.method, create.path) == ("POST", WORKITEMS)
    assert sent(create) == {
        "name": "[whatsapp] Mein Internet geht seit heute nicht, bitte dringend melden",
        "typeId": TYPE_ID,
        "description": "Jana Schmidt via whatsapp: Mein Internet geht seit heute nicht, bitte dringend melden",
        "externalTag": job.case.id,
        "priority": 10,
        "queueId": QUEUE_ID,
        "skillIds": [SKILL_ID],
        "languageId": LANGUAGE_ID,
        "customFields": {"tier_text": "gold"},
    }
    assert result.case_ref == result.external_ref == WORKITEM_ID


def test_a_workitem_an_unrecorded_attempt_created_is_updated_not_duplicated(vendor, tmp_path):
    vendor.script = [TOKEN, answer({"entities": [{"id": WORKITEM_ID}], "count": 1}), WORKITEM]

    result = connector(settings_for(root(vendor)), tmp_path).deliver(sample_job())

    assert [(r.method, r.path) for r in vendor.requests[1:]] == [
        ("POST", f"{WORKITEMS}/query"), ("PATCH", f"{WORKITEMS}/{WORKITEM_ID}")]
    assert result.case_ref == WORKITEM_ID


def test_a_refused_lookup_still_delivers_and_says_so(vendor, tmp_path, caplog):
    vendor.script = [TOKEN, answer({"message": "bad filter", "code": "bad.request", "status": 400}, 400), WORKITEM]

    with caplog.at_level(logging.WARNING):
        result = connector(settings_for(root(vendor)), tmp_path).deliver(sample_job())

    assert vendor.requests[-1].path == WORKITEMS and result.case_ref == WORKITEM_ID
    assert "lookup refused" in caplog.text and "Jana" not in caplog.text


def test_a_follow_up_updates_the_cases_workitem(vendor, tmp_path):
    vendor.script = [TOKEN, WORKITEM]

    result = connector(settings_for(root(vendor)), tmp_path).deliver(follow_up("genesys-test"))

    update = vendor.requests[-1]
    assert (update.method, update.path) == ("PATCH", f"{WORKITEMS}/{WORKITEM_ID}")
    assert sent(update) == {"description": "Jana Schmidt via whatsapp: Immer noch kein Internet"}
    assert result.case_ref == result.external_ref == WORKITEM_ID


def test_the_description_fits_512_characters():
    text = summary(sample_job(text="lang " * 300))
    assert len(text) == 512 and text.endswith("…")


@pytest.mark.parametrize("priority, expected", [(Priority.LOW, 0), (Priority.NORMAL, 5), (Priority.HIGH, 10),
                                                (Priority.URGENT, 20)])
def test_hub_priorities_map_to_workitem_priorities(vendor, tmp_path, priority, expected):
    vendor.script = [TOKEN, NOTHING_FOUND, WORKITEM]
    job = sample_job()
    job.contact.routing.priority = priority

    connector(settings_for(root(vendor)), tmp_path).deliver(job)

    assert sent(vendor.requests[-1])["priority"] == expected


def test_an_answer_without_an_id_is_permanent(vendor, tmp_path):
    vendor.script = [TOKEN, NOTHING_FOUND, answer({"name": "x"})]

    with pytest.raises(PermanentDeliveryError, match="without the workitem id"):
        connector(settings_for(root(vendor)), tmp_path).deliver(sample_job())


# --- OAuth2 (scripted server) ---------------------------------------------------------------------


def test_the_token_is_fetched_once_for_many_deliveries(vendor, tmp_path):
    vendor.script = [TOKEN, MESSAGE, MESSAGE, MESSAGE]
    gc = connector(open_messaging(root(vendor)), tmp_path)

    for n in range(3):
        gc.deliver(sample_job(contact_id=f"ct_{n}"))

    assert [r.path for r in vendor.requests].count(TOKEN_PATH) == 1


def test_a_401_fetches_a_new_token_and_retries_once(vendor, tmp_path):
    expired = answer({"message": "Authentication failed.", "code": "authentication.required", "status": 401}, 401)
    vendor.script = [TOKEN, expired, answer({"access_token": "gc-second", "expires_in": 86399}), MESSAGE]

    connector(open_messaging(root(vendor)), tmp_path).deliver(sample_job())

    assert [r.path for r in vendor.requests].count(TOKEN_PATH) == 2
    assert vendor.requests[-1].headers["authorization"] == "Bearer gc-second"


def test_a_second_401_is_permanent(vendor, tmp_path):
    expired = answer({"message": "Authentication failed.", "code": "authentication.required", "status": 401}, 401)
    vendor.script = [TOKEN, expired, TOKEN, expired]

    with pytest.raises(PermanentDeliveryError, match="authentication.required"):
        connector(open_messaging(root(vendor)), tmp_path).deliver(sample_job())


# --- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings, field", [
    (settings_for("https://api.mypurecloud.ie", mode="open_messaging", type_id=None), "integration_id"),
    (settings_for("https://api.mypurecloud.ie", type_id=None), "type_id"),
    (open_messaging("https://api.mypurecloud.ie", integration_id="not-a-uuid"), "integration_id"),
    (settings_for("https://api.mypurecloud.ie", queues={"technical": "tech-queue"}), "queues"),
    (settings_for("https://api.mypurecloud.ie", mapping={"priority": {"high": "High"}}), "priority"),
    (settings_for("https://api.mypurecloud.ie", mode="chat"), "mode"),
])
def test_settings_refuse_bad_values(settings, field):
    with pytest.raises(ValidationError) as raised:
        GenesysSettings.model_validate(settings)
    assert field in str(raised.value)


# --- Prism mocks of the Genesys spec --------------------------------------------------------------


def prism_connector(settings: dict, tmp_path) -> tuple[GenesysConnector, RecordingHttp]:
    http = RecordingHttp()
    return connector(settings, tmp_path, http=http), http


def assert_spec_accepted(http: RecordingHttp) -> None:
    for method, url, response in http.exchanges:
        assert violations(response.headers) == [], f"{method} {url}"
        assert response.ok, f"{method} {url} → {response.status} {response.text()}"


def rejection(reply) -> str:
    assert 400 <= reply.status < 500, reply.status
    return " | ".join(v.get("message", "") for v in reply.violations)


@pytest.mark.prism_specs(HANDWRITTEN_SPEC)
def test_spec_token_and_open_message(prism, tmp_path):
    gc, http = prism_connector(open_messaging(prism(HANDWRITTEN_SPEC).url), tmp_path)

    result = gc.deliver(sample_job(destination=gc.name))

    assert [m for m, _, _ in http.exchanges] == ["POST", "POST"]
    assert_spec_accepted(http)
    assert result.external_ref == "2d8f3c5a4b6e7f8091a2b3c4d5e6f708"  # the spec's example


@pytest.mark.prism_specs(HANDWRITTEN_SPEC)
def test_spec_negative_control_open_message_id_type_is_case_sensitive(prism, tmp_path):
    server = prism(HANDWRITTEN_SPEC)
    body = open_message(sample_job())
    body["channel"]["from"]["idType"] = "opaque"

    reply = call("POST", f"{server.url}/api/v2/conversations/messages/{INTEGRATION_ID}/inbound/open/message",
                 json_body=body, bearer="gc-token")

    assert "allowed values" in rejection(reply)


@pytest.mark.prism_specs(HANDWRITTEN_SPEC)
def test_spec_negative_control_token_needs_basic_client_auth(prism, tmp_path):
    reply = call("POST", prism(HANDWRITTEN_SPEC).url + TOKEN_PATH,
                 form={"grant_type": "client_credentials", "client_id": "gc-client"})
    assert 400 <= reply.status < 500


@pytest.mark.prism_specs(DERIVED_SPEC)
def test_derived_spec_workitem_lookup_then_create(prism, tmp_path):
    server = prism(DERIVED_SPEC)
    gc, http = prism_connector(settings_for(server.url, queues={"technical": QUEUE_ID}, skills={"german": SKILL_ID}),
                               tmp_path)

    result = gc.deliver(sample_job(destination=gc.name))

    assert [(m, u.removeprefix(server.url)) for m, u, _ in http.exchanges] == [
        ("POST", TOKEN_PATH), ("POST", f"{WORKITEMS}/query"), ("POST", WORKITEMS)]
    assert_spec_accepted(http)
    assert result.case_ref == WORKITEM_ID


@pytest.mark.prism_specs(DERIVED_SPEC)
def test_derived_spec_workitem_update(prism, tmp_path):
    gc, http = prism_connector(settings_for(prism(DERIVED_SPEC).url, mapping={
        "custom_fields": {"tier_text": "customer.attributes.tier"}}), tmp_path)

    gc.deliver(follow_up(gc.name))

    assert http.exchanges[-1][0] == "PATCH"
    assert_spec_accepted(http)


@pytest.mark.prism_specs(DERIVED_SPEC)
def test_derived_spec_negative_control_workitem_name_and_fields(prism, tmp_path):
    server = prism(DERIVED_SPEC)
    gc = connector(settings_for(server.url), tmp_path)
    job = sample_job()
    short = {**gc._workitem_create(job), "name": "ab"}
    update = {**gc._workitem_update(job), "descripton": "typo"}

    assert "fewer than 3" in rejection(call("POST", server.url + WORKITEMS, json_body=short, bearer="t"))
    assert "descripton" in rejection(call("PATCH", f"{server.url}{WORKITEMS}/{WORKITEM_ID}", json_body=update,
                                          bearer="t"))


@pytest.mark.prism_specs(DERIVED_SPEC)
def test_derived_spec_negative_control_query_filters(prism, tmp_path):
    server = prism(DERIVED_SPEC)
    equal = {"name": "typeId", "type": "String", "operator": "EQ", "values": [TYPE_ID]}

    too_many = call("POST", f"{server.url}{WORKITEMS}/query", json_body={"filters": [equal] * 4}, bearer="t")
    lower_case = call("POST", f"{server.url}{WORKITEMS}/query", json_body={"filters": [{**equal, "type": "string"}]},
                      bearer="t")

    assert "more than 3" in rejection(too_many)
    assert "allowed values" in rejection(lower_case)
