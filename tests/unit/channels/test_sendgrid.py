"""SendGrid Inbound Parse: URL credentials, the security policy's ECDSA signature (checked against
`cryptography` as an independent implementation), parsed and raw modes."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chalicelib.adapters.channels.sendgrid import adapter as sendgrid
from chalicelib.adapters.channels.sendgrid import signature
from chalicelib.adapters.channels.base import SimulatedCustomer, WebhookRequest
from chalicelib.adapters.channels.sendgrid.adapter import SendgridAdapter, SendgridSettings
from chalicelib.domain.models import Channel, ContentType, InboundMessage
from chalicelib.errors import MalformedPayloadError, SignatureError
from chalicelib.secrets import SecretResolver
from tests.support.ingest import ingest
from tests.support.fakes import MemoryQueue

crypto = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")
from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402

FIXTURES = Path(__file__).parents[2] / "fixtures" / "sendgrid"
EMAIL_FIXTURES = Path(__file__).parents[2] / "fixtures" / "email"
FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.body"))
PRIVATE_KEY = serialization.load_pem_private_key((FIXTURES / "signing_key.pem").read_bytes(), password=None)
PUBLIC_KEY = (FIXTURES / "public_key.txt").read_text().strip()
PASSWORD = "test-sendgrid-basic-password"
AUTH = "Basic " + base64.b64encode(f"sendgrid:{PASSWORD}".encode()).decode()
HOOK = "parse-3f9c2d6e0b7a4d1c9e8f7a6b"
TS = "1767225600"
AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
BOUNDARY = "testBoundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def adapter(**overrides) -> SendgridAdapter:
    settings_ = {
        "basic_auth": [{"username": "sendgrid", "password": PASSWORD}],
        "path_tokens": [HOOK],
        "signature_public_keys": [PUBLIC_KEY],
        "own_addresses": ["support@parse.acme.example"],
        **overrides,
    }
    return SendgridAdapter(SendgridSettings.model_validate(settings_), SecretResolver({}))


def sign(body: bytes, timestamp: str = TS, key=PRIVATE_KEY) -> str:
    return base64.b64encode(key.sign(timestamp.encode() + body, crypto.ECDSA(hashes.SHA256()))).decode()


def form(fields: list[tuple[str, bytes | str]]) -> bytes:
    body = b""
    for name, value in fields:
        body += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        body += (value if isinstance(value, bytes) else value.encode()) + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def request(body: bytes, *, headers: dict[str, str | None] | None = None, hook: str | None = HOOK,
            at: datetime = AT, timestamp: str = TS) -> WebhookRequest:
    merged: dict[str, str | None] = {
        "content-type": MULTIPART, "authorization": AUTH,
        sendgrid.SIGNATURE_HEADER.lower(): sign(body, timestamp), sendgrid.TIMESTAMP_HEADER.lower(): timestamp,
    }
    merged.update({k.lower(): v for k, v in (headers or {}).items()})
    return WebhookRequest(method="POST", hook=hook, headers={k: v for k, v in merged.items() if v is not None},
                          query={}, body=body, received_at=at)


def raw_mode(eml: bytes, **extra: str) -> bytes:
    return form([("email", eml), ("envelope", '{"to":["support@parse.acme.example"],"from":"ana@customer.example"}'),
                 *extra.items()])


def only_message(parsed) -> InboundMessage:
    assert parsed.ignored == []
    [message] = parsed.events
    return message


# --- fixtures -----------------------------------------------------------------------------------


def test_fixture_set():
    assert FIXTURE_NAMES == ["parsed_attachment", "parsed_german_latin1", "raw_bounce", "raw_mime"]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_signature_verifies_with_cryptography(load, name):
    fx = load("sendgrid", name)
    public = serialization.load_der_public_key(base64.b64decode(PUBLIC_KEY))
    timestamp = fx.headers["x-twilio-email-event-webhook-timestamp"]
    signature = base64.b64decode(fx.headers["x-twilio-email-event-webhook-signature"])
    public.verify(signature, timestamp.encode() + fx.body, crypto.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        public.verify(signature, timestamp.encode() + fx.body + b" ", crypto.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_verifies_and_parses(load, name):
    fx = load("sendgrid", name)
    sendgrid_adapter = adapter()
    sendgrid_adapter.verify(fx.request())
    parsed = sendgrid_adapter.parse(fx.request())
    assert parsed.events or parsed.ignored
    assert fx.request().hook == HOOK


def test_parsed_attachment_sample(load):
    message = only_message(adapter().parse(load("sendgrid", "parsed_attachment").request()))
    assert message.channel is Channel.EMAIL and message.content_type is ContentType.MEDIA
    assert message.dedupe_key == "msg:sendgrid:CAF=a1b2c3@mail.customer.example"
    assert message.account == "support@parse.acme.example"
    assert message.text == "Hi, the invoice is attached."
    assert [(a.filename, a.content_type, a.size) for a in message.attachments] == [("invoice-1042.pdf", "application/pdf", 59)]
    assert message.sender.handles[0].verified is True  # SPF pass, envelope and DKIM in the From domain
    assert message.thread_keys == ["email:CAF=a1b2c3@mail.customer.example", "email:order-1042.1767220000@acme.example"]
    assert message.raw["envelope"] == {"to": "support@parse.acme.example", "from": "ana@customer.example"}


def test_parsed_german_latin1_uses_charsets(load):
    message = only_message(adapter().parse(load("sendgrid", "parsed_german_latin1").request()))
    assert message.subject == "Rechnung für März"
    assert message.sender.display_name == "Jürgen Müller"
    assert message.text == "Anbei die Rechnung für März, der Betrag ist zu hoch.\n\nGrüße\nJürgen"
    assert "Ihre Rechnung 77 ist fällig." in message.metadata["full_text"]
    assert [a.filename for a in message.attachments] == ["Rechnung-März.pdf", "bild.png"]
    assert message.metadata["inline_attachments"] == ["bild1@kunde.example"]
    # SPF soft-failed, DKIM passed for the From domain: proved.
    assert message.metadata["sender_verification"]["spf"] == "softfail"
    assert message.sender.handles[0].verified is True


def test_raw_mime_mode(load):
    message = only_message(adapter().parse(load("sendgrid", "raw_mime").request()))
    assert message.raw["mode"] == "raw"
    assert message.provider_message_id == "attachments-1@kunde.example"
    assert message.text == "Anbei die Rechnung für März."
    assert {a.filename for a in message.attachments} == {"screenshot.png", "Rechnung-März.pdf", "Grüße.txt"}
    assert message.metadata["spam_score"] == "0.1"


def test_raw_bounce_is_ignored(load):
    parsed = adapter().parse(load("sendgrid", "raw_bounce").request())
    assert parsed.events == [] and parsed.ignored[0].startswith("bounce: ")


def test_ingest_accepts_the_multipart_fixture(load):
    fx = load("sendgrid", "parsed_attachment")
    result = ingest(adapter(), fx.request(), MemoryQueue(), max_body_bytes=10**7, content_type=fx.headers["content-type"])
    assert result.enqueued == 1 and result.response.status == 200
    assert SendgridAdapter.content_types == ("multipart/form-data", "application/json")


# --- URL credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"sendgrid:wrong").decode(),
     "Basic " + base64.b64encode(f"other:{PASSWORD}".encode()).decode(), "Basic " + base64.b64encode(b"sendgrid").decode()],
)
def test_wrong_basic_auth_is_401(authorization):
    body = raw_mode((EMAIL_FIXTURES / "subject_hint_only.eml").read_bytes())
    with pytest.raises(SignatureError, match="basic auth") as raised:
        adapter().verify(request(body, headers={"authorization": authorization}))
    assert raised.value.http_status == 401


def test_basic_auth_credentials_rotate():
    body = raw_mode(b"From: a@customer.example\r\n\r\nhi")
    new = "Basic " + base64.b64encode(b"sendgrid2:new-password").decode()
    sendgrid_adapter = adapter(basic_auth=[{"username": "sendgrid", "password": PASSWORD},
                                           {"username": "sendgrid2", "password": "new-password"}])
    sendgrid_adapter.verify(request(body))
    sendgrid_adapter.verify(request(body, headers={"authorization": new}))


@pytest.mark.parametrize("hook", [None, "", "parse-wrong", HOOK + "x", HOOK.upper()])
def test_wrong_path_token_is_401(hook):
    body = raw_mode(b"From: a@customer.example\r\n\r\nhi")
    with pytest.raises(SignatureError, match="path token"):
        adapter().verify(request(body, hook=hook))


def test_path_token_alone_is_enough_when_configured_alone():
    body = raw_mode(b"From: a@customer.example\r\n\r\nhi")
    sendgrid_adapter = adapter(basic_auth=[], signature_public_keys=[])
    sendgrid_adapter.verify(request(body, headers={"authorization": None, sendgrid.SIGNATURE_HEADER: None}))


def test_settings_require_a_url_credential():
    with pytest.raises(ValidationError, match="basic_auth or path_tokens"):
        SendgridSettings(signature_public_keys=[PUBLIC_KEY])
    with pytest.raises(ValidationError):
        SendgridSettings(basic_auth=[{"username": "a:b", "password": "x"}])


# --- the security policy's ECDSA signature ------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {sendgrid.SIGNATURE_HEADER: None},
        {sendgrid.TIMESTAMP_HEADER: None},
        {sendgrid.SIGNATURE_HEADER: "not base64 !"},
        {sendgrid.SIGNATURE_HEADER: base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()},
        {sendgrid.SIGNATURE_HEADER: base64.b64encode(b"\x30\x03\x02\x01").decode()},
        {sendgrid.TIMESTAMP_HEADER: "1767225601"},
        {sendgrid.TIMESTAMP_HEADER: "soon"},
    ],
    ids=["no signature", "no timestamp", "not base64", "r=s=1", "truncated DER", "other timestamp", "odd timestamp"],
)
def test_bad_signature_is_401(headers):
    body = raw_mode(b"From: a@customer.example\r\n\r\nhi")
    with pytest.raises(SignatureError):
        adapter().verify(request(body, headers=headers))


def test_signature_covers_every_byte_of_the_body(load):
    fx = load("sendgrid", "parsed_attachment")
    tampered = fx.body.replace(b"%PDF-1.4", b"%PDF-1.5")
    with pytest.raises(SignatureError):
        adapter().verify(fx.request(body=tampered))


def test_public_keys_rotate():
    other = crypto.generate_private_key(crypto.SECP256R1())
    other_public = base64.b64encode(
        other.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).decode()
    body = raw_mode(b"From: a@customer.example\r\n\r\nhi")
    signed_by_other = request(body, headers={sendgrid.SIGNATURE_HEADER: sign(body, key=other)})
    with pytest.raises(SignatureError):
        adapter().verify(signed_by_other)
    adapter(signature_public_keys=[PUBLIC_KEY, other_public]).verify(signed_by_other)


def test_signature_window():
    body = raw_mode(b"From: a@customer.example\r\n\r\nhi")
    adapter().verify(request(body, at=AT + timedelta(days=3)))  # SendGrid's retry horizon
    with pytest.raises(SignatureError, match="max_age"):
        adapter().verify(request(body, at=AT + timedelta(days=4)))
    with pytest.raises(SignatureError, match="max_age"):
        adapter(signature_max_age_seconds=300).verify(request(body, at=AT + timedelta(minutes=6)))


@settings(max_examples=25, deadline=None)
@given(message=st.binary(max_size=300), flip=st.integers(min_value=0, max_value=10_000))
def test_a_signature_verifies_only_for_its_message_and_bytes(message, flip):
    key = signature.load_public_key(PUBLIC_KEY)
    raw = PRIVATE_KEY.sign(message, crypto.ECDSA(hashes.SHA256()))
    assert signature.verifies([key], message, base64.b64encode(raw).decode())
    assert not signature.verifies([key], message + b"\x00", base64.b64encode(raw).decode())
    flipped = bytearray(raw)
    flipped[flip % len(flipped)] ^= 1 << (flip % 8)
    assert not signature.verifies([key], message, base64.b64encode(bytes(flipped)).decode())


def test_any_configured_key_may_have_signed():
    other = crypto.generate_private_key(crypto.SECP256R1()).public_key()
    keys = [other, signature.load_public_key(PUBLIC_KEY)]
    raw = PRIVATE_KEY.sign(b"payload", crypto.ECDSA(hashes.SHA256()))
    assert signature.verifies(keys, b"payload", base64.b64encode(raw).decode())
    assert not signature.verifies(keys[:1], b"payload", base64.b64encode(raw).decode())


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=120))
def test_random_signatures_never_raise(data):
    assert not signature.verifies([signature.load_public_key(PUBLIC_KEY)], b"m", base64.b64encode(data).decode())
    assert not signature.verifies([signature.load_public_key(PUBLIC_KEY)], b"m", "not base64!")


def test_public_key_formats():
    public = PRIVATE_KEY.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    point = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    compressed = base64.b64encode(bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200") + point).decode()
    expected = signature.load_public_key(PUBLIC_KEY).public_numbers()
    assert signature.load_public_key(pem).public_numbers() == expected
    assert signature.load_public_key(compressed).public_numbers() == expected


@pytest.mark.parametrize(
    "value",
    [
        "not base64!",
        base64.b64encode(b"\x30\x00").decode(),
        base64.b64encode(crypto.generate_private_key(crypto.SECP384R1()).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode(),
        # A valid structure whose point is not on the curve.
        base64.b64encode(bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200") + b"\x04" + b"\x01" * 64).decode(),
    ],
    ids=["not base64", "empty sequence", "P-384 key", "point off the curve"],
)
def test_invalid_public_keys_are_refused_at_configuration(value):
    with pytest.raises(ValidationError):
        SendgridSettings(path_tokens=[HOOK], signature_public_keys=[value])


# --- parsing -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"", MULTIPART),
        (b"garbage", MULTIPART),
        (form([("subject", "no message")]), MULTIPART),
        (form([("email", b"")]), MULTIPART),
        (form([("email", b"\r\n\r\nno headers")]), MULTIPART),
        (b"a=b", "application/x-www-form-urlencoded"),
    ],
    ids=["empty", "garbage", "no message fields", "empty email", "headerless email", "urlencoded"],
)
def test_malformed_is_400(body, content_type):
    with pytest.raises(MalformedPayloadError) as raised:
        adapter().parse(request(body, headers={"content-type": content_type}))
    assert raised.value.http_status == 400


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{@customer.example : pass}", [("customer.example", "pass")]),
        ("{@a.example : pass, @b.example : fail}", [("a.example", "pass"), ("b.example", "fail")]),
        ("none", []),
        (None, []),
    ],
)
def test_dkim_verdicts(value, expected):
    assert sendgrid.dkim_verdicts(value) == expected


@pytest.mark.parametrize(
    ("extra", "verified"),
    [
        ({"SPF": "pass"}, True),
        ({"SPF": "pass", "envelope": '{"to":["support@parse.acme.example"],"from":"x@evil.example"}'}, False),
        ({"dkim": "{@customer.example : pass}"}, True),
        ({"dkim": "{@evil.example : pass}"}, False),
        ({"dkim": "{@customer.example : fail}", "SPF": "fail"}, False),
        ({}, False),
    ],
)
def test_sender_verification(extra, verified):
    eml = b"From: Ana <ana@customer.example>\r\nMessage-ID: <v@customer.example>\r\n\r\nhi"
    fields = {"email": eml, "envelope": '{"to":["support@parse.acme.example"],"from":"ana@customer.example"}', **extra}
    message = only_message(adapter().parse(request(form(list(fields.items())))))
    assert message.sender.handles[0].verified is verified


def test_parsed_mode_auto_reply_is_ignored():
    body = form([("headers", "From: max@kunde.example\nSubject: Out of office\nAuto-Submitted: auto-replied\n"),
                 ("from", "max@kunde.example"), ("text", "away")])
    parsed = adapter().parse(request(body))
    assert parsed.events == [] and parsed.ignored == ["automatic reply: Auto-Submitted: auto-replied"]


def test_own_address_is_ignored():
    parsed = adapter().parse(request(raw_mode(b"From: support@parse.acme.example\r\n\r\nloop")))
    assert "own addresses" in parsed.ignored[0]


def test_parsed_mode_without_headers_block_uses_the_fields():
    body = form([("from", "Ana <ana@customer.example>"), ("subject", "Hallo"), ("text", "Frage"), ("to", "support@parse.acme.example")])
    message = only_message(adapter().parse(request(body)))
    assert (message.subject, message.text, message.account) == ("Hallo", "Frage", "support@parse.acme.example")
    # No Message-ID: the form's digest, identical for SendGrid's retry of the same POST.
    assert message.provider_message_id == "sha256:" + sendgrid._fields_digest(sendgrid.parse_form(body, MULTIPART))


def test_html_only_parsed_mode():
    body = form([("headers", "From: a@customer.example\nMessage-ID: <h@customer.example>\n"),
                 ("html", "<p>Hallo<br>Welt</p><script>x()</script>")])
    assert only_message(adapter().parse(request(body))).text == "Hallo\nWelt"


def test_raw_mode_digest_when_no_message_id():
    eml = b"From: a@customer.example\r\n\r\nno id"
    message = only_message(adapter().parse(request(raw_mode(eml))))
    assert message.provider_message_id == "sha256:" + hashlib.sha256(eml).hexdigest()


# --- simulation ----------------------------------------------------------------------------------------


def test_simulated_request_with_url_credentials():
    sendgrid_adapter = adapter(signature_public_keys=[])
    simulated = sendgrid_adapter.simulated_request(
        SimulatedCustomer(name="Zoë Müller", phone="+4915112345678", email="zoe@kunde.example", text="Wo ist mein Paket?")
    )
    assert simulated.path == f"/webhooks/sendgrid/{HOOK}"
    req = WebhookRequest(method="POST", hook=simulated.path.rsplit("/", 1)[1],
                         headers={k.lower(): v for k, v in simulated.headers.items()}, query={}, body=simulated.body,
                         received_at=datetime.now(timezone.utc))
    sendgrid_adapter.verify(req)
    message = only_message(sendgrid_adapter.parse(req))
    assert (message.text, message.sender.display_name) == ("Wo ist mein Paket?", "Zoë Müller")
    assert message.sender.handles[0].verified is True


def test_no_simulation_with_a_signature_policy():
    customer = SimulatedCustomer(name="A", phone="+4915112345678", email="a@kunde.example", text="x")
    assert adapter().simulated_request(customer) is None
