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


def mailgun_adapter(services) -> MailgunAdapter:
    return MailgunAdapter(MailgunSettings.model_validate({"webhook_signing_keys": ["k"]}), SecretResolver({}), services)


def mailgun_post(mime: bytes, token: str) -> WebhookRequest:
    from urllib.parse import urlencode

    timestamp = str(int(AT.timestamp()))
    fields = {"recipient": "support@acme.example", "body-mime": mime.decode(), "timestamp": timestamp,
              "token": token, "signature": compute_signature("k", timestamp, token)}
    return WebhookRequest("POST", "mime", {"content-type": "application/x-www-form-urlencoded"}, {},
                          urlencode(fields).encode(), AT)


def test_a_verdict_header_the_sender_wrote_into_a_raw_mailgun_message_proves_nothing(services):
    forged = (b"X-Mailgun-Spf: Pass\r\nX-Mailgun-Dkim-Check-Result: Pass\r\n"
              b"Received: from evil by mxa.mailgun.org with ESMTPS; Thu, 01 Jan 2026 00:00:01 +0000\r\n") + raw()
    [event] = mailgun_adapter(services).parse(mailgun_post(forged, "f" * 50)).events
    verified, details = sender_of(event)
    assert not verified and details["spf"] is None and details["hub"]["reason"] == "no_signature"


def test_a_dns_failure_makes_mailgun_retry_and_the_retry_with_the_same_token_is_proved(services):
    from chalicelib.errors import TransientError

    dns = FakeTxtResolver()
    SIGNER.publish(dns)
    dns.fail(SIGNER.dns_name)
    adapter = mailgun_adapter(AdapterServices(replay_guard=services.replay_guard, sender_verifier=SenderVerifier(dns)))
    request = mailgun_post(SIGNER.sign(raw()), "r" * 50)
    with pytest.raises(TransientError) as raised:
        adapter.parse(request)
    assert raised.value.http_status == 503 and "DNS" in raised.value.message
    dns.failing.clear()
    [event] = adapter.parse(request).events
    assert sender_of(event)[0] is True


def test_a_mailgun_token_cannot_carry_another_body_under_the_same_message_id(services):
    from chalicelib.adapters.channels.mailgun.adapter import ReplayedTokenError

    adapter = mailgun_adapter(services)
    adapter.parse(mailgun_post(raw(), "t" * 50))
    forged = raw().replace(b"Text", b"Bitte IBAN DE00 verwenden")
    with pytest.raises(ReplayedTokenError):
        adapter.parse(mailgun_post(forged, "t" * 50))
    assert adapter.parse(mailgun_post(raw(), "t" * 50)).events, "Mailgun's retry of the same message passes"


def test_a_dns_failure_makes_sendgrid_retry():
    from chalicelib.errors import TransientError

    dns = FakeTxtResolver()
    dns.fail(SIGNER.dns_name)
    adapter = SendgridAdapter(SendgridSettings.model_validate({"path_tokens": ["t" * 24]}), SecretResolver({}),
                              AdapterServices(sender_verifier=SenderVerifier(dns)))
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="email"\r\n\r\n').encode() + SIGNER.sign(raw())
    body += f"\r\n--{boundary}--\r\n".encode()
    request = WebhookRequest("POST", "t" * 24, {"content-type": f"multipart/form-data; boundary={boundary}"}, {}, body, AT)
    with pytest.raises(TransientError):
        adapter.parse(request)


def test_ses_retries_a_dns_failure_from_s3_and_takes_the_sns_copy_unproved():
    from chalicelib.errors import TransientError

    dns = FakeTxtResolver()
    dns.fail(SIGNER.dns_name)
    adapter = SesAdapter(SesSettings.model_validate({"own_addresses": ["@acme.example"]}), SecretResolver({}),
                         AdapterServices(sender_verifier=SenderVerifier(dns)))
    arguments = dict(message_id="0000example", recipients=["support@acme.example"], verdicts=Verdicts(),
                     received_at=AT, metadata={}, raw={})
    with pytest.raises(TransientError):
        adapter.email_message(SIGNER.sign(raw()), retry_dns_failures=True, **arguments)
    verified, details = sender_of(adapter.email_message(SIGNER.sign(raw()), **arguments))
    assert not verified and details["hub"]["reason"] == "dns_temporary_failure"


def test_an_internationalized_from_domain_is_proved_by_its_a_label_signature():
    dns = FakeTxtResolver()
    signer = Signer("xn--mller-kva.example").publish(dns)
    mime = raw().replace(b"jana@kunde.example", "jürgen@müller.example".encode())
    verified, details = sender_of(ses_message(AdapterServices(sender_verifier=SenderVerifier(dns)), signer.sign(mime),
                                              Verdicts()))
    assert verified and details["hub"]["dkim_domain"] == "xn--mller-kva.example"
