"""Email through Mailgun on the embedded hub: the customer's mail arrives (a signed route POST),
the hub answers (`messages.mime` to the Mailgun fake, with our Message-ID and the customer's as
In-Reply-To/References), Mailgun's signed `delivered` event comes back, and the customer's answer
to our mail, naming our Message-ID, joins the same case by its thread key."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime, timezone
from email import message_from_bytes
from email.policy import default as modern_policy

import pytest

from chalicelib.adapters.channels.mailgun.adapter import compute_signature
from tests.functional.outbound import accepted, inbound_contact, json_answer, outbound_hub, statuses, wait_requests, wait_status
from tests.functional.test_email_channels import MAILGUN_KEY, SUPPORT, email, mailgun_mime
from tests.support.fakes import Clock
from tests.support.fixtures import FIXTURES
from tests.support.receiver import Receiver

CUSTOMER = "Jana Schmidt <jana.schmidt@example.de>"
MAILGUN_API_KEY = "key-test-mailgun-api"
MAILGUN = {"webhook_signing_keys": [MAILGUN_KEY], "own_addresses": [SUPPORT, "@acme.example"],
           "sending_addresses": [SUPPORT], "from_name": "Acme Support", "api_keys": [MAILGUN_API_KEY]}


@pytest.fixture
def provider():
    with Receiver() as server:
        yield server


@pytest.fixture
def hub(tmp_path, receiver, provider):
    clock = Clock(datetime.now(timezone.utc).replace(microsecond=0))
    base = provider.url.split("/hooks")[0]
    with outbound_hub(tmp_path, receiver, provider, clock=clock, mailgun={**MAILGUN, "api_base_url": base}) as running:
        yield running, clock


def mail_in(running, clock, message_id: str, text: str, *, reply_to: str | None = None) -> dict:
    body, headers = mailgun_mime(email(CUSTOMER, message_id, text, reply_to=reply_to), clock.now)
    assert running.post("/webhooks/mailgun/mime", body, headers).status == 200
    return inbound_contact(running, message_id.strip("<>"))


def mailgun_event(message_id: str, event: str, at: datetime) -> tuple[bytes, dict]:
    """tests/fixtures/mailgun/events/<event>.json about our message, signed now with the webhook key."""
    payload = json.loads((FIXTURES / "mailgun" / "events" / f"{event}.json").read_text())
    timestamp, token = str(int(at.timestamp())), secrets.token_hex(25)
    payload["signature"] = {"timestamp": timestamp, "token": token,
                            "signature": compute_signature(MAILGUN_KEY, timestamp, token)}
    payload["event-data"]["message"]["headers"]["message-id"] = message_id.strip("<>")
    payload["event-data"]["timestamp"] = at.timestamp()
    return json.dumps(payload).encode(), {"Content-Type": "application/json"}


def test_our_mail_threads_and_the_customers_answer_to_it_joins_the_same_case(hub, provider):
    running, clock = hub
    first = mail_in(running, clock, "<lieferung-1@example.de>", "Wo bleibt meine Lieferung?")

    data = accepted(running, {"to": {"case_id": first["case_id"]}, "channel": "reply",
                              "text": "Ihre Lieferung kommt morgen.", "html": "<p>Ihre Lieferung kommt morgen.</p>"})

    assert (data["channel"], data["provider"], data["account"], data["to"]) == (
        "email", "mailgun", SUPPORT, "jana.schmidt@example.de")
    ours = running.api(f"/v1/contacts/{data['id']}").json()["metadata"]["message_id"]
    # Mailgun keeps our Message-ID and answers it as `id` (whether this answer or the fake's
    # default one, without an id, reaches the worker first, the provider id is our Message-ID).
    provider.script.append(json_answer({"id": ours, "message": "Queued. Thank you."}))
    [request] = wait_requests(running, provider, "/messages.mime")
    assert (request.method, request.path) == ("POST", "/v3/mg.acme.example/messages.mime")
    assert request.headers["authorization"] == "Basic " + base64.b64encode(f"api:{MAILGUN_API_KEY}".encode()).decode()
    form = message_from_bytes(b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + request.body,
                              policy=modern_policy)
    fields = {part.get_param("name", header="content-disposition"): part for part in form.iter_parts()}
    assert fields["to"].get_content().strip() == "jana.schmidt@example.de"
    sent = fields["message"].get_content()  # message/rfc822: the message as Mailgun will send it
    assert sent["Message-ID"] == ours
    assert sent["In-Reply-To"] == "<lieferung-1@example.de>"
    assert sent["References"] == "<lieferung-1@example.de>"
    assert sent["Subject"] == "Re: Lieferung"
    assert sent["To"] == "jana.schmidt@example.de" or "jana.schmidt@example.de" in sent["To"]
    assert sent["From"] == f"Acme Support <{SUPPORT}>"
    assert sent.get_body(("plain",)).get_content().strip() == "Ihre Lieferung kommt morgen."
    assert "<p>Ihre Lieferung kommt morgen.</p>" in sent.get_body(("html",)).get_content()
    assert wait_status(running, data["id"], "sent")["provider_message_id"] == ours.strip("<>")

    clock.advance(30)
    body, headers = mailgun_event(ours, "delivered", clock.now)
    assert running.post("/webhooks/mailgun/events", body, headers).status == 200
    assert statuses(wait_status(running, data["id"], "delivered")) == ["queued", "sent", "delivered"]

    # Days later (a new case would open by time alone), the customer answers our mail.
    clock.advance(9 * 24 * 3600)
    answer = mail_in(running, clock, "<lieferung-2@example.de>", "Danke, ist angekommen!", reply_to=ours)

    assert answer["case_id"] == first["case_id"]
    assert answer["case_reason"] == "thread_key"
