"""Two-way sync on the AWS runtime under moto: a customer's WhatsApp message becomes a Zendesk
ticket (the deliverer stores the ticket ref and its CASEREF# link), an agent answers in Zendesk,
Zendesk's signed webhook reaches `POST /callbacks/zendesk` through the Chalice route, the process
worker relays the reply (read back from Zendesk) to the outbound queue, the send worker hands it
to WhatsApp on the customer's thread; then the agent solves the ticket and the case closes, with
`case.closed` queued for the webhook destination `crm`.

Zendesk's API is the stateful local fake (tests/support/fake_zendesk.py); Meta's Graph API and
`crm` are local receivers. The trigger body is the one `hubctl callbacks setup` prints
(`ZendeskCallbacks.trigger_body`) with Zendesk's placeholders filled in, signed as Zendesk signs
(base64 HMAC-SHA256 of the timestamp followed by the body; computed here with hmac, not the hub's
code).

Every AWS call the hub's own clients make is counted (tests/integration/conftest.py's `CallLog`).
Issue 13's targets: ingest 1 call per callback, processing at most 4 plus the provider send.
Measured:

| step                                              | calls                                                          |
|---------------------------------------------------|----------------------------------------------------------------|
| ingest, a signed callback                          | 1: SendMessageBatch                                            |
| ingest, a forged callback                          | 0 (401)                                                         |
| process, agent reply                               | 4: Query (case by the ticket's external id), GetItem (customer), TransactWriteItems (outbound contact + timeline, only if new), SendMessageBatch (outbound); + 1 Zendesk read (the comments) |
| process, the same reply again (SQS redelivery)     | 4: Query (case), GetItem (customer), TransactWriteItems (refused: the id exists), Query (the message, already sent: not queued again); + 1 Zendesk read |
| send worker, the reply                             | 3 + 3: Query (contact), TransactWriteItems (sent + SENT# link), Query (STATUS#: WhatsApp statuses that came before the send was recorded); `crm` takes message events: GetItem (customer), Query (case), SendMessageBatch; + 1 WhatsApp send |
| process, ticket solved                             | 4: Query (case), GetItem (customer), SendMessageBatch (`case.closed`), TransactWriteItems (REF# state, case, customer) |

Both processing targets are met. The send worker spends what it spends for any WhatsApp message
(3, one more than issue 12's Twilio figure: early WhatsApp statuses are looked up), plus 3 because
a destination takes message events; nothing of it is specific to agent replies.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
from collections import Counter
from datetime import datetime, timedelta, timezone

import boto3
import chalice.test
import pytest
from chalice.app import SQSEvent
from chalice.local import LambdaContext
from chalice.test import Client
from moto import mock_aws

from chalicelib.bootstrap import Hub, use_hub
from chalicelib.settings import Settings
from tests.integration.conftest import CallLog
from tests.support.aws import create_table
from tests.support.fake_zendesk import AGENT_ID, HUB_USER_ID, FakeZendesk
from tests.support.fakes import Clock
from tests.support.fixtures import load
from tests.support.receiver import Answer, Receiver

REGION = "eu-central-1"
API_KEY = "two-way-key"
META_SECRET = "test_meta_app_secret"  # signs tests/fixtures/meta/*
ZENDESK_SECRET = "dGhpcyBpcyBhIHplbmRlc2sgc2lnbmluZyBzZWNyZXQ="
CRM_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#: tests/fixtures/meta/whatsapp_text: written at 2026-01-01T00:00:00Z by wa_id 16505551234.
WRITTEN = datetime(2026, 1, 1, tzinfo=timezone.utc)
INBOUND_WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQUVCMDAwMDAwMDAwMDAwMD1A="
OUTBOUND_WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI0QUFCQ0RFRjAxMjM0NTY3OAA="
PHONE_NUMBER_ID = "106540352242922"

CONFIG = """
channels:
  meta:
    app_secrets: ["env:META_APP_SECRET"]
    verify_tokens: ["env:META_VERIFY_TOKEN"]
    api_base_url: {provider}
    whatsapp: {{access_tokens: ["env:META_TOKEN"], numbers: {{"{number}": {{}}}}}}
media:
  link_secret: ["env:LINK_SECRET"]
