"""The event envelope (domain/events.py): what `timestamp` says for each event type, and the
published schema's event types."""

from __future__ import annotations

from datetime import timedelta

import jsonschema
import pytest

from chalicelib.domain.events import contact_event
from chalicelib.domain.models import OutboundStatus, StatusChange
from chalicelib.domain.schema import ContactEvent
from tests.support.fakes import sample_job
from tests.support.outbound_jobs import SENT_AT, outbound_job

QUEUED_AT = SENT_AT - timedelta(minutes=3)


def reported(job, *changes: tuple[int, OutboundStatus]):
    """`job` with its contact queued 3 minutes before SENT_AT and these changes (minutes after it)."""
    history = [StatusChange(at=QUEUED_AT, status=OutboundStatus.QUEUED),
               *(StatusChange(at=SENT_AT + timedelta(minutes=m), status=s, source="meta") for m, s in changes)]
    contact = job.contact.model_copy(update={"received_at": QUEUED_AT, "status_history": history})
    return job.model_copy(update={"contact": contact})


def test_a_status_event_is_dated_by_the_latest_status_change_not_the_queueing():
    # Reported out of order: read (minute 5) arrived before delivered (minute 2).
    job = reported(outbound_job("hooks", event_type="message.status"),
                   (0, OutboundStatus.SENT), (5, OutboundStatus.READ), (2, OutboundStatus.DELIVERED))

    assert contact_event(job)["timestamp"] == "2026-11-23T09:10:00Z"


def test_a_sent_event_is_dated_when_the_provider_took_the_message():
    job = reported(outbound_job("hooks", event_type="message.sent"), (0, OutboundStatus.SENT))

    assert contact_event(job)["timestamp"] == "2026-11-23T09:05:00Z"


def test_a_customers_message_is_dated_by_its_arrival():
    job = sample_job(destination="hooks")

    assert contact_event(job)["timestamp"] == job.contact.received_at.isoformat().replace("+00:00", "Z")


def test_an_outbound_message_without_history_falls_back_to_its_queueing():
    job = outbound_job("hooks", event_type="message.status")
    job = job.model_copy(update={"contact": job.contact.model_copy(update={"status_history": []})})

    assert contact_event(job)["timestamp"] == job.contact.received_at.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("event_type", ["contact.created", "message.sent", "message.status"])
def test_every_event_type_a_destination_receives_is_in_the_published_schema(event_type):
    job = outbound_job("hooks", event_type=event_type)

    jsonschema.validate(contact_event(job), ContactEvent.model_json_schema(mode="serialization"))


def test_an_unknown_event_type_fails_the_published_schema():
    job = outbound_job("hooks", event_type="message.deleted")

    with pytest.raises(jsonschema.ValidationError, match="message.deleted"):
        jsonschema.validate(contact_event(job), ContactEvent.model_json_schema(mode="serialization"))
