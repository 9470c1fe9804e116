"""Organizational domains (Public Suffix List), alignment, and DMARC record discovery."""

from __future__ import annotations

import pytest

from chalicelib.adapters.email_auth.dmarc import (
    DmarcPolicy,
    DmarcPolicyLookup,
    DmarcRecord,
    is_aligned,
    organizational_domain,
    parse_dmarc_record,
)
from chalicelib.adapters.email_auth.dns import FakeTxtResolver
from chalicelib.adapters.email_auth.exceptions import DnsTemporaryFailureError


@pytest.mark.parametrize(
    ("domain", "organization"),
    [
        ("example.com", "example.com"),
        ("Mail.EU.Example.com.", "example.com"),
        ("a.b.example.co.uk", "example.co.uk"),
        ("alice.github.io", "alice.github.io"),  # the list's private section counts
        ("co.uk", None),
        ("com", None),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("not a domain", None),
    ],
)
def test_organizational_domain(domain, organization):
    assert organizational_domain(domain) == organization


@pytest.mark.parametrize(
    ("from_domain", "signer", "relaxed", "strict"),
    [
        ("example.com", "example.com", True, True),
        ("example.com", "EXAMPLE.COM.", True, True),
        ("example.com", "mail.example.com", True, False),
        ("eu.example.com", "example.com", True, False),
        ("eu.example.com", "us.example.com", True, False),
        ("example.com", "example.net", False, False),
        ("example.com", "example.com.evil.net", False, False),
        ("shop.example.co.uk", "other.co.uk", False, False),
        ("alice.github.io", "bob.github.io", False, False),
        ("example.com", None, False, False),
        (None, "example.com", False, False),
    ],
)
def test_alignment(from_domain, signer, relaxed, strict):
    assert is_aligned(from_domain, signer, "r") is relaxed
    assert is_aligned(from_domain, signer, "s") is strict


@pytest.mark.parametrize(
    ("text", "record"),
    [
        ("v=DMARC1; p=reject", DmarcRecord(p="reject", sp=None, adkim="r")),
        ("v=DMARC1;p=none;sp=reject;adkim=s;aspf=s", DmarcRecord(p="none", sp="reject", adkim="s")),
        ("v = DMARC1 ; p = Quarantine ; ADKIM = S", DmarcRecord(p="quarantine", sp=None, adkim="s")),
        ("v=DMARC1; p=bogus; adkim=x", DmarcRecord(p=None, sp=None, adkim="r")),
        ("v=DMARC1", DmarcRecord(p=None, sp=None, adkim="r")),
        ("p=reject; v=DMARC1", None),
        ("v=spf1 -all", None),
        ("v=DMARC2; p=reject", None),
    ],
)
def test_parse_dmarc_record(text, record):
    assert parse_dmarc_record(text) == record


def test_the_from_domain_record_is_used_first():
    resolver = FakeTxtResolver({
        "_dmarc.eu.example.com": "v=DMARC1; p=none",
        "_dmarc.example.com": "v=DMARC1; p=reject; adkim=s",
    })

    policy = DmarcPolicyLookup(resolver).find("eu.example.com")

    assert policy == DmarcPolicy(from_domain="eu.example.com", record_domain="eu.example.com", adkim="r", p="none")
    assert resolver.queries == ["_dmarc.eu.example.com"]


def test_a_subdomain_falls_back_to_the_organizational_record_and_its_sp():
    resolver = FakeTxtResolver({"_dmarc.example.com": "v=DMARC1; p=reject; sp=quarantine; adkim=s"})

    policy = DmarcPolicyLookup(resolver).find("a.b.example.com")

    assert policy == DmarcPolicy(from_domain="a.b.example.com", record_domain="example.com", adkim="s", p="quarantine")
    assert resolver.queries == ["_dmarc.a.b.example.com", "_dmarc.example.com"]


def test_p_applies_to_subdomains_without_sp():
    resolver = FakeTxtResolver({"_dmarc.example.com": "v=DMARC1; p=reject"})

    assert DmarcPolicyLookup(resolver).find("eu.example.com").p == "reject"


def test_no_record_means_relaxed_and_no_policy():
    resolver = FakeTxtResolver({"_dmarc.example.com": "google-site-verification=abc"})

    assert DmarcPolicyLookup(resolver).find("example.com") == DmarcPolicy(
        from_domain="example.com", record_domain=None, adkim="r", p=None
    )


def test_several_records_mean_no_policy_and_no_fallback():
    resolver = FakeTxtResolver({
        "_dmarc.eu.example.com": ["v=DMARC1; p=none; adkim=s", "v=DMARC1; p=reject; adkim=s"],
        "_dmarc.example.com": "v=DMARC1; p=reject; adkim=s",
    })

    policy = DmarcPolicyLookup(resolver).find("eu.example.com")

    assert (policy.record_domain, policy.adkim, policy.p) == (None, "r", None)
    assert resolver.queries == ["_dmarc.eu.example.com"]


def test_a_dns_timeout_is_raised_not_read_as_no_record():
    resolver = FakeTxtResolver()
    resolver.fail("_dmarc.example.com")

    with pytest.raises(DnsTemporaryFailureError):
        DmarcPolicyLookup(resolver).find("eu.example.com")
