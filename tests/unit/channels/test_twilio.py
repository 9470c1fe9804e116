"""Twilio adapter: signatures checked against the official SDK as an independent client, then parsing."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from twilio.request_validator import RequestValidator

from chalicelib.adapters.channels.twilio import adapter as twilio
from chalicelib.adapters.channels.base import ParsedWebhook, WebhookRequest
from chalicelib.adapters.channels.twilio.adapter import TwilioAdapter, TwilioSettings
from chalicelib.domain.models import Channel, ContentType, InboundMessage, StatusEvent
from chalicelib.errors import MalformedPayloadError, MethodNotAllowedError, SecretResolutionError, SignatureError
from chalicelib.secrets import SecretResolver

TOKEN = "0123456789abcdef0123456789abcdef"
OLD_TOKEN = "fedcba9876543210fedcba9876543210"
SHARED_KEY = "test_twilio_shared_key_secret"
PUBLIC_URL = "https://hub.example.com/webhooks/twilio"
MESSAGING_URL = PUBLIC_URL + "/messaging"
STATUS_URL = PUBLIC_URL + "/status"
AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
FIXTURE_NAMES = sorted(p.stem for p in (Path(__file__).parents[2] / "fixtures" / "twilio").glob("*.body"))


class MultiParams(dict):
    """Flask's MultiDict protocol (`getall`), which RequestValidator uses for repeated names."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        self._pairs = list(pairs)
        for name, value in pairs:
            self.setdefault(name, value)

    def getall(self, name: str) -> list[str]:
        return [v for n, v in self._pairs if n == name]


def adapter(**overrides) -> TwilioAdapter:
    settings_ = {"auth_tokens": [TOKEN], "public_url": PUBLIC_URL, **overrides}
    return TwilioAdapter(TwilioSettings.model_validate(settings_), SecretResolver({}))


def request(body: bytes, headers: dict[str, str] | None = None, hook: str | None = "messaging") -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        hook=hook,
        headers={k.lower(): v for k, v in (headers or {}).items()},
        query={},
        body=body,
        received_at=AT,
    )


def sdk_signed(
    pairs: list[tuple[str, str]], *, url: str = MESSAGING_URL, token: str = TOKEN, hook: str | None = "messaging"
) -> WebhookRequest:
    """A request signed by the official SDK, i.e. the way Twilio signs it."""
    signature = RequestValidator(token).compute_signature(url, MultiParams(pairs))
    return request(urlencode(pairs).encode(), {"X-Twilio-Signature": signature}, hook=hook)


def pairs_of(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode(), keep_blank_values=True)


MESSAGE = [
    ("MessageSid", "SM" + "a" * 32),
    ("AccountSid", "AC" + "b" * 32),
    ("From", "+14155550101"),
    ("To", "+14155550100"),
    ("Body", "hello"),
    ("NumMedia", "0"),
]


# --- signatures: the stored fixtures -----------------------------------------------------------


def test_all_six_documented_fixtures_are_stored():
    assert FIXTURE_NAMES == [
        "sms_text",
        "status_sms_delivered",
        "status_sms_undelivered",
        "status_whatsapp_read",
        "whatsapp_image",
        "whatsapp_location",
    ]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_validates_with_the_official_request_validator(load, name):
    fx = load("twilio", name)
    pairs = pairs_of(fx.body)
    assert len({n for n, _ in pairs}) == len(pairs), "fixtures have no repeated names"
    assert RequestValidator(TOKEN).validate(fx.url, dict(pairs), fx.headers["x-twilio-signature"])


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_verifies_with_the_adapter(load, name):
    fx = load("twilio", name)
    twilio_adapter = adapter()
    assert twilio_adapter.url_for(fx.hook) == fx.url
    twilio_adapter.verify(fx.request())


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_module_signature_equals_the_header_twilio_sent(load, name):
    fx = load("twilio", name)
    assert twilio.compute_signature(fx.url, pairs_of(fx.body), TOKEN) == fx.headers["x-twilio-signature"]


