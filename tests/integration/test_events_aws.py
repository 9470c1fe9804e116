"""Business events on the AWS runtime under moto: `POST /v1/events` → the events FIFO queue, the
EventBridge function → the same queue (or an unhandled item for an event that can never be valid),
and the process_events handler handing each message to the event processor, with the AWS calls
counted. The event processor is another piece (its own tests): a recording fake stands in here."""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter

import boto3
import chalice.test
import pytest
from chalice.local import LambdaContext
from chalice.test import Client
from moto import mock_aws

from chalicelib.bootstrap import Hub, use_hub
from chalicelib.domain.business_events import customer_group, event_queue_dedupe_id
from chalicelib.errors import BatchIncompleteError
from chalicelib.settings import Settings
from tests.support.aws import create_table

REGION = "eu-central-1"
API_KEY = "events-key"
CONFIG = """
identity: {{default_region: DE}}
api_keys:
  - name: shop
    sha256: {key}
    scopes: [events:write, operations]
"""


class Recorded:
    def __init__(self, clients) -> None:
        self.names: list[str] = []
        for client in clients:
            client.meta.events.register("before-call.*.*", lambda model, **_: self.names.append(model.name))

    def take(self) -> Counter:
        taken, self.names = Counter(self.names), []
        return taken


class RecordingProcessor:
    def __init__(self, fail_on: str | None = None) -> None:
        self.bodies: list[dict] = []
        self.fail_on = fail_on

    def process_body(self, body: str, *, receive_count: int) -> str:
        work = json.loads(body)
        if work["event"]["id"] == self.fail_on:
            raise RuntimeError("the processor failed on this one")
        self.bodies.append(work)
        return "event_processed"


@pytest.fixture
def deployed(tmp_path, monkeypatch):
    monkeypatch.setattr(chalice.test, "LambdaContext", functools.partial(LambdaContext, max_runtime_ms=60_000))
    with mock_aws():
        session = boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
        dynamodb, sqs, s3 = session.client("dynamodb"), session.client("sqs"), session.client("s3")
        create_table(dynamodb, "hub-it")
        dlq = sqs.create_queue(QueueName="hub-it-events-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(QueueName="hub-it-events.fifo", Attributes={
            "FifoQueue": "true", "VisibilityTimeout": "360", "DeduplicationScope": "messageGroup",
            "FifoThroughputLimit": "perMessageGroupId",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 11})})["QueueUrl"]
        s3.create_bucket(Bucket="hub-it-bucket", CreateBucketConfiguration={"LocationConstraint": REGION})
        config = tmp_path / "hub.yaml"
        config.write_text(CONFIG.format(key=hashlib.sha256(API_KEY.encode()).hexdigest()))
        settings = Settings(runtime="aws", stage="it", config_path=str(config), table_name="hub-it",
                            events_queue_url=url, events_dlq_url=dlq, bucket="hub-it-bucket", data_dir=str(tmp_path))
        clients = {"dynamodb": dynamodb, "sqs": sqs, "s3": s3}
        hub = Hub(settings, aws_client=clients.__getitem__)
        use_hub(hub)
        from app import app

        try:
            with Client(app) as client:
                yield client, hub, sqs, url, Recorded(clients.values())
        finally:
            use_hub(None)


def post(client, body, *, query: str = ""):
    return client.http.post("/v1/events" + query, body=json.dumps(body),
                            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})


def event(id_: str, **changes) -> dict:
    return {"type": "parcel.late", "id": id_, "occurred_at": "2026-01-02T10:00:00Z",
            "customer": {"customer_id": f"cus_{id_}"}, "data": {"delay_hours": 30}, **changes}


def drain(sqs, url: str) -> list[dict]:
    messages = []
    while answer := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages"):
        messages += answer
        for message in answer:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return messages


def sqs_event(sqs, url: str) -> dict:
    answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    return {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                         "attributes": m["Attributes"], "eventSource": "aws:sqs", "messageAttributes": {}}
                        for m in answer]}


def test_an_accepted_batch_is_one_call_per_ten_events_on_the_fifo_queue(deployed):
    client, hub, sqs, url, recorded = deployed
    batch = [event(f"e{i}") for i in range(25)]

    answer = post(client, batch)

    assert answer.status_code == 202, answer.body
    assert recorded.take() == Counter({"SendMessageBatch": 3})  # no store read: duplicates are the worker's
    messages = drain(sqs, url)
    assert sorted(json.loads(m["Body"])["event"]["id"] for m in messages) == sorted(e["id"] for e in batch)
    first = next(m for m in messages if json.loads(m["Body"])["event"]["id"] == "e0")
    assert first["Attributes"]["MessageGroupId"] == customer_group("cus_e0")
    assert first["Attributes"]["MessageDeduplicationId"] == event_queue_dedupe_id("e0")
    assert json.loads(first["Body"])["event"]["source"] == "api:shop"


