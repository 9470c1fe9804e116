"""Shared pieces of the benchmarks: results, timing, fixtures, a hub on stubbed AWS, API Gateway events.

Timing rule (PERFORMANCE T5): never compare an absolute number with a constant. Every benchmark
measures its floor in the same run, interleaving floor and subject round by round so machine drift
hits both, and reports the ratio of medians.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ACCOUNT = "123456789012"

#: Secrets the benchmark hub resolves from its injected environment (runtime "aws" refuses inline ones).
TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"  # signs tests/fixtures/twilio/*
META_SECRET = "test_meta_app_secret"  # signs tests/fixtures/meta/*
SECRET_ENV = {
    "BENCH_TWILIO_TOKEN": TWILIO_TOKEN,
    "BENCH_META_SECRET": META_SECRET,
    "BENCH_META_VERIFY": "bench-verify-token",
}

#: The hub configuration of every benchmark: the two channels under test, one destination.
CONFIG_YAML = """
identity:
  default_region: US
channels:
  twilio:
    auth_tokens: ["env:BENCH_TWILIO_TOKEN"]
    public_url: https://hub.example.com/webhooks/twilio
  meta:
    app_secrets: ["env:BENCH_META_SECRET"]
    verify_tokens: ["env:BENCH_META_VERIFY"]
destinations:
  - name: outbox
    type: outbox
    path: outbox.jsonl
"""


# --- results -------------------------------------------------------------------------------------


@dataclass
class Result:
    """One row of the summary table."""

    benchmark: str
    measured: float | str
    floor: float | str | None
    ratio: float | None
    target: str
    met: bool | None
    unit: str = ""
    note: str = ""

    def cells(self) -> list[str]:
        def fmt(value) -> str:
            if value is None:
                return "-"
            if isinstance(value, float):
                return f"{value:.3g}{(' ' + self.unit) if self.unit else ''}"
            return f"{value}{(' ' + self.unit) if self.unit and isinstance(value, int) else ''}"

        ratio = "-" if self.ratio is None else f"{self.ratio:.2f}x"
        met = "n/a" if self.met is None else ("yes" if self.met else "MISSED")
        return [self.benchmark, fmt(self.measured), fmt(self.floor), ratio, self.target, met]


def print_table(rows: list[list[str]], header: list[str], out=None) -> None:
    out = out or sys.stdout
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line, file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)), file=out)


def ratio_result(name: str, measured: float, floor: float, limit: float, unit: str, note: str = "",
                 ratio: float | None = None) -> Result:
    """`ratio` defaults to measured / floor; pass the paired (per-round) ratio when there is one."""
    ratio = measured / floor if ratio is None else ratio
    return Result(name, measured, floor, ratio, f"<= {limit:g}x", ratio <= limit, unit, note)


def count_result(name: str, measured: int, target: str, met: bool | None, note: str = "",
                 unit: str = "calls") -> Result:
    return Result(name, measured, None, None, target, met, unit, note)


# --- timing --------------------------------------------------------------------------------------


def cpu_per_call(func: Callable[[], object], iterations: int) -> float:
    """CPU seconds per call of `func`, over `iterations` back-to-back calls (process CPU time)."""
    gc.collect()
    start = time.process_time()
    for _ in range(iterations):
        func()
    return (time.process_time() - start) / iterations


def calibrate(func: Callable[[], object], budget: float) -> int:
    """Iterations of `func` that take about `budget` seconds."""
    func()
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            func()
        elapsed = time.perf_counter() - start
        if elapsed >= 0.02 or n >= 1_000_000:
            return max(1, int(n * budget / max(elapsed, 1e-9)))
        n *= 4


def interleaved(subjects: dict[str, Callable[[], object]], *, rounds: int = 11, budget: float = 0.04,
                warmup: int = 200) -> dict[str, list[float]]:
    """CPU seconds per call of each subject, one sample per round; the subjects alternate within
    every round, so a burst of load from elsewhere on the machine hits all of them alike."""
    iterations = {}
    for name, func in subjects.items():
        for _ in range(warmup):
            func()
        iterations[name] = calibrate(func, budget)
    samples: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(rounds):
        for name, func in subjects.items():
            samples[name].append(cpu_per_call(func, iterations[name]))
    return samples


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def paired_ratio(subject: list[float], floor: list[float]) -> float:
    """Median over rounds of subject / floor measured in the same round."""
    return statistics.median(a / b for a, b in zip(subject, floor))


def paired_difference(subject: list[float], other: list[float]) -> float:
    return statistics.median(a - b for a, b in zip(subject, other))


def us(seconds: float) -> float:
    return seconds * 1e6


# --- fixtures and events -------------------------------------------------------------------------


# The same exact-bytes provider fixtures the tests use, through the tests' own loader.
from tests.support.fixtures import Fixture, load as load_fixture  # noqa: E402,F401


def api_gateway_event(resource: str, path_parameters: dict[str, str], body: bytes, headers: dict[str, str],
                      request_id: str = "bench-request") -> dict:
    """An API Gateway REST proxy event, as Lambda hands it to the Chalice app."""
    path = resource
    for name, value in path_parameters.items():
        path = path.replace("{" + name + "}", value)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": "POST",
        "headers": dict(headers),
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": dict(path_parameters),
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": "POST",
            "path": "/api" + path,
            "stage": "api",
            "requestId": request_id,
            "identity": {"sourceIp": "203.0.113.7"},
        },
        "body": body.decode("utf-8"),
        "isBase64Encoded": False,
    }


def fixture_event(fx: Fixture) -> dict:
    if fx.hook:
        return api_gateway_event("/webhooks/{provider}/{hook}", {"provider": fx.provider, "hook": fx.hook},
                                 fx.body, fx.headers)
    return api_gateway_event("/webhooks/{provider}", {"provider": fx.provider}, fx.body, fx.headers)


class LambdaContext:
    function_name = "omnichannel-hub-bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:omnichannel-hub-bench"
    aws_request_id = "bench-request"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


# --- AWS clients with the network stubbed --------------------------------------------------------


def fake_credentials() -> None:
    """Static credentials and region, so botocore signs requests without looking anything up."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


