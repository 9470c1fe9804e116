"""An independent DKIM signer for tests: keys from `cryptography`, signatures from `dkim.sign`.

The verifier under test never sees these keys except through DNS TXT records served by a fake
(or loopback) resolver, as a real receiver would.
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DATE = "Thu, 01 Jan 2026 10:00:00 +0000"


@functools.cache
def rsa_key(bits: int = 2048, slot: int = 0) -> rsa.RSAPrivateKey:
    """One key per (size, slot) for the whole run: key generation is the slow part."""
    del slot
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@dataclass(frozen=True)
class Signer:
    """A signing domain and selector with its key; `record` is what it publishes in DNS."""

    domain: str
    selector: str = "s1"
    bits: int = 2048
    slot: int = 0

    @property
    def key(self) -> rsa.RSAPrivateKey:
        return rsa_key(self.bits, self.slot)

    @property
    def dns_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def record(self) -> str:
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")

    def publish(self, resolver) -> Signer:
        resolver.add(self.dns_name, self.record)
        return self

    def sign(
        self,
        message: bytes,
        *,
        algorithm: bytes = b"rsa-sha256",
        include_headers: list[bytes] | None = None,
        canonicalize: tuple[bytes, bytes] = (b"relaxed", b"relaxed"),
        length: bool = False,
    ) -> bytes:
        """The message with this signer's DKIM-Signature prepended (as an MTA would)."""
        pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        header = dkim.sign(
            message, self.selector.encode(), self.domain.encode(), pem, signature_algorithm=algorithm,
            include_headers=include_headers or [b"from", b"to", b"subject", b"date", b"message-id"],
            canonicalize=canonicalize, length=length,
        )
        return header + message


def message(
    *,
    sender: str = "Alice Example <alice@example.com>",
    body: str = "Hello,\r\nmy order 1234 has not arrived.\r\nAlice\r\n",
    extra_headers: tuple[str, ...] = (),
    from_headers: tuple[str, ...] | None = None,
) -> bytes:
    """A small RFC 5322 message with CRLF line endings."""
    froms = [f"From: {value}" for value in (from_headers if from_headers is not None else (sender,))]
    lines = [
        *froms,
        "To: support@hub.example",
        "Subject: Where is my order?",
        f"Date: {DATE}",
        "Message-ID: <m1@example.com>",
        *extra_headers,
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8")