def test_twilio_documented_known_answer_vector():
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675310",
        "Digits": "1234",
        "From": "+14158675310",
        "To": "+18005551212",
    }
    url = "https://example.com/myapp.php?foo=1&bar=2"
    assert twilio.compute_signature(url, params, "12345") == "L/OH5YylLD5NRKLltdqwSvS0BnU="


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.text(min_size=1, max_size=12), st.text(max_size=20)),
        max_size=8,
    ),
    token=st.text(min_size=1, max_size=40),
)
def test_compute_signature_matches_the_sdk_for_any_params(pairs, token):
    # Repeated names, unicode, empty values: our signing string must be the SDK's exactly.
    expected = RequestValidator(token).compute_signature(MESSAGING_URL, MultiParams(pairs))
    assert twilio.compute_signature(MESSAGING_URL, pairs, token) == expected


# --- signatures: new requests signed by the SDK, and what must fail ----------------------------


def test_request_signed_by_the_sdk_with_repeated_and_unknown_params_verifies():
    pairs = MESSAGE + [("MediaUrl0", "https://a.example/1"), ("Tag", "b"), ("Tag", "a"), ("BrandNewParam", "x")]
    adapter().verify(sdk_signed(pairs))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda p: [(n, v + "0" if n == "MessageSid" else v) for n, v in p], id="changed-value"),
        pytest.param(lambda p: p + [("Injected", "1")], id="added-param"),
        pytest.param(lambda p: p + [("Injected", "")], id="added-empty-param"),
        pytest.param(lambda p: p + [("MessageSid", "SMother")], id="added-repeat"),
        pytest.param(lambda p: [(n, v) for n, v in p if n != "AccountSid"], id="removed-param"),
        pytest.param(lambda p: [(n.lower() if n == "MessageSid" else n, v) for n, v in p], id="renamed-case"),
    ],
)
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_any_changed_added_or_removed_param_fails(load, name, change):
    fx = load("twilio", name)
    pairs = pairs_of(fx.body)
    assert change(pairs) != pairs
    tampered = urlencode(change(pairs)).encode()
    with pytest.raises(SignatureError):
        adapter().verify(fx.request(body=tampered))
    assert not RequestValidator(TOKEN).validate(fx.url, MultiParams(change(pairs)), fx.headers["x-twilio-signature"])


def test_reordered_params_still_verify(load):
    # The signature sorts names; order on the wire is not signed (Twilio's design, not ours).
    fx = load("twilio", "sms_text")
    adapter().verify(fx.request(body=urlencode(list(reversed(pairs_of(fx.body)))).encode()))


def test_signature_made_with_default_port_verifies():
    pairs = MESSAGE
    adapter().verify(sdk_signed(pairs, url="https://hub.example.com:443/webhooks/twilio/messaging"))


def test_configured_default_port_accepts_signature_without_port(load):
    adapter(public_url="https://hub.example.com:443/webhooks/twilio").verify(load("twilio", "sms_text").request())


def test_http_default_port_variant_verifies():
    request_ = sdk_signed(MESSAGE, url="http://hub.example.com:80/webhooks/twilio/messaging")
    adapter(public_url="http://hub.example.com/webhooks/twilio").verify(request_)


def test_non_default_port_is_part_of_the_url():
    # Unlike the SDK's remove_port(), a non-default port is never dropped: it names another endpoint.
    request_ = sdk_signed(MESSAGE, url="https://hub.example.com/webhooks/twilio/messaging")
    with pytest.raises(SignatureError):
        adapter(public_url="https://hub.example.com:8443/webhooks/twilio").verify(request_)


def test_fragment_on_configured_url_is_ignored(load):
    twilio_adapter = adapter(public_url="https://hub.example.com/webhooks/twilio#rc=2&rp=5xx,rt&rt=5000")
    assert twilio_adapter.settings.public_url == PUBLIC_URL
    twilio_adapter.verify(load("twilio", "sms_text").request())


def test_userinfo_on_configured_url_is_ignored_and_not_kept(load):
    twilio_adapter = adapter(public_url="https://hubuser:hubpass@hub.example.com/webhooks/twilio")
    twilio_adapter.verify(load("twilio", "sms_text").request())
    assert "hubpass" not in repr(twilio_adapter.settings)


