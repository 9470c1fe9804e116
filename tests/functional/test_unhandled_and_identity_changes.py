"""Through HTTP on the running hub: a webhook item no adapter reads is acknowledged, kept raw and
listed by the consumer API (never silently dropped); and a WhatsApp user whose business-scoped
id changes stays one customer, through the system message WhatsApp sends about it."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from urllib.parse import quote

from chalicelib.adapters.channels.meta.adapter import compute_signature
from tests.functional.conftest import META_SECRET

PHONE_NUMBER_ID, WABA_ID = "106540352242922", "102290129340398"
OLD, NEW, WA_ID = "US.1111111111111111", "US.2222222222222222", "16505551234"


def post_meta(running, payload: dict):
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": compute_signature(META_SECRET, body)}
    return running.post("/webhooks/meta", body, headers)


def whatsapp(*messages: dict, contacts: list | None = None) -> dict:
    value = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881",
                                                           "phone_number_id": PHONE_NUMBER_ID},
             "messages": list(messages)}  # fmt: skip
    if contacts is not None:
        value["contacts"] = contacts
    return {"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "changes": [{"field": "messages", "value": value}]}]}


def text(n: int, *, user: str, phone: str | None = None) -> tuple[dict, list]:
    message = {"from_user_id": user, "id": f"wamid.T{n}", "timestamp": str(1767225600 + n), "type": "text",
               "text": {"body": f"message {n}"}}  # fmt: skip
    contact = {"profile": {"name": "Sheena Nelson"}, "user_id": user}
    if phone:
        message["from"] = contact["wa_id"] = phone
    return message, [contact]


def user_id_changed(n: int) -> dict:
    """WhatsApp's `user_changed_user_id` system message (no contacts array, no phone)."""
    return {"from_user_id": NEW, "id": f"wamid.S{n}", "timestamp": str(1767225600 + n), "type": "system",
            "system": {"body": f"User Sheena Nelson changed from {OLD} to {NEW}", "type": "user_changed_user_id",
                       "user_id": NEW, "previous_user_id": OLD}}  # fmt: skip


def customer_of(running, identifier: str) -> dict:
    [customer] = running.api(f"/v1/customers?identifier={quote(identifier)}").json()["data"]
    return customer


def test_an_event_no_adapter_reads_is_acknowledged_kept_raw_and_listed(running):
    edit = {"sender": {"id": "6789012345678901"}, "recipient": {"id": "1234567890"}, "timestamp": 1767225600000,
            "message_edit": {"mid": "m_1", "text": "Corrected: Sunday, not Saturday", "num_edit": 1}}  # fmt: skip
    response = post_meta(running, {"object": "page", "entry": [{"id": "1234567890", "time": 1, "messaging": [edit]}]})
    running.wait_for(lambda: running.settled() and running.hub.counters.total("UnhandledRecorded", stage="process"),
                     message="unhandled item recorded")

    assert (response.status, response.body) == (200, b"EVENT_RECEIVED")
    assert running.outbox() == [], "never a contact"
    assert running.hub.counters.total("EventsUnhandled", provider="meta") == 1
    day = datetime.now(timezone.utc).date().isoformat()
    listed = running.api(f"/v1/unhandled-events?day={day}&provider=meta").json()
    [item] = listed["data"]
    assert item["raw"] == edit and "'message_edit' events are not handled" in item["reason"]
    assert (item["provider"], item["truncated"], listed["next_cursor"]) == ("meta", False, None)
    assert running.api(f"/v1/unhandled-events?day={day}&provider=slack").json()["data"] == []


def test_the_unhandled_events_api_names_what_is_wrong_with_a_query(running):
    assert running.api("/v1/unhandled-events?day=2026-13-40").status == 400
    assert "day must be a date" in running.api("/v1/unhandled-events?day=yesterday").json()["error"]["message"]
    assert running.api("/v1/unhandled-events?cursor=bm9wZQ").status == 400
    assert running.api("/v1/unhandled-events", key=None).status == 401


def test_a_whatsapp_user_whose_id_changes_stays_one_customer(running):
    first, contacts = text(1, user=OLD, phone=WA_ID)
    assert post_meta(running, whatsapp(first, contacts=contacts)).status == 200
    running.wait_for(lambda: running.settled() and len(running.outbox()) == 1, message="first contact")

    assert post_meta(running, whatsapp(user_id_changed(2))).status == 200
    running.wait_for(lambda: running.settled() and running.hub.counters.total("IdentitiesChanged", stage="process"),
                     message="identity change applied")
    later, contacts = text(3, user=NEW)
    assert post_meta(running, whatsapp(later, contacts=contacts)).status == 200
    running.wait_for(lambda: running.settled() and len(running.outbox()) == 2, message="contact from the new id")

    first_contact, later_contact = (line["data"] for line in running.outbox())
    assert later_contact["customer"]["id"] == first_contact["customer"]["id"], "one person, one customer"
    assert later_contact["contact"]["case_id"] == first_contact["contact"]["case_id"]
    customer = customer_of(running, f"whatsapp_user:{NEW}")
    keys = {f"{i['kind']}:{i['value']}" for i in customer["identifiers"]}
    assert {f"whatsapp_user:{OLD}", f"whatsapp_user:{NEW}", f"phone:+{WA_ID}"} <= keys
    assert len(running.outbox()) == 2, "the system message itself is never a contact"


def test_a_message_from_the_new_id_that_came_first_is_merged_in_by_the_change(running):
    first, contacts = text(1, user=OLD, phone=WA_ID)
    assert post_meta(running, whatsapp(first, contacts=contacts)).status == 200
    running.wait_for(lambda: running.settled() and len(running.outbox()) == 1, message="first contact")
    # WhatsApp's system message arrives after a message from the new id: two customers for now.
    early, contacts = text(2, user=NEW)
    assert post_meta(running, whatsapp(early, contacts=contacts)).status == 200
    running.wait_for(lambda: running.settled() and len(running.outbox()) == 2, message="a second customer")
    older, newer = (line["data"]["customer"]["id"] for line in running.outbox())
    assert older != newer

    assert post_meta(running, whatsapp(user_id_changed(3))).status == 200
    running.wait_for(lambda: running.settled() and running.hub.counters.total("IdentitiesChanged", stage="process"),
                     message="identity change applied")

    survivor = customer_of(running, f"whatsapp_user:{NEW}")
    assert survivor["id"] == older, "the older customer survives the merge"
    assert running.api(f"/v1/customers/{newer}").json()["merged_into"] == older
