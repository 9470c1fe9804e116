"""The outbound email every provider sends, built once with the standard library's `email`
package (never by hand): From with the configured display name, To, the subject (`Re: ` of the
answered mail), Message-ID (the hub's), In-Reply-To and References (RFC 5322 §3.6.4), a text part
always and an HTML alternative when given, and the attachments, fetched from their URLs through
the hub's safe downloader.

Imported by senders only (the send worker), never on the ingest path.
"""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import unquote, urljoin, urlsplit

from chalicelib.adapters.channels.email.outbound import (
    OutboundEmailSettings,
    angle,
    check_email,
    email_reply_target,
    recipient_email,
    references_for,
    subject_for,
)
from chalicelib.adapters.channels.sending import ChannelSender, Problem
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.models import Channel, Contact, ReplyTarget
from chalicelib.domain.outbound import OutboundMessage
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError

if TYPE_CHECKING:
    from chalicelib.adapters.channels.sending import SenderRuntime
    from chalicelib.adapters.downloads import Downloader

SettingsT = TypeVar("SettingsT", bound=OutboundEmailSettings)

__all__ = ["ComposedEmail", "EmailSender", "FetchedFile", "attachment_budget", "compose", "downloader_of", "fetch_attachments", "message_id_of"]

#: Redirects followed per attachment (each target goes through the downloader's checks again).
MAX_REDIRECTS = 3
#: One attachment's whole download, connect to last byte.
ATTACHMENT_SECONDS = 20.0
#: Answers that will not change on a retry: the file is gone or forbidden.
_PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 410, 451})


@dataclass(frozen=True)
class FetchedFile:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ComposedEmail:
    message: EmailMessage
    #: The Message-ID header (`<id@domain>`): the hub's, or one made here when the core gave none.
    message_id: str
    sender: str
    recipient: str

    def as_bytes(self) -> bytes:
        """The message as it goes on the wire: CRLF line ends, lines within 78/998 characters."""
        return self.message.as_bytes(policy=SMTP)


def message_id_of(message: OutboundMessage, sender: str) -> str:
    """The hub's Message-ID for `message`; the core always sets one, so the fallback (a fresh id
    on the sender's domain) only covers a message queued before it did."""
    return angle(message.message_id) or make_msgid(domain=sender.rsplit("@", 1)[1])


def compose(
    message: OutboundMessage,
    *,
    sender: str,
    sender_name: str | None,
    default_subject: str,
    files: list[FetchedFile],
    at: datetime,
    extra_references: tuple[str, ...] = (),
) -> ComposedEmail:
    """The MIME message for `message`, from `sender` (our mailbox) to `message.to`.

    `extra_references` go after the thread's own (SES replaces our Message-ID: its sender lists
    the hub's id there too, so the customer's reply still names it). Raises
    `PermanentDeliveryError` when a header cannot be built from the values given.
    """
    email = EmailMessage()
    message_id = message_id_of(message, sender)
    try:
        email["From"] = Address(display_name=sender_name or "", addr_spec=sender)
        email["To"] = Address(addr_spec=message.to)
        email["Subject"] = subject_for(message.subject, message.reply, default_subject)
    except (ValueError, IndexError) as exc:
        # headerregistry refuses CR/LF and malformed addresses; check() names them earlier.
        raise PermanentDeliveryError(f"the email's headers cannot be built: {exc}", provider_code="invalid_header") from None
    email["Date"] = format_datetime(at)
    email["Message-ID"] = message_id
    parent = angle(message.reply.in_reply_to)
    if parent:
        email["In-Reply-To"] = parent
    references = [*references_for(message.reply), *(r for r in extra_references if r != parent)]
    if references:
        email["References"] = " ".join(dict.fromkeys(references))
    if message.origin.startswith("routing:"):
        # RFC 3834 §5: an automatic reply says so, and well-behaved auto-responders do not answer it.
        email["Auto-Submitted"] = "auto-replied"
    email.set_content(message.text or _text_of(message.html or ""), subtype="plain", charset="utf-8")
    if message.html:
        email.add_alternative(message.html, subtype="html", charset="utf-8")
    for file in files:
        maintype, _, subtype = file.content_type.partition("/")
        email.add_attachment(file.data, maintype=maintype, subtype=subtype, filename=file.filename)
    return ComposedEmail(email, message_id, sender, message.to)


def _text_of(html: str) -> str:
    from chalicelib.adapters.channels.email.html import html_to_text

    return html_to_text(html)


# --- attachments --------------------------------------------------------------------------------


def downloader_of(runtime: SenderRuntime) -> Downloader:
    """The downloader the hub lends senders (`runtime.extra["downloader"]`: tests route it to
    local servers), else a default one: public addresses only."""
    shared = runtime.extra.get("downloader")
    if shared is not None:
        return shared
    from chalicelib.adapters.downloads import Downloader

    return Downloader()


def attachment_budget(message: OutboundMessage, max_message_bytes: int) -> int:
    """The file bytes that fit a provider's message size: MIME's base64 makes 3 bytes 4 (plus line
    ends), and the text and HTML parts count too."""
    body = len((message.text or "").encode()) + len((message.html or "").encode())
    return max(0, int(max_message_bytes * 0.73) - 2 * body - 16 * 1024)


