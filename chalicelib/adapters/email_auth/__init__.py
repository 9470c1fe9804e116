"""Sender authentication for inbound email: DKIM verified by the hub, aligned with the From
domain as DMARC defines it. Used when the receiving provider gives no trustworthy verdict.

    verifier = SenderVerifier(DnspythonTxtResolver())   # once per process: the DNS cache lives in it
    result = verifier.verify(raw_mime)                  # SenderAuthentication, never raises for bad mail

Importing this package imports none of dkimpy, dnspython or publicsuffixlist: they load on the
first verification (dkimpy brings dnspython with it), so cold starts of code paths that never
verify mail do not pay for them.
"""

from chalicelib.adapters.email_auth.dkim import DkimLimits, DkimResult, DkimStatus, DkimVerification, DkimVerifier
from chalicelib.adapters.email_auth.dmarc import DmarcPolicy, DmarcPolicyLookup, is_aligned, organizational_domain
from chalicelib.adapters.email_auth.dns import DnspythonTxtResolver, FakeTxtResolver, TxtCache, TxtResolver
from chalicelib.adapters.email_auth.exceptions import (
    DnsTemporaryFailureError,
    EmailAuthError,
    UnverifiableMessageError,
)
from chalicelib.adapters.email_auth.verifier import SenderAuthentication, SenderVerifier, UnverifiedReason

__all__ = [
    "DkimLimits", "DkimResult", "DkimStatus", "DkimVerification", "DkimVerifier", "DmarcPolicy", "DmarcPolicyLookup",
    "DnsTemporaryFailureError", "DnspythonTxtResolver", "EmailAuthError", "FakeTxtResolver", "SenderAuthentication",
    "SenderVerifier", "TxtCache", "TxtResolver", "UnverifiableMessageError", "UnverifiedReason", "is_aligned",
    "organizational_domain",
]
