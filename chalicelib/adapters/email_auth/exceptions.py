"""Errors of the email authentication package, typed by what the caller should do next.

Bad mail is never an error here: the verifiers return a result that says why a sender is not
proved. These errors are for the two things a caller acts on differently: DNS that could not be
asked now (retry later), and a message the verifier refuses to look at (treat as unverified).
"""

from __future__ import annotations

from chalicelib.errors import HubError, TransientError


class EmailAuthError(HubError):
    """Base of this package's errors."""

    code = "email_auth_error"


class DnsTemporaryFailureError(EmailAuthError, TransientError):
    """A DNS lookup timed out or every server answered SERVFAIL/REFUSED: the record may well
    exist, so the answer is "unknown", not "no record" (RFC 6376 §6.1.2 TEMPFAIL, RFC 7489 §6.6.3).
    The message names the DNS name only, which is public."""

    code = "dns_temporary_failure"


class UnverifiableMessageError(EmailAuthError):
    """The message is refused before any signature is looked at; `reason` is a stable code
    (`too_large` or `malformed`)."""

    code = "unverifiable_message"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, detail={"reason": reason})
        self.reason = reason
