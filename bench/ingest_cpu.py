"""G1 / G2: CPU per webhook at ingest, for the Twilio SMS and Meta WhatsApp text fixtures (and the latter at 2 KB).

Subjects, each driven with an API Gateway proxy event through `app(event, context)` (what Lambda
calls), and measured interleaved round by round:

* hub        - the hub's real Chalice app, Hub on runtime "aws", its real `SqsQueue` on a boto3 SQS
               client whose network is answered at botocore's `before-send` (so parameter
               validation, serialisation, SigV4 signing, retries bookkeeping and response parsing
               are all paid; only the socket is skipped).
* reference  - a minimal hand-written ingest: a tiny Chalice app with one route that verifies the
               same signature, validates a small pydantic model, serialises it and makes one SQS
               `SendMessage` through the same stubbed client.               G1: hub <= 1.5 x reference
* hub, no SDK - the same hub route with the inbound queue replaced by an in-memory queue.
* F_parse    - verify + parse + `model_validate` of the same bytes (the reference's own steps, no
               Chalice, no serialisation, no queue).                         G2: hub, no SDK <= 8 x F_parse

Diagnostics (not targets): the botocore call alone, the reference without the SDK, and a breakdown
of the hub's per-webhook steps, so a MISSED target points at its cause.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import tempfile
from dataclasses import replace
from urllib.parse import parse_qsl

from bench.common import (
    LambdaContext,
    NullOutput,
    Result,
    api_gateway_event,
    aws_settings,
    bench_config,
    fixture_event,
    interleaved,
    load_fixture,
    median,
    paired_difference,
    paired_ratio,
    queue_url,
    ratio_result,
    stubbed_sqs_client,
    us,
    META_SECRET,
    TWILIO_TOKEN,
)

NAME = "ingest_cpu"
G1_LIMIT = 1.5
G2_LIMIT = 8.0
#: (provider, fixture, body size): None keeps the fixture's own bytes; a size lengthens the
#: customer's text to make the body that long, re-signed. PERFORMANCE.md sizes F_parse (and with it
#: G2's budget) on a 2 KB WhatsApp webhook; the stored text fixture is 580 bytes, so both are shown.
FIXTURES = (("twilio", "sms_text", None), ("meta", "whatsapp_text", None), ("meta", "whatsapp_text", 2048))
#: The G2 rows that are reported, not targets: the 580-byte WhatsApp fixture's F_parse (13 µs) is
#: smaller than the 2 KB one G2 is defined on (15 µs), which makes its 8x stricter than the target
#: (its ratio stays in the table, with the limit it would have).
G2_REPORTED = {("meta", "whatsapp_text", None)}
REF_QUEUE = queue_url("ref-inbound.fifo")


# --- the reference ingest ------------------------------------------------------------------------


def _reference_models():
    from pydantic import BaseModel, ConfigDict, Field

    class TwilioSms(BaseModel):
        model_config = ConfigDict(extra="allow")
        MessageSid: str
        AccountSid: str
        From: str
        To: str
        Body: str = ""
        NumMedia: int = 0

    class WaText(BaseModel):
        body: str

    class WaMessage(BaseModel):
        model_config = ConfigDict(populate_by_name=True)
        sender: str = Field(alias="from")
        id: str
        timestamp: str
        type: str
        text: WaText | None = None

    class WaProfile(BaseModel):
        name: str | None = None

    class WaContact(BaseModel):
        wa_id: str | None = None
        profile: WaProfile | None = None

    class WaValue(BaseModel):
        messaging_product: str
        metadata: dict[str, str]
        contacts: list[WaContact] = []
        messages: list[WaMessage] = []

    class WaChange(BaseModel):
        field: str
        value: WaValue

    class WaEntry(BaseModel):
        id: str
        changes: list[WaChange]

    class WaWebhook(BaseModel):
        object: str
        entry: list[WaEntry]

    return TwilioSms, WaWebhook


class Reference:
    """The minimal ingest G1 compares against: verify, validate, serialise, one `SendMessage`."""

    def __init__(self, twilio_url: str, sqs_client) -> None:
        from chalice import Chalice, Response

        self.TwilioSms, self.WaWebhook = _reference_models()
        self.twilio_url = twilio_url
        self.client = sqs_client
        self.sent = 0
        self.send = self._send_sqs
        app = Chalice(app_name="reference-ingest")
        reference = self

        @app.route("/ref/{provider}", methods=["POST"],
                   content_types=["application/json", "application/x-www-form-urlencoded"])
        def receive(provider):
            request = app.current_request
            body = request.raw_body
            if provider == "twilio":
                model = reference.twilio(body, request.headers.get("x-twilio-signature", ""))
                group, dedupe = model.From, model.MessageSid
            else:
                model = reference.meta(body, request.headers.get("x-hub-signature-256", ""))
                message = model.entry[0].changes[0].value.messages[0]
                group, dedupe = message.sender, message.id
            reference.send(model.model_dump_json(), group, dedupe)
            return Response(body="", status_code=200)

        self.app = app

    # verify + parse + validate: these two methods are also F_parse
    def twilio(self, body: bytes, signature: str):
        params = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        data = self.twilio_url + "".join(k + v for k, v in sorted(params))
        expected = base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), data.encode(), hashlib.sha1).digest())
        if not hmac.compare_digest(expected, signature.encode()):
            raise ValueError("bad signature")
        return self.TwilioSms.model_validate(dict(params))

    def meta(self, body: bytes, signature: str):
        expected = "sha256=" + hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise ValueError("bad signature")
        return self.WaWebhook.model_validate(json.loads(body))

    def _send_sqs(self, body: str, group: str, dedupe: str) -> None:
        self.client.send_message(QueueUrl=REF_QUEUE, MessageBody=body, MessageGroupId=group,
                                 MessageDeduplicationId=dedupe)

    def _send_memory(self, body: str, group: str, dedupe: str) -> None:
        self.sent += 1


# --- the hub -------------------------------------------------------------------------------------


def _memory_queue():
    from chalicelib.adapters.queue.base import Queue

    class MemoryQueue(Queue):
        """Accepts every batch in memory: the hub's queue port without a backend."""

        def __init__(self) -> None:
            super().__init__("memory")
            self.sent = 0

        def _send_batch(self, messages):
            self.sent += len(messages)

        def _receive(self, max_messages, wait_seconds):
            return []

        def _delete_batch(self, receipts):
            pass

        def _change_visibility(self, receipt, seconds):
            pass

    return MemoryQueue()


