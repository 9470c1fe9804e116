"""Amazon SNS message signatures (SignatureVersion 1 and 2): https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html

SNS signs a canonical string built from the message's fields with RSA PKCS#1 v1.5 (SHA-1 for
version 1, SHA-256 for version 2) and names the certificate in `SigningCertURL`. The certificate
and the signature are checked with the `cryptography` package, imported on the first check only
(certificates are cached, and most ingest paths never need it). Signing exists for tests and
`hubctl simulate`.

Trust comes from where the certificate is fetched: only https from a genuine SNS host
(`sns.<region>.amazonaws.com[.cn]`), checked before any request is made. The chain is not
re-validated here; the TLS connection to the AWS host already proves it came from AWS, which is
also all the AWS SDKs' message validators check.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from chalicelib.errors import SignatureError, TransientError

#: SignatureVersion → hash. Version 1 is the topic default; 2 is what AWS recommends.
HASHES: dict[str, str] = {"1": "sha1", "2": "sha256"}

#: The fields each message type signs, in this order, each as `name\nvalue\n` (only if present).
SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
#: Fields a message of the type must carry for the signature to mean anything (`Subject` is optional).
REQUIRED_FIELDS: dict[str, frozenset[str]] = {
    kind: frozenset(fields) - {"Subject"} for kind, fields in SIGNED_FIELDS.items()
}

#: `sns.<region>.amazonaws.com`, and `.amazonaws.com.cn` in the China regions. Regions look like
#: us-east-1, eu-central-2, cn-north-1, us-gov-west-1.
SNS_HOST = re.compile(r"sns\.[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}\.amazonaws\.com(?:\.cn)?")
_CERT_PATH = re.compile(r"/[A-Za-z0-9._-]{1,200}\.pem")

#: RSA keys below this size are refused outright: SNS signs with 2048-bit keys.
MIN_KEY_BITS = 2048
#: SNS signing certificates are about 2 KB of PEM; anything much larger is not one.
MAX_CERTIFICATE_BYTES = 64 * 1024

class CertificateError(ValueError):
    """The bytes are not a certificate (or key) this module can use; the message says why."""


# --- the string SNS signs ----------------------------------------------------------------------


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The canonical string of an SNS message. Raises `ValueError` for an unknown `Type`, a missing
    required field or a field that is not a string (SNS sends every signed field as a string)."""
    kind = message.get("Type")
    fields = SIGNED_FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise ValueError(f"Type {str(kind)[:40]!r} is not a type SNS signs")
    missing = sorted(name for name in REQUIRED_FIELDS[kind] if name not in message)
    if missing:
        raise ValueError(f"{kind} without {', '.join(missing)}")
    parts = []
    for name in fields:
        if name not in message:
            continue
        value = message[name]
        if not isinstance(value, str):
            raise ValueError(f"{name} is not a string")
        parts.append(f"{name}\n{value}\n")
    # surrogatepass: a lone \ud800 escape in the JSON cannot be what SNS signed, but must fail
    # the signature check rather than raise here.
    return "".join(parts).encode("utf-8", "surrogatepass")


# --- URLs SNS may point us to ------------------------------------------------------------------


def is_sns_url(url: str, *, path: re.Pattern[str] | None = None) -> bool:
    """True for `https://sns.<region>.amazonaws.com[.cn]/...` with no userinfo, no port other
    than 443, no fragment, and (if given) a path matching `path`."""
    if not isinstance(url, str) or len(url) > 4096 or any(c.isspace() or ord(c) < 32 for c in url):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "https" or parts.fragment or "@" in parts.netloc or port not in (None, 443):
        return False
    if not SNS_HOST.fullmatch(parts.hostname or ""):
        return False
    return path is None or bool(path.fullmatch(parts.path))


def is_signing_cert_url(url: str) -> bool:
    """A `SigningCertURL` we may fetch: a genuine SNS host, https, a `.pem` path, no query."""
    return is_sns_url(url, path=_CERT_PATH) and not urlsplit(url).query


