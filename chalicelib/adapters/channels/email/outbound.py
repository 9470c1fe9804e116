"""What every email provider's sender shares before any MIME is built: the outbound settings each
provider's `Settings` gains, the reply target of an inbound email, the subject and threading
rules (RFC 5322 §3.6.4), and the checks the API runs before queueing.

Pure and light (pydantic and `re` only): the provider adapters import the settings mixin on the
ingest path, so nothing here may import the `email` package or an HTTP client. The MIME itself
is built in `compose.py`, which only senders import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from ipaddress import ip_address
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

from chalicelib.domain.models import Channel, Contact, ReplyContext, ReplyTarget

__all__ = [
    "DEFAULT_SUBJECT", "MAX_REFERENCES", "OutboundEmailSettings", "angle", "check_email", "email_reply_target",
    "is_address", "matches_mailbox", "recipient_email", "references_for", "reply_subject", "subject_for", "thread_key",
]

DEFAULT_SUBJECT = "Your message to us"
#: References kept on a reply: the thread's root and the newest ones (RFC 5322 §3.6.4 lets a
#: long list be shortened; mail clients thread by the root and the parent).
MAX_REFERENCES = 20
#: RFC 5322 §2.1.1: a header line must not exceed 998 characters.
MAX_SUBJECT = 900
#: Keeps a stored value from becoming a header: one msg-id, no whitespace, no second bracket.
_MSG_ID = re.compile(r"<?([^<>\s@]{1,250}@[^<>\s@]{1,250})>?")
#: Compiled on first use: its Unicode ranges cost ~15 ms to compile, and only senders check
#: addresses (the ingest path imports this module for the provider settings).
_ADDRESS_PATTERN = r"[^@\s<>,;\"()\[\]\\]{1,64}@[A-Za-z0-9\u00a0-\uffff](?:[A-Za-z0-9\u00a0-\uffff-]{0,62}\.)+[A-Za-z\u00a0-\uffff]{2,63}"
#: Reply prefixes of the common mail clients (Re, German AW, Nordic SV/VS, Dutch Antw, Outlook's
#: numbered `RE[2]`): one `Re: ` replaces them all, so a subject never grows `Re: AW: Re:`.
_REPLY_PREFIX = re.compile(r"^(?:\s*(?:re|aw|sv|vs|antw|r)(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)


#: How inbound mail keys a case's threads (`email/mime.py` THREAD_KEY_PREFIX, kept out of this light module).
THREAD_KEY_PREFIX = "email:"


def thread_key(message_id: str) -> str:
    """The case thread key of a Message-ID, as the inbound side keys the mail that names it:
    `email:` and the id without its angle brackets."""
    return THREAD_KEY_PREFIX + message_id.strip().strip("<>")


class OutboundEmailSettings(BaseModel):
    """The outbound part every email provider's `Settings` gains (all optional: a section that
    only receives stays valid, and sends nothing)."""

    #: The mailboxes (`support@acme.example`) or whole domains (`@acme.example`) this hub may send
    #: from on this provider. A reply goes out from the mailbox the customer wrote to, when it is
    #: listed; the first full address is the default for new conversations. Empty: no sending.
    sending_addresses: list[str] = Field(default_factory=list)
    #: The display name of the From header (`Acme Support <support@acme.example>`).
    from_name: str | None = Field(default=None, max_length=200)
    #: The subject of a message that neither gives one nor answers a mail with one.
    default_subject: str = Field(default=DEFAULT_SUBJECT, min_length=1, max_length=MAX_SUBJECT)
    #: Files one message may carry (each fetched from its URL at send time).
    max_attachments: int = Field(default=10, ge=0, le=100)

    @field_validator("sending_addresses")
    @classmethod
    def _sending_addresses(cls, values: list[str]) -> list[str]:
        cleaned = []
        for value in values:
            value = value.strip().lower()
            if not (is_address(value) or (value.startswith("@") and is_address("x" + value))):
                raise ValueError(f"{value!r} is neither an address (support@example.com) nor a domain (@example.com)")
            cleaned.append(value)
        return cleaned

    @field_validator("from_name", "default_subject")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and ("\r" in value or "\n" in value):
            raise ValueError("must be one line (no line breaks)")
        return value

    def default_mailbox(self) -> str | None:
        return next((a for a in self.sending_addresses if not a.startswith("@")), None)

    def may_send_from(self, account: str) -> bool:
        return matches_mailbox(self.sending_addresses, account)


def is_address(value: str) -> bool:
    return bool(_address_pattern().fullmatch(value or ""))


def matches_mailbox(allowed: Iterable[str], account: str) -> bool:
    """Whether `account` is one of `allowed`, or in one of its `@domains`."""
    account = (account or "").strip().lower()
    if not is_address(account):
        return False
    domain = account.rsplit("@", 1)[1]
    return any(account == a or (a.startswith("@") and domain == a[1:]) for a in allowed)


def angle(message_id: str | None) -> str | None:
    """`message_id` as a header's msg-id (`<left@right>`), or None when it is not one: a stored
    value never becomes a second header line or a list of ids."""
    match = _MSG_ID.fullmatch((message_id or "").strip())
    return f"<{match.group(1)}>" if match else None


def reply_subject(subject: str | None) -> str | None:
    """`Re: ` and the answered subject, its own reply prefixes dropped; None for no subject."""
    text = " ".join((subject or "").split())
    text = _REPLY_PREFIX.sub("", text).strip()
    return f"Re: {text}"[:MAX_SUBJECT] if text else None


def subject_for(subject: str | None, reply: ReplyContext, default: str) -> str:
    """The given subject; else `Re: ` + the answered mail's subject; else the configured default.
    Whitespace runs (a folded header, a pasted line break) become one space."""
    given = " ".join((subject or "").split())
    return given[:MAX_SUBJECT] if given else (reply_subject(reply.subject) or default)


def references_for(reply: ReplyContext) -> list[str]:
    """The References of a reply (RFC 5322 §3.6.4): the parent's References, then the parent's
    Message-ID; shortened to the root and the newest ids, each a valid msg-id."""
    ids = [i for i in (angle(r) for r in reply.references) if i]
    parent = angle(reply.in_reply_to)
    if parent:
        ids.append(parent)
    ids = list(dict.fromkeys(ids))
    if len(ids) > MAX_REFERENCES:
        ids = [ids[0], *ids[-(MAX_REFERENCES - 1):]]
    return ids


def email_reply_target(contact: Contact) -> ReplyTarget | None:
    """How to answer an inbound email: to its sender, from the mailbox it was sent to, in its
    thread. Every email adapter keeps the ids in `metadata` (`message_id`, or SES's
    `email_message_id`; `references`) and the From address as the email identifier. None for
    mail without a sender address (nothing to answer)."""
    if contact.channel != Channel.EMAIL:
        return None
    identifiers = [*contact.sender.identifiers, *contact.sender.unverified]
    to = next((i.value for i in identifiers if i.kind.value == "email" and is_address(i.value)), None)
    if to is None:
        return None
    meta = contact.metadata
    message_id = angle(_text(meta.get("message_id")) or _text(meta.get("email_message_id")))
    references = meta.get("references") if isinstance(meta.get("references"), list) else []
    return ReplyTarget(
        contact_id=contact.id,
        case_id=contact.case_id,
        channel=Channel.EMAIL,
        provider=contact.provider,
        account=contact.account,
        to=to,
        reply=ReplyContext(
            in_reply_to=message_id,
            references=references_for(ReplyContext(in_reply_to=message_id, references=[str(r) for r in references])),
            subject=contact.subject,
        ),
        at=contact.sent_at or contact.received_at,
    )


def recipient_email(channel: Channel, identifiers: Iterable) -> str | None:
    """A customer's email address from their identifiers (for a first email to them)."""
    if channel != Channel.EMAIL:
        return None
    return next((i.value for i in identifiers if i.kind.value == "email" and is_address(i.value)), None)


