"""The soak's scenario on the AWS runtime under moto (issue 14 §2): signed webhooks over every
channel provider (`soak.providers`) from many senders, 5 % of them sent twice, through app.py's
webhook route into SQS FIFO, then the real Lambda handlers (`process_inbound`, `deliver`) fed
with SQS events built from what the queues hand out, while

- workers crash at a random step of a random share of invocations: an exception that no handler
  catches (`WorkerCrash`, a BaseException like the Lambda runtime's kill) raised just before or
  just after a random AWS call of the invocation: after the store's write and before the
  queue's delete, after the delivery and before the store records it, between two messages of a
  batch... The event source mapping deletes nothing of a crashed batch; its messages come back
  after their visibility timeout (moto's visibility is moved to 0 instead of waiting), and the
  next invocation runs on a new `Hub` (a new container: nothing cached survives);
- the destination answers 5xx and 429 (with Retry-After) to a share of deliveries.

Then every acknowledged webhook is exactly one contact, delivered exactly once (by provider
message id against the destination's log, `soak.check`), and both dead-letter queues are empty.

moto's own cost grows with what it holds: its TransactWriteItems deep-copies every table it
names once per item (replaced here by a backup of the items a transaction names,
`tests/support/moto_transactions.py`, with the same all-or-nothing outcome), and its SQS calls walk
the queue. `make test` runs MESSAGES=120 (about 12 s);
`HUB_AWS_SOAK=2000 pytest -s --timeout=0 tests/integration/test_soak_aws.py` runs the issue's 2,000
and prints its progress.
"""

from __future__ import annotations

import functools
import json
import os
import random
import time
from collections import Counter

import boto3
import chalice.test
import pytest
from chalice.local import LambdaContext
from chalice.test import Client
from moto import mock_aws

from chalicelib.bootstrap import Hub, use_hub
from chalicelib.errors import BatchIncompleteError
from chalicelib.hubconfig import _is_secret_field
from chalicelib.settings import Settings
from soak import Report, check, providers
from tests.support.aws import create_table
from tests.support.moto_transactions import item_level_transaction_backups
from tests.support.receiver import Answer, Receiver

