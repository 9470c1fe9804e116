"""Mailgun inbound routes: the signing triple checked against PROVIDERS.md's reference signer and
stored vector, replay protection, 406 for what must not be retried, both route formats."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
from pydantic import ValidationError

from chalicelib.adapters.channels.mailgun import adapter as mailgun
from chalicelib.adapters.channels.base import ParsedWebhook, SimulatedCustomer, WebhookRequest
from chalicelib.adapters.channels.mailgun.adapter import (
    MailgunAdapter,
    MailgunSettings,
    NotAcceptableError,
    ReplayedTokenError,
)
from chalicelib.domain.models import Channel, ContentType, InboundMessage
from chalicelib.adapters.channels.base import AdapterServices
from chalicelib.signing.replay import MemoryReplayGuard
from chalicelib.errors import MalformedPayloadError, QueueUnavailableError, SignatureError
from chalicelib.secrets import SecretResolver
from tests.support.ingest import ingest
from tests.support.fakes import MemoryQueue

KEY = "test-mailgun-webhook-signing-key"
OLD_KEY = "old-mailgun-webhook-signing-key"
TS = "1767225600"
AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
FORM = "application/x-www-form-urlencoded"
EMAIL_FIXTURES = Path(__file__).parents[2] / "fixtures" / "email"
FIXTURE_NAMES = sorted(p.stem for p in (Path(__file__).parents[2] / "fixtures" / "mailgun").glob("*.body"))


def reference_signature(key: str, timestamp: str, token: str) -> str:
    """PROVIDERS.md §10.6, written independently of the adapter."""
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def adapter(*, services: AdapterServices | None = None, **overrides) -> MailgunAdapter:
    settings_ = {"webhook_signing_keys": [KEY], "own_addresses": ["support@mg.acme.example", "@acme.example"], **overrides}
    return MailgunAdapter(MailgunSettings.model_validate(settings_), SecretResolver({}), services)


def request(body: bytes, content_type: str = FORM, *, at: datetime = AT, hook: str | None = None) -> WebhookRequest:
    return WebhookRequest(method="POST", hook=hook, headers={"content-type": content_type}, query={}, body=body,
                          received_at=at)


def signed(fields: list[tuple[str, str]], *, token: str = "t" * 50, timestamp: str = TS, key: str = KEY) -> bytes:
    triple = [("timestamp", timestamp), ("token", token), ("signature", reference_signature(key, timestamp, token))]
    return urlencode(triple + fields).encode()


def mime_post(raw: bytes, **kwargs) -> bytes:
    return signed([("recipient", "support@mg.acme.example"), ("sender", "ana@customer.example"),
                   ("body-mime", raw.decode("latin-1"))], **kwargs)


def only_message(parsed: ParsedWebhook) -> InboundMessage:
    assert parsed.ignored == []
    [message] = parsed.events
    assert isinstance(message, InboundMessage)
    return message


# --- the stored fixtures ------------------------------------------------------------------------


def test_fixture_set():
    assert FIXTURE_NAMES == ["auto_reply", "mime_german_reply", "multipart_attachments", "parsed_text"]


def test_documented_vector_is_the_stored_signature(load):
    fields = dict(parse_qsl(load("mailgun", "parsed_text").body.decode(), keep_blank_values=True))
    assert fields["signature"] == "26123b529dbeb8402665a4993865e90b2e1756e96dbf21a2a7be32dff4c508ea"  # PROVIDERS §5.2
    assert reference_signature(KEY, fields["timestamp"], fields["token"]) == fields["signature"]
    assert mailgun.compute_signature(KEY, fields["timestamp"], fields["token"]) == fields["signature"]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_verifies_and_parses(load, name):
    fx = load("mailgun", name)
    mailgun_adapter = adapter()
    mailgun_adapter.verify(fx.request())
    parsed = mailgun_adapter.parse(fx.request())
    assert parsed.events or parsed.ignored
    for event in parsed.events:
        assert event.model_validate_json(event.model_dump_json()) == event


def test_parsed_text_sample(load):
    message = only_message(adapter().parse(load("mailgun", "parsed_text").request()))
    assert message.channel is Channel.EMAIL and message.provider == "mailgun"
    assert message.provider_message_id == "CAF=a1b2c3@mail.customer.example"
    assert message.dedupe_key == "msg:mailgun:CAF=a1b2c3@mail.customer.example"
    assert message.account == "support@mg.acme.example"
    assert message.text == "Thanks, that works."
    assert message.subject == "Re: Order #1042"
    assert message.sender.display_name == "Ana Souza"
    # No SPF/DKIM verdict in the sample: the From address is a claim only.
    assert [h.model_dump() for h in message.sender.handles] == [
        {"kind": "email", "value": "ana@customer.example", "scope": None, "verified": False}
    ]
    assert message.thread_keys == ["email:CAF=a1b2c3@mail.customer.example", "email:order-1042.1767220000@acme.example"]
    assert "Your order shipped" in message.metadata["full_text"]
    # The signing triple is a per-POST credential, not part of the message.
    assert "26123b529dbeb840" not in json.dumps(message.raw) and "c5b6e1f3a9d24e7b" not in json.dumps(message.raw)


def test_raw_mime_route_with_german_quoted_printable(load):
    fx = load("mailgun", "mime_german_reply")
    assert fx.hook == "mime"
    message = only_message(adapter().parse(fx.request()))
    assert message.subject == "AW: Bestellung #1042 – Größe passt nicht"
    assert message.text.startswith("Guten Tag,\n\ndie Schuhe sind leider zu groß.")
    assert "Am 31.12.2025" not in message.text and "München" not in message.text
    assert message.sender.display_name == "Jürgen Müller"
    # The raw message is posted as-is: its `X-Mailgun-Spf: Pass` could be the sender's own
    # writing, so it proves nothing; only the hub's DKIM check could (no verifier here).
    assert message.sender.handles[0].verified is False
    assert message.metadata["sender_verification"]["spf"] is None
    assert message.raw["mode"] == "mime"
    assert message.thread_keys[0] == "email:20260101005900.4711@kunde.example"


def test_multipart_attachments_binary_exact_and_inline(load):
    fx = load("mailgun", "multipart_attachments")
    message = only_message(adapter().parse(fx.request()))
    assert message.content_type is ContentType.MEDIA
    assert [(a.filename, a.content_type, a.size) for a in message.attachments] == [
        ("Rechnung-März.pdf", "application/pdf", 59), ("bild.png", "image/png", 69)
    ]
    assert message.metadata["inline_attachments"] == ["bild1@kunde.example"]
    assert message.subject == "Rechnung für März" and message.sender.display_name == "Jürgen Müller"
    assert message.text == "Anbei die Rechnung für März, der Betrag ist zu hoch.\n\nGrüße\nJürgen"
    assert message.sender.handles[0].verified is True
    assert message.metadata["sender_verification"]["dkim"] == "pass"


def test_auto_reply_is_acknowledged_and_ignored(load):
    fx = load("mailgun", "auto_reply")
    parsed = adapter().parse(fx.request())
    assert parsed.events == [] and parsed.ignored == ["automatic reply: Auto-Submitted: auto-replied"]
    assert adapter().ack(parsed).status == 200


# --- verification ---------------------------------------------------------------------------------


def test_key_rotation_accepts_either_key():
    body = mime_post((EMAIL_FIXTURES / "subject_hint_only.eml").read_bytes(), key=OLD_KEY)
    with pytest.raises(SignatureError):
        adapter().verify(request(body))
    adapter(webhook_signing_keys=[KEY, OLD_KEY]).verify(request(body))


@pytest.mark.parametrize(
    "change",
    [
        lambda f: {**f, "signature": "0" * 64},
        lambda f: {**f, "token": f["token"][:-1] + "x"},
        lambda f: {**f, "timestamp": str(int(f["timestamp"]) + 1)},
        lambda f: {k: v for k, v in f.items() if k != "signature"},
        lambda f: {k: v for k, v in f.items() if k != "token"},
        lambda f: {**f, "timestamp": "1767225600.5"},
        lambda f: {**f, "signature": f["signature"] + "00"},
    ],
    ids=["wrong signature", "token changed", "timestamp changed", "no signature", "no token", "odd timestamp",
         "longer signature"],
)
def test_bad_signing_triple_is_401(load, change):
    fields = dict(parse_qsl(load("mailgun", "parsed_text").body.decode(), keep_blank_values=True))
    with pytest.raises(SignatureError) as raised:
        adapter().verify(request(urlencode(change(fields)).encode()))
    # 401, not 406: Mailgun keeps retrying for 8 hours, so a wrong key fixed meanwhile loses nothing.
    assert raised.value.http_status == 401


def test_signature_is_compared_case_insensitively_as_hex():
    body = signed([("from", "a@customer.example")])
    fields = dict(parse_qsl(body.decode()))
    fields["signature"] = fields["signature"].upper()
    adapter().verify(request(urlencode(fields).encode()))


@pytest.mark.parametrize(("offset", "ok"), [(-300, True), (300, True), (-301, False), (301, False), (-86_400, False)])
def test_replay_window(offset, ok):
    body = signed([("from", "a@customer.example")])
    at = datetime.fromtimestamp(int(TS) + offset, tz=timezone.utc)
    if ok:
        adapter(max_age_seconds=300).verify(request(body, at=at))
    else:
        with pytest.raises(SignatureError, match="timestamp"):
            adapter(max_age_seconds=300).verify(request(body, at=at))


def test_replay_window_is_configurable():
    body = signed([("from", "a@customer.example")])
    adapter(max_age_seconds=900).verify(request(body, at=AT + timedelta(minutes=14)))
    with pytest.raises(ValidationError):
        MailgunSettings(webhook_signing_keys=[KEY], max_age_seconds=5)


def test_a_token_carries_one_message_only():
    """Mailgun signs the token, not the message: a captured signature must not carry another
    message, in this process or in any other that shares the replay memory (the hub's store)."""
    shared = AdapterServices(replay_guard=MemoryReplayGuard())
    first, other_process = adapter(services=shared), adapter(services=shared)
    original = request(mime_post((EMAIL_FIXTURES / "english_reply_alternative.eml").read_bytes()))
    forged = request(mime_post((EMAIL_FIXTURES / "german_reply_qp.eml").read_bytes()))
    first.verify(original)
    assert only_message(first.parse(original))
    assert only_message(first.parse(original)), "Mailgun's retry of the same message passes"
    for receiver in (first, other_process):
        receiver.verify(forged)  # the signature itself is valid: it is the captured one
        with pytest.raises(ReplayedTokenError) as raised:
            receiver.parse(forged)
        assert raised.value.http_status == 406


def test_a_retry_after_a_failed_enqueue_is_accepted_and_the_token_stays_bound_to_its_message():
    mailgun_adapter = adapter()
    req = request(mime_post((EMAIL_FIXTURES / "english_reply_alternative.eml").read_bytes()))
    failing = MemoryQueue(fail_sends=1)
    with pytest.raises(QueueUnavailableError):
        ingest(mailgun_adapter, req, failing, max_body_bytes=10**7, content_type=FORM)
    result = ingest(mailgun_adapter, req, failing, max_body_bytes=10**7, content_type=FORM)  # Mailgun's retry
    assert result.enqueued == 1 and result.response.status == 200
    forged = request(mime_post((EMAIL_FIXTURES / "german_reply_qp.eml").read_bytes()))
    with pytest.raises(ReplayedTokenError):
        ingest(mailgun_adapter, forged, MemoryQueue(), max_body_bytes=10**7, content_type=FORM)


@pytest.mark.parametrize("retry_after_minutes", [10, 25, 55, 115, 235, 475])
def test_a_retry_after_a_5xx_with_the_first_attempts_signature_is_accepted(retry_after_minutes):
    """Mailgun retries with the original timestamp, token and signature at 10 min, 15, 30, 1 h,
    2 h and 4 h after each other: every one of them must still get in."""
    mailgun_adapter = adapter()
    body = mime_post((EMAIL_FIXTURES / "english_reply_alternative.eml").read_bytes())
    with pytest.raises(QueueUnavailableError):
        ingest(mailgun_adapter, request(body), MemoryQueue(fail_sends=1), max_body_bytes=10**7, content_type=FORM)
    retry = request(body, at=AT + timedelta(minutes=retry_after_minutes))
    assert ingest(mailgun_adapter, retry, MemoryQueue(), max_body_bytes=10**7, content_type=FORM).enqueued == 1


def test_a_timestamp_beyond_mailguns_retry_horizon_is_refused():
    body = mime_post((EMAIL_FIXTURES / "english_reply_alternative.eml").read_bytes())
    with pytest.raises(SignatureError, match="from our clock"):
        adapter().verify(request(body, at=AT + timedelta(hours=9, minutes=1)))
    with pytest.raises(SignatureError, match="from our clock"):
        adapter().verify(request(body, at=AT - timedelta(hours=9, minutes=1)))


def test_ingest_accepts_multipart(load):
    fx = load("mailgun", "multipart_attachments")
    result = ingest(adapter(), fx.request(), MemoryQueue(), max_body_bytes=10**7, content_type=fx.headers["content-type"])
    assert result.enqueued == 1
    assert set(MailgunAdapter.content_types) == {"application/x-www-form-urlencoded", "multipart/form-data", "application/json"}


# --- what must not be retried: 406 -----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        signed([("recipient", "support@mg.acme.example")]),  # signed, but no message
        signed([("body-mime", "")]),
        signed([("body-mime", "   ")]),
        signed([("from", "a@customer.example"), ("message-headers", "{not json")]),
        signed([("from", "a@customer.example"), ("message-headers", '{"a": 1}')]),
    ],
    ids=["no message", "empty mime", "blank mime", "headers not json", "headers not a list"],
)
def test_signed_but_unusable_is_406(body):
    mailgun_adapter = adapter()
    mailgun_adapter.verify(request(body))
    with pytest.raises(NotAcceptableError) as raised:
        mailgun_adapter.parse(request(body))
    assert raised.value.http_status == 406 and isinstance(raised.value, MalformedPayloadError)


