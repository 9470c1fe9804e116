"""SES through S3: the receipt rule's S3 action stores the raw MIME, the bucket's ObjectCreated
event runs `read_s3_records` (the ses-inbound pull entry), which reads the object and builds messages exactly like the SNS
delivery. Against moto S3, with every S3 call counted; plus the Chalice wiring the app uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from chalicelib.adapters.channels.base import WebhookRequest
from chalicelib.adapters.channels.ses.adapter import SesAdapter, SesSettings
from chalicelib.adapters.channels.ses.s3_pull import read_s3_records
from chalicelib.adapters.channels.ses import sns_signature as sns
from chalicelib.domain.models import InboundMessage, UnhandledEvent
from chalicelib.errors import TransientError
from chalicelib.secrets import SecretResolver

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ses"
EMAIL = (FIXTURES / "email_umlauts.eml").read_bytes()
SES_ID = "8l1uq6c0example0umlauts0v2sns0base64aa1"  # the SES id of the same email in received_umlauts_v2
PREFIX = "ses-inbound/"
AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)


def make_adapter(**overrides) -> SesAdapter:
    values = {"own_addresses": ["@acme.example"], "s3_prefix": PREFIX, **overrides}
    return SesAdapter(SesSettings.model_validate(values), SecretResolver({}))


def record(bucket: str, key: str, *, size: int | None = None, event: str = "ObjectCreated:Put") -> dict:
    """One S3 event record as Lambda receives it: the key URL-encoded, spaces as '+'."""
    from urllib.parse import quote_plus

    obj = {"key": quote_plus(key, safe="/"), "eTag": "d41d8cd98f00b204e9800998ecf8427e", "sequencer": "0A1B2C"}
    if size is not None:
        obj["size"] = size
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "eu-central-1",
        "eventTime": "2026-01-01T00:00:01.000Z",
        "eventName": event,
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}, "object": obj},
    }


class Collected:
    def __init__(self) -> None:
        self.batches: list[list[InboundMessage]] = []

    def __call__(self, messages: list[InboundMessage]) -> None:
        self.batches.append(list(messages))

    @property
    def messages(self) -> list[InboundMessage]:
        return [m for batch in self.batches for m in batch]


@pytest.fixture
def s3(aws, calls):
    return calls.watch(aws.client("s3"))


@pytest.fixture
def bucket(s3, unique):
    name = unique("ses-mail")
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    return name


@dataclass
class Result:
    enqueued: int
    ignored: list[str]
    unhandled: list[str]


def run(records, s3, adapter=None) -> tuple[Result, Collected]:
    """The records read as the worker reads them; what it would enqueue is collected in one batch."""
    parsed = read_s3_records(records, s3_client=s3, adapter=adapter or make_adapter(), received_at=AT)
    collected = Collected()
    if parsed.events or parsed.unhandled:
        collected([*parsed.events, *parsed.unhandled])
    return Result(len(parsed.events), parsed.ignored, [u.reason for u in parsed.unhandled]), collected


def test_stored_email_becomes_the_same_message_as_the_sns_delivery(s3, bucket, calls):
    s3.put_object(Bucket=bucket, Key=PREFIX + SES_ID, Body=EMAIL)
    calls.clear()
    result, collected = run([record(bucket, PREFIX + SES_ID, size=len(EMAIL))], s3)
    assert (result.enqueued, result.ignored) == (1, [])
    assert calls.counts() == {"GetObject": 1}
    [message] = collected.messages
    assert message.provider_message_id == SES_ID and message.dedupe_key == f"msg:ses:{SES_ID}"
    assert message.account == "support@inbound.acme.example"  # from SES's Received header
    [handle] = message.sender.handles
    assert (handle.value, handle.verified) == ("juergen.mueller@kunde.example", True)
    assert message.sender.display_name == "Jürgen Müller"
    assert message.subject == "Rückfrage zu Bestellung #1042 – Lieferadresse ändern"
    assert message.text.endswith("Schöne Grüße\nJürgen")
    assert message.attachments[0].filename == "Rechnung_Müller.pdf"
    assert message.attachments[0].provider_media_id == f"s3://{bucket}/{PREFIX}{SES_ID}#attachment-0"
    assert message.metadata["delivery"] == "s3" and message.metadata["s3_key"] == PREFIX + SES_ID
    assert message.raw["s3"]["bucket"] == bucket
    assert message.received_at == AT

    # The SNS delivery of the same email: same dedupe key, same normalized content.
    sns_body = (FIXTURES / "received_umlauts_v2.body").read_bytes()
    cert = (FIXTURES / "signing_cert.pem").read_bytes()
    sns_adapter = SesAdapter(
        SesSettings.model_validate({"topic_arns": ["arn:aws:sns:eu-central-1:123456789012:ses-inbound"],
                                    "own_addresses": ["@acme.example"]}),  # fmt: skip
        SecretResolver({}),
        fetch=lambda url: sns.HttpResponse(200, cert),
    )
    req = WebhookRequest("POST", None, {}, {}, sns_body, AT)
    sns_adapter.verify(req)
    [via_sns] = sns_adapter.parse(req).events
    assert via_sns.dedupe_key == message.dedupe_key
    same = ("account", "sender", "subject", "text", "thread_keys", "content_type", "sent_at", "conversation_key")
    assert {f: getattr(via_sns, f) for f in same} == {f: getattr(message, f) for f in same}


def test_every_record_of_the_event_is_ingested_in_one_call(s3, bucket):
    keys = [f"{PREFIX}id{i}" for i in range(3)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=EMAIL)
    result, collected = run([record(bucket, key) for key in keys], s3)
    assert result.enqueued == 3 and len(collected.batches) == 1
    assert [m.provider_message_id for m in collected.messages] == ["id0", "id1", "id2"]


def test_url_encoded_keys_are_decoded(s3, bucket):
    key = PREFIX + "a b+c"
    s3.put_object(Bucket=bucket, Key=key, Body=EMAIL)
    _, collected = run([record(bucket, key)], s3)
    assert collected.messages[0].provider_message_id == "a b+c"


@pytest.mark.parametrize(
    "key, reason",
    [
        (PREFIX + "AMAZON_SES_SETUP_NOTIFICATION", "not an email"),
        (PREFIX + "folder/", "not an email"),
        ("queue/claim-checked-body", "outside s3_prefix"),
    ],
)
def test_non_email_keys_are_skipped_without_reading(s3, bucket, calls, key, reason):
    s3.put_object(Bucket=bucket, Key=key, Body=b"Amazon SES setup notification")
    calls.clear()
    result, collected = run([record(bucket, key)], s3)
    assert result.enqueued == 0 and reason in result.ignored[0]
    assert calls.counts() == {} and collected.batches == []


def test_non_created_events_are_kept_raw_without_reading(s3, bucket, calls):
    calls.clear()
    removed = record(bucket, PREFIX + "x", event="ObjectRemoved:Delete")
    result, collected = run([removed], s3)
    assert "not an S3 ObjectCreated event" in result.unhandled[0] and calls.counts() == {}
    [kept] = collected.messages
    assert isinstance(kept, UnhandledEvent) and kept.raw == removed and kept.provider == "ses"


def test_oversized_email_by_record_size_is_never_downloaded(s3, bucket, calls):
    calls.clear()
    result, _ = run([record(bucket, PREFIX + "big", size=2048)], s3, make_adapter(max_email_bytes=1024))
    assert "exceeds max_email_bytes" in result.ignored[0] and calls.counts() == {}


def test_oversized_email_by_object_length_is_not_read(s3, bucket):
    s3.put_object(Bucket=bucket, Key=PREFIX + "big", Body=EMAIL + b"x" * 2048)
    result, _ = run([record(bucket, PREFIX + "big", size=10)], s3, make_adapter(max_email_bytes=1024))
    assert "exceeds max_email_bytes" in result.ignored[0]


def test_deleted_object_is_acknowledged(s3, bucket):
    result, _ = run([record(bucket, PREFIX + "gone")], s3)
    assert "no longer exists" in result.ignored[0]


def test_unreadable_object_is_transient_so_lambda_retries(s3, unique):
    with pytest.raises(TransientError, match="NoSuchBucket"):
        run([record(unique("missing-bucket"), PREFIX + "x")], s3)


def test_client_side_encrypted_object_is_acknowledged_with_the_fix(s3, bucket):
    s3.put_object(Bucket=bucket, Key=PREFIX + "enc", Body=b"ciphertext", Metadata={"x-amz-key-v2": "abc", "x-amz-cek-alg": "AES/GCM/NoPadding"})
    result, _ = run([record(bucket, PREFIX + "enc")], s3)
    assert "encrypted client-side" in result.ignored[0]


def test_spam_verdict_from_ses_headers_is_ignored(s3, bucket):
    spam = EMAIL.replace(b"X-SES-Spam-Verdict: PASS", b"X-SES-Spam-Verdict: FAIL")
    s3.put_object(Bucket=bucket, Key=PREFIX + "spam", Body=spam)
    result, collected = run([record(bucket, PREFIX + "spam")], s3)
    assert collected.batches == [] and "spam verdict FAIL" in result.ignored[0]


def test_sender_forged_authentication_results_do_not_verify(s3, bucket):
    # SES found DKIM failing; the sender's own header below SES's block claims otherwise.
    forged = EMAIL.replace(b" dkim=pass header.i=@kunde.example;", b" dkim=fail header.i=@kunde.example;").replace(
        b"From: =?UTF-8?", b"Authentication-Results: amazonses.com; spf=pass; dkim=pass; dmarc=pass\r\nFrom: =?UTF-8?"
    )
    s3.put_object(Bucket=bucket, Key=PREFIX + "forged", Body=forged)
    _, collected = run([record(bucket, PREFIX + "forged")], s3)
    assert collected.messages[0].sender.handles[0].verified is False


def test_mail_without_the_ses_block_is_unverified_with_account_from_our_address(s3, bucket):
    plain = EMAIL[EMAIL.index(b"From: =?UTF-8?") :].replace(b"support@inbound.acme.example", b"help@acme.example")
    s3.put_object(Bucket=bucket, Key=PREFIX + "plain", Body=plain)
    _, collected = run([record(bucket, PREFIX + "plain")], s3)
    [message] = collected.messages
    assert message.sender.handles[0].verified is False
    assert message.account == "help@acme.example"
    assert "verdicts" not in message.metadata


def test_an_object_that_is_not_an_email_is_kept_raw_as_its_record(s3, bucket):
    s3.put_object(Bucket=bucket, Key=PREFIX + "m", Body=b"")
    result, collected = run([record(bucket, PREFIX + "m")], s3)
    assert result.enqueued == 0 and "not a parseable email" in result.unhandled[0]
    [kept] = collected.messages
    assert isinstance(kept, UnhandledEvent) and kept.raw["s3"]["object"]["key"] == PREFIX + "m"


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"Auto-Submitted: auto-replied\r\n" + EMAIL, "automatic reply"),
        (EMAIL.replace(b"juergen.mueller@kunde.example>\r\nTo:", b"agent@acme.example>\r\nTo:"), "own_addresses"),
    ],
)
def test_unusable_mail_is_acknowledged_with_a_reason(s3, bucket, body, reason):
    s3.put_object(Bucket=bucket, Key=PREFIX + "m", Body=body)
    result, collected = run([record(bucket, PREFIX + "m")], s3)
    assert collected.batches == [] and reason in result.ignored[0]


def test_retried_event_gives_the_same_dedupe_keys(s3, bucket):
    s3.put_object(Bucket=bucket, Key=PREFIX + SES_ID, Body=EMAIL)
    first = run([record(bucket, PREFIX + SES_ID)], s3)[1].messages
    again = run([record(bucket, PREFIX + SES_ID)], s3)[1].messages
    assert [m.dedupe_key for m in first] == [m.dedupe_key for m in again]
