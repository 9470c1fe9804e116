"""Business events through the deployed shape under moto, with the real event processor: the
`process_events` handler fed SQS events built from what the events FIFO queue holds, the `timers`
function fed a schedule's input as EventBridge Scheduler would, DynamoDB, S3, the delivery and
outbound FIFO queues and moto's Scheduler. AWS calls are counted per operation: the figures
docs/scaling.md quotes for business events come from here.

1. An addressed event whose rule opens a case and forwards it to a destination.
2. A broadcast to a postcode segment of 250 customers in pages of 100, one batch redelivered.
3. A case timer: armed as schedules by the new case, fired through the timers function, acted on
   once although delivered twice."""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import boto3
import chalice.test
import pytest
from chalice.local import LambdaContext
from chalice.test import Client
from moto import mock_aws

from chalicelib.bootstrap import Hub, use_hub
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.ids import new_id
from chalicelib.domain.models import AttributeValue, Channel, Customer
from chalicelib.domain.stored import ReplyTarget
from chalicelib.settings import Settings
from tests.support.aws import create_table
from tests.support.fakes import Clock
from tests.support.receiver import Receiver

REGION = "eu-central-1"
ACCOUNT = "123456789012"
API_KEY = "events-pipeline-key"
NUMBER = "+14155550100"
#: A Monday morning, 08:00 UTC.
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SLA_HOURS = 4
GROUP = "hub-it"

CONFIG = """
identity: {{default_region: DE}}
channels:
  twilio:
    auth_tokens: ["env:TWILIO_AUTH_TOKEN"]
    public_url: https://hub.example.com/webhooks/twilio
    account_sid: AC{account}
    numbers: {{sms: ["{number}"]}}
destinations:
  - {{name: crm, type: webhook, url: "{url}", secrets: ["env:CRM_WEBHOOK_SECRET"]}}
customers: {{indexed_attributes: [postcode]}}
cases: {{window_hours: 72, auto_close_after_hours: 168}}
routing: {{sla: {{hours: {sla}}}}}
events:
  fanout_page_size: 100
  templates:
    outage_notice: {{text: {{en: "Outage in {{data.region}}: we are on it."}}}}
  rules:
    - name: damaged-parcel
      when: {{event_type: parcel.damaged}}
      then: {{open_case: {{queue: claims, topic: parcel}}, forward: {{destinations: [crm]}}}}
    - name: outage-broadcast
      when: {{event_type: outage.started}}
      customer_selector: {{attribute: postcode, in: data.postcodes}}
      then: {{notify: {{template: outage_notice, channels: [sms]}}}}
    - name: sla-escalate
      when: {{event_type: case.sla_breached}}
      then: {{priority: urgent, queue: escalations}}
api_keys:
  - name: shop
    sha256: {key}
    scopes: [events:write, customers:read]
"""


class AwsCalls:
    """Every AWS call the watched clients make, by operation; `queries` the segment index ones."""

    def __init__(self, clients) -> None:
        self.names: list[str] = []
        self.queries: list[str] = []
        for client in clients:
            client.meta.events.register("before-call.*.*", self._record)
            client.meta.events.register("before-parameter-build.dynamodb.Query", self._record_query)

    def _record(self, model, **_) -> None:
        self.names.append(model.name)

    def _record_query(self, params, **_) -> None:
        if "IndexName" in params:
            self.queries.append(params["IndexName"])

    def take(self) -> Counter:
        taken, self.names = Counter(self.names), []
        return taken