class _Raw:
    """The `raw` of a canned botocore response: what `AWSResponse.content` streams."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_):
        yield self._body

    def read(self, *_):
        return self._body


def _sqs_json_response(operation: str, request) -> bytes:
    """A success answer for SQS's JSON protocol, shaped by the request's entries."""
    params = json.loads(request.body or b"{}")
    if operation == "SendMessageBatch":
        return json.dumps({
            "Successful": [
                {"Id": e["Id"], "MessageId": f"00000000-0000-0000-0000-{i:012d}",
                 "MD5OfMessageBody": "0" * 32, "SequenceNumber": str(10**19 + i)}
                for i, e in enumerate(params.get("Entries", []))
            ],
            "Failed": [],
        }).encode()
    if operation == "SendMessage":
        return json.dumps({"MessageId": "00000000-0000-0000-0000-000000000001", "MD5OfMessageBody": "0" * 32,
                           "SequenceNumber": "10000000000000000001"}).encode()
    return b"{}"


def stub_sqs_network(client) -> None:
    """Answer SendMessage / SendMessageBatch at `before-send`: serialisation, signing and response
    parsing all run; only the HTTP round trip is skipped."""
    from botocore.awsrequest import AWSResponse

    def answer(request, event_name, **_):
        operation = event_name.rsplit(".", 1)[-1]
        body = _sqs_json_response(operation, request)
        return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.0",
                                              "x-amzn-RequestId": "bench"}, _Raw(body))

    client.meta.events.register("before-send.sqs.SendMessage", answer)
    client.meta.events.register("before-send.sqs.SendMessageBatch", answer)


def stubbed_sqs_client():
    """A real boto3 SQS client (retries and timeouts like the hub's) whose sends never leave the process."""
    import boto3
    from botocore.config import Config

    fake_credentials()
    client = boto3.session.Session(region_name=REGION).client(
        "sqs", config=Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})
    )
    stub_sqs_network(client)
    return client


def queue_url(name: str) -> str:
    return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"


def bench_config(*, on_aws: bool = True):
    from chalicelib.hubconfig import parse_config

    return parse_config(CONFIG_YAML, source="bench.yaml", allow_inline_secrets=not on_aws)


def aws_settings(data_dir: str, **overrides):
    from chalicelib.settings import Settings

    values = dict(
        runtime="aws",
        stage="bench",
        data_dir=data_dir,
        table_name="hub-bench",
        inbound_queue_url=queue_url("hub-bench-inbound.fifo"),
        delivery_queue_url=queue_url("hub-bench-delivery.fifo"),
        delivery_dlq_url=queue_url("hub-bench-delivery-dlq.fifo"),
        bucket="hub-bench-bucket",
        region=REGION,
        log_level="INFO",
        tracing=False,
        environ=dict(SECRET_ENV),
    )
    values.update(overrides)
    return Settings(**values)


class NullOutput:
    """Route everything the hub prints (Powertools JSON log lines, EMF metric documents) to
    /dev/null while keeping the formatting and the write itself in the measured cost."""

    def __enter__(self):
        self._devnull = open(os.devnull, "w")  # noqa: SIM115 - closed in __exit__
        self._stdout = sys.stdout
        sys.stdout = self._devnull
        self._streams = []
        import logging

        for name in ("chalicelib", ""):
            for handler in logging.getLogger(name).handlers:
                if isinstance(handler, logging.StreamHandler):
                    self._streams.append((handler, handler.stream))
                    handler.setStream(self._devnull)
        return self

    def __exit__(self, *exc):
        for handler, stream in self._streams:
            handler.setStream(stream)
        sys.stdout = self._stdout
        self._devnull.close()
        return False
