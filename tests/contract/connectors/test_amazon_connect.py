"""Amazon Connect Tasks against botocore's own service model.

Every call goes through a real boto3 `connect` client with a `Stubber`: botocore validates each
request against the StartTaskContact input shape (required members, types, string-valued
Attributes, Reference structures) and each stubbed answer against the output shape, and
`expected_params` pins the exact request. Nothing reaches the network, except the one test that
points a client at a closed local port to get a real connection error.
"""

from __future__ import annotations

from datetime import datetime, timezone

import boto3
import pytest
from botocore.config import Config
from botocore.stub import ANY, Stubber
from pydantic import ValidationError

from chalicelib.adapters.connectors.amazon_connect import (
    ATTRIBUTES_BYTE_LIMIT,
    DESCRIPTION_LIMIT,
    NAME_LIMIT,
    AmazonConnectConnector,
    AmazonConnectSettings,
    client_token,
)
from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.domain.models import Customer, ExternalRef
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError
from chalicelib.hubconfig import DeliverySettings
from chalicelib.secrets import SecretResolver
from chalicelib.service.breaker import CircuitBreakers
from chalicelib.service.deliver import DeliverOutcome, Deliverer
from tests.support.fakes import Clock, MemoryQueue, sample_job

REGION = "eu-central-1"
INSTANCE = "a1b2c3d4-5678-90ab-cdef-111111111111"
FLOW = "846ec553-a005-41c0-8341-222222222222"
NAME = "connect-tasks"
TASK_1, TASK_2, TASK_3 = (f"{n}1111111-2222-3333-4444-555555555555" for n in "abc")
ATTRIBUTE_KEY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def connect_client(**config):
    return boto3.client("connect", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(**config) if config else None)


@pytest.fixture
def client():
    return connect_client()


@pytest.fixture
def stubber(client):
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def settings(**overrides) -> AmazonConnectSettings:
    return AmazonConnectSettings.model_validate({"instance_id": INSTANCE, "contact_flow_id": FLOW, **overrides})


def connector(client, **overrides) -> AmazonConnectConnector:
    runtime = ConnectorRuntime(data_dir="/nonexistent", aws_client=lambda service: client)
    return AmazonConnectConnector(NAME, settings(**overrides), SecretResolver({}), runtime)


def follow_up_of(job, previous_task: str, contact_id: str = "ct_01JD0000000000000000000002"):
    case = job.case.model_copy(update={"external_refs": {NAME: ExternalRef(destination=NAME, ref=previous_task)}})
    return sample_job(destination=NAME, contact_id=contact_id, case=case, text="Immer noch kein Internet")


def error(stubber, code: str, message: str, status: int = 400) -> None:
    stubber.add_client_error("start_task_contact", service_error_code=code, service_message=message,
                             http_status_code=status)


# --- the request -----------------------------------------------------------------------------------


def test_a_first_contact_starts_a_task_with_the_delivery_as_client_token(client, stubber):
    job = sample_job(destination=NAME)
    stubber.add_response("start_task_contact", {"ContactId": TASK_1}, {
        "InstanceId": INSTANCE,
        "ContactFlowId": FLOW,
        "Name": "[whatsapp] Mein Internet geht seit heute nicht, bitte dringend melden",
        "Description": (
            "Jana Schmidt via whatsapp (meta) at 2026-11-23T09:00:00Z:\n\n"
            "Mein Internet geht seit heute nicht, bitte dringend melden\n\n"
            "Hub: contact ct_01JD0000000000000000000001, case case_01JD0000000000000000000001, "
            "customer cus_01JD0000000000000000000001; queue technical, priority high, tags outage"
        ),
        "References": {
            "Hub contact": {"Type": "STRING", "Value": "ct_01JD0000000000000000000001"},
            "Hub case": {"Type": "STRING", "Value": "case_01JD0000000000000000000001"},
            "Hub customer": {"Type": "STRING", "Value": "cus_01JD0000000000000000000001"},
        },
        "Attributes": {
            "hub_delivery_id": job.delivery_id,
            "hub_contact_id": "ct_01JD0000000000000000000001",
            "hub_case_id": "case_01JD0000000000000000000001",
            "hub_customer_id": "cus_01JD0000000000000000000001",
            "channel": "whatsapp",
            "provider": "meta",
            "routing_queue": "technical",
            "priority": "2",
            "tags": "outage",
            "skills": "german:3",
            "language": "de",
        },
        "ClientToken": f"hub-{job.delivery_id}",
    })

    result = connector(client).deliver(job)

    # The new task is the chain head the deliverer stores on the case.
    assert (result.external_ref, result.case_ref) == (TASK_1, TASK_1)


