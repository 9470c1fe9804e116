"""SES through SNS: SNS signatures v1/v2 (RSA PKCS#1 v1.5 in pure Python, checked against
`cryptography`), the SigningCertURL host allow-list, certificate caching, the topic allow-list,
subscription confirmation, and SES Received notifications → email messages.

The fixtures in tests/fixtures/ses were signed with `cryptography` by make_fixtures.py; the fake
fetcher below serves the matching certificate for the genuine-looking SNS URL they name.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chalicelib.adapters.channels.ses import sns_signature as sns
from chalicelib.adapters.channels.base import SimulatedCustomer, WebhookRequest
from chalicelib.adapters.channels.ses.adapter import (
    SIMULATED_CERT_PATH,
    SesAdapter,
    SesSettings,
    Verdicts,
    simulated_notification,
)
from chalicelib.adapters.channels.ses.s3_pull import ses_headers
from chalicelib.adapters.queue.base import OutgoingMessage
from chalicelib.domain.models import Channel, ContentType, StatusEvent
from chalicelib.errors import ForbiddenError, MalformedPayloadError, SignatureError, TransientError
from chalicelib.secrets import SecretResolver
from tests.support.ingest import ingest

crypto = pytest.importorskip("cryptography")  # dev dependency (moto's); the hub itself never imports it
from cryptography import x509  # noqa: E402
from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding  # noqa: E402

FIXTURES = Path(__file__).parents[2] / "fixtures" / "ses"
AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
REGION = "eu-central-1"
TOPIC = f"arn:aws:sns:{REGION}:123456789012:ses-inbound"
OTHER_TOPIC = f"arn:aws:sns:{REGION}:123456789012:other"
CERT_URL = f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-6209c161c6221fdf56ec1eb5c821d112.pem"
KEY_PEM = (FIXTURES / "signing_key.pem").read_text()
CERT_PEM = (FIXTURES / "signing_cert.pem").read_bytes()
OTHER_KEY_PEM = (FIXTURES / "other_key.pem").read_text()
OTHER_CERT_PEM = (FIXTURES / "other_cert.pem").read_bytes()
KEY = sns.load_private_key(KEY_PEM)
OTHER_KEY = sns.load_private_key(OTHER_KEY_PEM)
CRYPTO_KEY = serialization.load_pem_private_key(KEY_PEM.encode(), password=None)
SES_ID = "8l1uq6c0example0umlauts0v2sns0base64aa1"


class FakeFetcher:
    """Serves certificates and SubscribeURL answers by URL and records every call."""

    def __init__(self, responses: dict[str, sns.HttpResponse] | None = None) -> None:
        self.responses = {CERT_URL: sns.HttpResponse(200, CERT_PEM), **(responses or {})}
        self.calls: list[str] = []

    def __call__(self, url: str) -> sns.HttpResponse:
        self.calls.append(url)
        if url in self.responses:
            return self.responses[url]
        if "Action=ConfirmSubscription" in url:
            return sns.HttpResponse(200, b"<ConfirmSubscriptionResponse/>")
        return sns.HttpResponse(404, b"")


def make_adapter(fetch: FakeFetcher | None = None, **overrides) -> SesAdapter:
    values = {"topic_arns": [TOPIC], "own_addresses": ["support@inbound.acme.example", "@acme.example"], **overrides}
    return SesAdapter(SesSettings.model_validate(values), SecretResolver({}), fetch=fetch or FakeFetcher())


def request(body: bytes, headers: dict[str, str] | None = None, *, at: datetime = AT) -> WebhookRequest:
    merged = {"content-type": "text/plain; charset=UTF-8", **{k.lower(): v for k, v in (headers or {}).items()}}
    return WebhookRequest(method="POST", hook=None, headers=merged, query={}, body=body, received_at=at)


def fixture(name: str) -> tuple[bytes, dict[str, str]]:
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    return (FIXTURES / f"{name}.body").read_bytes(), meta["headers"]


def stored(name: str) -> WebhookRequest:
    body, headers = fixture(name)
    return request(body, headers)


def envelope(name: str) -> dict:
    return json.loads(fixture(name)[0])


def resigned(message: dict, key=KEY, version: str | None = None) -> bytes:
    """`message` signed again after a change, with the same SigningCertURL."""
    version = version or message.get("SignatureVersion", "2")
    unsigned = {k: v for k, v in message.items() if k not in ("Signature", "SignatureVersion")}
    return json.dumps(sns.sign_message(unsigned, key, version=version)).encode()


MIME = (
    "From: Ana Souza <ana@customer.example>\r\n"
    "To: support@inbound.acme.example\r\n"
    "Subject: Frage\r\n"
    "Message-ID: <m1@customer.example>\r\n"
    "Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Wo bleibt mein Paket? Grüße\r\n"
)


def notification(
    mime: str | bytes = MIME,
    *,
    verdicts: dict[str, str] | None = None,
    encoding: str | None = "BASE64",
    ses_id: str = "sesid0000000000000000000000000000000001",
    sns_id: str = "00000000-0000-4000-8000-000000000001",
    topic: str = TOPIC,
    key=KEY,
    version: str = "2",
    timestamp: str = "2026-01-01T00:00:01.200Z",
    cert_url: str = CERT_URL,
    **ses_fields,
) -> bytes:
    """An SNS notification of an SES SNS action carrying `mime`, signed like SNS signs."""
    raw = mime.encode("utf-8") if isinstance(mime, str) else mime
    action = {"type": "SNS", "topicArn": topic}
    if encoding is not None:
        action["encoding"] = encoding
    verdicts = {"spam": "PASS", "virus": "PASS", "spf": "PASS", "dkim": "PASS", "dmarc": "PASS", **(verdicts or {})}
    ses = {
        "notificationType": "Received",
        "mail": {"timestamp": "2026-01-01T00:00:00.611Z", "source": "ana@customer.example", "messageId": ses_id,
                 "destination": ["support@inbound.acme.example"]},
        "receipt": {"recipients": ["support@inbound.acme.example"], "action": action,
                    **{f"{k}Verdict": {"status": v} for k, v in verdicts.items()}},
        "content": base64.b64encode(raw).decode() if encoding in ("BASE64", "Base64") else raw.decode("utf-8"),
    }  # fmt: skip
    ses.update(ses_fields)
    message = {
        "Type": "Notification",
        "MessageId": sns_id,
        "TopicArn": topic,
        "Subject": "Amazon SES Email Receipt Notification",
        "Message": json.dumps(ses),
        "Timestamp": timestamp,
    }
    signed = sns.sign_message(message, key, version=version)
    signed["SigningCertURL"] = cert_url
    return json.dumps(signed).encode()


def parse(body: bytes, adapter: SesAdapter | None = None, **headers):
    adapter = adapter or make_adapter()
    req = request(body, headers)
    adapter.verify(req)
    return adapter.parse(req)


def crypto_verify(public_pem: bytes, signature: bytes, message: bytes, digest) -> bool:
    try:
        x509.load_pem_x509_certificate(public_pem).public_key().verify(signature, message, padding.PKCS1v15(), digest)
    except InvalidSignature:
        return False
    return True


# --- RSA PKCS#1 v1.5 and X.509, against cryptography -------------------------------------------


def test_certificate_key_and_validity_equal_cryptographys_reading():
    ours = sns.load_certificate(CERT_PEM)
    theirs = x509.load_pem_x509_certificate(CERT_PEM)
    assert ours.public_key.public_numbers() == theirs.public_key().public_numbers()
    assert ours.not_before == theirs.not_valid_before_utc
    assert ours.not_after == theirs.not_valid_after_utc


def test_der_certificate_reads_like_pem():
    der = x509.load_pem_x509_certificate(CERT_PEM).public_bytes(serialization.Encoding.DER)
    assert sns.load_certificate(der).public_key.public_numbers() == sns.load_certificate(CERT_PEM).public_key.public_numbers()


def test_private_key_pkcs8_and_pkcs1_read_the_same_numbers():
    pkcs1 = CRYPTO_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    for pem in (KEY_PEM, pkcs1):
        assert sns.load_private_key(pem).private_numbers() == CRYPTO_KEY.private_numbers()
    assert str(CRYPTO_KEY.private_numbers().d) not in repr(KEY)  # never the numbers


@pytest.mark.parametrize("digest_name, digest", [("sha1", hashes.SHA1()), ("sha256", hashes.SHA256())])
def test_our_signature_is_byte_identical_to_cryptographys_and_verifies_there(digest_name, digest):
    message = "Message\nGrüße aus München\nType\nNotification\n".encode()
    ours = sns.sign_pkcs1_v15(KEY, message, digest_name)
    # PKCS#1 v1.5 signatures are deterministic: an independent implementation gives the same bytes.
    assert ours == CRYPTO_KEY.sign(message, padding.PKCS1v15(), digest)
    assert crypto_verify(CERT_PEM, ours, message, digest)


@settings(max_examples=40, deadline=None)
@given(message=st.binary(max_size=300), version=st.sampled_from(["1", "2"]), flip=st.integers(0, 255 * 8))
def test_cryptographys_signatures_verify_and_any_bit_flip_fails(message, version, flip):
    digest_name = sns.HASHES[version]
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = CRYPTO_KEY.sign(message, padding.PKCS1v15(), digest)
    public = sns.load_certificate(CERT_PEM).public_key
    assert sns.verify_pkcs1_v15(public, signature, message, digest_name)
    flipped = bytearray(signature)
    flipped[flip // 8 % len(flipped)] ^= 1 << (flip % 8)
    assert not sns.verify_pkcs1_v15(public, bytes(flipped), message, digest_name)
    assert not sns.verify_pkcs1_v15(public, signature, message + b"x", digest_name)


def test_signature_rejections_never_raise():
    public = KEY.public_key()
    message = b"data"
    good = sns.sign_pkcs1_v15(KEY, message, "sha256")
    assert sns.verify_pkcs1_v15(public, good, message, "sha256")
    assert not sns.verify_pkcs1_v15(public, good, message, "sha1"), "digest must match the version"
    assert not sns.verify_pkcs1_v15(public, good[1:], message, "sha256"), "length must be exactly k"
    assert not sns.verify_pkcs1_v15(public, b"\x00" + good, message, "sha256")
    assert not sns.verify_pkcs1_v15(public, b"\xff" * (public.key_size // 8), message, "sha256"), "s >= n"
    assert not sns.verify_pkcs1_v15(public, b"", message, "sha256")
    assert not sns.verify_pkcs1_v15(OTHER_KEY.public_key(), good, message, "sha256")


def test_signature_with_wrong_padding_type_fails():
    # A raw RSA operation on a digest with PKCS#1 *encryption* padding (type 2) is not a signature.
    numbers = KEY.private_numbers()
    k = KEY.key_size // 8
    t = bytes.fromhex("3031300d060960864801650304020105000420") + __import__("hashlib").sha256(b"m").digest()
    em = b"\x00\x02" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    forged = pow(int.from_bytes(em, "big"), numbers.d, numbers.public_numbers.n).to_bytes(k, "big")
    assert not sns.verify_pkcs1_v15(KEY.public_key(), forged, b"m", "sha256")


def test_weak_non_rsa_and_garbage_certificates_are_refused():
    with pytest.raises(sns.CertificateError, match="below 2048"):
        sns.load_certificate((FIXTURES / "weak_cert.pem").read_bytes())
    ec_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "ec")])
    ec_cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ec_key.public_key())
        .serial_number(1).not_valid_before(datetime(2025, 1, 1)).not_valid_after(datetime(2030, 1, 1))
        .sign(ec_key, hashes.SHA256())
    )  # fmt: skip
    with pytest.raises(sns.CertificateError, match="not an RSA"):
        sns.load_certificate(ec_cert.public_bytes(serialization.Encoding.PEM))
    for garbage in (b"", b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----", b"\x30\x80\x00\x00", b"\x30"):
        with pytest.raises(sns.CertificateError):
            sns.load_certificate(garbage)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mangled_certificates_raise_only_certificate_error(data):
    der = bytearray(x509.load_pem_x509_certificate(CERT_PEM).public_bytes(serialization.Encoding.DER))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(der) - 1))
        der[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(der)))
    try:
        sns.load_certificate(bytes(der[:cut]))
    except sns.CertificateError:
        pass


def test_private_key_files_of_other_kinds_are_refused():
    with pytest.raises(sns.CertificateError):
        sns.load_private_key(CERT_PEM)
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(sns.CertificateError, match="not an RSA"):
        sns.load_private_key(ec_pem)


# --- the string SNS signs ----------------------------------------------------------------------


def test_string_to_sign_layout_for_notification_and_optional_subject():
    message = {"Type": "Notification", "MessageId": "m", "TopicArn": "t", "Message": "a\nb", "Timestamp": "ts"}
    assert sns.string_to_sign(message) == b"Message\na\nb\nMessageId\nm\nTimestamp\nts\nTopicArn\nt\nType\nNotification\n"
    with_subject = {**message, "Subject": "S", "UnsubscribeURL": "ignored", "SignatureVersion": "2"}
    assert sns.string_to_sign(with_subject) == (
        b"Message\na\nb\nMessageId\nm\nSubject\nS\nTimestamp\nts\nTopicArn\nt\nType\nNotification\n"
    )


def test_string_to_sign_layout_for_confirmations():
    message = {"Type": "SubscriptionConfirmation", "MessageId": "m", "Token": "k", "TopicArn": "t", "Message": "x",
               "SubscribeURL": "u", "Timestamp": "ts", "Subject": "not signed for confirmations"}  # fmt: skip
    expected = b"Message\nx\nMessageId\nm\nSubscribeURL\nu\nTimestamp\nts\nToken\nk\nTopicArn\nt\nType\n"
    assert sns.string_to_sign(message) == expected + b"SubscriptionConfirmation\n"
    assert sns.string_to_sign({**message, "Type": "UnsubscribeConfirmation"}) == expected + b"UnsubscribeConfirmation\n"


@pytest.mark.parametrize(
    "message, error",
    [
        ({"Type": "Other"}, "not a type SNS signs"),
        ({"Type": "Notification", "MessageId": "m", "TopicArn": "t", "Message": "x"}, "without Timestamp"),
        ({"Type": "Notification", "MessageId": 1, "TopicArn": "t", "Message": "x", "Timestamp": "ts"}, "not a string"),
    ],
)
def test_string_to_sign_refuses_what_sns_never_sends(message, error):
    with pytest.raises(ValueError, match=error):
        sns.string_to_sign(message)


def test_fixture_signatures_were_made_over_our_canonical_string():
    public = sns.load_certificate(CERT_PEM).public_key
    for name in ("received_umlauts_v2", "received_utf8_v1", "subscription_confirmation", "unsubscribe_confirmation"):
        message = envelope(name)
        signature = base64.b64decode(message["Signature"])
        assert sns.verify_pkcs1_v15(public, signature, sns.string_to_sign(message), sns.HASHES[message["SignatureVersion"]])


# --- where certificates and confirmations may come from ----------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        CERT_URL,
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-01d088a6f77103d0fe307c0069e40ed6.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-3250158c6b1c2d6f.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.ap-southeast-3.amazonaws.com:443/SimpleNotificationService-abc.pem",
    ],
)
def test_genuine_signing_cert_urls(url):
    assert sns.is_signing_cert_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com.attacker.example/SimpleNotificationService-abc.pem",
        "https://attacker.example/sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com@attacker.example/SimpleNotificationService-abc.pem",
        "https://attacker.example\\@sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem?x=1",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem#frag",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.txt",
        "https://sns.us-east-1.amazonaws.com/a/../SimpleNotificationService-abc.pem",
        "https://sns.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns-fips.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://s3.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com.cn.attacker.example/x.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem\n",
        "https://sns.us-east-1.amazonaws.com:99999/x.pem",
        "",
        "sns.us-east-1.amazonaws.com/x.pem",
    ],
)
def test_anything_else_is_not_a_signing_cert_url(url):
    assert not sns.is_signing_cert_url(url)


def test_subscribe_url_must_confirm_this_topic_on_an_sns_host():
    good = f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=abc"
    assert sns.is_subscribe_url(good, TOPIC)
    assert not sns.is_subscribe_url(good, OTHER_TOPIC)
    assert not sns.is_subscribe_url(good.replace("ConfirmSubscription", "Unsubscribe"), TOPIC)
    assert not sns.is_subscribe_url(good.replace("https://sns.", "https://evil.sns."), TOPIC)
    assert not sns.is_subscribe_url(good.replace("https://", "http://"), TOPIC)
    assert not sns.is_subscribe_url(f"https://attacker.example/?Action=ConfirmSubscription&TopicArn={TOPIC}", TOPIC)


# --- certificate cache -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_certificate_is_fetched_once_per_url_and_reused():
    fetch = FakeFetcher()
    adapter = make_adapter(fetch)
    for name in ("received_umlauts_v2", "received_utf8_v1", "received_spam_fail", "subscription_confirmation"):
        adapter.verify(stored(name))
    assert fetch.calls == [CERT_URL]


def test_cache_entries_expire_and_are_fetched_again():
    fetch, clock = FakeFetcher(), Clock()
    cache = sns.CertificateCache(fetch, ttl_seconds=60, monotonic=clock)
    cache.public_key(CERT_URL, AT)
    clock.now += 59
    cache.public_key(CERT_URL, AT)
    assert fetch.calls == [CERT_URL]
    clock.now += 2
    cache.public_key(CERT_URL, AT)
    assert fetch.calls == [CERT_URL, CERT_URL]


def test_cache_is_bounded_and_drops_the_least_recently_used():
    urls = [CERT_URL.replace("6209c1", f"00000{i}") for i in range(3)]
    fetch = FakeFetcher({url: sns.HttpResponse(200, CERT_PEM) for url in urls})
    cache = sns.CertificateCache(fetch, max_entries=2)
    cache.public_key(urls[0], AT)
    cache.public_key(urls[1], AT)
    cache.public_key(urls[0], AT)  # urls[1] is now the least recently used
    cache.public_key(urls[2], AT)
    assert len(cache) == 2
    cache.public_key(urls[0], AT)
    assert fetch.calls == [urls[0], urls[1], urls[2]]
    cache.public_key(urls[1], AT)
    assert fetch.calls[-1] == urls[1]


@pytest.mark.parametrize(
    "response, error",
    [
        (sns.HttpResponse(404, b""), SignatureError),
        (sns.HttpResponse(403, b"<Error/>"), SignatureError),
        (sns.HttpResponse(301, b""), SignatureError),
        (sns.HttpResponse(200, b"<html>not a certificate</html>"), SignatureError),
        (sns.HttpResponse(200, (FIXTURES / "weak_cert.pem").read_bytes()), SignatureError),
        (sns.HttpResponse(200, b"x" * (sns.MAX_CERTIFICATE_BYTES + 1)), SignatureError),
        (sns.HttpResponse(500, b""), TransientError),
        (sns.HttpResponse(503, b""), TransientError),
    ],
)
def test_unusable_certificate_responses_are_not_cached(response, error):
    fetch = FakeFetcher({CERT_URL: response})
    cache = sns.CertificateCache(fetch)
    for _ in range(2):
        with pytest.raises(error):
            cache.public_key(CERT_URL, AT)
    assert fetch.calls == [CERT_URL, CERT_URL]


def test_unreachable_certificate_host_is_transient():
    def down(url):
        raise TransientError("sns.eu-central-1.amazonaws.com could not be reached: ConnectTimeoutError")

    with pytest.raises(TransientError):
        make_adapter(down).verify(stored("received_umlauts_v2"))


def test_certificate_must_be_valid_at_receipt_time():
    fetch = FakeFetcher({CERT_URL: sns.HttpResponse(200, (FIXTURES / "expired_cert.pem").read_bytes())})
    with pytest.raises(SignatureError, match="not valid at"):
        make_adapter(fetch).verify(stored("received_umlauts_v2"))


def test_cache_refuses_a_foreign_url_without_fetching():
    fetch = FakeFetcher()
    with pytest.raises(SignatureError, match="sns.<region>"):
        sns.CertificateCache(fetch).public_key("https://attacker.example/cert.pem", AT)
    assert fetch.calls == []


# --- verify ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["received_umlauts_v2", "received_utf8_v1", "received_spam_fail", "received_s3_action",
     "subscription_confirmation", "unsubscribe_confirmation"],
)  # fmt: skip
def test_fixture_verifies(name):
    make_adapter().verify(stored(name))


def test_v1_and_v2_fixtures_are_both_present():
    versions = {envelope(n)["SignatureVersion"] for n in ("received_umlauts_v2", "received_utf8_v1")}
    assert versions == {"1", "2"}


@pytest.mark.parametrize("version", ["1", "2"])
def test_our_signer_and_verifier_agree_on_both_versions(version):
    assert parse(notification(version=version)).events


def test_foreign_signing_cert_url_is_401_before_any_fetch():
    fetch = FakeFetcher()
    with pytest.raises(SignatureError, match="SigningCertURL"):
        make_adapter(fetch).verify(stored("foreign_cert_url"))
    assert fetch.calls == []


@pytest.mark.parametrize("url", ["http://sns.eu-central-1.amazonaws.com/x.pem", "https://127.0.0.1/x.pem",
                                 "https://sns.eu-central-1.amazonaws.com.evil/x.pem", None, 42])  # fmt: skip
def test_any_non_sns_cert_url_is_401_without_fetching(url):
    message = envelope("received_umlauts_v2")
    message["SigningCertURL"] = url
    fetch = FakeFetcher()
    with pytest.raises(SignatureError):
        make_adapter(fetch).verify(request(json.dumps(message).encode()))
    assert fetch.calls == []


@pytest.mark.parametrize(
    "field, value",
    [("Message", "{}"), ("MessageId", "other"), ("Timestamp", "2026-01-01T00:00:02.200Z"), ("Subject", "Changed"),
     ("Type", "SubscriptionConfirmation")],
)  # fmt: skip
def test_any_change_to_a_signed_field_fails(field, value):
    message = envelope("received_umlauts_v2")
    message[field] = value
    with pytest.raises(SignatureError):
        make_adapter().verify(request(json.dumps(message).encode()))


def test_removing_the_signed_subject_fails():
    message = envelope("received_umlauts_v2")
    del message["Subject"]
    with pytest.raises(SignatureError, match="does not match"):
        make_adapter().verify(request(json.dumps(message).encode()))


def test_unsigned_fields_may_change():
    message = envelope("received_umlauts_v2")
    message["UnsubscribeURL"] = "https://example.com/changed"
    make_adapter().verify(request(json.dumps(message).encode()))


def test_reserialised_body_still_verifies_because_sns_signs_field_values():
    # Unlike body-HMAC providers, SNS signs the decoded field values: whitespace and escaping of
    # the JSON body do not matter (PROVIDERS.md §5.3 step 1).
    message = envelope("received_utf8_v1")
    make_adapter().verify(request(json.dumps(message, ensure_ascii=True).encode()))


@pytest.mark.parametrize(
    "change, match",
    [
        ({"SignatureVersion": "3"}, "SignatureVersion"),
        ({"SignatureVersion": 2}, "SignatureVersion"),
        ({"SignatureVersion": "1"}, "does not match"),  # a v2 signature checked as SHA-1
        ({"Signature": None}, "Signature"),
        ({"Signature": "not base64!"}, "base64"),
        ({"Signature": base64.b64encode(b"\x00" * 256).decode()}, "does not match"),
        ({"Timestamp": "yesterday"}, "Timestamp"),
        ({"Timestamp": "2026-01-01T00:00:01"}, "time zone"),
    ],
)
def test_bad_signature_fields_are_401(change, match):
    message = {**envelope("received_umlauts_v2"), **change}
    message = {k: v for k, v in message.items() if v is not None}
    with pytest.raises(SignatureError, match=match):
        make_adapter().verify(request(json.dumps(message).encode()))


def test_signature_by_another_key_fails():
    with pytest.raises(SignatureError, match="does not match"):
        parse(notification(key=OTHER_KEY))


def test_type_must_be_a_signed_type():
    message = {**envelope("received_umlauts_v2"), "Type": "Something"}
    with pytest.raises(SignatureError, match="Type"):
        make_adapter().verify(request(json.dumps(message).encode()))


def test_message_type_header_must_agree_with_the_body():
    body, headers = fixture("received_umlauts_v2")
    with pytest.raises(SignatureError, match="x-amz-sns-message-type"):
        make_adapter().verify(request(body, {**headers, "x-amz-sns-message-type": "SubscriptionConfirmation"}))
    without = {k: v for k, v in headers.items() if k != "x-amz-sns-message-type"}
    make_adapter().verify(request(body, without))


def test_topic_not_on_the_allow_list_is_403_without_fetching():
    fetch = FakeFetcher()
    adapter = make_adapter(fetch, topic_arns=[OTHER_TOPIC])
    for name in ("received_umlauts_v2", "subscription_confirmation"):
        with pytest.raises(ForbiddenError, match="topic_arns"):
            adapter.verify(stored(name))
    assert fetch.calls == []


def test_empty_topic_list_refuses_every_sns_message():
    with pytest.raises(ForbiddenError):
        make_adapter(topic_arns=[]).verify(stored("received_umlauts_v2"))


def test_any_listed_topic_is_accepted():
    adapter = make_adapter(topic_arns=[OTHER_TOPIC, TOPIC])
    adapter.verify(request(notification()))
    adapter.verify(request(notification(topic=OTHER_TOPIC, sns_id="00000000-0000-4000-8000-000000000002")))


@pytest.mark.parametrize(
    "at, ok",
    [
        (AT, True),
        (datetime(2026, 1, 1, 1, 59, 0, tzinfo=timezone.utc), True),  # inside the default 7200 s
        (datetime(2026, 1, 1, 2, 0, 2, tzinfo=timezone.utc), False),  # a replay after the window
        (datetime(2025, 12, 31, 23, 50, 0, tzinfo=timezone.utc), False),  # message from the future
        (datetime(2025, 12, 31, 23, 56, 0, tzinfo=timezone.utc), True),  # within 5 min of skew
    ],
)
def test_timestamp_window(at, ok):
    body, headers = fixture("received_umlauts_v2")
    req = request(body, headers, at=at)
    if ok:
        make_adapter().verify(req)
    else:
        with pytest.raises(SignatureError, match="Timestamp"):
            make_adapter().verify(req)


def test_timestamp_window_is_configurable():
    body, headers = fixture("received_umlauts_v2")
    late = request(body, headers, at=datetime(2026, 1, 1, 0, 20, 0, tzinfo=timezone.utc))
    make_adapter().verify(late)
    with pytest.raises(SignatureError):
        make_adapter(max_message_age_seconds=600).verify(late)


@pytest.mark.parametrize("body", [b"", b"{not json", b"[1,2]", b"null", b"\xff\xfe", "\"Grüße\"".encode()])
def test_malformed_json_passes_verify_and_is_a_400(body):
    adapter = make_adapter()
    adapter.verify(request(body))  # nothing to authenticate; parse refuses it before reading anything
    with pytest.raises(MalformedPayloadError) as caught:
        adapter.parse(request(body))
    assert caught.value.http_status == 400


class RecordingQueue:
    name = "inbound"

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    def send(self, messages):
        self.sent.extend(messages)


def test_through_the_ingest_service_malformed_json_is_400_and_nothing_is_enqueued():
    queue = RecordingQueue()
    with pytest.raises(MalformedPayloadError) as caught:
        ingest(make_adapter(), request(b"{oops"), queue, max_body_bytes=1 << 20, content_type="text/plain; charset=UTF-8")
    assert caught.value.http_status == 400
    assert queue.sent == []


def test_through_the_ingest_service_a_notification_is_enqueued_once_with_the_ses_dedupe_key():
    queue = RecordingQueue()
    body, headers = fixture("received_umlauts_v2")
    result = ingest(make_adapter(), request(body, headers), queue, max_body_bytes=1 << 20, content_type=headers["content-type"])
    assert (result.enqueued, result.response.status) == (1, 200)
    assert json.loads(queue.sent[0].body)["provider_message_id"] == SES_ID


@pytest.mark.parametrize("content_type", ["text/plain; charset=UTF-8", "application/json"])
def test_sns_content_types_are_accepted(content_type):
    body, headers = fixture("received_umlauts_v2")
    ingest(make_adapter(), request(body, headers), RecordingQueue(), max_body_bytes=1 << 20, content_type=content_type)


# --- subscription handshake --------------------------------------------------------------------


def test_subscription_confirmation_is_confirmed_by_get_subscribe_url_and_answered_200():
    fetch = FakeFetcher()
    adapter = make_adapter(fetch)
    parsed = parse(fixture("subscription_confirmation")[0], adapter)
    subscribe_url = envelope("subscription_confirmation")["SubscribeURL"]
    assert fetch.calls == [CERT_URL, subscribe_url]
    assert parsed.events == [] and parsed.ignored == [f"SubscriptionConfirmation for {TOPIC}: confirmed"]
    assert adapter.ack(parsed).status == 200


def test_failed_confirmation_is_transient_so_sns_sends_it_again():
    subscribe_url = envelope("subscription_confirmation")["SubscribeURL"]
    fetch = FakeFetcher({subscribe_url: sns.HttpResponse(503, b"")})
    with pytest.raises(TransientError):
        parse(fixture("subscription_confirmation")[0], make_adapter(fetch))


def test_confirmation_for_a_foreign_topic_is_never_fetched():
    fetch = FakeFetcher()
    with pytest.raises(ForbiddenError):
        parse(fixture("subscription_confirmation")[0], make_adapter(fetch, topic_arns=[OTHER_TOPIC]))
    assert fetch.calls == []


def test_parse_alone_never_confirms_a_foreign_topic_or_url():
    fetch = FakeFetcher()
    adapter = make_adapter(fetch, topic_arns=[OTHER_TOPIC])
    with pytest.raises(ForbiddenError):
        adapter.parse(stored("subscription_confirmation"))
    message = {**envelope("subscription_confirmation"), "SubscribeURL": "https://attacker.example/?Action=ConfirmSubscription"}
    with pytest.raises(SignatureError):
        make_adapter(fetch).parse(request(json.dumps(message).encode()))
    assert fetch.calls == []


@pytest.mark.parametrize(
    "subscribe_url",
    [
        "https://attacker.example/?Action=ConfirmSubscription&TopicArn=" + TOPIC,
        f"http://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}",
        f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={OTHER_TOPIC}",
    ],
)
def test_signed_confirmation_with_a_foreign_subscribe_url_is_401_without_any_fetch(subscribe_url):
    message = {**envelope("subscription_confirmation"), "SubscribeURL": subscribe_url}
    fetch = FakeFetcher()
    with pytest.raises(SignatureError, match="SubscribeURL"):
        parse(resigned(message), make_adapter(fetch))
    assert fetch.calls == []


def test_unsubscribe_confirmation_is_logged_and_never_confirmed():
    fetch = FakeFetcher()
    parsed = parse(fixture("unsubscribe_confirmation")[0], make_adapter(fetch))
    assert fetch.calls == [CERT_URL]  # the certificate only
    assert parsed.events == [] and "subscription has ended" in parsed.ignored[0]


# --- SES Received notifications ----------------------------------------------------------------


def test_received_email_with_umlauts():
    [message] = parse(fixture("received_umlauts_v2")[0]).events
    assert message.provider == "ses" and message.channel is Channel.EMAIL
    assert message.provider_message_id == SES_ID
    assert message.dedupe_key == f"msg:ses:{SES_ID}"
    assert message.account == "support@inbound.acme.example"
    [handle] = message.sender.handles
    assert (handle.kind, handle.value, handle.verified) == ("email", "juergen.mueller@kunde.example", True)
    assert message.sender.display_name == "Jürgen Müller"
    assert message.subject == "Rückfrage zu Bestellung #1042 – Lieferadresse ändern"
    assert message.text == (
        "Hallo,\n\nbitte ändern Sie die Lieferadresse auf Große Straße 5, 80331 München.\n\nSchöne Grüße\nJürgen"
    )
    assert "Am 31.12.2025 um 10:00 schrieb" in message.metadata["full_text"]
    assert message.content_type is ContentType.TEXT
    assert [(a.filename, a.content_type, a.size) for a in message.attachments] == [
        ("Rechnung_Müller.pdf", "application/pdf", 58)
    ]
    assert message.thread_keys == ["email:9f1c2e7a.4711@mail.kunde.example", "email:order-1042.1767220000@acme.example"]
    assert message.sent_at == datetime(2025, 12, 31, 23, 59, 58, tzinfo=timezone.utc)
    assert message.received_at == AT
    assert message.metadata["sns_message_id"] == "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"
    assert message.metadata["verdicts"] == {"spam": "PASS", "virus": "PASS", "spf": "PASS", "dkim": "PASS", "dmarc": "PASS"}
    assert message.conversation_key == "ses:support@inbound.acme.example:juergen.mueller@kunde.example"
    assert message.raw["sns"]["MessageId"] == "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"
    assert "content" not in json.dumps(message.raw), "the raw MIME is not kept on the queue"
    assert type(message).model_validate_json(message.model_dump_json()) == message


def test_received_email_in_utf8_encoding_without_sns_subject():
    [message] = parse(fixture("received_utf8_v1")[0]).events
    assert message.text == "Olá! Die Größe passt nicht – können Sie das Paket abholen? Grüße, Ana"
    assert message.provider_message_id == "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1"
    assert message.sender.handles[0].value == "ana@customer.example"


def test_parsing_is_pure_twice_gives_the_same_events():
    adapter = make_adapter()
    req = stored("received_umlauts_v2")
    assert adapter.parse(req) == adapter.parse(req)


def test_the_same_email_in_two_sns_messages_dedupes_to_one_key():
    first = parse(notification(sns_id="00000000-0000-4000-8000-00000000000a")).events[0]
    second = parse(notification(sns_id="00000000-0000-4000-8000-00000000000b")).events[0]
    assert first.dedupe_key == second.dedupe_key
    assert first.metadata["sns_message_id"] != second.metadata["sns_message_id"]


@pytest.mark.parametrize(
    "verdicts, reason",
    [({"spam": "FAIL"}, "spam verdict FAIL"), ({"virus": "FAIL"}, "virus verdict FAIL"),
     ({"spam": "FAIL", "virus": "FAIL"}, "virus verdict FAIL")],
)  # fmt: skip
def test_spam_and_virus_fail_are_ignored_with_a_reason(verdicts, reason):
    parsed = parse(notification(verdicts=verdicts))
    assert parsed.events == [] and reason in parsed.ignored[0]


def test_spam_fail_fixture_is_ignored():
    parsed = parse(fixture("received_spam_fail")[0])
    assert parsed.events == [] and parsed.ignored == ["email spam0fail0example0000000000000000000001: SES spam verdict FAIL"]


@pytest.mark.parametrize("spam", ["GRAY", "PROCESSING_FAILED", "DISABLED"])
def test_other_spam_verdicts_still_make_a_contact(spam):
    [message] = parse(notification(verdicts={"spam": spam})).events
    assert message.metadata["verdicts"]["spam"] == (spam if spam != "DISABLED" else "UNKNOWN")


@pytest.mark.parametrize(
    "verdicts, source, verified",
    [
        ({}, "ana@customer.example", True),
        ({"spf": "FAIL"}, "ana@customer.example", False),
        ({"dkim": "GRAY"}, "ana@customer.example", False),
        ({"spf": "PROCESSING_FAILED"}, "ana@customer.example", False),
        ({"dmarc": "GRAY"}, "bounces@customer.example", True),  # envelope domain = From domain
        ({"dmarc": "GRAY"}, "bounce@mail.customer.example", True),  # aligned subdomain
        ({"dmarc": "GRAY"}, "bounce@attacker.example", False),  # SPF/DKIM pass for someone else's domain
        ({"dmarc": "FAIL"}, "bounce@attacker.example", False),
        ({"dmarc": "GRAY"}, None, False),
    ],
)
def test_sender_is_verified_only_with_spf_and_dkim_pass_and_an_aligned_from(verdicts, source, verified):
    full = {"spam": "PASS", "virus": "PASS", "spf": "PASS", "dkim": "PASS", "dmarc": "PASS", **verdicts}
    receipt = {f"{k}Verdict": {"status": v} for k, v in full.items()}
    assert Verdicts.from_receipt(receipt, source).proves_sender("ana@customer.example") is verified


def test_unverified_sender_still_makes_a_contact():
    [message] = parse(notification(verdicts={"dkim": "FAIL"})).events
    assert message.sender.handles[0].verified is False


@pytest.mark.parametrize(
    "headers, reason",
    [
        ("Auto-Submitted: auto-replied\r\n", "automatic reply"),
        ("Precedence: bulk\r\n", "automatic reply"),
        ("X-Failed-Recipients: x@y.example\r\n", "bounce"),
    ],
)
def test_auto_replies_and_bounces_are_ignored(headers, reason):
    parsed = parse(notification(headers + MIME))
    assert parsed.events == [] and reason in parsed.ignored[0]


def test_mailer_daemon_bounce_is_ignored():
    mime = MIME.replace("Ana Souza <ana@customer.example>", "Mail Delivery System <MAILER-DAEMON@mx.example>")
    parsed = parse(notification(mime))
    assert "bounce" in parsed.ignored[0]


@pytest.mark.parametrize("sender", ["support@inbound.acme.example", "agent@acme.example", "SUPPORT@inbound.ACME.example"])
def test_mail_from_our_own_addresses_is_ignored(sender):
    parsed = parse(notification(MIME.replace("ana@customer.example", sender)))
    assert parsed.events == [] and "own_addresses" in parsed.ignored[0]


def test_mail_without_from_is_ignored():
    mime = "\r\n".join(line for line in MIME.split("\r\n") if not line.startswith("From:"))
    assert "no From address" in parse(notification(mime)).ignored[0]


def test_content_encoding_is_detected_when_the_action_does_not_name_it():
    [as_text] = parse(notification(encoding=None)).events
    assert as_text.text == "Wo bleibt mein Paket? Grüße"
    base64_body = json.loads(notification())
    ses = json.loads(base64_body["Message"])
    del ses["receipt"]["action"]["encoding"]
    base64_body["Message"] = json.dumps(ses)
    [as_base64] = parse(resigned(base64_body)).events
    assert as_base64.text == as_text.text


def test_declared_base64_that_is_not_base64_is_ignored():
    body = json.loads(notification())
    ses = json.loads(body["Message"])
    ses["content"] = "From: not base64 at all"
    body["Message"] = json.dumps(ses)
    [kept] = parse(resigned(body)).unhandled
    assert "not valid Base64" in kept.reason and kept.raw["content"] == "From: not base64 at all"


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"notificationType": "BrandNew"}, "notificationType 'BrandNew' is not handled"),
        ({"notificationType": None}, "notificationType 'None' is not handled"),
        ({"mail": {}}, "usable mail.messageId"),
        ({"mail": {"messageId": "a\nb"}}, "usable mail.messageId"),
        ({"content": "   "}, "not a parseable email"),
    ],
)
def test_unreadable_ses_notifications_are_acknowledged_and_kept_raw(change, reason):
    body = json.loads(notification())
    ses = {k: v for k, v in {**json.loads(body["Message"]), **change}.items() if v is not None}
    body["Message"] = json.dumps(ses)
    parsed = parse(resigned(body))
    assert parsed.events == [] and parsed.ignored == []
    [kept] = parsed.unhandled
    assert reason in kept.reason and kept.raw == ses


def test_an_sns_action_without_content_is_ignored_with_the_way_to_read_it():
    body = json.loads(notification())
    ses = json.loads(body["Message"])
    del ses["content"]
    body["Message"] = json.dumps(ses)
    parsed = parse(resigned(body))
    assert parsed.events == [] and parsed.unhandled == [] and "carries no email" in parsed.ignored[0]


FEEDBACK_MAIL = {"timestamp": "2026-01-01T00:00:00.000Z", "messageId": "0100018c-sent-by-us", "source": "support@acme.example",
                 "destination": ["ana@customer.example"], "headers": [{"name": "Subject", "value": "Ihre Bestellung"}]}


@pytest.mark.parametrize(
    "feedback, status, error",
    [
        ({"notificationType": "Delivery", "delivery": {"timestamp": "2026-01-01T00:00:02.000Z",
          "recipients": ["ana@customer.example"], "smtpResponse": "250 ok"}}, "delivered", (None, None)),
        ({"notificationType": "Bounce", "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
          "timestamp": "2026-01-01T00:00:02.000Z", "bouncedRecipients": [{"emailAddress": "ana@customer.example",
          "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]}},
         "failed", ("Permanent/General", "smtp; 550 5.1.1 user unknown")),
        ({"eventType": "Complaint", "complaint": {"timestamp": "2026-01-01T00:00:02.000Z",
          "complainedRecipients": [{"emailAddress": "ana@customer.example"}], "complaintFeedbackType": "abuse"}},
         "failed", ("complaint", "abuse")),
    ],
)  # fmt: skip
def test_feedback_about_mail_we_sent_is_a_status_never_a_contact(feedback, status, error):
    body = json.loads(notification())
    body["Message"] = json.dumps({**feedback, "mail": FEEDBACK_MAIL})
    parsed = parse(resigned(body))
    assert parsed.ignored == [] and parsed.unhandled == []
    [event] = parsed.events
    assert isinstance(event, StatusEvent)
    assert (event.provider, event.channel, event.provider_message_id, event.status) == (
        "ses", Channel.EMAIL, "0100018c-sent-by-us", status)
    assert (event.recipient, event.account) == ("ana@customer.example", "support@acme.example")
    assert (event.error_code, event.error_message) == error
    assert event.occurred_at == datetime(2026, 1, 1, 0, 0, 2, tzinfo=timezone.utc)
    assert "headers" not in event.raw["mail"], "the sent mail's headers are not kept with its status"


def test_feedback_without_the_sent_mails_id_is_kept_raw():
    body = json.loads(notification())
    body["Message"] = json.dumps({"notificationType": "Delivery", "delivery": {}, "mail": {}})
    [kept] = parse(resigned(body)).unhandled
    assert "Delivery notification without a usable mail.messageId" in kept.reason


def test_lone_surrogates_from_json_escapes_never_break_the_queue_message():
    body = json.loads(notification())
    ses = json.loads(body["Message"])
    ses["mail"]["messageId"] = "ses\ud800id"
    ses["mail"]["destination"] = ["x\udfff@y.example"]
    ses["receipt"]["recipients"] = ["support\ud83d@inbound.acme.example"]
    ses["receipt"]["newField"] = {"deep": [[[[[[[[[[[[[[[[[["\ud800"]]]]]]]]]]]]]]]]]]}
    body["Message"] = json.dumps(ses)
    body["MessageId"] = "sns\udc00"
    [message] = parse(resigned(body)).events
    assert type(message).model_validate_json(message.model_dump_json()) == message
    assert message.provider_message_id == "ses\ufffdid"


def test_s3_action_alert_is_acknowledged_and_points_to_the_s3_delivery():
    parsed = parse(fixture("received_s3_action")[0])
    assert parsed.events == [] and "ses_s3" in parsed.ignored[0]


@pytest.mark.parametrize("message", ["plain text published to the topic", "[1,2]", "null"])
def test_non_ses_messages_on_the_topic_are_acknowledged_and_kept_raw(message):
    body = json.loads(notification())
    body["Message"] = message
    parsed = parse(resigned(body))
    [kept] = parsed.unhandled
    assert parsed.events == [] and "not an SES notification" in kept.reason and kept.raw == message


def test_attachment_only_email_is_media():
    mime = (
        "From: ana@customer.example\r\nTo: support@inbound.acme.example\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: image/png\r\n'
        'Content-Disposition: attachment; filename="foto.png"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        "iVBORw0KGgo=\r\n--b--\r\n"
    )
    [message] = parse(notification(mime)).events
    assert message.content_type is ContentType.MEDIA and message.text is None
    assert message.attachments[0].filename == "foto.png" and message.attachments[0].size == 8


def test_attachment_bytes_travel_with_the_message_and_a_mail_of_many_parts_keeps_fifty():
    from chalicelib.adapters.channels.email.inbound import MAX_ATTACHMENTS

    part = ('--b\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename="f{n}.png"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n")
    mime = (
        "From: ana@customer.example\r\nTo: support@inbound.acme.example\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        + "".join(part.format(n=n) for n in range(120)) + "--b--\r\n"
    )
    [message] = parse(notification(mime)).events
    assert len(message.attachments) == len(message.attachment_content) == MAX_ATTACHMENTS
    assert message.attachments[-1].filename == f"f{MAX_ATTACHMENTS - 1}.png"
    assert {c.data for c in message.attachment_content} == {b"\x89PNG\r\n\x1a\n"}


@pytest.mark.parametrize("date", ["Fri, 31 Dec 9999 23:59:59 -1200", "yesterday"])
def test_absurd_date_headers_give_no_sent_at(date):
    [message] = parse(notification(MIME.replace("Thu, 1 Jan 2026 00:00:00 +0000", date))).events
    assert message.sent_at is None


def test_dates_that_cannot_be_shifted_to_utc_are_dropped():
    from chalicelib.adapters.channels.ses.adapter import _utc

    assert _utc(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) is None
    assert _utc(datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_very_long_text_is_clipped_and_flagged():
    mime = MIME.replace("Wo bleibt mein Paket? Grüße", "ä" * 40_000)
    [message] = parse(notification(mime)).events
    assert len(message.text) == 32_000 and message.metadata["truncated"] is True


def test_account_falls_back_to_our_address_in_to_when_there_are_no_recipients():
    body = json.loads(notification())
    ses = json.loads(body["Message"])
    ses["receipt"]["recipients"], ses["mail"]["destination"] = [], []
    body["Message"] = json.dumps(ses)
    [message] = parse(resigned(body)).events
    assert message.account == "support@inbound.acme.example"


def test_ignored_reasons_name_no_email_address():
    reasons = []
    for mime in (MIME.replace("ana@customer.example", "agent@acme.example"), "Auto-Submitted: auto-replied\r\n" + MIME):
        reasons += parse(notification(mime)).ignored
    reasons += parse(notification(verdicts={"spam": "FAIL"})).ignored
    assert reasons and not any("@" in reason for reason in reasons)


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"topic_arns": ["ses-inbound"]},
        {"topic_arns": ["arn:aws:sqs:eu-central-1:123456789012:q"]},
        {"topic_arns": ["arn:aws:sns:eu-central-1:1234:t"]},
        {"own_addresses": ["not an address"]},
        {"max_message_age_seconds": 10},
        {"unknown": 1},
    ],
)
def test_settings_refuse_bad_values(values):
    with pytest.raises(ValidationError):
        SesSettings.model_validate(values)


def test_settings_accept_china_govcloud_and_fifo_topics_and_normalize_addresses():
    settings_ = SesSettings.model_validate(
        {
            "topic_arns": ["arn:aws-cn:sns:cn-north-1:123456789012:inbound", "arn:aws-us-gov:sns:us-gov-west-1:123456789012:in.fifo"],
            "own_addresses": [" Support@Acme.Example ", "@Acme.Example"],
        }
    )
    assert settings_.own_addresses == ["support@acme.example", "@acme.example"]


def test_test_signing_keys_are_secrets():
    settings_ = SesSettings.model_validate({"test_signing_keys": [KEY_PEM]})
    assert "PRIVATE KEY" not in repr(settings_) and "PRIVATE KEY" not in settings_.model_dump_json()


# --- test keys and hubctl simulate -------------------------------------------------------------


def test_simulated_cert_path_uses_the_test_keys_and_never_fetches():
    fetch = FakeFetcher()
    adapter = make_adapter(fetch, test_signing_keys=[OTHER_KEY_PEM, KEY_PEM])  # rotation: any key verifies
    body, headers = fixture("received_simulated")
    parse(body, adapter, **headers)
    assert fetch.calls == []


def test_simulated_cert_path_on_a_foreign_host_is_401_even_with_test_keys():
    message = envelope("received_simulated")
    message["SigningCertURL"] = "https://attacker.example" + SIMULATED_CERT_PATH
    with pytest.raises(SignatureError, match="SigningCertURL"):
        make_adapter(test_signing_keys=[KEY_PEM]).verify(request(json.dumps(message).encode()))


def test_simulated_cert_path_without_test_keys_is_fetched_like_any_other_and_fails():
    fetch = FakeFetcher()
    with pytest.raises(SignatureError, match="404"):
        make_adapter(fetch).verify(stored("received_simulated"))
    assert fetch.calls == [f"https://sns.{REGION}.amazonaws.com{SIMULATED_CERT_PATH}"]


def test_test_keys_do_not_verify_real_certificate_urls():
    # The test keys only stand in for the simulated path: a message naming AWS's certificate is
    # checked against AWS's certificate even when test keys are configured.
    fetch = FakeFetcher({CERT_URL: sns.HttpResponse(200, OTHER_CERT_PEM)})
    with pytest.raises(SignatureError, match="does not match"):
        make_adapter(fetch, test_signing_keys=[KEY_PEM]).verify(stored("received_umlauts_v2"))


def test_simulated_request_needs_test_keys_and_a_topic():
    customer = SimulatedCustomer(name="Jana Schmidt", phone="+4915112345678", email="jana@kunde.example", text="Hallo")
    assert make_adapter().simulated_request(customer) is None
    assert make_adapter(test_signing_keys=[KEY_PEM], topic_arns=[]).simulated_request(customer) is None


def test_simulated_request_verifies_and_parses_as_the_customers_email():
    customer = SimulatedCustomer(
        name="Jana Schmidt", phone="+4915112345678", email="jana@kunde.example", text="Wo ist mein Paket? Grüße"
    )
    fetch = FakeFetcher()
    adapter = make_adapter(fetch, test_signing_keys=[KEY_PEM])
    simulated = adapter.simulated_request(customer)
    assert simulated.path == "/webhooks/ses"
    assert simulated.headers["Content-Type"].startswith("text/plain")
    req = WebhookRequest("POST", None, {k.lower(): v for k, v in simulated.headers.items()}, {}, simulated.body,
                         datetime.now(timezone.utc))  # fmt: skip
    adapter.verify(req)
    [message] = adapter.parse(req).events
    assert (message.sender.handles[0].value, message.sender.display_name) == ("jana@kunde.example", "Jana Schmidt")
    assert message.text == "Wo ist mein Paket? Grüße" and message.account == "support@inbound.acme.example"
    assert fetch.calls == []


def test_simulated_notification_is_what_cryptography_would_sign():
    body = simulated_notification(
        KEY, topic_arn=TOPIC, recipient="support@inbound.acme.example", from_name="A", from_address="a@b.example",
        subject="S", text="T", at=AT, version="1",
    )  # fmt: skip
    message = json.loads(body)
    signature = base64.b64decode(message["Signature"])
    assert crypto_verify(CERT_PEM, signature, sns.string_to_sign(message), hashes.SHA1())


def test_unusable_test_key_is_a_clear_401():
    adapter = make_adapter(test_signing_keys=["-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"])
    with pytest.raises(SignatureError, match="test_signing_keys"):
        adapter.verify(stored("received_simulated"))


# --- the SES header block of stored mail (S3 delivery) -----------------------------------------


def test_ses_header_block_gives_verdicts_recipient_and_envelope_sender():
    block = ses_headers((FIXTURES / "email_umlauts.eml").read_bytes())
    assert block.verdicts == Verdicts(
        spam="PASS", virus="PASS", spf="PASS", dkim="PASS", dmarc="PASS", source="juergen.mueller@kunde.example"
    )
    assert block.recipient == "support@inbound.acme.example"
    assert [name for name, _ in block.headers][:3] == ["return-path", "received", "x-ses-spam-verdict"]


SES_BLOCK = (
    "Return-Path: <ana@customer.example>\r\n"
    "Received: from m.customer.example by inbound-smtp.us-east-1.amazonaws.com with SMTP id abc"
    " for support@inbound.acme.example; Thu, 01 Jan 2026 00:00:00 +0000 (UTC)\r\n"
    "X-SES-Spam-Verdict: {spam}\r\n"
    "X-SES-Virus-Verdict: PASS\r\n"
    "Authentication-Results: amazonses.com; spf=pass (spfCheck: ok (nested)) smtp.mailfrom=x; dkim={dkim} header.i=@x;"
    " dmarc=none header.from=customer.example;\r\n"
    "X-SES-RECEIPT: AEFB\r\n"
)


@pytest.mark.parametrize(
    "spam, dkim, expected",
    [
        ("PASS", "pass", {"spam": "PASS", "spf": "PASS", "dkim": "PASS", "dmarc": "GRAY"}),
        ("FAIL", "fail", {"spam": "FAIL", "spf": "PASS", "dkim": "FAIL", "dmarc": "GRAY"}),
        ("GRAY", "temperror", {"spam": "GRAY", "spf": "PASS", "dkim": "PROCESSING_FAILED", "dmarc": "GRAY"}),
    ],
)
def test_authentication_results_map_to_ses_verdicts(spam, dkim, expected):
    verdicts = ses_headers((SES_BLOCK.format(spam=spam, dkim=dkim) + MIME).encode()).verdicts
    assert {k: v for k, v in verdicts.as_dict().items() if k != "virus"} == expected


def test_headers_below_ses_receipt_are_the_senders_and_never_trusted():
    forged = "Authentication-Results: amazonses.com; spf=pass; dkim=pass; dmarc=pass\r\nX-SES-Spam-Verdict: PASS\r\n"
    block = ses_headers((SES_BLOCK.format(spam="FAIL", dkim="fail") + forged + MIME).encode())
    assert (block.verdicts.spam, block.verdicts.dkim, block.verdicts.dmarc) == ("FAIL", "FAIL", "GRAY")


@pytest.mark.parametrize(
    "mime",
    [
        MIME,  # no SES block at all
        "Authentication-Results: amazonses.com; spf=pass; dkim=pass; dmarc=pass\r\nX-SES-RECEIPT: x\r\n" + MIME,
        "Received: by mx.attacker.example\r\nAuthentication-Results: amazonses.com; spf=pass; dkim=pass\r\n"
        "X-SES-RECEIPT: x\r\n" + MIME,
        "Received: from x by inbound-smtp.us-east-1.amazonaws.com\r\nAuthentication-Results: mx.google.com;"
        " spf=pass; dkim=pass; dmarc=pass\r\nX-SES-RECEIPT: x\r\n" + MIME,
    ],
)
def test_without_a_genuine_ses_block_nothing_is_trusted(mime):
    verdicts = ses_headers(mime.encode()).verdicts
    assert (verdicts.spf, verdicts.dkim, verdicts.dmarc) == (None, None, None)
    assert not verdicts.proves_sender("ana@customer.example")


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=600))
def test_ses_header_block_never_raises(raw):
    ses_headers(raw)


# --- the production fetcher, against a local server --------------------------------------------


@pytest.fixture
def local_server():
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            if self.path == "/slow":
                time.sleep(1.5)
            status, body, headers = {
                "/cert.pem": (200, CERT_PEM, {}),
                "/redirect": (302, b"", {"Location": "/cert.pem"}),
                "/big": (200, b"x" * (300 * 1024), {}),
                "/slow": (200, b"late", {}),
            }.get(self.path, (404, b"", {}))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_urllib3_fetcher_returns_status_and_body_and_never_follows_redirects(local_server):
    fetch = sns.Urllib3Fetcher()
    assert fetch(local_server + "/cert.pem") == sns.HttpResponse(200, CERT_PEM)
    assert fetch(local_server + "/redirect").status == 302
    assert fetch(local_server + "/missing").status == 404


def test_urllib3_fetcher_bounds_the_body(local_server):
    response = sns.Urllib3Fetcher(max_bytes=256 * 1024)(local_server + "/big")
    assert response.status == 200 and response.body == b""  # too large: never a certificate


def test_urllib3_fetcher_timeout_is_transient(local_server):
    with pytest.raises(TransientError, match="could not be reached"):
        sns.Urllib3Fetcher(read_timeout=0.3)(local_server + "/slow")


def test_urllib3_fetcher_refused_connection_is_transient():
    with pytest.raises(TransientError):
        sns.Urllib3Fetcher(connect_timeout=0.5)("http://127.0.0.1:9/x.pem")