def is_subscribe_url(url: str, topic_arn: str) -> bool:
    """A `SubscribeURL` we may call: a genuine SNS host, `Action=ConfirmSubscription`, for `topic_arn`."""
    if not is_sns_url(url, path=re.compile(r"/?")):
        return False
    query = parse_qs(urlsplit(url).query)
    return query.get("Action") == ["ConfirmSubscription"] and query.get("TopicArn", [topic_arn]) == [topic_arn]


# --- X.509 and RSA keys (the `cryptography` package) ------------------------------------------

#: SignatureVersion's hash names → `cryptography` hash classes, looked up on use.
_HASH_CLASSES = {"sha1": "SHA1", "sha256": "SHA256"}


@dataclass(frozen=True)
class Certificate:
    #: A `cryptography` `RSAPublicKey`.
    public_key: Any
    not_before: datetime
    not_after: datetime


def load_certificate(data: bytes) -> Certificate:
    """The first certificate of a PEM file (or DER bytes): its RSA public key and validity.

    Raises `CertificateError` for anything else, including non-RSA keys and keys under
    `MIN_KEY_BITS`.
    """
    from cryptography import x509

    try:
        certificate = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                       else x509.load_der_x509_certificate(data))
        key = certificate.public_key()
    except ValueError as exc:
        raise CertificateError(f"not an X.509 certificate: {str(exc)[:100]}") from None
    _check_rsa(key)
    return Certificate(public_key=key, not_before=certificate.not_valid_before_utc,
                       not_after=certificate.not_valid_after_utc)


