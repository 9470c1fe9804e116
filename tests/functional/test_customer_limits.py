"""Customer records stay within `customers:` limits (defaults), through HTTP and the workers.

A DynamoDB item holds 400 KB. Before the limits, an API client could store 60 attributes of 4 KB
on one customer (each kept twice: the surviving value and the source's observation), and every
later write of that customer failed, messages included; a merge could join two large customers
into one too large to write, or write an audit record (both customers whole) too large.
"""

from __future__ import annotations

import json

from chalicelib.domain.policies import CustomerLimits
from tests.functional.conftest import API_KEY
from tests.functional.test_identity_and_cases import api_post, chat, sms
from tests.functional.test_identity_and_cases import clocked as clocked  # noqa: F401 (the fixture)

PHONE = "+16505550100"
FOUR_KB = "x" * 4000
LIMITS = CustomerLimits()


def patch(running, customer_id: str, attributes: dict, source: str = "crm"):
    return running.request("PATCH", f"/v1/customers/{customer_id}/attributes",
                           json.dumps({"source": source, "attributes": attributes}).encode(),
                           {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})


def stored_bytes(running, customer_id: str) -> int:
    return len(running.hub.store.get_customer(customer_id).model_dump_json().encode("utf-8"))


def test_sixty_attributes_of_4_kb_in_one_request_are_refused_and_nothing_is_written(clocked):
    running, clock = clocked
    customer_id = sms(running, "SM" + "1" * 32, sender=PHONE)["customer"]["id"]

    refused = patch(running, customer_id, {f"field_{i}": FOUR_KB for i in range(60)})

    assert 400 <= refused.status < 500, refused.body
    assert "50 attributes" in refused.json()["error"]["message"]
    assert not [name for name in running.api(f"/v1/customers/{customer_id}").json()["attributes"] if name.startswith("field_")]


def test_attributes_stop_at_the_limit_with_a_clear_4xx_and_the_customer_stays_writable(clocked):
    running, clock = clocked
    customer_id = sms(running, "SM" + "2" * 32, sender=PHONE)["customer"]["id"]

    statuses, refusals = [], []
    for i in range(60):
        clock.advance(1)
        response = patch(running, customer_id, {f"field_{i}": FOUR_KB})
        statuses.append(response.status)
        if response.status != 200:
            refusals.append(response.json()["error"])

    accepted = statuses.count(200)
    assert 0 < accepted < 60 and statuses == [200] * accepted + [422] * (60 - accepted), statuses
    assert {r["code"] for r in refusals} == {"rule_refused"}
    assert all("allowed" in r["message"] and "customers" in r["message"] for r in refusals)
    assert stored_bytes(running, customer_id) <= LIMITS.max_record_bytes

    # Still writable: a message, a changed value, a withdrawal, and then a new attribute again.
    clock.advance(60)
    later = sms(running, "SM" + "3" * 32, sender=PHONE, body="still there?")
    changed = patch(running, customer_id, {"field_0": "short"})
    withdrawn = patch(running, customer_id, {"field_1": None})
    added = patch(running, customer_id, {"tier": "gold"})

    assert later["customer"]["id"] == customer_id and later["contact"]["customer_id"] == customer_id
    assert [r.status for r in (changed, withdrawn, added)] == [200, 200, 200], [r.body for r in (changed, withdrawn, added)]
    customer = running.api(f"/v1/customers/{customer_id}").json()
    assert customer["attributes"]["field_0"]["value"] == "short" and "field_1" not in customer["attributes"]
    assert customer["attributes"]["tier"]["value"] == "gold"


def big_customers_tied_by_one_contact(running, clock):
    """Two customers of 9 attributes of 4 KB each (about 73 KB each, within the 128 KB limit; about
    146 KB together), an SMS one and a web chat one, and a chat verified by the SMS number."""
    by_sms = sms(running, "SM" + "a" * 32, sender=PHONE)["customer"]["id"]
    clock.advance(60)
    by_chat = chat(running, "m-1", identity={"email": "jana@example.com"}, signed="jana@example.com")["customer"]["id"]
    for customer_id, prefix in ((by_sms, "sms"), (by_chat, "chat")):
        clock.advance(1)
        response = patch(running, customer_id, {f"{prefix}_{i}": FOUR_KB for i in range(9)})
        assert response.status == 200, response.body
        assert stored_bytes(running, customer_id) <= LIMITS.max_record_bytes
    return by_sms, by_chat


def test_an_explicit_merge_that_would_outgrow_the_limits_is_refused_with_its_reason(clocked):
    running, clock = clocked
    by_sms, by_chat = big_customers_tied_by_one_contact(running, clock)

    refused = api_post(running, f"/v1/customers/{by_chat}/merge", {"customer_id": by_sms})

    assert refused.status == 422, refused.body
    error = refused.json()["error"]
    assert error["code"] == "rule_refused"
    assert error["message"].startswith("the customers are not merged: customers limits: after the merge")
    assert f"more than the {LIMITS.max_record_bytes} allowed" in error["message"]
    for customer_id in (by_sms, by_chat):
        customer = running.api(f"/v1/customers/{customer_id}").json()
        assert customer["merged_into"] is None and customer["merges"] == [] and customer["merged_from"] == []
    # Both stay writable.
    assert patch(running, by_sms, {"tier": "gold"}).status == patch(running, by_chat, {"tier": "silver"}).status == 200


def test_an_automatic_merge_that_would_outgrow_the_limits_is_refused_and_recorded(clocked):
    running, clock = clocked
    by_sms, by_chat = big_customers_tied_by_one_contact(running, clock)
    clock.advance(60)

    tying = chat(running, "m-2", identity={"phone": PHONE}, signed=PHONE)

    contact = running.api(f"/v1/contacts/{tying['contact']['id']}").json()
    refusals = [d for d in contact["resolution"]["decisions"] if d["outcome"] == "merge_refused"]
    assert len(refusals) == 1, contact["resolution"]
    assert refusals[0]["rule"].startswith("customers limits: after the merge")
    assert tying["customer"]["id"] == by_sms  # found by its number, first in priority; nothing merged
    assert not [e for e in running.outbox() if e["type"] == "customer.merged"]
    for customer_id in (by_sms, by_chat):
        assert running.api(f"/v1/customers/{customer_id}").json()["merged_into"] is None
