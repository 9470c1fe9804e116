"""Fault injection through the real workers (embedded runtime): a scripted vendor fails in every
way a vendor fails, and the hub delivers exactly once, in order, or dead-letters with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.local.runtime import EmbeddedRuntime
from chalicelib.settings import Settings
from tests.functional.conftest import API_KEY, RunningHub, make_config
from tests.functional.test_ingest_edges import twilio_request
from tests.support.receiver import Answer

ROOT = Path(__file__).resolve().parents[2]
DELIVERY = """delivery:
  attempts_per_invocation: 4
  max_inline_wait_seconds: 2
  max_receives: 30
  circuit_failure_threshold: 2
  circuit_cooldown_seconds: 1
  circuit_max_cooldown_seconds: 2
"""


@pytest.fixture
def faulty(tmp_path, receiver):
    config = make_config(tmp_path / "hub.yaml", receiver.url)
    text = config.read_text()
    start = text.index("delivery:")
    end = text.index("processing:")
    config.write_text(text[:start] + DELIVERY + text[end:])
    settings = Settings(config_path=str(config), data_dir=str(tmp_path / "data"), port=0, local_workers=1)
    runtime = EmbeddedRuntime(settings, port=0).start()
    try:
        yield RunningHub(runtime, receiver, tmp_path / "data"), config
    finally:
        runtime.stop()


def sms(running, n: int, sender: str = "+16505550100") -> None:
    params = {"MessageSid": f"SM{n:032d}", "AccountSid": "AC" + "a" * 32, "From": sender, "To": "+14155550100",
              "Body": f"message {n}", "NumMedia": "0"}
    path, data, headers = twilio_request(params)
    assert running.post(path, data, headers).status == 200


def crm_answers(running) -> list[tuple[str, int]]:
    """(contact text, status answered) of every request the CRM got, in order."""
    return [(json.loads(r.body)["data"]["contact"]["text"], r.answered) for r in running.receiver.requests
            if json.loads(r.body)["type"] == "contact.created"]


def api(running, method: str, path: str):
    return running.request(method, path, b"" if method == "POST" else None,
                           {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})


def test_three_server_errors_then_success_deliver_exactly_once(faulty):
    running, _ = faulty
    running.receiver.script = [Answer(500), Answer(502), Answer(503)]

    sms(running, 1)
    running.wait_for(lambda: running.settled() and (1, 200) in [(1, s) for _, s in crm_answers(running)],
                     timeout=20, message="delivery after the failures")

    answers = crm_answers(running)
    assert [status for _, status in answers] == [500, 502, 503, 200]
    assert len({r.headers["webhook-id"] for r in running.receiver.requests}) == 1, "one delivery id throughout"
    contact_id = json.loads(running.receiver.requests[-1].body)["data"]["contact"]["id"]
    crm = [d for d in api(running, "GET", f"/v1/contacts/{contact_id}").json()["deliveries"] if d["destination"] == "crm"]
    assert (crm[0]["status"], crm[0]["attempts"]) == ("delivered", 4)


def test_a_rate_limit_is_honoured_before_the_next_attempt(faulty):
    running, _ = faulty
    running.receiver.script = [Answer(429, b'{"error": "slow down"}', {"Retry-After": "1"})]

    sms(running, 2)
    running.wait_for(lambda: running.settled() and len(running.receiver.requests) >= 2, timeout=20,
                     message="the retry after the rate limit")

    first, second = running.receiver.requests[:2]
    assert (first.answered, second.answered) == (429, 200)
    assert second.at - first.at >= 1.0


def test_a_permanent_rejection_is_dead_at_once_with_the_vendors_reason_and_replays(faulty):
    running, config = faulty
    running.receiver.default = Answer(400, b'{"error": "field priority is invalid"}')

    sms(running, 3)
    letters = running.wait_for(lambda: api(running, "GET", "/v1/dead-letters?destination=crm").json()["data"],
                               timeout=20, message="the dead letter")

    assert len(running.receiver.requests) == 1, "a permanent rejection is not retried"
    [letter] = letters
    assert letter["destination"] == "crm" and letter["kind"] == "contact" and letter["attempts"] == 1
    assert 'field priority is invalid' in letter["reason"]

    running.receiver.default = Answer(200, b'{"ok": true}')
    replayed = api(running, "POST", f"/v1/dead-letters/{letter['id']}/replay")
    running.wait_for(lambda: running.settled() and len(running.receiver.requests) == 2, timeout=20, message="replay")

    assert replayed.status == 202
    assert running.receiver.requests[-1].answered == 200
    assert running.receiver.requests[0].headers["webhook-id"] == running.receiver.requests[1].headers["webhook-id"]
    assert api(running, "GET", "/v1/dead-letters").json()["data"] == []
    assert api(running, "POST", f"/v1/dead-letters/{letter['id']}/replay").status == 404

    # The CLI replays by destination, on the same data directory.
    running.receiver.default = Answer(400, b'{"error": "still invalid"}')
    sms(running, 4)
    running.wait_for(lambda: api(running, "GET", "/v1/dead-letters").json()["data"], timeout=20, message="dead again")
    running.receiver.default = Answer(200, b'{"ok": true}')
    cli = subprocess.run(
        [sys.executable, "-m", "chalicelib.cli", "dead-letters", "replay", "--destination", "crm"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={**os.environ, "HUB_CONFIG": str(config), "HUB_DATA_DIR": str(running.data_dir)},
    )
    assert cli.returncode == 0, cli.stderr
    assert "queued 1 dead letters again for crm" in cli.stdout
    running.wait_for(lambda: running.receiver.requests[-1].answered == 200 and running.settled(), timeout=20,
                     message="the CLI replay")


def test_a_long_outage_opens_the_circuit_loses_nothing_and_delivers_in_order_when_it_ends(faulty):
    running, _ = faulty
    running.receiver.default = Answer(503, b'{"error": "maintenance"}')

    for n in (10, 11, 12):
        sms(running, n)
    running.wait_for(lambda: len(running.receiver.requests) >= 4, timeout=20, message="the outage to be noticed")
    during = len(running.receiver.requests)
    running.wait_for(lambda: len(running.receiver.requests) > during, timeout=20, message="a half-open trial")
    calls_per_second = (len(running.receiver.requests) - during)
    running.receiver.default = Answer(200, b'{"ok": true}')
    running.wait_for(lambda: running.settled() and sum(s == 200 for _, s in crm_answers(running)) == 3,
                     timeout=40, message="everything delivered once the vendor is back")

    delivered = [text for text, status in crm_answers(running) if status == 200]
    assert delivered == ["message 10", "message 11", "message 12"], "in order per customer and case"
    assert api(running, "GET", "/v1/dead-letters").json()["data"] == []
    assert calls_per_second <= 3, "while open, the vendor sees single trials, not every queued job"
