"""DNS TXT lookups for DKIM keys and DMARC records: one small port, a dnspython adapter, a fake.

Why a port of our own rather than dkimpy's built-in lookup: dkimpy's resolver folds a timeout and
"no such record" into the same `False` (a DKIM signature would then read as failed when DNS was
only slow), waits 5 s per lookup, and caches nothing. Here a timeout is a typed
`DnsTemporaryFailureError` the caller can retry on, each lookup has a short total budget, and
answers are cached across warm Lambda invocations for as long as their TTL allows.

Nothing is imported from dnspython until the first lookup: cold start is part of our performance.
"""

from __future__ import annotations

import re
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from chalicelib.adapters.email_auth.exceptions import DnsTemporaryFailureError

__all__ = [
    "DnspythonTxtResolver", "FakeTxtResolver", "TxtAnswer", "TxtCache", "TxtResolver", "normalize_name",
]

#: Characters of a name we will look up at all (DKIM selectors, `_domainkey`, `_dmarc`, IDN
#: domains in A-label form). Anything else cannot have a record we trust: the answer is "none".
_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
_MAX_NAME = 253


def normalize_name(name: str) -> str | None:
    """The lower-case, A-label, dot-less-at-the-end form of a DNS name, or None for a name that
    is not one (empty labels, over 253 octets, characters outside letters, digits, `-`, `_`)."""
    if not isinstance(name, str) or len(name) > 4 * _MAX_NAME:
        return None
    name = name.strip().rstrip(".").lower()
    if not name:
        return None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if len(name) > _MAX_NAME or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return None
    return name


@dataclass(frozen=True)
class TxtAnswer:
    """What one lookup found: each TXT record with its strings joined (RFC 6376 §3.6.2.2,
    RFC 7489 §6.1), and the TTL in seconds. No records means NXDOMAIN or no TXT data."""

    records: tuple[str, ...]
    ttl: float = 0.0


