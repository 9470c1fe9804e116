"""Webhooks as API Gateway hands them to the Lambda function: multipart posts keep their bytes.

API Gateway base64-encodes a request body only when its Content-Type is one of the API's binary
media types (`x-amazon-apigateway-binary-media-types`, which Chalice fills from
`app.api.binary_types`); any other body reaches Lambda as UTF-8 text, with invalid bytes replaced.
`gateway_event` plays that part, so these tests fail if multipart stops being a binary type: the
attachments of a Mailgun post would arrive altered.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest
from chalice.deploy.validate import validate_route_content_types
from chalice.local import LambdaContext

from chalicelib.bootstrap import Hub, use_hub
from chalicelib.domain.models import InboundMessage
from chalicelib.settings import Settings
from tests.support.fixtures import load

AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)

CONFIG = """
channels:
  mailgun:
    webhook_signing_keys: [test-mailgun-webhook-signing-key]
    own_addresses: ["@acme.example"]
  meta:
    app_secrets: [test_meta_app_secret]
    verify_tokens: [meta-verify-token]
media: {enabled: false}
"""


def is_binary(content_type: str, binary_types: list[str]) -> bool:
    """API Gateway's test: the media type, without parameters, against the binary list."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return any(t == "*/*" or t.lower() == media_type for t in binary_types)


def gateway_event(app, path: str, body: bytes, headers: dict[str, str]) -> dict:
    """A REST API Lambda-proxy event for a POST, encoded the way API Gateway encodes it."""
    binary = is_binary(headers.get("content-type", ""), app.api.binary_types)
    provider, _, hook = path.removeprefix("/webhooks/").partition("/")
    return {
        "resource": "/webhooks/{provider}" + ("/{hook}" if hook else ""),
        "path": path,
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"provider": provider, **({"hook": hook} if hook else {})},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/webhooks/{provider}" + ("/{hook}" if hook else ""),
            "httpMethod": "POST", "path": "/api" + path, "stage": "api", "requestId": "gw-request-1",
            "identity": {"sourceIp": "203.0.113.9"},
        },
        "body": base64.b64encode(body).decode() if binary else body.decode("utf-8", "replace"),
        "isBase64Encoded": binary,
    }


@pytest.fixture
def lambda_app(tmp_path):
    config = tmp_path / "hub.yaml"
    config.write_text(CONFIG)
    hub = Hub(Settings(config_path=str(config), data_dir=str(tmp_path / "data")), clock=lambda: AT)
    use_hub(hub)
    from app import app

    try:
        yield app, hub
    finally:
        use_hub(None)
        hub.close()


def invoke(app, event: dict) -> dict:
    return app(event, LambdaContext("api_handler", 256, max_runtime_ms=5000))


def queued(hub: Hub) -> list[InboundMessage]:
    return [InboundMessage.model_validate_json(m.body) for m in hub.inbound_queue.receive(max_messages=10)]


def test_multipart_is_a_binary_type_and_every_route_passes_chalices_deploy_check(lambda_app):
    app, _ = lambda_app
    assert "multipart/form-data" in app.api.binary_types
    # What `chalice deploy` and `chalice package` run: a route may not mix binary and text types.
    validate_route_content_types(app.routes, app.api.binary_types)


def test_mailgun_multipart_attachments_arrive_byte_exact(lambda_app):
    app, hub = lambda_app
    fixture = load("mailgun", "multipart_attachments")
    body = fixture.body
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")  # the point of this test: bytes that are not text
    response = invoke(app, gateway_event(app, fixture.path, body, fixture.headers))
    assert response["statusCode"] == 200, response["body"]
    [message] = queued(hub)
    assert [(a.filename, a.content_type, a.size) for a in message.attachments] == [
        ("Rechnung-März.pdf", "application/pdf", 59), ("bild.png", "image/png", 69),
    ]


def test_a_mangled_multipart_body_would_lose_the_attachment_bytes(lambda_app):
    """The negative control: the same post through API Gateway's text path is not byte-exact."""
    app, hub = lambda_app
    fixture = load("mailgun", "multipart_attachments")
    event = gateway_event(app, fixture.path, fixture.body, fixture.headers)
    text_event = {**event, "isBase64Encoded": False, "body": fixture.body.decode("utf-8", "replace")}
    assert invoke(app, text_event)["statusCode"] == 200
    [message] = queued(hub)
    assert [a.size for a in message.attachments] != [59, 69]


def test_json_webhooks_still_arrive_as_text(lambda_app):
    app, hub = lambda_app
    fixture = load("meta", "whatsapp_text")
    event = gateway_event(app, fixture.path, fixture.body, fixture.headers)
    assert event["isBase64Encoded"] is False
    response = invoke(app, event)
    assert response["statusCode"] == 200, response["body"]
    assert len(queued(hub)) == 1


def test_a_content_type_the_provider_never_sends_is_415_in_the_hubs_error_shape(lambda_app):
    app, _ = lambda_app
    fixture = load("meta", "whatsapp_text")
    response = invoke(app, gateway_event(app, fixture.path, fixture.body, {**fixture.headers, "content-type": "text/csv"}))
    assert response["statusCode"] == 415
    assert json.loads(response["body"])["error"]["code"] == "unsupported_media_type"