destinations:
  - name: zendesk
    type: zendesk
    base_url: {zendesk}
    auth: {{type: basic, username: hub@acme.example/token, password: "env:ZENDESK_TOKEN"}}
    callbacks:
      secrets: ["env:ZENDESK_WEBHOOK_SECRET"]
      hub_author_ids: ["{hub_user}"]
  - name: crm
    type: webhook
    url: {crm}
    secrets: ["env:CRM_SECRET"]
api_keys:
  - name: agents
    sha256: {key}
    scopes: [customers:read]
"""

#: Issue 13's targets: AWS calls per callback at ingest, and per callback item processed (the
#: provider's send comes on top, on the send worker).
INGEST_TARGET, PROCESS_TARGET = 1, 4


@pytest.fixture
def two_way(tmp_path, monkeypatch):
    # The deployed functions have 30 s / 60 s (.chalice/config.json); the workers' budget reads it.
    monkeypatch.setattr(chalice.test, "LambdaContext", functools.partial(LambdaContext, max_runtime_ms=60_000))
    with mock_aws(), Receiver() as provider, Receiver() as crm, FakeZendesk() as zendesk:
        session = boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
        sqs = session.client("sqs")  # setup and inspection: not watched
        create_table(session.client("dynamodb"), "hub-it")
        urls = {}
        for role in ("inbound", "delivery", "outbound"):
            dlq = sqs.create_queue(QueueName=f"hub-it-{role}-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            urls[role] = sqs.create_queue(QueueName=f"hub-it-{role}.fifo", Attributes={
                "FifoQueue": "true", "DeduplicationScope": "messageGroup", "FifoThroughputLimit": "perMessageGroupId",
                "VisibilityTimeout": "360", "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 11}),
            })["QueueUrl"]
            urls[f"{role}-dlq"] = dlq
        session.client("s3").create_bucket(Bucket="hub-it-bucket", CreateBucketConfiguration={"LocationConstraint": REGION})
        config = tmp_path / "hub.yaml"
        config.write_text(CONFIG.format(provider=provider.url.rsplit("/", 1)[0], number=PHONE_NUMBER_ID,
                                        zendesk=zendesk.url, hub_user=HUB_USER_ID, crm=crm.url,
                                        key=hashlib.sha256(API_KEY.encode()).hexdigest()))
        settings = Settings(
            runtime="aws", stage="it", config_path=str(config), table_name="hub-it",
            inbound_queue_url=urls["inbound"], delivery_queue_url=urls["delivery"], delivery_dlq_url=urls["delivery-dlq"],
            outbound_queue_url=urls["outbound"], outbound_dlq_url=urls["outbound-dlq"], bucket="hub-it-bucket",
            data_dir=str(tmp_path), environ={
                "META_APP_SECRET": META_SECRET, "META_VERIFY_TOKEN": "v", "META_TOKEN": "meta-system-user-token",
                "LINK_SECRET": "l" * 32, "ZENDESK_TOKEN": "zendesk-api-token", "ZENDESK_WEBHOOK_SECRET": ZENDESK_SECRET,
                "CRM_SECRET": CRM_SECRET},
        )
        log = CallLog()
        clients = {service: log.watch(session.client(service)) for service in ("dynamodb", "sqs", "s3")}
        clock = Clock(WRITTEN + timedelta(seconds=30))
        hub = Hub(settings, aws_client=clients.__getitem__, clock=clock)
        use_hub(hub)
        from app import app

        try:
            with Client(app) as client:
                yield TwoWay(client, hub, sqs, urls, log, clock, zendesk, provider, crm)
        finally:
            use_hub(None)


class TwoWay:
    """The deployed path's pieces, and the steps of the scenario as Lambda and Zendesk run them."""

    def __init__(self, client, hub, sqs, urls, log, clock, zendesk, provider, crm) -> None:
        self.client, self.hub, self.sqs, self.urls, self.log, self.clock = client, hub, sqs, urls, log, clock
        self.zendesk, self.provider, self.crm = zendesk, provider, crm

    # --- Lambda ---------------------------------------------------------------------------------

    def event(self, role: str) -> dict:
        """The event source mapping's batch: the queue's oldest visible message."""
        [message] = self.sqs.receive_message(QueueUrl=self.urls[role], MaxNumberOfMessages=1,
                                             AttributeNames=["All"])["Messages"]
        return {"Records": [{"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
                             "body": message["Body"], "attributes": message["Attributes"], "eventSource": "aws:sqs",
                             "messageAttributes": {}}]}

    def run(self, role: str, event: dict | None = None) -> dict:
        """One invocation of the queue's function; the batch deleted when it succeeded."""
        event = event or self.event(role)
        if role == "outbound":
            self.hub.workers.consume("outbound", SQSEvent(event, LambdaContext("send", "$LATEST", max_runtime_ms=60_000)))
        else:
            self.client.lambda_.invoke({"inbound": "process_inbound", "delivery": "deliver"}[role], event)
        for record in event["Records"]:
            self.sqs.delete_message(QueueUrl=self.urls[role], ReceiptHandle=record["receiptHandle"])
        return event

    def drain(self, role: str) -> int:
        done = 0
        while self.depth(role):
            self.run(role)
            done += 1
        return done

    def depth(self, role: str) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.urls[role], AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def counted(self) -> Counter:
        counts = self.log.counts()
        self.log.clear()
        return counts

    # --- the customer, the hub's API, Zendesk -----------------------------------------------------

    def customer_writes_whatsapp(self) -> dict:
        """The stored WhatsApp text, processed and delivered: the contact (with its case)."""
        fixture = load("meta", "whatsapp_text")
        assert self.client.http.post(fixture.path, headers=fixture.headers, body=fixture.body).status_code == 200
        self.run("inbound")
        self.drain("delivery")
        return self.api(f"/v1/contacts/{self.contact_of(INBOUND_WAMID)}")

    def contact_of(self, provider_message_id: str) -> str:
        [customer] = self.api("/v1/customers?identifier=phone:%2B16505551234")["data"]
        contacts = self.api(f"/v1/customers/{customer['id']}/contacts?limit=50")["data"]
        return next(c["id"] for c in contacts if c.get("provider_message_id") == provider_message_id)

    def api(self, path: str) -> dict:
        answer = self.client.http.get(path, headers={"Authorization": f"Bearer {API_KEY}"})
        assert answer.status_code == 200, answer.body
        return json.loads(answer.body)

    def trigger_fires(self, event: str, ticket: dict, *, status: str = "open", updated_at: str,
                      secret: str = ZENDESK_SECRET):
        """Zendesk's trigger notifies the webhook: the setup's body with its placeholders filled in,
        signed at the hub's current time; the route's answer."""
        side = self.hub.callback_side("zendesk")
        values = {"ticket.id": str(ticket["id"]), "ticket.external_id": ticket["external_id"],
                  "ticket.status": status, "ticket.priority": "normal", "ticket.assignee.id": str(AGENT_ID),
                  "ticket.assignee.name": "Alex Agent", "ticket.updated_at_with_timestamp": updated_at,
                  "current_user.id": str(AGENT_ID), "current_user.role": "agent"}
        fields = {name: values.get(template.strip("{}"), template) for name, template in side.trigger_body(event).items()}
        body = json.dumps(fields).encode()
        timestamp = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        signature = base64.b64encode(hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest())
        return self.client.http.post("/callbacks/zendesk", body=body, headers={
            "Content-Type": "application/json", "X-Zendesk-Webhook-Signature": signature.decode(),
            "X-Zendesk-Webhook-Signature-Timestamp": timestamp, "User-Agent": "Zendesk Webhook"})

    def case_events(self, event_type: str) -> list[dict]:
        events = [json.loads(r.body) for r in self.crm.requests]
        return [e for e in events if e.get("type") == event_type]


