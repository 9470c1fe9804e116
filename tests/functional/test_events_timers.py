"""Case timers end to end on the embedded hub, through HTTP: a customer's message opens a case
with an SLA; when the hub's clock passes it, the embedded scheduler fires the timer onto the
events queue, the `case.sla_breached` event runs through the event rules (which escalate the
case to an urgent queue) and the generic destinations (the outbox and the webhook) receive
`case.sla_breached`, once, even though the timer fires at least once."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from chalicelib.bootstrap import Hub
from chalicelib.local.runtime import EmbeddedRuntime
from chalicelib.service.case_timers import case_timers
from chalicelib.settings import Settings
from tests.functional.conftest import WEBHOOK_SECRET, RunningHub, make_config
from tests.functional.test_ingest_edges import twilio_request
from tests.support.fakes import Clock

#: A Monday morning, 08:00 UTC.
START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
SLA_HOURS = 4



def extra(receiver_url: str) -> dict:
    """SLA and the escalation rule; both destinations take case events (the test default is off)."""
    return {
        "destinations": [
            {"name": "outbox", "type": "outbox", "path": "outbox.jsonl"},
            {"name": "crm", "type": "webhook", "url": receiver_url, "secrets": [WEBHOOK_SECRET], "timeout_seconds": 5},
        ],
        "routing": {"sla": {"hours": SLA_HOURS}},
        "events": {"rules": [{
            "name": "sla-escalate",
            "when": {"event_type": "case.sla_breached"},
            "then": {"priority": "urgent", "queue": "escalations"},
        }]},
    }


def _drained(running: RunningHub) -> bool:
    hub = running.hub
    return all(queue.depth() == 0 for queue in (hub.inbound_queue, hub.delivery_queue, hub.events_queue))


def _webhook_events(running: RunningHub, event_type: str) -> list[dict]:
    bodies = [json.loads(r.body) for r in running.receiver.requests if r.body.startswith(b"{")]
    return [b for b in bodies if b.get("type") == event_type]


def test_an_sla_breach_escalates_the_case_and_notifies_the_destinations(tmp_path, receiver):
    clock = Clock(START)
    config = make_config(tmp_path / "hub.yaml", receiver.url, extra=extra(receiver.url))
    runtime = EmbeddedRuntime(hub=Hub(Settings(config_path=str(config), data_dir=str(tmp_path / "data"), port=0,
                                               local_workers=1), clock=clock), port=0).start()
    running = RunningHub(runtime, receiver, tmp_path / "data")
    try:
        path, data, headers = twilio_request({"MessageSid": "SM-sla-1", "AccountSid": "AC" + "a" * 32,
                                              "From": "+4915123456789", "To": "+14155550100",
                                              "Body": "Mein Internet geht seit gestern nicht", "NumMedia": "0"})
        assert running.post(path, data, headers).status == 200
        [created] = running.wait_for(
            lambda: [e for e in running.outbox() if e["type"] == "contact.created"], message="the contact delivered")
        case_id = created["data"]["contact"]["case_id"]

        case = running.api(f"/v1/cases/{case_id}").json()
        sla_due = START + timedelta(hours=SLA_HOURS)
        assert datetime.fromisoformat(case["due"]["sla"].replace("Z", "+00:00")) == sla_due
        assert (case["priority"], case["queue"]) == ("normal", "default")

        # Before its due time nothing fires.
        clock.now = sla_due - timedelta(minutes=1)
        running.wait_for(lambda: _drained(running), message="the queues drained")
        assert not [e for e in running.outbox() if e["type"] == "case.sla_breached"]

        clock.now = sla_due + timedelta(seconds=30)
        escalated = running.wait_for(
            lambda: (c := running.api(f"/v1/cases/{case_id}").json())["priority"] == "urgent" and c,
            message="the case escalated by the event rule")
        assert escalated["queue"] == "escalations"
        [breach] = running.wait_for(
            lambda: [e for e in running.outbox() if e["type"] == "case.sla_breached"],
            message="case.sla_breached in the outbox")
        assert breach["data"]["case"]["id"] == case_id
        assert breach["data"]["customer"]["id"] == created["data"]["contact"]["customer_id"]
        running.wait_for(lambda: _webhook_events(running, "case.sla_breached"), message="the webhook notified")

        # The timer fires again (a pump that crashed between enqueue and delete): nothing twice.
        hub = running.hub
        hub.timers.arm(case_timers(case_id, created["data"]["contact"]["customer_id"], {"sla": sla_due}))
        running.wait_for(lambda: not hub.timers.due(clock.now, 10) and _drained(running), message="the repeat fired")
        assert len([e for e in running.outbox() if e["type"] == "case.sla_breached"]) == 1
        assert len(_webhook_events(running, "case.sla_breached")) == 1
    finally:
        runtime.stop()
