"""SenderVerifier on real DKIM signatures (dkimpy's `dkim.sign`, keys from `cryptography`),
keys and DMARC records served by the fake resolver."""

from __future__ import annotations

import time

import pytest

from chalicelib.adapters.email_auth import (
    DkimLimits,
    DkimStatus,
    FakeTxtResolver,
    SenderVerifier,
    UnverifiedReason,
)
from chalicelib.adapters.email_auth.verifier import from_domain_of
from tests.support.dkim_signing import Signer, message

EXAMPLE = Signer("example.com")


@pytest.fixture
def dns() -> FakeTxtResolver:
    resolver = FakeTxtResolver()
    EXAMPLE.publish(resolver)
    return resolver


def verify(raw: bytes, resolver: FakeTxtResolver, **limits):
    return SenderVerifier(resolver, limits=DkimLimits(**limits)).verify(raw)


def test_a_signature_by_the_from_domain_verifies_the_sender(dns):
    result = verify(EXAMPLE.sign(message()), dns)

    assert result.verified and result.aligned and result.method == "dkim" and result.reason is None
    assert (result.from_domain, result.dkim_domain, result.selector) == ("example.com", "example.com", "s1")
    assert result.alignment == "s"
    assert [s.status for s in result.signatures] == [DkimStatus.PASS]


def test_a_strictly_aligned_pass_needs_no_dmarc_lookup(dns):
    dns.fail("_dmarc.example.com")

    result = verify(EXAMPLE.sign(message()), dns)

    assert result.verified
    assert not any(name.startswith("_dmarc") for name in dns.queries)


def test_from_domain_case_and_display_name_do_not_matter(dns):
    raw = EXAMPLE.sign(message(sender='"ceo@bank.example" <Alice@EXAMPLE.COM>'))

    result = verify(raw, dns)

    assert result.verified and result.from_domain == "example.com"


def test_a_subdomain_signer_is_aligned_in_relaxed_mode(dns):
    signer = Signer("mail.example.com").publish(dns)
    dns.add("_dmarc.example.com", "v=DMARC1; p=reject; rua=mailto:d@example.com")

    result = verify(signer.sign(message()), dns)

    assert result.verified and result.aligned
    assert (result.dkim_domain, result.alignment, result.dmarc_policy) == ("mail.example.com", "r", "reject")


def test_relaxed_alignment_without_any_dmarc_record_is_the_default(dns):
    signer = Signer("mail.example.com").publish(dns)

    result = verify(signer.sign(message()), dns)

    assert result.verified and result.alignment == "r" and result.dmarc_policy is None


def test_a_subdomain_signer_is_not_aligned_when_dmarc_asks_for_strict_alignment(dns):
    signer = Signer("mail.example.com").publish(dns)
    dns.add("_dmarc.example.com", "v=DMARC1; p=quarantine; adkim=s")

    result = verify(signer.sign(message()), dns)

    assert not result.verified and not result.aligned
    assert result.reason is UnverifiedReason.NOT_ALIGNED
    assert result.dkim_domain == "mail.example.com" and "adkim=s" in result.detail
    assert result.signatures[0].status is DkimStatus.PASS


def test_a_from_subdomain_inherits_the_organizational_record_and_its_sp(dns):
    dns.add("_dmarc.example.com", "v=DMARC1; p=reject; sp=quarantine")

    result = verify(EXAMPLE.sign(message(sender="alice@eu.example.com")), dns)

    assert result.verified and result.alignment == "r" and result.dmarc_policy == "quarantine"
    assert dns.queries[-2:] == ["_dmarc.eu.example.com", "_dmarc.example.com"]


def test_a_third_party_signature_does_not_prove_the_from_address(dns):
    esp = Signer("esp-mailer.net").publish(dns)

    result = verify(esp.sign(message()), dns)

    assert not result.verified and result.reason is UnverifiedReason.NOT_ALIGNED
    assert result.dkim_domain == "esp-mailer.net" and not result.aligned


def test_a_signature_for_a_sibling_under_a_public_suffix_is_not_aligned():
    resolver = FakeTxtResolver()
    signer = Signer("bob.github.io").publish(resolver)

    result = verify(signer.sign(message(sender="alice@alice.github.io")), resolver)

    assert result.reason is UnverifiedReason.NOT_ALIGNED


def test_a_tampered_body_fails(dns):
    raw = EXAMPLE.sign(message()).replace(b"has not arrived", b"has arrived")

    result = verify(raw, dns)

    assert result.reason is UnverifiedReason.SIGNATURE_FAILED
    assert (result.signatures[0].status, result.signatures[0].reason) == (DkimStatus.FAIL, "body hash mismatch")


