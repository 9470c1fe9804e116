"""Shared steps of the business-event functional tests: an embedded hub on a fake clock whose
Twilio sender is the recording fake (SMS and WhatsApp), customers made by inbound messages,
events posted through `POST /v1/events`, and waiting until every queue is drained."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chalicelib.bootstrap import Hub
from chalicelib.domain.models import Channel
from chalicelib.local.runtime import EmbeddedRuntime
from chalicelib.settings import Settings
from tests.functional.conftest import (
    API_KEY,
    RunningHub,
    make_config,
    merged,
    outbound_config,
)
from tests.functional.test_ingest_edges import twilio_request
from tests.support.fake_sender import FakeSender
from tests.support.fakes import Clock

PRODUCER_KEY = "producer-key"
OPERATOR_KEY = "operator-key"
NUMBER = "+14155550100"
#: A Monday morning, 08:00 UTC.
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class RecordingSender(FakeSender):
    """The recording fake, sending SMS and WhatsApp from the test number (`NUMBER`) to a phone
    identifier, as Twilio's sender does for a customer never heard on the channel."""

    def default_account(self, channel: Channel) -> str | None:
        return NUMBER if channel in (Channel.SMS, Channel.WHATSAPP) else None

    def sends_from(self, channel: Channel, account: str) -> bool:
        return channel in (Channel.SMS, Channel.WHATSAPP) and account.removeprefix("whatsapp:") == NUMBER

    def recipient_for(self, channel: Channel, identifiers) -> str | None:
        phone = next((i.value for i in identifiers if i.kind == "phone"), None)
        if phone is None or channel not in (Channel.SMS, Channel.WHATSAPP):
            return None
        return f"whatsapp:{phone}" if channel == Channel.WHATSAPP else phone


def _key(name: str, key: str, scopes: list[str]) -> dict:
    return {"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": scopes}


API_KEYS = [
    _key("tests", API_KEY, ["customers:read", "customers:write", "operations", "messages:send"]),
    _key("producer", PRODUCER_KEY, ["events:write"]),
    _key("operator", OPERATOR_KEY, ["operations"]),
]


@contextlib.contextmanager
def event_hub(tmp_path: Path, receiver, monkeypatch, extra: dict, *, start: datetime = START
              ) -> Iterator[tuple[RunningHub, Clock]]:
    """The embedded hub with `extra` merged into the test configuration, on a clock that moves
    only when the test says; every Twilio send goes to `FakeSender.sent` (emptied first)."""
    from chalicelib.adapters.channels.registry import CHANNELS

    monkeypatch.setattr(CHANNELS["twilio"], "sender", "tests.functional.event_steps:RecordingSender")
    monkeypatch.setattr(FakeSender, "sent", [])
    # Twilio's sending settings (numbers for SMS and WhatsApp); its sender is the fake.
    sending = {"channels": {"twilio": outbound_config(receiver.url)["channels"]["twilio"]}}
    config = make_config(tmp_path / "hub.yaml", receiver.url, extra=merged(sending, {"api_keys": API_KEYS, **extra}))
    clock = Clock(start)
    runtime = EmbeddedRuntime(
        hub=Hub(Settings(config_path=str(config), data_dir=str(tmp_path / "data"), port=0, local_workers=1),
                clock=clock),
        port=0,
    ).start()
    try:
        yield RunningHub(runtime, receiver, tmp_path / "data"), clock
    finally:
        runtime.stop()


def drained(running: RunningHub) -> bool:
    hub = running.hub
    return all(queue.depth() == 0 for queue in (hub.inbound_queue, hub.delivery_queue, hub.events_queue,
                                                  hub.outbound_queue))


def settle(running: RunningHub, message: str = "every queue drained") -> None:
    running.wait_for(lambda: drained(running), message=message)


def inbound(running: RunningHub, sid: str, phone: str, text: str, *, whatsapp: bool = False) -> str:
    """A Twilio message from `phone` (on WhatsApp when asked); answers the customer id."""
    prefix = "whatsapp:" if whatsapp else ""
    path, data, headers = twilio_request({"MessageSid": sid, "AccountSid": "AC" + "a" * 32, "From": prefix + phone,
                                          "To": prefix + NUMBER, "Body": text, "NumMedia": "0"})
    assert running.post(path, data, headers).status == 200
    settle(running, f"{sid} processed")
    [event] = [e for e in running.outbox() if e["data"]["contact"]["provider_message_id"] == sid]
    return event["data"]["contact"]["customer_id"]


def post_events(running: RunningHub, body, *, key: str = PRODUCER_KEY, path: str = "/v1/events"):
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    return running.post(path, json.dumps(body).encode(), headers)


def event(type_: str, id_: str, at: datetime, data: dict, customer: dict | None = None) -> dict:
    return {"type": type_, "id": id_, "occurred_at": (at - timedelta(minutes=1)).isoformat(), "customer": customer,
            "data": data}


def timeline(running: RunningHub, customer_id: str) -> list[dict]:
    answer = running.api(f"/v1/customers/{customer_id}/contacts?limit=100")
    assert answer.status == 200, answer.body
    return answer.json()["data"]


def sent_to(phone: str) -> list:
    """What the fake sender sent to `phone`, on any channel, in order."""
    return [m for m in FakeSender.sent if m.to.removeprefix("whatsapp:") == phone]
