"""Is the From address of a raw message proved? DKIM plus DMARC alignment, checked by the hub.

For mail whose provider gave no trustworthy SPF/DKIM verdict (Mailgun `body-mime`, SendGrid
Inbound Parse `email`, SES from S3 or SNS), the hub verifies the DKIM signatures itself and
accepts the From address when a signature passes for a domain aligned with the From domain, in
the mode the From domain's DMARC record asks for (`adkim`, relaxed by default). That is what a
DMARC receiver calls a DKIM-aligned pass (RFC 7489 §4.2). SPF is not evaluated (see `dmarc`).

What is never verified: a message with no From address or several (in one header or in
several headers, RFC 7489 §6.6.1), mail over the size limits (`dkim.DkimLimits`), and a
signature that is not an rsa-sha256 pass (`dkim`). A DNS timeout is reported as
`dns_temporary_failure`, so the caller can retry later rather than take the sender as unproved.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from chalicelib.adapters.email_auth.dkim import DEFAULT_LIMITS, DkimLimits, DkimResult, DkimStatus, DkimVerifier
from chalicelib.adapters.email_auth.dmarc import DmarcPolicyLookup, is_aligned
from chalicelib.adapters.email_auth.dns import TxtResolver, normalize_name
from chalicelib.adapters.email_auth.exceptions import DnsTemporaryFailureError, UnverifiableMessageError

__all__ = ["SenderAuthentication", "SenderVerifier", "UnverifiedReason", "from_domain_of"]

#: Characters of a From field read; a longer one is refused rather than cut (cutting could
#: change which address it names). Real ones are under 200.
MAX_FROM_FIELD = 2048


class UnverifiedReason(StrEnum):
    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    NO_FROM = "no_from"
    MULTIPLE_FROM = "multiple_from"
    #: One From address, but its domain is not a DNS name (an address literal, bad characters).
    INVALID_FROM = "invalid_from"
    NO_SIGNATURE = "no_signature"
    #: Signatures present, none passed (failed, rsa-sha1, unusable or missing key, limits).
    SIGNATURE_FAILED = "signature_failed"
    #: A signature passed, but for a domain not aligned with the From domain.
    NOT_ALIGNED = "not_aligned"
    #: DNS could not answer now (a key or the DMARC record): retrying later may verify.
    DNS_TEMPORARY_FAILURE = "dns_temporary_failure"


@dataclass(frozen=True)
class SenderAuthentication:
    """The verdict on one message's From address.

    `verified` only with `method == "dkim"`: a passing signature by `dkim_domain`/`selector`
    aligned with `from_domain`. Otherwise `reason` says why; `dkim_domain` then names the
    passing signer that was not aligned, if any. `signatures` lists every checked signature.
    """

    verified: bool
    from_domain: str | None
    dkim_domain: str | None = None
    selector: str | None = None
    aligned: bool = False
    method: Literal["dkim"] | None = None
    reason: UnverifiedReason | None = None
    #: How a verified signer aligned: "s" the From domain itself, "r" the same organizational
    #: domain (then the From domain's DMARC record was read and allows relaxed alignment).
    alignment: Literal["r", "s"] | None = None
    #: The DMARC policy (p, or sp for a record inherited from the organizational domain) when
    #: the record was read; a strictly aligned signer needs no DMARC lookup.
    dmarc_policy: str | None = None
    #: A short human explanation of `reason`, for logs and metadata.
    detail: str | None = None
    signatures: tuple[DkimResult, ...] = field(default=(), repr=False)

    @property
    def retryable(self) -> bool:
        return self.reason is UnverifiedReason.DNS_TEMPORARY_FAILURE

    def as_metadata(self) -> dict[str, object]:
        return {
            "verified": self.verified, "method": self.method,
            "reason": self.reason.value if self.reason else None, "from_domain": self.from_domain,
            "dkim_domain": self.dkim_domain, "selector": self.selector, "aligned": self.aligned,
            "alignment": self.alignment, "dmarc_policy": self.dmarc_policy, "detail": self.detail,
            "signatures": [s.as_metadata() for s in self.signatures],
        }


def _unquoted_at_signs(value: str) -> int:
    """The '@' outside quoted strings and comments: one per address. It guards the standard
    library's address parser, which has split or merged crafted addresses (CVE-2023-27043)."""
    count, depth, quoted, escaped = 0, 0, False, False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == '"' and depth == 0:
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif char == "@" and depth == 0:
            count += 1
    return count