@pytest.mark.parametrize(
    ("original", "tampered"),
    [
        (b"Subject: Where is my order?", b"Subject: Where is my refund?"),
        (b"From: Alice Example <alice@example.com>", b"From: Alice Example <bob@example.com>"),
    ],
)
def test_a_tampered_signed_header_fails(dns, original, tampered):
    raw = EXAMPLE.sign(message())
    assert original in raw

    result = verify(raw.replace(original, tampered), dns)

    assert result.reason is UnverifiedReason.SIGNATURE_FAILED
    assert result.signatures[0].status is DkimStatus.FAIL


def test_an_unsigned_header_may_change(dns):
    raw = EXAMPLE.sign(message(extra_headers=("X-Mailer: one",))).replace(b"X-Mailer: one", b"X-Mailer: two")

    assert verify(raw, dns).verified


def test_a_missing_key_is_a_permerror():
    result = verify(EXAMPLE.sign(message()), FakeTxtResolver())

    assert result.reason is UnverifiedReason.SIGNATURE_FAILED
    assert result.signatures[0].status is DkimStatus.PERMERROR
    assert "no key at s1._domainkey.example.com" in result.signatures[0].reason


def test_a_revoked_key_is_a_permerror():
    resolver = FakeTxtResolver({EXAMPLE.dns_name: "v=DKIM1; k=rsa; p="})

    result = verify(EXAMPLE.sign(message()), resolver)

    assert result.reason is UnverifiedReason.SIGNATURE_FAILED
    assert (result.signatures[0].status, result.signatures[0].reason) == (DkimStatus.PERMERROR, "key revoked (empty p=)")


def test_the_wrong_key_fails():
    resolver = FakeTxtResolver({EXAMPLE.dns_name: Signer("example.com", slot=1).record})

    result = verify(EXAMPLE.sign(message()), resolver)

    assert result.reason is UnverifiedReason.SIGNATURE_FAILED
    assert (result.signatures[0].status, result.signatures[0].reason) == (DkimStatus.FAIL, "signature did not verify")


def test_other_txt_data_at_the_selector_is_ignored():
    resolver = FakeTxtResolver({EXAMPLE.dns_name: ["google-site-verification=abc", EXAMPLE.record]})

    assert verify(EXAMPLE.sign(message()), resolver).verified


def test_a_key_timeout_is_a_temporary_failure_the_caller_can_retry(dns):
    dns.fail(EXAMPLE.dns_name)

    result = verify(EXAMPLE.sign(message()), dns)

    assert not result.verified and result.retryable
    assert result.reason is UnverifiedReason.DNS_TEMPORARY_FAILURE
    assert result.signatures[0].status is DkimStatus.TEMPERROR


def test_a_dmarc_timeout_is_a_temporary_failure_when_alignment_depends_on_it(dns):
    signer = Signer("mail.example.com").publish(dns)
    dns.fail("_dmarc.example.com")

    result = verify(signer.sign(message()), dns)

    assert result.reason is UnverifiedReason.DNS_TEMPORARY_FAILURE and result.dkim_domain == "mail.example.com"


def test_an_unrelated_signer_timing_out_does_not_make_a_failure_retryable(dns):
    esp = Signer("esp-mailer.net")
    dns.fail(esp.dns_name)

    result = verify(esp.sign(message()), dns)

    assert result.reason is UnverifiedReason.SIGNATURE_FAILED


def test_a_timeout_is_asked_once_per_message_even_for_several_signatures(dns):
    dns.fail(EXAMPLE.dns_name)
    raw = EXAMPLE.sign(EXAMPLE.sign(message()))

    result = verify(raw, dns)

    assert [s.status for s in result.signatures] == [DkimStatus.TEMPERROR] * 2
    assert dns.queries.count(EXAMPLE.dns_name) == 1


def test_rsa_sha1_never_passes_and_costs_no_lookup(dns):
    result = verify(EXAMPLE.sign(message(), algorithm=b"rsa-sha1"), dns)

    assert not result.verified and result.reason is UnverifiedReason.SIGNATURE_FAILED
    assert (result.signatures[0].status, result.signatures[0].algorithm) == (DkimStatus.POLICY, "rsa-sha1")
    assert dns.queries == []


def test_ed25519_is_reported_unsupported(dns):
    raw = EXAMPLE.sign(message()).replace(b"a=rsa-sha256", b"a=ed25519-sha256", 1)

    result = verify(raw, dns)

    assert result.signatures[0].status is DkimStatus.PERMERROR
    assert result.signatures[0].reason == "unsupported algorithm ed25519-sha256"


