"""Constant-time comparison against every secret of a rotation list.

Every candidate is computed and compared, match or not, and no loop exits early: the time a
request takes says nothing about which secret (if any) matched or how much of a guess was right.
Values are compared as SHA-256 digests, so differing lengths leak nothing either (signatures,
whose length is public, as they are).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable


def _digest(value: str | bytes) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value).digest()


def matches_any(candidates: Iterable[str | bytes], given: str | bytes) -> bool:
    """True when `given` equals one of `candidates` (a shared token, a basic-auth credential)."""
    given_digest = _digest(given)
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(_digest(candidate), given_digest)
    return matched


def signed_by_any(sign: Callable[[str], str | bytes], secrets: Iterable[str], given: str | bytes) -> bool:
    """True when `given` is `sign(secret)` for one of `secrets` (the signature each would make).

    Compared as they are, not as digests: a signature's length is its algorithm's, whatever the
    secret, so a length the comparison may reveal tells nothing (a token's length would)."""
    given_bytes = _bytes(given)
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(_bytes(sign(secret)), given_bytes)
    return matched


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value


def hmac_sha256(key: str | bytes, data: str | bytes) -> bytes:
    """HMAC-SHA256, text as UTF-8: what Meta, Slack, X, Mailgun, web chat and Standard Webhooks sign with."""
    key_bytes = key.encode("utf-8") if isinstance(key, str) else key
    keyed = _keyed.get(key_bytes)
    if keyed is None:
        if len(_keyed) >= _MAX_KEYS:  # secrets are a handful per hub: a guard
            _keyed.clear()
        keyed = _keyed[key_bytes] = hmac.new(key_bytes, digestmod=hashlib.sha256)
    mac = keyed.copy()
    mac.update(data.encode("utf-8") if isinstance(data, str) else data)
    return mac.digest()


#: HMAC-SHA256 keyed and not fed, by key: a copy of one costs half of keying anew (`hmac.new`
#: hashes the padded key twice, on the path of every signed webhook). Only ever copied, never
#: fed, so threads share them safely.
_keyed: dict[bytes, hmac.HMAC] = {}
_MAX_KEYS = 64