def test_query_string_stays_after_the_hook_segment():
    twilio_adapter = adapter(public_url="https://hub.example.com/webhooks/twilio?tenant=acme")
    assert twilio_adapter.url_for("status") == "https://hub.example.com/webhooks/twilio/status?tenant=acme"
    assert twilio_adapter.url_for(None) == "https://hub.example.com/webhooks/twilio?tenant=acme"
    signed = sdk_signed(MESSAGE, url="https://hub.example.com/webhooks/twilio/status?tenant=acme", hook="status")
    twilio_adapter.verify(signed)
    with pytest.raises(SignatureError):
        adapter().verify(signed)


def test_the_hook_is_part_of_the_signed_url(load):
    with pytest.raises(SignatureError):
        adapter().verify(load("twilio", "sms_text").request(hook="status"))
    with pytest.raises(SignatureError):
        adapter().verify(load("twilio", "sms_text").request(hook=None))


def test_url_without_hook_is_the_public_url_itself():
    adapter().verify(sdk_signed(MESSAGE, url=PUBLIC_URL, hook=None))


def test_empty_body_param_stays_signed(load):
    fx = load("twilio", "whatsapp_location")
    assert b"&Body=&" in fx.body
    adapter().verify(fx.request())
    # Dropping blank values (parse_qsl's default) is exactly the bug this guards against.
    without_blank = dict(parse_qsl(fx.body.decode()))
    assert "Body" not in without_blank
    assert not RequestValidator(TOKEN).validate(fx.url, without_blank, fx.headers["x-twilio-signature"])
    with pytest.raises(SignatureError):
        adapter().verify(fx.request(body=fx.body.replace(b"&Body=&", b"&")))


@pytest.mark.parametrize("tokens", [[OLD_TOKEN, TOKEN], [TOKEN, OLD_TOKEN]])
def test_rotated_token_list_verifies_either_token(load, tokens):
    adapter(auth_tokens=tokens).verify(load("twilio", "sms_text").request())


def test_wrong_token_fails(load):
    with pytest.raises(SignatureError, match="public_url"):
        adapter(auth_tokens=[OLD_TOKEN]).verify(load("twilio", "sms_text").request())


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_signature_header_fails(load, header):
    headers = {"x-twilio-signature": header}
    with pytest.raises(SignatureError, match="missing X-Twilio-Signature"):
        adapter().verify(load("twilio", "sms_text").request(headers=headers))


def test_garbled_signature_header_fails(load):
    with pytest.raises(SignatureError):
        adapter().verify(load("twilio", "sms_text").request(headers={"x-twilio-signature": "not base64 ✓"}))


# --- SharedKey (public beta) -------------------------------------------------------------------

SETTINGS_HEADER = {"X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_123,algorithm=HMAC_SHA256"}


def shared_key_request(with_settings_header: bool = True) -> WebhookRequest:
    signature = RequestValidator(SHARED_KEY).compute_signature(MESSAGING_URL, MultiParams(MESSAGE), "HMAC_SHA256")
    assert len(signature) == 44
    headers = {"X-Twilio-Signature": signature, **(SETTINGS_HEADER if with_settings_header else {})}
    return request(urlencode(MESSAGE).encode(), headers)


def test_shared_key_hmac_sha256_verifies():
    adapter(shared_key_secrets=[SHARED_KEY]).verify(shared_key_request())


def test_shared_key_needs_the_settings_header():
    with pytest.raises(SignatureError):
        adapter(shared_key_secrets=[SHARED_KEY]).verify(shared_key_request(with_settings_header=False))


def test_shared_key_signature_fails_when_no_shared_key_is_configured():
    with pytest.raises(SignatureError):
        adapter().verify(shared_key_request())


def test_auth_token_still_verifies_during_the_shared_key_switch_over():
    signed = sdk_signed(MESSAGE)
    with_header = request(signed.body, {**signed.headers, **SETTINGS_HEADER})
    adapter(shared_key_secrets=[SHARED_KEY]).verify(with_header)


def test_signature_algorithm_reads_the_settings_header():
    assert twilio.signature_algorithm(None) == "HMAC_SHA1"
    assert twilio.signature_algorithm("key=abc") == "HMAC_SHA1"
    assert twilio.signature_algorithm("key=abc, algorithm=hmac_sha256") == "HMAC_SHA256"
    with pytest.raises(ValueError):
        twilio.compute_signature(MESSAGING_URL, {}, TOKEN, algorithm="HMAC_MD5")


