"""What one webhook writes on AWS (issue 14, ingest CPU): exactly one EMF document with the
invocation's counts and one JSON log line carrying the request's correlation id, with no personal
data in either; a refused webhook likewise. The hub writes both itself, not through Powertools."""

from __future__ import annotations

import json
import logging

import pytest

from chalicelib.adapters.queue.base import Queue
from chalicelib.bootstrap import Hub, use_hub
from chalicelib.hubconfig import parse_config
from chalicelib.observability import log_handler
from chalicelib.settings import Settings
from tests.support.fixtures import load as load_fixture

TOKEN = "0123456789abcdef0123456789abcdef"  # signs tests/fixtures/twilio/*
META_SECRET = "test_meta_app_secret"  # signs tests/fixtures/meta/*
CONFIG = """
channels:
  twilio:
    auth_tokens: ["env:T_TWILIO_TOKEN"]
    public_url: https://hub.example.com/webhooks/twilio
  meta:
    app_secrets: ["env:T_META_SECRET"]
    verify_tokens: ["env:T_META_VERIFY"]
destinations:
  - name: outbox
    type: outbox
    path: outbox.jsonl
"""
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/"


class MemoryQueue(Queue):
    def __init__(self) -> None:
        super().__init__("memory")
        self.sent: list = []

    def _send_batch(self, messages):
        self.sent.extend(messages)

    def _receive(self, max_messages, wait_seconds):
        return []

    def _delete_batch(self, receipts):
        pass

    def _change_visibility(self, receipt, seconds):
        pass


class Context:
    function_name = "omnichannel-hub-test"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:omnichannel-hub-test"
    aws_request_id = "lambda-request"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


@pytest.fixture
def aws_hub(tmp_path):
    settings = Settings(
        runtime="aws", stage="test", data_dir=str(tmp_path), table_name="hub-test",
        inbound_queue_url=QUEUE + "in.fifo", delivery_queue_url=QUEUE + "d.fifo", delivery_dlq_url=QUEUE + "dlq.fifo",
        bucket="hub-test", region="us-east-1", log_level="INFO", tracing=False,
        environ={"T_TWILIO_TOKEN": TOKEN, "T_META_SECRET": META_SECRET, "T_META_VERIFY": "verify"},
    )
    hub = Hub(settings, config=parse_config(CONFIG, allow_inline_secrets=False),
              aws_client=lambda service: pytest.fail(f"no AWS client expected, asked for {service}"))
    hub.__dict__["inbound_queue"] = MemoryQueue()
    root = logging.getLogger("chalicelib")
    saved = root.handlers, root.level
    root.handlers, root.level = [log_handler(on_aws=True)], logging.INFO  # as configure_logging does on AWS
    use_hub(hub)
    try:
        yield hub
    finally:
        use_hub(None)
        root.handlers, root.level = saved


def _event(fx, request_id: str, *, body: bytes | None = None) -> dict:
    path = f"/webhooks/{fx.provider}" + (f"/{fx.hook}" if fx.hook else "")
    resource = "/webhooks/{provider}" + ("/{hook}" if fx.hook else "")
    params = {"provider": fx.provider, **({"hook": fx.hook} if fx.hook else {})}
    return {
        "resource": resource, "path": path, "httpMethod": "POST", "headers": dict(fx.headers),
        "multiValueHeaders": {k: [v] for k, v in fx.headers.items()}, "queryStringParameters": None,
        "multiValueQueryStringParameters": None, "pathParameters": params, "stageVariables": None,
        "requestContext": {"resourcePath": resource, "httpMethod": "POST", "path": "/api" + path, "stage": "api",
                           "requestId": request_id, "identity": {"sourceIp": "203.0.113.7"}},
        "body": (body if body is not None else fx.body).decode("utf-8"), "isBase64Encoded": False,
    }


def _documents(out: str) -> tuple[list[dict], list[dict]]:
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [d for d in lines if "_aws" in d], [d for d in lines if "_aws" not in d]


