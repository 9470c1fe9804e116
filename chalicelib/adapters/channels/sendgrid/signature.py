"""The ECDSA signature of a SendGrid security policy: P-256 with SHA-256 over `timestamp + body`,
the key as SendGrid shows it (base64 DER SubjectPublicKeyInfo) or PEM.

Checked with the `cryptography` package, imported only when a Parse setting has signature keys
configured (configuration load and signed requests), never on other ingest paths.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=16)
def load_public_key(value: str) -> Any:
    """A P-256 public key (`cryptography`'s `EllipticCurvePublicKey`) from base64 DER or PEM.
    Raises ValueError naming what is wrong (never the key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    text = re.sub(r"-----(BEGIN|END) PUBLIC KEY-----", "", value)
    try:
        der = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("public key is not base64 (DER) or PEM") from None
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError):
        raise ValueError("public key is not a DER SubjectPublicKeyInfo with a valid point") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("public key is not an EC key on P-256 (prime256v1)")
    return key


def verifies(keys: list[Any], message: bytes, signature: str) -> bool:
    """True when one of `keys` signed `message` with the base64 DER `signature`; never raises
    for a malformed or wrong signature. Every key is tried, match or not."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    matched = False
    for key in keys:
        try:
            key.verify(raw, message, ec.ECDSA(hashes.SHA256()))
            matched = True
        except (InvalidSignature, ValueError):
            continue
    return matched