# --- parsing -----------------------------------------------------------------------------------


def parse(load, name: str) -> ParsedWebhook:
    fx = load("twilio", name)
    twilio_adapter = adapter()
    req = fx.request()
    twilio_adapter.verify(req)
    return twilio_adapter.parse(req)


def only(parsed: ParsedWebhook):
    assert parsed.ignored == []
    assert len(parsed.events) == 1
    return parsed.events[0]


def test_sms_text(load):
    message = only(parse(load, "sms_text"))
    assert isinstance(message, InboundMessage)
    assert message.provider == "twilio"
    assert message.channel is Channel.SMS
    assert message.provider_message_id == "SM11111111111111111111111111111111"
    assert message.account == "+14155550100"
    assert [(h.kind, h.value) for h in message.sender.handles] == [("phone", "+14155550101")]
    assert message.sender.display_name is None
    assert message.content_type is ContentType.TEXT
    assert message.text == "Where is my order #1042?"
    assert message.conversation_key == "twilio:+14155550100:+14155550101"
    assert message.received_at == AT
    assert message.metadata["account_sid"] == "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    assert message.raw["FromCity"] == "SAN FRANCISCO"
    assert message.raw == dict(pairs_of(load("twilio", "sms_text").body))


def test_whatsapp_image(load):
    message = only(parse(load, "whatsapp_image"))
    assert message.channel is Channel.WHATSAPP
    assert message.content_type is ContentType.MEDIA
    # Prefixes stay: the worker strips `whatsapp:` when it normalizes.
    assert message.sender.handles[0].value == "whatsapp:+5511987654321"
    assert message.sender.handles[0].kind == "phone"
    assert message.account == "whatsapp:+14155550100"
    assert message.sender.display_name == "Ana Souza"
    assert message.text == "Here is the damaged box"
    [attachment] = message.attachments
    assert attachment.content_type == "image/jpeg"
    assert attachment.url.endswith("/Media/ME33333333333333333333333333333333")
    assert message.metadata["message_type"] == "image"
    assert "referral" not in message.metadata  # ReferralNumMedia=0 alone is not a referral


def test_whatsapp_location_with_empty_body(load):
    message = only(parse(load, "whatsapp_location"))
    assert message.content_type is ContentType.LOCATION
    assert message.text is None
    assert message.location.latitude == pytest.approx(51.51322977399644)
    assert message.location.longitude == pytest.approx(-0.2197976373036567)
    assert message.location.name == "The Harrow Club"
    assert message.location.address == "187 Freston Road, London W10 6TH"
    assert message.raw["Body"] == ""


def test_status_delivered(load):
    status = only(parse(load, "status_sms_delivered"))
    assert isinstance(status, StatusEvent)
    assert (status.provider, status.channel, status.status) == ("twilio", Channel.SMS, "delivered")
    assert status.provider_message_id == "SM55555555555555555555555555555555"
    assert status.recipient == "+14155550101"
    assert status.account == "+14155550100"
    assert status.error_code is None
    assert status.raw["RawDlrDoneDate"] == "2601011205"


def test_status_whatsapp_read_keeps_event_type(load):
    status = only(parse(load, "status_whatsapp_read"))
    assert (status.channel, status.status) == (Channel.WHATSAPP, "read")
    assert status.raw["EventType"] == "READ"
    assert status.dedupe_key == "status:twilio:SM66666666666666666666666666666666:read"


def test_status_undelivered_is_failed_with_error_code(load):
    status = only(parse(load, "status_sms_undelivered"))
    assert status.status == "failed"
    assert status.error_code == "30003"
    assert status.raw["MessageStatus"] == "undelivered"


def test_read_event_type_wins_over_message_status():
    pairs = [("MessageSid", "SM1"), ("MessageStatus", "delivered"), ("EventType", "READ")]
    assert only(adapter().parse(request(urlencode(pairs).encode(), hook="status"))).status == "read"


