"""Issue 12 (T1 for outbound): AWS API calls per outbound send and per status callback, under moto.

The hub runs on runtime "aws" against moto's DynamoDB table and SQS FIFO queues (inbound,
delivery and outbound, each with its DLQ). Every client the hub gets from its `aws_client` factory
records `service:Operation` at botocore's `before-call` (once per call, retries not counted);
setup and inspection use separate, unwatched clients. The provider's HTTP call is counted apart:
the hub's shared `HttpClient` is replaced by one that records each request and answers Twilio's
create-message call with Twilio's own 201 (`tests/fixtures/twilio/outbound/api_created`).

Per variant of the configuration, (a) no destination and (b) one destination that takes message
events (`outbox`: `message.sent` and `message.status`):

* the customers: a Twilio SMS and a web chat message enter through the Chalice webhook route and
  the process worker (app.py's handlers), as in production (not counted);
* API (`POST /v1/messages` through `app(event, context)`, its own Hub, as the API Lambda has):
  `to.case_id` (the SMS customer's case: Twilio), `to.customer_id` (the web chat customer),
  `to.identifier` (the SMS customer's number), and an `Idempotency-Key` send and its repeat.
                                                                       target: <= 2 each
* send worker (`send_queue` in app.py, the `outbound` consumer, its own Hub), with the message
  actually sitting in moto's outbound queue: Twilio (provider call stubbed) and web chat (the
  hub is the provider: the visitor's outbox in the table).
                                                   target: <= 4 AWS calls plus 1 provider call
* a Twilio status callback for the message the hub sent (the `status_sms_delivered` fixture
  with the sid Twilio answered, re-signed as Twilio signs): ingest through the route
  (target == 1) and the process worker (target <= 2).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import tempfile
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from bench.aws_calls import CallLog, _Env, create_resources, describe
from bench.common import (
    REGION,
    SECRET_ENV,
    TWILIO_TOKEN,
    LambdaContext,
    NullOutput,
    Result,
    api_gateway_event,
    aws_settings,
    count_result,
    fake_credentials,
    fixture_event,
    load_fixture,
    Fixture,
)

NAME = "outbound"
API_LIMIT = 2
WORKER_LIMIT = 4
STATUS_INGEST = 1
STATUS_PROCESS_LIMIT = 2

API_KEY = "bench-api-key"
#: The Account SID of Twilio's own examples (the 201 fixture answers for it).
TWILIO_ACCOUNT_SID = "AC" + "a" * 32
WEBCHAT_SECRET = "test_webchat_identity_secret"  # the web chat fixtures' site secret
OUTBOUND_SECRET_ENV = {**SECRET_ENV, "BENCH_WEBCHAT_SECRET": WEBCHAT_SECRET,
                       "BENCH_LINK_SECRET": "bench-link-secret-0123456789abcdef"}

#: The hub of this benchmark: Twilio (listening and sending), the web chat site of the fixtures,
#: an API key that may send; `{destinations}` is empty or one destination taking message events.
CONFIG_YAML = """
identity:
  default_region: US
channels:
  twilio:
    auth_tokens: ["env:BENCH_TWILIO_TOKEN"]
    public_url: https://hub.example.com/webhooks/twilio
    account_sid: {account_sid}
  webchat:
    sites:
      - id: shop
        identity_secrets: ["env:BENCH_WEBCHAT_SECRET"]
        allowed_origins: ["https://shop.example.com"]
# Signs the web chat's visitor tokens (required on AWS: every container must verify them).
media: {{enabled: false, link_secret: ["env:BENCH_LINK_SECRET"]}}
api_keys:
  - name: bench
    sha256: {key_hash}
    scopes: [messages:send]
