"""Twilio sender: the request it builds, how it reads Twilio's answers, `check`, reply targets and
the settings. No I/O: a scripted HTTP client stands in for Twilio (the Prism contract tests in
tests/contract/senders/test_twilio.py check the same requests against Twilio's own spec).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qsl

import pytest
from pydantic import ValidationError

from chalicelib.adapters.channels.sending import SenderRuntime, sender_class
from chalicelib.adapters.channels.twilio.adapter import TwilioAdapter, TwilioSettings
from chalicelib.adapters.channels.twilio.sender import IDEMPOTENCY_HEADER, TwilioSender
from chalicelib.adapters.connectors.http import HttpResponse
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.models import Channel, Contact, Customer, Resolution
from chalicelib.domain.outbound import OutboundAttachment, OutboundMessage, TemplateMessage
from chalicelib.errors import (
    OutsideServiceWindowError,
    PermanentDeliveryError,
    RecipientOptedOutError,
    RetryableDeliveryError,
)
from chalicelib.secrets import SecretResolver
from chalicelib.service.identity import normalize_sender
from chalicelib.service.process import _contact
from tests.support.fixtures import load

ACCOUNT_SID = "AC" + "a" * 32
SERVICE_SID = "MG" + "b" * 32
KEY_SID = "SK" + "c" * 32
NEW_KEY_SID = "SK" + "f" * 32
CONTENT_DE = "HX" + "d" * 32
CONTENT_EN = "HX" + "e" * 32
TOKEN = "0123456789abcdef0123456789abcdef"
NEW_TOKEN = "fedcba9876543210fedcba9876543210"
PUBLIC_URL = "https://hub.example.com/webhooks/twilio"
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)
SMS_NUMBER = "+14155550100"
CUSTOMER = "+14155550101"


@dataclass
class ScriptedHttp:
    """Answers each request with the next scripted response and keeps what was sent."""

    answers: list[HttpResponse]
    requests: list[dict] = field(default_factory=list)

    def request(self, method, url, *, headers=None, body=None, timeout=None) -> HttpResponse:
        self.requests.append({"method": method, "url": url, "headers": dict(headers or {}), "body": body or b""})
        return self.answers.pop(0)

    def form(self, n: int = -1) -> list[tuple[str, str]]:
        return parse_qsl(self.requests[n]["body"].decode(), keep_blank_values=True)


def stored(name: str) -> HttpResponse:
    """A Twilio API answer stored in tests/fixtures/twilio/outbound/ (source in its .json)."""
    fixture = load("twilio", f"outbound/{name}")
    meta = json.loads((fixture_path(name)).read_text())
    return HttpResponse(status=meta["status"], headers=fixture.headers, body=fixture.body)


def fixture_path(name: str):
    from tests.support.fixtures import FIXTURES

    return FIXTURES / "twilio" / "outbound" / f"{name}.json"


def settings(**overrides) -> TwilioSettings:
    raw = {
        "auth_tokens": [TOKEN],
        "public_url": PUBLIC_URL,
        "account_sid": ACCOUNT_SID,
        "numbers": {"sms": [SMS_NUMBER], "whatsapp": [SMS_NUMBER]},
        "templates": {
            "case_update": {"content_sids": {"de": CONTENT_DE, "en": CONTENT_EN}, "parameters": 1},
            "welcome": {"content_sid": CONTENT_EN, "languages": ["en"]},
        },
        **overrides,
    }
    return TwilioSettings.model_validate(raw)


def sender(answers: list[HttpResponse] | None = None, environ: dict | None = None, **overrides) -> tuple[TwilioSender, ScriptedHttp]:
    http = ScriptedHttp(list(answers or []))
    runtime = SenderRuntime(http=http, aws_client=lambda name: None, clock=lambda: NOW)  # type: ignore[arg-type]
    return TwilioSender(settings(**overrides), SecretResolver(environ or {}), runtime), http


def message(channel: Channel = Channel.SMS, **fields) -> OutboundMessage:
    defaults = {
        "id": "ct_01JEOUT0000000000000000001",
        "customer_id": "cus_1",
        "case_id": "case_1",
        "channel": channel,
        "provider": "twilio",
        "account": ("whatsapp:" if channel is Channel.WHATSAPP else "") + SMS_NUMBER,
        "to": ("whatsapp:" if channel is Channel.WHATSAPP else "") + CUSTOMER,
        "text": "Hallo Jana, die Störung ist behoben.",
        "origin": "api:test",
        "queued_at": NOW,
    }
    return OutboundMessage(**{**defaults, **fields})


def fields_of(problems) -> list[str]:
    return [p.field for p in problems]


# --- the request ----------------------------------------------------------------------------------


def test_the_adapter_names_this_sender_without_importing_it():
    assert sender_class(TwilioAdapter.sender) is TwilioSender
    import chalicelib.adapters.channels.twilio.adapter as adapter_module

    assert "TwilioSender" not in vars(adapter_module)


def test_an_sms_is_one_form_post_to_the_accounts_messages_resource():
    twilio, http = sender([stored("api_created")])

    outcome = twilio.send(message())

    sent = http.requests[0]
    assert (sent["method"], sent["url"]) == ("POST", f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    assert sent["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent["headers"][IDEMPOTENCY_HEADER] == "ct_01JEOUT0000000000000000001"
    assert http.form() == [
        ("To", CUSTOMER),
        ("From", SMS_NUMBER),
        ("Body", "Hallo Jana, die Störung ist behoben."),
        ("StatusCallback", "https://hub.example.com/webhooks/twilio/status"),
    ]
    assert outcome.provider_message_id == "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    assert outcome.status == "sent"
    assert outcome.metadata == {"twilio_status": "queued", "num_segments": "1", "from": "+14155552345"}


def test_basic_auth_is_the_account_sid_and_the_primary_auth_token():
    import base64

    twilio, http = sender([stored("api_created")])
    twilio.send(message())
    scheme, credentials = http.requests[0]["headers"]["Authorization"].split(" ")
    assert (scheme, base64.b64decode(credentials).decode()) == ("Basic", f"{ACCOUNT_SID}:{TOKEN}")


def test_an_api_key_authenticates_instead_of_the_auth_token_and_rotates_on_401():
    import base64

    twilio, http = sender(
        [stored("api_error_20003"), stored("api_created")],
        environ={"OLD": "old-key-secret", "NEW": "new-key-secret"},
        api_credentials=[{"sid": KEY_SID, "secret": "env:OLD"}, {"sid": NEW_KEY_SID, "secret": "env:NEW"}],
    )

    twilio.send(message())

    used = [base64.b64decode(r["headers"]["Authorization"].split(" ")[1]).decode() for r in http.requests]
    assert used == [f"{KEY_SID}:old-key-secret", f"{NEW_KEY_SID}:new-key-secret"]
    assert http.requests[0]["body"] == http.requests[1]["body"]


def test_when_every_credential_is_refused_the_send_fails_permanently_with_twilios_code():
    twilio, http = sender([stored("api_error_20003"), stored("api_error_20003")], auth_tokens=[TOKEN, NEW_TOKEN])

    with pytest.raises(PermanentDeliveryError) as caught:
        twilio.send(message())

    assert caught.value.provider_code == "20003" and len(http.requests) == 2


def test_whatsapp_goes_from_and_to_whatsapp_addresses():
    twilio, http = sender([stored("api_created")])
    twilio.send(message(Channel.WHATSAPP))
    form = dict(http.form())
    assert (form["From"], form["To"]) == ("whatsapp:" + SMS_NUMBER, "whatsapp:" + CUSTOMER)


def test_a_bare_number_on_whatsapp_gets_its_prefix():
    twilio, http = sender([stored("api_created")])
    twilio.send(message(Channel.WHATSAPP, to=CUSTOMER, account=SMS_NUMBER))
    form = dict(http.form())
    assert (form["From"], form["To"]) == ("whatsapp:" + SMS_NUMBER, "whatsapp:" + CUSTOMER)


def test_attachments_are_repeated_media_urls():
    twilio, http = sender([stored("api_created")], mms=True)
    attachments = [OutboundAttachment(url="https://cdn.example.com/a.png"), OutboundAttachment(url="https://cdn.example.com/b.pdf")]
    twilio.send(message(attachments=attachments))
    assert [v for k, v in http.form() if k == "MediaUrl"] == ["https://cdn.example.com/a.png", "https://cdn.example.com/b.pdf"]


def test_a_messaging_service_goes_along_with_the_number_and_alone_when_it_is_the_account():
    twilio, http = sender([stored("api_created"), stored("api_created")], messaging_service_sid=SERVICE_SID)

    twilio.send(message())
    twilio.send(message(account=SERVICE_SID))

    first, second = dict(http.form(0)), dict(http.form(1))
    assert (first["From"], first["MessagingServiceSid"]) == (SMS_NUMBER, SERVICE_SID)
    assert "From" not in second and second["MessagingServiceSid"] == SERVICE_SID


def test_a_template_is_sent_as_content_sid_and_numbered_variables_without_body():
    twilio, http = sender([stored("api_created")])

    twilio.send(message(Channel.WHATSAPP, template=TemplateMessage(name="case_update", language="de", parameters=["Jana"])))

    form = dict(http.form())
    assert form["ContentSid"] == CONTENT_DE
    assert json.loads(form["ContentVariables"]) == {"1": "Jana"}
    assert "Body" not in form and "MediaUrl" not in form


def test_a_template_without_parameters_sends_no_variables():
    twilio, http = sender([stored("api_created")])
    twilio.send(message(Channel.WHATSAPP, template=TemplateMessage(name="welcome", language="en")))
    assert dict(http.form())["ContentSid"] == CONTENT_EN and "ContentVariables" not in dict(http.form())


def test_an_unconfigured_template_that_slipped_past_check_is_refused_before_any_call():
    twilio, http = sender([])
    with pytest.raises(PermanentDeliveryError, match="nope"):
        twilio.send(message(Channel.WHATSAPP, template=TemplateMessage(name="nope", language="de")))
    assert http.requests == []


def test_the_status_callback_keeps_the_public_urls_query_string_after_the_hook():
    twilio, http = sender([stored("api_created")], public_url=PUBLIC_URL + "?tenant=acme")
    twilio.send(message())
    assert dict(http.form())["StatusCallback"] == "https://hub.example.com/webhooks/twilio/status?tenant=acme"
    assert TwilioAdapter(twilio.settings, SecretResolver({})).url_for("status") == dict(http.form())["StatusCallback"]


def test_the_api_base_url_is_configurable():
    twilio, http = sender([stored("api_created")], api_base_url="https://api.dublin.ie1.twilio.com/")
    twilio.send(message())
    assert http.requests[0]["url"].startswith("https://api.dublin.ie1.twilio.com/2010-04-01/")


def test_sending_without_an_account_sid_is_refused():
    twilio, _ = sender([], account_sid=None)
    with pytest.raises(PermanentDeliveryError, match="account_sid"):
        twilio.send(message())


def test_an_unreadable_secret_is_retryable():
    twilio, http = sender([], auth_tokens=["env:MISSING"])
    with pytest.raises(RetryableDeliveryError, match="credentials"):
        twilio.send(message())
    assert http.requests == []


def test_an_unreadable_credential_is_skipped_for_the_next_one():
    twilio, http = sender([stored("api_created")], environ={"NEW": "new-key-secret"},
                          api_credentials=[{"sid": KEY_SID, "secret": "env:GONE"}, {"sid": NEW_KEY_SID, "secret": "env:NEW"}])
    twilio.send(message())
    assert len(http.requests) == 1


# --- Twilio's answers ---------------------------------------------------------------------------


def test_21610_means_the_recipient_opted_out():
    twilio, _ = sender([stored("api_error_21610")])
    with pytest.raises(RecipientOptedOutError) as caught:
        twilio.send(message())
    assert caught.value.provider_code == "21610"
    assert "unsubscribed recipient" in caught.value.message


def test_63016_means_the_whatsapp_window_is_closed():
    twilio, _ = sender([stored("api_error_63016")])
    with pytest.raises(OutsideServiceWindowError) as caught:
        twilio.send(message(Channel.WHATSAPP))
    assert caught.value.provider_code == "63016"


def test_429_is_retryable_after_twilios_retry_after():
    twilio, _ = sender([stored("api_error_20429")])
    with pytest.raises(RetryableDeliveryError) as caught:
        twilio.send(message())
    assert caught.value.retry_after == 7.0 and "20429" in caught.value.message


def test_5xx_is_retryable():
    twilio, _ = sender([stored("api_error_20500")])
    with pytest.raises(RetryableDeliveryError) as caught:
        twilio.send(message())
    assert caught.value.retry_after is None


def test_a_5xx_without_json_is_still_retryable():
    twilio, _ = sender([HttpResponse(502, {"content-type": "text/html"}, b"<html>Bad Gateway</html>")])
    with pytest.raises(RetryableDeliveryError, match="502"):
        twilio.send(message())


def test_another_4xx_is_permanent_with_twilios_code_and_no_phone_number_in_the_reason():
    twilio, _ = sender([stored("api_error_21211")])
    with pytest.raises(PermanentDeliveryError) as caught:
        twilio.send(message())
    assert type(caught.value) is PermanentDeliveryError
    assert caught.value.provider_code == "21211"
    assert "not a valid phone number" in caught.value.message and "5005550001" not in caught.value.message


def test_a_2xx_without_a_sid_is_not_retried():
    twilio, _ = sender([HttpResponse(201, {"content-type": "application/json"}, b"{}")])
    with pytest.raises(PermanentDeliveryError, match="sid"):
        twilio.send(message())


# --- check ----------------------------------------------------------------------------------------


def test_a_plain_reply_passes_check():
    twilio, _ = sender()
    assert twilio.check(message()) == []
    assert twilio.check(message(Channel.WHATSAPP)) == []


def test_1600_characters_pass_and_1601_do_not():
    twilio, _ = sender()
    assert twilio.check(message(text="a" * 1600)) == []
    [problem] = twilio.check(message(text="a" * 1601))
    assert problem.field == "text"
    assert "1601 characters (11 GSM-7 segments of 153)" in problem.message and "1600" in problem.message


def test_the_sms_limit_names_ucs2_segments_and_counts_emoji_twice():
    twilio, _ = sender()
    # 67 code units hold 33 emoji, never 33.5: a surrogate pair is not split across parts.
    [problem] = twilio.check(message(text="😀" * 801))
    assert "1602 characters (25 UCS-2 segments of 67)" in problem.message


def test_whatsapp_through_twilio_has_the_same_1600_character_body_limit():
    twilio, _ = sender()
    [problem] = twilio.check(message(Channel.WHATSAPP, text="a" * 1601))
    assert problem.field == "text" and "segments" not in problem.message


def test_a_configured_segment_budget_refuses_long_sms():
    twilio, _ = sender(sms_max_segments=2)
    assert twilio.check(message(text="a" * 306)) == []
    [problem] = twilio.check(message(text="a" * 307))
    assert problem.message.startswith("needs 3 GSM-7 segments of 153 characters")
    [problem] = twilio.check(message(text="é€ü" + "ж" * 134))
    assert "3 UCS-2 segments of 67" in problem.message


def test_an_empty_message_is_refused():
    twilio, _ = sender()
    assert fields_of(twilio.check(message(text=None))) == ["text"]


def test_attachments_on_sms_need_mms():
    twilio, _ = sender()
    [problem] = twilio.check(message(attachments=[OutboundAttachment(url="https://cdn.example.com/a.png")]))
    assert problem.field == "attachments" and "channels.twilio.mms" in problem.message


def test_mms_takes_ten_attachments_and_whatsapp_one():
    twilio, _ = sender(mms=True)
    ten = [OutboundAttachment(url=f"https://cdn.example.com/{i}.png") for i in range(10)]
    assert twilio.check(message(attachments=ten, text=None)) == []
    assert fields_of(twilio.check(message(attachments=[*ten, ten[0]]))) == ["attachments"]
    assert twilio.check(message(Channel.WHATSAPP, attachments=ten[:1])) == []
    [problem] = twilio.check(message(Channel.WHATSAPP, attachments=ten[:2]))
    assert "one attachment" in problem.message


def test_an_attachment_url_must_be_http():
    twilio, _ = sender(mms=True)
    problems = twilio.check(message(attachments=[OutboundAttachment(url="ftp://cdn.example.com/a.png")]))
    assert fields_of(problems) == ["attachments[0].url"]


def test_templates_are_checked_against_the_configuration():
    twilio, _ = sender()
    unknown = twilio.check(message(Channel.WHATSAPP, template=TemplateMessage(name="promo", language="de")))
    assert fields_of(unknown) == ["template.name"] and "case_update, welcome" in unknown[0].message
    wrong = twilio.check(message(Channel.WHATSAPP, template=TemplateMessage(name="case_update", language="fr", parameters=[])))
    assert fields_of(wrong) == ["template.language", "template.parameters"]
    assert "takes 1 parameters, 0 given" in wrong[1].message
    too_long = twilio.check(message(Channel.WHATSAPP, template=TemplateMessage(name="case_update", language="en", parameters=["x" * 1601])))
    assert fields_of(too_long) == ["template.parameters[0]"]
    with_media = twilio.check(message(Channel.WHATSAPP, template=TemplateMessage(name="welcome", language="en"),
                                      attachments=[OutboundAttachment(url="https://cdn.example.com/a.png")]))
    assert fields_of(with_media) == ["attachments"]


def test_the_recipient_must_fit_the_channel():
    twilio, _ = sender()
    assert fields_of(twilio.check(message(to="whatsapp:" + CUSTOMER))) == ["to"]
    assert fields_of(twilio.check(message(to="4155550101"))) == ["to"]
    assert twilio.check(message(Channel.WHATSAPP, to=CUSTOMER)) == []


def test_the_account_must_be_one_the_hub_sends_from():
    twilio, _ = sender()
    assert fields_of(twilio.check(message(account="+14155550199"))) == ["account"]


def test_check_refuses_everything_when_outbound_is_not_configured():
    twilio, _ = sender(account_sid=None)
    assert fields_of(twilio.check(message())) == ["channel"]
    assert twilio.default_account(Channel.SMS) is None and not twilio.sends_from(Channel.SMS, SMS_NUMBER)


def test_a_channel_twilio_does_not_carry_is_refused():
    twilio, _ = sender()
    assert fields_of(twilio.check(message(Channel.TELEGRAM, to="123", account="bot"))) == ["channel"]


# --- accounts and recipients ------------------------------------------------------------------------


def test_default_accounts_are_the_first_numbers_in_each_channels_form():
    twilio, _ = sender()
    assert twilio.default_account(Channel.SMS) == SMS_NUMBER
    assert twilio.default_account(Channel.WHATSAPP) == "whatsapp:" + SMS_NUMBER
    assert twilio.default_account(Channel.EMAIL) is None


def test_without_numbers_the_messaging_service_is_the_default_account():
    twilio, _ = sender(numbers={}, messaging_service_sid=SERVICE_SID)
    assert twilio.default_account(Channel.SMS) == SERVICE_SID
    assert twilio.sends_from(Channel.SMS, SERVICE_SID)


def test_sends_from_takes_configured_numbers_in_the_channels_form():
    twilio, _ = sender()
    assert twilio.sends_from(Channel.SMS, SMS_NUMBER)
    assert twilio.sends_from(Channel.WHATSAPP, "whatsapp:" + SMS_NUMBER)
    assert not twilio.sends_from(Channel.SMS, "whatsapp:" + SMS_NUMBER)
    assert not twilio.sends_from(Channel.SMS, "+14155550199")
    # A Messaging Service's pool may hold numbers the configuration does not list.
    pooled, _ = sender(messaging_service_sid=SERVICE_SID)
    assert pooled.sends_from(Channel.SMS, "+14155550199")
    # Without a list, any number of the account (Twilio checks ownership).
    unlisted, _ = sender(numbers={})
    assert unlisted.sends_from(Channel.SMS, "+14155550199")


def test_recipient_for_uses_the_customers_phone_number():
    twilio, _ = sender()
    identifiers = [Identifier.parse("email:jana@example.com"), Identifier.parse("phone:+4915123456789")]
    assert twilio.recipient_for(Channel.SMS, identifiers) == "+4915123456789"
    assert twilio.recipient_for(Channel.WHATSAPP, identifiers) == "whatsapp:+4915123456789"
    assert twilio.recipient_for(Channel.SMS, identifiers[:1]) is None
    assert twilio.recipient_for(Channel.EMAIL, identifiers) is None


def test_the_whatsapp_fallback_template_is_offered_on_whatsapp_only():
    fallback = {"name": "case_update", "language": "de", "parameters": ["Kundin"]}
    twilio, _ = sender(whatsapp_fallback_template=fallback)
    assert twilio.fallback_template(Channel.WHATSAPP, "whatsapp:" + SMS_NUMBER) == TemplateMessage(**fallback)
    assert twilio.fallback_template(Channel.SMS, SMS_NUMBER) is None
    assert twilio.extended_window(Channel.WHATSAPP) is None


# --- reply targets from the stored inbound fixtures --------------------------------------------------


def contact_from(name: str) -> Contact:
    """The contact the process worker makes of a stored Twilio webhook."""
    from chalicelib.adapters.channels.base import WebhookRequest

    fixture = load("twilio", name)
    request = WebhookRequest(method="POST", hook=fixture.hook, headers=fixture.headers, query={}, body=fixture.body,
                             received_at=NOW)
    [inbound] = TwilioAdapter(settings(), SecretResolver({})).parse(request).events
    party = normalize_sender(inbound.sender.handles, inbound.sender.display_name, default_region=None).party
    resolution = Resolution(customer_id="cus_1", created_customer=True, rule="new_customer")
    return _contact(inbound, party, Customer(id="cus_1"), "case_1", resolution)


def test_an_sms_is_answered_from_the_number_it_was_sent_to():
    target = TwilioSender.reply_target(contact_from("sms_text"))
    assert target is not None
    assert (target.channel, target.provider, target.account, target.to) == (Channel.SMS, "twilio", "+14155550100", "+14155550101")
    assert target.at == NOW and target.case_id == "case_1" and target.reply.provider_message_id is None
    assert target.key == "sms|twilio|+14155550100"


def test_a_whatsapp_message_is_answered_with_the_whatsapp_addresses_twilio_needs():
    for name in ("whatsapp_image", "whatsapp_location"):
        target = TwilioSender.reply_target(contact_from(name))
        assert target is not None
        assert (target.channel, target.account, target.to) == (
            Channel.WHATSAPP, "whatsapp:+14155550100", "whatsapp:+5511987654321")


def test_an_erased_raw_payload_falls_back_to_the_normalized_number():
    contact = contact_from("whatsapp_image").model_copy(update={"raw": {"$blob": "raw/x.json"}})
    target = TwilioSender.reply_target(contact)
    assert target is not None and target.to == "whatsapp:+5511987654321"


def test_an_mms_is_answered_on_sms():
    contact = contact_from("sms_text").model_copy(update={"channel": Channel.MMS})
    target = TwilioSender.reply_target(contact)
    assert target is not None and target.channel is Channel.SMS


def test_another_providers_contact_has_no_twilio_target():
    contact = contact_from("sms_text").model_copy(update={"provider": "meta"})
    assert TwilioSender.reply_target(contact) is None


def test_a_contact_without_any_number_has_no_target():
    contact = contact_from("sms_text")
    contact = contact.model_copy(update={"raw": {}, "sender": contact.sender.model_copy(update={"identifiers": []})})
    assert TwilioSender.reply_target(contact) is None


# --- settings -------------------------------------------------------------------------------------


def test_an_inbound_only_configuration_stays_valid():
    parsed = TwilioSettings.model_validate({"auth_tokens": [TOKEN], "public_url": PUBLIC_URL})
    assert parsed.account_sid is None and parsed.templates == {} and parsed.api_base_url == "https://api.twilio.com"


@pytest.mark.parametrize(("overrides", "field_name"), [
    ({"account_sid": "AC123"}, "account_sid"),
    ({"messaging_service_sid": "SK" + "b" * 32}, "messaging_service_sid"),
    ({"api_credentials": [{"sid": "AC" + "c" * 32, "secret": "env:X"}]}, "api_credentials.0.sid"),
    ({"api_credentials": [{"sid": KEY_SID}]}, "api_credentials.0.secret"),
    ({"api_credentials": [{"sid": KEY_SID, "secret": "env:X"}], "account_sid": None}, "api_credentials need account_sid"),
    ({"numbers": {"sms": ["4155550100"]}}, "numbers.sms"),
    ({"numbers": {"whatsapp": ["whatsapp:+14155550100"]}}, "numbers.whatsapp"),
    ({"templates": {"t": {"content_sid": CONTENT_DE}}}, "templates.t"),
    ({"templates": {"t": {"content_sid": "HX1", "languages": ["de"]}}}, "templates.t"),
    ({"templates": {"t": {"content_sid": CONTENT_DE, "languages": ["de"], "content_sids": {"en": CONTENT_EN}}}}, "templates.t"),
    ({"templates": {"t": {"content_sids": {"deutsch": CONTENT_DE}}}}, "templates.t"),
    ({"whatsapp_fallback_template": {"name": "missing", "language": "de"}}, "whatsapp_fallback_template"),
    ({"whatsapp_fallback_template": {"name": "case_update", "language": "de"}}, "whatsapp_fallback_template"),
    ({"api_base_url": "api.twilio.com"}, "api_base_url"),
    ({"sms_max_segments": 0}, "sms_max_segments"),
    ({"unknown_key": 1}, "unknown_key"),
])
def test_bad_outbound_settings_name_the_field(overrides, field_name):
    with pytest.raises(ValidationError) as caught:
        settings(**overrides)
    assert field_name in str(caught.value)


def test_secrets_stay_masked_in_the_settings_repr():
    parsed = settings(api_credentials=[{"sid": KEY_SID, "secret": "env:TWILIO_API_KEY_SECRET"}])
    assert "TWILIO_API_KEY_SECRET" not in repr(parsed)
