"""What the hub writes to CloudWatch Logs per contact on the AWS runtime (moto): its JSON log lines
and EMF documents, per step, as docs/scaling.md prices them. Logs are billed per byte ingested,
so a log line or metric added on the path of every contact moves the cost per million contacts:
this test fails when the bytes outgrow the figures the document states.
"""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from chalice.local import LambdaContext

from chalicelib.observability import log_handler
from tests.integration import test_aws_pipeline as pipeline
from tests.integration.test_aws_pipeline import invoke, one_event, sqs_event, twilio_sms

#: The AWS runtime under moto, as the pipeline's tests build it.
aws = pipeline.aws

CONTACTS = 10
#: docs/scaling.md: "Application log bytes ... per webhook, per processed contact, per delivery",
#: measured here; a step may use up to 10 % more before the document must be updated.
DOCUMENTED = {"webhook": 592, "process": 57, "deliver": 276}
SLACK = 1.10


@pytest.fixture
def json_logs():
    """The `chalicelib` loggers as `configure_logging` sets them up on AWS: JSON lines on stdout."""
    root = logging.getLogger("chalicelib")
    saved = root.handlers, root.level
    root.handlers, root.level = [log_handler(on_aws=True)], logging.INFO
    try:
        yield
    finally:
        root.handlers, root.level = saved


def _gateway_event(body: bytes, headers: dict[str, str]) -> dict:
    """API Gateway's proxy event for a Twilio webhook, with a request id like its own (a UUID:
    every log line of the invocation carries it as the correlation id)."""
    return {
        "resource": "/webhooks/{provider}", "path": "/webhooks/twilio", "httpMethod": "POST", "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()}, "queryStringParameters": None,
        "multiValueQueryStringParameters": None, "pathParameters": {"provider": "twilio"}, "stageVariables": None,
        "requestContext": {"resourcePath": "/webhooks/{provider}", "httpMethod": "POST", "path": "/api/webhooks/twilio",
                           "stage": "api", "requestId": str(uuid.uuid4()), "identity": {"sourceIp": "203.0.113.7"}},
        "body": body.decode(), "isBase64Encoded": False,
    }


def _bytes(out: str) -> tuple[int, int]:
    """(log line bytes, EMF document bytes), newlines included, as CloudWatch Logs counts them."""
    lines = [line for line in out.splitlines() if line.strip()]
    for line in lines:
        json.loads(line)  # everything the hub prints on AWS is one JSON document per line
    emf = sum(len(line.encode()) + 1 for line in lines if '"_aws"' in line)
    return sum(len(line.encode()) + 1 for line in lines) - emf, emf


def test_the_log_bytes_per_contact_stay_within_what_scaling_md_prices(aws, json_logs, capsys):
    from app import app  # imported once the fixture's hub is the one it serves, as test_aws_pipeline does

    client, _, sqs, urls, receiver, _ = aws
    capsys.readouterr()
    for n in range(CONTACTS):
        body, headers = twilio_sms(f"SM{n:032d}", sender=f"+1415555{n:04d}")
        assert app(_gateway_event(body, headers), LambdaContext("api_handler", 256))["statusCode"] == 200
    webhook = _bytes(capsys.readouterr().out)

    invoke(client, sqs, urls["inbound"], "process_inbound", sqs_event(sqs, urls["inbound"], CONTACTS))
    process = _bytes(capsys.readouterr().out)

    for _ in range(CONTACTS):  # the deliver function's batch size is one
        invoke(client, sqs, urls["delivery"], "deliver", one_event(sqs, urls["delivery"]))
    deliver = _bytes(capsys.readouterr().out)

    assert len(receiver.requests) == CONTACTS
    measured = {step: sum(sizes) / CONTACTS for step, sizes in
                (("webhook", webhook), ("process", process), ("deliver", deliver))}
    print(f"log bytes per contact: {measured} (log lines, EMF: webhook {webhook}, process {process}, "
          f"deliver {deliver} for {CONTACTS})")
    for step, limit in DOCUMENTED.items():
        assert measured[step] <= limit * SLACK, f"{step}: {measured[step]:.0f} B per contact; docs/scaling.md says {limit}"
    # Each step writes its metrics, and the webhook its one log line, or this measures nothing.
    assert webhook[0] and all(emf for _, emf in (webhook, process, deliver))
