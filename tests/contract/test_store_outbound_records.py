"""Store contract, outbound records: what the send worker and the status reports write, the same
on every backend (SQLite, DynamoDB on moto)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from chalicelib.domain.models import (
    Channel,
    Contact,
    ContentType,
    Direction,
    OutboundStatus,
    Party,
    Resolution,
    StatusEvent,
)

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)
EXPIRY = datetime.now(timezone.utc) + timedelta(days=1)


def outbound(**fields) -> Contact:
    values = dict(
        id="ct_01JD0000000000000000000001", direction=Direction.OUTBOUND, provider="ses", channel=Channel.EMAIL,
        provider_message_id="", account="support@acme.example", sender=Party(), received_at=T0,
        content_type=ContentType.TEXT, text="Die Störung ist behoben.", customer_id="cus_1", case_id="case_1",
        resolution=Resolution(customer_id="cus_1", created_customer=False, rule="outbound"),
        status=OutboundStatus.QUEUED,
    )
    return Contact(**{**values, **fields})


def report(status: str, minute: int, **fields) -> StatusEvent:
    return StatusEvent(provider="ses", channel=Channel.EMAIL, provider_message_id="ses-1", status=status,
                       occurred_at=T0 + timedelta(minutes=minute), received_at=T0 + timedelta(minutes=minute), **fields)


def test_record_sent_adds_the_thread_keys_the_providers_answer_told(store):
    store.commit_outbound(outbound(), thread_keys=["email:msg_1@acme.example"])

    store.record_sent(outbound(provider_message_id="ses-1", status=OutboundStatus.SENT),
                      thread_keys=["email:ses-1@eu-west-1.amazonses.com"])

    keys = ["email:msg_1@acme.example", "email:ses-1@eu-west-1.amazonses.com"]
    assert store.find_threads(keys) == dict.fromkeys(keys, "case_1")
    assert store.find_sent("ses", "ses-1") == "ct_01JD0000000000000000000001"


def test_record_sent_without_thread_keys_links_none(store):
    store.record_sent(outbound(provider_message_id="ses-2", status=OutboundStatus.SENT))

    assert store.find_threads(["email:ses-2@eu-west-1.amazonses.com"]) == {}


def test_two_different_reports_of_one_status_are_both_kept_and_each_once(store):
    bounce = report("failed", 1, error_code="Permanent:General", error_message="550 mailbox unavailable")
    complaint = report("failed", 2, error_code="Complaint:abuse", opted_out=True)

    assert store.record_status(bounce, expires_at=EXPIRY) is True
    assert store.record_status(complaint, expires_at=EXPIRY) is True
    assert store.record_status(complaint, expires_at=EXPIRY) is False
    assert store.record_status(report("failed", 3, error_code="Permanent:General"), expires_at=EXPIRY) is False

    kept = store.list_statuses("ses", "ses-1")
    assert [(s.error_code, s.opted_out) for s in kept] == [("Permanent:General", False), ("Complaint:abuse", True)]


def test_the_same_code_with_and_without_an_opt_out_are_two_reports(store):
    assert store.record_status(report("failed", 1, error_code="21610"), expires_at=EXPIRY) is True
    assert store.record_status(report("failed", 2, error_code="21610", opted_out=True), expires_at=EXPIRY) is True
    assert len(store.list_statuses("ses", "ses-1")) == 2