@pytest.fixture
def stack(tmp_path, monkeypatch):
    monkeypatch.setattr(chalice.test, "LambdaContext", functools.partial(LambdaContext, max_runtime_ms=60_000))
    with mock_aws(), Receiver() as receiver:
        session = boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
        clients = {name: session.client(name) for name in ("dynamodb", "sqs", "s3", "scheduler")}
        sqs = clients["sqs"]
        create_table(clients["dynamodb"], "hub-it")
        urls = {}
        for role in ("events", "delivery", "outbound"):
            dlq = sqs.create_queue(QueueName=f"hub-it-{role}-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            urls[role] = sqs.create_queue(QueueName=f"hub-it-{role}.fifo", Attributes={
                "FifoQueue": "true", "VisibilityTimeout": "360", "DeduplicationScope": "messageGroup",
                "FifoThroughputLimit": "perMessageGroupId",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 11})})["QueueUrl"]
            urls[f"{role}-dlq"] = dlq
        clients["s3"].create_bucket(Bucket="hub-it-bucket", CreateBucketConfiguration={"LocationConstraint": REGION})
        clients["scheduler"].create_schedule_group(Name=GROUP)
        config = tmp_path / "hub.yaml"
        config.write_text(CONFIG.format(url=receiver.url, account="a" * 32, number=NUMBER, sla=SLA_HOURS,
                                        key=hashlib.sha256(API_KEY.encode()).hexdigest()))
        settings = Settings(
            runtime="aws", stage="it", config_path=str(config), table_name="hub-it", bucket="hub-it-bucket",
            events_queue_url=urls["events"], events_dlq_url=urls["events-dlq"],
            delivery_queue_url=urls["delivery"], delivery_dlq_url=urls["delivery-dlq"],
            outbound_queue_url=urls["outbound"], outbound_dlq_url=urls["outbound-dlq"],
            timers_group=GROUP, timers_role_arn=f"arn:aws:iam::{ACCOUNT}:role/hub-it-timers-scheduler",
            timers_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:omnichannel-hub-it-timers",
            timers_dlq_arn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:hub-it-timers-dlq", data_dir=str(tmp_path),
            environ={"TWILIO_AUTH_TOKEN": "0123456789abcdef0123456789abcdef", "CRM_WEBHOOK_SECRET":
                     "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
        )
        clock = Clock(START)
        hub = Hub(settings, aws_client=clients.__getitem__, clock=clock)
        use_hub(hub)
        from app import app

        try:
            with Client(app) as client:
                # The test's own receives, deletes and looks go through clients the count does not watch.
                tools = {name: session.client(name) for name in ("sqs", "scheduler", "dynamodb")}
                yield client, hub, tools, urls, clock, AwsCalls(clients.values()), receiver
        finally:
            use_hub(None)


# --- steps ------------------------------------------------------------------------------------------


def customer(phone: str, postcode: str | None = None, *, opted_out: bool = False) -> Customer:
    """A customer who wrote by SMS before (the conversation a notice continues), as the store holds it."""
    identifier = Identifier.parse(f"phone:{phone}")
    target = ReplyTarget(contact_id=new_id("ct"), case_id=new_id("case"), channel=Channel.SMS, provider="twilio",
                         account=NUMBER, to=phone, at=START - timedelta(days=30))
    consent = {"sms": {"service": {"state": "opted_out", "source": "keyword:STOP",
                                   "at": (START - timedelta(days=1)).isoformat()}}} if opted_out else {}
    attributes = {"postcode": AttributeValue(value=postcode, source="crm", updated_at=START)} if postcode else {}
    return Customer.model_validate({
        "id": new_id("cus"), "identifiers": [identifier], "attributes": attributes, "consent": consent,
        "reply_targets": {target.key: target}, "created_at": START - timedelta(days=30),
        "updated_at": START - timedelta(days=30),
    })


def post_event(client, body: dict) -> None:
    answer = client.http.post("/v1/events", body=json.dumps(body),
                              headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
    assert answer.status_code == 202, answer.body


def receive(sqs, url: str, *, at_most: int = 10) -> dict:
    """An SQS event as Lambda's event source mapping builds it from one receive (maybe empty)."""
    answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=at_most, AttributeNames=["All"])
    messages = answer.get("Messages", [])
    return {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                         "attributes": m["Attributes"], "eventSource": "aws:sqs", "messageAttributes": {}}
                        for m in messages]}


def invoke(client, sqs, url: str, function: str, event: dict) -> None:
    """What the event source mapping does: run the handler, and on success delete the batch."""
    client.lambda_.invoke(function, event)
    for record in event["Records"]:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=record["receiptHandle"])


def bodies(sqs, url: str) -> list[dict]:
    """Everything the queue holds, received and deleted."""
    found = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def timeline(client, customer_id: str) -> list[dict]:
    answer = client.http.get(f"/v1/customers/{customer_id}/contacts?limit=100",
                             headers={"Authorization": f"Bearer {API_KEY}"})
    assert answer.status_code == 200, answer.body
    return json.loads(answer.body)["data"]