def test_checking_duplicates_costs_one_read_per_event(deployed):
    client, hub, sqs, url, recorded = deployed

    answer = post(client, [event("a"), event("b")], query="?check_duplicates=true")

    assert [item["status"] for item in json.loads(answer.body)["data"]] == ["queued", "queued"]
    counts = recorded.take()
    assert counts["SendMessageBatch"] == 1
    assert counts["BatchGetItem"] + counts["GetItem"] == 2


def test_an_invalid_batch_makes_no_aws_call(deployed):
    client, hub, sqs, url, recorded = deployed

    answer = post(client, [event("ok"), event("bad", occurred_at="yesterday")])

    assert answer.status_code == 400
    assert list(json.loads(answer.body)["error"]["detail"]["fields"]) == ["events[1].occurred_at"]
    assert recorded.take() == Counter()


def test_eventbridge_events_are_mapped_and_queued_and_invalid_ones_kept_as_unhandled(deployed):
    client, hub, sqs, url, recorded = deployed
    envelope = {"version": "0", "id": "eb-1", "detail-type": "Outage Started", "source": "noc.monitoring",
                "account": "123456789012", "time": "2026-01-02T10:00:00Z", "region": REGION, "resources": [],
                "detail": {"region": "Berlin", "postcodes": ["10115"]}}
    own_fields = {**envelope, "id": "eb-2", "detail": {"type": "parcel.late", "id": "shop:parcel-9",
                                                       "customer": {"identifier": "phone:0151 23456789"},
                                                       "data": {"delay_hours": 26}}}
    invalid = {**envelope, "id": "eb-3", "detail": {"customer": {"identifier": "phone:+49", "customer_id": "c"}}}

    results = [client.lambda_.invoke("eventbridge_events", e).payload for e in (envelope, own_fields, invalid)]

    assert results == [{"status": "queued"}, {"status": "queued"}, {"status": "rejected"}]
    counts = recorded.take()
    assert counts["SendMessage"] + counts["SendMessageBatch"] == 2
    assert counts["PutItem"] == 1  # the refused event, for GET /v1/unhandled-events
    broadcast, addressed = (json.loads(m["Body"])["event"] for m in drain(sqs, url))
    assert broadcast == {"type": "outage_started", "id": "eb-1", "occurred_at": "2026-01-02T10:00:00Z",
                         "customer": None, "data": {"region": "Berlin", "postcodes": ["10115"]},
                         "source": "eventbridge:noc.monitoring", "received_at": broadcast["received_at"]}
    assert (addressed["type"], addressed["id"], addressed["data"]) == ("parcel.late", "shop:parcel-9",
                                                                      {"delay_hours": 26})
    [kept] = hub.operations.unhandled(day=hub.operations.today(), provider="events", limit=10)[0]
    assert kept["reason"].startswith("eventbridge:noc.monitoring: ")
    assert kept["raw"]["envelope"]["id"] == "eb-3"
    assert hub.counters.total("EventsRejected", stage="events") == 1


def test_the_eventbridge_function_raises_when_the_queue_is_down_so_eventbridge_retries(deployed):
    client, hub, sqs, url, recorded = deployed
    sqs.delete_queue(QueueUrl=url)
    envelope = {"id": "eb-9", "detail-type": "parcel.late", "source": "shop", "time": "2026-01-02T10:00:00Z",
                "detail": {"customer": {"customer_id": "cus_1"}}}

    with pytest.raises(Exception) as raised:
        client.lambda_.invoke("eventbridge_events", envelope)

    assert type(raised.value).__name__ == "QueueUnavailableError"


def test_process_events_hands_each_message_to_the_processor_and_returns_only_the_failed(deployed):
    client, hub, sqs, url, recorded = deployed
    post(client, [event("one"), event("two"), event("three")])
    hub.event_processor = RecordingProcessor(fail_on="two")
    records = sqs_event(sqs, url)

    with pytest.raises(BatchIncompleteError):
        client.lambda_.invoke("process_events", records)

    assert [work["event"]["id"] for work in hub.event_processor.bodies] == ["one", "three"]
    # The finished ones are deleted; the failed one waits out its visibility timeout for a retry.
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == ("0", "1")


def test_the_timers_function_puts_a_fired_timer_on_the_events_queue_in_the_customers_group(deployed):
    """What EventBridge Scheduler invokes it with: the armed timer, as the schedule's input."""
    from datetime import UTC, datetime

    from chalicelib.service.case_timers import case_timers

    client, hub, sqs, url, recorded = deployed
    [timer] = case_timers("case_1", "cus_1", {"sla": datetime(2026, 1, 2, 12, 0, tzinfo=UTC)})

    client.lambda_.invoke("timers", json.loads(timer.model_dump_json()))

    [message] = drain(sqs, url)
    assert json.loads(message["Body"]) == json.loads(timer.payload)
    assert json.loads(message["Body"])["kind"] == "timer"
    assert message["Attributes"]["MessageGroupId"] == customer_group("cus_1")
    with pytest.raises(Exception) as raised:
        client.lambda_.invoke("timers", {"name": "x"})
    assert type(raised.value).__name__ == "MalformedPayloadError"