REGION = "eu-central-1"
MESSAGES = int(os.environ.get("HUB_AWS_SOAK", "120"))
SENDERS = max(10, MESSAGES // 8)
DUPLICATE_SHARE = 0.05
#: Share of worker invocations that crash (at a random step), and of deliveries answered 5xx/429.
CRASH_SHARE = 0.2
FAULT_SHARE = 0.10
#: SQS receives before the DLQ: high enough that crashes and faults never dead-letter a message
#: here (a dead letter would be replayed by an operator; the local soak covers that path).
MAX_RECEIVES = 50
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class WorkerCrash(BaseException):
    """The worker dies (timeout, out of memory, the container is recycled): nothing catches it."""


class CrashPlan:
    """Decides, per invocation, whether and where it crashes: at a random AWS call of the
    invocation, just before or just after it (botocore's `before-call` / `after-call` events), or
    after the handler returned and before the event source mapping deleted the batch. The point is
    drawn over the number of calls the worker's invocations made so far (on average)."""

    def __init__(self, rng: random.Random, share: float) -> None:
        self.rng, self.share = rng, share
        self.armed = False
        self.worker = ""
        self.at = self.calls = 0
        self.after = False
        self.crashes: list[str] = []
        self._calls_made: dict[str, list[int]] = {}

    def arm(self, worker: str) -> None:
        made = self._calls_made.setdefault(worker, [10, 1])
        self.worker, self.calls = worker, 0
        self.armed = self.rng.random() < self.share
        self.at, self.after = self.rng.randrange(max(1, round(made[0] / made[1])) + 1), self.rng.random() < 0.5

    def finished(self) -> None:
        """The handler returned: crash now if the drawn point lies beyond its last call."""
        made = self._calls_made[self.worker]
        made[0], made[1] = made[0] + self.calls, made[1] + 1
        if self.armed:
            self._crash("after the handler, before the batch's delete")

    def disarm(self) -> None:
        self.armed = False

    def watch(self, client) -> None:
        client.meta.events.register("before-call.*.*", functools.partial(self._step, after=False))
        client.meta.events.register("after-call.*.*", functools.partial(self._step, after=True))

    def _step(self, model, after: bool, **_) -> None:
        if after:
            self.calls += 1
        if self.armed and self.calls - (1 if after else 0) == self.at and after == self.after:
            self._crash(f"{'after' if after else 'before'} {model.name}")

    def _crash(self, step: str) -> None:
        self.armed = False
        self.crashes.append(f"{self.worker}: {step}")
        raise WorkerCrash(step)


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setattr(chalice.test, "LambdaContext", functools.partial(LambdaContext, max_runtime_ms=60_000))
    with mock_aws(), item_level_transaction_backups(), Receiver() as receiver:
        session = boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
        clients = {name: session.client(name) for name in ("dynamodb", "sqs", "s3")}
        sqs = clients["sqs"]
        create_table(clients["dynamodb"], "hub-soak")
        urls = {}
        for role in ("inbound", "delivery"):
            dlq = sqs.create_queue(QueueName=f"hub-soak-{role}-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            urls[role] = sqs.create_queue(QueueName=f"hub-soak-{role}.fifo", Attributes={
                "FifoQueue": "true", "VisibilityTimeout": "180",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": MAX_RECEIVES})})["QueueUrl"]
            urls[f"{role}-dlq"] = dlq
        clients["s3"].create_bucket(Bucket="hub-soak-bucket", CreateBucketConfiguration={"LocationConstraint": REGION})
        document, environ = _secrets_by_reference({
            **providers.hub_config(),
            "destinations": [{"name": "crm", "type": "webhook", "url": receiver.url, "secrets": [WHSEC],
                              "timeout_seconds": 5, "case_events": False}],
            # One attempt per invocation: a failed delivery goes back to the queue (and is received
            # again at once here) instead of waiting inline.
            "delivery": {"attempts_per_invocation": 1, "max_inline_wait_seconds": 1, "max_receives": MAX_RECEIVES,
                         "circuit_failure_threshold": 5, "circuit_cooldown_seconds": 1,
                         "circuit_max_cooldown_seconds": 1},
            "media": {"enabled": False},
            "enrichment": {"language": {"enabled": False}},
        })
        config = tmp_path / "hub.json"
        config.write_text(json.dumps(document))
        settings = Settings(
            runtime="aws", stage="soak", config_path=str(config), table_name="hub-soak",
            inbound_queue_url=urls["inbound"], delivery_queue_url=urls["delivery"],
            delivery_dlq_url=urls["delivery-dlq"], bucket="hub-soak-bucket", data_dir=str(tmp_path), environ=environ,
        )
        crashes = CrashPlan(random.Random(17), CRASH_SHARE)
        for client in clients.values():
            crashes.watch(client)

        def new_container() -> Hub:
            hub = Hub(settings, aws_client=clients.__getitem__)
            use_hub(hub)
            return hub

        new_container()
        from app import app

        try:
            with Client(app) as client:
                yield client, sqs, urls, receiver, crashes, new_container
        finally:
            use_hub(None)


def _secrets_by_reference(document, environ: dict | None = None, key: str = ""):
    """`document` with every inline secret replaced by an `env:` reference (a deployed hub refuses
    inline secrets), and the environment that resolves them."""
    environ = {} if environ is None else environ
    if isinstance(document, dict):
        return {k: _secrets_by_reference(v, environ, k)[0] for k, v in document.items()}, environ
    if isinstance(document, list):
        return [_secrets_by_reference(v, environ, key)[0] for v in document], environ
    if isinstance(document, str) and _is_secret_field(key):
        name = f"SOAK_SECRET_{len(environ)}"
        environ[name] = document
        return f"env:{name}", environ
    return document, environ


class Worker:
    """One queue's Lambda function behind its event source mapping."""

    def __init__(self, client, sqs, url: str, function: str, *, batch_size: int, crashes: CrashPlan,
                 new_container) -> None:
        self.client, self.sqs, self.url, self.function = client, sqs, url, function
        self.batch_size, self.crashes, self.new_container = batch_size, crashes, new_container
        self.invocations = self.incomplete = 0

    def round(self) -> bool:
        """One receive and invocation; False when the queue had nothing visible."""
        answer = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=self.batch_size,
                                          AttributeNames=["All"])
        messages = answer.get("Messages", [])
        if not messages:
            return False
        records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                    "attributes": m["Attributes"], "eventSource": "aws:sqs", "messageAttributes": {}}
                   for m in messages]
        self.invocations += 1
        self.crashes.arm(self.function)
        try:
            self.client.lambda_.invoke(self.function, {"Records": records})
            self.crashes.finished()
        except WorkerCrash:
            self.crashes.disarm()
            self.new_container()  # the next invocation starts cold
            self._come_back(records)
            return True
        except BatchIncompleteError:  # the handler deleted what it finished; the rest comes back
            self.crashes.disarm()
            self.incomplete += 1
            self._come_back(records)
            return True
        self.crashes.disarm()
        for record in records:  # the event source mapping deletes a batch whose invocation succeeded
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=record["receiptHandle"])
        return True

    def _come_back(self, records: list[dict]) -> None:
        """Their visibility timeout (or the handler's back-off) has passed: visible again."""
        for record in records:
            try:
                self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=record["receiptHandle"],
                                                   VisibilityTimeout=0)
            except self.sqs.exceptions.ClientError:
                pass  # deleted by the handler: it finished that one


def _progress(line: str) -> None:
    """For the long variant (HUB_AWS_SOAK=2000): shown with `pytest -s`."""
    print(line, flush=True)