@pytest.mark.parametrize("body", [b"", b"\xff\xfe", b"just text", b'{"json": true}'], ids=repr)
def test_bodies_without_mailgun_fields_reach_parse_and_are_406(body):
    mailgun_adapter = adapter()
    mailgun_adapter.verify(request(body))  # nothing to check here: parse refuses it
    with pytest.raises(NotAcceptableError):
        mailgun_adapter.parse(request(body))


def test_parse_alone_never_accepts_a_bad_signature():
    body = signed([("from", "a@customer.example"), ("body-plain", "hi")], key=OLD_KEY)
    with pytest.raises(SignatureError):
        adapter().parse(request(body))


def test_malformed_multipart_is_not_a_mailgun_post():
    body = b"--x\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nabc"  # never closed
    mailgun_adapter = adapter()
    mailgun_adapter.verify(request(body, "multipart/form-data; boundary=x"))
    with pytest.raises(NotAcceptableError):
        mailgun_adapter.parse(request(body, "multipart/form-data; boundary=x"))


# --- messages that never open a case ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("eml", "reason"),
    [("bounce_dsn", "bounce: "), ("auto_reply_ooo", "automatic reply: "), ("auto_reply_x_autoreply", "automatic reply: ")],
)
def test_automatic_mail_is_ignored(eml, reason):
    parsed = adapter().parse(request(mime_post((EMAIL_FIXTURES / f"{eml}.eml").read_bytes())))
    assert parsed.events == [] and parsed.ignored[0].startswith(reason)


