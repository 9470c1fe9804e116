"""The AWS runtime end to end under moto: Chalice route → SQS FIFO → process handler → DynamoDB →
delivery queue → deliver handler → signed webhook. AWS calls are counted with a botocore hook
(PERFORMANCE.md A1-A3), and a poison message must not make its batch-mates redo their work."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from urllib.parse import urlencode

import functools

import boto3
import chalice.test
import pytest
from chalice.local import LambdaContext
import time_machine
from chalice.test import Client
from moto import mock_aws
from standardwebhooks import Webhook
from twilio.request_validator import RequestValidator

from chalicelib.bootstrap import Hub, use_hub
from chalicelib.errors import BatchIncompleteError
from chalicelib.settings import Settings
from tests.support.aws import create_table
from tests.support.fixtures import load
from tests.support.receiver import Receiver

REGION = "eu-central-1"
TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
API_KEY = "integration-key"

CONFIG = """
channels:
  twilio:
    auth_tokens: ["env:TWILIO_AUTH_TOKEN"]
    public_url: https://hub.example.com/webhooks/twilio
  meta:
    app_secrets: ["env:META_APP_SECRET"]
    verify_tokens: ["env:META_VERIFY_TOKEN"]
destinations:
  - name: crm
    type: webhook
    url: {url}
    secrets: ["env:CRM_WEBHOOK_SECRET"]
    case_events: false   # these tests count contact deliveries; test_callbacks_aws.py covers case events
delivery: {{attempts_per_invocation: 4, max_inline_wait_seconds: 1, circuit_failure_threshold: 4,
           circuit_cooldown_seconds: 1, circuit_max_cooldown_seconds: 2}}
routing:
  rules:
    - {{name: urgent-words, when: {{text: {{contains: [urgent, dringend]}}}}, then: {{priority: urgent, tags: [urgent]}}}}
    - {{name: hold-refunds, when: {{intent: refund}}, then: {{park: refund requests are checked first}}}}
api_keys:
  - name: it
    sha256: {key}
    scopes: [customers:read, customers:write, customers:erase, operations, messages:send]
"""


class AwsCalls:
    def __init__(self, session_clients):
        self.calls: list[str] = []
        for client in session_clients:
            client.meta.events.register("before-call.*.*", self._record)

    def _record(self, model, **_):
        self.calls.append(model.name)

    def take(self) -> Counter:
        taken, self.calls = Counter(self.calls), []
        return taken


@pytest.fixture
def aws(tmp_path, monkeypatch):
    # Chalice's test client gives every invocation 3 s; the deployed functions have 30 s / 60 s
    # (.chalice/config.json), which the workers' time budget relies on.
    monkeypatch.setattr(chalice.test, "LambdaContext", functools.partial(LambdaContext, max_runtime_ms=60_000))
    with mock_aws(), Receiver() as receiver:
        session = boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
        dynamodb, sqs, s3 = session.client("dynamodb"), session.client("sqs"), session.client("s3")
        create_table(dynamodb, "hub-it")
        urls = {}
        for role, receives in (("inbound", 5), ("delivery", 8)):
            dlq = sqs.create_queue(QueueName=f"hub-it-{role}-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            urls[role] = sqs.create_queue(
                QueueName=f"hub-it-{role}.fifo",
                Attributes={"FifoQueue": "true", "VisibilityTimeout": "180",
                            "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": receives})},
            )["QueueUrl"]
            urls[f"{role}-dlq"] = dlq
        s3.create_bucket(Bucket="hub-it-bucket", CreateBucketConfiguration={"LocationConstraint": REGION})
        config = tmp_path / "hub.yaml"
        config.write_text(CONFIG.format(url=receiver.url, key=hashlib.sha256(API_KEY.encode()).hexdigest()))
        settings = Settings(
            runtime="aws", stage="it", config_path=str(config), table_name="hub-it",
            inbound_queue_url=urls["inbound"], delivery_queue_url=urls["delivery"],
            delivery_dlq_url=urls["delivery-dlq"], bucket="hub-it-bucket", data_dir=str(tmp_path),
            environ={"TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "META_APP_SECRET": "test_meta_app_secret",
                     "META_VERIFY_TOKEN": "v", "CRM_WEBHOOK_SECRET": WHSEC},
        )
        clients = {"dynamodb": dynamodb, "sqs": sqs, "s3": s3}
        hub = Hub(settings, aws_client=clients.__getitem__)
        use_hub(hub)
        from app import app

        try:
            with Client(app) as client:
                yield client, hub, sqs, urls, receiver, AwsCalls(clients.values())
        finally:
            use_hub(None)


def sqs_event(sqs, url: str, expected: int) -> dict:
    records = []
    while len(records) < expected:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
        messages = answer.get("Messages", [])
        assert messages, f"expected {expected} messages on {url}, got {len(records)}"
        records += [
            {"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
             "attributes": m["Attributes"], "eventSource": "aws:sqs", "messageAttributes": {}}
            for m in messages
        ]
    return {"Records": records}


def invoke(client, sqs, url: str, function: str, event: dict) -> None:
    """What Lambda's SQS event source mapping does: run the handler; on success delete the batch,
    on an exception delete nothing (the handler deleted what it finished)."""
    client.lambda_.invoke(function, event)
    for record in event["Records"]:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=record["receiptHandle"])


def twilio_sms(sid: str, sender: str = "+14155550101", text: str = "Hello") -> tuple[bytes, dict]:
    params = {"MessageSid": sid, "AccountSid": "AC" + "a" * 32, "From": sender, "To": "+14155550100",
              "Body": text, "NumMedia": "0"}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature("https://hub.example.com/webhooks/twilio", params)
    return urlencode(params).encode(), {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}


def one_event(sqs, url: str) -> dict:
    """An SQS event of exactly one message (the queue's oldest visible one)."""
    [message] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, AttributeNames=["All"])["Messages"]
    return {"Records": [{"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
                         "body": message["Body"], "attributes": message["Attributes"], "eventSource": "aws:sqs",
                         "messageAttributes": {}}]}