def damaged_parcel(customer_id: str, at: datetime) -> dict:
    return {"type": "parcel.damaged", "id": "shop:parcel-17:damaged", "occurred_at": at.isoformat(),
            "customer": {"customer_id": customer_id}, "data": {"parcel_id": "P-17"}}


# --- 1. an addressed event ------------------------------------------------------------------------------


def test_an_addressed_event_opens_a_case_forwards_it_and_its_cost_per_event(stack):
    client, hub, clients, urls, clock, calls, _receiver = stack
    sqs = clients["sqs"]
    known = customer("+4915123456789")
    hub.store.create_customer(known)
    post_event(client, damaged_parcel(known.id, clock()))
    event = receive(sqs, urls["events"])
    assert len(event["Records"]) == 1
    calls.take()

    client.lambda_.invoke("process_events", event)
    cost = calls.take()

    # One event that opens a case and forwards it, on the events worker:
    # - BatchGetItem 1: `Store.begin`, the event's done marker with the customer, in one read;
    # - CreateSchedule 2: the new case's SLA and auto-close timers (EventBridge Scheduler);
    # - SendMessageBatch 1: the delivery jobs (`event.forwarded` to crm, `case.opened` to crm), one call;
    # - TransactWriteItems 1: `Store.commit_event`: the event contact and its timeline copy, the
    #   case, the customer (its open case) and the done marker, guarded, in one transaction.
    # (Lambda's event source mapping adds its ReceiveMessage and DeleteMessageBatch per batch of 10.)
    assert cost == Counter({"BatchGetItem": 1, "CreateSchedule": 2, "SendMessageBatch": 1, "TransactWriteItems": 1})

    [entry] = [c for c in timeline(client, known.id) if c.get("kind") == "event"]
    assert entry["provider_message_id"] == "shop:parcel-17:damaged"
    assert [(a["action"], a["outcome"]) for a in entry["metadata"]["actions"]] == [
        ("open_case", "opened"), ("forward", "forwarded")]
    stored = hub.store.get_customer(known.id)
    case = hub.store.get_case(stored.open_case.id)
    assert (case.queue, case.topic, entry["case_id"]) == ("claims", "parcel", case.id)
    assert set(case.due) == {"sla", "auto_close"}
    jobs = bodies(sqs, urls["delivery"])
    assert sorted((j["destination"], j["event_type"]) for j in jobs) == [
        ("crm", "case.opened"), ("crm", "event.forwarded")]
    forwarded = next(j for j in jobs if j["event_type"] == "event.forwarded")
    assert (forwarded["contact"]["id"], forwarded["case"]["id"]) == (entry["id"], case.id)
    schedules = clients["scheduler"].list_schedules(GroupName=GROUP)["Schedules"]
    assert len(schedules) == 2

    # The same message again (a lost acknowledgement): the done marker ends it after one read.
    calls.take()
    client.lambda_.invoke("process_events", event)
    assert calls.take() == Counter({"BatchGetItem": 1})
    assert bodies(sqs, urls["delivery"]) == []


def test_an_event_for_a_customer_id_nobody_holds_is_recorded_as_unhandled_after_one_read(stack):
    client, _hub, clients, urls, clock, calls, _receiver = stack
    post_event(client, damaged_parcel("cus_01JD0000000000000000000404", clock()))
    event = receive(clients["sqs"], urls["events"])
    calls.take()

    client.lambda_.invoke("process_events", event)

    # `begin` finds no customer with the marker; the event is kept for GET /v1/unhandled-events.
    assert calls.take() == Counter({"BatchGetItem": 1, "PutItem": 1})
    # (Read raw: the store's list hides items past their expiry by the real clock, and the hub's is in 2026-03.)
    [item] = clients["dynamodb"].query(TableName="hub-it", KeyConditionExpression="pk = :pk",
                                       ExpressionAttributeValues={":pk": {"S": f"UNHANDLED#{clock().date()}"}})["Items"]
    kept = json.loads(item["doc"]["S"])
    assert (item["provider"]["S"], kept["raw"]["id"]) == ("events", "shop:parcel-17:damaged")
    assert kept["reason"] == ("event shop:parcel-17:damaged (parcel.damaged): customer cus_01JD0000000000000000000404 "
                           "does not exist")


