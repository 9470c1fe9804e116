"""Twilio through HTTP on the embedded hub: the customer's SMS arrives (stored signed fixture), the
hub answers with `POST /v1/messages` (`channel: reply`), the Twilio fake receives the Messages API
request, Twilio's signed status callback comes back, and the outbound contact shows it. Also:
idempotent retries, a crash after Twilio accepted, STOP and error 21610, and the dead letters."""

from __future__ import annotations

import base64
import pytest

from tests.functional.conftest import API_KEY, TWILIO_ACCOUNT, TWILIO_TOKEN
from tests.functional.outbound import (
    accepted,
    contact,
    form,
    inbound_contact,
    outbound_hub,
    requests_to,
    send,
    statuses,
    twilio_created,
    twilio_error,
    wait_requests,
    wait_status,
)
from tests.functional.test_ingest_edges import twilio_request
from tests.support.fixtures import load
from tests.support.receiver import Receiver

MESSAGES = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Messages.json"
#: The sid tests/fixtures/twilio/status_sms_delivered reports on.
DELIVERED_SID = "SM55555555555555555555555555555555"


@pytest.fixture
def provider():
    with Receiver() as server:
        yield server


@pytest.fixture
def hub(tmp_path, receiver, provider):
    # The hub's own clock: dead letters expire by the store's wall clock.
    with outbound_hub(tmp_path, receiver, provider) as running:
        yield running


def customer_sms(running) -> dict:
    """tests/fixtures/twilio/sms_text: +14155550101 writes to +14155550100."""
    fixture = load("twilio", "sms_text")
    assert running.post(fixture.path, fixture.body, fixture.headers).status == 200
    return inbound_contact(running, "SM11111111111111111111111111111111")


def sms(running, n: int, body: str, phone: str = "+14155550101") -> dict:
    sid = f"SM{n:032d}"
    path, data, headers = twilio_request({"MessageSid": sid, "AccountSid": TWILIO_ACCOUNT, "From": phone,
                                          "To": "+14155550100", "Body": body, "NumMedia": "0"})
    assert running.post(path, data, headers).status == 200
    return inbound_contact(running, sid)


def status_callback(running, sid: str, status: str, **extra: str) -> None:
    params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
              "AccountSid": TWILIO_ACCOUNT, "From": "+14155550100", "To": "+14155550101", "ApiVersion": "2010-04-01",
              **extra}
    path, data, headers = twilio_request(params, hook="status")
    assert running.post(path, data, headers).status == 200


def test_an_sms_reply_reaches_twilio_and_its_signed_status_callback_delivers_it(hub, provider):
    inbound = customer_sms(hub)
    provider.script.append(twilio_created(DELIVERED_SID))

    data = accepted(hub, {"to": {"case_id": inbound["case_id"]}, "channel": "reply", "text": "Ihr Paket kommt morgen."})

    assert (data["channel"], data["provider"], data["account"], data["to"]) == ("sms", "twilio", "+14155550100",
                                                                               "+14155550101")
    [request] = wait_requests(hub, provider, "/Messages.json")
    assert (request.method, request.path) == ("POST", MESSAGES)
    assert request.headers["authorization"] == "Basic " + base64.b64encode(
        f"{TWILIO_ACCOUNT}:{TWILIO_TOKEN}".encode()).decode()
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["i-twilio-idempotency-token"] == data["id"]
    assert form(request) == {"To": ["+14155550101"], "From": ["+14155550100"], "Body": ["Ihr Paket kommt morgen."],
                             "StatusCallback": ["https://hub.example.com/webhooks/twilio/status"]}
    sent = wait_status(hub, data["id"], "sent")
    assert sent["provider_message_id"] == DELIVERED_SID

    # Twilio's own callback, as stored (signed with the test Auth Token for the StatusCallback URL).
    fixture = load("twilio", "status_sms_delivered")
    assert hub.post(fixture.path, fixture.body, fixture.headers).status == 200

    delivered = wait_status(hub, data["id"], "delivered")
    assert statuses(delivered) == ["queued", "sent", "delivered"]
    assert delivered["direction"] == "outbound" and delivered["case_id"] == inbound["case_id"]
    timeline = hub.api(f"/v1/customers/{inbound['customer_id']}/contacts").json()["data"]
    assert [(c["id"], c["direction"]) for c in timeline] == [(data["id"], "outbound"), (inbound["id"], "inbound")]


def test_a_late_delivered_after_read_leaves_the_message_read(hub, provider):
    inbound = customer_sms(hub)
    provider.script.append(twilio_created("SM" + "7" * 32))
    data = accepted(hub, {"to": {"case_id": inbound["case_id"]}, "text": "Gelesen?"})
    wait_status(hub, data["id"], "sent")

    status_callback(hub, "SM" + "7" * 32, "read")
    wait_status(hub, data["id"], "read")
    status_callback(hub, "SM" + "7" * 32, "delivered")
    hub.wait_for(hub.settled, message="the late callback processed")

    found = contact(hub, data["id"])
    assert found["status"] == "read"
    assert statuses(found)[:3] == ["queued", "sent", "read"]