def test_a_follow_up_chains_to_the_cases_latest_task(client, stubber):
    stubber.add_response("start_task_contact", {"ContactId": TASK_2}, {
        "InstanceId": INSTANCE, "ContactFlowId": FLOW, "PreviousContactId": TASK_1,
        "Name": "[whatsapp] Immer noch kein Internet",
        "Description": ANY, "References": ANY, "Attributes": ANY, "ClientToken": ANY,
    })

    result = connector(client).deliver(follow_up_of(sample_job(destination=NAME), TASK_1))

    assert result.case_ref == TASK_2


def test_chaining_can_be_turned_off(client):
    job = follow_up_of(sample_job(destination=NAME), TASK_1)

    request = connector(client, chain_tasks=False).request_for(job, None)

    assert "PreviousContactId" not in request


def test_a_redelivered_job_sends_the_same_client_token_and_gets_the_same_task(client, stubber):
    job = sample_job(destination=NAME)
    first = connector(client).request_for(job, None)
    # Connect answers a repeated token with the task it already started.
    stubber.add_response("start_task_contact", {"ContactId": TASK_1}, first)
    stubber.add_response("start_task_contact", {"ContactId": TASK_1}, first)

    results = [connector(client).deliver(job), connector(client).deliver(job)]

    assert [r.case_ref for r in results] == [TASK_1, TASK_1]
    assert first["ClientToken"] == client_token(job.delivery_id) and len(first["ClientToken"]) <= 500
    assert client_token(job.delivery_id) != client_token(sample_job(destination="other").delivery_id)


def test_name_and_description_stay_within_connects_limits(client):
    job = sample_job(destination=NAME, text="Störung " * 2000)

    request = connector(client).request_for(job, None)

    assert len(request["Name"]) == NAME_LIMIT and request["Name"].endswith("…")
    assert len(request["Description"]) == DESCRIPTION_LIMIT and request["Description"].endswith("…")


def test_templates_render_name_and_description(client):
    request = connector(client, name_template="{priority}: {customer_name} on {channel}",
                        description_template="{text}\n\nCase {case_id}").request_for(sample_job(destination=NAME), None)

    assert request["Name"] == "high: Jana Schmidt on whatsapp"
    assert request["Description"] == "Mein Internet geht seit heute nicht, bitte dringend melden\n\nCase case_01JD0000000000000000000001"


def test_references_are_links_when_templates_are_configured_and_map_custom_values(client, stubber):
    conn = connector(
        client,
        link_templates={"case": "https://console.example.com/cases/{case_id}",
                        "customer": "https://console.example.com/customers/{customer_id}"},
        references={"Tier": {"path": "customer.attributes.tier"}, "Case opened": {"path": "case.opened_at", "type": "DATE"},
                    "Missing": {"path": "customer.attributes.no_such_attribute"}},
    )
    request = conn.request_for(sample_job(destination=NAME), None)
    stubber.add_response("start_task_contact", {"ContactId": TASK_1}, request)
    conn.deliver(sample_job(destination=NAME))  # botocore validates every Reference's shape

    assert request["References"] == {
        "Hub contact": {"Type": "STRING", "Value": "ct_01JD0000000000000000000001"},
        "Hub case": {"Type": "URL", "Value": "https://console.example.com/cases/case_01JD0000000000000000000001"},
        "Hub customer": {"Type": "URL", "Value": "https://console.example.com/customers/cus_01JD0000000000000000000001"},
        "Tier": {"Type": "STRING", "Value": "gold"},
        # DATE references are epoch seconds.
        "Case opened": {"Type": "DATE", "Value": str(int(datetime(2026, 11, 23, 9, tzinfo=timezone.utc).timestamp()))},
    }