@pytest.mark.parametrize(
    ("provider_status", "ours"),
    [*twilio.STATUSES.items(), ("brand_new_status", twilio.UNKNOWN)],
)
def test_status_vocabulary_with_unknown_fallback(provider_status, ours):
    pairs = [("MessageSid", "SM1"), ("MessageStatus", provider_status), ("To", "+1"), ("From", "+2")]
    assert only(adapter().parse(request(urlencode(pairs).encode(), hook="status"))).status == ours


def test_status_hook_without_status_is_malformed():
    with pytest.raises(MalformedPayloadError, match="MessageStatus"):
        adapter().parse(request(urlencode(MESSAGE).encode(), hook="status"))


def test_mms_with_media_in_index_order():
    pairs = [(n, v) for n, v in MESSAGE if n != "NumMedia"] + [("NumMedia", "11")]
    pairs += [(f"MediaUrl{i}", f"https://media.example/{i}") for i in (10, 2, 0)]
    pairs += [("MediaContentType2", "image/png")]
    message = only(adapter().parse(request(urlencode(pairs).encode())))
    assert message.channel is Channel.MMS
    assert message.content_type is ContentType.MEDIA
    assert [a.url for a in message.attachments] == [f"https://media.example/{i}" for i in (0, 2, 10)]
    assert [a.content_type for a in message.attachments] == [None, "image/png", None]


def test_button_reply_is_interactive_with_payload():
    pairs = MESSAGE + [("ButtonText", "Track order"), ("ButtonPayload", "track-1042"), ("ButtonType", "REPLY")]
    message = only(adapter().parse(request(urlencode(pairs).encode())))
    assert message.content_type is ContentType.INTERACTIVE
    assert message.text == "Track order"
    assert message.metadata["button_payload"] == "track-1042"
    assert message.metadata["button_type"] == "REPLY"


def test_reply_to_and_referral_metadata():
    pairs = MESSAGE + [
        ("OriginalRepliedMessageSid", "SMquoted"),
        ("OriginalRepliedMessageSender", "whatsapp:+14155550100"),
        ("ReferralCtwaClid", "ARAkLk"),
        ("ReferralSourceUrl", "https://fb.me/ad"),
        ("Forwarded", "true"),
    ]
    metadata = only(adapter().parse(request(urlencode(pairs).encode()))).metadata
    assert metadata["reply_to"] == "SMquoted"
    assert metadata["reply_to_sender"] == "whatsapp:+14155550100"
    assert metadata["referral"] == {"ctwa_clid": "ARAkLk", "source_url": "https://fb.me/ad"}
    assert metadata["forwarded"] is True


def test_repeated_names_are_kept_as_lists_in_raw():
    pairs = MESSAGE + [("Tag", "b"), ("Tag", "a")]
    assert only(adapter().parse(request(urlencode(pairs).encode()))).raw["Tag"] == ["b", "a"]


def test_message_with_nothing_readable_is_unsupported_not_an_error():
    pairs = [(n, "" if n == "Body" else v) for n, v in MESSAGE] + [("MessageType", "brand_new")]
    message = only(adapter().parse(request(urlencode(pairs).encode())))
    assert message.content_type is ContentType.UNSUPPORTED
    assert message.metadata["message_type"] == "brand_new"


def test_unsupported_channel_prefix_is_acknowledged_and_kept_raw():
    pairs = [(n, "messenger:1234" if n == "From" else v) for n, v in MESSAGE]
    parsed = adapter().parse(request(urlencode(pairs).encode()))
    assert parsed.events == [] and parsed.ignored == []
    [kept] = parsed.unhandled
    assert kept.reason == "Twilio channel 'messenger' is not supported yet"
    assert kept.raw["From"] == "messenger:1234" and kept.provider == "twilio"


