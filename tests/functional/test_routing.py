"""Routing through HTTP and the workers, with the README's example rules (docs/examples/routing.yaml)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from chalicelib.bootstrap import Hub
from chalicelib.local.runtime import EmbeddedRuntime
from chalicelib.settings import Settings
from tests.functional.conftest import API_KEY, RunningHub, make_config
from tests.functional.test_ingest_edges import twilio_request
from tests.support.fakes import Clock

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_RULES = (ROOT / "docs" / "examples" / "routing.yaml").read_text()
# Monday 2026-11-23, 10:00 in Berlin.
MONDAY_MORNING = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def routed(tmp_path, receiver):
    config = make_config(tmp_path / "hub.yaml", receiver.url)
    config.write_text(config.read_text() + EXAMPLE_RULES)
    clock = Clock(MONDAY_MORNING)
    hub = Hub(Settings(config_path=str(config), data_dir=str(tmp_path / "data"), port=0, local_workers=1), clock=clock)
    runtime = EmbeddedRuntime(hub=hub, port=0).start()
    try:
        yield RunningHub(runtime, receiver, tmp_path / "data"), clock, config
    finally:
        runtime.stop()


def sms(running, sid: str, body: str, *, sender: str = "+16505550100", media: str | None = None) -> None:
    params = {"MessageSid": sid, "AccountSid": "AC" + "a" * 32, "From": sender, "To": "+14155550100", "Body": body,
              "NumMedia": "0"}
    if media:
        params |= {"NumMedia": "1", "MediaUrl0": media, "MediaContentType0": "image/jpeg"}
    path, data, headers = twilio_request(params)
    assert running.post(path, data, headers).status == 200
    running.wait_for(running.settled, message=f"{sid} processed")


def delivered(running) -> list[dict]:
    return [event["data"]["contact"] for event in running.outbox() if event["type"] == "contact.created"]


def api(running, method: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    return running.request(method, path, data, {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})


def sid(n: int) -> str:
    return f"SM{n:032d}"


def test_the_example_rules_route_outages_vips_repeat_contacts_and_out_of_hours_messages(routed):
    running, clock, _ = routed

    sms(running, sid(1), "Seit heute Morgen haben wir eine Störung, das Internet geht nicht")
    [outage] = delivered(running)
    customer_id = outage["customer_id"]
    assert (outage["routing"]["queue"], outage["routing"]["priority"]) == ("technical", "high")
    assert outage["routing"]["skills"] == {"german": 3, "network": 2}
    assert outage["enrichment"]["language"]["code"] == "de"
    assert outage["enrichment"]["intent"]["intents"] == ["outage"]
    assert {(t["rule"], t["matched"]) for t in outage["routing"]["trace"]} >= {("german-outage", True), ("vip", False)}

    assert api(running, "PATCH", f"/v1/customers/{customer_id}/attributes",
               {"source": "crm", "attributes": {"tier": "gold", "language": "de"}}).status == 200
    clock.advance(3600)
    sms(running, sid(2), "ok")
    vip = delivered(running)[-1]
    assert (vip["routing"]["queue"], vip["routing"]["priority"], vip["routing"]["tags"]) == ("vip", "high", ["vip"])
    assert vip["enrichment"]["history"]["last_7_days"] == {"sms": 2}
    assert vip["enrichment"]["profile"]["tier"] == "gold"

    clock.advance(10 * 3600)  # 21:00 in Berlin: the third contact within 48 h, out of hours
    sms(running, sid(3), "Hallo? Immer noch nichts")
    third = delivered(running)[-1]["routing"]
    assert third["priority"] == "urgent"  # vip (high), escalated one step
    assert third["tags"] == ["vip", "repeat-contact", "out-of-hours"]
    [reply] = third["replies"]
    assert (reply["template"], reply["language"]) == ("out_of_hours", "de")
    assert reply["text"] == ("Hallo, danke für Ihre Nachricht! Wir sind ab 2026-11-24 08:00 (Europe/Berlin) "
                             "wieder für Sie da.")


def test_unknown_senders_with_attachments_wait_in_the_exception_queue_until_released(routed):
    running, _, _ = routed

    sms(running, sid(10), "see attached", sender="+16505550177", media="https://api.twilio.com/media/ME1")

    assert delivered(running) == []
    queue = api(running, "GET", "/v1/exceptions").json()["data"]
    [entry] = queue
    assert entry["reason"] == "unknown sender with attachments (rule unknown-sender-with-attachments)"
    contact_id = entry["contact_id"]
    assert api(running, "GET", f"/v1/contacts/{contact_id}").json()["routing"]["parked"] == entry["reason"]

    bad = api(running, "POST", f"/v1/exceptions/{contact_id}/resolve", {"destinations": ["zendesk"]})
    released = api(running, "POST", f"/v1/exceptions/{contact_id}/resolve",
                   {"queue": "fraud-check", "priority": "high", "destinations": ["outbox"], "note": "checked"})
    again = api(running, "POST", f"/v1/exceptions/{contact_id}/resolve", {})
    running.wait_for(lambda: running.settled() and delivered(running), message="the released contact")

    assert bad.status == 400 and "zendesk" in bad.json()["error"]["message"]
    assert released.status == again.status == 200, released.body
    [contact] = delivered(running)
    assert (contact["routing"]["queue"], contact["routing"]["priority"], contact["routing"]["parked"]) == (
        "fraud-check", "high", None)
    assert contact["routing"]["trace"][-1]["rule"] == "exception-queue"
    assert "released by api:tests" in contact["routing"]["trace"][-1]["reason"]
    assert api(running, "GET", "/v1/exceptions").json()["data"] == []
    assert api(running, "POST", "/v1/exceptions/ct_nope/resolve", {}).status == 404


def test_explain_shows_the_decision_without_storing_or_sending_anything(routed):
    running, _, config = routed
    body = {"contact": {"channel": "whatsapp", "text": "Dringend: Störung, kein Internet seit gestern"}}

    explained = api(running, "POST", "/v1/routing/explain", body)
    malformed = api(running, "POST", "/v1/routing/explain", {"contact": {"channel": "fax"}})

    assert explained.status == 200, explained.body
    decision = explained.json()["decision"]
    assert (decision["queue"], decision["priority"]) == ("technical", "high")
    assert explained.json()["enrichment"]["intent"]["urgent"] is True
    assert malformed.status == 400 and malformed.json()["error"]["message"].startswith("contact.channel")
    assert running.outbox() == [] and running.hub.store.list_parked(limit=5).items == []

    contact_file = config.parent / "contact.json"
    contact_file.write_text(json.dumps(body["contact"]))
    cli = subprocess.run(
        [sys.executable, "-m", "chalicelib.cli", "route", "--explain", str(contact_file), "--config", str(config)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={"PATH": "/usr/bin:/bin", "HUB_DATA_DIR": str(config.parent / "cli-data")},
    )
    assert cli.returncode == 0, cli.stderr
    assert "queue technical" in cli.stdout
    assert "MATCH german-outage: priority high; queue technical" in cli.stdout
    assert "  -   vip: attribute tier not in ['gold', 'vip']" in cli.stdout


def test_a_rule_that_does_not_compile_stops_the_hub_from_starting(tmp_path, receiver):
    config = make_config(tmp_path / "hub.yaml", receiver.url)
    config.write_text(config.read_text() + EXAMPLE_RULES.replace("{intent: outage}", "{intent: outage, typo: 1}"))
    hub = Hub(Settings(config_path=str(config), data_dir=str(tmp_path / "data"), port=0, local_workers=1))

    from chalicelib.errors import ConfigError

    with pytest.raises(ConfigError, match=r"routing.rules\[2\] \(german-outage\).when\[1\]"):
        EmbeddedRuntime(hub=hub, port=0).start()
    hub.close()


def test_history_counts_span_the_days_and_channels(routed):
    running, clock, _ = routed
    sms(running, sid(20), "hi", sender="+16505550188")
    clock.advance(timedelta(days=10).total_seconds())
    sms(running, sid(21), "hi again", sender="+16505550188")

    history = delivered(running)[-1]["enrichment"]["history"]

    assert history["last_7_days"] == {"sms": 1} and history["last_30_days"] == {"sms": 2}
    assert history["previous_contact"] == {"at": "2026-11-23T09:00:00Z", "channel": "sms"}
