"""The ingest edge through HTTP: bad input gets a clear 4xx and stores nothing; a queue outage
gets a 5xx so the provider retries; nothing answers 500."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from chalicelib.errors import QueueUnavailableError
from tests.functional.conftest import META_SECRET, TWILIO_TOKEN
from tests.support.fixtures import load


def twilio_request(params: dict, hook: str = "messaging") -> tuple[str, bytes, dict]:
    """Sign with Twilio's own SDK, as an independent client."""
    url = f"https://hub.example.com/webhooks/twilio/{hook}"
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
    return f"/webhooks/twilio/{hook}", urlencode(params).encode(), headers


def meta_request(body: bytes) -> tuple[bytes, dict]:
    signature = "sha256=" + hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": signature}


def error_of(response) -> dict:
    assert response.headers["content-type"] == "application/json"
    return response.json()["error"]


def test_wrong_signature_is_401_and_nothing_is_enqueued(running):
    fixture = load("twilio", "sms_text")
    headers = {**fixture.headers, "x-twilio-signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}

    response = running.post(fixture.path, fixture.body, headers)

    assert response.status == 401
    assert error_of(response)["code"] == "invalid_signature"
    assert running.hub.inbound_queue.depth() == 0
    assert running.hub.counters.total("WebhooksRejected", provider="twilio", reason="invalid_signature") == 1


def test_tampered_meta_body_is_401(running):
    fixture = load("meta", "whatsapp_text")
    # The same JSON re-serialised with real UTF-8 characters: Meta signed the escaped bytes.
    reserialised = json.dumps(json.loads(fixture.body), ensure_ascii=False, separators=(",", ":")).encode()

    response = running.post("/webhooks/meta", reserialised, fixture.headers)

    assert response.status == 401
    assert running.hub.inbound_queue.depth() == 0


def test_malformed_but_signed_body_is_400_with_a_reason(running):
    body, headers = meta_request(b'{"object": "whatsapp_business_account", "entry": "not-a-list"}')

    response = running.post("/webhooks/meta", body, headers)

    assert response.status == 400
    assert error_of(response)["code"] == "malformed_payload"
    assert "entry" in error_of(response)["message"]


def test_oversized_body_is_413_before_any_parsing(running):
    body, headers = meta_request(b'{"object":"page","entry":[]}' + b" " * 70_000)

    response = running.post("/webhooks/meta", body, headers)

    assert response.status == 413
    assert error_of(response)["code"] == "payload_too_large"


def test_unknown_provider_and_unknown_route_are_404(running):
    provider = running.post("/webhooks/carrier-pigeon", b"{}", {"Content-Type": "application/json"})
    route = running.request("GET", "/no/such/route")
    root = running.request("GET", "/nothing")

    assert provider.status == 404 and "carrier-pigeon" in error_of(provider)["message"]
    assert route.status == 404 and error_of(route)["code"] == "not_found"
    assert root.status == 404 and error_of(root)["code"] == "not_found"


def test_wrong_content_type_for_the_provider_is_415(running):
    body, _ = meta_request(b"{}")
    path, form, headers = twilio_request({"MessageSid": "SM1"})

    response = running.post(path, b'{"MessageSid":"SM1"}', {**headers, "Content-Type": "application/json"})

    assert response.status == 415
    assert "application/x-www-form-urlencoded" in error_of(response)["message"]


def test_post_only_provider_rejects_get_with_405(running):
    response = running.request("GET", "/webhooks/twilio")

    assert response.status == 405


def test_meta_verify_token_handshake(running):
    ok = running.request("GET", "/webhooks/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meta-verify-token")
    wrong = running.request("GET", "/webhooks/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=nope")

    assert (ok.status, ok.body) == (200, b"1158201444")
    assert wrong.status == 403


def test_queue_outage_answers_5xx_so_the_provider_retries_and_the_retry_is_accepted(running):
    fixture = load("twilio", "sms_text")
    queue = running.hub.inbound_queue

    def down(messages):
        raise QueueUnavailableError("queue inbound unavailable (send)")

    queue.send = down
    try:
        failed = running.post(fixture.path, fixture.body, fixture.headers)
    finally:
        del queue.send
    retried = running.post(fixture.path, fixture.body, fixture.headers)

    assert failed.status == 503
    assert failed.headers.get("retry-after") == "5"
    assert error_of(failed)["code"] == "queue_unavailable"
    assert retried.status == 200
    running.wait_for(lambda: running.settled() and running.outbox(), message="contact after retry")
    assert len(running.outbox()) == 1


@pytest.mark.parametrize("junk", [b"\xff\xfe\x00garbage", b"", b"[]", b"null", b'{"object": 1}'])
def test_junk_meta_bodies_never_get_500(running, junk):
    body, headers = meta_request(junk)

    response = running.post("/webhooks/meta", body, headers)

    assert 400 <= response.status < 500


def test_the_web_chat_widget_can_call_from_a_browser_page(running):
    origin = {"Origin": "https://shop.example.com"}
    preflight = running.request("OPTIONS", "/webhooks/webchat", headers={**origin, "Access-Control-Request-Method": "POST"})
    body = json.dumps({"site_id": "acme", "visitor_id": "v-1", "message_id": "m-1", "text": "Hallo"}).encode()
    accepted = running.post("/webhooks/webchat", body, {**origin, "Content-Type": "application/json"})
    rejected = running.post("/webhooks/webchat", b"{}", {**origin, "Content-Type": "application/json"})
    server_to_server = running.request("OPTIONS", "/webhooks/twilio", headers=origin)

    assert preflight.status == 204
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert accepted.status == 202 and accepted.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert 400 <= rejected.status < 500 and rejected.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert server_to_server.status == 405
    assert "access-control-allow-origin" not in server_to_server.headers


def test_rejections_of_unknown_providers_share_one_metric_dimension(running):
    for name in ("a1", "b2", "c3"):
        running.post(f"/webhooks/{name}", b"{}", {"Content-Type": "application/json"})

    assert running.hub.counters.total("WebhooksRejected", provider="unknown", reason="not_found") == 3
    assert not [key for key in running.hub.counters.snapshot() if "provider=a1" in key]


def test_a_rotation_list_with_an_unreadable_secret_still_verifies_and_none_at_all_is_503(tmp_path):
    """An operator deletes the old SSM parameter before removing it from `app_secrets`: the new
    secret keeps verifying. With no secret readable, providers get a 503 and retry, never a 500."""
    from chalicelib.adapters.channels.meta.adapter import compute_signature
    from chalicelib.local.runtime import EmbeddedRuntime
    from chalicelib.settings import Settings

    def hub_with(app_secrets: str) -> EmbeddedRuntime:
        config = tmp_path / f"{len(app_secrets)}.yaml"
        config.write_text(f"channels:\n  meta: {{app_secrets: {app_secrets}, verify_tokens: [v]}}\nmedia: {{enabled: false}}\n")
        settings = Settings(config_path=str(config), data_dir=str(tmp_path / str(len(app_secrets))), port=0,
                            environ={"META_NEW": "new-app-secret"})
        return EmbeddedRuntime(settings, port=0).start(workers=False)

    fixture = load("meta", "whatsapp_text")
    headers = {**fixture.headers, "x-hub-signature-256": compute_signature("new-app-secret", fixture.body)}
    for app_secrets, expected in (('["env:META_NEW", "env:META_OLD_DELETED"]', 200), ('["env:META_OLD_DELETED"]', 503)):
        runtime = hub_with(app_secrets)
        try:
            request = urllib.request.Request(runtime.url + "/webhooks/meta", data=fixture.body, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    status, retry_after = response.status, None
            except urllib.error.HTTPError as error:
                status, retry_after = error.code, error.headers.get("Retry-After")
        finally:
            runtime.stop()
        assert status == expected, app_secrets
        if expected == 503:
            assert retry_after == "5"