def whatsapp_accepted(wamid: str) -> Answer:
    body = {"messaging_product": "whatsapp", "contacts": [{"input": "16505551234", "wa_id": "16505551234"}],
            "messages": [{"id": wamid, "message_status": "accepted"}]}
    return Answer(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


def ticket_of(env: TwoWay, case_id: str) -> dict:
    """The case's Zendesk ticket, as the deliverer recorded it and Zendesk holds it."""
    ref = env.api(f"/v1/cases/{case_id}")["external_refs"]["zendesk"]["ref"]
    return env.zendesk.tickets[int(ref)]


def test_an_agent_reply_and_a_solved_ticket_within_the_call_budget(two_way):
    env = two_way
    contact = env.customer_writes_whatsapp()
    case_id = contact["case_id"]
    ticket = ticket_of(env, case_id)
    # The deliverer stored the ticket ref with its reverse link (one transaction of two Puts).
    dynamodb = boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x").client("dynamodb")
    link = dynamodb.get_item(TableName="hub-it", Key={"pk": {"S": f"CASEREF#zendesk:{ticket['id']}"},
                                                      "sk": {"S": "CASEREF"}})["Item"]
    assert link["case_id"]["S"] == case_id
    assert ticket["external_id"] == case_id

    # An agent answers in Zendesk; the trigger posts the webhook a minute later.
    env.clock.advance(60)
    env.zendesk.agent_comment(ticket["id"], "Hello Sheena, it costs 12 euros.")
    env.counted()
    accepted = env.trigger_fires("reply", ticket, updated_at="2026-01-01T00:01:30Z")
    ingest = env.counted()
    assert accepted.status_code == 200, accepted.body
    assert ingest == Counter({"SendMessageBatch": 1})
    assert sum(ingest.values()) == INGEST_TARGET

    reads_before = len(env.zendesk.log)
    reply_event = env.run("inbound")
    process = env.counted()
    assert process == Counter({"Query": 1, "GetItem": 1, "TransactWriteItems": 1, "SendMessageBatch": 1}), process
    assert sum(process.values()) <= PROCESS_TARGET
    assert [(method, path.split("?")[0]) for method, path, _ in env.zendesk.log[reads_before:]] == [
        ("GET", f"/api/v2/tickets/{ticket['id']}/comments")]
    assert env.depth("outbound") == 1

    env.provider.script = [whatsapp_accepted(OUTBOUND_WAMID)]
    env.run("outbound")
    jobs = [json.loads(entry["MessageBody"]) for batch in env.log.of("SendMessageBatch") for entry in batch["Entries"]]
    send = env.counted()
    [sent] = [json.loads(r.body) for r in env.provider.requests if r.path.endswith(f"/{PHONE_NUMBER_ID}/messages")]
    assert (sent["to"], sent["text"]["body"]) == ("16505551234", "Hello Sheena, it costs 12 euros.")
    assert sent["context"]["message_id"] == INBOUND_WAMID, "the reply answers the customer's message"
    # Any WhatsApp send (Query contact, TransactWriteItems, Query STATUS#) + `crm`'s message.sent
    # (GetItem customer, Query case, SendMessageBatch); the message is the agent's, not echoed to zendesk.
    assert send == Counter({"Query": 3, "TransactWriteItems": 1, "GetItem": 1, "SendMessageBatch": 1}), send
    assert [(job["destination"], job["event_type"]) for job in jobs] == [("crm", "message.sent")]

    # SQS delivers the reply's item again: nothing is queued or sent again.
    env.run("inbound", reply_event)
    again = env.counted()
    assert again == Counter({"Query": 2, "GetItem": 1, "TransactWriteItems": 1}), again
    assert env.depth("outbound") == 0
    env.drain("delivery")

    # The agent solves the ticket: the case closes, `crm` hears case.closed.
    env.clock.advance(60)
    env.zendesk.set_status(ticket["id"], "solved")
    env.counted()
    assert env.trigger_fires("status", ticket, status="solved", updated_at="2026-01-01T00:02:30Z").status_code == 200
    assert env.counted() == Counter({"SendMessageBatch": 1})
    env.run("inbound")
    status = env.counted()
    assert status == Counter({"Query": 1, "GetItem": 1, "SendMessageBatch": 1, "TransactWriteItems": 1}), status
    assert sum(status.values()) <= PROCESS_TARGET
    case = env.api(f"/v1/cases/{case_id}")
    assert (case["status"], case["close_reason"], case["closed_by"]) == ("closed", "vendor_closed", "zendesk")
    assert case["external_state"]["zendesk"]["vendor_status"] == "solved"
    env.drain("delivery")
    [closed] = env.case_events("case.closed")
    assert closed["data"]["case"]["id"] == case_id


def test_a_forged_callback_is_refused_without_an_aws_call(two_way):
    env = two_way
    contact = env.customer_writes_whatsapp()
    ticket = ticket_of(env, contact["case_id"])
    env.counted()

    forged = env.trigger_fires("status", ticket, status="solved", updated_at="2026-01-01T00:01:00Z",
                               secret="not-the-webhook-secret")

    assert forged.status_code == 401, forged.body
    assert env.counted() == Counter()
    assert env.depth("inbound") == 0
    assert env.api(f"/v1/cases/{contact['case_id']}")["status"] == "open"