def test_a_signature_that_does_not_cover_from_is_ignored(dns):
    raw = EXAMPLE.sign(message(), include_headers=[b"from", b"subject"]).replace(b"h=from : subject", b"h=subject")

    result = verify(raw, dns)

    assert result.signatures[0].status is DkimStatus.PERMERROR and "From is not signed" in result.signatures[0].reason


@pytest.mark.parametrize(
    ("froms", "reason"),
    [
        (("alice@example.com", "mallory@evil.example"), UnverifiedReason.MULTIPLE_FROM),
        (("alice@example.com", "alice@example.com"), UnverifiedReason.MULTIPLE_FROM),
        (("alice@example.com, mallory@evil.example",), UnverifiedReason.MULTIPLE_FROM),
        (("alice@example.com <mallory@evil.example>",), UnverifiedReason.MULTIPLE_FROM),
        (("undisclosed-recipients:;",), UnverifiedReason.NO_FROM),
        (("Alice",), UnverifiedReason.NO_FROM),
        ((), UnverifiedReason.NO_FROM),
        (("alice@[192.0.2.1]",), UnverifiedReason.INVALID_FROM),
        (("alice@localhost",), UnverifiedReason.INVALID_FROM),
    ],
)
def test_a_message_without_exactly_one_from_address_is_never_verified(dns, froms, reason):
    raw = EXAMPLE.sign(message(from_headers=froms), include_headers=[b"from", b"from", b"subject"])

    result = verify(raw, dns)

    assert not result.verified and result.reason is reason and result.from_domain is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b" Alice <alice@Example.COM>\r\n", ("example.com", None)),
        (b' "Support, Example" <help@example.com>', ("example.com", None)),
        (b' "ceo@bank.example" <alice@example.com>', ("example.com", None)),
        (b" alice@example.com (sent for mallory@evil.example)", ("example.com", None)),
        (b" Alice\r\n <alice@example.com>", ("example.com", None)),
        (b" =?utf-8?q?J=C3=B6rg?= <jorg@b\xc3\xbccher.example>", ("xn--bcher-kva.example", None)),
        # Crafted addresses the standard library's parser splits or merges (CVE-2023-27043):
        (b" a@evil.example@example.com", (None, UnverifiedReason.MULTIPLE_FROM)),
        (b" alice@example.org)<mallory@evil.example>", (None, UnverifiedReason.MULTIPLE_FROM)),
        (b" <mallory@evil.example>alice@example.com", (None, UnverifiedReason.MULTIPLE_FROM)),
        (b" Alice <@evil.example:alice@example.com>", (None, UnverifiedReason.MULTIPLE_FROM)),
        (b' mallory@evil.example"@example.com', (None, UnverifiedReason.MULTIPLE_FROM)),
        (b" <@example.com>", (None, UnverifiedReason.INVALID_FROM)),
        (b" alice@" + b"a" * 3000 + b".example", (None, UnverifiedReason.INVALID_FROM)),
    ],
)
def test_from_domain_of_one_field(value, expected):
    assert from_domain_of([value]) == expected


def test_a_message_without_a_signature(dns):
    result = verify(message(), dns)

    assert (result.verified, result.reason, result.from_domain) == (False, UnverifiedReason.NO_SIGNATURE, "example.com")


def test_an_oversized_message_is_refused_before_it_is_read(dns):
    raw = EXAMPLE.sign(message(body="x" * 5000 + "\r\n"))

    assert verify(raw, dns, max_message_bytes=4096).reason is UnverifiedReason.TOO_LARGE
    assert verify(raw, dns).verified
    assert dns.queries == [EXAMPLE.dns_name]


def test_the_default_size_limit_is_10_mib(dns):
    raw = EXAMPLE.sign(message())
    huge = raw + b"x" * (10 * 1024 * 1024 - len(raw) + 1)

    assert verify(huge, dns).reason is UnverifiedReason.TOO_LARGE


@pytest.mark.parametrize(
    "raw",
    [
        message(extra_headers=tuple(f"X-Filler-{i}: y" for i in range(1001))),
        message(extra_headers=("X-Long: a" + "\r\n b" * 70_000,)),
    ],
    ids=["too many header fields", "header block too large"],
)
def test_hostile_header_blocks_are_refused(dns, raw):
    assert verify(raw, dns).reason is UnverifiedReason.TOO_LARGE


@pytest.mark.parametrize("raw", [b"", b"   \r\n", b"\x00\x01 not a header\r\n\r\nbody", "text"])
def test_what_is_not_a_message_is_malformed(dns, raw):
    assert verify(raw, dns).reason is UnverifiedReason.MALFORMED


