"""Each email channel uses the hub's own DKIM check when the provider's verdicts prove nothing,
and never overrides a provider's proof. The key reaches the verifier only through (fake) DNS."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chalicelib.adapters.channels.base import AdapterServices, WebhookRequest
from chalicelib.adapters.channels.mailgun.adapter import MailgunAdapter, MailgunSettings, compute_signature
from chalicelib.adapters.channels.sendgrid.adapter import SendgridAdapter, SendgridSettings
from chalicelib.adapters.channels.ses.adapter import SesAdapter, SesSettings
from chalicelib.adapters.channels.ses.verdicts import Verdicts
from chalicelib.adapters.email_auth import FakeTxtResolver, SenderVerifier
from chalicelib.secrets import SecretResolver
from tests.support.dkim_signing import Signer

AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
SIGNER = Signer("kunde.example")


def raw(message_id: str = "<m1@kunde.example>") -> bytes:
    return (f"From: Jana <jana@kunde.example>\r\nTo: support@acme.example\r\nSubject: Hallo\r\n"
            f"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: {message_id}\r\n\r\nText\r\n").encode()


@pytest.fixture
def services():
    dns = FakeTxtResolver()
    SIGNER.publish(dns)
    return AdapterServices(sender_verifier=SenderVerifier(dns))


def sender_of(event):
    [handle] = event.sender.handles
    return handle.verified, event.metadata["sender_verification"]


def ses_message(services, mime: bytes, verdicts: Verdicts):
    adapter = SesAdapter(SesSettings.model_validate({"own_addresses": ["@acme.example"]}), SecretResolver({}), services)
    return adapter.email_message(mime, message_id="0000example", recipients=["support@acme.example"],
                                 verdicts=verdicts, received_at=AT, metadata={}, raw={})


def test_ses_without_verdicts_is_proved_by_the_hubs_dkim_check(services):
    verified, details = sender_of(ses_message(services, SIGNER.sign(raw()), Verdicts()))
    assert verified and details["method"] == "hub_dkim" and details["hub"]["selector"] == "s1"


def test_ses_unsigned_without_verdicts_stays_unproved(services):
    verified, details = sender_of(ses_message(services, raw(), Verdicts()))
    assert not verified and details["hub"]["reason"] == "no_signature"


def test_a_providers_proof_is_kept_and_the_hub_does_not_ask_dns(services):
    dns = FakeTxtResolver()
    proved = Verdicts(spf="PASS", dkim="PASS", dmarc="PASS", source="bounce@kunde.example")
    verified, details = sender_of(ses_message(AdapterServices(sender_verifier=SenderVerifier(dns)), raw(), proved))
    assert verified and details["method"] == "provider" and "hub" not in details
    assert dns.queries == []


def test_without_a_verifier_only_the_providers_verdicts_count():
    verified, details = sender_of(ses_message(AdapterServices(), SIGNER.sign(raw()), Verdicts()))
    assert not verified and "hub" not in details


def test_sendgrid_raw_mode_is_proved_by_the_hubs_dkim_check(services):
    adapter = SendgridAdapter(SendgridSettings.model_validate({"path_tokens": ["t" * 24]}), SecretResolver({}), services)
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="email"\r\n\r\n').encode() + SIGNER.sign(raw())
    body += f"\r\n--{boundary}--\r\n".encode()
    request = WebhookRequest("POST", "t" * 24, {"content-type": f"multipart/form-data; boundary={boundary}"}, {}, body, AT)
    [event] = adapter.parse(request).events
    verified, details = sender_of(event)
    assert verified and details["method"] == "hub_dkim"


def test_mailgun_raw_mode_is_proved_by_the_hubs_dkim_check_and_tampering_is_not(services):
    from urllib.parse import urlencode

    adapter = MailgunAdapter(MailgunSettings.model_validate({"webhook_signing_keys": ["k"]}), SecretResolver({}), services)

    def post(mime: bytes, token: str) -> WebhookRequest:
        timestamp = str(int(AT.timestamp()))
        fields = {"recipient": "support@acme.example", "body-mime": mime.decode(), "timestamp": timestamp,
                  "token": token, "signature": compute_signature("k", timestamp, token)}
        return WebhookRequest("POST", "mime", {"content-type": "application/x-www-form-urlencoded"}, {},
                              urlencode(fields).encode(), AT)

    signed = SIGNER.sign(raw())
    [good] = adapter.parse(post(signed, "a" * 50)).events
    [bad] = adapter.parse(post(signed.replace(b"Text", b"Txet"), "b" * 50)).events
    assert sender_of(good)[0] is True
    verified, details = sender_of(bad)
    assert not verified and details["hub"]["reason"] == "signature_failed"
