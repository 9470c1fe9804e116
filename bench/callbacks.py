"""Issue 13: AWS API calls per destination callback (two-way sync), under moto, and the CPU of a
callback at ingest against a webhook's, measured in the same run.

**Calls.** The hub runs on runtime "aws" against moto's table and FIFO queues (inbound, delivery,
outbound, each with its DLQ), counted as in `aws_calls` (a botocore `before-call` hook on every
client the hub's `aws_client` factory gives; setup and inspection use unwatched clients). Its
configuration: Meta's WhatsApp (receiving and sending, Graph played by a local `Receiver`), a
Zendesk destination with `callbacks` (Zendesk played by the stateful local fake of the tests,
`tests/support/fake_zendesk.py`), and an `outbox` destination, which takes case and message events.

1. The customer's stored WhatsApp message (`meta/whatsapp_text`) goes through the webhook route,
   the process worker and the deliverer: a Zendesk ticket, its ref and CASEREF# link (not counted).
2. An agent answers in Zendesk; the reply trigger's body (`ZendeskCallbacks.trigger_body`, filled
   in as Zendesk renders it) is signed as Zendesk signs and posted to `POST /callbacks/zendesk`
   through `app(event, context)`: **ingest** (target == 1); the same body with a forged signature
   (target == 0, and 401).
3. app.py's `process_inbound_queue` on the callback's message: **processing** (target <= 4; the
   Zendesk read-back is counted apart); the same message delivered again while the reply is still
   queued (info: it is queued again, see `MessageService._repeated`).
4. app.py's `send_queue` on the reply (info: the provider send the issue adds to the 4); then the
   callback's message delivered once more, now that the reply was sent (target <= 4, nothing
   queued).
5. The ticket is solved: the status trigger, ingest (== 1) and processing (<= 4, the case closed,
   `case.closed` queued).

**CPU.** One Hub on runtime "aws" with the SQS network answered at botocore's `before-send` (as
`ingest_cpu`), a fixed clock (so the signed timestamp stays in the replay window), and
interleaved rounds:

* the callback route (`POST /callbacks/zendesk`, the reply trigger's body) against the webhook
  route (`POST /webhooks/meta`, `whatsapp_text`): the same shape of work (verify, parse, one
  `SendMessageBatch`), so the target is the same tolerance as I1/I2: <= 1.2x;
* verify + parse alone (`ZendeskCallbacks.verify`/`parse` against the Meta adapter's `verify`/`parse`
  on the same bytes the routes get): info, to show where a difference would come from.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone

from bench.aws_calls import CallLog, describe
from bench.common import (
    REGION,
    SECRET_ENV,
    LambdaContext,
    NullOutput,
    Result,
    api_gateway_event,
    aws_settings,
    count_result,
    fake_credentials,
    fixture_event,
    interleaved,
    load_fixture,
    median,
    paired_ratio,
    ratio_result,
    us,
)

NAME = "callbacks"
INGEST_TARGET = 1
PROCESS_LIMIT = 4
ROUTE_LIMIT = 1.2

ZENDESK_SECRET = "bench-zendesk-webhook-signing-secret"
CALLBACK_ENV = {**SECRET_ENV, "BENCH_ZENDESK_SECRET": ZENDESK_SECRET, "BENCH_ZENDESK_TOKEN": "bench-zendesk-token",
                "BENCH_META_TOKEN": "bench-meta-system-user-token", "BENCH_LINK_SECRET": "bench-link-secret-0123456789"}
#: tests/fixtures/meta/whatsapp_text was written at this time; the hub's clock starts a minute later
#: (inside WhatsApp's 24-hour window, so the agent's reply may go out free-form).
WRITTEN = datetime(2026, 1, 1, tzinfo=timezone.utc)
PHONE_NUMBER_ID = "106540352242922"
OUTBOUND_WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI0QUFCQ0RFRjAxMjM0NTY3OAA="

CONFIG_YAML = """
identity:
  default_region: US
channels:
  meta:
    app_secrets: ["env:BENCH_META_SECRET"]
    verify_tokens: ["env:BENCH_META_VERIFY"]
    api_base_url: {graph}
    whatsapp: {{access_tokens: ["env:BENCH_META_TOKEN"], numbers: {{"{number}": {{}}}}}}
media: {{enabled: false, link_secret: ["env:BENCH_LINK_SECRET"]}}
destinations:
  - name: zendesk
    type: zendesk
    base_url: {zendesk}
    auth: {{type: basic, username: hub@acme.example/token, password: "env:BENCH_ZENDESK_TOKEN"}}
    callbacks:
      secrets: ["env:BENCH_ZENDESK_SECRET"]
      hub_author_ids: ["{hub_user}"]
  - name: outbox
    type: outbox
    path: outbox.jsonl