def _hubs(client):
    from chalicelib.bootstrap import Hub

    config = bench_config()
    data_dir = tempfile.mkdtemp(prefix="hub-bench-")
    with_sqs = Hub(aws_settings(data_dir), config=config, aws_client=lambda service: client)
    no_sdk = Hub(aws_settings(data_dir), config=config, aws_client=lambda service: client)
    no_sdk.__dict__["inbound_queue"] = _memory_queue()  # replaces the cached_property's value
    return with_sqs, no_sdk


def _check(response: dict, what: str) -> None:
    if response.get("statusCode") != 200:
        raise RuntimeError(f"{what} answered {response.get('statusCode')}: {response.get('body')}")


def run() -> list[Result]:
    from bench.common import fake_credentials
    from chalicelib.settings import XRAY_TRACE_VARIABLE

    fake_credentials()
    # Set by the Lambda runtime before every invocation; the hub's log lines carry its trace id.
    os.environ[XRAY_TRACE_VARIABLE] = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    import app as hub_module
    from chalicelib.bootstrap import use_hub

    client = stubbed_sqs_client()
    hub_sqs, hub_memory = _hubs(client)
    context = LambdaContext()
    results: list[Result] = []
    with NullOutput():
        for provider, fixture_name, size in FIXTURES:
            fx = load_fixture(provider, fixture_name)
            if size is not None:
                fx = _meta_body_of_size(fx, size)
            twilio_url = hub_sqs.config.channels["twilio"].public_url.rstrip("/") + (f"/{fx.hook}" if fx.hook else "")
            reference = Reference(twilio_url, client)
            ref_memory = Reference(twilio_url, client)
            ref_memory.send = ref_memory._send_memory
            hub_event = fixture_event(fx)
            ref_event = api_gateway_event("/ref/{provider}", {"provider": provider}, fx.body, fx.headers)
            signature = fx.headers.get("x-twilio-signature") or fx.headers.get("x-hub-signature-256")
            parse = reference.twilio if provider == "twilio" else reference.meta

            def hub_with_sqs():
                use_hub(hub_sqs)
                return hub_module.app(hub_event, context)

            def hub_without_sdk():
                use_hub(hub_memory)
                return hub_module.app(hub_event, context)

            def ref_with_sqs():
                return reference.app(ref_event, context)

            def ref_without_sdk():
                return ref_memory.app(ref_event, context)

            def f_parse():
                return parse(fx.body, signature)

            body = hub_sqs.adapter(provider).parse(_webhook_request(hub_sqs, fx)).events[0].model_dump_json()

            def sdk_only():
                return client.send_message_batch(QueueUrl=hub_sqs.settings.inbound_queue_url, Entries=[
                    {"Id": "0", "MessageBody": body, "MessageGroupId": "g" * 40, "MessageDeduplicationId": "d" * 64}])

            for what, func in (("hub", hub_with_sqs), ("hub without SDK", hub_without_sdk),
                               ("reference", ref_with_sqs), ("reference without SDK", ref_without_sdk)):
                _check(func(), f"{provider} {what}")
            sent_before = hub_memory.inbound_queue.sent
            hub_without_sdk()
            if hub_memory.inbound_queue.sent != sent_before + 1:
                raise RuntimeError("the in-memory hub did not enqueue the event")

            writes = _stdout_writes(hub_without_sdk)
            samples = interleaved({
                "hub": hub_with_sqs, "reference": ref_with_sqs, "hub_nosdk": hub_without_sdk,
                "f_parse": f_parse, "ref_nosdk": ref_without_sdk, "sdk": sdk_only,
            })
            t = {name: median(values) for name, values in samples.items()}
            breakdown = _knockouts(client, hub_event, context, provider, fx)
            use_hub(None)
            label = f"{provider}/{fixture_name}" + (f" ({len(fx.body)} B body)" if size else "")
            results.append(ratio_result(
                f"G1 ingest CPU {label}: hub vs reference", us(t["hub"]), us(t["reference"]), G1_LIMIT, "us",
                ratio=paired_ratio(samples["hub"], samples["reference"]),
                note=f"botocore SendMessageBatch alone {us(t['sdk']):.0f} us; reference without SDK "
                     f"{us(t['ref_nosdk']):.0f} us",
            ))
            g2 = ratio_result(
                f"G2 ingest CPU excl. SDK {label}: hub vs F_parse", us(t["hub_nosdk"]), us(t["f_parse"]), G2_LIMIT,
                "us", ratio=paired_ratio(samples["hub_nosdk"], samples["f_parse"]),
                note="in-situ cost by knock-out (us): " + ", ".join(f"{k} {v:.1f}" for k, v in breakdown.items())
                     + f"; stdout writes per webhook: {writes} (Lambda's stdout writes each through)",
            )
            if (provider, fixture_name, size) in G2_REPORTED:
                g2 = replace(g2, target=f"report ({g2.target} on 2 KB)", met=None,
                             note=f"G2 is defined on a 2 KB body (the row below); this body's F_parse is smaller, "
                                  f"so {G2_LIMIT:g}x of it is stricter. {g2.note}")
            results.append(g2)
    return results