def from_domain_of(from_fields: list[bytes]) -> tuple[str | None, UnverifiedReason | None]:
    """(the From domain, None) when the message has exactly one From field naming exactly one
    address with a valid domain; otherwise (None, the reason)."""
    if not from_fields:
        return None, UnverifiedReason.NO_FROM
    if len(from_fields) > 1:
        return None, UnverifiedReason.MULTIPLE_FROM
    value = re.sub(r"\r?\n", "", from_fields[0].decode("utf-8", "replace")).strip()
    if len(value) > MAX_FROM_FIELD:
        return None, UnverifiedReason.INVALID_FROM
    signs = _unquoted_at_signs(value)
    if signs == 0:
        return None, UnverifiedReason.NO_FROM
    if signs > 1:
        return None, UnverifiedReason.MULTIPLE_FROM
    addresses = [address for _, address in email.utils.getaddresses([value]) if address]
    if len(addresses) != 1 or addresses[0].count("@") != 1:
        return None, UnverifiedReason.MULTIPLE_FROM if len(addresses) > 1 else UnverifiedReason.INVALID_FROM
    local, _, domain = addresses[0].partition("@")
    domain = normalize_name(domain)
    if not local or domain is None or "." not in domain:
        return None, UnverifiedReason.INVALID_FROM
    return domain, None


class SenderVerifier:
    """Verifies a raw message's From address by DKIM and DMARC alignment.

    `verify(raw)` never raises for bad mail or for DNS trouble: the result says
    `dns_temporary_failure`. Build one per process and reuse it: the resolver's cache is what
    keeps DNS off the path of the next mail from the same sender.
    """

    def __init__(
        self, resolver: TxtResolver, *, limits: DkimLimits = DEFAULT_LIMITS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.dkim = DkimVerifier(resolver, limits=limits, clock=clock)
        self.dmarc = DmarcPolicyLookup(resolver)

    def verify(self, raw: bytes) -> SenderAuthentication:
        try:
            message = self.dkim.parse(raw)
        except UnverifiableMessageError as exc:
            return SenderAuthentication(False, None, reason=UnverifiedReason(exc.reason))
        from_domain, problem = from_domain_of(message.header_values("From"))
        if problem is not None:
            return SenderAuthentication(False, None, reason=problem)
        assert from_domain is not None
        results = self.dkim.verify_message(message).results
        if not results:
            return SenderAuthentication(False, from_domain, reason=UnverifiedReason.NO_SIGNATURE)

        def unverified(reason: UnverifiedReason, signer: DkimResult | None = None, **extra) -> SenderAuthentication:
            return SenderAuthentication(
                False, from_domain, dkim_domain=signer and signer.domain, selector=signer and signer.selector,
                reason=reason, signatures=results, **extra,
            )

        passing = [r for r in results if r.passed]
        strict = next((r for r in passing if is_aligned(from_domain, r.domain, "s")), None)
        if strict is not None:  # aligned in either mode: no DMARC record can change that
            return SenderAuthentication(
                True, from_domain, dkim_domain=strict.domain, selector=strict.selector, aligned=True,
                method="dkim", alignment="s", signatures=results,
            )
        relaxed = next((r for r in passing if is_aligned(from_domain, r.domain, "r")), None)
        if relaxed is None:
            pending = any(r.status is DkimStatus.TEMPERROR and is_aligned(from_domain, r.domain, "r") for r in results)
            if pending:
                return unverified(UnverifiedReason.DNS_TEMPORARY_FAILURE)
            if passing:
                return unverified(UnverifiedReason.NOT_ALIGNED, passing[0])
            return unverified(UnverifiedReason.SIGNATURE_FAILED)
        try:
            policy = self.dmarc.find(from_domain)
        except DnsTemporaryFailureError:
            return unverified(UnverifiedReason.DNS_TEMPORARY_FAILURE, relaxed)
        if policy.adkim == "s":
            return unverified(
                UnverifiedReason.NOT_ALIGNED, relaxed, dmarc_policy=policy.p,
                detail=f"DMARC record of {policy.record_domain} asks for strict alignment (adkim=s)",
            )
        return SenderAuthentication(
            True, from_domain, dkim_domain=relaxed.domain, selector=relaxed.selector, aligned=True,
            method="dkim", alignment="r", dmarc_policy=policy.p, signatures=results,
        )
