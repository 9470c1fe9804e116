"""A late parcel through HTTP on the embedded hub: `POST /v1/events` → the events worker → event
rules → notify → the outbound worker → the provider (a recording fake sender), on a fake clock.

WhatsApp inside its 24-hour window sends the free text; outside it the rule falls back to SMS.
A repeated event id sends nothing twice, and the event is on the customer's timeline with the
decision. Explain shows the same decision without sending."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.adapters.queue.base import OutgoingMessage
from tests.functional.event_steps import (
    OPERATOR_KEY,
    event,
    event_hub,
    inbound,
    post_events,
    sent_to,
    settle,
    timeline,
)
from tests.support.fake_sender import FakeSender

PHONE = "+16505551234"

EVENTS = {
    "events": {
        "templates": {
            "parcel_late": {"text": {"en": "Your parcel {data.parcel_id} is {data.delay_hours} hours late."}},
        },
        "rules": [
            {"name": "parcel-late",
             "when": [{"event_type": "parcel.*"}, {"event": {"path": "data.delay_hours", "gte": 24}}],
             "then": {"notify": {"template": "parcel_late", "channels": ["whatsapp", "sms"]}}},
        ],
    },
}


@pytest.fixture
def hub(tmp_path, receiver, monkeypatch):
    with event_hub(tmp_path, receiver, monkeypatch, EVENTS) as running:
        yield running


def late_parcel(id_: str, at, **data) -> dict:
    return event("parcel.late", id_, at, {"parcel_id": "P-17", "delay_hours": 30, **data},
                 customer={"identifier": f"phone:{PHONE}"})


def test_inside_the_window_the_late_parcel_goes_on_whatsapp_as_free_text(hub):
    running, clock = hub
    customer_id = inbound(running, "SM" + "1" * 32, PHONE, "Hi, I ordered on Monday")
    inbound(running, "SM" + "2" * 32, PHONE, "Any news?", whatsapp=True)
    clock.advance(3600)

    assert post_events(running, late_parcel("shop:parcel-17:late", clock())).status == 202
    settle(running)

    [message] = sent_to(PHONE)
    assert message.channel == "whatsapp"
    assert message.text == "Your parcel P-17 is 30 hours late."
    assert message.template is None
    [entry] = [c for c in timeline(running, customer_id) if c.get("kind") == "event"]
    assert entry["provider_message_id"] == "shop:parcel-17:late"
    [notify] = entry["metadata"]["actions"]
    assert (notify["action"], notify["rule"], notify["outcome"]) == ("notify", "parcel-late", "sent")
    assert notify["attempts"][0]["channel"] == "whatsapp"
    assert notify["message_id"] == message.id


def test_outside_the_window_whatsapp_is_refused_and_the_parcel_goes_by_sms(hub):
    running, clock = hub
    customer_id = inbound(running, "SM" + "1" * 32, PHONE, "Hi, I ordered on Monday")
    inbound(running, "SM" + "2" * 32, PHONE, "Any news?", whatsapp=True)
    clock.advance(timedelta(hours=30).total_seconds())

    assert post_events(running, late_parcel("shop:parcel-17:late", clock())).status == 202
    settle(running)

    [message] = sent_to(PHONE)
    assert message.channel == "sms"
    assert message.text == "Your parcel P-17 is 30 hours late."
    [entry] = [c for c in timeline(running, customer_id) if c.get("kind") == "event"]
    [notify] = entry["metadata"]["actions"]
    assert notify["outcome"] == "sent"
    assert notify["attempts"][0]["channel"] == "whatsapp"
    assert "refused" in notify["attempts"][0]
    assert notify["attempts"][1]["channel"] == "sms"
    assert any("notify parcel_late → sms" in (t["reason"] or "") for t in entry["routing"]["trace"])


def test_a_repeated_event_id_sends_one_message_and_makes_one_timeline_entry(hub):
    running, clock = hub
    customer_id = inbound(running, "SM" + "1" * 32, PHONE, "Hi")
    clock.advance(60)
    same = late_parcel("shop:parcel-17:late", clock())

    assert post_events(running, [same, same]).status == 202
    settle(running)
    assert post_events(running, same).status == 202
    settle(running)
    # A redelivery after the queue's own five-minute deduplication window (an EventBridge retry,
    # a producer's late retry): only the event's done marker stops it.
    clock.advance(3600)
    redelivered = {"kind": "event", "event": {**same, "source": "api:producer", "received_at": clock().isoformat()}}
    running.hub.events_queue.send([OutgoingMessage(body=json.dumps(redelivered), group="late-retry",
                                                   dedupe_id="late-retry")])
    settle(running)

    assert len(sent_to(PHONE)) == 1
    assert len([c for c in timeline(running, customer_id) if c.get("kind") == "event"]) == 1
    assert running.hub.counters.total("DuplicatesDropped", stage="events") >= 1


def test_an_event_below_the_rule_s_threshold_notifies_nobody_but_is_on_the_timeline(hub):
    running, clock = hub
    customer_id = inbound(running, "SM" + "1" * 32, PHONE, "Hi")

    assert post_events(running, late_parcel("shop:parcel-17:late", clock(), delay_hours=2)).status == 202
    settle(running)

    assert sent_to(PHONE) == []
    [entry] = [c for c in timeline(running, customer_id) if c.get("kind") == "event"]
    assert entry["metadata"]["actions"] == []
    assert [t["matched"] for t in entry["routing"]["trace"] if t["rule"] == "parcel-late"] == [False]


def test_an_event_for_an_unknown_customer_is_recorded_as_unhandled(tmp_path, receiver, monkeypatch):
    # On today's clock: unhandled records are listed until they expire by the store's clock.
    with event_hub(tmp_path, receiver, monkeypatch, EVENTS, start=datetime.now(UTC)) as (running, clock):
        unknown_customer_is_recorded(running, clock)


def unknown_customer_is_recorded(running, clock) -> None:

    assert post_events(running, late_parcel("shop:parcel-99:late", clock())).status == 202
    settle(running)

    assert FakeSender.sent == []
    assert running.hub.counters.total("EventsCustomerUnmatched", stage="events") == 1
    day = clock().date().isoformat()
    answer = running.api(f"/v1/unhandled-events?day={day}&provider=events")
    assert answer.status == 200, answer.body
    assert any("shop:parcel-99:late" in item["reason"] for item in answer.json()["data"])


def test_explain_shows_the_matched_rule_and_the_would_be_channel_without_sending(hub):
    running, clock = hub
    customer_id = inbound(running, "SM" + "1" * 32, PHONE, "Hi")
    inbound(running, "SM" + "2" * 32, PHONE, "Any news?", whatsapp=True)
    clock.advance(60)

    answer = post_events(running, {"event": late_parcel("shop:parcel-17:late", clock())}, key=OPERATOR_KEY,
                         path="/v1/events/explain")

    assert answer.status == 200, answer.body
    result = answer.json()
    assert result["customer_id"] == customer_id
    matched = [t for t in result["trace"] if t["rule"] == "parcel-late" and t["matched"]]
    assert matched and "notify parcel_late" in matched[0]["reason"]
    [notify] = result["actions"]
    assert notify["dry_run"] is True
    assert notify["outcome"] == "sent"
    assert notify["attempts"][0]["channel"] == "whatsapp"
    assert any("→ whatsapp" in line for line in result["would"])
    settle(running)
    assert FakeSender.sent == []
    assert [c for c in timeline(running, customer_id) if c.get("kind") == "event"] == []