def fetch_attachments(message: OutboundMessage, downloader: Downloader, *, max_total_bytes: int) -> list[FetchedFile]:
    """Every attachment's bytes, in order, within `max_total_bytes` together.

    Raises `PermanentDeliveryError` (a URL the downloader refuses, a file that is gone, the
    files too large for the provider) naming `attachments[i]`, or `RetryableDeliveryError` (the
    host did not answer, or answered 5xx/429).
    """
    from chalicelib.adapters.downloads import DownloadFailedError, DownloadRefusedError, Refusal

    files: list[FetchedFile] = []
    budget = max_total_bytes
    for index, attachment in enumerate(message.attachments):
        field = f"attachments[{index}]"
        url = attachment.url
        if budget <= 0:
            raise PermanentDeliveryError(f"{field}: the files exceed this provider's message size",
                                         provider_code="attachment_too_large")
        try:
            answer, url = _get(downloader, url, budget)
        except DownloadRefusedError as exc:
            code = "attachment_too_large" if exc.reason == Refusal.TOO_LARGE else "attachment_refused"
            raise PermanentDeliveryError(f"{field}.url: {exc.message}", provider_code=code) from None
        except DownloadFailedError as exc:
            raise RetryableDeliveryError(f"{field}.url: {exc.message}") from None
        if answer.status in _PERMANENT_STATUSES or (answer.is_redirect and not answer.ok):
            raise PermanentDeliveryError(f"{field}.url: {answer.host} answered {answer.status}",
                                         provider_code="attachment_unavailable")
        if not answer.ok:
            raise RetryableDeliveryError(f"{field}.url: {answer.host} answered {answer.status}")
        budget -= len(answer.body)
        filename = attachment.filename or _filename_of(url)
        files.append(FetchedFile(
            filename=filename,
            content_type=_content_type(attachment.content_type, answer.headers.get("content-type"), filename),
            data=answer.body,
        ))
    return files


def _get(downloader: Downloader, url: str, max_bytes: int) -> tuple[Any, str]:
    """The answer for `url` after redirects, and the URL that gave it (its path names the file)."""
    deadline = time.monotonic() + ATTACHMENT_SECONDS
    answer = downloader.get(url, max_bytes=max_bytes, deadline=deadline)
    for _ in range(MAX_REDIRECTS):
        location = answer.headers.get("location")
        if not (answer.is_redirect and location):
            break
        url = urljoin(url, location)
        answer = downloader.get(url, max_bytes=max_bytes, deadline=deadline)
    return answer, url


def _filename_of(url: str) -> str:
    from chalicelib.adapters.channels.email.mime import safe_filename

    return safe_filename(unquote(urlsplit(url).path)) or "attachment"


def _content_type(given: str | None, served: str | None, filename: str) -> str:
    for candidate in (given, (served or "").split(";")[0].strip(), mimetypes.guess_type(filename)[0]):
        if candidate and "/" in candidate and candidate.count("/") == 1 and " " not in candidate:
            return candidate.lower()
    return "application/octet-stream"


# --- the shared sender ----------------------------------------------------------------------------


class EmailSender(ChannelSender[SettingsT]):
    """Base of the email providers' senders: everything but the provider call is the same for
    SES, Mailgun and SendGrid (addressing, threading, checks, the MIME and its files), so each
    provider implements `send` only. `Settings` extend `OutboundEmailSettings`."""

    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.EMAIL})
    #: The provider's largest message, attachments included.
    max_message_bytes: ClassVar[int]

    @classmethod
    def reply_target(cls, contact: Contact) -> ReplyTarget | None:
        return email_reply_target(contact)

    def recipient_for(self, channel: Channel, identifiers: Sequence[Identifier]) -> str | None:
        return recipient_email(channel, identifiers)

    def default_account(self, channel: Channel) -> str | None:
        return self.settings.default_mailbox() if channel == Channel.EMAIL else None

    def sends_from(self, channel: Channel, account: str) -> bool:
        return channel == Channel.EMAIL and self.settings.may_send_from(account)

    @classmethod
    def max_text_bytes(cls) -> int:
        """The text and HTML parts' largest size together (UTF-8): what still fits the provider's
        message once MIME encodes it (base64 makes 3 bytes 4, plus line ends) with its headers."""
        return int(cls.max_message_bytes * 0.73) - 16 * 1024

    def check(self, message: OutboundMessage) -> list[Problem]:
        problems = check_email(message, max_attachments=self.settings.max_attachments,
                               default_subject=self.settings.default_subject)
        size = len((message.text or "").encode()) + len((message.html or "").encode())
        if size > self.max_text_bytes():
            problems.append(Problem("text", f"is {size} bytes with the html; a {self.key} message takes at most "
                                            f"{self.max_text_bytes()} bytes of text"))
        if not self.settings.may_send_from(message.account):
            problems.append(Problem("account", f"{self.key} is not configured to send from this mailbox (sending_addresses)"))
        return problems

    def files(self, message: OutboundMessage) -> list[FetchedFile]:
        """The message's attachments, fetched within this provider's message size."""
        return fetch_attachments(message, downloader_of(self.runtime),
                                 max_total_bytes=attachment_budget(message, self.max_message_bytes))

    def compose(self, message: OutboundMessage, files: list[FetchedFile], *,
                extra_references: tuple[str, ...] = ()) -> ComposedEmail:
        return compose(message, sender=message.account, sender_name=self.settings.from_name,
                       default_subject=self.settings.default_subject, files=files, at=self.runtime.clock(),
                       extra_references=extra_references)
