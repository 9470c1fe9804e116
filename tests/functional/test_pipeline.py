"""Process and deliver through HTTP: dedupe, cross-channel resolution, statuses, durability,
delivery failures and the consumer API."""

from __future__ import annotations

import logging
from urllib.parse import quote

from chalicelib.domain.models import DeliveryStatus
from tests.functional.conftest import RunningHub, start_hub
from tests.functional.test_ingest_edges import twilio_request
from tests.support.fixtures import load
from tests.support.receiver import Answer


def test_a_retried_webhook_never_makes_a_second_contact(running):
    fixture = load("twilio", "sms_text")

    first = running.post(fixture.path, fixture.body, fixture.headers)
    running.wait_for(running.settled, message="first processed")
    second = running.post(fixture.path, fixture.body, fixture.headers)
    running.wait_for(running.settled, message="retry processed")

    assert first.status == second.status == 200
    assert len(running.outbox()) == 1
    assert len(running.receiver.requests) == 1
    customer_id = running.outbox()[0]["data"]["customer"]["id"]
    contacts = running.api(f"/v1/customers/{customer_id}/contacts").json()
    assert len(contacts["data"]) == 1


def test_the_same_person_on_sms_and_whatsapp_is_one_customer_with_one_case(running):
    path, body, headers = twilio_request(
        {"MessageSid": "SM" + "a" * 32, "AccountSid": "AC" + "b" * 32, "From": "+16505551234",
         "To": "+14155550100", "Body": "My package is late", "NumMedia": "0"}
    )
    sms = running.post(path, body, headers)
    running.wait_for(running.settled, message="sms processed")
    whatsapp = load("meta", "whatsapp_text")
    wa = running.post("/webhooks/meta", whatsapp.body, whatsapp.headers)
    running.wait_for(lambda: running.settled() and len(running.outbox()) == 2, message="both processed")

    assert sms.status == wa.status == 200
    first, second = running.outbox()
    assert first["data"]["customer"]["id"] == second["data"]["customer"]["id"]
    assert first["data"]["case"]["id"] == second["data"]["case"]["id"]
    assert second["data"]["case"]["contact_count"] == 2
    assert second["data"]["case"]["channels"] == ["sms", "whatsapp"]
    resolution = second["data"]["contact"]["resolution"]
    assert (resolution["customer_id"], resolution["created_customer"]) == (first["data"]["customer"]["id"], False)
    assert (resolution["matched_identifier"], resolution["rule"]) == ("phone:+16505551234", "link_kinds: phone")
    assert {(d["identifier"], d["outcome"]) for d in resolution["decisions"]} == {
        ("phone:+16505551234", "matched"), ("whatsapp_user:US.13491208655302741918", "linked"),
    }
    assert "whatsapp_user:US.13491208655302741918" in [
        f"{i['kind']}:{i['value']}" for i in second["data"]["customer"]["identifiers"]
    ]
    assert second["data"]["contact"]["text"] == "Olá, ça coûte combien?"
    customer = running.api(f"/v1/customers/{first['data']['customer']['id']}").json()
    assert customer["attributes"]["name"]["value"] == "Sheena Nelson"
    assert customer["attributes"]["name"]["source"] == "meta"


def test_status_callbacks_are_recorded_not_turned_into_contacts(running):
    for name in ("status_sms_delivered", "status_whatsapp_read"):
        fixture = load("twilio", name)
        assert running.post(fixture.path, fixture.body, fixture.headers).status == 200
    meta_status = load("meta", "whatsapp_status_delivered")
    assert running.post("/webhooks/meta", meta_status.body, meta_status.headers).status == 200
    running.wait_for(running.settled, message="statuses processed")

    assert running.outbox() == []
    assert [s.status for s in running.hub.store.list_statuses("twilio", "SM55555555555555555555555555555555")] == [
        "delivered"
    ]
    assert [s.status for s in running.hub.store.list_statuses("twilio", "SM66666666666666666666666666666666")] == ["read"]
    assert running.hub.counters.total("StatusesRecorded", stage="process") == 3


def test_whatsapp_media_location_and_reaction_are_normalized(running):
    for name in ("whatsapp_image", "whatsapp_location", "whatsapp_reaction"):
        fixture = load("meta", name)
        assert running.post("/webhooks/meta", fixture.body, fixture.headers).status == 200
    running.wait_for(lambda: running.settled() and len(running.outbox()) == 3, message="three contacts")

    contacts = {line["data"]["contact"]["content_type"]: line["data"]["contact"] for line in running.outbox()}
    assert contacts["media"]["attachments"][0]["provider_media_id"] == "1003383421387256"
    assert contacts["media"]["attachments"][0]["content_type"] == "image/jpeg"
    assert contacts["location"]["location"]["latitude"] == 37.483307
    assert contacts["reaction"]["metadata"]
    assert len({c["customer_id"] for c in contacts.values()}) == 1


def test_accepted_work_survives_a_restart(tmp_path, receiver):
    fixture = load("twilio", "sms_text")
    first = start_hub(tmp_path, receiver).start(workers=False)
    try:
        accepted = RunningHub(first, receiver, tmp_path / "data").post(fixture.path, fixture.body, fixture.headers)
        assert first.hub.inbound_queue.depth() == 1
    finally:
        first.stop()

    second = start_hub(tmp_path, receiver).start()
    try:
        running = RunningHub(second, receiver, tmp_path / "data")
        running.wait_for(lambda: running.settled() and running.outbox(), message="queued work resumed")
    finally:
        second.stop()

    assert accepted.status == 200
    assert len(running.outbox()) == 1
    assert len(receiver.requests) == 1