def test_attributes_are_strings_with_connects_key_alphabet_and_carry_mapped_values(client):
    request = connector(client, mapping={
        "priority": {"high": "9"}, "tags": ["hub"],
        "custom_fields": {"tier": "customer.attributes.tier", "intents": "enrichment.intent.intents"},
    }).request_for(sample_job(destination=NAME), None)

    attributes = request["Attributes"]
    assert all(isinstance(v, str) for v in attributes.values())
    assert all(set(key) <= ATTRIBUTE_KEY_CHARS for key in attributes)
    assert (attributes["priority"], attributes["tags"], attributes["tier"], attributes["intents"]) == (
        "9", "outage,hub", "gold", '["outage"]')


def test_oversized_attributes_are_refused_before_calling_connect(client):
    conn = connector(client, mapping={"custom_fields": {"essay": "contact.text"}})

    with pytest.raises(PermanentDeliveryError, match=str(ATTRIBUTES_BYTE_LIMIT)):
        conn.deliver(sample_job(destination=NAME, text="x" * ATTRIBUTES_BYTE_LIMIT))


def test_a_task_template_replaces_the_flow(client):
    conn = connector(client, contact_flow_id=None, task_template_id="tt-123")
    request = conn.request_for(sample_job(destination=NAME), None)

    assert request["TaskTemplateId"] == "tt-123" and "ContactFlowId" not in request


# --- the deliverer keeps the chain head ----------------------------------------------------------


def test_the_deliverer_moves_the_cases_reference_to_each_new_task(client, stubber):
    store = SqliteStore(":memory:")
    conn = connector(client)
    deliverer = Deliverer(store=store, connector={NAME: conn}.get, dead_letters=MemoryQueue("dlq"),
                          settings=DeliverySettings(attempts_per_invocation=1, max_receives=3, max_inline_wait_seconds=1),
                          clock=Clock(), sleep=lambda _: None, breakers=CircuitBreakers(failure_threshold=100))
    first = sample_job(destination=NAME)
    store.create_customer(Customer(id=first.customer.id))
    store.update_customer(Customer(id=first.customer.id, version=1), cases=(first.case,))
    jobs = [first, *(sample_job(destination=NAME, contact_id=f"ct_{n}", case=first.case) for n in (2, 3))]
    for job, before, task in zip(jobs, (None, TASK_1, TASK_2), (TASK_1, TASK_2, TASK_3)):
        expected = {**conn.request_for(job, None), **({"PreviousContactId": before} if before else {})}
        stubber.add_response("start_task_contact", {"ContactId": task}, expected)

    outcomes = [deliverer.deliver(job, receive_count=1) for job in jobs]

    assert outcomes == [DeliverOutcome.DELIVERED] * 3
    assert store.get_case(first.case.id).external_refs[NAME].ref == TASK_3


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code, status", [
    ("ThrottlingException", 429), ("InternalServiceException", 500), ("ServiceQuotaExceededException", 402),
])
def test_throttling_server_faults_and_the_active_task_quota_are_retryable(client, stubber, code, status):
    error(stubber, code, "try later", status)

    with pytest.raises(RetryableDeliveryError, match=code):
        connector(client).deliver(sample_job(destination=NAME))


@pytest.mark.parametrize("code, status", [
    ("InvalidParameterException", 400), ("InvalidRequestException", 400), ("ResourceNotFoundException", 404),
    ("AccessDeniedException", 403),
])
def test_rejections_are_permanent_and_keep_connects_message(client, stubber, code, status):
    error(stubber, code, "ContactFlowId does not exist in this instance", status)

    with pytest.raises(PermanentDeliveryError) as raised:
        connector(client).deliver(sample_job(destination=NAME))

    assert code in raised.value.message and "ContactFlowId does not exist" in raised.value.message


