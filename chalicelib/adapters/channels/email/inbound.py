"""From a parsed email to the hub's `InboundMessage`, the same way for every email channel: which
mail is ignored (loops, bounces, automatic replies), whether the From address is proved, and
what a contact keeps (bounded text, thread keys, attachments).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from chalicelib.adapters.channels.email.mime import MAX_REFERENCES, THREAD_KEY_PREFIX, ParsedAttachment, ParsedEmail
from chalicelib.domain.models import (
    Attachment,
    AttachmentContent,
    Channel,
    ContentType,
    Handle,
    InboundMessage,
    Sender,
)

if TYPE_CHECKING:
    from chalicelib.adapters.email_auth import SenderVerifier

__all__ = [
    "MAX_EMBEDDED_BYTES", "SenderCheck", "aligned", "attachment_content", "check_sender", "domain_of",
    "ignore_reason", "inbound_email", "proved_by_the_hub",
]

#: The new text goes to vendors; the full text is kept for the record. Both bounded: a 5 MB
#: mailing of quoted history must not become a 5 MB contact.
MAX_TEXT = 20_000
MAX_FULL_TEXT = 100_000
MAX_ATTACHMENTS = 50
#: Attachment bytes one email carries to the process worker (Gmail and Outlook send at most 20-25
#: MB): parse with `max_attachment_bytes=MAX_EMBEDDED_BYTES`. An SES mail in S3 may be 40 MB;
#: files past this budget keep their name, type and size and are listed in
#: `metadata.attachments_not_stored`, so nobody takes them for lost.
MAX_EMBEDDED_BYTES = 25 * 1024 * 1024


def domain_of(address: str | None) -> str | None:
    if not address or "@" not in address:
        return None
    return address.rsplit("@", 1)[1].strip().strip(">").lower().rstrip(".") or None


def aligned(from_domain: str | None, other: str | None) -> bool:
    """Relaxed alignment (as DMARC would see it, without the public-suffix list): the same
    domain, or one a subdomain of the other, and never a bare top-level domain."""
    if not from_domain or not other:
        return False
    other = other.lower().rstrip(".")
    if "." not in other or "." not in from_domain:
        return False
    return from_domain == other or from_domain.endswith("." + other) or other.endswith("." + from_domain)


@dataclass(frozen=True)
class SenderCheck:
    """Whether the From address is proved by SPF or DKIM for its own domain, and how: by the
    provider's verdicts, or by the hub's own DKIM check of the raw message (`hub`)."""

    verified: bool
    spf: str | None
    spf_domain: str | None
    dkim: str | None
    dkim_domains: tuple[str, ...] = ()
    #: The hub's own verification (`SenderAuthentication.as_metadata()`), when it ran.
    hub: dict[str, object] | None = None

    @property
    def method(self) -> str | None:
        if not self.verified:
            return None
        return "hub_dkim" if self.hub is not None and self.hub.get("verified") else "provider"

    def as_metadata(self) -> dict[str, object]:
        data: dict[str, object] = {
            "verified": self.verified, "method": self.method, "spf": self.spf, "spf_domain": self.spf_domain,
            "dkim": self.dkim, "dkim_domains": list(self.dkim_domains),
        }
        if self.hub is not None:
            data["hub"] = self.hub
        return data


def check_sender(
    from_address: str | None, *, spf: str | None, spf_domain: str | None, dkim: str | None,
    dkim_pass_domains: Iterable[str] = (),
) -> SenderCheck:
    """The From header is free text anyone can write; the address only counts as proved when
    SPF passed for an envelope sender aligned with it, or DKIM passed for a signing domain
    aligned with it (the receiving provider ran both checks)."""
    from_domain = domain_of(from_address)
    passing = tuple(d.lower() for d in dkim_pass_domains)
    spf_ok = (spf or "").strip().lower() == "pass" and aligned(from_domain, spf_domain)
    dkim_ok = (dkim or "").strip().lower() == "pass" and any(aligned(from_domain, d) for d in passing)
    return SenderCheck(
        verified=spf_ok or dkim_ok, spf=(spf or None) and spf.strip().lower()[:20],
        spf_domain=spf_domain, dkim=(dkim or None) and dkim.strip().lower()[:20], dkim_domains=passing[:10],
    )


def proved_by_the_hub(check: SenderCheck, raw: bytes | None, verifier: SenderVerifier | None,
                      from_address: str | None, *, retry_dns_failures: bool) -> SenderCheck:
    """`check` when the provider's verdicts prove the sender; otherwise the hub's own DKIM check
    of the raw message (an aligned, passing signature of the From domain), when the hub
    verifies mail and the provider handed over the raw bytes. The verifier reads the From
    header itself; it must be the address the contact uses, or nothing is proved.

    When DNS failed (the key or DMARC record could not be read), nothing can be told:
    `retry_dns_failures` raises `TransientError`, so the provider or the queue retries later,
    for every way in that retries for hours. Otherwise the sender stays unproved: a way in
    that gives up within a minute (SNS) must not lose the mail instead."""
    if check.verified or raw is None or verifier is None or not from_address:
        return check
    result = verifier.verify(raw)
    if result.retryable and retry_dns_failures:
        from chalicelib.errors import TransientError

        raise TransientError("the DNS records that would prove the email's sender could not be read; retry later")
    proved = result.verified and _ascii_domain(result.from_domain) == _ascii_domain(domain_of(from_address))
    return replace(check, verified=proved, hub=result.as_metadata())


def _ascii_domain(domain: str | None) -> str | None:
    """A domain as DNS spells it (`müller.de` → `xn--mller-kva.de`), so both sides compare alike."""
    if not domain:
        return None
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return domain.lower()


def ignore_reason(parsed: ParsedEmail) -> str | None:
    """Why an email must not open or join a case, or None. Mail loops start here."""
    if parsed.from_own_address:
        return "email from one of our own addresses (own_addresses): an echo or a loop"
    if parsed.is_bounce:
        return f"bounce: {parsed.bounce_reason}"
    if parsed.is_auto_reply:
        return f"automatic reply: {parsed.auto_reply_reason}"
    if not parsed.from_address:
        return "email without a usable From address"
    return None


def attachment_content(files: list[ParsedAttachment]) -> tuple[list[AttachmentContent], list[int]]:
    """The bytes of `files` to carry on the queue, in order, within `MAX_EMBEDDED_BYTES`, and the
    indexes of the files that did not fit (their bytes were over the parser's limit or the
    budget). Empty files carry nothing: there is nothing to store."""
    carried: list[AttachmentContent] = []
    left_out: list[int] = []
    budget = MAX_EMBEDDED_BYTES
    for index, file in enumerate(files):
        if file.size == 0:
            continue
        if file.content is None or len(file.content) > budget:
            left_out.append(index)
            continue
        carried.append(AttachmentContent(index=index, data=file.content))
        budget -= len(file.content)
    return carried, left_out


def inbound_email(
    parsed: ParsedEmail,
    *,
    provider: str,
    account: str | None,
    received_at: datetime,
    sender: SenderCheck,
    fallback_id: str,
    raw: dict | None = None,
    metadata: dict | None = None,
) -> InboundMessage | str:
    """The `InboundMessage` of an email every email adapter produces the same way, or the
    reason it is ignored (a str). `fallback_id` (a digest of the provider's content) is the
    dedupe id of a message without a Message-ID."""
    reason = ignore_reason(parsed)
    if reason is not None:
        return reason
    assert parsed.from_address is not None
    mailbox = (account or (parsed.to[0] if parsed.to else "") or "unknown").strip().lower()[:320]
    text = parsed.text or parsed.full_text.strip()
    files = parsed.attachments[:MAX_ATTACHMENTS]
    root = (parsed.references[0] if parsed.references else None) or parsed.in_reply_to or parsed.message_id
    extra: dict[str, object] = {
        "message_id": parsed.message_id,
        "in_reply_to": parsed.in_reply_to,
        "references": parsed.references[-MAX_REFERENCES:],
        "to": parsed.to[:20],
        "cc": parsed.cc[:20],
        "full_text": parsed.full_text[:MAX_FULL_TEXT],
        "quoted_text_removed": bool(parsed.text) and parsed.text != parsed.full_text.strip(),
        "sender_verification": sender.as_metadata(),
    }
    if parsed.reply_to:
        extra["reply_to"] = parsed.reply_to[:5]
    if parsed.auto_reply_hint:
        extra["auto_reply_hint"] = True
    if inline := [a.content_id or a.filename for a in files if a.inline]:
        extra["inline_attachments"] = inline
    if parsed.forwarded:
        extra["forwarded"] = [
            {"message_id": f.message_id, "from": f.from_address, "subject": f.subject} for f in parsed.forwarded[:5]
        ]
    if parsed.defects:
        extra["mime_defects"] = sorted(set(parsed.defects))[:10]
    content, left_out = attachment_content(files)
    if left_out:
        extra["attachments_not_stored"] = left_out
    extra.update(metadata or {})
    return InboundMessage(
        provider=provider,
        channel=Channel.EMAIL,
        provider_message_id=parsed.message_id or f"sha256:{fallback_id}",
        account=mailbox,
        sender=Sender(
            handles=[Handle(kind="email", value=parsed.from_address, verified=sender.verified)],
            display_name=parsed.from_name,
        ),
        sent_at=parsed.date,
        received_at=received_at,
        content_type=ContentType.MEDIA if any(not a.inline for a in files) else ContentType.TEXT,
        text=text[:MAX_TEXT] or None,
        subject=(parsed.subject or None) and parsed.subject[:998],
        attachments=[
            Attachment(content_type=a.content_type, filename=a.filename, size=a.size) for a in files
        ],
        metadata=extra,
        conversation_key=THREAD_KEY_PREFIX + root if root else None,
        thread_keys=parsed.thread_keys,
        raw={"headers": parsed.headers, **(raw or {})},
        attachment_content=content,
    )
