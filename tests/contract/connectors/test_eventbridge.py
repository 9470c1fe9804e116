"""Amazon EventBridge against botocore's own service model.

A real boto3 `events` client with a `Stubber`: botocore validates each PutEvents request (Entries
shape, Detail as a string) and each stubbed answer against the output shape; `expected_params`
pins the exact entry. The published contact-event schema checks `detail`.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import boto3
import jsonschema
import pytest
from botocore.config import Config
from botocore.stub import ANY, Stubber
from pydantic import ValidationError

from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.adapters.connectors.eventbridge import (
    DEFAULT_MAX_ENTRY_BYTES,
    EventBridgeConnector,
    EventBridgeSettings,
    entry_size,
)
from chalicelib.domain.events import contact_event
from chalicelib.domain.schema import ContactEvent
from chalicelib.domain.models import CustomerEvent, OutboundStatus
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError
from chalicelib.secrets import SecretResolver
from tests.support.fakes import sample_job
from tests.support.outbound_jobs import outbound_job

REGION = "eu-central-1"
BUS = "hub-events"
NAME = "events"
EVENT_ID = "11111111-2222-3333-4444-555555555555"
PUBLISHED_SCHEMA = json.loads(
    (Path(__file__).resolve().parents[3] / "docs" / "schemas" / "contact-event.schema.json").read_text())
#: The schema of what is actually serialized (priority by name).
SCHEMA = ContactEvent.model_json_schema(mode="serialization")


def events_client(**config):
    return boto3.client("events", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(**config) if config else None)


@pytest.fixture
def client():
    return events_client()


@pytest.fixture
def stubber(client):
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def connector(client, **overrides) -> EventBridgeConnector:
    settings = EventBridgeSettings.model_validate({"event_bus_name": BUS, **overrides})
    return EventBridgeConnector(NAME, settings, SecretResolver({}),
                                ConnectorRuntime(data_dir="/nonexistent", aws_client=lambda service: client))


def accepted(stubber, entry=ANY) -> None:
    stubber.add_response("put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": EVENT_ID}]}, {"Entries": [entry]})


def erased() -> CustomerEvent:
    return CustomerEvent(event_id="evt_1", delivery_id="dlv_erase_1", destination=NAME, event_type="customer.erased",
                         customer_id="cus_01JD0000000000000000000001",
                         occurred_at=datetime(2026, 11, 24, 8, 30, tzinfo=timezone.utc))


# --- the entry ---------------------------------------------------------------------------------------


def test_a_contact_is_one_entry_with_the_hub_envelope_as_detail(client, stubber):
    job = sample_job(destination=NAME)
    detail = {"delivery_id": job.delivery_id, **contact_event(job)}
    accepted(stubber, {
        "Source": "omnichannel.hub",
        "DetailType": "Contact Created",
        "Detail": json.dumps(detail, ensure_ascii=False, separators=(",", ":")),
        "EventBusName": BUS,
    })

    result = connector(client).deliver(job)

    assert result.external_ref == EVENT_ID and result.case_ref is None


def detail_of(client, job) -> dict:
    return json.loads(connector(client).entry_for(job.event_type, {"delivery_id": job.delivery_id,
                                                                   **contact_event(job)})["Detail"])


def test_the_detail_is_the_contact_event_envelope_plus_the_delivery_id(client):
    detail = detail_of(client, sample_job(destination=NAME))

    jsonschema.validate(detail, SCHEMA)
    assert set(detail) == {"delivery_id", "type", "timestamp", "data"}
    assert detail["data"]["contact"]["routing"]["priority"] == "high" and "raw" not in detail["data"]["contact"]


def test_the_detail_follows_the_published_contact_event_schema(client):
    jsonschema.validate(detail_of(client, sample_job(destination=NAME)), PUBLISHED_SCHEMA)


def test_a_customer_event_carries_ids_only(client, stubber):
    accepted(stubber, {
        "Source": "omnichannel.hub", "DetailType": "Customer Erased", "EventBusName": BUS,
        "Detail": '{"delivery_id":"dlv_erase_1","type":"customer.erased","timestamp":"2026-11-24T08:30:00Z",'
                  '"data":{"customer":{"id":"cus_01JD0000000000000000000001"}}}',
    })

    assert connector(client).deliver_customer_event(erased()).external_ref == EVENT_ID
    assert EventBridgeConnector.supports_customer_events


def test_source_bus_and_detail_types_are_configurable(client, stubber):
    arn = "arn:aws:events:eu-central-1:123456789012:event-bus/central"
    accepted(stubber, {"Source": "acme.contacts", "DetailType": "Kontakt", "EventBusName": arn, "Detail": ANY})

    connector(client, event_bus_name=arn, source="acme.contacts",
              detail_types={"contact.created": "Kontakt"}).deliver(sample_job(destination=NAME))

    unknown = EventBridgeSettings.model_validate({"event_bus_name": BUS}).detail_type("contact.status_changed")
    assert unknown == "Contact Status Changed"


def test_raw_payload_is_included_on_request(client):
    job = sample_job(destination=NAME)
    job = job.model_copy(update={"contact": job.contact.model_copy(update={"raw": {"id": "wamid.1"}})})

    entry = connector(client, include_raw=True).entry_for(job.event_type, contact_event(job, include_raw=True))

    assert json.loads(entry["Detail"])["data"]["contact"]["raw"] == {"id": "wamid.1"}


# --- size ----------------------------------------------------------------------------------------------


def test_an_oversized_event_drops_the_raw_payload_first_and_says_so(client, stubber):
    job = sample_job(destination=NAME)
    job = job.model_copy(update={"contact": job.contact.model_copy(update={"raw": {"blob": "x" * 300_000}})})
    conn = connector(client, include_raw=True)
    sent = conn.entry_for(job.event_type, {"delivery_id": job.delivery_id, **contact_event(job, include_raw=True)})
    accepted(stubber, sent)

    conn.deliver(job)

    detail = json.loads(sent["Detail"])
    assert detail["truncated"] == ["data.contact.raw"]
    assert "raw" not in detail["data"]["contact"] and detail["data"]["contact"]["text"] == job.contact.text
    assert entry_size(sent) <= DEFAULT_MAX_ENTRY_BYTES


def test_a_long_text_is_shortened_to_fit_the_entry_limit(client):
    job = sample_job(destination=NAME, text="Ärger mit dem Router. " * 20_000)

    entry = connector(client).entry_for(job.event_type, {"delivery_id": job.delivery_id, **contact_event(job)})

    detail = json.loads(entry["Detail"])
    assert "data.contact.text" in detail["truncated"]
    assert detail["data"]["contact"]["text"].endswith("…") and len(detail["data"]["contact"]["text"]) > 1000
    assert DEFAULT_MAX_ENTRY_BYTES - 100 < entry_size(entry) <= DEFAULT_MAX_ENTRY_BYTES
    jsonschema.validate(detail, SCHEMA)


def test_the_limit_can_be_raised_to_eventbridges_one_megabyte(client):
    job = sample_job(destination=NAME, text="x" * 500_000)

    entry = connector(client, max_entry_bytes=1024 * 1024).entry_for(job.event_type, contact_event(job))

    assert "truncated" not in json.loads(entry["Detail"])


def test_an_event_that_cannot_be_trimmed_enough_is_permanent(client):
    job = sample_job(destination=NAME)
    job = job.model_copy(update={"contact": job.contact.model_copy(update={"subject": "s" * 300_000})})

    with pytest.raises(PermanentDeliveryError, match="even after trimming"):
        connector(client).deliver(job)


# --- failures --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["ThrottlingException", "InternalFailure"])
def test_retryable_entry_failures_are_retryable(client, stubber, code):
    stubber.add_response("put_events", {"FailedEntryCount": 1, "Entries": [{"ErrorCode": code, "ErrorMessage": "busy"}]},
                         {"Entries": ANY})

    with pytest.raises(RetryableDeliveryError, match=code):
        connector(client).deliver(sample_job(destination=NAME))


@pytest.mark.parametrize("code", ["AccessDeniedException", "MalformedDetail", "NotAuthorizedForSourceException",
                                  "InvalidArgument"])
def test_other_entry_failures_are_permanent_with_the_reason(client, stubber, code):
    stubber.add_response("put_events", {"FailedEntryCount": 1, "Entries": [
        {"ErrorCode": code, "ErrorMessage": "not allowed on this bus"}]}, {"Entries": ANY})

    with pytest.raises(PermanentDeliveryError) as raised:
        connector(client).deliver(sample_job(destination=NAME))

    assert code in raised.value.message and "not allowed on this bus" in raised.value.message


@pytest.mark.parametrize("code, status, kind", [
    ("InternalException", 500, RetryableDeliveryError),
    ("ThrottlingException", 400, RetryableDeliveryError),
    ("ResourceNotFoundException", 400, PermanentDeliveryError),
    ("AccessDeniedException", 400, PermanentDeliveryError),
])
def test_call_failures_are_classified_by_code(client, stubber, code, status, kind):
    stubber.add_client_error("put_events", service_error_code=code, service_message="no", http_status_code=status)

    with pytest.raises(kind, match=code):
        connector(client).deliver(sample_job(destination=NAME))


def test_an_unreachable_endpoint_is_retryable():
    unreachable = boto3.client("events", region_name=REGION, endpoint_url="http://127.0.0.1:9",
                               aws_access_key_id="testing", aws_secret_access_key="testing",
                               config=Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}))

    with pytest.raises(RetryableDeliveryError, match="EndpointConnectionError"):
        connector(unreachable).deliver(sample_job(destination=NAME))


# --- settings ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, problem", [
    ({}, "event_bus_name"),
    ({"event_bus_name": "bus with spaces"}, "event bus"),
    ({"event_bus_name": BUS, "source": "aws.connect"}, "aws."),
    ({"event_bus_name": BUS, "detail_types": {"contact.created": "x" * 129}}, "detail type"),
    ({"event_bus_name": BUS, "max_entry_bytes": 2 * 1024 * 1024}, "max_entry_bytes"),
    ({"event_bus_name": BUS, "endpoint": "x"}, "endpoint"),
])
def test_settings_refuse_what_eventbridge_would_reject(raw, problem):
    with pytest.raises(ValidationError, match=problem):
        EventBridgeSettings.model_validate(raw)


def test_a_bus_in_another_region_gets_its_own_client(client):
    conn = connector(client, event_bus_name="arn:aws:events:us-east-1:123456789012:event-bus/central")

    assert conn._client().meta.region_name == "us-east-1"
    assert connector(client)._client() is client


# --- outbound messages ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("event_type", "detail_type"), [("message.sent", "Message Sent"),
                                                          ("message.status", "Message Status Changed")])
def test_outbound_message_events_are_entries_with_their_own_detail_types(client, stubber, event_type, detail_type):
    job = outbound_job(NAME, event_type=event_type, status=OutboundStatus.DELIVERED)
    detail = {"delivery_id": job.delivery_id, **contact_event(job)}
    accepted(stubber, {"Source": "omnichannel.hub", "DetailType": detail_type, "EventBusName": BUS,
                       "Detail": json.dumps(detail, ensure_ascii=False, separators=(",", ":"))})

    assert connector(client).deliver(job).external_ref == EVENT_ID
    assert connector(client).takes(event_type)
    assert detail["type"] == event_type and detail["data"]["contact"]["direction"] == "outbound"
    assert detail["data"]["contact"]["status"] == "delivered"
    jsonschema.validate(detail, PUBLISHED_SCHEMA)
