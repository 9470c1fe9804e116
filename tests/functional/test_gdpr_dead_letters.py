"""GDPR and dead letters through HTTP: a dead delivery holds the message text and the customer's
address, so the export lists it and the erasure removes it with everything else."""

from __future__ import annotations

import json

from tests.functional.conftest import API_KEY
from tests.functional.test_gdpr import delete, every_row
from tests.support.fixtures import load
from tests.support.receiver import Answer


def test_a_dead_letter_is_exported_and_then_erased_with_its_customer(running):
    # The CRM refuses the contact for good; it accepts everything after (the erasure notice).
    running.receiver.script = [Answer(400, b'{"error": "field priority is invalid"}')]
    fixture = load("twilio", "sms_text")
    assert running.post(fixture.path, fixture.body, fixture.headers).status == 200
    [letter] = running.wait_for(lambda: running.api("/v1/dead-letters?destination=crm").json()["data"],
                                timeout=20, message="the dead letter")
    running.wait_for(running.settled, message="the outbox delivery")
    customer_id = running.outbox()[0]["data"]["customer"]["id"]
    contact_id = running.outbox()[0]["data"]["contact"]["id"]

    export = running.api(f"/v1/customers/{customer_id}/export").json()
    [exported] = export["dead_letters"]
    assert (exported["id"], exported["destination"], exported["subject_id"]) == (letter["id"], "crm", contact_id)
    assert exported["job"]["contact"]["text"] == "Where is my order #1042?"
    assert exported["expires_at"] > exported["dead_at"]

    assert delete(running, customer_id).status == 200
    running.wait_for(lambda: running.settled() and len(running.outbox()) == 2, message="erasure event")

    assert running.api("/v1/dead-letters").json()["data"] == []
    assert running.request("POST", f"/v1/dead-letters/{letter['id']}/replay", b"",
                           {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}).status == 404
    rows = every_row(running.data_dir / "hub.db")
    for trace in ("+14155550101", "Where is my order", customer_id, contact_id, letter["id"]):
        assert trace not in rows, trace
    # The erasure notice reached the CRM: nothing of the customer waits as a dead letter either.
    assert json.loads(running.receiver.requests[-1].body)["type"] == "customer.erased"