def queue_depth(sqs, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_a_webhook_travels_through_sqs_and_dynamodb_to_a_signed_destination(aws):
    client, hub, sqs, urls, receiver, calls = aws
    fixture = load("twilio", "sms_text")

    ingest = client.http.post(fixture.path, headers=fixture.headers, body=fixture.body)
    assert ingest.status_code == 200
    assert calls.take() == Counter({"SendMessageBatch": 1}), "ingest costs exactly one AWS call"

    invoke(client, sqs, urls["inbound"], "process_inbound", sqs_event(sqs, urls["inbound"], 1))
    invoke(client, sqs, urls["delivery"], "deliver", sqs_event(sqs, urls["delivery"], 1))

    [request] = receiver.requests
    with time_machine.travel(int(request.headers["webhook-timestamp"]), tick=False):
        event = Webhook(WHSEC).verify(request.body, request.headers)
    contact_id = event["data"]["contact"]["id"]
    api = client.http.get(f"/v1/contacts/{contact_id}", headers={"Authorization": f"Bearer {API_KEY}"})
    assert api.status_code == 200
    assert [(d["destination"], d["status"], d["attempts"]) for d in json.loads(api.body)["deliveries"]] == [
        ("crm", "delivered", 1)
    ]
    assert queue_depth(sqs, urls["inbound"]) == queue_depth(sqs, urls["delivery"]) == 0


def test_rejected_webhooks_cost_no_aws_call(aws):
    client, _, _, _, _, calls = aws
    fixture = load("twilio", "sms_text")

    response = client.http.post(fixture.path, headers={**fixture.headers, "x-twilio-signature": "bad"}, body=fixture.body)

    assert response.status_code == 401
    assert calls.take() == Counter()


def test_worker_call_budget_for_returning_customers_and_duplicates(aws):
    client, hub, sqs, urls, _, calls = aws
    for sid in ("SM" + "1" * 32, "SM" + "2" * 32):
        body, headers = twilio_sms(sid)
        assert client.http.post("/webhooks/twilio", headers=headers, body=body).status_code == 200
    first, second = sqs_event(sqs, urls["inbound"], 2)["Records"]
    calls.take()

    client.lambda_.invoke("process_inbound", {"Records": [first]})
    new_customer = calls.take()
    client.lambda_.invoke("process_inbound", {"Records": [second]})
    returning = calls.take()
    hub.processor.process_body(first["body"])
    duplicate = calls.take()

    # The customer (this worker's cache knows its id) read with the message's done marker, the
    # delivery job, the commit; a duplicate stops at that first read.
    assert returning == Counter({"BatchGetItem": 1, "SendMessageBatch": 1, "TransactWriteItems": 1})
    assert sum(returning.values()) <= 4
    assert duplicate == Counter({"BatchGetItem": 1})
    assert new_customer["TransactWriteItems"] == 2  # create the customer, then the guarded commit


def test_a_poison_message_does_not_make_its_batch_mates_redo_their_work(aws):
    client, hub, sqs, urls, receiver, _ = aws
    good = [twilio_sms("SM" + c * 32, sender=f"+1415555{n:04d}") for n, c in enumerate("ab")]
    for body, headers in good:
        assert client.http.post("/webhooks/twilio", headers=headers, body=body).status_code == 200
    sqs.send_message(QueueUrl=urls["inbound"], MessageBody='{"kind": "message", "corrupt": true}',
                     MessageGroupId="poison", MessageDeduplicationId="poison")
    event = sqs_event(sqs, urls["inbound"], 3)

    with pytest.raises(BatchIncompleteError):
        invoke(client, sqs, urls["inbound"], "process_inbound", event)

    assert queue_depth(sqs, urls["inbound"]) == 1, "only the poison message returns to the queue"
    assert queue_depth(sqs, urls["delivery"]) == 2, "both good messages were processed exactly once"


def test_erasure_on_dynamodb_leaves_only_tombstones(aws):
    client, hub, sqs, urls, receiver, _ = aws
    fixture = load("twilio", "sms_text")
    assert client.http.post(fixture.path, headers=fixture.headers, body=fixture.body).status_code == 200
    invoke(client, sqs, urls["inbound"], "process_inbound", sqs_event(sqs, urls["inbound"], 1))
    invoke(client, sqs, urls["delivery"], "deliver", sqs_event(sqs, urls["delivery"], 1))
    event = json.loads(receiver.requests[-1].body)
    customer_id, contact_id = event["data"]["customer"]["id"], event["data"]["contact"]["id"]

    erased = client.http.delete(f"/v1/customers/{customer_id}", headers={"Authorization": f"Bearer {API_KEY}"})
    invoke(client, sqs, urls["delivery"], "deliver", sqs_event(sqs, urls["delivery"], 1))

    assert erased.status_code == 200
    assert json.loads(receiver.requests[-1].body)["type"] == "customer.erased"
    dynamodb = boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x").client("dynamodb")
    items = dynamodb.scan(TableName="hub-it")["Items"]  # a test may scan; the hub never does
    text = json.dumps(items)
    for trace in ("+14155550101", "Where is my order", contact_id):
        assert trace not in text, trace
    kinds = {(item["pk"]["S"].split("#")[0], item["sk"]["S"].split("#")[0]) for item in items}
    assert kinds <= {("CUST", "TOMBSTONE"), ("DEDUPE", "DEDUPE"), ("CONTACT", "DLV")}, kinds
    assert {"pk": {"S": f"CUST#{customer_id}"}, "sk": {"S": "TOMBSTONE"}}.items() <= next(
        i for i in items if i["sk"]["S"] == "TOMBSTONE").items()


def test_merge_and_unmerge_on_dynamodb_reach_the_destination_through_sqs(aws):
    client, hub, sqs, urls, receiver, calls = aws
    auth = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    for sid, sender in (("SM" + "3" * 32, "+14155550101"), ("SM" + "4" * 32, "+14155550102")):
        body, headers = twilio_sms(sid, sender)
        assert client.http.post("/webhooks/twilio", headers=headers, body=body).status_code == 200
        invoke(client, sqs, urls["inbound"], "process_inbound", sqs_event(sqs, urls["inbound"], 1))
        invoke(client, sqs, urls["delivery"], "deliver", sqs_event(sqs, urls["delivery"], 1))
    first, second = (json.loads(r.body)["data"]["customer"]["id"] for r in receiver.requests)
    calls.take()

    merged = client.http.post(f"/v1/customers/{second}/merge", headers=auth, body=json.dumps({"customer_id": first}))
    merge_calls = calls.take()
    invoke(client, sqs, urls["delivery"], "deliver", sqs_event(sqs, urls["delivery"], 1))
    unmerged = client.http.post(f"/v1/customers/{second}/unmerge", headers=auth, body=b"")
    invoke(client, sqs, urls["delivery"], "deliver", sqs_event(sqs, urls["delivery"], 1))

    assert merged.status_code == 200 and unmerged.status_code == 200, (merged.body, unmerged.body)
    merge_id = json.loads(merged.body)["merge_id"]
    assert merge_calls["TransactWriteItems"] == 1, "the merge is one transaction"
    events = [json.loads(r.body) for r in receiver.requests[2:]]
    assert [(e["type"], e["data"]["customer"]["id"], e["data"]["other_customer"]["id"], e["data"]["merge"]["id"])
            for e in events] == [("customer.merged", first, second, merge_id), ("customer.unmerged", first, second, merge_id)]
    found = client.http.get("/v1/customers?identifier=phone:%2B14155550102", headers=auth)
    assert [c["id"] for c in json.loads(found.body)["data"]] == [second]


def test_rules_route_and_park_contacts_on_dynamodb_and_a_release_delivers(aws):
    client, hub, sqs, urls, receiver, _ = aws
    auth = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    for sid, text in (("SM" + "5" * 32, "Urgent: my line is dead"), ("SM" + "6" * 32, "I want a refund please")):
        body, headers = twilio_sms(sid, text=text)
        assert client.http.post("/webhooks/twilio", headers=headers, body=body).status_code == 200
        invoke(client, sqs, urls["inbound"], "process_inbound", sqs_event(sqs, urls["inbound"], 1))

    invoke(client, sqs, urls["delivery"], "deliver", sqs_event(sqs, urls["delivery"], 1))
    [urgent] = [json.loads(r.body)["data"]["contact"] for r in receiver.requests]
    parked = json.loads(client.http.get("/v1/exceptions", headers=auth).body)["data"]
    released = client.http.post(f"/v1/exceptions/{parked[0]['contact_id']}/resolve", headers=auth,
                                body=json.dumps({"queue": "refunds"}))
    invoke(client, sqs, urls["delivery"], "deliver", sqs_event(sqs, urls["delivery"], 1))

    assert (urgent["routing"]["priority"], urgent["routing"]["tags"]) == ("urgent", ["urgent"])
    assert [p["reason"] for p in parked] == ["refund requests are checked first (rule hold-refunds)"]
    assert released.status_code == 200, released.body
    refund = json.loads(receiver.requests[-1].body)["data"]["contact"]
    assert (refund["routing"]["queue"], refund["routing"]["parked"]) == ("refunds", None)
    assert json.loads(client.http.get("/v1/exceptions", headers=auth).body)["data"] == []


def test_faults_on_aws_three_server_errors_then_success_a_permanent_rejection_and_its_replay(aws):
    from tests.support.receiver import Answer

    client, hub, sqs, urls, receiver, _ = aws
    auth = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    receiver.script = [Answer(500), Answer(502), Answer(503)]
    body, headers = twilio_sms("SM" + "7" * 32)
    assert client.http.post("/webhooks/twilio", headers=headers, body=body).status_code == 200
    invoke(client, sqs, urls["inbound"], "process_inbound", sqs_event(sqs, urls["inbound"], 1))
    invoke(client, sqs, urls["delivery"], "deliver", sqs_event(sqs, urls["delivery"], 1))

    assert [r.answered for r in receiver.requests] == [500, 502, 503, 200]
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1

    receiver.default = Answer(400, b'{"error": "priority is invalid"}')
    body, headers = twilio_sms("SM" + "8" * 32, sender="+14155550188")
    assert client.http.post("/webhooks/twilio", headers=headers, body=body).status_code == 200
    invoke(client, sqs, urls["inbound"], "process_inbound", sqs_event(sqs, urls["inbound"], 1))
    invoke(client, sqs, urls["delivery"], "deliver", sqs_event(sqs, urls["delivery"], 1))
    [letter] = json.loads(client.http.get("/v1/dead-letters", headers=auth).body)["data"]

    assert receiver.requests[-1].answered == 400 and len(receiver.requests) == 5, "not retried"
    assert "priority is invalid" in letter["reason"]
    assert queue_depth(sqs, urls["delivery-dlq"]) == 1, "the DLQ holds it too (what alarms watch)"

    receiver.default = Answer(200, b'{"ok": true}')
    replayed = client.http.post(f"/v1/dead-letters/{letter['id']}/replay", headers=auth, body=b"")
    invoke(client, sqs, urls["delivery"], "deliver", sqs_event(sqs, urls["delivery"], 1))

    assert replayed.status_code == 202
    assert receiver.requests[-1].answered == 200
    assert receiver.requests[-1].headers["webhook-id"] == receiver.requests[-2].headers["webhook-id"]
    assert json.loads(client.http.get("/v1/dead-letters", headers=auth).body)["data"] == []


def test_an_outage_on_aws_opens_the_circuit_loses_nothing_and_delivers_in_order_when_it_ends(aws):
    import time

    from tests.support.receiver import Answer

    client, hub, sqs, urls, receiver, _ = aws
    receiver.default = Answer(503, b'{"error": "down"}')
    for n in (1, 2, 3):  # one customer: one FIFO group per destination, so one job at a time
        body, headers = twilio_sms(f"SM{n:032d}", text=f"message {n}")
        assert client.http.post("/webhooks/twilio", headers=headers, body=body).status_code == 200
    invoke(client, sqs, urls["inbound"], "process_inbound", sqs_event(sqs, urls["inbound"], 3))

    with pytest.raises(BatchIncompleteError):
        client.lambda_.invoke("deliver", one_event(sqs, urls["delivery"]))  # 4 failures: the circuit opens
    calls = len(receiver.requests)
    assert hub.deliverer.breakers.is_open("crm")
    assert queue_depth(sqs, urls["delivery"]) == 3, "nothing is lost"

    receiver.default = Answer(200, b'{"ok": true}')
    time.sleep(2.2)  # the cool-down (1 s; moto applies visibility in whole seconds), then the trial
    for _ in range(3):
        invoke(client, sqs, urls["delivery"], "deliver", one_event(sqs, urls["delivery"]))

    delivered = [json.loads(r.body)["data"]["contact"]["text"] for r in receiver.requests if r.answered == 200]
    assert calls == 4
    assert delivered == ["message 1", "message 2", "message 3"], "in order per customer and case"
    assert not hub.deliverer.breakers.is_open("crm")
    assert queue_depth(sqs, urls["delivery"]) == 0


def test_a_rate_limit_on_aws_is_honoured_before_the_next_attempt(aws):
    from tests.support.receiver import Answer

    client, hub, sqs, urls, receiver, _ = aws
    receiver.script = [Answer(429, b'{"error": "slow down"}', {"Retry-After": "1"})]
    body, headers = twilio_sms("SM" + "9" * 32)
    assert client.http.post("/webhooks/twilio", headers=headers, body=body).status_code == 200
    invoke(client, sqs, urls["inbound"], "process_inbound", sqs_event(sqs, urls["inbound"], 1))
    invoke(client, sqs, urls["delivery"], "deliver", sqs_event(sqs, urls["delivery"], 1))

    first, second = receiver.requests
    assert (first.answered, second.answered) == (429, 200)
    assert second.at - first.at >= 1.0


def test_a_claim_checked_message_releases_its_s3_body_once_handled_and_a_redelivery_is_a_duplicate(aws):
    from chalicelib.adapters.queue.base import OutgoingMessage
    from chalicelib.domain.models import Channel, Handle, InboundMessage, Sender

    client, hub, sqs, urls, _, _ = aws
    # As big as an email whose attachments travel with it: over the 200 KB inline limit.
    message = InboundMessage(
        provider="twilio", channel=Channel.SMS, provider_message_id="SM" + "b" * 32, account="+14155550100",
        sender=Sender(handles=[Handle(kind="phone", value="+14155550101")]), text="Hello",
        raw={"padding": "x" * 300_000},
    )
    hub.inbound_queue.send([OutgoingMessage(body=message.model_dump_json(), group="g", dedupe_id="big")])
    event = one_event(sqs, urls["inbound"])
    key = json.loads(event["Records"][0]["body"])["$blob"]
    assert hub.blobs.get(key)

    invoke(client, sqs, urls["inbound"], "process_inbound", event)

    # Released: the customer's data is replaced with a small marker.
    assert b"padding" not in hub.blobs.get(key) and len(hub.blobs.get(key)) < 200
    assert queue_depth(sqs, urls["delivery"]) == 1
    # The same record once more, as after a lost acknowledgement: handled as a duplicate.
    client.lambda_.invoke("process_inbound", event)
    assert queue_depth(sqs, urls["delivery"]) == 1
