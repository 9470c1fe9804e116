"""Shared steps of the outbound functional tests: a hub whose providers are a local `Receiver`
(`provider`), the send API, the outbound contact as the API shows it, and the provider's requests.

Each provider's `api_base_url` points at the same fake; a test tells its requests apart by path.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

from tests.functional.conftest import API_KEY, META_SECRET, RunningHub, outbound_config, start_hub
from tests.support.receiver import Answer, Received, Receiver


@contextlib.contextmanager
def outbound_hub(tmp_path: Path, receiver: Receiver, provider: Receiver, *, clock=None, max_receives: int = 3,
                 extra: dict | None = None, **sections: dict) -> Iterator[RunningHub]:
    """The embedded hub with every configured provider sending to `provider`."""
    from tests.functional.conftest import merged

    config = merged(outbound_config(provider.url, **sections), extra or {})
    runtime = start_hub(tmp_path, receiver, extra=config, clock=clock, max_receives=max_receives).start()
    try:
        yield RunningHub(runtime, receiver, tmp_path / "data")
    finally:
        runtime.stop()


def send(running: RunningHub, body: dict, headers: dict | None = None):
    return running.request("POST", "/v1/messages", json.dumps(body).encode(),
                           {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json", **(headers or {})})


def accepted(running: RunningHub, body: dict, headers: dict | None = None) -> dict:
    answer = send(running, body, headers)
    assert answer.status == 202, answer.body
    return answer.json()["data"]


def contact(running: RunningHub, contact_id: str) -> dict:
    answer = running.api(f"/v1/contacts/{contact_id}")
    assert answer.status == 200, answer.body
    return answer.json()


def wait_status(running: RunningHub, contact_id: str, status: str) -> dict:
    return running.wait_for(lambda: (c := contact(running, contact_id))["status"] == status and c,
                            message=f"{contact_id} {status}")


def statuses(found: dict) -> list[str]:
    return [change["status"] for change in found["status_history"]]


def inbound_contact(running: RunningHub, provider_message_id: str) -> dict:
    """The contact the hub made of an inbound message, as the outbox destination got it, once
    committed (the delivery is queued just before the commit: the customer's side of it, consent
    and reply targets, is only there after it)."""
    def find():
        return next((e["data"]["contact"] for e in running.outbox()
                     if e["data"].get("contact", {}).get("provider_message_id") == provider_message_id), None)

    found = running.wait_for(find, message=f"the contact of {provider_message_id}")
    running.wait_for(lambda: running.api(f"/v1/contacts/{found['id']}").status == 200,
                     message=f"the commit of {provider_message_id}")
    return found


def requests_to(provider: Receiver, path_part: str) -> list[Received]:
    return [r for r in provider.requests if path_part in r.path]


def wait_requests(running: RunningHub, provider: Receiver, path_part: str, count: int = 1) -> list[Received]:
    return running.wait_for(lambda: len(found := requests_to(provider, path_part)) >= count and found,
                            message=f"{count} request(s) to {path_part}")


def form(received: Received) -> dict[str, list[str]]:
    return parse_qs(received.body.decode(), keep_blank_values=True)


def json_answer(body: dict, status: int = 200, headers: dict | None = None) -> Answer:
    return Answer(status, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})})


def twilio_created(sid: str, to: str = "+14155550101") -> Answer:
    """Twilio's 201 to a create-message request (shape of api_v2010 `api.v2010.account.message`)."""
    return json_answer({"sid": sid, "status": "queued", "to": to, "from": "+14155550100", "num_segments": "1",
                        "account_sid": "AC" + "a" * 32, "body": "…", "error_code": None}, status=201)


def twilio_error(code: int, message: str, status: int = 400) -> Answer:
    return json_answer({"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                        "status": status}, status=status)


def whatsapp_accepted(wamid: str, wa_id: str = "16505551234") -> Answer:
    return json_answer({"messaging_product": "whatsapp", "contacts": [{"input": wa_id, "wa_id": wa_id}],
                        "messages": [{"id": wamid, "message_status": "accepted"}]})


def meta_signed(body: bytes) -> tuple[bytes, dict]:
    """A Meta webhook body signed with the app secret, as Graph signs it (`X-Hub-Signature-256`)."""
    signature = "sha256=" + hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": signature}


def whatsapp_status(wamid: str, status: str, *, at: int, recipient: str = "16505551234") -> bytes:
    """A WhatsApp Cloud API `statuses` webhook (shape of tests/fixtures/meta/whatsapp_status_delivered)."""
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "statuses": [{"id": wamid, "status": status, "timestamp": str(at), "recipient_id": recipient}]}}]}]},
        separators=(",", ":")).encode()