@pytest.mark.parametrize("sender", ["support@mg.acme.example", "Billing@ACME.example"])
def test_own_addresses_are_ignored(sender):
    raw = f"From: {sender}\r\nTo: support@mg.acme.example\r\nMessage-ID: <x@acme.example>\r\n\r\nloop".encode()
    parsed = adapter().parse(request(mime_post(raw)))
    assert parsed.events == [] and "own addresses" in parsed.ignored[0]


def test_subject_hint_alone_still_opens_a_case():
    message = only_message(adapter().parse(request(mime_post((EMAIL_FIXTURES / "subject_hint_only.eml").read_bytes()))))
    assert message.metadata["auto_reply_hint"] is True


# --- sender verification -------------------------------------------------------------------------------


def parsed_mode(headers: list[list[str]], *, sender: str = "ana@customer.example") -> InboundMessage:
    body = signed([("recipient", "support@mg.acme.example"), ("sender", sender),
                   ("from", "Ana <ana@customer.example>"), ("body-plain", "Hello"),
                   ("message-headers", json.dumps([["From", "Ana <ana@customer.example>"], *headers]))])
    return only_message(adapter().parse(request(body)))


@pytest.mark.parametrize(
    ("headers", "sender", "verified"),
    [
        ([["X-Mailgun-Spf", "Pass"]], "ana@customer.example", True),
        ([["X-Mailgun-Spf", "Pass"]], "bounce@mail.customer.example", True),
        ([["X-Mailgun-Spf", "Pass"]], "attacker@evil.example", False),  # SPF passed for someone else's domain
        ([["X-Mailgun-Spf", "SoftFail"]], "ana@customer.example", False),
        # An attacker's own X-Mailgun-Spf sits below the one Mailgun adds on top.
        ([["X-Mailgun-Spf", "Fail"], ["X-Mailgun-Spf", "Pass"]], "ana@customer.example", False),
        ([["X-Mailgun-Dkim-Check-Result", "Pass"], ["DKIM-Signature", "v=1; d=customer.example; s=a"]],
         "attacker@evil.example", True),
        # Mailgun does not say which signature passed: one of another domain voids the DKIM credit.
        ([["X-Mailgun-Dkim-Check-Result", "Pass"], ["DKIM-Signature", "v=1; d=customer.example; s=a"],
          ["DKIM-Signature", "v=1; d=evil.example; s=a"]], "attacker@evil.example", False),
        ([["X-Mailgun-Dkim-Check-Result", "Fail"], ["DKIM-Signature", "v=1; d=customer.example; s=a"]],
         "ana@customer.example", False),
        ([], "ana@customer.example", False),
    ],
)
def test_from_is_verified_only_by_an_aligned_pass(headers, sender, verified):
    assert parsed_mode(headers, sender=sender).sender.handles[0].verified is verified