destinations: {destinations}
"""

#: (step, request body for the seeded customers, Idempotency-Key, expected HTTP status).
API_SENDS = (
    ("API send, to.case_id (twilio sms)",
     lambda c: {"to": {"case_id": c.sms_case}, "text": "Ihr Paket kommt morgen."}, None, 202),
    ("API send, to.customer_id (webchat)",
     lambda c: {"to": {"customer_id": c.chat_customer}, "text": "Wir sind gleich für Sie da."}, None, 202),
    ("API send, to.identifier (twilio sms)",
     lambda c: {"to": {"identifier": f"phone:{c.phone}"}, "channel": "sms", "text": "Noch eine Frage?"}, None, 202),
    ("API send, Idempotency-Key, first (webchat)",
     lambda c: {"to": {"customer_id": c.chat_customer}, "text": "Nur einmal."}, "order-42", 202),
    ("API send, Idempotency-Key, repeat (webchat)",
     lambda c: {"to": {"customer_id": c.chat_customer}, "text": "Nur einmal."}, "order-42", 200),
)

VARIANTS = {
    "no destinations": "[]",
    "destinations take message events": "[{name: outbox, type: outbox, path: outbox.jsonl}]",
}


def outbound_config(destinations: str = "[]"):
    from chalicelib.hubconfig import parse_config

    text = CONFIG_YAML.format(account_sid=TWILIO_ACCOUNT_SID, key_hash=hashlib.sha256(API_KEY.encode()).hexdigest(),
                              destinations=destinations)
    return parse_config(text, source="bench-outbound.yaml", allow_inline_secrets=False)


# --- the provider, stubbed -----------------------------------------------------------------------


class RecordingHttp:
    """The hub's `HttpClient` with the network replaced: every request is recorded, and Twilio's
    create-message call gets the exact 201 Twilio answers (the fixture's bytes)."""

    def __init__(self) -> None:
        created = load_fixture_file("twilio", "outbound/api_created")
        self._created = created
        self.requests: list[tuple[str, str]] = []

    @property
    def sid(self) -> str:
        return json.loads(self._created[0])["sid"]

    def request(self, method: str, url: str, *, headers=None, body=None, timeout=None):
        from chalicelib.adapters.connectors.http import HttpResponse

        self.requests.append((method, url))
        if method == "POST" and url.endswith("/Messages.json"):
            body_bytes, meta = self._created
            return HttpResponse(status=meta["status"], headers=dict(meta["headers"]), body=body_bytes)
        return HttpResponse(status=404, headers={}, body=b"")

    def take(self) -> list[str]:
        taken = [f"{m} {u.split('://', 1)[-1].split('/', 1)[0]}" for m, u in self.requests]
        self.requests.clear()
        return taken

    def close(self) -> None:
        pass


def load_fixture_file(provider: str, name: str) -> tuple[bytes, dict]:
    from tests.support.fixtures import FIXTURES

    return (FIXTURES / provider / f"{name}.body").read_bytes(), json.loads((FIXTURES / provider / f"{name}.json").read_text())


def twilio_status_for(sid: str) -> Fixture:
    """Twilio's delivered-status callback for the message `sid`, signed as Twilio signs it (the
    URL followed by the sorted name+value pairs, HMAC-SHA1 with the auth token)."""
    fx = load_fixture("twilio", "status_sms_delivered")
    old = dict(parse_qsl(fx.body.decode()))["MessageSid"]
    body = fx.body.replace(old.encode(), sid.encode())
    pairs = parse_qsl(body.decode(), keep_blank_values=True)
    data = fx.url + "".join(k + v for k, v in sorted(pairs))
    signature = base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()
    return Fixture(fx.provider, fx.name, body, {**fx.headers, "x-twilio-signature": signature}, fx.hook, fx.url)


class SendContext(LambdaContext):
    """The send Lambda's context: 60 s like `deliver` (the worker starts no message with less than
    `DELIVER_RESERVE_SECONDS`, 50 s, left)."""

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def send_event(body: dict, idempotency_key: str | None = None) -> dict:
    headers = {"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
    if idempotency_key is not None:
        headers["idempotency-key"] = idempotency_key
    return api_gateway_event("/v1/messages", {}, json.dumps(body).encode(), headers)


# --- moto resources ------------------------------------------------------------------------------


def create_outbound_resources(session, stage: str) -> dict[str, str]:
    """The table and queues of `aws_calls.create_resources`, plus the outbound FIFO queue and
    its DLQ (visibility and receives like the delivery queue's: a send may retry inline)."""
    urls = create_resources(session, stage)
    sqs = session.client("sqs")
    dlq = sqs.create_queue(QueueName=f"hub-{stage}-outbound-dlq.fifo", Attributes={
        "FifoQueue": "true", "MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    urls["outbound_dlq"] = dlq
    urls["outbound"] = sqs.create_queue(QueueName=f"hub-{stage}-outbound.fifo", Attributes={
        "FifoQueue": "true", "DeduplicationScope": "messageGroup", "FifoThroughputLimit": "perMessageGroupId",
        "VisibilityTimeout": "360", "MessageRetentionPeriod": "1209600",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 8}),
    })["QueueUrl"]
    return urls


class OutboundEnv(_Env):
    def __init__(self, session, urls, log: CallLog, data_dir: str, destinations: str) -> None:
        super().__init__(session, urls, log, data_dir)
        self.config = outbound_config(destinations)
        self.http = RecordingHttp()

    def hub(self):
        from chalicelib.adapters.connectors.base import ConnectorRuntime
        from chalicelib.bootstrap import Hub

        urls = self.urls
        settings = aws_settings(
            self.data_dir, stage=urls["table"].removeprefix("hub-"), table_name=urls["table"],
            inbound_queue_url=urls["inbound"], delivery_queue_url=urls["delivery"],
            delivery_dlq_url=urls["delivery_dlq"], outbound_queue_url=urls["outbound"],
            outbound_dlq_url=urls["outbound_dlq"], environ=dict(OUTBOUND_SECRET_ENV),
        )
        hub = Hub(settings, config=self.config,
                  aws_client=lambda service: self.log.watch(self.session.client(service)))
        hub.__dict__["connector_runtime"] = ConnectorRuntime(data_dir=str(self.data_dir), http=self.http,
                                                             aws_client=hub.aws_client)
        return hub

    def take_all(self, queue: str) -> list[dict]:
        """Every message of a FIFO queue, one receive per message (a group's next message shows
        only once the one before it is deleted, as after Lambda acknowledged it)."""
        messages = []
        while batch := self.take_inbound(queue):
            messages.extend(batch)
            self.acknowledge(batch, queue)
        return messages


# --- the scenario --------------------------------------------------------------------------------


@dataclass
class Count:
    calls: list[str]
    provider_calls: list[str] = field(default_factory=list)
    detail: str = ""


@dataclass
class Outcome:
    counts: dict[tuple[str, str], Count] = field(default_factory=dict)


def _check(response: dict, expected: int, what: str) -> dict:
    if response.get("statusCode") != expected:
        raise RuntimeError(f"{what}: HTTP {response.get('statusCode')} (expected {expected}): {response.get('body')}")
    return response


def prepare_logging() -> None:
    """Install the hub's log handler on the real stdout before any Hub is built inside
    `NullOutput` (it is installed once per process, on whatever stdout is then: a Hub built first
    inside `NullOutput` would leave it on a closed file for the next benchmark)."""
    from chalicelib.observability import configure_logging

    configure_logging(aws_settings(tempfile.gettempdir()))


def scenario() -> Outcome:
    fake_credentials()
    prepare_logging()
    import boto3
    from moto import mock_aws

    import app as hub_module
    from chalicelib.bootstrap import use_hub

    outcome = Outcome()
    log = CallLog()
    context, send_context = LambdaContext(), SendContext()
    with mock_aws(), NullOutput():
        session = boto3.session.Session(region_name=REGION)
        try:
            for n, (variant, destinations) in enumerate(VARIANTS.items()):
                env = OutboundEnv(session, create_outbound_resources(session, f"out{n}"), log,
                                  tempfile.mkdtemp(prefix="hub-bench-outbound-"), destinations)

                def record(step: str, *, provider: bool = False, detail: str = "") -> None:
                    calls = log.take()
                    providers = env.http.take()
                    outcome.counts[(variant, step)] = Count(calls, providers if provider else [], detail)
                    if providers and not provider:
                        raise RuntimeError(f"{variant}: {step} called a provider: {providers}")

                # 1. Two customers write: by SMS (Twilio) and on the web chat; processed as usual.
                worker = env.hub()
                seeded = seed_customers(env, worker, context)
                log.clear()

                # 2. The API side, on its own Hub (the API Lambda's), built before counting.
                api = env.hub()
                use_hub(api)
                api.messages_api, api.outbound_queue  # noqa: B018 - init is not per message
                log.clear()
                for step, body, key, status in API_SENDS:
                    answer = _check(hub_module.app(send_event(body(seeded), key), context), status, step)
                    record(step, detail=f"HTTP {answer['statusCode']}")

                # 3. The send worker, on its own Hub, message by message as Lambda hands them over.
                sender = env.hub()
                use_hub(sender)
                sender.send_worker, sender.outbound_queue  # noqa: B018
                log.clear()
                queued = env.take_all("outbound")
                if len(queued) != 4:
                    raise RuntimeError(f"{variant}: expected 4 messages on the outbound queue, found {len(queued)}")
                seen: dict[str, int] = {}
                first_twilio = None
                for message in queued:
                    provider = json.loads(message["Body"])["provider"]
                    seen[provider] = seen.get(provider, 0) + 1
                    if seen[provider] > 1:
                        continue  # one of each is counted; the rest are sent uncounted
                    hub_module.send_queue(env.sqs_event([message], "outbound"), send_context)
                    record(f"worker send ({provider})", provider=True)
                    if provider == "twilio":
                        first_twilio = message
                for message in queued:  # the rest (the counted ones again: no-ops)
                    hub_module.send_queue(env.sqs_event([message], "outbound"), send_context)
                log.take(), env.http.take()
                # The same message delivered again (an SQS redelivery after a lost acknowledgement).
                hub_module.send_queue(env.sqs_event([first_twilio], "outbound"), send_context)
                record("worker send, redelivered (twilio)", provider=True)
                env.take_all("delivery")

                # 4. Twilio reports the message delivered: the status callback, then the worker.
                use_hub(worker)
                log.clear()
                status = twilio_status_for(env.http.sid)
                _check(hub_module.app(fixture_event(status), context), 200, "status callback")
                record("status callback ingest (twilio)")
                messages = env.take_one()
                hub_module.process_inbound_queue(env.sqs_event(messages), context)
                record("status callback processing (twilio)")
                env.acknowledge(messages)
                contact = _sent_contact(env, env.http.sid)
                outcome.counts[(variant, "status callback processing (twilio)")].detail = (
                    f"contact status after the callback: {contact}")
        finally:
            use_hub(None)
    return outcome


@dataclass(frozen=True)
class Customers:
    phone: str
    #: The open case of the SMS customer (Twilio).
    sms_case: str
    #: The web chat visitor's customer.
    chat_customer: str


def seed_customers(env: OutboundEnv, hub, context) -> Customers:
    """A Twilio SMS and a web chat message through the webhook route and the process worker,
    as in production; their customers, with `hub` left installed."""
    import app as hub_module
    from chalicelib.bootstrap import use_hub

    use_hub(hub)
    sms, chat = load_fixture("twilio", "sms_text"), load_fixture("webchat", "anonymous_text")
    for fx, status in ((sms, 200), (chat, 202)):
        _check(hub_module.app(fixture_event(fx), context), status, f"{fx.name} webhook")
        messages = env.take_one()
        hub_module.process_inbound_queue(env.sqs_event(messages), context)
        env.acknowledge(messages)
    env.take_all("delivery")
    phone = dict(parse_qsl(sms.body.decode()))["From"]
    _, case_id = _customer(hub, f"phone:{phone}")
    visitor = json.loads(chat.body)
    chat_customer, _ = _customer(hub, f"webchat:{visitor['site_id']}/{visitor['visitor_id']}")
    return Customers(phone, case_id, chat_customer)


def _customer(hub, identifier: str) -> tuple[str, str]:
    """The customer holding `identifier` and its open case (read before counting)."""
    from chalicelib.domain.identifiers import Identifier

    key = Identifier.parse(identifier, default_region="US")
    owner = hub.store.find_customer_ids([key]).get(key.key)
    customer = hub.store.get_customer(owner) if owner else None
    if customer is None or customer.open_case is None:
        raise RuntimeError(f"no customer with an open case holds {identifier}")
    return customer.id, customer.open_case.id


def _sent_contact(env: OutboundEnv, sid: str) -> str:
    from chalicelib.adapters.store.dynamodb import DynamoDbStore

    store = DynamoDbStore(env.urls["table"], env.raw_dynamodb)
    contact_id = store.find_sent("twilio", sid)
    contact = store.get_contact(contact_id) if contact_id else None
    if contact is None:
        return "not found"
    from chalicelib.domain.outbound import with_reported

    reported = with_reported(contact, store.list_statuses("twilio", sid))
    return " -> ".join(change.status.value for change in reported.status_history)


_cache: Outcome | None = None


def cached_scenario() -> Outcome:
    global _cache
    if _cache is None:
        _cache = scenario()
    return _cache


def run() -> list[Result]:
    counts = cached_scenario().counts
    results: list[Result] = []
    for variant in VARIANTS:
        suffix = "" if variant == "no destinations" else ", with message-event destination"

        def row(step: str, target: str, met) -> None:
            count = counts[(variant, step)]
            note = describe(count.calls)
            if count.provider_calls or step.startswith("worker"):
                note += f"; provider calls: {describe(count.provider_calls)}"
            if count.detail:
                note += f"; {count.detail}"
            results.append(count_result(f"{step}{suffix}", len(count.calls), target, met(count), note))

        for step, *_ in API_SENDS:
            first = counts[(next(iter(VARIANTS)), step)]
            if variant != next(iter(VARIANTS)) and counts[(variant, step)].calls == first.calls:
                continue  # the API does not look at destinations: shown once unless they differ
            row(step, f"<= {API_LIMIT}", lambda c: len(c.calls) <= API_LIMIT)
        for provider in ("twilio", "webchat"):
            expected = 1 if provider == "twilio" else 0
            row(f"worker send ({provider})", f"<= {WORKER_LIMIT} + {expected} provider",
                lambda c, e=expected: len(c.calls) <= WORKER_LIMIT and len(c.provider_calls) == e)
        redelivered = counts[(variant, "worker send, redelivered (twilio)")]
        results.append(count_result(
            f"worker send, redelivered (twilio){suffix}", len(redelivered.provider_calls), "== 0", not redelivered.provider_calls,
            f"AWS calls: {len(redelivered.calls)} ({describe(redelivered.calls)})", unit="provider calls"))
        row("status callback ingest (twilio)", f"== {STATUS_INGEST}", lambda c: len(c.calls) == STATUS_INGEST)
        row("status callback processing (twilio)", f"<= {STATUS_PROCESS_LIMIT}",
            lambda c: len(c.calls) <= STATUS_PROCESS_LIMIT)
    return results

