"""The dnspython adapter against a small authoritative DNS server on loopback (127.0.0.1 only):
answers, NXDOMAIN, NODATA, SERVFAIL, silence, TTL caching, and a DKIM check end to end."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
import pytest

from chalicelib.adapters.email_auth import (
    DkimStatus,
    DnspythonTxtResolver,
    DnsTemporaryFailureError,
    SenderVerifier,
    TxtCache,
    UnverifiedReason,
)
from tests.support.dkim_signing import Signer, message


class LoopbackDns:
    """Answers TXT queries from `zone` (name → (records, ttl)); names in `servfail` get
    SERVFAIL, names in `silent` get no answer, anything else NXDOMAIN."""

    def __init__(self) -> None:
        self.zone: dict[str, tuple[list[str], int]] = {}
        self.servfail: set[str] = set()
        self.silent: set[str] = set()
        self.queries: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            self.queries.append(name)
            if name in self.silent:
                continue
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            if name in self.servfail:
                response.set_rcode(dns.rcode.SERVFAIL)
            elif name not in self.zone:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.TXT and self.zone[name][0]:
                records, ttl = self.zone[name]
                rrset = dns.rrset.RRset(question.name, dns.rdataclass.IN, dns.rdatatype.TXT)
                for record in records:
                    raw = record.encode()
                    chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
                    rrset.add(dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks), ttl)
                response.answer.append(rrset)
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def server() -> Iterator[LoopbackDns]:
    running = LoopbackDns()
    yield running
    running.close()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def resolver_for(server: LoopbackDns, *, clock: Clock | None = None, lifetime: float = 1.0) -> DnspythonTxtResolver:
    cache = TxtCache(clock=clock) if clock else TxtCache()
    return DnspythonTxtResolver(nameservers=["127.0.0.1"], port=server.port, lifetime=lifetime, timeout=0.5, cache=cache)


def test_txt_records_are_returned_with_long_strings_joined(server):
    long_record = "v=DKIM1; k=rsa; p=" + "A" * 600
    server.zone["s1._domainkey.example.com"] = ([long_record, "other"], 300)

    records = resolver_for(server).txt("S1._domainkey.example.com.")

    assert sorted(records) == sorted([long_record, "other"])


def test_answers_are_cached_for_their_ttl(server):
    clock = Clock()
    server.zone["k.example.com"] = (["one"], 120)
    resolver = resolver_for(server, clock=clock)

    resolver.txt("k.example.com")
    clock.now = 119
    resolver.txt("k.example.com")
    clock.now = 120
    server.zone["k.example.com"] = (["two"], 120)

    assert resolver.txt("k.example.com") == ["two"]
    assert server.queries == ["k.example.com", "k.example.com"]


def test_nxdomain_and_nodata_are_no_records_and_cached_briefly(server):
    clock = Clock()
    server.zone["nodata.example.com"] = ([], 300)
    resolver = resolver_for(server, clock=clock)

    assert resolver.txt("missing.example.com") == []
    assert resolver.txt("nodata.example.com") == []
    assert resolver.txt("missing.example.com") == []
    assert server.queries == ["missing.example.com", "nodata.example.com"]
    clock.now = 60
    resolver.txt("missing.example.com")
    assert server.queries.count("missing.example.com") == 2


def test_servfail_is_a_temporary_failure(server):
    server.servfail.add("broken.example.com")

    with pytest.raises(DnsTemporaryFailureError, match="SERVFAIL"):
        resolver_for(server).txt("broken.example.com")


def test_silence_is_a_temporary_failure_within_the_budget(server):
    server.silent.add("slow.example.com")
    resolver = resolver_for(server, lifetime=0.6)

    started = time.monotonic()
    with pytest.raises(DnsTemporaryFailureError, match="timeout"):
        resolver.txt("slow.example.com")

    assert time.monotonic() - started < 1.5
    with pytest.raises(DnsTemporaryFailureError):  # never cached
        resolver.txt("slow.example.com")


def test_a_signed_message_verifies_end_to_end(server):
    signer = Signer("example.com", bits=2048)
    server.zone[signer.dns_name] = ([signer.record], 3600)
    server.zone["_dmarc.example.com"] = (["v=DMARC1; p=reject"], 3600)
    verifier = SenderVerifier(resolver_for(server))
    raw = signer.sign(message())

    first = verifier.verify(raw)
    second = verifier.verify(raw)

    assert first.verified and second.verified and first.dkim_domain == "example.com"
    assert server.queries == [signer.dns_name]  # the second message was answered from the cache


def test_a_silent_key_server_makes_verification_retryable(server):
    signer = Signer("example.com")
    server.silent.add(signer.dns_name)

    result = SenderVerifier(resolver_for(server, lifetime=0.4)).verify(signer.sign(message()))

    assert result.reason is UnverifiedReason.DNS_TEMPORARY_FAILURE and result.retryable
    assert result.signatures[0].status is DkimStatus.TEMPERROR
