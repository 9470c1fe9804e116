"""The outbound path on the AWS runtime under moto: `POST /v1/messages` through the Chalice route
queues a message on the SQS FIFO outbound queue, the send worker consumes it through
`workers.consume("outbound", event)` as the `send` Lambda does, the provider (the web chat's
outbox, or Twilio played by a local HTTP receiver) gets it, and DynamoDB records it as sent.

Every AWS call the hub's own clients make is counted per side (tests/integration/conftest.py's
`CallLog`, the `before-call` hook bench/aws_calls.py also counts with). Issue 12's targets:
the API at most 2 calls per send, the worker at most 4 plus the provider call. Measured:

| step                                   | calls                                                        |
|----------------------------------------|--------------------------------------------------------------|
| API, `to.case_id`                      | 4: Query (case), GetItem (customer), TransactWriteItems (contact, timeline copy), SendMessageBatch |
| API, with an Idempotency-Key           | 5: the same + PutItem (the key, remembered for 24 h)         |
| API, the same Idempotency-Key again    | 2: PutItem (the key is taken), Query (the message it named); nothing queued |
| worker, Twilio (provider over HTTP)    | 2: Query (contact), TransactWriteItems (record_sent + SENT# link) |
| worker, web chat                       | 2 + the provider's 2 (the outbox: GetItem, PutItem)          |
| worker, the same message redelivered   | 1: Query (the contact says sent), no provider call           |
| widget polling its replies             | 1: GetItem (the outbox)                                      |

No destination takes message events here: each that does adds a GetItem (customer), a Query
(case) and one SendMessageBatch to the worker. The worker meets its target; the API spends 4
calls where the issue aims at 2 (`test_the_api_cost_per_send_is_measured_against_the_issue_target`
says where they go).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

import boto3
import chalice.test
import pytest
from chalice.app import SQSEvent
from chalice.local import LambdaContext
from chalice.test import Client
from moto import mock_aws
from twilio.request_validator import RequestValidator

from chalicelib.bootstrap import Hub, use_hub
from chalicelib.settings import Settings
from tests.integration.conftest import CallLog
from tests.support.aws import create_table
from tests.support.receiver import Answer, Receiver

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-central-1"
API_KEY = "send-worker-key"
TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"
TWILIO_CREATED = (ROOT / "tests" / "fixtures" / "twilio" / "outbound" / "api_created.body").read_bytes()

CONFIG = """
channels:
  webchat:
    sites: [{{id: shop}}]
  twilio:
    auth_tokens: ["env:TWILIO_AUTH_TOKEN"]
    public_url: https://hub.example.com/webhooks/twilio
    account_sid: AC{account_hex}
    numbers: {{sms: ["+14155550100"]}}
    api_base_url: {provider}
media:
  link_secret: ["env:LINK_SECRET"]
api_keys:
  - name: agents
    sha256: {key}
    scopes: [customers:read, messages:send]
