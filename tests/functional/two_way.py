"""Shared steps of the two-way functional tests: the embedded hub with one vendor destination
(played by a local fake), Twilio and Meta's WhatsApp sending to a `Receiver` (`provider`), the
generic webhook destination `crm` (on `receiver`) taking case events, and the customer's side:
a signed WhatsApp message (the stored Meta fixture) and a signed Twilio SMS.

A vendor test: start `two_way_hub` with its destination's settings, let the customer write
(`customer_writes_whatsapp`), wait for the case's ticket (`wait_ticket`), then post the vendor's
signed callback (`post_callback`) and look at what the provider fake received
(`wait_whatsapp_sends`), what the case became (`case_view`) and what `crm` heard (`case_events`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

from tests.functional.conftest import (
    API_KEY,
    TWILIO_TOKEN,
    WEBHOOK_SECRET,
    HttpResult,
    RunningHub,
    merged,
    outbound_config,
    start_hub,
)
from tests.functional.outbound import inbound_contact, requests_to, whatsapp_accepted
from tests.support.fakes import Clock
from tests.support.fixtures import load
from tests.support.receiver import Received, Receiver

#: tests/fixtures/meta/whatsapp_text: written at 2026-01-01T00:00:00Z by +1 650 555 1234.
WRITTEN = datetime(2026, 1, 1, 0, 0, tzinfo=timezone.utc)
CUSTOMER_WA_ID = "16505551234"
CUSTOMER_PHONE = "+16505551234"
INBOUND_WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQUVCMDAwMDAwMDAwMDAwMD1A="
#: What the Meta fake answers to the hub's WhatsApp sends.
OUTBOUND_WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI0QUFCQ0RFRjAxMjM0NTY3OAA="
WHATSAPP_MESSAGES = "/messages"
#: The Twilio webhook URL the hub's configuration names (what Twilio signs).
TWILIO_URL = "https://hub.example.com/webhooks/twilio"


@contextlib.contextmanager
def two_way_hub(tmp_path: Path, receiver: Receiver, provider: Receiver, destination: dict, *,
                clock: Clock | None = None, cases: dict | None = None, extra: dict | None = None,
                routed_to: list[str] | None = None) -> Iterator[RunningHub]:
    """The embedded hub with `destination` (a `destinations[]` entry, named as the test likes)
    beside `outbox` and the webhook `crm`, every contact routed to all of them unless `routed_to`
    names some; its clock (a `Clock`) starts half a minute after the stored WhatsApp message."""
    clock = clock or Clock(WRITTEN + timedelta(seconds=30))
    destinations = [
        {"name": "outbox", "type": "outbox", "path": "outbox.jsonl", "case_events": False},
        {"name": "crm", "type": "webhook", "url": receiver.url, "secrets": [WEBHOOK_SECRET], "timeout_seconds": 5},
        destination,
    ]
    config = merged(outbound_config(provider.url), {"destinations": destinations})
    if cases:
        config["cases"] = cases
    if routed_to is not None:
        config = merged(config, {"routing": {"default": {"destinations": routed_to}}})
    config = merged(config, extra or {})
    runtime = start_hub(tmp_path, receiver, extra=config, clock=clock).start()
    try:
        yield RunningHub(runtime, receiver, tmp_path / "data")
    finally:
        runtime.stop()


# --- the customer ----------------------------------------------------------------------------------


def customer_writes_whatsapp(hub: RunningHub) -> dict:
    """The stored, signed WhatsApp Cloud API text message; the contact the hub made of it."""
    fixture = load("meta", "whatsapp_text")
    answer = hub.post(fixture.path, fixture.body, fixture.headers)
    assert answer.status == 200, answer.body
    return inbound_contact(hub, INBOUND_WAMID)


def customer_writes_sms(hub: RunningHub, text: str, *, message_sid: str = "SM" + "d" * 32,
                        sender: str = CUSTOMER_PHONE) -> dict:
    """An SMS from the customer's number, signed as Twilio signs (twilio's RequestValidator)."""
    from twilio.request_validator import RequestValidator

    params = {"MessageSid": message_sid, "SmsMessageSid": message_sid, "AccountSid": "AC" + "a" * 32,
              "From": sender, "To": "+14155550100", "Body": text, "NumMedia": "0", "ApiVersion": "2010-04-01"}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(TWILIO_URL, params)
    answer = hub.post("/webhooks/twilio", urlencode(params).encode(),
                      {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})
    assert answer.status == 200, answer.body
    return inbound_contact(hub, message_sid)


# --- the hub ---------------------------------------------------------------------------------------


def case_view(hub: RunningHub, case_id: str) -> dict:
    answer = hub.api(f"/v1/cases/{case_id}")
    assert answer.status == 200, answer.body
    return answer.json()


def wait_ticket(hub: RunningHub, case_id: str, destination: str) -> str:
    """The vendor's reference for the case's ticket, once the deliverer recorded it."""
    return hub.wait_for(lambda: (case_view(hub, case_id).get("external_refs") or {}).get(destination, {}).get("ref"),
                        message=f"the {destination} ticket of {case_id}")


def post_callback(hub: RunningHub, destination: str, body: bytes, headers: dict) -> HttpResult:
    return hub.post(f"/callbacks/{destination}", body, headers)


def case_contacts(hub: RunningHub, customer_id: str) -> list[dict]:
    answer = hub.api(f"/v1/customers/{customer_id}/contacts?limit=50")
    assert answer.status == 200, answer.body
    return answer.json()["data"]


def outbound_contacts(hub: RunningHub, customer_id: str) -> list[dict]:
    return [c for c in case_contacts(hub, customer_id) if c["direction"] == "outbound"]


def settle(hub: RunningHub) -> None:
    """Every queue empty: callbacks processed, messages sent, deliveries made."""
    hub.wait_for(lambda: hub.settled() and hub.hub.outbound_queue.depth() == 0, message="the queues to drain")


# --- the providers and the webhook destination ------------------------------------------------------


def answer_whatsapp_sends(provider: Receiver, count: int = 1) -> None:
    """Script the Meta fake to accept the next `count` sends."""
    provider.script.extend(whatsapp_accepted(OUTBOUND_WAMID.replace("A=", f"{i}=")) for i in range(count))


def whatsapp_sends(provider: Receiver) -> list[dict]:
    """The WhatsApp messages the hub sent, as JSON bodies."""
    return [json.loads(r.body) for r in requests_to(provider, WHATSAPP_MESSAGES)]


def wait_whatsapp_sends(hub: RunningHub, provider: Receiver, count: int = 1) -> list[dict]:
    return hub.wait_for(lambda: len(found := whatsapp_sends(provider)) >= count and found,
                        message=f"{count} WhatsApp send(s)")


def case_events(receiver: Receiver, event_type: str | None = None) -> list[dict]:
    """What the webhook destination `crm` received of case events (`case.*`), in order."""
    found = []
    for request in receiver.requests:
        if not request.path.startswith("/hooks"):
            continue
        try:
            payload = json.loads(request.body)
        except ValueError:
            continue
        kind = payload.get("type", "")
        if kind.startswith("case.") and (event_type is None or kind == event_type):
            found.append(payload)
    return found


def wait_case_event(hub: RunningHub, receiver: Receiver, event_type: str) -> dict:
    return hub.wait_for(lambda: case_events(receiver, event_type)[-1:] and case_events(receiver, event_type)[-1],
                        message=f"a {event_type} event")


def api_headers() -> dict:
    return {"Authorization": f"Bearer {API_KEY}"}


def requests_of(fake: Receiver, method: str, path_part: str) -> list[Received]:
    return [r for r in fake.requests if r.method == method and path_part in r.path]
