"""Issue 12: CPU per request of the send route (`POST /v1/messages`) against the ingest route's
CPU per webhook, measured in the same run, on the same Hub.

Both routes are driven with API Gateway proxy events through `app(event, context)` (what Lambda
calls) on one Hub on runtime "aws" (the configuration of `bench/outbound.py`: Twilio sending,
the web chat, an API key):

* with SDK - the hub's real `DynamoDbStore` and `SqsQueue`s on boto3 clients whose network is
  answered at botocore's `before-send` (validation, serialisation, SigV4 signing, retry
  bookkeeping and response parsing are all paid; only the socket is skipped). SQS answers are
  built from the request (`common.stub_sqs_network`); DynamoDB answers are the exact responses
  moto gave the same sends (recorded once at `response-received`, replayed by operation).
* without SDK - the same routes with the queues in memory and the store's client replaced by one
  that returns the recorded parsed answers: the hub's own work, store (de)serialisation included.

Subjects: the send to `to.case_id` (the SMS customer's case: Twilio; 4 AWS calls) and to
`to.customer_id` (the web chat customer; 3 AWS calls), against the Twilio `sms_text` webhook
(1 AWS call). The issue sets no target for the ratio: it is reported (info), with the botocore
calls alone in the note, so the share that is AWS calls (see `outbound`) and the share that is
the hub's own work can be read apart.
"""

from __future__ import annotations

import copy
import tempfile

from bench.common import (
    REGION,
    LambdaContext,
    NullOutput,
    Result,
    fixture_event,
    interleaved,
    load_fixture,
    median,
    paired_ratio,
    queue_url,
    us,
)

NAME = "send_cpu"

#: (label, request body given the seeded customers): the sends measured.
SENDS = (
    ("to.case_id, twilio sms", lambda c: {"to": {"case_id": c.sms_case}, "text": "Ihr Paket kommt morgen."}),
    ("to.customer_id, webchat", lambda c: {"to": {"customer_id": c.chat_customer},
                                           "text": "Wir sind gleich für Sie da."}),
)


class Recording:
    """What the AWS side answered for one send: per botocore operation, the raw HTTP answer (for
    `before-send`) and the parsed one (for the client-less store), and the calls' parameters."""

    def __init__(self) -> None:
        self.raw: dict[str, tuple[int, dict, bytes]] = {}
        self.parsed: dict[str, dict] = {}
        self.calls: list[tuple[str, str, dict]] = []

    def response_received(self, event_name: str, response_dict=None, parsed_response=None, exception=None, **_):
        operation = event_name.rsplit(".", 1)[-1]
        if response_dict is None or exception is not None:
            raise RuntimeError(f"{operation} failed while recording: {exception}")
        self.raw[operation] = (response_dict["status_code"], dict(response_dict["headers"]), response_dict["body"])
        parsed = copy.deepcopy(parsed_response)
        parsed.pop("ResponseMetadata", None)
        self.parsed[operation] = parsed

    def before_parameter_build(self, model, params, **_):
        self.calls.append((model.service_model.service_name, model.name, copy.deepcopy(params)))


def record_sends() -> tuple[dict[str, Recording], object]:
    """Seed the customers under moto, then make each send once on a fresh API Hub, recording
    every AWS answer. Returns the recordings and the seeded customers."""
    from bench.common import fake_credentials

    fake_credentials()
    import boto3
    from moto import mock_aws

    import app as hub_module
    from bench.aws_calls import CallLog
    from bench.outbound import OutboundEnv, create_outbound_resources, prepare_logging, seed_customers, send_event
    from chalicelib.bootstrap import use_hub

    prepare_logging()
    recordings: dict[str, Recording] = {}
    context = LambdaContext()
    with mock_aws(), NullOutput():
        session = boto3.session.Session(region_name=REGION)
        env = OutboundEnv(session, create_outbound_resources(session, "cpu"), CallLog(),
                          tempfile.mkdtemp(prefix="hub-bench-send-"), "[]")
        try:
            customers = seed_customers(env, env.hub(), context)
            for label, body in SENDS:
                api = env.hub()
                recording = recordings[label] = Recording()
                for service in ("dynamodb", "sqs"):
                    client = api.aws_client(service)
                    client.meta.events.register("response-received", recording.response_received)
                    client.meta.events.register("before-parameter-build", recording.before_parameter_build)
                use_hub(api)
                response = hub_module.app(send_event(body(customers)), context)
                if response["statusCode"] != 202:
                    raise RuntimeError(f"send {label}: HTTP {response['statusCode']}: {response.get('body')}")
        finally:
            use_hub(None)
    return recordings, customers


# --- the AWS side, stubbed -----------------------------------------------------------------------


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_):
        yield self._body

    def read(self, *_):
        return self._body


