"""Time-sortable identifiers (ULID layout, Crockford base32) with a type prefix.

Sortable ids let the store list a customer's contacts newest first by key alone, with no index.
Deterministic variants (`stable_id`) make reprocessing a message produce the same contact and
delivery ids, so a retried worker overwrites rather than duplicates.
"""

from __future__ import annotations

import hashlib
import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _encode(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, rest = divmod(number, 32)
        chars.append(_ALPHABET[rest])
    return "".join(reversed(chars))


def _ulid(millis: int, entropy: bytes) -> str:
    return _encode(millis & ((1 << 48) - 1), 10) + _encode(int.from_bytes(entropy[:10], "big"), 16)


def new_id(prefix: str, *, millis: int | None = None) -> str:
    """A fresh random id, ordered by creation time."""
    if millis is None:
        millis = time.time_ns() // 1_000_000
    return f"{prefix}_{_ulid(millis, os.urandom(10))}"


def stable_id(prefix: str, key: str, *, millis: int) -> str:
    """The same id for the same `key` every time, still ordered by `millis`."""
    return f"{prefix}_{_ulid(millis, hashlib.sha256(key.encode()).digest())}"


def digest_id(prefix: str, key: str) -> str:
    """A deterministic id with no time component (for records keyed by a composite)."""
    return f"{prefix}_{_encode(int.from_bytes(hashlib.sha256(key.encode()).digest()[:16], 'big'), 26)}"


def delivery_id(contact_id: str, destination: str) -> str:
    """The one id of a contact's delivery to a destination: the idempotency key vendors see."""
    return digest_id("dlv", f"{contact_id}:{destination}")


def group_id(key: str) -> str:
    """A FIFO message group id for an ordering key: SQS allows ≤128 characters of a restricted
    set, so the key is hashed. Messages with one key are processed in order."""
    return hashlib.sha256(key.encode()).hexdigest()[:40]