def test_transient_destination_failures_are_retried_inline_honouring_retry_after(running):
    running.receiver.script = [Answer(503), Answer(429, headers={"Retry-After": "1"})]
    fixture = load("twilio", "sms_text")

    running.post(fixture.path, fixture.body, fixture.headers)
    running.wait_for(lambda: running.settled() and len(running.receiver.requests) == 3, message="third attempt")

    contact_id = running.outbox()[0]["data"]["contact"]["id"]
    deliveries = {d["destination"]: d for d in running.api(f"/v1/contacts/{contact_id}").json()["deliveries"]}
    assert deliveries["crm"]["status"] == "delivered"
    assert deliveries["crm"]["attempts"] == 3
    ids = {r.headers["webhook-id"] for r in running.receiver.requests}
    assert len(ids) == 1, "every attempt carries the same webhook-id"


def test_a_permanent_rejection_is_dead_lettered_with_the_vendors_reason_and_not_retried(running):
    running.receiver.default = Answer(422, b'{"error":"unknown field tickett"}')
    fixture = load("twilio", "sms_text")

    running.post(fixture.path, fixture.body, fixture.headers)
    running.wait_for(running.settled, message="delivery settled")

    contact_id = running.outbox()[0]["data"]["contact"]["id"]
    crm = running.hub.store.get_delivery(contact_id, "crm")
    assert crm.status == DeliveryStatus.DEAD
    assert crm.attempts == 1
    assert "422" in crm.last_error and "tickett" in crm.last_error
    assert len(running.receiver.requests) == 1
    [dead] = running.hub.delivery_dead_letters.receive()
    assert contact_id in dead.body


def test_exhausted_retries_are_dead_lettered(tmp_path, receiver):
    receiver.default = Answer(500)
    runtime = start_hub(tmp_path, receiver, max_receives=1).start()
    try:
        running = RunningHub(runtime, receiver, tmp_path / "data")
        fixture = load("twilio", "sms_text")
        running.post(fixture.path, fixture.body, fixture.headers)
        running.wait_for(running.settled, message="delivery settled")
        contact_id = running.outbox()[0]["data"]["contact"]["id"]
        crm = running.hub.store.get_delivery(contact_id, "crm")
    finally:
        runtime.stop()

    assert crm.status == DeliveryStatus.DEAD
    assert crm.attempts == 3
    assert "gave up after 3 attempts" in crm.last_error
    assert len(receiver.requests) == 3


def test_consumer_api_requires_a_valid_key(running):
    assert running.api("/v1/customers?identifier=phone:+14155550101", key=None).status == 401
    bad = running.api("/v1/customers?identifier=phone:+14155550101", key="wrong")
    assert bad.status == 401
    assert bad.headers["www-authenticate"] == "Bearer"
    assert bad.json()["error"]["code"] == "unauthorized"
    assert running.request("GET", "/health").json()["status"] == "ok"


def test_consumer_api_lists_contacts_newest_first_with_a_cursor(running):
    for n in range(5):
        path, body, headers = twilio_request(
            {"MessageSid": f"SM{n:032d}", "From": "+16505550000", "To": "+14155550100", "Body": f"message {n}",
             "NumMedia": "0", "AccountSid": "AC" + "c" * 32}
        )
        assert running.post(path, body, headers).status == 200
        running.wait_for(running.settled, message=f"message {n}")
    customer_id = running.outbox()[0]["data"]["customer"]["id"]

    first = running.api(f"/v1/customers/{customer_id}/contacts?limit=2").json()
    second = running.api(f"/v1/customers/{customer_id}/contacts?limit=2&cursor={first['next_cursor']}").json()
    third = running.api(f"/v1/customers/{customer_id}/contacts?limit=2&cursor={second['next_cursor']}").json()

    texts = [c["text"] for page in (first, second, third) for c in page["data"]]
    assert texts == ["message 4", "message 3", "message 2", "message 1", "message 0"]
    assert third["next_cursor"] is None
    case = running.api(f"/v1/cases/{first['data'][0]['case_id']}").json()
    assert case["contact_count"] == 5
    assert running.api(f"/v1/customers/{customer_id}/contacts?cursor=bogus!").status == 400
    assert running.api(f"/v1/customers/{customer_id}/contacts?limit=0").status == 400
    assert running.api("/v1/customers/cus_missing").status == 404
    assert running.api("/v1/customers?identifier=" + quote("fax:123")).status == 400
    assert running.api("/v1/customers").status == 400


def test_logs_never_contain_message_text_phone_numbers_or_emails(running, caplog):
    logging.getLogger("chalicelib").addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG, logger="chalicelib")
    running.receiver.default = Answer(400, b'{"error":"bad requester +14155550101 jane@example.com"}')
    fixture = load("twilio", "sms_text")
    whatsapp = load("meta", "whatsapp_text")
    try:
        running.post(fixture.path, fixture.body, fixture.headers)
        running.post("/webhooks/meta", whatsapp.body, whatsapp.headers)
        running.post(fixture.path, fixture.body, {**fixture.headers, "x-twilio-signature": "bad"})
        running.wait_for(lambda: running.settled() and len(running.outbox()) == 2, message="processed")
    finally:
        logging.getLogger("chalicelib").removeHandler(caplog.handler)

    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "webhook twilio accepted" in text, "the test must actually capture the hub's logs"
    for secret in ("+14155550101", "14155550101", "16505551234", "Where is my order", "jane@example.com", "combien"):
        assert secret not in text
