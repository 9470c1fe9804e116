"""What SES concluded about one email (spam, virus, SPF, DKIM, DMARC) and the two ways an email
ends without becoming a contact; shared by both SES deliveries (SNS and S3)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PASS, FAIL = "PASS", "FAIL"
#: SES's verdict vocabulary: https://docs.aws.amazon.com/ses/latest/dg/receiving-email-notifications-contents.html#receiving-email-notifications-contents-receipt-object
VERDICTS = frozenset({PASS, FAIL, "GRAY", "PROCESSING_FAILED"})


@dataclass(frozen=True)
class Verdicts:
    """SES's spam, virus, SPF, DKIM and DMARC results, and the envelope sender they are about."""

    spam: str | None = None
    virus: str | None = None
    spf: str | None = None
    dkim: str | None = None
    dmarc: str | None = None
    #: Envelope MAIL FROM (`mail.source`, or the Return-Path SES wrote).
    source: str | None = None

    @classmethod
    def from_receipt(cls, receipt: Mapping[str, Any], source: Any = None) -> Verdicts:
        def status(name: str) -> str | None:
            verdict = receipt.get(name)
            value = verdict.get("status") if isinstance(verdict, dict) else None
            return normalize_verdict(value)

        return cls(
            spam=status("spamVerdict"),
            virus=status("virusVerdict"),
            spf=status("spfVerdict"),
            dkim=status("dkimVerdict"),
            dmarc=status("dmarcVerdict"),
            source=source if isinstance(source, str) and source else None,
        )

    def rejection(self) -> str | None:
        """Why SES's scan says this email must not become a contact; None when it may."""
        if self.virus == FAIL:
            return "SES virus verdict FAIL"
        if self.spam == FAIL:
            return "SES spam verdict FAIL"
        return None

    def proves_sender(self, from_address: str) -> bool:
        """True when the From address may link the contact to an existing customer.

        SPF and DKIM must pass, as SES reports them. Both can pass for a domain other than the one
        in From (an attacker's own domain, with `From: ceo@victim.example`), so the From domain must
        also be aligned: DMARC passed (which checks exactly that), or the envelope sender's domain
        is the From domain or a parent or child of it.
        """
        if self.spf != PASS or self.dkim != PASS:
            return False
        if self.dmarc == PASS:
            return True
        envelope, sender = domain_of(self.source), domain_of(from_address)
        if not envelope or not sender:
            return False
        return envelope == sender or envelope.endswith("." + sender) or sender.endswith("." + envelope)

    def as_dict(self) -> dict[str, str]:
        names = ("spam", "virus", "spf", "dkim", "dmarc")
        return {name: value for name in names if (value := getattr(self, name)) is not None}


def normalize_verdict(value: Any) -> str | None:
    """A verdict status in SES's vocabulary; UNKNOWN for any other value, None when absent."""
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip().upper()
    return value if value in VERDICTS else "UNKNOWN"


def domain_of(address: str | None) -> str | None:
    if not address or "@" not in address:
        return None
    return address.strip().strip("<>").rsplit("@", 1)[1].strip().rstrip(".").lower() or None


class EmailIgnored(Exception):
    """An email that is acknowledged but deliberately never becomes a contact (spam, a bounce,
    an automatic reply, our own mail); the message is the reason."""


class EmailUnreadable(Exception):
    """A notification or email the adapter cannot read: kept raw (`ParsedWebhook.unhandled`)."""
