"""Broadcast events through HTTP on the embedded hub: an event without a customer fans out through
the events queue to the customers of a postcode segment (`customers.indexed_attributes`), page by
page, and each eligible customer is told exactly once.

The outage is a service message sent at once; the tariff offer is marketing: only customers who
opted in hear of it, and not at night: it waits for the calendar to open, then the embedded
scheduler fires the deferred messages on the hub's (fake) clock. A customer whose open case is about
the outage (they reported it) is not told about it again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.functional.conftest import API_KEY
from tests.functional.event_steps import (
    event,
    event_hub,
    inbound,
    post_events,
    sent_to,
    settle,
    timeline,
)
from tests.support.fake_sender import FakeSender

#: Monday 2 March 2026, 08:00 UTC = 09:00 in Berlin: the office calendar is open.
OPEN = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
#: The same Monday, 22:00 UTC = 23:00 in Berlin: closed until Tuesday 08:00 Berlin (07:00 UTC).
NIGHT = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)
NEXT_OPENING = datetime(2026, 3, 3, 7, 0, tzinfo=UTC)

CONFIG = {
    "customers": {"indexed_attributes": ["postcode"]},
    "routing": {"calendars": {"office": {"timezone": "Europe/Berlin", "hours": {"mon-fri": "08:00-18:00"}}}},
    "events": {
        "templates": {
            "outage_notice": {"text": {"en": "Outage in {data.region}: we are on it, back by {data.eta}."}},
            "tariff_offer": {"text": {"en": "A new tariff for {data.region}: ask us about it."}},
        },
        "quiet_hours": {"calendar": "office", "purposes": ["marketing"]},
        "fanout_page_size": 2,
        "rules": [
            {"name": "outage-reported", "when": {"event_type": "outage.reported"},
             "then": {"open_case": {"queue": "network", "topic": "outage", "tags": ["outage"]}}},
            {"name": "outage-broadcast", "when": {"event_type": "outage.started"},
             "customer_selector": {"attribute": "postcode", "in": "data.postcodes"},
             "then": {"notify": {"template": "outage_notice", "channels": ["sms"]}, "tag_customer": ["outage"]}},
            {"name": "tariff-offer",
             "when": [{"event_type": "offer.tariff"}, {"consent": {"purpose": "marketing"}}],
             "customer_selector": {"attribute": "postcode", "equals": "data.postcode"},
             "then": {"notify": {"template": "tariff_offer", "purpose": "marketing", "channels": ["sms"]}}},
        ],
    },
}

#: Phone → postcode: three customers in 10115, two in 20095, one in 80331.
CUSTOMERS = {
    "+16505550101": "10115", "+16505550102": "10115", "+16505550103": "10115",
    "+16505550201": "20095", "+16505550202": "20095",
    "+16505550301": "80331",
}


def call(running, method: str, path: str, body: dict):
    return running.request(method, path, json.dumps(body).encode(),
                           {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})


def seed(running) -> dict[str, str]:
    """The customers, each made by an SMS and given a postcode; phone → customer id."""
    ids = {}
    for index, (phone, postcode) in enumerate(CUSTOMERS.items()):
        ids[phone] = inbound(running, f"SM{index:032d}", phone, "Hello")
        answer = call(running, "PATCH", f"/v1/customers/{ids[phone]}/attributes", {"attributes": {"postcode": postcode}})
        assert answer.status == 200, answer.body
    return ids


def opt_in_marketing(running, customer_id: str) -> None:
    answer = call(running, "PUT", f"/v1/customers/{customer_id}/consent",
                  {"channel": "sms", "purpose": "marketing", "state": "opted_in"})
    assert answer.status == 200, answer.body


def recipients() -> list[str]:
    return sorted(m.to for m in FakeSender.sent)


@pytest.fixture
def daytime(tmp_path, receiver, monkeypatch):
    with event_hub(tmp_path, receiver, monkeypatch, CONFIG, start=OPEN) as running:
        yield running


@pytest.fixture
def night(tmp_path, receiver, monkeypatch):
    with event_hub(tmp_path, receiver, monkeypatch, CONFIG, start=NIGHT) as running:
        yield running


def test_an_outage_in_two_postcodes_tells_each_customer_there_exactly_once(daytime):
    running, clock = daytime
    ids = seed(running)
    # One customer there already reported the outage: their case on it suppresses the notice.
    reporter = "+16505550102"
    report = event("outage.reported", "crm:ticket-1", clock(), {}, customer={"customer_id": ids[reporter]})
    assert post_events(running, report).status == 202
    settle(running)
    case = running.api(f"/v1/customers/{ids[reporter]}").json()["open_case"]
    assert (case["topic"], case["queue"]) == ("outage", "network")
    clock.advance(60)
    outage = event("outage.started", "grid:outage-7", clock(),
                   {"postcodes": ["10115", "20095"], "region": "Berlin Mitte", "eta": "18:00"})

    assert post_events(running, outage).status == 202
    settle(running)

    in_segment = sorted(phone for phone, postcode in CUSTOMERS.items() if postcode in ("10115", "20095"))
    told = [phone for phone in in_segment if phone != reporter]
    assert recipients() == told
    assert {m.text for m in FakeSender.sent} == {"Outage in Berlin Mitte: we are on it, back by 18:00."}
    # Pages of two: 10115's three customers took two pages.
    assert running.hub.counters.total("FanoutPages", stage="events") == 3
    assert running.hub.counters.total("SegmentMembersProcessed", stage="events") == 5
    for phone in told:
        [entry] = [c for c in timeline(running, ids[phone]) if c.get("kind") == "event"]
        [tag, notify] = entry["metadata"]["actions"]
        assert (notify["action"], notify["outcome"]) == ("notify", "sent")
        assert (tag["action"], tag["outcome"]) == ("tag_customer", "set")
        customer = running.api(f"/v1/customers/{ids[phone]}").json()
        assert customer["attributes"]["tags"]["value"] == ["outage"]
    assert [c for c in timeline(running, ids["+16505550301"]) if c.get("kind") == "event"] == []
    [suppressed, _] = [c for c in timeline(running, ids[reporter]) if c.get("kind") == "event"]  # newest first
    notify = next(a for a in suppressed["metadata"]["actions"] if a["action"] == "notify")
    assert (notify["outcome"], notify["reason"]) == ("suppressed", "open_case_same_topic")

    # The same broadcast again (a producer's retry): nobody hears twice.
    clock.advance(60)
    assert post_events(running, outage).status == 202
    settle(running)
    assert recipients() == told


def test_a_marketing_offer_at_night_waits_for_the_calendar_then_reaches_only_those_who_opted_in(night):
    running, clock = night
    ids = seed(running)
    opted_in = ["+16505550101", "+16505550103"]
    for phone in opted_in:
        opt_in_marketing(running, ids[phone])
    offer = event("offer.tariff", "tariffs:spring", clock(), {"postcode": "10115", "region": "Berlin"})

    assert post_events(running, offer).status == 202
    settle(running)

    assert FakeSender.sent == [], "nothing goes out in the quiet hours"
    for phone in opted_in:
        [entry] = [c for c in timeline(running, ids[phone]) if c.get("kind") == "event"]
        [notify] = entry["metadata"]["actions"]
        assert (notify["outcome"], notify["reason"]) == ("deferred", "quiet_hours")
        assert datetime.fromisoformat(notify["due_at"]) == NEXT_OPENING
    [declined] = [c for c in timeline(running, ids["+16505550102"]) if c.get("kind") == "event"]
    assert declined["metadata"]["actions"] == []
    assert any(t["rule"] == "tariff-offer" and not t["matched"] for t in declined["routing"]["trace"])

    # Still night an hour before the opening: the timers are not due.
    clock.now = NEXT_OPENING - timedelta(hours=1)
    running.hub.timer_pump.run_once(clock())
    settle(running)
    assert FakeSender.sent == []

    # The calendar opens: the embedded scheduler fires the deferred messages.
    clock.now = NEXT_OPENING + timedelta(seconds=1)
    running.wait_for(lambda: len(FakeSender.sent) >= len(opted_in), message="the deferred offers sent")
    settle(running)
    assert recipients() == sorted(opted_in)
    for phone in opted_in:
        [entry] = [c for c in timeline(running, ids[phone]) if c.get("kind") == "event"]
        outcomes = [(a["outcome"], a.get("deferred_from") is not None) for a in entry["metadata"]["actions"]]
        assert outcomes == [("deferred", False), ("sent", True)]

    # A day later the cases' own timers (SLA, auto-close) fire as well; the deferred offers left
    # the timer table when they fired, and nobody hears of the offer twice.
    running.hub.timer_pump.run_once(clock() + timedelta(days=1))
    settle(running)
    assert recipients() == sorted(opted_in)
    assert sent_to("+16505550101") and len(sent_to("+16505550101")) == 1