def test_one_aligned_pass_among_several_signatures_verifies(dns):
    esp = Signer("esp-mailer.net").publish(dns)
    broken = Signer("broken.example", selector="old")  # not published: permerror
    raw = esp.sign(broken.sign(EXAMPLE.sign(message())))

    result = verify(raw, dns)

    assert result.verified and result.dkim_domain == "example.com"
    assert [(s.domain, s.status) for s in result.signatures] == [
        ("esp-mailer.net", DkimStatus.PASS), ("broken.example", DkimStatus.PERMERROR), ("example.com", DkimStatus.PASS),
    ]


def test_at_most_five_signatures_are_checked(dns):
    esp = Signer("esp-mailer.net").publish(dns)
    raw = EXAMPLE.sign(message())
    for _ in range(5):
        raw = esp.sign(raw)

    result = verify(raw, dns)

    assert len(result.signatures) == 5 and {s.domain for s in result.signatures} == {"esp-mailer.net"}
    assert result.reason is UnverifiedReason.NOT_ALIGNED


def test_signatures_past_the_body_budget_are_not_checked(dns):
    body = "line of text\r\n" * 2000
    raw = EXAMPLE.sign(EXAMPLE.sign(message(body=body)))

    result = verify(raw, dns, max_canonicalized_bytes=40_000)

    assert [s.status for s in result.signatures] == [DkimStatus.PASS, DkimStatus.POLICY]
    assert result.verified


def test_a_partial_body_length_limit_never_passes(dns):
    signed = EXAMPLE.sign(message(), length=True)

    assert verify(signed, dns).verified
    appended = verify(signed + b"Pay the invoice to IBAN XX00 0000.\r\n", dns)
    assert appended.reason is UnverifiedReason.SIGNATURE_FAILED
    assert appended.signatures[0].status is DkimStatus.POLICY


def test_keys_outside_the_accepted_sizes_are_refused(dns):
    result = verify(EXAMPLE.sign(message()), dns, max_key_bits=1024)

    assert result.signatures[0].status is DkimStatus.POLICY and "key too large" in result.signatures[0].reason


def test_long_runs_of_blanks_cannot_make_relaxed_canonicalization_quadratic(dns):
    """dkimpy's relaxed body canonicalization takes ~30 s on a 100 kB run of spaces that no line
    break follows. Signed with simple/simple (cheap), then c= claims relaxed/relaxed: the
    signature is refused before dkimpy sees it."""
    body = " " * 200_000 + "x\r\n"
    signed = EXAMPLE.sign(message(body=body), canonicalize=(b"relaxed", b"simple"))
    assert verify(signed, dns).verified  # simple body canonicalization: no such cost

    hostile = signed.replace(b"c=relaxed/simple", b"c=relaxed/relaxed", 1)
    started = time.perf_counter()
    result = verify(hostile, dns)

    assert time.perf_counter() - started < 2
    assert result.signatures[0].status is DkimStatus.POLICY and "blanks" in result.signatures[0].reason


def test_metadata_is_plain_data(dns):
    meta = verify(EXAMPLE.sign(message()), dns).as_metadata()

    assert meta["verified"] is True and meta["reason"] is None
    assert meta["signatures"] == [{"d": "example.com", "s": "s1", "a": "rsa-sha256", "result": "pass",
                                   "reason": "signature verified"}]


class SlowFake(FakeTxtResolver):
    """Each lookup takes `seconds` of an injected clock."""

    def __init__(self, clock: list[float], seconds: float) -> None:
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def _query(self, name):
        self.clock[0] += self.seconds
        return super()._query(name)


def test_key_lookups_stop_when_the_message_has_spent_its_dns_time():
    now = [0.0]
    resolver = SlowFake(now, seconds=1.5)
    signers = [Signer(f"signer{n}.example").publish(resolver) for n in range(4)]
    raw = message()
    for signer in signers:
        raw = signer.sign(raw)

    result = SenderVerifier(resolver, clock=lambda: now[0]).verify(raw)

    assert [s.status for s in result.signatures] == [DkimStatus.PASS] * 3 + [DkimStatus.TEMPERROR]
    assert len(resolver.queries) == 3 and "DNS time" not in result.signatures[0].reason


def test_a_key_that_is_not_base64_is_a_permerror():
    resolver = FakeTxtResolver({EXAMPLE.dns_name: "v=DKIM1; k=rsa; p=abc"})

    result = verify(EXAMPLE.sign(message()), resolver)

    assert result.signatures[0].status is DkimStatus.PERMERROR