# --- 2. a broadcast to a segment ------------------------------------------------------------------------


@pytest.fixture
def item_level_backups():
    """Moto backs up a transaction by copying every table it names, so 491 transactions on a table
    of 270 customers took minutes; this backs up only the items each one names (same outcome,
    `tests/support/moto_transactions.py`)."""
    from tests.support.moto_transactions import item_level_transaction_backups

    with item_level_transaction_backups():
        yield


@pytest.mark.slow
def test_a_broadcast_to_250_customers_pages_by_100_and_tells_each_eligible_customer_once(stack, item_level_backups):
    client, hub, clients, urls, clock, calls, _receiver = stack
    sqs = clients["sqs"]
    in_segment = [customer(f"+491512{n:07d}", "10115", opted_out=n % 25 == 0) for n in range(250)]
    elsewhere = [customer(f"+491513{n:07d}", "20095") for n in range(20)]
    for seeded in (*in_segment, *elsewhere):
        hub.store.create_customer(seeded)
    eligible = sorted(c.id for c in in_segment if not c.consent)
    assert len(eligible) == 240
    post_event(client, {"type": "outage.started", "id": "grid:outage-7", "occurred_at": clock().isoformat(),
                        "customer": None, "data": {"postcodes": ["10115"], "region": "Berlin Mitte"}})
    calls.take()
    calls.queries.clear()

    kinds: Counter = Counter()
    replayed = None
    while (event := receive(sqs, urls["events"]))["Records"]:
        kinds.update(json.loads(r["body"])["kind"] for r in event["Records"])
        invoke(client, sqs, urls["events"], "process_events", event)
        if replayed is None and all(json.loads(r["body"])["kind"] == "segment_member" for r in event["Records"]):
            replayed = event
    drained = calls.take()

    # The event, 3 pages (100 + 100 + 50), 250 members: the events queue carried pages, then members.
    assert kinds == Counter({"event": 1, "segment_page": 3, "segment_member": 250})
    assert calls.queries == ["segment1"] * 3, "one Query on the segment index per page"
    sent = bodies(sqs, urls["outbound"])
    assert sorted(m["customer_id"] for m in sent) == eligible, "each eligible customer once, nobody else"
    assert {m["text"] for m in sent} == {"Outage in Berlin Mitte: we are on it."}
    assert {(m["channel"], m["account"]) for m in sent} == {("sms", NUMBER)}
    opted_out = next(c for c in in_segment if c.consent)
    [entry] = [c for c in timeline(client, opted_out.id) if c.get("kind") == "event"]
    assert entry["metadata"]["actions"][0]["outcome"] == "consent_refused"
    assert [c for c in timeline(client, elsewhere[0].id) if c.get("kind") == "event"] == []

    # A batch of members delivered again (the function timed out after finishing it): each member's
    # done marker ends it after one read; nothing is written, queued or sent again.
    assert replayed is not None
    calls.take()
    client.lambda_.invoke("process_events", replayed)
    assert calls.take() == Counter({"BatchGetItem": len(replayed["Records"])})
    assert bodies(sqs, urls["outbound"]) == []

    # The cost of the whole broadcast, per customer told (240), excluding the event source mapping's
    # ReceiveMessage/DeleteMessage: per member one read (`begin`), one guarded write
    # (the outbound contact, `commit_outbound(only_new)`), one send to the outbound queue and
    # the event's commit; per page one Query and one SendMessageBatch per 10 messages queued.
    members, pages = 250, 3
    assert drained["Query"] == pages
    assert drained["BatchGetItem"] == 1 + members  # the broadcast's own marker, then each member's
    # The first page; each page's members and its successor, in tens (101 + 101 + 50); the notices.
    assert drained["SendMessageBatch"] == 1 + (11 + 11 + 5) + 240
    # The broadcast's done marker (`mark_done`); each notice's contact; each member's commit.
    assert drained["TransactWriteItems"] == 1 + 240 + 250
    assert set(drained) == {"Query", "BatchGetItem", "SendMessageBatch", "TransactWriteItems"}, drained
    # 1,013 calls for 240 customers told: about 4.2 each (a member's read and commit, a notice's
    # contact and send, and the pages' share); the event source mapping adds about 0.2 (its
    # ReceiveMessage and DeleteMessageBatch per batch of 10).
    assert sum(drained.values()) == 3 + 251 + 268 + 491
    assert round(sum(drained.values()) / len(eligible), 1) == 4.2