def check_email(message, *, max_attachments: int, default_subject: str) -> list:
    """What an email provider would refuse, or what would go out broken, named by request field:
    the recipient, a subject (given, answered or configured), a body, the attachments."""
    from chalicelib.adapters.channels.sending import Problem

    problems: list[Problem] = []
    if not is_address(message.to):
        problems.append(Problem("to", "is not an email address"))
    if message.template is not None:
        problems.append(Problem("template", "email sends text and html; templates are not supported on email"))
    if not (message.text or "").strip() and not (message.html or "").strip():
        problems.append(Problem("text", "an email needs text or html"))
    if message.subject is not None and len(message.subject) > MAX_SUBJECT:
        problems.append(Problem("subject", f"is {len(message.subject)} characters; at most {MAX_SUBJECT}"))
    if not subject_for(message.subject, message.reply, default_subject).strip():
        problems.append(Problem("subject", "is empty, and there is no answered subject or default_subject"))
    if len(message.attachments) > max_attachments:
        problems.append(Problem("attachments", f"{len(message.attachments)} files; this email account takes at most {max_attachments}"))
    for index, attachment in enumerate(message.attachments):
        if reason := url_problem(attachment.url):
            problems.append(Problem(f"attachments[{index}].url", reason))
        if attachment.content_type is not None and not re.fullmatch(r"[\w.+-]+/[\w.+-]+", attachment.content_type):
            problems.append(Problem(f"attachments[{index}].content_type", "is not a media type (type/subtype)"))
    return problems


def url_problem(url: str) -> str | None:
    """Why the hub will not fetch `url`, as far as can be told without DNS (the downloader
    checks the resolved addresses at send time); None when it may."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not host:
        return "must be an http(s) URL"
    if parts.username or parts.password:
        return "must not carry credentials"
    try:
        address = ip_address(host)
    except ValueError:
        return "is a local name, not a public host" if host.lower() in ("localhost",) or "." not in host else None
    from chalicelib.adapters.downloads import is_public_address

    return None if is_public_address(str(address)) else "points at a private or reserved address"


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@lru_cache(maxsize=1)
def _address_pattern() -> re.Pattern[str]:
    return re.compile(_ADDRESS_PATTERN)
