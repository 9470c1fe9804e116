"""GDPR through HTTP: export everything, erase everything, and prove nothing remains."""

from __future__ import annotations

import sqlite3
from urllib.parse import quote

import time_machine
from standardwebhooks import Webhook

from tests.functional.conftest import API_KEY, WEBHOOK_SECRET
from tests.functional.test_identity_and_cases import chat
from tests.support.fixtures import load


def delete(running, customer_id: str):
    return running.request("DELETE", f"/v1/customers/{customer_id}", headers={"Authorization": f"Bearer {API_KEY}"})


def every_row(db_path) -> str:
    with sqlite3.connect(db_path) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(
            f"{table}: {row}" for table in tables if table != "tombstones" for row in conn.execute(f"SELECT * FROM {table}")
        )


def test_export_then_erase_leaves_nothing_and_tells_the_destinations(running):
    fixture = load("twilio", "sms_text")
    assert running.post(fixture.path, fixture.body, fixture.headers).status == 200
    running.wait_for(lambda: running.settled() and running.outbox(), message="sms delivered")
    customer_id = running.outbox()[0]["data"]["customer"]["id"]
    contact_id = running.outbox()[0]["data"]["contact"]["id"]
    case_id = running.outbox()[0]["data"]["case"]["id"]

    export = running.api(f"/v1/customers/{customer_id}/export").json()
    assert export["customer"]["id"] == customer_id
    assert [c["id"] for c in export["contacts"]] == [contact_id]
    assert export["contacts"][0]["raw"]["Body"] == "Where is my order #1042?"  # the provider payload too
    assert {d["destination"] for d in export["contacts"][0]["deliveries"]} == {"outbox", "crm"}
    assert [c["id"] for c in export["cases"]] == [case_id]

    erased = delete(running, customer_id)
    again = delete(running, customer_id)
    running.wait_for(lambda: running.settled() and len(running.outbox()) == 2, message="erasure event")

    assert erased.status == again.status == 200
    assert erased.json() == {"customer_id": customer_id, "status": "erased", "contacts": 1, "cases": 1,
                             "merged_customers": []}
    for path in (f"/v1/customers/{customer_id}", f"/v1/contacts/{contact_id}", f"/v1/cases/{case_id}",
                 f"/v1/customers/{customer_id}/export"):
        assert running.api(path).status == 404, path
    assert running.api("/v1/customers?identifier=" + quote("phone:+14155550101")).json()["data"] == []

    # The destinations are told, with the id only.
    notice = running.outbox()[-1]
    assert (notice["type"], notice["data"]) == ("customer.erased", {"customer": {"id": customer_id}})
    request = running.receiver.requests[-1]
    with time_machine.travel(int(request.headers["webhook-timestamp"]), tick=False):
        assert Webhook(WEBHOOK_SECRET).verify(request.body, request.headers)["type"] == "customer.erased"

    # Nothing personal remains in the store.
    rows = every_row(running.data_dir / "hub.db")
    for trace in ("+14155550101", "Where is my order", customer_id, contact_id, case_id):
        assert trace not in rows, trace

    # A provider's late retry of the erased message does not bring it back...
    adapter = running.hub.adapter("twilio")
    [late] = adapter.parse(adapter_request(fixture)).events
    assert running.hub.processor.process(late).outcome == "duplicate"
    assert running.api("/v1/customers?identifier=" + quote("phone:+14155550101")).json()["data"] == []


def test_a_new_message_after_erasure_starts_a_new_customer(running):
    first = chat(running, "m-1")
    customer_id = first["customer"]["id"]
    assert delete(running, customer_id).status == 200
    running.wait_for(running.settled, message="erasure event")

    later = chat(running, "m-2")

    assert later["customer"]["id"] != customer_id
    assert later["contact"]["resolution"]["created_customer"] is True


def adapter_request(fixture):
    from datetime import datetime, timezone

    from chalicelib.adapters.channels.base import WebhookRequest

    return WebhookRequest(method="POST", hook=fixture.hook, headers=fixture.headers, query={}, body=fixture.body,
                          received_at=datetime.now(timezone.utc))