"""

#: Issue 12's targets (the worker's excludes the provider call).
API_TARGET, WORKER_TARGET = 2, 4
#: What this hub spends today per API send (the table of the module docstring).
API_MEASURED = 4


@pytest.fixture
def outbound(tmp_path, monkeypatch):
    # The deployed send function has 60 s (.chalice/config.json); the worker's time budget reads it.
    monkeypatch.setattr(chalice.test, "LambdaContext", functools.partial(LambdaContext, max_runtime_ms=60_000))
    with mock_aws(), Receiver() as provider:
        session = boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
        # Setup and inspection go through this client; the hub's are watched.
        sqs = session.client("sqs")
        create_table(session.client("dynamodb"), "hub-it")
        urls = {}
        for role in ("inbound", "delivery", "outbound"):
            dlq = sqs.create_queue(QueueName=f"hub-it-{role}-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            # As infra/stateful.yaml makes the outbound queue: high-throughput FIFO, 360 s, 11 receives.
            urls[role] = sqs.create_queue(QueueName=f"hub-it-{role}.fifo", Attributes={
                "FifoQueue": "true", "DeduplicationScope": "messageGroup", "FifoThroughputLimit": "perMessageGroupId",
                "VisibilityTimeout": "360", "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 11}),
            })["QueueUrl"]
            urls[f"{role}-dlq"] = dlq
        session.client("s3").create_bucket(Bucket="hub-it-bucket", CreateBucketConfiguration={"LocationConstraint": REGION})
        config = tmp_path / "hub.yaml"
        config.write_text(CONFIG.format(key=hashlib.sha256(API_KEY.encode()).hexdigest(), account_hex="a" * 32,
                                        provider=provider.url.rsplit("/", 1)[0]))
        settings = Settings(
            runtime="aws", stage="it", config_path=str(config), table_name="hub-it",
            inbound_queue_url=urls["inbound"], delivery_queue_url=urls["delivery"], delivery_dlq_url=urls["delivery-dlq"],
            outbound_queue_url=urls["outbound"], outbound_dlq_url=urls["outbound-dlq"], bucket="hub-it-bucket",
            data_dir=str(tmp_path), environ={"TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "LINK_SECRET": "l" * 32},
        )
        log = CallLog()
        clients = {service: log.watch(session.client(service)) for service in ("dynamodb", "sqs", "s3")}
        hub = Hub(settings, aws_client=clients.__getitem__)
        use_hub(hub)
        from app import app

        try:
            with Client(app) as client:
                yield client, hub, sqs, urls, provider, log
        finally:
            use_hub(None)


def lambda_event(sqs, url: str) -> SQSEvent:
    """What the event source mapping hands the `send` Lambda: one message (batch size 1)."""
    [message] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, AttributeNames=["All"])["Messages"]
    records = [{"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"], "body": message["Body"],
                "attributes": message["Attributes"], "eventSource": "aws:sqs", "messageAttributes": {}}]
    return SQSEvent({"Records": records}, LambdaContext("send", "$LATEST", max_runtime_ms=60_000))


def consume(hub: Hub, sqs, url: str) -> SQSEvent:
    """The Lambda: the handler on the event; the mapping deletes the batch when it returned."""
    event = lambda_event(sqs, url)
    hub.workers.consume("outbound", event)
    for record in event:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=record.receipt_handle)
    return event


def depth(sqs, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def api(client, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json", **(headers or {})}
    return getattr(client.http, method.lower())(path, headers=headers, body=json.dumps(body) if body is not None else None)


def visitor_writes(client, hub, sqs, urls) -> tuple[str, str]:
    """A web chat visitor's first message, processed: (the visitor token, the contact's case id)."""
    body = json.dumps({"site_id": "shop", "visitor_id": "v-1", "message_id": "m-1", "text": "Wo bleibt mein Paket?"})
    answer = client.http.post("/webhooks/webchat", headers={"Content-Type": "application/json"}, body=body)
    assert answer.status_code == 202, answer.body
    client.lambda_.invoke("process_inbound", lambda_event(sqs, urls["inbound"]).to_dict())
    [customer] = json.loads(api(client, "GET", "/v1/customers?identifier=webchat:shop/v-1").body)["data"]
    [contact] = json.loads(api(client, "GET", f"/v1/customers/{customer['id']}/contacts").body)["data"]
    return json.loads(answer.body)["visitor_token"], contact["case_id"]


def sms_arrives(client, hub, sqs, urls) -> str:
    """An SMS from +14155550101 to the hub's number, processed: its case id."""
    params = {"MessageSid": "SM" + "c" * 32, "AccountSid": "AC" + "a" * 32, "From": "+14155550101",
              "To": "+14155550100", "Body": "Hallo", "NumMedia": "0"}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature("https://hub.example.com/webhooks/twilio", params)
    answer = client.http.post("/webhooks/twilio", body=urlencode(params).encode(), headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})
    assert answer.status_code == 200, answer.body
    client.lambda_.invoke("process_inbound", lambda_event(sqs, urls["inbound"]).to_dict())
    [customer] = json.loads(api(client, "GET", "/v1/customers?identifier=phone:%2B14155550101").body)["data"]
    [contact] = json.loads(api(client, "GET", f"/v1/customers/{customer['id']}/contacts").body)["data"]
    return contact["case_id"]


def test_a_web_chat_reply_is_queued_sent_by_the_worker_and_fetched_by_the_widget(outbound):
    client, hub, sqs, urls, _, calls = outbound
    token, case_id = visitor_writes(client, hub, sqs, urls)

    calls.clear()
    sent = api(client, "POST", "/v1/messages", {"to": {"case_id": case_id}, "text": "Ihr Paket kommt morgen."},
               {"Idempotency-Key": "reply-1"})
    api_calls = calls.counts()
    assert sent.status_code == 202, sent.body
    message = json.loads(sent.body)["data"]
    assert (message["status"], message["channel"], message["provider"], message["to"]) == ("queued", "webchat",
                                                                                             "webchat", "v-1")
    assert depth(sqs, urls["outbound"]) == 1

    calls.clear()
    event = consume(hub, sqs, urls["outbound"])
    worker_calls = calls.counts()

    assert depth(sqs, urls["outbound"]) == depth(sqs, urls["outbound-dlq"]) == 0
    contact = json.loads(api(client, "GET", f"/v1/contacts/{message['id']}").body)
    assert (contact["direction"], contact["status"]) == ("outbound", "delivered")
    assert [change["status"] for change in contact["status_history"]] == ["queued", "sent", "delivered"]
    # The web chat's provider call is the outbox's read and write.
    assert worker_calls == Counter({"Query": 1, "TransactWriteItems": 1, "GetItem": 1, "PutItem": 1}), worker_calls
    assert api_calls == Counter({"PutItem": 1, "Query": 1, "GetItem": 1, "TransactWriteItems": 1,
                                 "SendMessageBatch": 1}), api_calls

    calls.clear()
    polled = client.http.get("/webhooks/webchat/messages?site_id=shop&visitor_id=v-1",
                             headers={"Authorization": f"Bearer {token}"})
    assert [m["text"] for m in json.loads(polled.body)["data"]] == ["Ihr Paket kommt morgen."]
    assert calls.counts() == Counter({"GetItem": 1}), "polling is one key lookup"

    # SQS delivers at least once: the same message again is acknowledged from the contact alone.
    calls.clear()
    hub.workers.consume("outbound", event)
    assert calls.counts() == Counter({"Query": 1})
    assert len(json.loads(client.http.get("/webhooks/webchat/messages?site_id=shop&visitor_id=v-1",
                                          headers={"Authorization": f"Bearer {token}"}).body)["data"]) == 1