"""


def callback_config(graph: str, zendesk: str):
    from chalicelib.hubconfig import parse_config
    from tests.support.fake_zendesk import HUB_USER_ID

    text = CONFIG_YAML.format(graph=graph, number=PHONE_NUMBER_ID, zendesk=zendesk, hub_user=HUB_USER_ID)
    return parse_config(text, source="bench-callbacks.yaml", allow_inline_secrets=False)


# --- Zendesk's side ------------------------------------------------------------------------------


def trigger(event: str, ticket: str, case_id: str, *, status: str, updated_at: str, at: datetime,
            secret: str = ZENDESK_SECRET) -> tuple[bytes, dict[str, str]]:
    """The trigger's body as Zendesk renders `ZendeskCallbacks.trigger_body(event)`, and the headers
    Zendesk signs it with (base64 HMAC-SHA256 of the timestamp followed by the body)."""
    from chalicelib.adapters.callbacks.zendesk import BODY_FIELDS
    from tests.support.fake_zendesk import AGENT_ID

    values = {"ticket.id": ticket, "ticket.external_id": case_id, "ticket.status": status, "ticket.priority": "normal",
              "ticket.assignee.id": str(AGENT_ID), "ticket.assignee.name": "Alex Agent",
              "ticket.updated_at_with_timestamp": updated_at, "current_user.id": str(AGENT_ID),
              "current_user.role": "agent"}
    body = json.dumps({"hub_event": event, **{name: values[template.strip("{}")]
                                              for name, template in BODY_FIELDS.items()}}).encode()
    timestamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    signature = base64.b64encode(hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()).decode()
    return body, {"content-type": "application/json", "x-zendesk-webhook-signature": signature,
                  "x-zendesk-webhook-signature-timestamp": timestamp, "user-agent": "Zendesk Webhook"}


def callback_event(body: bytes, headers: dict[str, str]) -> dict:
    return api_gateway_event("/callbacks/{destination}", {"destination": "zendesk"}, body, headers)


def whatsapp_accepted():
    from tests.support.receiver import Answer

    body = {"messaging_product": "whatsapp", "contacts": [{"input": "16505551234", "wa_id": "16505551234"}],
            "messages": [{"id": OUTBOUND_WAMID, "message_status": "accepted"}]}
    return Answer(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


# --- the scenario --------------------------------------------------------------------------------


@dataclass
class Count:
    calls: list[str]
    vendor_calls: list[str] = field(default_factory=list)
    detail: str = ""


@dataclass
class Outcome:
    counts: dict[str, Count] = field(default_factory=dict)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def scenario() -> Outcome:
    fake_credentials()
    from bench.outbound import create_outbound_resources, prepare_logging

    prepare_logging()
    import boto3
    from moto import mock_aws

    import app as hub_module
    from bench.aws_calls import _Env
    from chalicelib.bootstrap import Hub, use_hub
    from tests.support.fake_zendesk import FakeZendesk
    from tests.support.receiver import Receiver

    outcome = Outcome()
    log = CallLog()
    context = LambdaContext()
    from datetime import timedelta

    clock = Clock(WRITTEN + timedelta(minutes=1))
    with mock_aws(), NullOutput(), Receiver() as graph, FakeZendesk() as zendesk:
        session = boto3.session.Session(region_name=REGION)
        urls = create_outbound_resources(session, "cb")
        env = _Env(session, urls, log, tempfile.mkdtemp(prefix="hub-bench-callbacks-"))
        config = callback_config(graph.url.rsplit("/", 1)[0], zendesk.url)
        settings = aws_settings(
            env.data_dir, stage="cb", table_name=urls["table"], inbound_queue_url=urls["inbound"],
            delivery_queue_url=urls["delivery"], delivery_dlq_url=urls["delivery_dlq"],
            outbound_queue_url=urls["outbound"], outbound_dlq_url=urls["outbound_dlq"], environ=dict(CALLBACK_ENV),
        )
        hub = Hub(settings, config=config, clock=clock,
                  aws_client=lambda service: log.watch(session.client(service)))
        zendesk_seen = 0

        def record(step: str, detail: str = "") -> Count:
            nonlocal zendesk_seen
            vendor = [f"{method} {path.split('?')[0]}" for method, path, _ in zendesk.log[zendesk_seen:]]
            zendesk_seen = len(zendesk.log)
            outcome.counts[step] = Count(log.take(), vendor, detail)
            return outcome.counts[step]

        def process(messages: list[dict]) -> None:
            hub_module.process_inbound_queue(env.sqs_event(messages), context)

        def drain(queue: str, handler) -> None:
            while messages := env.take_inbound(queue):
                for message in messages:
                    handler(env.sqs_event([message], queue), _SendContext())
                env.acknowledge(messages, queue)

        try:
            use_hub(hub)
            # 1. The customer writes; the ticket is created and linked (not counted).
            fx = load_fixture("meta", "whatsapp_text")
            _check(hub_module.app(fixture_event(fx), context), 200, "whatsapp webhook")
            messages = env.take_one()
            process(messages)
            env.acknowledge(messages)
            drain("delivery", hub_module.deliver_queue)
            [ticket_id] = zendesk.tickets
            ticket = str(ticket_id)
            case_id = zendesk.tickets[ticket_id]["external_id"]
            if hub.store.find_case_by_ref("zendesk", ticket) != case_id:
                raise RuntimeError("the deliverer did not link the ticket to its case")
            log.take()
            zendesk_seen = len(zendesk.log)

            # 2. An agent answers; Zendesk's trigger posts the signed body.
            clock.now += timedelta(seconds=30)
            zendesk.agent_comment(ticket_id, "Hello Sheena, it costs 12 euros.")
            body, headers = trigger("reply", ticket, case_id, status="open", updated_at="2026-01-01T00:01:30Z",
                                    at=clock.now)
            forged_body, forged_headers = trigger("reply", ticket, case_id, status="open",
                                                  updated_at="2026-01-01T00:01:30Z", at=clock.now, secret="forged")
            answer = hub_module.app(callback_event(forged_body, forged_headers), context)
            record("ingest, forged callback", f"HTTP {answer['statusCode']}")
            _check(hub_module.app(callback_event(body, headers), context), 200, "reply callback")
            record("ingest, agent reply")

            # 3. The process worker relays it (Zendesk read back), then gets it again.
            messages = env.take_one()
            process(messages)
            queued = env.raw_sqs.get_queue_attributes(QueueUrl=urls["outbound"], AttributeNames=[
                "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"]
            record("process, agent reply", f"{queued} message(s) queued for the customer")
            env.acknowledge(messages)
            reply = messages
            process(reply)  # SQS delivers it again before the send worker took it
            record("process, agent reply delivered again, still queued",
                   "the message is queued again (the first run may have stopped before queueing it; "
                   "FIFO deduplication and the send worker's status check keep it to one send)")

            # 4. The send worker hands it to WhatsApp.
            graph.script = [whatsapp_accepted()]
            outbound = env.take_inbound("outbound")
            if len(outbound) != 1:
                raise RuntimeError(f"expected the reply on the outbound queue, found {len(outbound)} message(s)")
            hub_module.send_queue(env.sqs_event(outbound, "outbound"), _SendContext())
            env.acknowledge(outbound, "outbound")
            sends = [r for r in graph.requests if r.path.endswith(f"/{PHONE_NUMBER_ID}/messages")]
            count = record("send worker, agent reply", f"{len(sends)} WhatsApp send(s)")
            count.vendor_calls = [f"POST graph /{PHONE_NUMBER_ID}/messages"] * len(sends)
            process(reply)  # ... and again once it was sent
            record("process, agent reply delivered again, sent")
            drain("delivery", hub_module.deliver_queue)
            drain("outbound", hub_module.send_queue)
            log.take()
            zendesk_seen = len(zendesk.log)

            # 5. The ticket is solved.
            clock.now += timedelta(seconds=30)
            zendesk.set_status(ticket_id, "solved")
            body, headers = trigger("status", ticket, case_id, status="solved", updated_at="2026-01-01T00:02:00Z",
                                    at=clock.now)
            _check(hub_module.app(callback_event(body, headers), context), 200, "status callback")
            record("ingest, ticket solved")
            messages = env.take_one()
            process(messages)
            count = record("process, ticket solved")
            case = hub.store.get_case(case_id)
            count.detail = f"case {case.status.value}, close_reason {case.close_reason}"
            log.take()
            env.acknowledge(messages)
        finally:
            use_hub(None)
    return outcome


class _SendContext(LambdaContext):
    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def _check(response: dict, expected: int, what: str) -> dict:
    if response.get("statusCode") != expected:
        raise RuntimeError(f"{what}: HTTP {response.get('statusCode')} (expected {expected}): {response.get('body')}")
    return response


# --- CPU -----------------------------------------------------------------------------------------


def cpu() -> list[Result]:
    """The callback route against the webhook route, and verify + parse against verify + parse."""
    fake_credentials()
    from datetime import timedelta

    import app as hub_module
    from bench.common import stubbed_sqs_client
    from chalicelib.adapters.channels.base import WebhookRequest
    from chalicelib.bootstrap import Hub, use_hub

    client = stubbed_sqs_client()
    now = WRITTEN + timedelta(minutes=1)
    config = callback_config("https://graph.example.com", "https://acme.zendesk.com")
    hub = Hub(aws_settings(tempfile.mkdtemp(prefix="hub-bench-callbacks-cpu-"), environ=dict(CALLBACK_ENV)),
              config=config, clock=lambda: now, aws_client=lambda service: client)
    context = LambdaContext()
    fx = load_fixture("meta", "whatsapp_text")
    body, headers = trigger("reply", "35436", "case_2WC8FBQ010TEJWXT5TE5GC7DRQ", status="open",
                            updated_at="2026-01-01T00:00:50Z", at=now)
    events = {"callback": callback_event(body, headers), "webhook": fixture_event(fx)}
    side, adapter = hub.callback_side("zendesk"), hub.adapter("meta")
    requests = {
        "callback": WebhookRequest(method="POST", hook=None, headers=headers, query={}, body=body, received_at=now),
        "webhook": WebhookRequest(method="POST", hook=None, headers=dict(fx.headers), query={}, body=fx.body,
                                  received_at=now),
    }

    def route(name: str):
        def call():
            response = hub_module.app(events[name], context)
            if response["statusCode"] != 200:
                raise RuntimeError(f"{name} answered {response['statusCode']}: {response.get('body')}")
        return call

    def callback_verify_parse():
        side.verify(requests["callback"])
        if len(side.parse(requests["callback"]).items) != 1:
            raise RuntimeError("the callback parsed into no item")

    def webhook_verify_parse():
        adapter.verify(requests["webhook"])
        adapter.parse(requests["webhook"])

    with NullOutput():
        use_hub(hub)
        try:
            subjects = {"callback": route("callback"), "webhook": route("webhook"),
                        "callback_vp": callback_verify_parse, "webhook_vp": webhook_verify_parse}
            for subject in subjects.values():
                subject()
            samples = interleaved(subjects)
        finally:
            use_hub(None)
    t = {name: median(values) for name, values in samples.items()}
    return [
        ratio_result("callback route CPU (zendesk reply) vs webhook route (meta/whatsapp_text)", us(t["callback"]),
                     us(t["webhook"]), ROUTE_LIMIT, "us", ratio=paired_ratio(samples["callback"], samples["webhook"]),
                     note=f"both verify, parse and make one SendMessageBatch (network stubbed); bodies "
                          f"{len(body)} B and {len(fx.body)} B"),
        Result("callback verify+parse (zendesk reply) vs webhook verify+parse (meta)", us(t["callback_vp"]),
               us(t["webhook_vp"]), paired_ratio(samples["callback_vp"], samples["webhook_vp"]), "info", None, "us",
               f"share of the route: callback {t['callback_vp'] / t['callback']:.0%}, "
               f"webhook {t['webhook_vp'] / t['webhook']:.0%}"),
    ]


# --- the report ----------------------------------------------------------------------------------


#: step → (target text, met?) given the count.
TARGETS = {
    "ingest, agent reply": ("== 1", lambda n: n == INGEST_TARGET),
    "ingest, forged callback": ("== 0", lambda n: n == 0),
    "process, agent reply": (f"<= {PROCESS_LIMIT}", lambda n: n <= PROCESS_LIMIT),
    "process, agent reply delivered again, still queued": ("info", None),
    "process, agent reply delivered again, sent": (f"<= {PROCESS_LIMIT}", lambda n: n <= PROCESS_LIMIT),
    "send worker, agent reply": ("info", None),
    "ingest, ticket solved": ("== 1", lambda n: n == INGEST_TARGET),
    "process, ticket solved": (f"<= {PROCESS_LIMIT}", lambda n: n <= PROCESS_LIMIT),
}


def run() -> list[Result]:
    outcome = scenario()
    results = []
    for step, (target, met) in TARGETS.items():
        count = outcome.counts[step]
        n = len(count.calls)
        note = describe(count.calls)
        if count.vendor_calls:
            note += f"; + {len(count.vendor_calls)} vendor/provider call(s): {', '.join(count.vendor_calls)}"
        if count.detail:
            note += f"; {count.detail}"
        results.append(count_result(f"callback AWS calls, {step}", n, target, met(n) if met else None, note))
    forged = outcome.counts["ingest, forged callback"]
    if "HTTP 401" not in forged.detail:
        results.append(count_result("callback forged answered 401", 0, "== 401", False, forged.detail, unit=""))
    return results + cpu()
