"""What the Twilio adapter tells the consent ledger: Advanced Opt-Out's `OptOutType` on incoming
messages, and opt-outs (21610) and closed windows (63016) on status callbacks. The fixtures live in
tests/fixtures/twilio/outbound/ (their sources in each .json), signed like Twilio signs."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlencode

import pytest
from twilio.request_validator import RequestValidator

from chalicelib.adapters.channels.base import WebhookRequest
from chalicelib.adapters.channels.twilio.adapter import TwilioAdapter, TwilioSettings
from chalicelib.domain.models import Channel, InboundMessage, StatusEvent
from chalicelib.secrets import SecretResolver
from tests.support.fixtures import load

TOKEN = "0123456789abcdef0123456789abcdef"
AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
WEBHOOKS = ["inbound_sms_stop", "inbound_sms_start", "status_sms_opted_out", "status_whatsapp_outside_window"]


def adapter() -> TwilioAdapter:
    settings = TwilioSettings.model_validate({"auth_tokens": [TOKEN], "public_url": "https://hub.example.com/webhooks/twilio"})
    return TwilioAdapter(settings, SecretResolver({}))


def request(name: str, body: bytes | None = None) -> WebhookRequest:
    fixture = load("twilio", f"outbound/{name}")
    return WebhookRequest(method="POST", hook=fixture.hook, headers=fixture.headers, query={},
                          body=fixture.body if body is None else body, received_at=AT)


def parsed(name: str, body: bytes | None = None):
    [event] = adapter().parse(request(name, body)).events
    return event


@pytest.mark.parametrize("name", WEBHOOKS)
def test_the_fixtures_are_signed_as_twilio_signs_and_verify(name):
    fixture = load("twilio", f"outbound/{name}")
    params = dict(parse_qsl(fixture.body.decode(), keep_blank_values=True))
    assert RequestValidator(TOKEN).validate(fixture.url, params, fixture.headers["x-twilio-signature"])
    adapter().verify(request(name))


@pytest.mark.parametrize(("name", "expected"), [("inbound_sms_stop", "stop"), ("inbound_sms_start", "start")])
def test_opt_out_type_reaches_the_metadata_in_lower_case(name, expected):
    message = parsed(name)
    assert isinstance(message, InboundMessage)
    assert message.metadata["opt_out_type"] == expected
    # Still an ordinary contact: the keyword is its text.
    assert message.text.upper() == expected.upper() and message.channel is Channel.SMS


def test_a_help_keyword_is_kept_too():
    pairs = [(k, "HELP" if k == "OptOutType" else v) for k, v in parse_qsl(load("twilio", "outbound/inbound_sms_stop").body.decode())]
    assert parsed("inbound_sms_stop", urlencode(pairs).encode()).metadata["opt_out_type"] == "help"


def test_a_message_without_opt_out_type_has_none():
    pairs = [(k, v) for k, v in parse_qsl(load("twilio", "outbound/inbound_sms_stop").body.decode()) if k != "OptOutType"]
    assert "opt_out_type" not in parsed("inbound_sms_stop", urlencode(pairs).encode()).metadata


def test_error_21610_in_a_status_callback_is_an_opt_out():
    status = parsed("status_sms_opted_out")
    assert isinstance(status, StatusEvent)
    assert (status.status, status.error_code, status.opted_out) == ("failed", "21610", True)
    assert (status.provider_message_id, status.recipient) == ("SM12121212121212121212121212121212", "+14155550101")


def test_other_errors_are_kept_without_an_opt_out():
    status = parsed("status_whatsapp_outside_window")
    assert (status.status, status.channel, status.error_code, status.opted_out) == ("failed", Channel.WHATSAPP, "63016", False)
    assert status.error_message == "Outside messaging window. For WhatsApp, use a Message Template instead"
    undelivered = adapter().parse(WebhookRequest(method="POST", hook="status", headers={}, query={},
                                                 body=load("twilio", "status_sms_undelivered").body, received_at=AT)).events[0]
    assert (undelivered.error_code, undelivered.opted_out) == ("30003", False)
