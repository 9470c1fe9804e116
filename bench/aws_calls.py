"""A1-A3 (T1): AWS API calls per contact, counted with a botocore `before-call` hook under moto.

The hub runs on runtime "aws" against moto's DynamoDB table (pk/sk + TTL on `expires_at`) and SQS
FIFO queues, created like `infra/stateful.yaml` does. Webhooks enter through the real Chalice route
(`app(event, context)` with an API Gateway proxy event); the process worker is driven through
app.py's SQS handler with an SQS event built from the message actually sitting in moto's queue.

Counted per step (calls issued by the hub's own clients only; setup and inspection use a separate,
unwatched client):

* ingest, accepted webhook            A1: exactly 1 (SendMessageBatch)
* ingest, wrong signature             A1: 0
* process, new customer               (informational: creates the customer)
* process, returning customer, cold identifier cache (fresh Hub)       A2: <= 4 (the owners of the
  sender's identifiers read with the message's done marker, the customer, the delivery job, the commit)
* process, returning customer, warm identifier cache (same Hub)        A2: <= 4 (the customer read
  with the done marker, the delivery job, the commit)
* process, duplicate (the same queue message delivered again)          A3: exactly 1 (the first read
  finds the done marker)

The same run also leaves the dedupe records that `dedupe_ttl` reads (see `scenario()`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.common import (
    ACCOUNT,
    META_SECRET,
    REGION,
    TWILIO_TOKEN,
    LambdaContext,
    NullOutput,
    Result,
    aws_settings,
    bench_config,
    count_result,
    fake_credentials,
    fixture_event,
    load_fixture,
    Fixture,
)

NAME = "aws_calls"
A2_LIMIT = 4


# --- call counting -------------------------------------------------------------------------------


class CallLog:
    """Every API call a watched client makes, by operation name (`before-call`: once per call,
    after parameter validation, before retries)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def watch(self, client):
        service = client.meta.service_model.service_name
        client.meta.events.register("before-call", lambda model, **_: self.names.append(f"{service}:{model.name}"))
        return client

    def clear(self) -> None:
        self.names.clear()

    def take(self) -> list[str]:
        names, self.names = list(self.names), []
        return names


def describe(names: list[str]) -> str:
    counts = Counter(names)
    return ", ".join(f"{n}x{c}" if c > 1 else n for n, c in counts.items()) or "none"


# --- moto resources ------------------------------------------------------------------------------


def create_resources(session, stage: str = "bench") -> dict[str, str]:
    """The table and FIFO queues of `infra/stateful.yaml`, in moto."""
    dynamodb = session.client("dynamodb")
    table = f"hub-{stage}"
    dynamodb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )
    dynamodb.update_time_to_live(TableName=table,
                                 TimeToLiveSpecification={"AttributeName": "expires_at", "Enabled": True})
    sqs = session.client("sqs")
    urls = {"table": table}
    for role, visibility, max_receives in (("inbound", 180, 5), ("delivery", 360, 8), ("events", 360, 11)):
        dlq = sqs.create_queue(QueueName=f"hub-{stage}-{role}-dlq.fifo", Attributes={
            "FifoQueue": "true", "MessageRetentionPeriod": "1209600"})["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        urls[f"{role}_dlq"] = dlq
        urls[role] = sqs.create_queue(QueueName=f"hub-{stage}-{role}.fifo", Attributes={
            "FifoQueue": "true",
            "DeduplicationScope": "messageGroup",
            "FifoThroughputLimit": "perMessageGroupId",
            "VisibilityTimeout": str(visibility),
            "MessageRetentionPeriod": "1209600",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}),
        })["QueueUrl"]
    session.client("s3").create_bucket(Bucket=f"hub-{stage}-bucket")
    # Case timers, as the stack makes them: a new case arms its SLA and auto-close schedules.
    urls["timers_group"] = f"hub-{stage}"
    session.client("scheduler").create_schedule_group(Name=urls["timers_group"])
    account = "123456789012"
    urls["timers_role"] = f"arn:aws:iam::{account}:role/hub-{stage}-timers-scheduler"
    urls["timers_function"] = f"arn:aws:lambda:{REGION}:{account}:function:omnichannel-hub-{stage}-timers"
    urls["timers_dlq"] = f"arn:aws:sqs:{REGION}:{account}:hub-{stage}-timers-dlq"
    return urls


# --- signed webhooks -----------------------------------------------------------------------------


def twilio_variant(fx: Fixture, sid: str, url: str) -> Fixture:
    """The fixture with another MessageSid, re-signed the way Twilio signs (sorted name+value pairs)."""
    from urllib.parse import parse_qsl

    body = re.sub(rb"SM1{32}", sid.encode(), fx.body)
    pairs = parse_qsl(body.decode(), keep_blank_values=True)
    data = url + "".join(k + v for k, v in sorted(pairs))
    signature = base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()
    return Fixture(fx.provider, fx.name, body, {**fx.headers, "x-twilio-signature": signature}, fx.hook, fx.url)