def _stdout_writes(subject) -> int:
    """How many writes one call makes to stdout, where the hub's log lines and EMF documents go.
    Lambda's runtime makes stdout write through (every write its own system call and log event),
    which the buffered /dev/null of `NullOutput` does not show."""
    import sys

    class Counting:
        def __init__(self, stream) -> None:
            self.stream, self.writes = stream, 0

        def write(self, text: str) -> int:
            self.writes += 1
            return self.stream.write(text)

        def flush(self) -> None:
            self.stream.flush()

    counting = sys.stdout = Counting(sys.stdout)
    try:
        subject()
    finally:
        sys.stdout = counting.stream
    return counting.writes


def _meta_body_of_size(fx, size: int):
    """The Meta fixture with its message text lengthened (a customer's longer message, still
    well under WhatsApp's 4,096 characters) until the body has `size` bytes, signed as Meta signs."""
    import dataclasses

    from bench.common import META_SECRET
    from chalicelib.adapters.channels.meta.core import compute_signature

    document = json.loads(fx.body)
    text = document["entry"][0]["changes"][0]["value"]["messages"][0]["text"]
    base = len(json.dumps(document, separators=(",", ":")).encode())
    words = "Meine Bestellung ist noch nicht angekommen, bitte um Rückmeldung. "
    text["body"] += " " + (words * 40)[: max(0, size - base - 1)]
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    while len(body) > size:  # a non-ASCII character is two bytes
        text["body"] = text["body"][:-1]
        body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {**fx.headers, "x-hub-signature-256": compute_signature(META_SECRET, body)}
    return dataclasses.replace(fx, body=body, headers=headers)