def test_a_retried_send_with_the_same_idempotency_key_reaches_twilio_once(hub, provider):
    inbound = customer_sms(hub)
    provider.script.append(twilio_created("SM" + "8" * 32))
    body = {"to": {"customer_id": inbound["customer_id"]}, "channel": "reply", "text": "Nur einmal"}

    first = send(hub, body, {"Idempotency-Key": "ticket-7-update"})
    wait_status(hub, first.json()["data"]["id"], "sent")
    again = send(hub, body, {"Idempotency-Key": "ticket-7-update"})
    also = send(hub, {**body, "idempotency_key": "ticket-7-update"})

    assert (first.status, again.status, also.status) == (202, 200, 200)
    assert again.json()["data"]["id"] == first.json()["data"]["id"] == also.json()["data"]["id"]
    hub.wait_for(lambda: hub.hub.outbound_queue.depth() == 0, message="the outbound queue drained")
    assert len(requests_to(provider, "/Messages.json")) == 1


def test_stop_refuses_the_next_send_and_nothing_reaches_twilio(hub, provider):
    inbound = customer_sms(hub)
    sms(hub, 2, "STOP")

    refused = send(hub, {"to": {"customer_id": inbound["customer_id"]}, "text": "Noch eine Frage?"})

    assert refused.status == 409, refused.body
    assert refused.json()["error"]["code"] == "consent_refused"
    assert hub.hub.outbound_queue.depth() == 0
    assert requests_to(provider, "/Messages.json") == []


def test_twilio_21610_fails_the_message_and_opts_the_customer_out(hub, provider):
    inbound = customer_sms(hub)
    provider.script.append(twilio_error(21610, "Attempt to send to unsubscribed recipient"))

    data = accepted(hub, {"to": {"case_id": inbound["case_id"]}, "text": "Hallo?"})

    failed = wait_status(hub, data["id"], "failed")
    assert failed["status_history"][-1]["code"] == "21610"
    consent = hub.wait_for(lambda: (c := hub.api(f"/v1/customers/{inbound['customer_id']}").json()["consent"])
                           .get("sms", {}).get("service", {}).get("state") == "opted_out" and c,
                           message="the opt-out in the ledger")
    assert consent["sms"]["service"]["state"] == "opted_out"
    assert len(requests_to(provider, "/Messages.json")) == 1
    # Nothing to replay: a decision of the customer's, not a fault.
    assert hub.api("/v1/dead-letters").json()["data"] == []
    again = send(hub, {"to": {"case_id": inbound["case_id"]}, "text": "Hallo?"})
    assert again.status == 409 and again.json()["error"]["code"] == "consent_refused"


def test_a_crash_after_twilio_accepted_resends_with_the_same_idempotency_token_and_ends_sent_once(hub, provider):
    inbound = customer_sms(hub)
    store = hub.hub.store
    record_sent, crashes = store.record_sent, []

    def crash_once(contact):
        # The worker dies between Twilio's answer and recording it (a Lambda timeout, a lost connection).
        if not crashes:
            crashes.append(contact.id)
            raise RuntimeError("the send worker crashed")
        return record_sent(contact)

    store.record_sent = crash_once
    # The crashed receive comes back once its visibility timeout ends, as on SQS.
    hub.hub.outbound_queue.visibility_timeout = 1
    provider.default = twilio_created("SM" + "9" * 32)

    data = accepted(hub, {"to": {"case_id": inbound["case_id"]}, "text": "Genau einmal, bitte."})

    sent = wait_status(hub, data["id"], "sent")
    first, second = wait_requests(hub, provider, "/Messages.json", count=2)
    assert crashes == [data["id"]]
    assert first.headers["i-twilio-idempotency-token"] == second.headers["i-twilio-idempotency-token"] == data["id"]
    assert first.body == second.body
    assert statuses(sent) == ["queued", "sent"]
    assert sent["provider_message_id"] == "SM" + "9" * 32
    hub.wait_for(lambda: hub.hub.outbound_queue.depth() == 0, message="the redelivery acknowledged")
    assert len(requests_to(provider, "/Messages.json")) == 2