@pytest.mark.parametrize("provider,name", [("twilio", "sms_text"), ("meta", "whatsapp_text")])
def test_one_webhook_writes_one_emf_document_and_one_log_line_with_its_correlation_id(aws_hub, capsys, provider, name):
    import app

    fx = load_fixture(provider, name)
    capsys.readouterr()
    for request_id in ("req-1", "req-2"):
        response = app.app(_event(fx, request_id), Context())
        assert response["statusCode"] == 200

    out = capsys.readouterr().out
    metrics, logs = _documents(out)
    assert len(aws_hub.inbound_queue.sent) == 2
    assert len(metrics) == 2, "one EMF document per invocation, not one per counter"
    for document in metrics:
        assert document["provider"] == provider and document["service"] == "omnichannel-hub"
        assert document["deployment"] == "test"  # the hub's stage: two stages in one region stay apart
        assert document["WebhooksReceived"] == [1.0] and document["EventsEnqueued"] == [1.0]
        assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["deployment", "provider", "service"]]
    assert [(d["level"], d["correlation_id"]) for d in logs] == [("INFO", "req-1"), ("INFO", "req-2")]
    assert all(d["message"] == f"webhook {provider} accepted: 1 enqueued, 0 ignored, 0 unhandled" for d in logs)
    phones = _phone_like(json.loads(aws_hub.inbound_queue.sent[0].body))
    assert phones, "the fixture's sender number is in the queued event"
    assert not [phone for phone in phones if phone in out]


def _phone_like(value) -> list[str]:
    """The sender's phone digits as they appear in the queued event (never in the output)."""
    if isinstance(value, dict):
        return [v for item in value.values() for v in _phone_like(item)]
    if isinstance(value, list):
        return [v for item in value for v in _phone_like(item)]
    if isinstance(value, str) and value.lstrip("+").isdigit() and len(value.lstrip("+")) >= 8:
        return [value.lstrip("+")]
    return []


def test_a_refused_webhook_writes_one_rejection_document_and_one_warning(aws_hub, capsys):
    import app

    fx = load_fixture("meta", "whatsapp_text")
    capsys.readouterr()
    response = app.app(_event(fx, "req-forged", body=fx.body.replace(b"}", b" }", 1)), Context())

    assert response["statusCode"] == 401
    metrics, logs = _documents(capsys.readouterr().out)
    assert aws_hub.inbound_queue.sent == []
    assert len(metrics) == 1
    assert metrics[0]["WebhooksRejected"] == [1.0] and metrics[0]["provider"] == "meta"
    assert [(d["level"], d["correlation_id"]) for d in logs] == [("WARNING", "req-forged")]


class _WriteThrough:
    """stdout as Lambda's runtime sets it up: every write goes out at once (its `Unbuffered`)."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("provider,name", [("twilio", "sms_text"), ("meta", "whatsapp_text")])
def test_a_webhooks_metrics_and_log_line_leave_in_one_write(aws_hub, monkeypatch, provider, name):
    import app

    fx = load_fixture(provider, name)
    stdout = _WriteThrough()
    monkeypatch.setattr("sys.stdout", stdout)
    assert app.app(_event(fx, "req-1"), Context())["statusCode"] == 200
    forged = fx.body.replace(b"}", b" }", 1) if provider == "meta" else fx.body + b"&x=1"
    assert app.app(_event(fx, "req-2", body=forged), Context())["statusCode"] in (401, 403)

    accepted, rejected = stdout.writes  # one write per webhook, accepted or not
    for write, request_id in ((accepted, "req-1"), (rejected, "req-2")):
        metrics, logs = _documents(write)
        assert len(metrics) == 1 and [d["correlation_id"] for d in logs] == [request_id]
        assert logs[0]["location"].startswith(("_report:", "rejected:")), "the caller's location, not the helper's"
    assert _documents(accepted)[0][0]["WebhooksReceived"] == [1.0]
    assert _documents(rejected)[0][0]["WebhooksRejected"] == [1.0]


def test_metrics_are_written_even_when_the_line_is_not(aws_hub, capsys):
    """INFO off: the accepted line is not written, its metrics still are, on their own."""
    import app

    logging.getLogger("chalicelib").setLevel(logging.WARNING)
    fx = load_fixture("meta", "whatsapp_text")
    capsys.readouterr()
    assert app.app(_event(fx, "req-1"), Context())["statusCode"] == 200

    metrics, logs = _documents(capsys.readouterr().out)
    assert logs == [] and [d["EventsEnqueued"] for d in metrics] == [[1.0]]