def meta_variant(fx: Fixture, n: int) -> Fixture:
    body = fx.body.replace(b'"id":"wamid.', f'"id":"wamid.{n:04d}'.encode(), 1)
    signature = "sha256=" + hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return Fixture(fx.provider, fx.name, body, {**fx.headers, "x-hub-signature-256": signature}, fx.hook, fx.url)


def forged(fx: Fixture) -> Fixture:
    header = "x-twilio-signature" if fx.provider == "twilio" else "x-hub-signature-256"
    value = fx.headers[header]
    bad = value[:-2] + ("AA" if fx.provider == "twilio" else "00")
    if bad == value:
        bad = value[:-2] + "BB"
    return Fixture(fx.provider, fx.name, fx.body, {**fx.headers, header: bad}, fx.hook, fx.url)


# --- the scenario --------------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    calls: list[str]
    detail: str = ""


@dataclass
class Scenario:
    steps: dict[str, Step] = field(default_factory=dict)
    #: phonenumbers modules loaded once the worker normalized the senders' numbers
    phone_modules: list[str] = field(default_factory=list)
    #: (dedupe item, wall-clock time just before its message was processed)
    dedupe_items: list[tuple[dict, float]] = field(default_factory=list)


class _Env:
    def __init__(self, session, urls, log: CallLog, data_dir: str) -> None:
        self.session = session
        self.urls = urls
        self.log = log
        self.data_dir = data_dir
        self.raw_sqs = session.client("sqs")
        self.raw_dynamodb = session.client("dynamodb")

    def hub(self):
        from chalicelib.bootstrap import Hub

        settings = aws_settings(
            self.data_dir, table_name=self.urls["table"], inbound_queue_url=self.urls["inbound"],
            delivery_queue_url=self.urls["delivery"], delivery_dlq_url=self.urls["delivery_dlq"],
            timers_group=self.urls["timers_group"], timers_role_arn=self.urls["timers_role"],
            timers_function_arn=self.urls["timers_function"], timers_dlq_arn=self.urls["timers_dlq"],
            events_queue_url=self.urls["events"], events_dlq_url=self.urls["events_dlq"],
        )
        return Hub(settings, config=bench_config(), aws_client=lambda service: self.log.watch(
            self.session.client(service)))

    def take_inbound(self, queue: str = "inbound") -> list[dict]:
        """Every message waiting in a queue, as Lambda's SQS event source would hand them over."""
        response = self.raw_sqs.receive_message(
            QueueUrl=self.urls[queue], MaxNumberOfMessages=10, WaitTimeSeconds=0,
            AttributeNames=["All"], MessageAttributeNames=["All"],
        )
        return response.get("Messages", [])

    def take_one(self) -> list[dict]:
        messages = self.take_inbound()
        if len(messages) != 1:
            raise RuntimeError(f"expected 1 message in the inbound queue, found {len(messages)}")
        return messages

    def acknowledge(self, messages: list[dict], queue: str = "inbound") -> None:
        """What Lambda's event source mapping does after a successful batch: delete the messages."""
        for message in messages:
            self.raw_sqs.delete_message(QueueUrl=self.urls[queue], ReceiptHandle=message["ReceiptHandle"])

    def sqs_event(self, messages: list[dict], queue: str = "inbound") -> dict:
        arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{self.urls[queue].rsplit('/', 1)[-1]}"
        return {"Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]}


def _post(hub_module, fx: Fixture) -> dict:
    return hub_module.app(fixture_event(fx), LambdaContext())


def scenario() -> Scenario:
    """Run every counted step once, for both providers, and return the counts (and dedupe items)."""
    fake_credentials()
    import boto3
    from moto import mock_aws

    import app as hub_module
    from chalicelib.bootstrap import use_hub

    result = Scenario()
    log = CallLog()
    with mock_aws(), NullOutput():
        session = boto3.session.Session(region_name=REGION)
        urls = create_resources(session)
        env = _Env(session, urls, log, tempfile.mkdtemp(prefix="hub-bench-aws-"))
        twilio = load_fixture("twilio", "sms_text")
        meta = load_fixture("meta", "whatsapp_text")
        twilio_url = "https://hub.example.com/webhooks/twilio/" + (twilio.hook or "")
        messages = {
            "twilio": [twilio_variant(twilio, f"SM{n:032d}", twilio_url) for n in (1, 2, 3)],
            "meta": [meta_variant(meta, n) for n in (1, 2, 3)],
        }
        try:
            for provider, (first, second, third) in messages.items():
                hub = env.hub()
                use_hub(hub)
                hub.inbound_queue, hub.processor  # built before counting: init is not per contact
                log.clear()

                def ingest(fx: Fixture, step: str, expect_status: int) -> None:
                    response = _post(hub_module, fx)
                    if response["statusCode"] != expect_status:
                        raise RuntimeError(f"{step}: status {response['statusCode']}: {response.get('body')}")
                    result.steps[f"{provider}:{step}"] = Step(step, log.take(), f"HTTP {response['statusCode']}")

                def process(step: str, messages_: list[dict]) -> None:
                    started = time.time()
                    hub_module.process_inbound_queue(env.sqs_event(messages_), LambdaContext())
                    calls = log.take()
                    result.steps[f"{provider}:{step}"] = Step(step, calls)
                    for item in _dedupe_items(env, messages_):
                        result.dedupe_items.append((item, started))
                    env.acknowledge(messages_)
                    # the delivery jobs are not this benchmark's subject; drain them
                    env.acknowledge(env.take_inbound("delivery"), "delivery")

                # 1. a new customer: webhook, then the worker
                ingest(forged(first), "ingest rejected (wrong signature)", 401)
                ingest(first, "ingest accepted", 200)
                m1 = env.take_one()
                process("process new customer", m1)

                # 2. the same customer again, on a fresh worker (cold identifier cache)
                ingest(second, "ingest accepted (2nd)", 200)
                cold = env.hub()
                use_hub(cold)
                cold.inbound_queue, cold.processor
                log.clear()
                m2 = env.take_one()
                process("process returning customer, cold cache", m2)

                # 3. and again on the same worker (warm cache)
                ingest(third, "ingest accepted (3rd)", 200)
                m3 = env.take_one()
                process("process returning customer, warm cache", m3)

                # 4. message 3 is delivered again (an SQS redelivery, or the provider's retry after
                #    the FIFO dedupe window): the same body, after it was processed
                process("process duplicate", m3)
        finally:
            use_hub(None)
    import sys

    result.phone_modules = sorted(m for m in sys.modules if m.split(".")[0] == "phonenumbers")
    return result


def _dedupe_items(env: _Env, messages: list[dict]) -> list[dict]:
    items = []
    for message in messages:
        body = json.loads(message["Body"])
        key = f"msg:{body['provider']}:{body['provider_message_id']}"
        item = env.raw_dynamodb.get_item(TableName=env.urls["table"],
                                         Key={"pk": {"S": f"DEDUPE#{key}"}, "sk": {"S": "DEDUPE"}}).get("Item")
        if item:
            items.append(item)
    return items


_cache: Scenario | None = None


def cached_scenario() -> Scenario:
    global _cache
    if _cache is None:
        _cache = scenario()
    return _cache


#: phonenumbers modules the worker must not need (I5: phonenumberslite has none of them).
PHONE_EXTRAS = ("phonenumbers.geocoder", "phonenumbers.carrier", "phonenumbers.timezone", "phonenumbers.geodata",
                "phonenumbers.carrierdata", "phonenumbers.tzdata")


def run() -> list[Result]:
    scenario_ = cached_scenario()
    steps = scenario_.steps
    results = []
    for provider in ("twilio", "meta"):
        def get(step: str) -> Step:
            return steps[f"{provider}:{step}"]

        accepted = get("ingest accepted")
        results.append(count_result(f"A1 ingest calls, accepted webhook ({provider})", len(accepted.calls),
                                    "== 1", len(accepted.calls) == 1, describe(accepted.calls)))
        rejected = get("ingest rejected (wrong signature)")
        results.append(count_result(f"A1 ingest calls, wrong signature ({provider})", len(rejected.calls),
                                    "== 0", len(rejected.calls) == 0, f"{rejected.detail}; {describe(rejected.calls)}"))
        new = get("process new customer")
        results.append(count_result(f"process calls, new customer ({provider})", len(new.calls), "info", None,
                                    describe(new.calls)))
        for which in ("cold", "warm"):
            step = get(f"process returning customer, {which} cache")
            results.append(count_result(
                f"A2 process calls, returning customer, {which} cache ({provider})", len(step.calls),
                f"<= {A2_LIMIT}", len(step.calls) <= A2_LIMIT, describe(step.calls)))
        duplicate = get("process duplicate")
        results.append(count_result(f"A3 process calls, duplicate ({provider})", len(duplicate.calls), "== 1",
                                    len(duplicate.calls) == 1, describe(duplicate.calls)))
    extras = [m for m in scenario_.phone_modules if m.startswith(PHONE_EXTRAS)]
    data = [m for m in scenario_.phone_modules if m.startswith("phonenumbers.data.")]
    results.append(count_result(
        "I5 worker: phonenumbers geocoder/carrier/timezone loaded", len(extras), "== 0", not extras, unit="modules",
        note=f"{len(scenario_.phone_modules)} phonenumbers modules after processing, {len(data)} of them "
             f"metadata ({', '.join(m.rsplit('.', 1)[-1] for m in data[:6])}); extras: {', '.join(extras) or 'none'}",
    ))
    return results
