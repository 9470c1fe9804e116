"""The blob-store contract: LocalBlobStore and S3BlobStore (moto) behave the same."""

from __future__ import annotations

import pytest

from chalicelib.errors import NotFoundError, TransientError


def test_put_then_get_returns_the_exact_bytes(blobs):
    data = bytes(range(256)) * 4
    blobs.put("queue/inbound/abc.json", data, content_type="application/json")
    assert blobs.get("queue/inbound/abc.json") == data


def test_put_overwrites(blobs):
    blobs.put("k", b"one")
    blobs.put("k", b"two")
    assert blobs.get("k") == b"two"


def test_keys_are_independent(blobs):
    blobs.put("a/1", b"first")
    blobs.put("a/2", b"second")
    assert (blobs.get("a/1"), blobs.get("a/2")) == (b"first", b"second")


def test_an_unknown_key_is_not_found(blobs):
    with pytest.raises(NotFoundError):
        blobs.get("queue/missing.json")


def test_delete_removes_and_a_missing_key_is_not_an_error(blobs):
    blobs.put("k", b"data")
    blobs.delete("k")
    with pytest.raises(NotFoundError):
        blobs.get("k")
    blobs.delete("k")
    blobs.delete("never/existed")


def test_a_broken_backend_raises_transient_errors(broken_blobs):
    with pytest.raises(TransientError):
        broken_blobs.put("k", b"data")
    with pytest.raises(TransientError):
        broken_blobs.get("k")
