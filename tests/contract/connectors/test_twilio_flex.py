"""Twilio Flex: the shared connector contract (SETUP), Prism mocks of Twilio's own OpenAPI specs
(TaskRouter v1 and Flex v1, with negative controls), and the request content the specs cannot
check (the JSON inside the `Attributes`, `Channel` and `Routing` form fields, specs/README.md pitfall 5).
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.adapters.connectors.http import HttpClient, HttpResponse
from chalicelib.adapters.connectors.twilio_flex import ATTRIBUTES_LIMIT, TwilioFlexConnector, TwilioFlexSettings
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.models import Channel
from chalicelib.errors import PermanentDeliveryError
from chalicelib.secrets import SecretResolver
from tests.support.connector_setup import ConnectorSetup
from tests.support.fakes import sample_job
from tests.support.receiver import Answer, Receiver

ACCOUNT_SID = "AC" + "a" * 32
WORKSPACE = "WS" + "1" * 32
WORKFLOW = "WW" + "2" * 32
TASK_SID = "WT" + "3" * 32
ENVIRON = {"TWILIO_AUTH_TOKEN": "test-auth-token"}
TASKROUTER_SPEC = "twilio/twilio_taskrouter_v1.json"
FLEX_SPEC = "twilio/twilio_flex_v1.json"
REJECTED = "Request did not pass the validation rules"


def raw_settings(base_url: str, **overrides) -> dict:
    return {
        "base_url": base_url,
        "auth": {"type": "basic", "username": ACCOUNT_SID, "password": "env:TWILIO_AUTH_TOKEN"},
        "workspace_sid": WORKSPACE,
        "workflow_sid": WORKFLOW,
        **overrides,
    }


SETUP = ConnectorSetup(
    key="twilio_flex",
    settings=raw_settings,
    environ=ENVIRON,
    created_body={"sid": TASK_SID, "attributes": "{}"},
)


class RecordingHttp(HttpClient):
    """The shared HTTP client, remembering each exchange so tests can read what was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[tuple[str, str, dict, bytes, HttpResponse]] = []

    def request(self, method, url, *, headers=None, body=None, timeout=None) -> HttpResponse:
        response = super().request(method, url, headers=headers, body=body, timeout=timeout)
        self.exchanges.append((method, url, dict(headers or {}), body or b"", response))
        return response

    def forms(self, method: str = "POST") -> list[dict[str, str]]:
        return [{k: v[0] for k, v in parse_qs(body.decode()).items()} for m, _, _, body, _ in self.exchanges if m == method]


def build(base_url: str, **overrides) -> tuple[TwilioFlexConnector, RecordingHttp]:
    http = RecordingHttp()
    settings = TwilioFlexSettings.model_validate(raw_settings(base_url, **overrides))
    return TwilioFlexConnector("flex", settings, SecretResolver(ENVIRON), ConnectorRuntime(data_dir="/x", http=http)), http


@pytest.fixture
def vendor():
    with Receiver() as server:
        yield server


def root(url: str) -> str:
    return url.rsplit("/hooks", 1)[0]


def tasks_answer(*attributes: dict) -> Answer:
    tasks = [{"sid": f"WT{n:032d}", "attributes": json.dumps(a)} for n, a in enumerate(attributes)]
    return Answer(200, json.dumps({"tasks": tasks, "meta": {}}).encode(), {"content-type": "application/json"})


CREATED = Answer(201, json.dumps({"sid": TASK_SID}).encode(), {"content-type": "application/json"})


# --- Prism: Twilio's own specs ------------------------------------------------------------------------------


def new_log_lines(server, since: int) -> str:
    time.sleep(0.2)  # Prism logs just after answering
    return "\n".join(server.output[since:])


@pytest.mark.prism_specs(TASKROUTER_SPEC)
def test_taskrouter_mode_passes_the_taskrouter_spec(prism):
    server = prism(TASKROUTER_SPEC)
    since = len(server.output)
    connector, http = build(server.url)

    result = connector.deliver(sample_job(destination="flex"))

    # The spec's example task: Prism accepted both the duplicate check and the create.
    # The task stands for the case in taskrouter mode: the workspace's events name it.
    assert result.external_ref == result.case_ref == "WTaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    assert [(m, urlsplit(u).path, r.status) for m, u, _, _, r in http.exchanges] == [
        ("GET", f"/v1/Workspaces/{WORKSPACE}/Tasks", 200),
        ("POST", f"/v1/Workspaces/{WORKSPACE}/Tasks", 201),
    ]
    assert not any(r.headers.get("sl-violations") for *_, r in http.exchanges)
    assert REJECTED not in new_log_lines(server, since)


