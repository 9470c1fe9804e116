"""An email's attachment bytes travel with its message to the process worker: exactly the bytes
the MIME part encodes, within a per-email budget, and the files left out are named."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timezone
from pathlib import Path

from chalicelib.adapters.channels.email import inbound as email_inbound
from chalicelib.adapters.channels.email.inbound import MAX_EMBEDDED_BYTES, attachment_content, check_sender, inbound_email
from chalicelib.adapters.channels.email.mime import ParsedAttachment, parse_email
from chalicelib.domain.models import InboundMessage

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "email" / "attachments.eml"
AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)


def message_from(raw: bytes, **parse) -> InboundMessage:
    parsed = parse_email(raw, **parse)
    check = check_sender(parsed.from_address, spf=None, spf_domain=None, dkim=None)
    message = inbound_email(parsed, provider="mailgun", account=None, received_at=AT, sender=check, fallback_id="f")
    assert isinstance(message, InboundMessage)
    return message


def file(size: int, content: bytes | None = b"") -> ParsedAttachment:
    return ParsedAttachment(filename="f", content_type="application/pdf", size=size,
                            content=b"x" * size if content == b"" else content)


def test_each_attachment_carries_the_bytes_its_mime_part_encodes_through_the_queues_json():
    raw = FIXTURE.read_bytes()
    # The standard library, read independently with its modern policy, is the reference.
    reference = [part.get_content() for part in email.message_from_bytes(raw, policy=email.policy.default).walk()
                 if part.get_filename()]
    reference = [data.encode() if isinstance(data, str) else data for data in reference]

    message = message_from(raw, max_attachment_bytes=MAX_EMBEDDED_BYTES)
    queued = InboundMessage.model_validate_json(message.model_dump_json())

    assert [c.index for c in queued.attachment_content] == [0, 1, 2]
    assert [c.data for c in queued.attachment_content] == reference
    assert [a.size for a in queued.attachments] == [len(data) for data in reference]
    assert "attachments_not_stored" not in queued.metadata
    assert '"data":"' in message.model_dump_json()  # base64 in the JSON, never raw bytes


def test_files_the_parser_kept_no_bytes_of_are_named_not_dropped():
    message = message_from(FIXTURE.read_bytes(), max_attachment_bytes=60)

    # screenshot.png has 69 bytes, the PDF 54, the text file 15.
    assert [c.index for c in message.attachment_content] == [1, 2]
    assert message.metadata["attachments_not_stored"] == [0]


def test_the_budget_is_per_email_and_empty_files_carry_nothing(monkeypatch):
    monkeypatch.setattr(email_inbound, "MAX_EMBEDDED_BYTES", 100)

    carried, left_out = attachment_content([file(60), file(0), file(50), file(40), file(5, content=None)])

    assert [(c.index, len(c.data)) for c in carried] == [(0, 60), (3, 40)]
    assert left_out == [2, 4]