# --- the parsed-fields mode ----------------------------------------------------------------------------


def test_parsed_mode_falls_back_to_stripped_text_when_ours_is_empty():
    body = signed([("from", "a@customer.example"), ("body-plain", "> all quoted"), ("stripped-text", "Mailgun's cut")])
    assert only_message(adapter().parse(request(body))).text == "Mailgun's cut"


def test_parsed_mode_without_message_headers_reads_the_header_fields():
    body = signed([("from", "Ana <ana@customer.example>"), ("subject", "Größe"), ("body-plain", "Hi"),
                   ("Message-Id", "<m1@customer.example>"), ("References", "<a@acme.example> <b@acme.example>")])
    message = only_message(adapter().parse(request(body)))
    assert (message.subject, message.provider_message_id) == ("Größe", "m1@customer.example")
    assert message.thread_keys == ["email:m1@customer.example", "email:b@acme.example", "email:a@acme.example"]


def test_without_message_id_the_dedupe_id_survives_a_resigned_retry():
    fields = [("from", "a@customer.example"), ("body-plain", "no id"), ("recipient", "support@mg.acme.example")]
    first = only_message(adapter().parse(request(signed(fields, token="a" * 50))))
    retry = only_message(adapter().parse(request(signed(fields, token="b" * 50, timestamp=str(int(TS) + 600)),
                                                 at=AT + timedelta(minutes=10))))
    assert first.provider_message_id.startswith("sha256:")
    assert first.dedupe_key == retry.dedupe_key