def test_a_message_twilio_refuses_is_a_dead_letter_and_its_replay_sends_it(hub, provider):
    inbound = customer_sms(hub)
    provider.script.append(twilio_error(21606, "The 'From' phone number provided is not a valid message-capable "
                                               "Twilio phone number for this destination."))

    data = accepted(hub, {"to": {"case_id": inbound["case_id"]}, "text": "Hallo!"})

    failed = wait_status(hub, data["id"], "failed")
    assert failed["status_history"][-1]["code"] == "21606"
    letters = hub.wait_for(lambda: hub.api("/v1/dead-letters").json()["data"], message="the dead letter")
    [letter] = letters
    assert (letter["kind"], letter["subject_id"], letter["destination"]) == ("message", data["id"], "outbound")
    assert "21606" in letter["reason"]

    # The sender is fixed at Twilio; the operator replays the message.
    provider.script.append(twilio_created("SM" + "6" * 32))
    replay = hub.request("POST", f"/v1/dead-letters/{letter['id']}/replay", b"{}",
                         {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
    assert replay.status in (200, 202), replay.body

    sent = wait_status(hub, data["id"], "sent")
    assert statuses(sent) == ["queued", "failed", "queued", "sent"]
    first, second = requests_to(provider, "/Messages.json")
    assert first.headers["i-twilio-idempotency-token"] == second.headers["i-twilio-idempotency-token"] == data["id"]
    assert hub.api("/v1/dead-letters").json()["data"] == []


def test_a_status_callback_that_overtakes_the_workers_record_still_counts(hub, provider):
    """Twilio can call back before the worker has stored the sid: the report is kept and folded in."""
    import threading

    inbound = customer_sms(hub)
    store = hub.hub.store
    record_sent, reported = store.record_sent, threading.Event()

    def after_the_callback(contact):
        assert reported.wait(10), "the test never posted the callback"
        return record_sent(contact)

    store.record_sent = after_the_callback
    provider.script.append(twilio_created(DELIVERED_SID))
    data = accepted(hub, {"to": {"case_id": inbound["case_id"]}, "text": "Schnell zugestellt."})
    wait_requests(hub, provider, "/Messages.json")

    fixture = load("twilio", "status_sms_delivered")
    assert hub.post(fixture.path, fixture.body, fixture.headers).status == 200
    hub.wait_for(lambda: hub.hub.inbound_queue.depth() == 0, message="the callback processed")
    reported.set()

    delivered = wait_status(hub, data["id"], "delivered")
    assert statuses(delivered) == ["queued", "sent", "delivered"]


def test_a_whatsapp_reply_through_twilio_keeps_the_prefix_and_reads_back(hub, provider):
    path, body, headers = twilio_request({"MessageSid": "SM" + "4" * 32, "AccountSid": TWILIO_ACCOUNT,
                                          "From": "whatsapp:+5511987654321", "To": "whatsapp:+14155550100",
                                          "Body": "Oi, meu pedido?", "NumMedia": "0", "ProfileName": "Ana"})
    assert hub.post(path, body, headers).status == 200
    inbound = inbound_contact(hub, "SM" + "4" * 32)
    # The sid tests/fixtures/twilio/status_whatsapp_read reports on.
    provider.script.append(twilio_created("SM" + "6" * 32, to="whatsapp:+5511987654321"))

    data = accepted(hub, {"to": {"case_id": inbound["case_id"]}, "text": "Chega amanhã."})

    assert (data["channel"], data["account"], data["to"]) == ("whatsapp", "whatsapp:+14155550100",
                                                               "whatsapp:+5511987654321")
    [request] = wait_requests(hub, provider, "/Messages.json")
    assert form(request) == {"To": ["whatsapp:+5511987654321"], "From": ["whatsapp:+14155550100"],
                             "Body": ["Chega amanhã."], "StatusCallback": ["https://hub.example.com/webhooks/twilio/status"]}
    wait_status(hub, data["id"], "sent")
    fixture = load("twilio", "status_whatsapp_read")
    assert hub.post(fixture.path, fixture.body, fixture.headers).status == 200
    assert statuses(wait_status(hub, data["id"], "read")) == ["queued", "sent", "read"]


def test_undelivered_callbacks_fail_the_message_and_21610_in_one_opts_the_customer_out(hub, provider):
    inbound = customer_sms(hub)
    provider.script += [twilio_created("SM" + "7" * 32), twilio_created("SM" + "5" * 31 + "0")]
    unreachable = accepted(hub, {"to": {"case_id": inbound["case_id"]}, "text": "Erste"})
    wait_status(hub, unreachable["id"], "sent")
    stopped = accepted(hub, {"to": {"case_id": inbound["case_id"]}, "text": "Zweite"})
    wait_status(hub, stopped["id"], "sent")

    # Twilio's stored callback: undelivered, 30003 (unreachable handset): a failure, not an opt-out.
    fixture = load("twilio", "status_sms_undelivered")
    assert hub.post(fixture.path, fixture.body, fixture.headers).status == 200
    status_callback(hub, "SM" + "5" * 31 + "0", "undelivered", ErrorCode="21610")

    first = wait_status(hub, unreachable["id"], "failed")
    second = wait_status(hub, stopped["id"], "failed")
    assert (first["status_history"][-1]["code"], second["status_history"][-1]["code"]) == ("30003", "21610")
    hub.wait_for(lambda: hub.api(f"/v1/customers/{inbound['customer_id']}").json()["consent"]
                 .get("sms", {}).get("service", {}).get("state") == "opted_out", message="the opt-out in the ledger")
    refused = send(hub, {"to": {"case_id": inbound["case_id"]}, "text": "Dritte"})
    assert refused.status == 409
