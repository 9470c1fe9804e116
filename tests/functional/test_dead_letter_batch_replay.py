"""`POST /v1/dead-letters/replay`: a destination's dead letters queued again in bounded batches,
through HTTP on the embedded hub (the console's "Replay all" repeats it while `more`)."""

from __future__ import annotations

import json

from tests.functional.conftest import API_KEY
from tests.support.receiver import Answer

KEY = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


def _chat(running, n: int) -> None:
    body = json.dumps({"site_id": "acme", "visitor_id": f"v-{n}", "message_id": f"m-{n}", "text": f"Frage {n}"})
    assert running.post("/webhooks/webchat", body.encode(), {"Content-Type": "application/json"}).status == 202


def _replay(running, body: dict):
    return running.request("POST", "/v1/dead-letters/replay", json.dumps(body).encode(), KEY)


def test_a_destinations_dead_letters_are_replayed_in_batches_until_none_is_left(running):
    running.receiver.default = Answer(400, b'{"error": "refused"}')
    for n in range(3):
        _chat(running, n)
    running.wait_for(lambda: len(running.api("/v1/dead-letters?destination=crm").json()["data"]) == 3, timeout=20,
                     message="three dead letters")
    running.receiver.default = Answer(200, b'{"ok": true}')

    first = _replay(running, {"destination": "crm", "limit": 2})
    second = _replay(running, {"destination": "crm", "limit": 2})
    third = _replay(running, {"destination": "crm"})

    assert (first.status, first.json()) == (202, {"destination": "crm", "queued": 2, "more": True})
    assert second.json() == {"destination": "crm", "queued": 1, "more": False}
    assert third.json() == {"destination": "crm", "queued": 0, "more": False}
    running.wait_for(lambda: sum(r.answered == 200 for r in running.receiver.requests) == 3, timeout=20,
                     message="three redeliveries")


def test_bad_batch_requests_are_400_naming_the_field(running):
    for body, field in [({}, "destination"), ({"destination": " "}, "destination"),
                        ({"destination": "crm", "limit": 0}, "limit"), ({"destination": "crm", "limit": 51}, "limit"),
                        ({"destination": "crm", "limit": True}, "limit"), ({"destination": "crm", "all": True}, "all")]:
        answer = _replay(running, body)
        assert answer.status == 400, body
        assert answer.json()["error"]["detail"]["field"] == field, body
    assert running.request("POST", "/v1/dead-letters/replay", b"[1]", KEY).status == 400
