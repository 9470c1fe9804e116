"""Amazon SNS message signatures (SignatureVersion 1 and 2): https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html

SNS signs a canonical string built from the message's fields with RSA PKCS#1 v1.5 (SHA-1 for
version 1, SHA-256 for version 2) and names the certificate in `SigningCertURL`. The Lambda
package has no `cryptography` (and should not carry 10 MB of it for one public-key operation), so
the X.509 reading and the RSA check are done here with the standard library: a minimal DER
reader finds the RSA key in the certificate, then `pow(s, e, n)` must equal the EMSA-PKCS1-v1_5
encoding of the digest (RFC 8017 §8.2.2), compared in constant time. Signing (the same padding,
with a private key) exists for tests and `hubctl simulate`.

Trust comes from where the certificate is fetched: only https from a genuine SNS host
(`sns.<region>.amazonaws.com[.cn]`), checked before any request is made. The chain is not
re-validated here; the TLS connection to the AWS host already proves it came from AWS, which is
also all the AWS SDKs' message validators check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
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

# DER DigestInfo prefixes for EMSA-PKCS1-v1_5 (RFC 8017 §9.2, note 1).
_DIGEST_INFO = {
    "sha1": bytes.fromhex("3021300906052b0e03021a05000414"),
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
}
_RSA_ENCRYPTION = bytes.fromhex("2a864886f70d010101")  # OID 1.2.840.113549.1.1.1


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


# --- DER, X.509 and RSA keys -------------------------------------------------------------------


@dataclass(frozen=True)
class RsaPublicKey:
    n: int
    e: int

    @property
    def size(self) -> int:
        """The modulus length in bytes (k in RFC 8017)."""
        return (self.n.bit_length() + 7) // 8


@dataclass(frozen=True)
class Certificate:
    public_key: RsaPublicKey
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True, repr=False)
class RsaPrivateKey:
    n: int
    e: int
    d: int
    p: int
    q: int
    dp: int
    dq: int
    qinv: int

    @property
    def public_key(self) -> RsaPublicKey:
        return RsaPublicKey(self.n, self.e)

    def __repr__(self) -> str:
        return f"RsaPrivateKey(bits={self.n.bit_length()})"


class _Der:
    """Reads DER TLVs from a byte string; every read is bounds-checked (raises CertificateError)."""

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = start
        self.end = len(data) if end is None else end

    def at_end(self) -> bool:
        return self.pos >= self.end

    def peek_tag(self) -> int | None:
        return None if self.at_end() else self.data[self.pos]

    def read(self, expected_tag: int | None = None) -> tuple[int, int, int]:
        """(tag, start, end) of the next element's value; advances past it."""
        if self.pos + 2 > self.end:
            raise CertificateError("truncated DER")
        tag = self.data[self.pos]
        if tag & 0x1F == 0x1F:
            raise CertificateError("multi-byte DER tags are not used in certificates")
        if expected_tag is not None and tag != expected_tag:
            raise CertificateError(f"expected DER tag 0x{expected_tag:02x}, found 0x{tag:02x}")
        first = self.data[self.pos + 1]
        pos = self.pos + 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            # 0x80 is BER's indefinite length: DER forbids it. Four length bytes cover 4 GB.
            if count == 0 or count > 4 or pos + count > self.end:
                raise CertificateError("invalid DER length")
            length = int.from_bytes(self.data[pos : pos + count], "big")
            if length < 0x80 or self.data[pos] == 0:
                raise CertificateError("non-minimal DER length")
            pos += count
        if pos + length > self.end:
            raise CertificateError("DER element longer than its container")
        self.pos = pos + length
        return tag, pos, pos + length

    def enter(self, expected_tag: int = 0x30) -> _Der:
        _, start, end = self.read(expected_tag)
        return _Der(self.data, start, end)

    def value(self, expected_tag: int) -> bytes:
        _, start, end = self.read(expected_tag)
        return self.data[start:end]

    def integer(self) -> int:
        raw = self.value(0x02)
        if not raw:
            raise CertificateError("empty DER INTEGER")
        return int.from_bytes(raw, "big", signed=True)

    def skip(self) -> None:
        self.read()