def _whereabouts(pmid: str, sqs, urls: dict[str, str], receiver) -> str:
    """Where a lost message's traces are, for the failure message: the destination's answers to
    it, the queues still holding it, and the table's items naming it."""
    answers = [request.answered for request in receiver.requests if pmid.encode() in request.body]
    queued = []
    for role, url in urls.items():
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                           AttributeNames=["All"]).get("Messages", []):
            if pmid in message["Body"]:
                queued.append((role, message["Attributes"].get("ApproximateReceiveCount")))
    dynamodb = boto3.client("dynamodb", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    items, start = [], {}
    while True:
        page = dynamodb.scan(TableName="hub-soak", **start)
        items += [(item["pk"]["S"], item["sk"]["S"], {k: v for k, v in item.items() if k in ("state", "status")})
                  for item in page["Items"] if pmid in json.dumps(item)]
        if "LastEvaluatedKey" not in page:
            break
        start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}
    return f"{pmid}: destination answered {answers}; queued {queued}; items {items}"


def _depth(sqs, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


@pytest.mark.slow
def test_every_accepted_webhook_is_one_contact_and_one_delivery_through_worker_crashes_and_faults(world):
    client, sqs, urls, receiver, crashes, new_container = world
    rng = random.Random(13)
    started = time.monotonic()
    acknowledged: set[str] = set()
    duplicates = 0
    for index in range(MESSAGES):
        webhook = providers.build(index, rng.randrange(SENDERS))
        copies = 2 if rng.random() < DUPLICATE_SHARE else 1
        for _ in range(copies):
            answer = client.http.post(webhook.path, headers=webhook.headers, body=webhook.body)
            assert 200 <= answer.status_code < 300, (webhook.path, answer.status_code, answer.body[:300])
        acknowledged.add(webhook.message_id)
        duplicates += copies - 1
        if (index + 1) % 500 == 0:
            _progress(f"{index + 1} webhooks posted, {time.monotonic() - started:.0f} s")
    posted = time.monotonic()

    statuses = [Answer(500) if pick < FAULT_SHARE / 2 else Answer(429, headers={"Retry-After": "1"})
                if pick < FAULT_SHARE else Answer(200, b'{"ok":true}')
                for pick in (rng.random() for _ in range(MESSAGES * 2))]
    receiver.script = statuses
    process = Worker(client, sqs, urls["inbound"], "process_inbound", batch_size=10, crashes=crashes, new_container=new_container)
    deliver = Worker(client, sqs, urls["delivery"], "deliver", batch_size=1, crashes=crashes, new_container=new_container)
    idle, next_progress = 0, 500
    while idle < 3:  # both run every round: deliveries overlap processing
        moved = process.round() | deliver.round()
        idle = 0 if moved else idle + 1
        if process.invocations + deliver.invocations >= next_progress:
            next_progress += 500
            _progress(f"{process.invocations} process and {deliver.invocations} deliver invocations, "
                      f"{len(receiver.requests)} deliveries tried, {time.monotonic() - started:.0f} s")
        if not moved and _depth(sqs, urls["inbound"]) + _depth(sqs, urls["delivery"]):
            idle, _ = 0, time.sleep(0.2)  # a back-off (an open circuit) still holds something
    drained = time.monotonic()

    log = []
    for request in receiver.requests:
        try:
            contact = json.loads(request.body)["data"]["contact"]
        except (ValueError, KeyError, TypeError):
            continue
        log.append((request.headers.get("webhook-id", ""), contact["provider_message_id"], contact["id"],
                    request.answered))
    report = Report(accepted=len(acknowledged), duplicates_sent=duplicates)
    check(report, log, acknowledged)
    print(f"\nAWS soak: {MESSAGES} webhooks (+{duplicates} twice) over {len(providers.BUILDERS)} channels; "
          f"{len(crashes.crashes)} worker crashes {dict(Counter(crashes.crashes))}, {process.incomplete + deliver.incomplete} incomplete batches, "
          f"{process.invocations} process and {deliver.invocations} deliver invocations; "
          f"destination answers {sorted(report.destination_answers.items())}; "
          f"ingest {posted - started:.0f} s, workers {drained - posted:.0f} s")

    assert crashes.crashes, "no worker crashed: the scenario did not run"
    assert report.missing == [], (f"acknowledged but never delivered: {report.missing[:5]}\n"
                                  + "\n".join(_whereabouts(pmid, sqs, urls, receiver) for pmid in report.missing[:3]))
    assert report.doubled_contacts == [], f"one message, two contacts: {report.doubled_contacts[:5]}"
    assert report.doubled_deliveries == [], f"one contact delivered under two ids: {report.doubled_deliveries[:5]}"
    assert report.contacts == report.delivered == MESSAGES
    assert _depth(sqs, urls["inbound-dlq"]) == _depth(sqs, urls["delivery-dlq"]) == 0
