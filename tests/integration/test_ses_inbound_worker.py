"""SES mail stored in S3, through the deployed path: the bucket's ObjectCreated notification lands
on the ses-inbound standard queue (moto sends the real notification bodies), and the app's
`ses_inbound` SQS handler turns it into inbound messages. One notification that cannot be read
never holds back the mail in the others of its batch."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import boto3
import chalice.test
import pytest
from chalice.local import LambdaContext
from chalice.test import Client
from moto import mock_aws

from chalicelib.bootstrap import Hub, use_hub
from chalicelib.domain.models import InboundMessage, UnhandledEvent
from chalicelib.errors import BatchIncompleteError
from chalicelib.settings import Settings
from tests.support.aws import create_table

REGION = "eu-central-1"
PREFIX = "ses-inbound/"
EMAIL = (Path(__file__).parents[1] / "fixtures" / "ses" / "email_umlauts.eml").read_bytes()
BUCKET = "hub-it-bucket"

CONFIG = """
channels:
  ses: {{own_addresses: ["@acme.example"], s3_prefix: "{prefix}"}}
"""
WITHOUT_SES = "channels: {{}}\n"


@pytest.fixture
def deployed(tmp_path, monkeypatch, request):
    monkeypatch.setattr(chalice.test, "LambdaContext", functools.partial(LambdaContext, max_runtime_ms=30_000))
    with mock_aws():
        session = boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
        dynamodb, sqs, s3 = session.client("dynamodb"), session.client("sqs"), session.client("s3")
        create_table(dynamodb, "hub-it")
        inbound = sqs.create_queue(QueueName="hub-it-inbound.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        mail_queue = sqs.create_queue(QueueName="hub-it-ses-inbound", Attributes={"VisibilityTimeout": "180"})["QueueUrl"]
        mail_arn = sqs.get_queue_attributes(QueueUrl=mail_queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={"QueueConfigurations": [{
            "QueueArn": mail_arn, "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": PREFIX}]}},
        }]})  # fmt: skip
        config = tmp_path / "hub.yaml"
        config.write_text(getattr(request, "param", CONFIG).format(prefix=PREFIX))
        settings = Settings(
            runtime="aws", stage="it", config_path=str(config), table_name="hub-it", inbound_queue_url=inbound,
            bucket=BUCKET, data_dir=str(tmp_path), environ={"HUB_SES_INBOUND_QUEUE_URL": mail_queue},
        )
        clients = {"dynamodb": dynamodb, "sqs": sqs, "s3": s3}
        hub = Hub(settings, aws_client=clients.__getitem__)
        use_hub(hub)
        from app import app

        try:
            with Client(app) as client:
                yield client, sqs, s3, {"inbound": inbound, "mail": mail_queue}
        finally:
            use_hub(None)


def mail_event(sqs, url: str) -> dict:
    """Every notification on the ses-inbound queue, as the event source mapping hands them over."""
    records = []
    while answer := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages"):
        records += [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                     "attributes": m["Attributes"], "eventSource": "aws:sqs", "messageAttributes": {}}
                    for m in answer]  # fmt: skip
    return {"Records": records}


def enqueued(sqs, url: str) -> list:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    parsed = [json.loads(m["Body"]) for m in messages]
    return [(UnhandledEvent if p["kind"] == "unhandled" else InboundMessage).model_validate(p) for p in parsed]


def depth(sqs, url: str) -> tuple[int, int]:
    """(visible, in flight) messages."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def invoke(client, sqs, url: str, event: dict) -> None:
    """The event source mapping: run the handler; only on success delete the whole batch."""
    client.lambda_.invoke("ses_inbound", event)
    for record in event["Records"]:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=record["receiptHandle"])


def test_stored_mail_becomes_an_inbound_message_through_the_handler(deployed):
    client, sqs, s3, urls = deployed
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1", Body=EMAIL)

    invoke(client, sqs, urls["mail"], mail_event(sqs, urls["mail"]))

    [message] = enqueued(sqs, urls["inbound"])
    assert (message.provider, message.provider_message_id) == ("ses", "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1")
    assert message.subject == "Rückfrage zu Bestellung #1042 – Lieferadresse ändern"
    assert depth(sqs, urls["mail"]) == (0, 0)


def test_an_unreadable_notification_never_holds_back_the_mail_beside_it(deployed):
    client, sqs, s3, urls = deployed
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "good-mail", Body=EMAIL)
    sqs.send_message(QueueUrl=urls["mail"], MessageBody="not a notification")
    sqs.send_message(QueueUrl=urls["mail"], MessageBody=json.dumps(
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-01-01T00:00:00Z", "Bucket": BUCKET}))
    # Mail in a bucket the worker cannot read: transient, so it must come back alone.
    unreadable = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": "a-bucket-that-is-gone"}, "object": {"key": PREFIX + "lost", "size": 10}}}]}
    sqs.send_message(QueueUrl=urls["mail"], MessageBody=json.dumps(unreadable))
    event = mail_event(sqs, urls["mail"])
    # S3 (and moto) sent its own s3:TestEvent when the notification was configured: five in all.
    assert sum('"s3:TestEvent"' in r["body"] for r in event["Records"]) == 2 and len(event["Records"]) == 5

    with pytest.raises(BatchIncompleteError):
        invoke(client, sqs, urls["mail"], event)

    assert depth(sqs, urls["mail"]) == (0, 1), "only the unreadable bucket's notification returns"
    events = enqueued(sqs, urls["inbound"])
    assert sorted(type(e).__name__ for e in events) == ["InboundMessage", "UnhandledEvent"]
    [kept] = [e for e in events if isinstance(e, UnhandledEvent)]
    assert kept.raw == "not a notification" and "not an S3 event notification" in kept.reason


@pytest.mark.parametrize("deployed", [WITHOUT_SES], indirect=True)
def test_mail_is_not_acknowledged_while_the_ses_channel_is_not_configured(deployed):
    client, sqs, s3, urls = deployed
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "waiting", Body=EMAIL)

    with pytest.raises(BatchIncompleteError):
        invoke(client, sqs, urls["mail"], mail_event(sqs, urls["mail"]))

    # The mail (and S3's test event beside it) waits in the queue, then its DLQ: never dropped.
    assert depth(sqs, urls["mail"]) == (0, 2)
    assert enqueued(sqs, urls["inbound"]) == []


def test_attachment_bytes_of_stored_mail_ride_the_inbound_queue_claim_checked_in_s3(deployed):
    from email.message import EmailMessage

    client, sqs, s3, urls = deployed
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 1600  # 400 KB: over SQS's 256 KB message limit
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "Ana <ana@customer.example>", "support@acme.example", "Rechnung"
    mail["Message-ID"] = "<invoice-1@customer.example>"
    mail.set_content("Anbei die Rechnung.")
    mail.add_attachment(pdf, maintype="application", subtype="pdf", filename="Rechnung-März.pdf")
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "invoicemail0000000000000000000000000001", Body=mail.as_bytes())

    invoke(client, sqs, urls["mail"], mail_event(sqs, urls["mail"]))

    [queued] = sqs.receive_message(QueueUrl=urls["inbound"], MaxNumberOfMessages=10)["Messages"]
    pointer = json.loads(queued["Body"])["$blob"]
    assert pointer.startswith("queue/")
    message = InboundMessage.model_validate_json(s3.get_object(Bucket=BUCKET, Key=pointer)["Body"].read())
    assert [(a.filename, a.size) for a in message.attachments] == [("Rechnung-März.pdf", len(pdf))]
    assert [(c.index, c.data) for c in message.attachment_content] == [(0, pdf)]