@pytest.mark.prism_specs(TASKROUTER_SPEC)
def test_negative_control_a_bad_workspace_sid_is_refused_by_the_spec(prism):
    server = prism(TASKROUTER_SPEC)
    since = len(server.output)
    connector, _ = build(server.url)
    # Settings validation refuses this sid; model_copy skips it, so the spec must catch it.
    connector.settings = connector.settings.model_copy(update={"workspace_sid": "WS123"})

    with pytest.raises(PermanentDeliveryError, match="422"):
        connector.deliver(sample_job(destination="flex"))

    assert REJECTED in new_log_lines(server, since)


@pytest.mark.prism_specs(TASKROUTER_SPEC)
def test_negative_control_a_priority_by_name_is_refused_by_the_spec(prism):
    server = prism(TASKROUTER_SPEC)
    connector, _ = build(server.url)
    form = {**connector.task_form(sample_job(destination="flex")), "Priority": "high"}

    with pytest.raises(PermanentDeliveryError, match="Priority"):
        connector.api.call("POST", f"/v1/Workspaces/{WORKSPACE}/Tasks", form=form)


@pytest.mark.prism_specs(TASKROUTER_SPEC)
def test_negative_control_a_request_without_basic_auth_is_refused(prism):
    connector, _ = build(prism(TASKROUTER_SPEC).url)
    connector.api.auth = type("NoAuth", (), {"headers": lambda self: {}})()

    with pytest.raises(PermanentDeliveryError, match="401"):
        connector.deliver(sample_job(destination="flex"))


@pytest.mark.prism_specs(TASKROUTER_SPEC, FLEX_SPEC)
def test_interaction_mode_passes_the_flex_spec(prism):
    flex, taskrouter = prism(FLEX_SPEC), prism(TASKROUTER_SPEC)
    since = len(flex.output)
    connector, http = build(flex.url, mode="interaction", taskrouter_url=taskrouter.url, task_channel="sms")

    result = connector.deliver(sample_job(destination="flex"))

    assert result.external_ref == "KDaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    # The spec's example names the task's conversation in its attributes: Conversations events name it.
    assert result.case_ref == "CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    assert [(m, u.split("/v1")[0], urlsplit(u).path, r.status) for m, u, _, _, r in http.exchanges] == [
        ("GET", taskrouter.url, f"/v1/Workspaces/{WORKSPACE}/Tasks", 200),
        ("POST", flex.url, "/v1/Interactions", 200),
    ]
    assert not any(r.headers.get("sl-violations") for *_, r in http.exchanges)
    assert REJECTED not in new_log_lines(flex, since)


@pytest.mark.prism_specs(FLEX_SPEC)
def test_negative_control_an_interaction_without_channel_is_refused_by_the_spec(prism):
    server = prism(FLEX_SPEC)
    connector, _ = build(server.url, mode="interaction")
    form = connector.interaction_form(sample_job(destination="flex"))
    del form["Channel"]

    with pytest.raises(PermanentDeliveryError, match="422"):
        connector.api.call("POST", "/v1/Interactions", form=form)


# --- what the specs cannot check: the JSON inside the form ------------------------------------------------


def test_the_task_carries_the_contact_routing_and_hub_ids(vendor):
    vendor.script = [tasks_answer(), CREATED]
    connector, http = build(root(vendor.url), task_timeout=3600)
    job = sample_job(destination="flex")

    assert connector.deliver(job).external_ref == TASK_SID

    (form,) = http.forms()
    assert {k: v for k, v in form.items() if k != "Attributes"} == {
        "Priority": "50", "TaskChannel": "default", "WorkflowSid": WORKFLOW, "Timeout": "3600"}
    attributes = json.loads(form["Attributes"])
    assert attributes == {
        "name": "Jana Schmidt",
        "title": "[whatsapp] Mein Internet geht seit heute nicht, bitte dringend melden",
        "text": "Mein Internet geht seit heute nicht, bitte dringend melden",
        "channelType": "whatsapp",
        "direction": "inbound",
        "customerName": "Jana Schmidt",
        "customerAddress": "+4915123456789",
        "customers": {"external_id": "cus_01JD0000000000000000000001", "name": "Jana Schmidt",
                      "email": "jana.schmidt@example.com", "phone": "+4915123456789"},
        "routing": {"queue": "technical", "priority": "high", "skills": ["german"], "skill_levels": {"german": 3},
                    "tags": ["outage"]},
        "hub": {"contact_id": "ct_01JD0000000000000000000001", "case_id": "case_01JD0000000000000000000001",
                "customer_id": "cus_01JD0000000000000000000001", "delivery_id": job.delivery_id,
                "channel": "whatsapp", "provider": "meta", "language": "de", "attachments": []},
        "hub_delivery_id": job.delivery_id,
        "conversations": {"conversation_id": "case_01JD0000000000000000000001", "communication_channel": "whatsapp"},
    }
    assert len(form["Attributes"]) <= ATTRIBUTES_LIMIT
    # Twilio's REST API takes no idempotency key; nothing pretends it does.
    assert not any("idempotency" in k.lower() for _, _, headers, _, _ in http.exchanges for k in headers)