def stubbed_dynamodb_client(recording: Recording):
    """A real boto3 DynamoDB client whose calls get the recorded answer of their operation."""
    import boto3
    from botocore.awsrequest import AWSResponse
    from botocore.config import Config

    client = boto3.session.Session(region_name=REGION).client(
        "dynamodb", config=Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3}))

    def answer(request, event_name, **_):
        operation = event_name.rsplit(".", 1)[-1]
        status, headers, body = recording.raw[operation]
        return AWSResponse(request.url, status, headers, _Raw(body))

    client.meta.events.register("before-send.dynamodb", answer)
    return client


class ParsedReplayClient:
    """Stands in for the DynamoDB client without botocore: each method returns a copy of the
    recorded parsed answer of its operation."""

    def __init__(self, recording: Recording) -> None:
        from botocore import xform_name

        self._answers = {xform_name(name): answer for name, answer in recording.parsed.items()}

    def __getattr__(self, method: str):
        answer = self._answers[method]
        return lambda **params: copy.deepcopy(answer)


def _hub(recording: Recording, sqs_client, *, sdk: bool):
    from bench.common import aws_settings
    from bench.ingest_cpu import _memory_queue
    from bench.outbound import OUTBOUND_SECRET_ENV, outbound_config
    from chalicelib.adapters.store.dynamodb import DynamoDbStore
    from chalicelib.bootstrap import Hub

    dynamodb = stubbed_dynamodb_client(recording)
    settings = aws_settings(tempfile.mkdtemp(prefix="hub-bench-send-"), table_name="hub-cpu",
                            outbound_queue_url=queue_url("hub-cpu-outbound.fifo"),
                            outbound_dlq_url=queue_url("hub-cpu-outbound-dlq.fifo"), environ=dict(OUTBOUND_SECRET_ENV))
    hub = Hub(settings, config=outbound_config(), aws_client=lambda service: dynamodb if service == "dynamodb"
              else sqs_client)
    if not sdk:
        hub.__dict__["store"] = DynamoDbStore("hub-cpu", ParsedReplayClient(recording))
        hub.__dict__["inbound_queue"] = _memory_queue()
        hub.__dict__["outbound_queue"] = _memory_queue()
    return hub


def run() -> list[Result]:
    import app as hub_module
    from bench.common import fake_credentials, stubbed_sqs_client
    from bench.outbound import send_event
    from chalicelib.bootstrap import use_hub

    recordings, customers = record_sends()
    fake_credentials()
    sqs_client = stubbed_sqs_client()
    context = LambdaContext()
    webhook = fixture_event(load_fixture("twilio", "sms_text"))
    results: list[Result] = []
    with NullOutput():
        try:
            for label, body in SENDS:
                recording = recordings[label]
                hubs = {"sdk": _hub(recording, sqs_client, sdk=True), "nosdk": _hub(recording, sqs_client, sdk=False)}
                event = send_event(body(customers))

                def route(hub, request, status):
                    def call():
                        use_hub(hub)
                        response = hub_module.app(request, context)
                        if response["statusCode"] != status:
                            raise RuntimeError(f"HTTP {response['statusCode']}: {response.get('body')}")
                        return response
                    return call

                clients = {"dynamodb": hubs["sdk"].aws_client("dynamodb"), "sqs": sqs_client}

                def sdk_only():
                    for service, operation, params in recording.calls:
                        getattr(clients[service], _snake(operation))(**params)

                subjects = {
                    "send": route(hubs["sdk"], event, 202), "ingest": route(hubs["sdk"], webhook, 200),
                    "send_nosdk": route(hubs["nosdk"], event, 202), "ingest_nosdk": route(hubs["nosdk"], webhook, 200),
                    "sdk": sdk_only,
                }
                for subject in subjects.values():
                    subject()
                samples = interleaved(subjects, rounds=9, budget=0.03, warmup=50)
                t = {name: median(values) for name, values in samples.items()}
                calls = ", ".join(f"{s}:{o}" for s, o, _ in recording.calls)
                results.append(Result(
                    f"send route CPU ({label}) vs ingest route (twilio/sms_text)", us(t["send"]), us(t["ingest"]),
                    paired_ratio(samples["send"], samples["ingest"]), "info", None, "us",
                    f"{len(recording.calls)} AWS calls ({calls}) against ingest's 1; the same botocore calls made alone "
                    f"{us(t['sdk']):.0f} us ({t['sdk'] / t['send']:.0%} of the send route)",
                ))
                results.append(Result(
                    f"send route CPU excl. SDK ({label}) vs ingest route excl. SDK", us(t["send_nosdk"]),
                    us(t["ingest_nosdk"]), paired_ratio(samples["send_nosdk"], samples["ingest_nosdk"]), "info", None,
                    "us", "queues in memory, store client replaced by the recorded parsed answers "
                          "(the store's own (de)serialisation stays in)",
                ))
        finally:
            use_hub(None)
    return results


def _snake(operation: str) -> str:
    from botocore import xform_name

    return xform_name(operation)