def test_an_sms_reply_reaches_the_provider_once_within_the_call_budget(outbound):
    client, hub, sqs, urls, provider, calls = outbound
    case_id = sms_arrives(client, hub, sqs, urls)
    provider.script = [Answer(201, TWILIO_CREATED, {"Content-Type": "application/json"})]

    calls.clear()
    sent = api(client, "POST", "/v1/messages", {"to": {"case_id": case_id}, "text": "Ihr Paket kommt morgen."})
    api_calls = calls.counts()
    message = json.loads(sent.body)["data"]
    calls.clear()
    consume(hub, sqs, urls["outbound"])
    worker_calls = calls.counts()

    [request] = provider.requests
    assert request.path.endswith(f"/2010-04-01/Accounts/AC{'a' * 32}/Messages.json")
    contact = json.loads(api(client, "GET", f"/v1/contacts/{message['id']}").body)
    assert (contact["status"], contact["provider_message_id"]) == ("sent", json.loads(TWILIO_CREATED)["sid"])
    # record_sent writes the contact, its timeline copy and the SENT# link in one transaction.
    assert worker_calls == Counter({"Query": 1, "TransactWriteItems": 1}), worker_calls
    assert sum(worker_calls.values()) <= WORKER_TARGET
    assert api_calls == Counter({"Query": 1, "GetItem": 1, "TransactWriteItems": 1, "SendMessageBatch": 1}), api_calls


def test_an_idempotent_retry_of_the_api_queues_nothing_again(outbound):
    client, hub, sqs, urls, _, calls = outbound
    _, case_id = visitor_writes(client, hub, sqs, urls)
    body = {"to": {"case_id": case_id}, "text": "Nur einmal."}
    first = api(client, "POST", "/v1/messages", body, {"Idempotency-Key": "once"})

    calls.clear()
    again = api(client, "POST", "/v1/messages", body, {"Idempotency-Key": "once"})

    assert (first.status_code, again.status_code) == (202, 200)
    assert json.loads(again.body)["data"]["id"] == json.loads(first.body)["data"]["id"]
    # The first message is still queued, so the repeat queues it again (the first call may have
    # stopped between its record and the queue): FIFO deduplication on its id keeps one copy.
    assert depth(sqs, urls["outbound"]) == 1
    assert calls.counts() == Counter({"PutItem": 1, "Query": 1, "SendMessageBatch": 1}), calls.counts()


def test_an_idempotent_retry_of_a_sent_message_costs_two_calls_and_queues_nothing(outbound):
    client, hub, sqs, urls, _, calls = outbound
    _, case_id = visitor_writes(client, hub, sqs, urls)
    body = {"to": {"case_id": case_id}, "text": "Schon gesendet."}
    first = json.loads(api(client, "POST", "/v1/messages", body, {"Idempotency-Key": "sent-once"}).body)["data"]
    queued = hub.store.get_contact(first["id"]).raw["outbound"]
    assert hub.send_worker.send_body(json.dumps(queued), receive_count=1) == ("sent", queued["provider"])

    calls.clear()
    again = api(client, "POST", "/v1/messages", body, {"Idempotency-Key": "sent-once"})

    assert again.status_code == 200 and json.loads(again.body)["data"]["status"] == "delivered"
    assert calls.counts() == Counter({"PutItem": 1, "Query": 1}), calls.counts()


def test_the_api_cost_per_send_is_measured_against_the_issue_target(outbound):
    """The issue aims at 2 AWS calls per API send; the hub spends API_MEASURED: the addressee
    (case, then customer: 2 reads), the outbound contact with its timeline copy (1 transaction)
    and the queue (1 send). Reaching 2 would need the case and customer in one read and the
    send folded into the write (an outbox the worker drains): a design change, not a tuning.
    This test pins today's figure so that a regression (or an improvement) shows."""
    client, hub, sqs, urls, _, calls = outbound
    _, case_id = visitor_writes(client, hub, sqs, urls)

    calls.clear()
    assert api(client, "POST", "/v1/messages", {"to": {"case_id": case_id}, "text": "Hallo"}).status_code == 202

    assert sum(calls.counts().values()) == API_MEASURED > API_TARGET