def test_the_duplicate_check_asks_taskrouter_for_the_delivery_id(vendor):
    vendor.script = [tasks_answer(), CREATED]
    connector, _ = build(root(vendor.url))
    job = sample_job(destination="flex")

    connector.deliver(job)

    lookup = urlsplit(vendor.requests[0].path)
    assert (vendor.requests[0].method, lookup.path) == ("GET", f"/v1/Workspaces/{WORKSPACE}/Tasks")
    assert parse_qs(lookup.query)["EvaluateTaskAttributes"] == [f'hub_delivery_id == "{job.delivery_id}"']
    assert vendor.requests[0].headers["authorization"].startswith("Basic ")


def test_a_delivery_whose_task_exists_returns_it_without_creating_another(vendor):
    job = sample_job(destination="flex")
    vendor.script = [tasks_answer({"hub_delivery_id": job.delivery_id})]
    connector, _ = build(root(vendor.url))

    result = connector.deliver(job)

    assert result.external_ref == result.case_ref == "WT" + "0" * 32
    assert [r.method for r in vendor.requests] == ["GET"]


def test_an_interaction_that_exists_returns_its_conversation_as_the_case_ref(vendor):
    job = sample_job(destination="flex")
    conversation = "CH" + "6" * 32
    vendor.script = [tasks_answer({"hub_delivery_id": job.delivery_id, "flexInteractionSid": "KD" + "4" * 32,
                                   "conversationSid": conversation})]
    connector, _ = build(root(vendor.url), mode="interaction", taskrouter_url=root(vendor.url))

    result = connector.deliver(job)

    assert (result.external_ref, result.case_ref) == ("KD" + "4" * 32, conversation)
    assert [r.method for r in vendor.requests] == ["GET"]


def test_an_interaction_without_a_conversation_in_its_answer_falls_back_to_its_task(vendor):
    routed = {"sid": "KD" + "4" * 32, "routing": {"properties": {"sid": TASK_SID, "attributes": "{}"}}}
    vendor.script = [tasks_answer(), Answer(200, json.dumps(routed).encode(), {"content-type": "application/json"})]
    connector, _ = build(root(vendor.url), mode="interaction", taskrouter_url=root(vendor.url))

    assert connector.deliver(sample_job(destination="flex")).case_ref == TASK_SID


def test_tasks_of_other_deliveries_do_not_count_as_duplicates(vendor):
    # An ignored filter would list unrelated tasks: only an exact hub_delivery_id counts.
    vendor.script = [tasks_answer({"hub_delivery_id": "dlv_other"}, {"body": "hello"}), CREATED]
    connector, _ = build(root(vendor.url))

    assert connector.deliver(sample_job(destination="flex")).external_ref == TASK_SID
    assert [r.method for r in vendor.requests] == ["GET", "POST"]


def test_a_long_text_is_cut_to_taskrouters_attribute_limit(vendor):
    vendor.script = [tasks_answer(), CREATED]
    connector, http = build(root(vendor.url))

    connector.deliver(sample_job(destination="flex", text="Störung im Netz. " * 1000))

    (form,) = http.forms()
    attributes = json.loads(form["Attributes"])
    assert ATTRIBUTES_LIMIT - 20 < len(form["Attributes"]) <= ATTRIBUTES_LIMIT
    assert attributes["text"].startswith("Störung im Netz.") and attributes["text"].endswith("…")


def test_attributes_that_cannot_fit_are_permanent_before_any_call(vendor):
    connector, _ = build(root(vendor.url), mapping={"custom_fields": {"essay": "contact.text"}})

    with pytest.raises(PermanentDeliveryError, match="4096"):
        connector.deliver(sample_job(destination="flex", text="x" * 5000))
    assert vendor.requests == []


def test_priorities_map_to_integers(vendor):
    vendor.script = [tasks_answer(), CREATED]
    connector, http = build(root(vendor.url), mapping={"priority": {"high": 7}})

    connector.deliver(sample_job(destination="flex"))

    assert http.forms()[0]["Priority"] == "7"