def test_mime_without_message_id_uses_the_mime_digest():
    raw = b"From: a@customer.example\r\n\r\nno id"
    message = only_message(adapter().parse(request(mime_post(raw))))
    assert message.provider_message_id == "sha256:" + hashlib.sha256(raw).hexdigest()


# --- settings and simulation -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["not-an-address", "a b@x.example", "a@b@c"])
def test_own_addresses_must_be_addresses_or_domains(value):
    with pytest.raises(ValidationError):
        MailgunSettings(webhook_signing_keys=[KEY], own_addresses=[value])


def test_settings_need_a_signing_key_and_mask_it():
    with pytest.raises(ValidationError):
        MailgunSettings(webhook_signing_keys=[])
    assert KEY not in repr(MailgunSettings(webhook_signing_keys=[KEY]))


def test_simulated_request_is_accepted_by_the_adapter():
    mailgun_adapter = adapter()
    simulated = mailgun_adapter.simulated_request(
        SimulatedCustomer(name="Zoë Müller", phone="+4915112345678", email="zoe@kunde.example", text="Wo ist mein Paket?")
    )
    assert simulated.path == "/webhooks/mailgun/mime"
    req = WebhookRequest(method="POST", hook="mime", headers={k.lower(): v for k, v in simulated.headers.items()},
                         query={}, body=simulated.body, received_at=datetime.now(timezone.utc))
    mailgun_adapter.verify(req)
    message = only_message(mailgun_adapter.parse(req))
    assert message.text == "Wo ist mein Paket?"
    assert message.sender.display_name == "Zoë Müller"
    assert message.sender.handles[0].value == "zoe@kunde.example"
    assert message.account == "support@mg.acme.example"