def pem_blocks(text: bytes | str, label: str) -> list[bytes]:
    """The DER bytes of every `-----BEGIN <label>-----` block, in order."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    blocks = []
    pattern = re.compile(rf"-----BEGIN {label}-----(.*?)-----END {label}-----", re.DOTALL)
    for match in pattern.finditer(text):
        try:
            blocks.append(base64.b64decode("".join(match[1].split()), validate=True))
        except (binascii.Error, ValueError):
            raise CertificateError(f"{label} block is not valid base64") from None
    return blocks


def load_certificate(data: bytes) -> Certificate:
    """The first certificate of a PEM file (or DER bytes): its RSA public key and validity.

    Raises `CertificateError` for anything else, including non-RSA keys and keys under
    `MIN_KEY_BITS`.
    """
    blocks = pem_blocks(data, "CERTIFICATE") if b"-----BEGIN" in data else [data]
    if not blocks:
        raise CertificateError("no CERTIFICATE block")
    der = blocks[0]
    tbs = _Der(der).enter().enter()
    if tbs.peek_tag() == 0xA0:  # [0] EXPLICIT version
        tbs.skip()
    tbs.skip()  # serialNumber
    tbs.skip()  # signature AlgorithmIdentifier
    tbs.skip()  # issuer
    validity = tbs.enter()
    not_before, not_after = _time(validity), _time(validity)
    tbs.skip()  # subject
    key = _subject_public_key(tbs.enter())
    return Certificate(public_key=key, not_before=not_before, not_after=not_after)


def load_public_key(data: bytes) -> RsaPublicKey:
    """An RSA public key from a `PUBLIC KEY` (SubjectPublicKeyInfo) PEM. Raises `CertificateError`."""
    blocks = pem_blocks(data, "PUBLIC KEY")
    if not blocks:
        raise CertificateError("no PUBLIC KEY block")
    return _subject_public_key(_Der(blocks[0]).enter())


def load_private_key(data: bytes | str) -> RsaPrivateKey:
    """An RSA private key from PEM: PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY` (unencrypted).
    Raises `CertificateError`."""
    if blocks := pem_blocks(data, "PRIVATE KEY"):
        info = _Der(blocks[0]).enter()
        if info.integer() != 0:
            raise CertificateError("unsupported PKCS#8 version")
        algorithm = info.enter()
        if algorithm.value(0x06) != _RSA_ENCRYPTION:
            raise CertificateError("not an RSA private key")
        der = info.value(0x04)
    elif blocks := pem_blocks(data, "RSA PRIVATE KEY"):
        der = blocks[0]
    else:
        raise CertificateError("no PRIVATE KEY or RSA PRIVATE KEY block (encrypted keys are not supported)")
    fields = _Der(der).enter()
    if fields.integer() != 0:
        raise CertificateError("multi-prime RSA keys are not supported")
    n, e, d, p, q, dp, dq, qinv = (fields.integer() for _ in range(8))
    if min(n, e, d, p, q) <= 0 or p * q != n:
        raise CertificateError("inconsistent RSA private key")
    _check_key_size(n)
    return RsaPrivateKey(n=n, e=e, d=d, p=p, q=q, dp=dp, dq=dq, qinv=qinv)


def _subject_public_key(info: _Der) -> RsaPublicKey:
    algorithm = info.enter()
    if algorithm.value(0x06) != _RSA_ENCRYPTION:
        raise CertificateError("not an RSA public key")
    bits = info.value(0x03)
    if not bits or bits[0] != 0:
        raise CertificateError("public key BIT STRING has unused bits")
    key = _Der(bits, 1).enter()
    n, e = key.integer(), key.integer()
    if n <= 0 or e < 3 or e % 2 == 0 or e >= n:
        raise CertificateError("invalid RSA public key")
    _check_key_size(n)
    return RsaPublicKey(n=n, e=e)


def _check_key_size(n: int) -> None:
    if n.bit_length() < MIN_KEY_BITS:
        raise CertificateError(f"RSA key of {n.bit_length()} bits is below {MIN_KEY_BITS}")


def _time(reader: _Der) -> datetime:
    tag, start, end = reader.read()
    text = reader.data[start:end].decode("ascii", "replace")
    if tag == 0x17 and re.fullmatch(r"[0-9]{12}Z", text):
        # RFC 5280 §4.1.2.5.1: YY 50-99 is 19YY, 00-49 is 20YY (strptime's %y pivots at 69).
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif not (tag == 0x18 and re.fullmatch(r"[0-9]{14}Z", text)):
        raise CertificateError("certificate validity is not a UTCTime or GeneralizedTime in UTC")
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise CertificateError("certificate validity is not a valid date") from None


# --- RSASSA-PKCS1-v1_5 -------------------------------------------------------------------------


def _encoded(digest_name: str, message: bytes, size: int) -> bytes:
    """EMSA-PKCS1-v1_5: 00 01 FF..FF 00 || DigestInfo || H(message), `size` bytes long."""
    prefix = _DIGEST_INFO.get(digest_name)
    if prefix is None:
        raise ValueError(f"unsupported digest {digest_name!r}")
    t = prefix + hashlib.new(digest_name, message).digest()
    if size < len(t) + 11:
        raise ValueError("RSA key too short for this digest")
    return b"\x00\x01" + b"\xff" * (size - len(t) - 3) + b"\x00" + t


def verify_pkcs1_v15(key: RsaPublicKey, signature: bytes, message: bytes, digest_name: str) -> bool:
    """RSASSA-PKCS1-V1_5-VERIFY (RFC 8017 §8.2.2). Never raises for a bad signature."""
    k = key.size
    if len(signature) != k:
        return False
    s = int.from_bytes(signature, "big")
    if s >= key.n:
        return False
    em = pow(s, key.e, key.n).to_bytes(k, "big")
    return hmac.compare_digest(em, _encoded(digest_name, message, k))


def sign_pkcs1_v15(key: RsaPrivateKey, message: bytes, digest_name: str) -> bytes:
    """RSASSA-PKCS1-V1_5-SIGN (RFC 8017 §8.2.1), with the CRT. For tests and `hubctl simulate`:
    pure Python, not constant-time, never used on a key that signs anything real."""
    k = (key.n.bit_length() + 7) // 8
    m = int.from_bytes(_encoded(digest_name, message, k), "big")
    s1, s2 = pow(m, key.dp, key.p), pow(m, key.dq, key.q)
    s = s2 + key.q * ((key.qinv * (s1 - s2)) % key.p)
    if pow(s, key.e, key.n) != m:  # a broken key must not produce a signature that fails later
        raise CertificateError("RSA private key does not match its public key")
    return s.to_bytes(k, "big")


def sign_message(message: Mapping[str, Any], key: RsaPrivateKey, *, version: str = "2") -> dict[str, Any]:
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

    def public_key(self, url: str, now: datetime) -> RsaPublicKey:
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