# --- 3. a case timer ------------------------------------------------------------------------------------


def test_a_case_timer_armed_on_the_scheduler_fires_through_the_timers_function_and_acts_once(stack):
    from chalicelib.service.case_timers import case_timers, timer_event_id

    client, hub, clients, urls, clock, calls, receiver = stack
    sqs, scheduler = clients["sqs"], clients["scheduler"]
    known = customer("+4915123456780")
    hub.store.create_customer(known)
    post_event(client, damaged_parcel(known.id, clock()))
    invoke(client, sqs, urls["events"], "process_events", receive(sqs, urls["events"]))
    bodies(sqs, urls["delivery"])
    case = hub.store.get_case(hub.store.get_customer(known.id).open_case.id)
    [sla] = [t for t in case_timers(case.id, known.id, case.due) if t.payload and '"sla"' in t.payload]
    stored = scheduler.get_schedule(GroupName=GROUP, Name=sla.name)
    assert stored["ScheduleExpression"] == f"at({case.due['sla']:%Y-%m-%dT%H:%M:%S})"
    lambda_input = json.loads(stored["Target"]["Input"])

    clock.advance(timedelta(hours=SLA_HOURS, minutes=1).total_seconds())
    calls.take()
    client.lambda_.invoke("timers", lambda_input)
    client.lambda_.invoke("timers", lambda_input)  # Scheduler retried after a lost answer
    # One send each; the FIFO queue drops the second by its deduplication id.
    assert calls.take() == Counter({"SendMessageBatch": 2})
    fired = receive(sqs, urls["events"])
    assert [json.loads(r["body"])["kind"] for r in fired["Records"]] == ["timer"], "the queue kept one"

    client.lambda_.invoke("process_events", fired)
    acted = calls.take()
    escalated = hub.store.get_case(case.id)
    assert (escalated.priority.name, escalated.queue) == ("URGENT", "escalations")
    entries = [c for c in timeline(client, known.id) if c.get("kind") == "event"]
    assert [e["provider_message_id"] for e in entries] == [  # newest first
        timer_event_id(case.id, "sla", case.due["sla"]), "shop:parcel-17:damaged"]
    first = receive(sqs, urls["delivery"])
    assert [(json.loads(r["body"])["destination"], json.loads(r["body"])["event_type"]) for r in first["Records"]] == [
        ("crm", "case.sla_breached")]
    invoke(client, sqs, urls["delivery"], "deliver", first)
    calls.take()

    # The same timer delivered again (after its visibility timeout, beyond the queue's 5-minute
    # deduplication window): the rules do not act again (their done marker), and the case event,
    # queued again with its id from the case and the due time, is dropped by the deliverer.
    client.lambda_.invoke("process_events", fired)
    again = calls.take()
    assert hub.store.get_case(case.id) == escalated
    assert [e["id"] for e in timeline(client, known.id) if e.get("kind") == "event"] == [e["id"] for e in entries]
    repeat = receive(sqs, urls["delivery"])
    assert [json.loads(r["body"])["delivery_id"] for r in repeat["Records"]] == [
        json.loads(r["body"])["delivery_id"] for r in first["Records"]]
    invoke(client, sqs, urls["delivery"], "deliver", repeat)
    assert [json.loads(r.body)["type"] for r in receiver.requests].count("case.sla_breached") == 1
    # Acting: the handler reads the case (a Query of its item tree) and queues the case event; the
    # rules' event then costs `begin`, the escalation's read of the open case and one commit (the
    # escalated case, the customer and the event contact). Again: the case read, the case event
    # queued once more (dropped downstream), and `begin`, which finds the event done.
    assert acted == Counter({"Query": 2, "SendMessageBatch": 1, "BatchGetItem": 1, "TransactWriteItems": 1}), acted
    assert again == Counter({"Query": 1, "SendMessageBatch": 1, "BatchGetItem": 1}), again