# --- Mailgun's verdicts are only trusted from Mailgun's own header block ---------------------------

SPOOFED = (
    b"Received: from attacker-laptop (unknown [198.51.100.66]) by smtp.evil.example with SMTP;"
    b" Thu, 01 Jan 2026 00:00:00 +0000\r\n"
    b"X-Mailgun-Spf: Pass\r\nX-Mailgun-Dkim-Check-Result: Pass\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; d=kunde.example; s=mail; h=from; bh=AAAA; b=BBBB\r\n"
    b"From: =?UTF-8?Q?J=C3=BCrgen?= <juergen.mueller@kunde.example>\r\nTo: support@mg.acme.example\r\n"
    b"Subject: Rechnung\r\nMessage-ID: <spoof-1@evil.example>\r\n\r\nBitte Konto aendern.\r\n"
)


def test_a_sender_written_mailgun_verdict_below_another_hosts_received_line_is_not_trusted():
    message = only_message(adapter().parse(request(mime_post(SPOOFED))))
    assert message.sender.handles[0].verified is False


def test_mailguns_own_verdict_on_top_wins_over_a_forged_one_below():
    mailgun_block = (b"X-Mailgun-Spf: Fail\r\n"
                     b"Received: from smtp.evil.example by mxa.mailgun.org with ESMTPS; Thu, 01 Jan 2026 00:00:01 +0000\r\n")
    message = only_message(adapter().parse(request(mime_post(mailgun_block + SPOOFED))))
    assert message.sender.handles[0].verified is False


def test_raw_mode_trusts_no_verdict_header_not_even_below_a_mailgun_received_line(load):
    fixture = load("mailgun", "mime_german_reply")
    assert b"X-Mailgun-Spf%3A+Pass%0D%0AReceived%3A+from" in fixture.request().body  # Mailgun's own block
    message = only_message(adapter().parse(fixture.request()))
    assert message.sender.handles[0].verified is False


@pytest.mark.parametrize(
    ("pairs", "verdicts"),
    [
        ([("X-Mailgun-Spf", "Pass"), ("Received", "from a by mxa.mailgun.org; x"), ("X-Mailgun-Spf", "Fail")],
         ("Pass", None)),
        ([("Received", "from a by mail.example.com; x"), ("X-Mailgun-Spf", "Pass")], (None, None)),
        ([("Received", "by mxb.mailgun.org; x"), ("X-Mailgun-Dkim-Check-Result", "Pass")], (None, "Pass")),
        ([], (None, None)),
    ],
)
def test_mailgun_verdicts_come_from_the_top_block_only(pairs, verdicts):
    assert mailgun.mailgun_verdicts(pairs) == verdicts
