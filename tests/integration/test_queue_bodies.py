"""Claim-checked queue bodies at the workers, on the local queue and on SQS + S3 under moto: a
redelivery of a handled message is a duplicate, while a copy that is gone before its message was
handled is lost, and reported as such (logged, counted as QueueBodiesLost, left to the DLQ)."""

from __future__ import annotations

import json
import logging
import time
import uuid

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.queue.base import MAX_INLINE_BYTES, OutgoingMessage
from chalicelib.errors import BatchIncompleteError
from chalicelib.observability import Counters
from chalicelib.service.process import ProcessResult
from tests.integration.test_receive_budget import Event, Invocation, workers

REGION = "eu-central-1"


@pytest.fixture(params=["local", "sqs"])
def queues(request, tmp_path):
    """The inbound queue with a blob store and a dead-letter queue after 3 receives, visibility 1 s."""
    if request.param == "local":
        from chalicelib.adapters.blobs.local import LocalBlobStore
        from chalicelib.adapters.queue.local import LocalQueue

        blobs = LocalBlobStore(str(tmp_path / "blobs"))
        path = str(tmp_path / "queue.db")
        yield (LocalQueue(path, "inbound", visibility_timeout=1, max_receives=3, dead_letter="inbound-dlq", blobs=blobs),
               LocalQueue(path, "inbound-dlq"), blobs)
        return
    from chalicelib.adapters.blobs.s3 import S3BlobStore
    from chalicelib.adapters.queue.sqs import SqsQueue

    with mock_aws():
        session = boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
        sqs, s3 = session.client("sqs"), session.client("s3")
        dlq = sqs.create_queue(QueueName="hub-t-inbound-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(QueueName="hub-t-inbound.fifo", Attributes={
            "FifoQueue": "true", "VisibilityTimeout": "1",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 3}),
        })["QueueUrl"]
        s3.create_bucket(Bucket="hub-t-bucket", CreateBucketConfiguration={"LocationConstraint": REGION})
        blobs = S3BlobStore(s3, "hub-t-bucket")
        yield SqsQueue(sqs, url, blobs=blobs), SqsQueue(sqs, dlq), blobs


class Processor:
    def __init__(self) -> None:
        self.bodies: list[str] = []

    def process_body(self, body, *, receive_count=1, seconds_left=None):
        self.bodies.append(body)
        return ProcessResult("contact_created")


def consume(hub, queue) -> bool:
    """One Lambda invocation on what the queue hands out; True when the batch succeeded."""
    messages = queue.receive(max_messages=10)
    assert messages
    try:
        hub.consume("inbound", Event(messages, Invocation(30)))
    except BatchIncompleteError:
        return False
    queue.delete([m.receipt for m in messages])
    return True


def big_body() -> str:
    return json.dumps({"raw": "x" * (MAX_INLINE_BYTES + 1), "n": uuid.uuid4().hex})


def test_a_handled_message_delivered_again_is_a_duplicate(queues):
    queue, _, _ = queues
    processor, counters = Processor(), Counters(emit_emf=False)
    hub = workers(inbound_queue=lambda: queue, processor=lambda: processor, counters=counters)
    body = big_body()
    queue.send([OutgoingMessage(body=body, group="g", dedupe_id="once")])
    [message] = queue.receive()
    # Handled and released, but the acknowledgement is lost: SQS hands the message out again.
    hub.consume("inbound", Event([message], Invocation(30)))
    time.sleep(1.1)

    assert consume(hub, queue)
    assert processor.bodies == [body]
    assert counters.total("ContactsCreated", stage="process") == 1
    assert counters.total("DuplicatesDropped", stage="process") == 1
    assert counters.total("QueueBodiesLost", queue=queue.name) == 0


def test_a_message_whose_copy_is_gone_is_reported_and_ends_in_the_dead_letter_queue(queues, caplog):
    queue, dead_letter, blobs = queues
    processor, counters = Processor(), Counters(emit_emf=False)
    hub = workers(inbound_queue=lambda: queue, processor=lambda: processor, counters=counters)
    queue.send([OutgoingMessage(body=big_body(), group="g", dedupe_id="lost")])
    [message] = queue.receive()
    queue.retry_later(message.receipt, 0)
    blobs.delete(json.loads(message.body)["$blob"])  # expired before the message was handled

    with caplog.at_level(logging.ERROR, logger="chalicelib"):
        assert not consume(hub, queue)
        time.sleep(1.1)
        assert not consume(hub, queue)
        time.sleep(1.1)

    assert processor.bodies == []
    assert counters.total("QueueBodiesLost", queue=queue.name) == 2
    assert counters.total("DuplicatesDropped", stage="process") == 0
    assert any("lost" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    assert queue.receive() == []
    [dead] = dead_letter.receive()
    assert dead.body == message.body  # the pointer, for the operator to investigate