@pytest.mark.parametrize("field", ["MessageSid", "From", "To"])
@pytest.mark.parametrize("how", ["missing", "empty"])
def test_missing_required_field_is_malformed_and_named(field, how):
    pairs = [(n, v) for n, v in MESSAGE if n != field] + ([(field, "")] if how == "empty" else [])
    with pytest.raises(MalformedPayloadError, match=f"missing {field}"):
        adapter().parse(request(urlencode(pairs).encode()))


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ([("Latitude", "north"), ("Longitude", "1")], "Latitude"),
        ([("Latitude", "1"), ("Longitude", "inf")], "Longitude"),
        ([("Latitude", "91"), ("Longitude", "1")], "Latitude"),
    ],
)
def test_unreadable_location_is_malformed_and_named(extra, field):
    with pytest.raises(MalformedPayloadError, match=field):
        adapter().parse(request(urlencode(MESSAGE + extra).encode()))


def test_non_numeric_num_media_is_malformed():
    pairs = [(n, "two" if n == "NumMedia" else v) for n, v in MESSAGE]
    with pytest.raises(MalformedPayloadError, match="NumMedia"):
        adapter().parse(request(urlencode(pairs).encode()))


@pytest.mark.parametrize("body", [b"MessageSid=SM1&From=%2B1&To=%2B2&Body=\xff\xfe", b"MessageSid=SM1&Body=%FF"])
def test_invalid_utf8_is_verified_first_then_malformed(body):
    # Verify runs on the bytes: a correctly signed garbled body passes it, and parse refuses it.
    signature = twilio.compute_signature(MESSAGING_URL, twilio.signed_params(body), TOKEN)
    req = request(body, {"X-Twilio-Signature": signature})
    twilio_adapter = adapter()
    twilio_adapter.verify(req)
    with pytest.raises(MalformedPayloadError, match="UTF-8"):
        twilio_adapter.parse(req)


def test_ack_is_empty_twiml_for_messages_and_statuses(load):
    for name in ("sms_text", "status_sms_delivered"):
        response = adapter().ack(parse(load, name))
        assert response.status == 200
        assert response.content_type == "text/xml"
        assert response.body == '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def test_get_is_not_a_twilio_handshake():
    with pytest.raises(MethodNotAllowedError):
        adapter().handshake(request(b"", hook=None))


# --- settings and secrets ----------------------------------------------------------------------


def test_settings_reject_unknown_keys():
    with pytest.raises(ValidationError, match="auth_token\n"):
        TwilioSettings.model_validate({"auth_tokens": [TOKEN], "public_url": PUBLIC_URL, "auth_token": TOKEN})


@pytest.mark.parametrize("url", ["/webhooks/twilio", "ftp://hub.example.com/x", "https://", "https://h:99999/x"])
def test_settings_reject_a_public_url_twilio_cannot_call(url):
    with pytest.raises(ValidationError, match="public_url"):
        TwilioSettings.model_validate({"auth_tokens": [TOKEN], "public_url": url})


def test_settings_need_at_least_one_non_empty_token():
    for tokens in ([], ["  "]):
        with pytest.raises(ValidationError, match="auth_tokens"):
            TwilioSettings.model_validate({"auth_tokens": tokens, "public_url": PUBLIC_URL})


def test_settings_repr_hides_tokens():
    settings_ = TwilioSettings.model_validate(
        {"auth_tokens": [TOKEN], "public_url": PUBLIC_URL, "shared_key_secrets": [SHARED_KEY]}
    )
    for text in (repr(settings_), str(settings_), settings_.model_dump_json()):
        assert TOKEN not in text and SHARED_KEY not in text


def test_secrets_are_resolved_lazily_by_reference_and_rotation_takes_effect(load, counting_resolver):
    settings_ = TwilioSettings.model_validate({"auth_tokens": ["env:TWILIO_TOKEN"], "public_url": PUBLIC_URL})
    missing = TwilioAdapter(settings_, counting_resolver({}))  # nothing resolved at construction
    with pytest.raises(SecretResolutionError):
        missing.verify(load("twilio", "sms_text").request())
    environ = {"TWILIO_TOKEN": TOKEN}
    resolver = counting_resolver(environ)
    twilio_adapter = TwilioAdapter(settings_, resolver)
    assert resolver.calls == 0
    twilio_adapter.verify(load("twilio", "sms_text").request())
    assert resolver.calls == 1
    environ["TWILIO_TOKEN"] = "rotated-token-0000000000000000"  # the resolver's source changed
    with pytest.raises(SignatureError):
        twilio_adapter.verify(load("twilio", "whatsapp_image").request())
