"""The TXT resolver port: name normalization, the fake, the TTL/LRU cache, lazy dnspython."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from chalicelib.adapters.email_auth.dns import (
    DnspythonTxtResolver,
    FakeTxtResolver,
    TxtAnswer,
    TxtCache,
    normalize_name,
)
from chalicelib.adapters.email_auth.exceptions import DnsTemporaryFailureError
from chalicelib.errors import TransientError

ROOT = Path(__file__).resolve().parents[3]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("S1._DomainKey.Example.COM.", "s1._domainkey.example.com"),
        ("_dmarc.bücher.example", "_dmarc.xn--bcher-kva.example"),
        ("sel-2024_a._domainkey.example.com", "sel-2024_a._domainkey.example.com"),
        ("", None),
        ("a..example.com", None),
        ("evil.example\x00.com", None),
        ("sp ace.example", None),
        ("a" * 64 + ".example", None),
        (("a" * 60 + ".") * 5 + "com", None),
    ],
)
def test_names_are_normalized_or_refused(name, expected):
    assert normalize_name(name) == expected


def test_the_fake_answers_records_nothing_or_a_timeout():
    resolver = FakeTxtResolver({"a.example": ["one", "two"]})
    resolver.fail("slow.example")

    assert resolver.txt("A.Example.") == ["one", "two"]
    assert resolver.txt("missing.example") == []
    with pytest.raises(DnsTemporaryFailureError) as raised:
        resolver.txt("slow.example")
    assert isinstance(raised.value, TransientError) and raised.value.http_status == 503


def test_an_invalid_name_is_answered_without_a_query():
    resolver = FakeTxtResolver()

    assert resolver.txt("bad name.example") == []
    assert resolver.queries == []


def cached_fake(clock: Clock, **options) -> FakeTxtResolver:
    return FakeTxtResolver(cache=TxtCache(clock=clock, **options))


def test_the_cache_honours_the_record_ttl():
    clock = Clock()
    resolver = cached_fake(clock)
    resolver.add("k.example", "v=DKIM1; p=A", ttl=300)

    assert resolver.txt("k.example") == ["v=DKIM1; p=A"]
    clock.now += 299
    resolver.records["k.example"] = ("v=DKIM1; p=B",)
    assert resolver.txt("k.example") == ["v=DKIM1; p=A"]
    clock.now += 1
    assert resolver.txt("k.example") == ["v=DKIM1; p=B"]
    assert resolver.queries == ["k.example", "k.example"]


@pytest.mark.parametrize(("ttl", "kept"), [(0, 60), (5, 60), (86_400, 3600)])
def test_ttls_are_clamped_between_the_floor_and_the_cap(ttl, kept):
    clock = Clock()
    resolver = cached_fake(clock)
    resolver.add("k.example", "record", ttl=ttl)

    resolver.txt("k.example")
    clock.now += kept - 0.5
    resolver.txt("k.example")
    clock.now += 1
    resolver.txt("k.example")

    assert len(resolver.queries) == 2


def test_nxdomain_is_cached_for_the_short_negative_ttl():
    clock = Clock()
    resolver = cached_fake(clock, negative_ttl=30)

    assert resolver.txt("new._domainkey.example") == []
    resolver.add("new._domainkey.example", "v=DKIM1; p=A")
    clock.now += 29
    assert resolver.txt("new._domainkey.example") == []
    clock.now += 1
    assert resolver.txt("new._domainkey.example") == ["v=DKIM1; p=A"]
    assert len(resolver.queries) == 2


def test_temporary_failures_are_not_cached():
    clock = Clock()
    resolver = cached_fake(clock)
    resolver.add("k.example", "record")
    resolver.fail("k.example")

    for _ in range(2):
        with pytest.raises(DnsTemporaryFailureError):
            resolver.txt("k.example")
    resolver.failing.clear()

    assert resolver.txt("k.example") == ["record"]
    assert len(resolver.queries) == 3


def test_the_least_recently_used_entry_is_evicted():
    cache = TxtCache(max_entries=2, clock=Clock())
    cache.put("a", TxtAnswer(("1",), 300))
    cache.put("b", TxtAnswer(("2",), 300))
    assert cache.get("a") == ("1",)  # a is now the most recent

    cache.put("c", TxtAnswer(("3",), 300))

    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (("1",), None, ("3",))
    assert len(cache) == 2


def test_the_cache_is_safe_to_share_between_threads():
    cache = TxtCache(max_entries=50)
    errors: list[BaseException] = []

    def hammer(offset: int) -> None:
        try:
            for i in range(2000):
                name = f"n{(i + offset) % 80}"
                cache.put(name, TxtAnswer((name,), 300))
                found = cache.get(name)
                assert found in (None, (name,))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n * 7,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == [] and len(cache) <= 50


def test_invalid_cache_settings_are_refused():
    with pytest.raises(ValueError):
        TxtCache(min_ttl=600, max_ttl=60)


def closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_nothing_heavy_is_imported_until_a_lookup_happens():
    """Run in a fresh interpreter: the test process has long imported dnspython and dkimpy."""
    script = textwrap.dedent(
        f"""
        import sys
        heavy = ("dns", "dkim", "publicsuffixlist")
        from chalicelib.adapters.email_auth import DnspythonTxtResolver, SenderVerifier, DnsTemporaryFailureError
        resolver = DnspythonTxtResolver(nameservers=["127.0.0.1"], port={closed_udp_port()}, lifetime=0.3)
        SenderVerifier(resolver)
        assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]
        try:
            resolver.txt("s1._domainkey.example.com")
        except DnsTemporaryFailureError:
            pass
        else:
            raise AssertionError("a lookup with no server answering must be a temporary failure")
        assert "dns.resolver" in sys.modules
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_dnspython_settings_are_validated():
    with pytest.raises(ValueError):
        DnspythonTxtResolver(lifetime=0)
    resolver = DnspythonTxtResolver(lifetime=0.5, timeout=3)
    assert resolver.timeout == 0.5 and resolver.cache is not None
