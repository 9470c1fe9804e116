"""The outbound email every provider sends (`email/outbound.py`, `email/compose.py`): subject and
threading rules, the MIME parsed back with the standard library, reply targets from inbound
contacts, the API-side checks, and attachment fetching through the downloader."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timezone

import pytest

from chalicelib.adapters.channels.email.compose import FetchedFile, compose, fetch_attachments
from chalicelib.adapters.channels.email.outbound import (
    MAX_REFERENCES,
    OutboundEmailSettings,
    check_email,
    email_reply_target,
    matches_mailbox,
    reply_subject,
    subject_for,
)
from chalicelib.adapters.downloads import Download, DownloadFailedError, DownloadRefusedError, Refusal
from chalicelib.domain.identifiers import Identifier, IdentifierKind
from chalicelib.domain.models import Channel, Contact, ContentType, Party, ReplyContext, Resolution
from chalicelib.domain.outbound import OutboundAttachment, OutboundMessage
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError

AT = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
OURS = "<msg_01JD0000000000000000000001@acme.example>"
PARENT = "<CAF=a1b2c3@mail.customer.example>"
ROOT = "<order-1042.1767220000@acme.example>"


def message(**changes) -> OutboundMessage:
    values = {
        "id": "msg_01JD0000000000000000000001", "customer_id": "cus_1", "case_id": "case_1", "channel": Channel.EMAIL,
        "provider": "ses", "account": "support@acme.example", "to": "ana@customer.example", "text": "Hallo Ana,\nerledigt.",
        "reply": ReplyContext(in_reply_to=PARENT, references=[ROOT], subject="AW: Re: Order #1042"),
        "message_id": OURS, "origin": "api:agent", "queued_at": AT,
    }
    values.update(changes)
    return OutboundMessage(**values)


def parsed(msg: OutboundMessage, files: list[FetchedFile] = (), **options) -> email.message.EmailMessage:
    built = compose(msg, sender=msg.account, sender_name=options.pop("name", "Acme Support"),
                    default_subject=options.pop("default", "Your message to us"), files=list(files), at=AT, **options)
    raw = built.as_bytes()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b""), "CRLF line ends only"
    return email.message_from_bytes(raw, policy=email.policy.default)


# --- subject and threading ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answered, expected",
    [
        ("Order #1042", "Re: Order #1042"),
        ("Re: Order #1042", "Re: Order #1042"),
        ("RE: re: Order #1042", "Re: Order #1042"),
        ("AW: Re: Order #1042", "Re: Order #1042"),
        ("Re[2]: Order  #1042\r\n folded", "Re: Order #1042 folded"),
        ("Ärger mit der Rechnung", "Re: Ärger mit der Rechnung"),
        ("Re:", None),
        ("   ", None),
        (None, None),
    ],
)
def test_reply_subject_never_grows_a_second_prefix(answered, expected):
    assert reply_subject(answered) == expected


def test_subject_given_then_answered_then_default():
    reply = ReplyContext(subject="Order #1042")
    assert subject_for("Ihre Rechnung", reply, "Default") == "Ihre Rechnung"
    assert subject_for(None, reply, "Default") == "Re: Order #1042"
    assert subject_for("  ", ReplyContext(), "Default") == "Default"
    assert subject_for("two\r\nlines", reply, "Default") == "two lines"


def test_the_mime_parses_back_with_threading_headers():
    mail = parsed(message())
    assert mail["From"].addresses[0].display_name == "Acme Support"
    assert mail["From"].addresses[0].addr_spec == "support@acme.example"
    assert mail["To"].addresses[0].addr_spec == "ana@customer.example"
    assert mail["Subject"] == "Re: Order #1042"
    assert mail["Message-ID"] == OURS
    assert mail["In-Reply-To"] == PARENT
    # RFC 5322 §3.6.4: the parent's References, then the parent's Message-ID.
    assert mail["References"].split() == [ROOT, PARENT]
    assert mail["Date"].datetime == AT
    assert mail["Auto-Submitted"] is None
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content().replace("\r\n", "\n") == "Hallo Ana,\nerledigt.\n"


def test_a_new_thread_has_no_in_reply_to_and_the_default_subject():
    mail = parsed(message(reply=ReplyContext()))
    assert mail["In-Reply-To"] is None and mail["References"] is None
    assert mail["Subject"] == "Your message to us"


def test_extra_references_follow_the_thread_and_never_repeat_the_parent():
    mail = parsed(message(), extra_references=(OURS, PARENT))
    assert mail["References"].split() == [ROOT, PARENT, OURS]


def test_html_is_an_alternative_and_files_are_attached():
    files = [FetchedFile("rechnung.pdf", "application/pdf", b"%PDF-1.4 binary \x00\xff")]
    mail = parsed(message(html="<p>Hallo <b>Ana</b></p>"), files)
    assert mail.get_content_type() == "multipart/mixed"
    body = mail.get_body(("plain", "html"))
    assert mail.get_body(("plain",)).get_content().startswith("Hallo Ana")
    assert mail.get_body(("html",)).get_content().strip() == "<p>Hallo <b>Ana</b></p>"
    assert body is not None
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == "rechnung.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == b"%PDF-1.4 binary \x00\xff"


def test_html_only_still_gets_a_text_part():
    mail = parsed(message(text=None, html="<p>Die St\u00f6rung ist <b>behoben</b>.</p>"))
    assert "Die Störung ist behoben." in mail.get_body(("plain",)).get_content()
    assert mail.get_body(("html",)) is not None


def test_non_ascii_display_name_and_subject_are_encoded_words():
    built = compose(message(subject="Ihre Anfrage: Störung"), sender="support@acme.example", sender_name="Müller & Söhne",
                    default_subject="x", files=[], at=AT)
    raw = built.as_bytes()
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n", 1)[0]
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail["Subject"] == "Ihre Anfrage: Störung"
    assert mail["From"].addresses[0].display_name == "Müller & Söhne"


def test_automatic_replies_say_so():
    assert parsed(message(origin="routing:out-of-hours"))["Auto-Submitted"] == "auto-replied"


def test_stored_ids_that_are_not_msg_ids_never_become_headers():
    reply = ReplyContext(in_reply_to="<x@y>\r\nBcc: victim@example.com", references=["not an id", "<a@b>"])
    mail = parsed(message(reply=reply))
    assert mail["In-Reply-To"] is None and mail["Bcc"] is None
    assert mail["References"] == "<a@b>"


def test_long_reference_chains_keep_the_root_and_the_newest():
    refs = [f"<r{i}@acme.example>" for i in range(40)]
    mail = parsed(message(reply=ReplyContext(in_reply_to=PARENT, references=refs)))
    kept = mail["References"].split()
    assert len(kept) == MAX_REFERENCES and kept[0] == refs[0] and kept[-2:] == [refs[-1], PARENT]


def test_a_header_that_cannot_be_built_is_a_permanent_error():
    with pytest.raises(PermanentDeliveryError) as caught:
        compose(message(to="ana@customer.example\r\nBcc: x@y.example"), sender="support@acme.example",
                sender_name=None, default_subject="x", files=[], at=AT)
    assert caught.value.provider_code == "invalid_header"


# --- reply targets -----------------------------------------------------------------------------------


def contact(**changes) -> Contact:
    values = {
        "id": "con_1", "provider": "mailgun", "channel": Channel.EMAIL, "provider_message_id": "CAF=a1b2c3@mail.customer.example",
        "account": "support@mg.acme.example",
        "sender": Party(identifiers=[Identifier(kind=IdentifierKind.EMAIL, value="ana@customer.example")]),
        "received_at": AT, "content_type": ContentType.TEXT, "subject": "Re: Order #1042",
        # What email/inbound.py keeps: ids without angle brackets (mime.msg_ids).
        "metadata": {"message_id": "CAF=a1b2c3@mail.customer.example", "references": ["order-1042.1767220000@acme.example"]},
        "customer_id": "cus_1", "case_id": "case_1",
        "resolution": Resolution(customer_id="cus_1", created_customer=False, rule="email"),
    }
    values.update(changes)
    return Contact(**values)


def test_reply_target_of_an_inbound_email():
    target = email_reply_target(contact(sent_at=datetime(2026, 1, 1, 11, tzinfo=timezone.utc)))
    assert (target.channel, target.provider, target.account, target.to) == (
        Channel.EMAIL, "mailgun", "support@mg.acme.example", "ana@customer.example")
    assert target.reply.in_reply_to == PARENT
    assert target.reply.references == [ROOT, PARENT]
    assert target.reply.subject == "Re: Order #1042"
    assert target.at == datetime(2026, 1, 1, 11, tzinfo=timezone.utc)
    assert (target.contact_id, target.case_id) == ("con_1", "case_1")


def test_reply_target_reads_ses_metadata_and_unverified_senders():
    target = email_reply_target(contact(
        provider="ses", metadata={"email_message_id": "CAF=a1b2c3@mail.customer.example"},
        sender=Party(unverified=[Identifier(kind=IdentifierKind.EMAIL, value="ana@customer.example")]),
    ))
    assert target.to == "ana@customer.example" and target.reply.references == [PARENT]
    assert target.at == AT


def test_no_reply_target_without_an_address():
    assert email_reply_target(contact(sender=Party())) is None
    assert email_reply_target(contact(channel=Channel.SMS)) is None


# --- checks ------------------------------------------------------------------------------------------


def fields(msg: OutboundMessage, **options) -> list[str]:
    return [p.field for p in check_email(msg, max_attachments=options.get("max_attachments", 2), default_subject="x")]


def test_a_sendable_message_has_no_problems():
    assert fields(message(attachments=[OutboundAttachment(url="https://files.example.com/a.pdf")])) == []


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"to": "not-an-address"}, "to"),
        ({"text": None, "html": None}, "text"),
        ({"text": "  "}, "text"),
        ({"subject": "x" * 901}, "subject"),
        ({"attachments": [OutboundAttachment(url="https://f.example.com/a")] * 3}, "attachments"),
        ({"attachments": [OutboundAttachment(url="ftp://f.example.com/a")]}, "attachments[0].url"),
        ({"attachments": [OutboundAttachment(url="http://169.254.169.254/latest")]}, "attachments[0].url"),
        ({"attachments": [OutboundAttachment(url="http://localhost/a")]}, "attachments[0].url"),
        ({"attachments": [OutboundAttachment(url="https://u:p@f.example.com/a")]}, "attachments[0].url"),
        ({"attachments": [OutboundAttachment(url="https://f.example.com/a", content_type="pdf")]}, "attachments[0].content_type"),
    ],
)
def test_problems_name_the_field(changes, field):
    assert field in fields(message(**changes))


def test_settings_validate_mailboxes_and_one_line_values():
    settings = OutboundEmailSettings(sending_addresses=["Support@Acme.example", "@mg.acme.example"], from_name="Acme")
    assert settings.default_mailbox() == "support@acme.example"
    assert settings.may_send_from("info@mg.acme.example") and not settings.may_send_from("x@evil.example")
    assert not matches_mailbox(["@acme.example"], "x@sub.acme.example")
    with pytest.raises(ValueError, match="sending_addresses"):
        OutboundEmailSettings(sending_addresses=["support"])
    with pytest.raises(ValueError, match="one line"):
        OutboundEmailSettings(from_name="Acme\r\nBcc: x@y")


# --- attachments through the downloader ---------------------------------------------------------------


class FakeDownloader:
    def __init__(self, answers: dict[str, object]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    def get(self, url, *, max_bytes, deadline, **_):
        self.calls.append((url, max_bytes))
        answer = self.answers[url]
        if isinstance(answer, Exception):
            raise answer
        return answer


def answer(status=200, body=b"", **headers) -> Download:
    return Download(status=status, headers={k.replace("_", "-"): v for k, v in headers.items()}, body=body,
                    host="files.example.com")


def test_files_are_fetched_in_order_following_redirects():
    downloader = FakeDownloader({
        "https://files.example.com/r/1": answer(302, location="/files/Rechnung%201042.pdf"),
        "https://files.example.com/files/Rechnung%201042.pdf": answer(200, b"%PDF", content_type="application/pdf; x=y"),
        "https://files.example.com/logo": answer(200, b"\x89PNG"),
    })
    msg = message(attachments=[OutboundAttachment(url="https://files.example.com/r/1"),
                               OutboundAttachment(url="https://files.example.com/logo", filename="logo.png")])
    files = fetch_attachments(msg, downloader, max_total_bytes=10)
    assert files == [FetchedFile("Rechnung 1042.pdf", "application/pdf", b"%PDF"), FetchedFile("logo.png", "image/png", b"\x89PNG")]
    assert [c[1] for c in downloader.calls] == [10, 10, 6], "the byte budget shrinks with each file"


@pytest.mark.parametrize(
    "outcome, error, code",
    [
        (DownloadRefusedError(Refusal.HOST_NOT_ALLOWED, "10.0.0.1 is not public"), PermanentDeliveryError, "attachment_refused"),
        (DownloadRefusedError(Refusal.TOO_LARGE, "too large"), PermanentDeliveryError, "attachment_too_large"),
        (answer(404), PermanentDeliveryError, "attachment_unavailable"),
        (DownloadFailedError("timed out"), RetryableDeliveryError, None),
        (answer(503), RetryableDeliveryError, None),
    ],
)
def test_fetch_failures_are_classified_and_name_the_attachment(outcome, error, code):
    url = "https://files.example.com/a.pdf"
    with pytest.raises(error) as caught:
        fetch_attachments(message(attachments=[OutboundAttachment(url=url)]), FakeDownloader({url: outcome}), max_total_bytes=100)
    assert "attachments[0]" in caught.value.message
    assert getattr(caught.value, "provider_code", None) == code