def test_an_interaction_binds_a_new_conversation_to_the_customer_and_routes_the_task(vendor):
    vendor.script = [tasks_answer(), Answer(200, b'{"sid": "KD' + b"4" * 32 + b'"}', {"content-type": "application/json"})]
    connector, http = build(root(vendor.url), mode="interaction", taskrouter_url=root(vendor.url),
                            proxy_address="+4930999999", task_channel="TC" + "5" * 32)
    job = sample_job(destination="flex")

    assert connector.deliver(job).external_ref == "KD" + "4" * 32

    (form,) = http.forms()
    assert json.loads(form["Channel"]) == {
        "type": "whatsapp", "initiated_by": "api",
        "participants": [{"address": "whatsapp:+4915123456789", "proxy_address": "whatsapp:+4930999999"}],
    }
    routing = json.loads(form["Routing"])["properties"]
    assert {k: v for k, v in routing.items() if k != "attributes"} == {
        "workspace_sid": WORKSPACE, "workflow_sid": WORKFLOW, "priority": 50, "task_channel_sid": "TC" + "5" * 32}
    # Flex writes `conversations` for the transcript itself: the hub must not overwrite it.
    assert "conversations" not in routing["attributes"]
    assert routing["attributes"]["hub_delivery_id"] == job.delivery_id
    assert len(json.dumps(routing["attributes"], separators=(",", ":"))) <= ATTRIBUTES_LIMIT - 1024


def test_an_email_interaction_names_the_sender_and_the_recipient(vendor):
    connector, _ = build(root(vendor.url), mode="interaction", channel_type="email",
                         email_from="support@example.com", email_from_name="Example Support")

    channel = json.loads(connector.interaction_form(sample_job(destination="flex"))["Channel"])

    assert channel["properties"] == {"from": "support@example.com", "from_name": "Example Support"}
    assert channel["participants"] == [{"level": "to", "name": "Jana Schmidt", "address": "jana.schmidt@example.com"}]


def test_a_web_chat_interaction_uses_the_customer_id_as_identity(vendor):
    job = sample_job(destination="flex")
    job = job.model_copy(update={"contact": job.contact.model_copy(update={"channel": Channel.WEBCHAT})})
    connector, _ = build(root(vendor.url), mode="interaction")

    channel = json.loads(connector.interaction_form(job)["Channel"])

    assert channel["type"] == "web" and channel["participants"] == [{"identity": "cus_01JD0000000000000000000001"}]


def test_an_sms_interaction_without_a_phone_number_is_permanent(vendor):
    job = sample_job(destination="flex")
    email_only = [Identifier.parse("email:jana.schmidt@example.com")]
    job = job.model_copy(update={
        "contact": job.contact.model_copy(update={"sender": job.contact.sender.model_copy(update={"identifiers": email_only})}),
        "customer": job.customer.model_copy(update={"identifiers": email_only}),
    })
    connector, _ = build(root(vendor.url), mode="interaction", channel_type="sms")

    with pytest.raises(PermanentDeliveryError, match="phone number"):
        connector.interaction_form(job)


# --- settings -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, problem", [
    ({"workspace_sid": "WS123"}, "Workspace SID"),
    ({"workflow_sid": "workflow"}, "Workflow SID"),
    ({"auth": {"type": "bearer", "token": "env:X"}}, "basic auth"),
    ({"base_url": "https://flex-api.twilio.com"}, "taskrouter mode calls https://taskrouter.twilio.com"),
    ({"mode": "interaction", "base_url": "https://taskrouter.twilio.com"}, "interaction mode calls"),
    ({"mapping": {"priority": {"high": "urgent"}}}, "integers"),
    ({"task_timeout": 2_000_000}, "task_timeout"),
    ({"mode": "interaction", "base_url": "https://flex-api.twilio.com", "channel_type": "email"}, "email_from"),
    ({"mode": "interaction", "base_url": "https://flex-api.twilio.com", "channel_type": "fax"}, "channel_type"),
])
def test_settings_refuse_what_twilio_would_reject(overrides, problem):
    with pytest.raises(ValidationError, match=problem):
        TwilioFlexSettings.model_validate({**raw_settings("https://taskrouter.twilio.com"), **overrides})


def test_the_real_hosts_are_accepted_per_mode():
    TwilioFlexSettings.model_validate(raw_settings("https://taskrouter.twilio.com"))
    TwilioFlexSettings.model_validate(raw_settings("https://flex-api.twilio.com", mode="interaction"))


def test_the_connector_does_not_thread_cases():
    assert TwilioFlexConnector.threads_cases is False
