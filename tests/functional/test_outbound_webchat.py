"""The web chat round trip through HTTP on the embedded hub: a visitor writes, the hub answers
through `POST /v1/messages`, the widget fetches the answer with its visitor token, and the
outbound contact shows where it went and its status."""

from __future__ import annotations

import json

from tests.functional.conftest import API_KEY


def _visitor_message(text: str = "Hallo, wo bleibt mein Paket?", visitor: str = "v-123", message: str = "m-1") -> bytes:
    return json.dumps({"site_id": "acme", "visitor_id": visitor, "message_id": message, "text": text}).encode()


def _write(running, **kwargs) -> dict:
    answer = running.post("/webhooks/webchat", _visitor_message(**kwargs), {"Content-Type": "application/json"})
    assert answer.status == 202, answer.body
    return answer.json()


def _send(running, body: dict, headers: dict | None = None):
    return running.request("POST", "/v1/messages", json.dumps(body).encode(),
                           {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json", **(headers or {})})


def _customer_of(running, visitor: str = "v-123") -> str:
    found = running.wait_for(lambda: running.api(f"/v1/customers?identifier=webchat:acme/{visitor}").json()["data"],
                             message="the visitor's customer")
    customer_id = found[0]["id"]
    # The customer is created a moment before its first contact is committed.
    running.wait_for(lambda: running.api(f"/v1/customers/{customer_id}/contacts").json()["data"],
                     message="the visitor's contact")
    return customer_id


def _poll(running, token: str | None, visitor: str = "v-123", after: str | None = None):
    query = f"site_id=acme&visitor_id={visitor}" + (f"&after={after}" if after else "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return running.request("GET", f"/webhooks/webchat/messages?{query}", headers=headers)


def test_an_api_reply_reaches_the_widget_and_is_an_outbound_contact_on_the_case(running):
    token = _write(running)["visitor_token"]
    customer_id = _customer_of(running)

    sent = _send(running, {"to": {"customer_id": customer_id}, "channel": "webchat", "text": "Ihr Paket kommt morgen."})

    assert sent.status == 202, sent.body
    data = sent.json()["data"]
    assert (data["status"], data["channel"], data["provider"], data["account"], data["to"]) == (
        "queued", "webchat", "webchat", "acme", "v-123")
    fetched = running.wait_for(lambda: _poll(running, token).json()["data"], message="the reply in the outbox")
    assert [m["text"] for m in fetched] == ["Ihr Paket kommt morgen."]
    assert fetched[0]["id"] == data["id"]
    contact = running.wait_for(lambda: (c := running.api(f"/v1/contacts/{data['id']}").json())["status"] == "delivered"
                               and c, message="the delivered status")
    assert contact["direction"] == "outbound"
    assert [change["status"] for change in contact["status_history"]] == ["queued", "sent", "delivered"]
    timeline = running.api(f"/v1/customers/{customer_id}/contacts").json()["data"]
    assert [c["direction"] for c in timeline] == ["outbound", "inbound"]
    assert timeline[0]["case_id"] == timeline[1]["case_id"]


def test_polling_returns_only_what_is_newer_than_the_cursor(running):
    token = _write(running)["visitor_token"]
    customer_id = _customer_of(running)
    first = _send(running, {"to": {"customer_id": customer_id}, "channel": "webchat", "text": "Eins"}).json()["data"]
    running.wait_for(lambda: _poll(running, token).json()["data"], message="the first reply")
    _send(running, {"to": {"customer_id": customer_id}, "channel": "webchat", "text": "Zwei"})

    newer = running.wait_for(lambda: _poll(running, token, after=first["id"]).json()["data"], message="the second")

    assert [m["text"] for m in newer] == ["Zwei"]
    assert _poll(running, token, after=newer[0]["id"]).json() == {"data": [], "cursor": newer[0]["id"]}


def test_the_polling_route_refuses_a_missing_or_foreign_token(running):
    mine = _write(running)["visitor_token"]
    theirs = _write(running, visitor="v-999", message="m-9")["visitor_token"]

    assert _poll(running, None).status == 401
    assert _poll(running, theirs).status == 401
    assert _poll(running, mine).status == 200
    assert _poll(running, mine, visitor="../x").status == 400


def test_the_same_idempotency_key_returns_the_same_message_and_sends_once(running):
    token = _write(running)["visitor_token"]
    customer_id = _customer_of(running)
    body = {"to": {"customer_id": customer_id}, "channel": "webchat", "text": "Nur einmal"}

    first = _send(running, body, {"Idempotency-Key": "order-42-update"})
    running.wait_for(lambda: _poll(running, token).json()["data"], message="the reply")
    again = _send(running, body, {"Idempotency-Key": "order-42-update"})

    assert first.status == 202 and again.status == 200
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    assert running.wait_for(lambda: running.hub.outbound_queue.depth() == 0, message="the queue drained")
    assert [m["text"] for m in _poll(running, token).json()["data"]] == ["Nur einmal"]


def test_bad_requests_name_the_field_and_queue_nothing(running):
    _write(running)
    customer_id = _customer_of(running)
    cases = [
        ({"to": {"customer_id": customer_id}, "text": "x", "colour": "red"}, 422, "colour"),
        ({"to": {"customer_id": customer_id}, "channel": "webchat", "text": "x" * 10_001}, 422, "text"),
        ({"to": {"customer_id": customer_id}, "channel": "webchat", "text": "x",
          "attachments": [{"url": "http://169.254.169.254/latest"}]}, 422, "attachments"),
        ({"to": {"customer_id": customer_id}, "channel": "webchat", "text": "x",
          "attachments": [{"url": "file:///etc/passwd"}]}, 422, "attachments"),
        ({"to": {"customer_id": "cus_01JAAAAAAAAAAAAAAAAAAAAAAA"}, "channel": "webchat", "text": "x"}, 404, "not found"),
        ({"to": {"customer_id": customer_id, "case_id": "case_x"}, "text": "x"}, 422, "exactly one"),
        ({"to": {"customer_id": customer_id}, "channel": "sms", "text": "x"}, 422, "no_reachable_channel"),
    ]
    for body, status, named in cases:
        answer = _send(running, body)
        assert answer.status == status, (body, answer.body)
        assert named in answer.body.decode(), (named, answer.body)
    assert running.hub.outbound_queue.depth() == 0


def test_an_idempotency_key_names_a_new_message_after_24_hours_and_never_overwrites_the_first(tmp_path, receiver):
    from datetime import datetime, timedelta, timezone

    from tests.functional.conftest import RunningHub, start_hub

    now = [datetime.now(timezone.utc)]
    runtime = start_hub(tmp_path, receiver, clock=lambda: now[0]).start()
    try:
        running = RunningHub(runtime, receiver, tmp_path / "data")
        token = _write(running)["visitor_token"]
        customer_id = _customer_of(running)
        body = {"to": {"customer_id": customer_id}, "channel": "webchat", "text": "Status: versandt"}
        first = _send(running, body, {"Idempotency-Key": "daily-status"}).json()["data"]
        running.wait_for(lambda: running.api(f"/v1/contacts/{first['id']}").json()["status"] == "delivered",
                         message="the first message delivered")
        now[0] += timedelta(hours=25)

        second = _send(running, body, {"Idempotency-Key": "daily-status"})
        running.wait_for(lambda: len(_poll(running, token).json()["data"]) == 2, message="the second message")
        first_after = running.api(f"/v1/contacts/{first['id']}").json()
    finally:
        runtime.stop()

    assert second.status == 202 and second.json()["data"]["id"] != first["id"]
    assert first_after["status"] == "delivered"
    assert [c["status"] for c in first_after["status_history"]] == ["queued", "sent", "delivered"]


def test_erasure_removes_the_replies_the_outbox_and_the_sent_links(running):
    token = _write(running)["visitor_token"]
    customer_id = _customer_of(running)
    sent = _send(running, {"to": {"customer_id": customer_id}, "channel": "webchat", "text": "Ihre Adresse: ..."})
    message_id = sent.json()["data"]["id"]
    running.wait_for(lambda: _poll(running, token).json()["data"], message="the reply")
    exported = running.api(f"/v1/customers/{customer_id}/export").json()
    assert message_id in json.dumps(exported)

    erased = running.request("DELETE", f"/v1/customers/{customer_id}", headers={"Authorization": f"Bearer {API_KEY}"})

    assert erased.status == 200, erased.body
    assert running.api(f"/v1/contacts/{message_id}").status == 404
    assert _poll(running, token).json()["data"] == []
    assert running.hub.store.find_sent("webchat", message_id) is None


def test_a_hub_that_cannot_sign_visitor_tokens_still_accepts_the_message(running, monkeypatch):
    from chalicelib.errors import ConfigError

    def unsigned(site_id, visitor_id):
        raise ConfigError("media.link_secret: required on AWS when media.public_url is set (hub links)")

    monkeypatch.setattr(running.hub.visitor_tokens, "issue", unsigned)
    answer = running.post("/webhooks/webchat", _visitor_message(), {"Content-Type": "application/json"})

    assert answer.status == 202 and "visitor_token" not in answer.json()
    assert _customer_of(running)