class TxtCache:
    """A thread-safe LRU cache of TXT answers that honours their TTLs.

    TTLs are clamped to [`min_ttl`, `max_ttl`]: a 0-second TTL would send every mail to DNS, a
    week-long one would keep a revoked DKIM key alive. "No record" answers are kept only for
    `negative_ttl` seconds, so a key published a minute ago is soon seen. Temporary failures are
    never cached. `clock` is injectable for tests (monotonic seconds).
    """

    def __init__(
        self,
        *,
        max_entries: int = 1024,
        min_ttl: float = 60.0,
        max_ttl: float = 3600.0,
        negative_ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or min_ttl < 0 or max_ttl < min_ttl or negative_ttl < 0:
            raise ValueError("TxtCache: need max_entries >= 1 and 0 <= min_ttl <= max_ttl, negative_ttl >= 0")
        self.max_entries = max_entries
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, tuple[str, ...]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> tuple[str, ...] | None:
        """The cached records (possibly empty: a cached "no record"), or None on a miss."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                return None
            expires, records = entry
            if now >= expires:
                del self._entries[name]
                return None
            self._entries.move_to_end(name)
            return records

    def put(self, name: str, answer: TxtAnswer) -> None:
        if answer.records:
            ttl = min(max(answer.ttl, self.min_ttl), self.max_ttl)
        else:
            ttl = self.negative_ttl
        if ttl <= 0:
            return
        expires = self._clock() + ttl
        with self._lock:
            self._entries[name] = (expires, answer.records)
            self._entries.move_to_end(name)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class TxtResolver(ABC):
    """Port: the TXT records at a DNS name.

    `txt(name)` returns every TXT record (strings of one record joined), `[]` when the name does
    not exist (NXDOMAIN), has no TXT data, or is not a valid DNS name. It raises
    `DnsTemporaryFailureError` when the answer is unknown (timeout, SERVFAIL, no resolver):
    the difference between "no key" and "could not ask" decides whether a caller may retry.

    The base normalizes the name and runs the cache; an adapter implements `_query`.
    """

    def __init__(self, *, cache: TxtCache | None = None) -> None:
        self.cache = cache

    def txt(self, name: str) -> list[str]:
        qname = normalize_name(name)
        if qname is None:
            return []
        if self.cache is not None:
            cached = self.cache.get(qname)
            if cached is not None:
                return list(cached)
        answer = self._query(qname)
        if self.cache is not None:
            self.cache.put(qname, answer)
        return list(answer.records)

    @abstractmethod
    def _query(self, name: str) -> TxtAnswer:
        """One lookup of a normalized name; raises `DnsTemporaryFailureError` when the answer
        is unknown."""


class DnspythonTxtResolver(TxtResolver):
    """TXT lookups with dnspython (https://dnspython.readthedocs.io/), cached.

    `lifetime` is the total budget of one lookup, retries and servers included (dkimpy's own
    default is 5 s; mail that waits on a slow DNS server should become "retry later", not hold a
    Lambda). `timeout` is the wait for one server's answer before the next try. `nameservers`
    and `port` override /etc/resolv.conf (tests run a resolver on loopback). Truncated UDP answers
    are retried over TCP by dnspython; EDNS asks for 1232-byte answers (the DNS flag day size),
    enough for a 4096-bit DKIM key in one UDP answer.
    """

    def __init__(
        self,
        *,
        lifetime: float = 2.0,
        timeout: float = 1.0,
        nameservers: Sequence[str] | None = None,
        port: int = 53,
        cache: TxtCache | None = None,
    ) -> None:
        if lifetime <= 0 or timeout <= 0:
            raise ValueError("DnspythonTxtResolver: lifetime and timeout must be positive")
        super().__init__(cache=cache if cache is not None else TxtCache())
        self.lifetime = lifetime
        self.timeout = min(timeout, lifetime)
        self.nameservers = list(nameservers) if nameservers is not None else None
        self.port = port
        self._resolver = None
        self._lock = threading.Lock()

    def _dnspython(self):
        with self._lock:
            if self._resolver is None:
                import dns.resolver

                try:
                    resolver = dns.resolver.Resolver(configure=self.nameservers is None)
                except dns.resolver.NoResolverConfiguration:
                    raise DnsTemporaryFailureError("no DNS resolver configured (/etc/resolv.conf)") from None
                if self.nameservers is not None:
                    resolver.nameservers = self.nameservers
                    resolver.port = self.port
                resolver.timeout = self.timeout
                resolver.lifetime = self.lifetime
                resolver.retry_servfail = False
                resolver.use_edns(0, 0, 1232)
                self._resolver = resolver
            return self._resolver

    def _query(self, name: str) -> TxtAnswer:
        resolver = self._dnspython()
        import dns.exception
        import dns.resolver

        try:
            answer = resolver.resolve(name + ".", "TXT", raise_on_no_answer=False, lifetime=self.lifetime, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.YXDOMAIN):
            return TxtAnswer(())
        except dns.exception.Timeout:
            raise DnsTemporaryFailureError(f"DNS timeout for {name} TXT") from None
        except dns.resolver.NoNameservers:
            raise DnsTemporaryFailureError(f"no DNS server answered for {name} TXT (SERVFAIL/REFUSED)") from None
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsTemporaryFailureError(f"DNS lookup of {name} TXT failed ({type(exc).__name__})") from None
        if answer.rrset is None:
            return TxtAnswer(())
        records = tuple(b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer.rrset)
        return TxtAnswer(records, float(answer.chaining_result.minimum_ttl))


class FakeTxtResolver(TxtResolver):
    """In-memory TXT records for tests and offline runs: `add` records, `fail` a name to make it
    time out; `queries` lists every name that reached `_query` (cache misses)."""

    def __init__(
        self, records: Mapping[str, str | Iterable[str]] | None = None, *, ttl: float = 300.0,
        cache: TxtCache | None = None,
    ) -> None:
        super().__init__(cache=cache)
        self.ttl = ttl
        self.records: dict[str, tuple[str, ...]] = {}
        self.ttls: dict[str, float] = {}
        self.failing: set[str] = set()
        self.queries: list[str] = []
        for name, value in (records or {}).items():
            self.add(name, *([value] if isinstance(value, str) else value))

    def add(self, name: str, *records: str, ttl: float | None = None) -> None:
        key = normalize_name(name)
        if key is None:
            raise ValueError(f"not a DNS name: {name!r}")
        self.records[key] = self.records.get(key, ()) + records
        self.ttls[key] = self.ttl if ttl is None else ttl

    def remove(self, name: str) -> None:
        key = normalize_name(name) or name
        self.records.pop(key, None)

    def fail(self, name: str) -> None:
        self.failing.add(normalize_name(name) or name)

    def _query(self, name: str) -> TxtAnswer:
        self.queries.append(name)
        if name in self.failing:
            raise DnsTemporaryFailureError(f"DNS timeout for {name} TXT (fake)")
        records = self.records.get(name, ())
        return TxtAnswer(records, self.ttls.get(name, self.ttl) if records else 0.0)
