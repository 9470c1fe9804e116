"""DMARC identifier alignment (RFC 7489 §3.1) for DKIM, and the From domain's DMARC record.

A DKIM pass proves only that the signing domain (d=) vouches for the message; it says something
about the From address only when d= is *aligned* with the RFC5322.From domain: the same domain
(strict), or the same organizational domain (relaxed, the default). The organizational domain
comes from the Public Suffix List as shipped in `publicsuffixlist` (the list is in the package,
pinned with it; nothing is downloaded at run time), so `a.example.co.uk` and `example.co.uk`
align but `alice.github.io` and `bob.github.io` do not.

Only DKIM alignment is evaluated. SPF alignment needs the IP address that connected to the
receiving MTA, and Mailgun routes, SendGrid Inbound Parse and SES hand the hub the message, not
the connection: an SPF check here would be a guess.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from chalicelib.adapters.email_auth.dns import TxtResolver, normalize_name

__all__ = [
    "AlignmentMode", "DmarcPolicy", "DmarcPolicyLookup", "DmarcRecord", "is_aligned", "organizational_domain",
    "parse_dmarc_record",
]

AlignmentMode = Literal["r", "s"]
_POLICIES = frozenset({"none", "quarantine", "reject"})


@functools.cache
def _public_suffix_list():
    """Built on first use (about 70 ms): the list ships inside the package."""
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def organizational_domain(domain: str) -> str | None:
    """The registered domain under its public suffix (RFC 7489 §3.2): `mail.example.co.uk` →
    `example.co.uk`. None for a public suffix itself (`co.uk`, `github.io`) or a non-name. The
    list's private section counts, so each `*.github.io` user is an organization of its own."""
    name = normalize_name(domain)
    if name is None:
        return None
    return _public_suffix_list().privatesuffix(name)


def is_aligned(from_domain: str | None, signing_domain: str | None, mode: AlignmentMode = "r") -> bool:
    """Strict: the same domain. Relaxed: the same organizational domain (never a bare public
    suffix: two strangers under `co.uk` are not aligned)."""
    left = normalize_name(from_domain or "")
    right = normalize_name(signing_domain or "")
    if left is None or right is None:
        return False
    if left == right:
        return True
    if mode == "s":
        return False
    organization = organizational_domain(left)
    return organization is not None and organization == organizational_domain(right)


@dataclass(frozen=True)
class DmarcRecord:
    """The tags this hub reads from a DMARC record (RFC 7489 §6.3)."""

    p: str | None
    sp: str | None
    adkim: AlignmentMode


def parse_dmarc_record(text: str) -> DmarcRecord | None:
    """A `v=DMARC1; ...` record, or None when the text is not one (the version tag must come
    first, RFC 7489 §6.4). Unknown or invalid tag values fall back to their defaults."""
    parts = [part.strip() for part in text.split(";")]
    version = parts[0].replace(" ", "").replace("\t", "")
    if version != "v=DMARC1":
        return None
    tags: dict[str, str] = {}
    for part in parts[1:]:
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), value.strip().lower())
    adkim: AlignmentMode = "s" if tags.get("adkim") == "s" else "r"
    p = tags.get("p") if tags.get("p") in _POLICIES else None
    sp = tags.get("sp") if tags.get("sp") in _POLICIES else None
    return DmarcRecord(p=p, sp=sp, adkim=adkim)


@dataclass(frozen=True)
class DmarcPolicy:
    """What DMARC says about a From domain: where the record was found (None: no record, so
    relaxed alignment and no policy), the DKIM alignment mode, and the policy that applies
    (`sp` when the record is the organizational domain's and has one)."""

    from_domain: str
    record_domain: str | None
    adkim: AlignmentMode
    p: str | None


class DmarcPolicyLookup:
    """Finds the DMARC record for a From domain: `_dmarc.<from domain>`, else
    `_dmarc.<organizational domain>` (RFC 7489 §6.6.3).

    `find` raises `DnsTemporaryFailureError` when DNS cannot answer now.
    """

    def __init__(self, resolver: TxtResolver) -> None:
        self.resolver = resolver

    def find(self, from_domain: str) -> DmarcPolicy:
        domain = normalize_name(from_domain) or from_domain
        record, several = self._record(domain)
        record_domain = domain if record else None
        inherited = False
        if record is None and not several:
            organization = organizational_domain(domain)
            if organization and organization != domain:
                record, _ = self._record(organization)
                record_domain = organization if record else None
                inherited = True
        if record is None:
            return DmarcPolicy(from_domain=domain, record_domain=None, adkim="r", p=None)
        policy = (record.sp or record.p) if inherited else record.p
        return DmarcPolicy(from_domain=domain, record_domain=record_domain, adkim=record.adkim, p=policy)

    def _record(self, domain: str) -> tuple[DmarcRecord | None, bool]:
        """(the one DMARC record at the domain, whether there were several). Several records
        mean no policy at all, without falling back (RFC 7489 §6.6.3 step 5)."""
        found = [r for r in (parse_dmarc_record(text) for text in self.resolver.txt("_dmarc." + domain)) if r]
        if len(found) == 1:
            return found[0], False
        return None, len(found) > 1
