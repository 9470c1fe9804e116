"""The signing helpers every verifier uses: constant-time matches over rotation lists, replay
windows, and the memory of tokens used once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.errors import SignatureError
from chalicelib.signing.compare import hmac_sha256, matches_any, signed_by_any
from chalicelib.signing.replay import MemoryReplayGuard, StoreReplayGuard
from chalicelib.signing.window import check_window, unix_seconds

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def test_matches_any_over_every_candidate_of_any_length():
    assert matches_any(["old-secret", "new-secret"], "new-secret")
    assert matches_any([b"\x00bytes"], b"\x00bytes")
    assert not matches_any(["old-secret", "new-secret"], "new-secre")
    assert not matches_any([], "anything")
    assert not matches_any(["a"], "a\ud800")  # a lone surrogate never raises


def test_signed_by_any_computes_every_secret_even_after_a_match():
    computed = []

    def sign(secret: str) -> str:
        computed.append(secret)
        return hmac_sha256(secret, "payload").hex()

    assert signed_by_any(sign, ["first", "second", "third"], hmac_sha256("first", "payload").hex())
    assert computed == ["first", "second", "third"], "no early exit: the time says nothing about which matched"


def test_hmac_sha256_matches_the_standard_library():
    import hashlib
    import hmac

    assert hmac_sha256("k", "données") == hmac.new(b"k", "données".encode(), hashlib.sha256).digest()


@pytest.mark.parametrize(("offset", "ok"), [(0, True), (-300, True), (300, True), (-301, False), (301, False)])
def test_check_window_both_ways(offset, ok):
    signed_at = NOW.timestamp() + offset
    if ok:
        check_window(signed_at, NOW, max_age=300, field="X-Timestamp", setting="max_age")
    else:
        with pytest.raises(SignatureError, match=r"X-Timestamp is 30[01] s away from our clock, outside the max_age"):
            check_window(signed_at, NOW, max_age=300, field="X-Timestamp", setting="max_age")


def test_check_window_can_allow_less_skew_into_the_future():
    check_window(NOW.timestamp() - 3600, NOW, max_age=7200, max_future=60, field="t", setting="s")
    with pytest.raises(SignatureError):
        check_window(NOW.timestamp() + 61, NOW, max_age=7200, max_future=60, field="t", setting="s")


@pytest.mark.parametrize("value", [None, "", "12ab", "-5", "1" * 13, "١٢٣"])
def test_unix_seconds_refuses_what_is_not_ascii_digits(value):
    with pytest.raises(SignatureError, match="ts"):
        unix_seconds(value, field="ts")


def test_memory_replay_guard_binds_a_token_to_its_first_fingerprint_until_it_expires():
    guard = MemoryReplayGuard()
    later = NOW + timedelta(hours=9)
    assert guard.first_use("mailgun", "tok", fingerprint="<a@x>", expires_at=later, now=NOW)
    assert guard.first_use("mailgun", "tok", fingerprint="<a@x>", expires_at=later, now=NOW), "a retry"
    assert not guard.first_use("mailgun", "tok", fingerprint="<b@x>", expires_at=later, now=NOW), "a replay"
    assert guard.first_use("other", "tok", fingerprint="<b@x>", expires_at=later, now=NOW), "scopes are separate"
    assert guard.first_use("mailgun", "tok", fingerprint="<b@x>", expires_at=later + timedelta(hours=9),
                           now=later + timedelta(seconds=1)), "expired: the token is new again"


def test_memory_replay_guard_is_bounded():
    guard = MemoryReplayGuard(max_entries=3)
    later = NOW + timedelta(hours=1)
    for index in range(5):
        guard.first_use("s", f"t{index}", fingerprint="f", expires_at=later, now=NOW)
    assert guard.first_use("s", "t0", fingerprint="other", expires_at=later, now=NOW), "the oldest were forgotten"
    assert not guard.first_use("s", "t4", fingerprint="other", expires_at=later, now=NOW)


def test_store_replay_guard_keeps_the_fingerprint_in_the_store():
    class Store:
        def __init__(self) -> None:
            self.kept: dict[str, str] = {}

        def remember(self, key, *, value, expires_at, now):
            assert now == NOW, "judged on the hub's clock, not the store's"
            earlier = self.kept.get(key)
            self.kept.setdefault(key, value)
            return earlier

    store = Store()
    guard = StoreReplayGuard(lambda: store)
    later = NOW + timedelta(hours=1)
    assert guard.first_use("mailgun", "tok", fingerprint="<a@x>", expires_at=later, now=NOW)
    assert guard.first_use("mailgun", "tok", fingerprint="<a@x>", expires_at=later, now=NOW)
    assert not guard.first_use("mailgun", "tok", fingerprint="<b@x>", expires_at=later, now=NOW)
    assert store.kept == {"replay:mailgun:tok": "<a@x>"}


def test_signed_by_any_compares_text_and_bytes_of_any_length_without_raising():
    signature = hmac_sha256("secret", "payload").hex()
    assert signed_by_any(lambda secret: hmac_sha256(secret, "payload").hex(), ["other", "secret"], signature.encode())
    assert signed_by_any(lambda secret: hmac_sha256(secret, "payload").hex().encode(), ["secret"], signature)
    assert not signed_by_any(lambda secret: hmac_sha256(secret, "payload").hex(), ["secret"], signature[:-1])
    assert not signed_by_any(lambda secret: hmac_sha256(secret, "payload").hex(), ["secret"], signature + "0")
    assert not signed_by_any(lambda secret: hmac_sha256(secret, "payload").hex(), ["secret"], "é\ud800")
    assert not signed_by_any(lambda secret: hmac_sha256(secret, "payload").hex(), [], signature)


def test_hmac_sha256_of_a_key_seen_before_is_the_standard_librarys_every_time():
    """Keyed states are kept per key and copied: one message must not leak into the next."""
    import hashlib
    import hmac

    for key, data in [("k1", "first"), ("k1", "second"), (b"k1", b"first"), ("k2", "first"), ("k1", "")]:
        key_bytes = key.encode() if isinstance(key, str) else key
        data_bytes = data.encode() if isinstance(data, str) else data
        assert hmac_sha256(key, data) == hmac.new(key_bytes, data_bytes, hashlib.sha256).digest()
