"""A worker dies after the vendor accepted a ticket but before the hub recorded it: the retry,
through the real SQS deliver handler on moto, finds the ticket by the case's external id and
creates no second one; the case's next contact threads into the same ticket."""

from __future__ import annotations

import functools

import boto3
import chalice.test
import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib.bootstrap import Hub, use_hub
from chalicelib.errors import BatchIncompleteError, StoreUnavailableError
from chalicelib.service.process import job_message
from chalicelib.settings import Settings
from tests.integration.test_aws_pipeline import LambdaContext, sqs_event
from tests.support.aws import create_table
from tests.support.fake_zendesk import FakeZendesk
from tests.support.fakes import sample_job

REGION = "eu-central-1"
CONFIG = """
destinations:
  - name: zendesk
    type: zendesk
    base_url: {url}
    auth: {{type: basic, username: agent@example.com/token, password: "env:ZENDESK_TOKEN"}}
    upload_attachments: false
"""


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setattr(chalice.test, "LambdaContext", functools.partial(LambdaContext, max_runtime_ms=60_000))
    with mock_aws(), FakeZendesk() as zendesk:
        session = boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
        dynamodb, sqs = session.client("dynamodb"), session.client("sqs")
        create_table(dynamodb, "hub-crash")
        urls = {role: sqs.create_queue(QueueName=f"hub-crash-{role}.fifo", Attributes={
            "FifoQueue": "true", "VisibilityTimeout": "180"})["QueueUrl"] for role in ("inbound", "delivery", "dlq")}
        config = tmp_path / "hub.yaml"
        config.write_text(CONFIG.format(url=zendesk.url))
        settings = Settings(
            runtime="aws", stage="crash", config_path=str(config), table_name="hub-crash",
            inbound_queue_url=urls["inbound"], delivery_queue_url=urls["delivery"], delivery_dlq_url=urls["dlq"],
            bucket="unused", data_dir=str(tmp_path), environ={"ZENDESK_TOKEN": "zd-token"},
        )
        hub = Hub(settings, aws_client={"dynamodb": dynamodb, "sqs": sqs}.__getitem__)
        use_hub(hub)
        from app import app

        try:
            with Client(app) as client:
                yield client, hub, sqs, urls, zendesk
        finally:
            use_hub(None)


def test_a_crash_after_the_vendor_accepted_creates_no_second_ticket(world):
    client, hub, sqs, urls, zendesk = world
    first = sample_job(destination="zendesk")
    hub.delivery_queue.send([job_message(first)])
    real_put_case_ref = hub.store.put_case_ref
    crashes = []

    def crash_once(case_id, destination, ref):
        if not crashes:
            crashes.append(ref)
            raise StoreUnavailableError("the worker died here")
        real_put_case_ref(case_id, destination, ref)

    hub.store.put_case_ref = crash_once
    event = sqs_event(sqs, urls["delivery"], 1)
    with pytest.raises(BatchIncompleteError):
        client.lambda_.invoke("deliver", event)
    # The visibility timeout runs out: the same message is received again.
    sqs.change_message_visibility(QueueUrl=urls["delivery"], ReceiptHandle=event["Records"][0]["receiptHandle"],
                                  VisibilityTimeout=0)
    retry = sqs_event(sqs, urls["delivery"], 1)
    client.lambda_.invoke("deliver", retry)
    sqs.delete_message(QueueUrl=urls["delivery"], ReceiptHandle=retry["Records"][0]["receiptHandle"])

    assert len(zendesk.tickets) == 1, "the retry found the ticket instead of creating another"
    [ticket] = zendesk.tickets.values()
    assert ticket["external_id"] == first.case.id
    delivery = hub.store.get_delivery(first.contact.id, "zendesk")
    assert (delivery.status, delivery.external_ref) == ("delivered", str(ticket["id"]))

    follow_up = sample_job(destination="zendesk", contact_id="ct_01JD0000000000000000000002",
                           text="Immer noch kein Internet")
    hub.delivery_queue.send([job_message(follow_up)])
    event = sqs_event(sqs, urls["delivery"], 1)
    client.lambda_.invoke("deliver", event)
    sqs.delete_message(QueueUrl=urls["delivery"], ReceiptHandle=event["Records"][0]["receiptHandle"])

    assert len(zendesk.tickets) == 1
    assert [c["body"].splitlines()[2] for c in ticket["comments"]] == [
        "Mein Internet geht seit heute nicht, bitte dringend melden", "Immer noch kein Internet",
    ]
    assert ticket["requester_id"] == zendesk.users[first.customer.id]["id"], "requester by the hub's customer id"


def test_the_same_crash_on_the_embedded_runtime_creates_no_second_ticket(tmp_path):
    """The local queue and SQLite, with the embedded worker's own receive-process-settle cycle."""
    from chalicelib.service.batch import run_batch, settle

    with FakeZendesk() as zendesk:
        config = tmp_path / "hub.yaml"
        config.write_text(CONFIG.format(url=zendesk.url))
        hub = Hub(Settings(config_path=str(config), data_dir=str(tmp_path / "data"),
                           environ={"ZENDESK_TOKEN": "zd-token"}))
        use_hub(hub)
        try:
            job = sample_job(destination="zendesk")
            hub.delivery_queue.send([job_message(job)])
            real_put_case_ref = hub.store.put_case_ref
            hub.store.put_case_ref = lambda *args: (_ for _ in ()).throw(StoreUnavailableError("the worker died"))

            [message] = hub.delivery_queue.receive(max_messages=10, wait_seconds=0)
            crashed = run_batch([message], hub.workers.deliver)
            settle(hub.delivery_queue, crashed)
            hub.store.put_case_ref = real_put_case_ref
            hub.delivery_queue.retry_later(message.receipt, 0)  # its visibility timeout ran out
            again = hub.delivery_queue.receive(max_messages=10, wait_seconds=0)
            settle(hub.delivery_queue, run_batch(again, hub.workers.deliver))

            assert not crashed.complete and len(again) == 1 and again[0].receive_count == 2
            assert len(zendesk.tickets) == 1
            assert hub.store.get_delivery(job.contact.id, "zendesk").status == "delivered"
            assert hub.delivery_queue.depth() == 0
        finally:
            use_hub(None)
            hub.close()