def load_public_key(data: bytes):
    """An RSA public key from a `PUBLIC KEY` (SubjectPublicKeyInfo) PEM. Raises `CertificateError`."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"not a PUBLIC KEY: {str(exc)[:100]}") from None
    _check_rsa(key)
    return key


def load_private_key(data: bytes | str):
    """An RSA private key from PEM (PKCS#8 or PKCS#1, unencrypted). Raises `CertificateError`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = serialization.load_pem_private_key(data.encode() if isinstance(data, str) else data, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"not an unencrypted PRIVATE KEY: {str(exc)[:100]}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CertificateError("not an RSA private key")
    _check_rsa(key.public_key())
    return key


def _check_rsa(key: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    if not isinstance(key, rsa.RSAPublicKey):
        raise CertificateError("not an RSA public key")
    if key.key_size < MIN_KEY_BITS:
        raise CertificateError(f"RSA key of {key.key_size} bits is below {MIN_KEY_BITS}")


def verify_pkcs1_v15(key: Any, signature: bytes, message: bytes, digest_name: str) -> bool:
    """RSASSA-PKCS1-V1_5-VERIFY (RFC 8017 §8.2.2) of `message` with an RSA public key. Never
    raises for a bad signature."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    try:
        key.verify(signature, message, padding.PKCS1v15(), getattr(hashes, _HASH_CLASSES[digest_name])())
    except InvalidSignature:
        return False
    return True


def sign_pkcs1_v15(key: Any, message: bytes, digest_name: str) -> bytes:
    """RSASSA-PKCS1-V1_5-SIGN (RFC 8017 §8.2.1) with an RSA private key: for tests and
    `hubctl simulate`."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return key.sign(message, padding.PKCS1v15(), getattr(hashes, _HASH_CLASSES[digest_name])())


def sign_message(message: Mapping[str, Any], key: Any, *, version: str = "2") -> dict[str, Any]:
    """`message` with `SignatureVersion` and `Signature` set, exactly as SNS would sign it."""
    signed = dict(message)
    signed["SignatureVersion"] = version
    signature = sign_pkcs1_v15(key, string_to_sign(signed), HASHES[version])
    signed["Signature"] = base64.b64encode(signature).decode("ascii")
    return signed


# --- fetching and caching certificates ---------------------------------------------------------


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes


#: GET a URL; raises `TransientError` when the host cannot be reached in time.
Fetcher = Callable[[str], HttpResponse]


class Urllib3Fetcher:
    """Production fetcher: urllib3 (already in the Lambda runtime with botocore), TLS verified,
    short timeouts (SNS gives up after 15 s), no retries, no redirects, bounded body."""

    def __init__(self, *, connect_timeout: float = 2.0, read_timeout: float = 4.0, max_bytes: int = 256 * 1024):
        self._timeouts = (connect_timeout, read_timeout)
        self._max_bytes = max_bytes
        self._pool: Any = None
        self._lock = threading.Lock()

    def __call__(self, url: str) -> HttpResponse:
        import urllib3  # imported on first fetch: most webhooks never need it (certificates are cached)

        with self._lock:
            if self._pool is None:
                self._pool = urllib3.PoolManager(
                    cert_reqs="CERT_REQUIRED",
                    ca_certs=_ca_bundle(),
                    timeout=urllib3.Timeout(connect=self._timeouts[0], read=self._timeouts[1]),
                    retries=False,
                    maxsize=4,
                )
        try:
            response = self._pool.request("GET", url, redirect=False, preload_content=False)
            try:
                body = response.read(self._max_bytes + 1)
            finally:
                response.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(f"{urlsplit(url).hostname} could not be reached: {type(exc).__name__}") from None
        if len(body) > self._max_bytes:
            return HttpResponse(status=response.status, body=b"")
        return HttpResponse(status=response.status, body=body)


def _ca_bundle() -> str | None:
    try:
        import certifi

        return certifi.where()
    except ImportError:  # the Lambda image: the system store (urllib3's default) is fine
        return None


class CertificateCache:
    """Public keys by `SigningCertURL`: bounded (least recently used goes first), each entry kept
    for `ttl_seconds` and never past the certificate's own expiry. Thread-safe: the embedded
    runtime serves webhooks from several threads."""

    def __init__(
        self,
        fetch: Fetcher,
        *,
        max_entries: int = 16,
        ttl_seconds: float = 24 * 3600,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._max_entries = max_entries
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._entries: OrderedDict[str, tuple[float, Certificate]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def public_key(self, url: str, now: datetime):
        """The key of the certificate at `url`, valid at `now`.

        Raises `SignatureError` for a URL that is not an SNS signing-certificate URL (before any
        request), a 4xx, or something that is not a usable certificate; `TransientError` (5xx to
        SNS, which retries) when the host is unreachable or answers 5xx.
        """
        if not is_signing_cert_url(url):
            raise SignatureError("SigningCertURL is not an https .pem URL on an sns.<region>.amazonaws.com host")
        with self._lock:
            entry = self._entries.get(url)
            if entry is not None and entry[0] > self._monotonic():
                self._entries.move_to_end(url)
                certificate = entry[1]
            else:
                certificate = None
        if certificate is None:
            certificate = self._load(url)
            with self._lock:
                self._entries[url] = (self._monotonic() + self._ttl, certificate)
                self._entries.move_to_end(url)
                while len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)
        if not certificate.not_before <= now <= certificate.not_after:
            raise SignatureError("the SNS signing certificate is not valid at the message's receipt time")
        return certificate.public_key

    def _load(self, url: str) -> Certificate:
        response = self._fetch(url)
        if response.status >= 500:
            raise TransientError(f"SNS answered {response.status} for the signing certificate")
        if response.status != 200:
            raise SignatureError(f"SNS answered {response.status} for the signing certificate")
        if len(response.body) > MAX_CERTIFICATE_BYTES:
            raise SignatureError("the SigningCertURL document is too large to be a certificate")
        try:
            return load_certificate(response.body)
        except CertificateError as exc:
            raise SignatureError(f"the SigningCertURL document is not a usable certificate: {exc}") from None


def decode_signature(value: Any) -> bytes:
    """The raw signature bytes of a message's `Signature`. Raises `SignatureError`."""
    if not isinstance(value, str) or not value or len(value) > 2048:
        raise SignatureError("Signature is missing or not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("Signature is not valid base64") from None
