"""SqsQueue under moto: the wire parameters (FIFO group and dedupe ids, receive attributes), call
counts (PERFORMANCE A1), and every botocore failure surfacing as QueueUnavailableError.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError, ParamValidationError

from chalicelib.adapters.blobs.s3 import S3BlobStore
from chalicelib.adapters.queue.base import MAX_INLINE_BYTES, OutgoingMessage
from chalicelib.adapters.queue.sqs import DEFAULT_GROUP, SqsQueue
from chalicelib.errors import QueueUnavailableError


@pytest.fixture
def sqs(aws, calls):
    return calls.watch(aws.client("sqs"))


@pytest.fixture
def fifo_url(aws, unique):
    client = aws.client("sqs")
    url = client.create_queue(QueueName=f"{unique('hub-it')}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    yield url
    client.delete_queue(QueueUrl=url)


@pytest.fixture
def standard_url(aws, unique):
    client = aws.client("sqs")
    url = client.create_queue(QueueName=unique("hub-it"))["QueueUrl"]
    yield url
    client.delete_queue(QueueUrl=url)


def sent_entries(calls) -> list[dict]:
    return [entry for request in calls.of("SendMessageBatch") for entry in request["Entries"]]


def test_an_accepted_webhook_costs_one_send(sqs, fifo_url, calls):
    """PERFORMANCE A1: ingest enqueues one message with exactly one AWS call."""
    SqsQueue(sqs, fifo_url).send([OutgoingMessage(body="{}", group="twilio:+1555:ada", dedupe_id="msg:twilio:SM1")])
    assert calls.names == ["SendMessageBatch"]


def test_fifo_messages_carry_group_and_dedupe_ids(sqs, fifo_url, calls):
    queue = SqsQueue(sqs, fifo_url)
    queue.send([
        OutgoingMessage(body="a", group="twilio:+15550001111:phone:/+4915112345678", dedupe_id="msg:twilio:SM1"),
        OutgoingMessage(body="b"),
    ])
    first, second = sent_entries(calls)
    assert first["MessageGroupId"] == "twilio:+15550001111:phone:/+4915112345678"
    assert first["MessageDeduplicationId"] == "msg:twilio:SM1"
    assert second["MessageGroupId"] == DEFAULT_GROUP
    assert second["MessageDeduplicationId"] == hashlib.sha256(b"b").hexdigest()
    assert queue.fifo is True
    assert queue.name == fifo_url.rsplit("/", 1)[-1]


def test_ids_sqs_would_reject_are_replaced_by_their_stable_hash(sqs, fifo_url, calls):
    group = "webchat:site one/visitor é"  # a space and a non-ASCII character
    long_dedupe = "x" * 200
    queue = SqsQueue(sqs, fifo_url)
    queue.send([OutgoingMessage(body="a", group=group, dedupe_id=long_dedupe)])
    [entry] = sent_entries(calls)
    assert entry["MessageGroupId"] == hashlib.sha256(group.encode()).hexdigest()
    assert entry["MessageDeduplicationId"] == hashlib.sha256(long_dedupe.encode()).hexdigest()
    [message] = queue.receive()
    assert message.group == entry["MessageGroupId"]


def test_standard_queues_get_neither_group_nor_dedupe_id(sqs, standard_url, calls):
    queue = SqsQueue(sqs, standard_url)
    queue.send([OutgoingMessage(body="a", group="g", dedupe_id="d")])
    [entry] = sent_entries(calls)
    assert set(entry) == {"Id", "MessageBody"}
    assert queue.fifo is False
    [message] = queue.receive()
    assert message.body == "a"


def test_sends_batch_by_ten_and_receives_with_attributes(sqs, fifo_url, calls):
    queue = SqsQueue(sqs, fifo_url)
    queue.send([OutgoingMessage(body=f"m{i}", group="g", dedupe_id=f"m{i}") for i in range(25)])
    assert calls.names == ["SendMessageBatch"] * 3
    assert [len(r["Entries"]) for r in calls.of("SendMessageBatch")] == [10, 10, 5]
    calls.clear()
    received = queue.receive(max_messages=50, wait_seconds=0.5)
    [request] = calls.of("ReceiveMessage")
    assert request["MaxNumberOfMessages"] == 10
    assert request["WaitTimeSeconds"] == 1  # SQS waits in whole seconds: rounded up
    assert set(request["AttributeNames"]) == {"ApproximateReceiveCount", "MessageGroupId"}
    assert [m.body for m in received] == [f"m{i}" for i in range(10)]
    assert {(m.group, m.receive_count) for m in received} == {("g", 1)}
    calls.clear()
    queue.delete([m.receipt for m in received])
    assert calls.names == ["DeleteMessageBatch"]


def test_retry_later_changes_the_visibility(sqs, fifo_url, calls):
    queue = SqsQueue(sqs, fifo_url)
    queue.send([OutgoingMessage(body="a", group="g", dedupe_id="a")])
    [message] = queue.receive()
    calls.clear()
    queue.retry_later(message.receipt, 90.7)
    assert calls.names == ["ChangeMessageVisibility"]
    assert calls.of("ChangeMessageVisibility")[0]["VisibilityTimeout"] == 90


def test_claim_checked_bodies_travel_as_a_small_pointer(aws, sqs, fifo_url, calls, unique):
    s3 = aws.client("s3")
    bucket = unique("hub-it")
    s3.create_bucket(Bucket=bucket)
    queue = SqsQueue(sqs, fifo_url, blobs=S3BlobStore(s3, bucket))
    body = json.dumps({"raw": "x" * MAX_INLINE_BYTES})
    queue.send([OutgoingMessage(body=body, group="g", dedupe_id="big")])
    [entry] = sent_entries(calls)
    assert len(entry["MessageBody"]) < 200
    key = json.loads(entry["MessageBody"])["$blob"]
    assert s3.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"
    assert queue.resolve_body(queue.receive()[0].body) == body


# --- failures ------------------------------------------------------------------------------------


def test_failed_entries_raise_naming_the_count(sqs, fifo_url):
    def fail_one(parsed, **_):
        done = parsed.pop("Successful")
        parsed["Successful"] = done[:1]
        parsed["Failed"] = [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError"} for e in done[1:]]

    sqs.meta.events.register("after-call.sqs.SendMessageBatch", fail_one)
    with pytest.raises(QueueUnavailableError, match="2 of 3 messages failed") as raised:
        SqsQueue(sqs, fifo_url).send([OutgoingMessage(body=f"m{i}", group="g", dedupe_id=f"m{i}") for i in range(3)])
    assert "InternalError" in str(raised.value)


def test_a_delete_with_a_stale_receipt_raises(sqs, fifo_url):
    def fail_all(parsed, **_):
        parsed["Failed"] = [{"Id": "0", "SenderFault": True, "Code": "ReceiptHandleIsInvalid"}]
        parsed["Successful"] = []

    sqs.meta.events.register("after-call.sqs.DeleteMessageBatch", fail_all)
    with pytest.raises(QueueUnavailableError, match="1 of 1 deletes failed"):
        SqsQueue(sqs, fifo_url).delete(["stale-receipt"])


def test_a_missing_queue_is_queue_unavailable(sqs, calls):
    queue = SqsQueue(sqs, "https://sqs.us-east-1.amazonaws.com/123456789012/hub-it-missing.fifo")
    for operation in (lambda: queue.send([OutgoingMessage(body="a")]), queue.receive,
                      lambda: queue.delete(["r"]), lambda: queue.retry_later("r", 5)):
        with pytest.raises(QueueUnavailableError):
            operation()
    assert calls.names == ["SendMessageBatch", "ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibility"]


def test_a_connection_failure_is_queue_unavailable(aws, fifo_url):
    client = aws.client("sqs", config=Config(retries={"total_max_attempts": 1}))

    def unreachable(**_):
        raise EndpointConnectionError(endpoint_url="https://sqs.us-east-1.amazonaws.com")

    client.meta.events.register("before-send.sqs", unreachable)
    with pytest.raises(QueueUnavailableError) as raised:
        SqsQueue(client, fifo_url).send([OutgoingMessage(body="a", group="g")])
    assert isinstance(raised.value.__cause__, EndpointConnectionError)


def test_a_botocore_validation_error_is_queue_unavailable(sqs, fifo_url, calls):
    with pytest.raises(QueueUnavailableError) as raised:
        SqsQueue(sqs, fifo_url).retry_later(None, 5)  # type: ignore[arg-type]  # a lost receipt
    assert isinstance(raised.value.__cause__, ParamValidationError)
    assert calls.names == []


def test_depth_counts_waiting_and_in_flight_messages_in_one_call(sqs, fifo_url, calls):
    """`GET /v1/status` on AWS: the queue's depth, as the local queue counts it (waiting and in flight)."""
    queue = SqsQueue(sqs, fifo_url)
    queue.send([OutgoingMessage(body=str(i), group=f"g{i}", dedupe_id=f"d{i}") for i in range(3)])
    assert queue.depth() == 3
    assert len(queue.receive(max_messages=1, wait_seconds=0)) == 1
    calls.clear()
    assert queue.depth() == 3  # one received (in flight) still counts until it is deleted
    assert calls.names == ["GetQueueAttributes"]


def test_depth_of_a_missing_queue_is_queue_unavailable(aws):
    queue = SqsQueue(aws.client("sqs"), "https://sqs.eu-central-1.amazonaws.com/123456789012/hub-missing.fifo")
    with pytest.raises(QueueUnavailableError, match="depth"):
        queue.depth()