def _webhook_request(hub, fx):
    from chalicelib.adapters.channels.base import WebhookRequest

    return WebhookRequest(method="POST", hook=fx.hook, headers=dict(fx.headers), query={}, body=fx.body,
                          received_at=hub.clock())


def _knockouts(client, hub_event, context, provider: str, fx) -> dict[str, float]:
    """In-situ cost of each step of the hub route: the route without SDK, minus the same route with
    that one step knocked out (each on its own Hub, interleaved). Diagnostics for the report; each
    label says exactly what its knock-out removes, the rest is what none of them removes."""
    import logging

    from chalicelib.bootstrap import use_hub
    from chalicelib.observability import Counters
    from chalicelib.service.ingest import Ingestion

    import app as hub_module

    def memory_hub():
        return _hubs(client)[1]

    full, no_verify, no_parse, no_emf, no_log = (memory_hub() for _ in range(5))
    no_verify.adapter(provider).verify = lambda request: None
    parsed = no_parse.adapter(provider).parse(_webhook_request(no_parse, fx))
    no_parse.adapter(provider).parse = lambda request: parsed
    no_emf.__dict__["counters"] = Counters(emit_emf=False)
    # The accepted line is the ingest service's: the route itself logs only what goes wrong.
    accepted_logger = logging.getLogger(Ingestion.__module__)

    def call(hub):
        def subject():
            use_hub(hub)
            return hub_module.app(hub_event, context)
        return subject

    def without_log():
        use_hub(no_log)
        accepted_logger.disabled = True
        try:
            return hub_module.app(hub_event, context)
        finally:
            accepted_logger.disabled = False

    labels = {
        "verify": "signature check",
        "parse": "adapter parse (JSON or form, events built)",
        "EMF metrics": "EMF documents serialised and written (counting kept)",
        "log line": "the accepted log line (record, redaction, JSON, write)",
    }
    samples = interleaved({"full": call(full), "verify": call(no_verify), "parse": call(no_parse),
                           "EMF metrics": call(no_emf), "log line": without_log}, budget=0.03, warmup=100)
    steps = {labels[name]: us(paired_difference(samples["full"], values)) for name, values in samples.items()
             if name != "full"}
    steps["rest (Chalice, route glue, event serialisation and ids, queue port, counting)"] = (
        us(median(samples["full"])) - sum(steps.values()))
    return steps