def test_a_full_chain_starts_a_new_chain_related_to_the_old_one(client, stubber):
    job = follow_up_of(sample_job(destination=NAME), TASK_1)
    conn = connector(client)
    chained = conn.request_for(job, TASK_1)
    error(stubber, "ServiceQuotaExceededException", "Maximum number of linked contacts reached", 402)
    related = {k: v for k, v in chained.items() if k != "PreviousContactId"}
    related |= {"RelatedContactId": TASK_1, "ClientToken": f"hub-{job.delivery_id}-related"}
    stubber.add_response("start_task_contact", {"ContactId": TASK_2}, related)

    result = conn.deliver(job)

    assert result.case_ref == TASK_2


def test_the_active_task_quota_on_a_new_chain_is_still_retryable(client, stubber):
    error(stubber, "ServiceQuotaExceededException", "chain full", 402)
    error(stubber, "ServiceQuotaExceededException", "active tasks quota", 402)

    with pytest.raises(RetryableDeliveryError, match="active tasks quota"):
        connector(client).deliver(follow_up_of(sample_job(destination=NAME), TASK_1))


def test_an_unreachable_endpoint_is_retryable():
    unreachable = boto3.client("connect", region_name=REGION, endpoint_url="http://127.0.0.1:9",
                               aws_access_key_id="testing", aws_secret_access_key="testing",
                               config=Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}))

    with pytest.raises(RetryableDeliveryError, match="EndpointConnectionError"):
        connector(unreachable).deliver(sample_job(destination=NAME))


def test_a_request_botocore_refuses_is_permanent(client):
    conn = connector(client)
    # Settings validation prevents this; constructed directly, botocore's own check is the net.
    conn.settings = conn.settings.model_copy(update={"instance_id": ""})

    with pytest.raises(PermanentDeliveryError, match="invalid request"):
        conn.deliver(sample_job(destination=NAME))


# --- settings and clients ------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, problem", [
    ({"instance_id": INSTANCE}, "exactly one"),
    ({"instance_id": INSTANCE, "contact_flow_id": FLOW, "task_template_id": "tt-1"}, "exactly one"),
    ({"instance_id": "my-instance", "contact_flow_id": FLOW}, "instance id"),
    ({"instance_id": INSTANCE, "contact_flow_id": FLOW, "name_template": "{customer.__class__}"}, "placeholder"),
    ({"instance_id": INSTANCE, "contact_flow_id": FLOW, "link_templates": {"case": "http://x/{case_id}"}}, "https"),
    ({"instance_id": INSTANCE, "contact_flow_id": FLOW, "mapping": {"custom_fields": {"bad key": "case.id"}}}, "bad key"),
    ({"instance_id": INSTANCE, "contact_flow_id": FLOW, "references": {"x": {"path": "secret.x"}}}, "must start"),
    ({"instance_id": INSTANCE, "contact_flow_id": FLOW, "queue_id": "q"}, "queue_id"),
])
def test_settings_refuse_what_connect_would_reject(raw, problem):
    with pytest.raises(ValidationError, match=problem):
        AmazonConnectSettings.model_validate(raw)


def test_an_instance_arn_gives_the_id_and_the_region():
    arn = f"arn:aws:connect:us-west-2:123456789012:instance/{INSTANCE}"
    conn = AmazonConnectConnector(NAME, AmazonConnectSettings.model_validate({"instance_id": arn, "contact_flow_id": FLOW}),
                                  SecretResolver({}), ConnectorRuntime(data_dir="/x", aws_client=lambda s: connect_client()))

    assert conn.request_for(sample_job(destination=NAME), None)["InstanceId"] == INSTANCE
    # The hub's shared client is in eu-central-1: the instance's region gets a client of its own.
    assert conn._client().meta.region_name == "us-west-2"


def test_the_shared_client_is_used_when_the_region_matches(client):
    assert connector(client, region=REGION)._client() is client
