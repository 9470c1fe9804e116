"""Amazon SES inbound email stored in S3 by a receipt rule's S3 action, read on the bucket's
ObjectCreated event: https://docs.aws.amazon.com/ses/latest/dg/receiving-email-action-s3.html

No signature to check here: the event comes from S3 through Lambda's own invocation, and the
object was written by SES into our bucket. What SES concluded about the email (spam, virus, SPF,
DKIM, DMARC) is in the headers SES prepends to the stored message; only that block is trusted
(`ses_headers`), because a sender can put any header into the message SES received.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from typing import TYPE_CHECKING

from chalicelib.adapters.channels.base import ParsedWebhook
from chalicelib.adapters.channels.ses.verdicts import EmailIgnored, EmailUnreadable, Verdicts, normalize_verdict
from chalicelib.domain.models import UnhandledEvent
from chalicelib.errors import TransientError

if TYPE_CHECKING:  # the adapter imports this module to read the announcements of its pull entry
    from chalicelib.adapters.channels.ses.adapter import SesAdapter

logger = logging.getLogger(__name__)

#: The object SES writes when an S3 action is created, to prove it can write: not an email.
SETUP_NOTIFICATION_KEY = "AMAZON_SES_SETUP_NOTIFICATION"
#: Headers SES writes above the received message ends with this one; nothing below it is SES's.
SES_RECEIPT_HEADER = "x-ses-receipt"
#: SES's block is eight headers; a few more leave room for a receipt rule's AddHeader action.
MAX_SES_HEADERS = 16
#: Bytes read to find the header block.
HEADER_SCAN_BYTES = 64 * 1024
#: S3 object metadata of SES's client-side (KMS) encryption: only the S3 encryption client reads those.
CLIENT_SIDE_ENCRYPTION_METADATA = ("x-amz-key-v2", "x-amz-key")

#: `[Received: ...] by inbound-smtp.<region>.amazonaws.com with SMTP id <id> for <recipient>;`
_SES_RECEIVED = re.compile(r"\bby\s+inbound-smtp\.[a-z0-9-]+\.amazonaws\.com\b", re.IGNORECASE)
_RECEIVED_FOR = re.compile(r"\bfor\s+<?([^\s<>;]+@[^\s<>;]+?)>?\s*;", re.IGNORECASE)
_COMMENT = re.compile(r"\([^()]*\)")
_RESULT = re.compile(r"^\s*(spf|dkim|dmarc)\s*=\s*([a-z]+)\b", re.IGNORECASE)
#: RFC 8601 results → SES's verdict vocabulary.
_RESULTS = {"pass": "PASS", "fail": "FAIL", "softfail": "FAIL", "temperror": "PROCESSING_FAILED",
            "permerror": "PROCESSING_FAILED"}  # fmt: skip

@dataclass(frozen=True)
class SesHeaders:
    """What the block of headers SES prepended says; all None when the block is missing."""

    verdicts: Verdicts = field(default_factory=Verdicts)
    #: The envelope recipient SES received the email for (only when there was one).
    recipient: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


def ses_headers(raw: bytes) -> SesHeaders:
    """The headers SES prepends to a stored email (Return-Path, Received, X-SES-Spam-Verdict,
    X-SES-Virus-Verdict, Received-SPF, Authentication-Results), read up to SES's X-SES-RECEIPT.

    Trusted only when the block ends in X-SES-RECEIPT within the first `MAX_SES_HEADERS` headers
    and starts with SES's own Received header: then every header above is SES's. Without it the
    email keeps no verdicts and its sender stays unverified.
    """
    from email.parser import BytesHeaderParser
    from email.policy import compat32

    try:
        items = BytesHeaderParser(policy=compat32).parsebytes(raw[:HEADER_SCAN_BYTES]).raw_items()
        pairs = [(str(name).strip().lower(), " ".join(str(value).split())) for name, value in items]
    except Exception:  # noqa: BLE001 - any header the parser chokes on means: no trusted block
        return SesHeaders()
    block: list[tuple[str, str]] = []
    for name, value in pairs[:MAX_SES_HEADERS]:
        if name == SES_RECEIPT_HEADER:
            break
        block.append((name, value))
    else:
        return SesHeaders()
    received = next((value for name, value in block if name == "received"), "")
    if not _SES_RECEIVED.search(received):
        return SesHeaders()

    def first(name: str) -> str | None:
        return next((value for key, value in block if key == name), None)

    results = _authentication_results(first("authentication-results"))
    return_path = (first("return-path") or "").strip().strip("<>").strip()
    recipient = _RECEIVED_FOR.search(received)
    return SesHeaders(
        verdicts=Verdicts(
            spam=normalize_verdict(first("x-ses-spam-verdict")),
            virus=normalize_verdict(first("x-ses-virus-verdict")),
            spf=results.get("spf"),
            dkim=results.get("dkim"),
            dmarc=results.get("dmarc"),
            source=return_path or None,
        ),
        recipient=recipient[1] if recipient else None,
        headers=block,
    )


def _authentication_results(value: str | None) -> dict[str, str]:
    """`spf`, `dkim`, `dmarc` from SES's `Authentication-Results: amazonses.com; spf=pass ...`.

    Another authserv-id is not SES's result and is ignored. DKIM passes when any signature passed.
    """
    if not value:
        return {}
    text = value
    for _ in range(5):  # comments may nest: (a (b) c)
        text = _COMMENT.sub("", text)
    authserv, _, rest = text.partition(";")
    if authserv.strip().lower() != "amazonses.com":
        return {}
    results: dict[str, str] = {}
    for resinfo in rest.split(";"):
        match = _RESULT.match(resinfo)
        if match is None:
            continue
        method, result = match[1].lower(), _RESULTS.get(match[2].lower(), "GRAY")
        if method == "dkim" and results.get("dkim") == "PASS":
            continue
        if method not in results or method == "dkim":
            results[method] = result
    return results


def read_s3_notification(body: str, *, s3_client: Any, adapter: SesAdapter, received_at: datetime) -> ParsedWebhook:
    """One S3 event notification, as the bucket sends it to the ses-inbound queue: its records go
    to `read_s3_records`. The `s3:TestEvent` S3 sends when the notification is configured is
    acknowledged; a body that is not a notification is kept raw (an `UnhandledEvent`), never a
    reason to fail the other messages of its batch."""
    now = received_at
    try:
        notification = json.loads(body)
    except (ValueError, RecursionError):
        notification = None
    if isinstance(notification, dict) and notification.get("Event") == "s3:TestEvent":
        logger.info("ses s3: the bucket's test event (its notification configuration works)")
        return ParsedWebhook(ignored=["s3:TestEvent: S3 checked the notification configuration"])
    records = notification.get("Records") if isinstance(notification, dict) else None
    if not isinstance(records, list):
        reason = "not an S3 event notification (a JSON object with a Records list)"
        raw = notification if notification is not None else body
        return ParsedWebhook(unhandled=[UnhandledEvent.of(adapter.key, reason, raw, now)])
    return read_s3_records(records, s3_client=s3_client, adapter=adapter, received_at=now)


def read_s3_records(records: Iterable[Any], *, s3_client: Any, adapter: SesAdapter, received_at: datetime) -> ParsedWebhook:
    """Turn the S3 ObjectCreated records of one notification into email messages.

    Every object the SES S3 action stored under `adapter.settings.s3_prefix` is downloaded (up to
    `max_email_bytes`), parsed and normalized exactly like the SNS delivery, so an email that
    arrives both ways makes one contact. Objects that are not emails, too large, client-side
    encrypted, spam, bounces, automatic replies or our own mail are acknowledged and listed in
    `ignored`; a record or email that cannot be read is kept raw (`unhandled`).

    Raises `TransientError` when an object could not be read: the queue then redelivers the
    notification, and dedupe on the SES message id makes the retry harmless.
    """
    parsed = ParsedWebhook()
    for index, record in enumerate(records):
        try:
            if not isinstance(record, Mapping):
                raise EmailUnreadable("not an S3 event record")
            parsed.events.append(_message(record, s3_client=s3_client, adapter=adapter, received_at=received_at))
        except EmailUnreadable as unreadable:
            reason = f"record {index}: {unreadable}"
            parsed.unhandled.append(UnhandledEvent.of(adapter.key, reason, _described(record), received_at))
        except EmailIgnored as ignored:
            parsed.ignored.append(f"record {index}: {ignored}")
    return parsed


def _described(record: Any) -> Any:
    """What is kept of a record that could not be read: the S3 event itself (the object, if
    any, stays in the bucket until its lifecycle rule removes it)."""
    return dict(record) if isinstance(record, Mapping) else record


def _message(record: Mapping[str, Any], *, s3_client: Any, adapter: SesAdapter, received_at: datetime):
    settings = adapter.settings
    event = str(record.get("eventName") or "")
    s3 = record.get("s3") if isinstance(record.get("s3"), Mapping) else {}
    bucket = (s3.get("bucket") or {}).get("name") if isinstance(s3.get("bucket"), Mapping) else None
    obj = s3.get("object") if isinstance(s3.get("object"), Mapping) else {}
    if record.get("eventSource") != "aws:s3" or not event.startswith("ObjectCreated"):
        raise EmailUnreadable(f"not an S3 ObjectCreated event ({event[:40] or 'no eventName'})")
    if not isinstance(bucket, str) or not isinstance(obj.get("key"), str):
        raise EmailUnreadable("S3 record without bucket name or object key")
    # Keys arrive URL-encoded, spaces as '+' (https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html).
    key = unquote_plus(obj["key"])
    name = key.rsplit("/", 1)[-1]
    if not key.startswith(settings.s3_prefix):
        raise EmailIgnored(f"object {key[:200]!r} is outside s3_prefix {settings.s3_prefix!r}")
    if not name or name == SETUP_NOTIFICATION_KEY:
        raise EmailIgnored(f"object {key[:200]!r} is not an email (SES setup object or folder)")
    message_id = key[len(settings.s3_prefix) :].rsplit("/", 1)[-1]
    size = obj.get("size")
    if isinstance(size, int) and size > settings.max_email_bytes:
        raise EmailIgnored(f"email {message_id}: {size} bytes exceeds max_email_bytes")

    raw = _download(s3_client, bucket, key, message_id, settings.max_email_bytes)
    block = ses_headers(raw)
    return adapter.email_message(
        raw,
        message_id=message_id,
        recipients=[block.recipient] if block.recipient else [],
        verdicts=block.verdicts,
        received_at=received_at,
        metadata={"delivery": "s3", "s3_bucket": bucket, "s3_key": key},
        retry_dns_failures=True,
        raw={
            "s3": {
                "bucket": bucket,
                "key": key,
                "size": size,
                "eTag": obj.get("eTag"),
                "eventName": event,
                "eventTime": record.get("eventTime"),
            },
            "ses_headers": [[name, value[:998]] for name, value in block.headers],
        },
        s3_object=f"s3://{bucket}/{key}",
    )


def _download(s3_client: Any, bucket: str, key: str, message_id: str, limit: int) -> bytes:
    try:
        response = s3_client.get_object(Bucket=bucket, Key=key)
    except Exception as exc:  # botocore's ClientError, without importing botocore at module import
        code = str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404"):
            # Deleted between the event and now (a lifecycle rule, an operator): nothing to read.
            raise EmailIgnored(f"email {message_id}: the object no longer exists") from None
        raise TransientError(f"s3://{bucket}/{key} could not be read: {code or type(exc).__name__}") from exc
    body = response["Body"]
    try:
        metadata = {str(k).lower() for k in (response.get("Metadata") or {})}
        if metadata.intersection(CLIENT_SIDE_ENCRYPTION_METADATA):
            raise EmailIgnored(
                f"email {message_id}: encrypted client-side with KMS by the S3 action; "
                "turn the action's encryption off (use bucket SSE instead)"
            )
        length = response.get("ContentLength")
        if isinstance(length, int) and length > limit:
            raise EmailIgnored(f"email {message_id}: {length} bytes exceeds max_email_bytes")
        data = body.read(limit + 1)
    finally:
        body.close()
    if len(data) > limit:
        raise EmailIgnored(f"email {message_id}: more than max_email_bytes")
    return data
