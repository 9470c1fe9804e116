"""Merging and unmerging customers through HTTP and the queue workers, with destinations told."""

from __future__ import annotations

from tests.functional.conftest import API_KEY
from tests.functional.test_identity_and_cases import api_post, chat, sms
from tests.functional.test_identity_and_cases import clocked as clocked  # noqa: F401 (the fixture)

PHONE = "+16505550100"


def keys(customer: dict) -> set[str]:
    """The customer's identifiers as `kind:value` / `kind:scope/value` strings."""
    return {f"{i['kind']}:{i['scope']}/{i['value']}" if i.get("scope") else f"{i['kind']}:{i['value']}"
            for i in customer["identifiers"]}


def events(running, event_type: str) -> list[dict]:
    return [e for e in running.outbox() if e["type"] == event_type]


def delete(running, path: str):
    return running.request("DELETE", path, None, {"Authorization": f"Bearer {API_KEY}"})


def two_customers_tied_by_one_contact(running, clock):
    """An SMS customer and a web chat customer (verified email), then a chat verified by the SMS
    number: the contact ties both. Returns (sms customer id, chat customer id, tying contact)."""
    by_sms = sms(running, "SM" + "a" * 32, sender=PHONE)
    clock.advance(60)
    by_chat = chat(running, "m-1", identity={"email": "jana@example.com"}, signed="jana@example.com")
    clock.advance(60)
    tying = chat(running, "m-2", identity={"phone": PHONE}, signed=PHONE)
    return by_sms["customer"]["id"], by_chat["customer"]["id"], tying


def test_a_contact_tying_two_customers_merges_them_and_unmerge_restores_both(clocked):
    running, clock = clocked
    survivor_id, absorbed_id, tying = two_customers_tied_by_one_contact(running, clock)

    # The older customer survives and the contact lands on it.
    assert tying["customer"]["id"] == survivor_id != absorbed_id
    [merged] = events(running, "customer.merged")
    assert merged["data"]["customer"] == {"id": survivor_id}
    assert merged["data"]["other_customer"] == {"id": absorbed_id}
    merge_id = merged["data"]["merge"]["id"]

    survivor = running.api(f"/v1/customers/{survivor_id}").json()
    assert keys(survivor) >= {f"phone:{PHONE}", "email:jana@example.com", "webchat:acme/visitor-1"}
    assert survivor["merged_from"] == [absorbed_id]
    assert [(m["merge_id"], m["role"], m["other_customer_id"], m["reverted_at"]) for m in survivor["merges"]] == [
        (merge_id, "survivor", absorbed_id, None)
    ]
    assert running.api(f"/v1/customers/{absorbed_id}").json()["merged_into"] == survivor_id
    timeline = running.api(f"/v1/customers/{survivor_id}/contacts").json()["data"]
    assert [c["channel"] for c in timeline] == ["webchat", "webchat", "sms"]  # both partitions, newest first
    audit = running.api(f"/v1/merges/{merge_id}").json()
    assert audit["survivor_before"]["id"] == survivor_id and audit["absorbed_before"]["merged_into"] is None
    assert audit["trigger"].startswith("contact:msg:webchat:")
    # Found by the absorbed customer's email, the survivor answers.
    found = running.api("/v1/customers?identifier=email:jana@example.com").json()["data"]
    assert [c["id"] for c in found] == [survivor_id]

    undone = api_post(running, f"/v1/customers/{absorbed_id}/unmerge", {})
    again = api_post(running, f"/v1/customers/{absorbed_id}/unmerge", {"merge_id": merge_id})

    assert undone.status == again.status == 200, undone.body
    assert undone.json()["merge_id"] == merge_id
    running.wait_for(lambda: running.settled() and events(running, "customer.unmerged"), message="unmerge event")
    assert len(events(running, "customer.unmerged")) == 1
    restored = running.api(f"/v1/customers/{absorbed_id}").json()
    assert restored["merged_into"] is None
    assert keys(restored) == {"email:jana@example.com", "webchat:acme/visitor-1"}
    assert [c["id"] for c in running.api(f"/v1/customers/{absorbed_id}/contacts").json()["data"]] == [
        c["id"] for c in timeline if c["customer_id"] == absorbed_id
    ]
    survivor = running.api(f"/v1/customers/{survivor_id}").json()
    assert survivor["merged_from"] == [] and survivor["merges"][0]["reverted_at"] is not None
    assert "email:jana@example.com" not in keys(survivor)


def test_an_explicit_merge_through_the_api_is_idempotent_and_respects_merge_protection(clocked):
    running, clock = clocked
    first = sms(running, "SM" + "b" * 32, sender=PHONE)["customer"]["id"]
    clock.advance(60)
    second = sms(running, "SM" + "c" * 32, sender="+16505550111")["customer"]["id"]
    clock.advance(60)
    third = sms(running, "SM" + "d" * 32, sender="+16505550122")["customer"]["id"]
    assert api_post(running, f"/v1/customers/{first}/identifiers", {"identifier": "external:CRM-1"}).status == 200
    assert api_post(running, f"/v1/customers/{third}/identifiers", {"identifier": "external:CRM-3"}).status == 200

    merged = api_post(running, f"/v1/customers/{second}/merge", {"customer_id": first})
    repeated = api_post(running, f"/v1/customers/{first}/merge", {"customer_id": second})
    refused = api_post(running, f"/v1/customers/{first}/merge", {"customer_id": third})

    assert merged.status == repeated.status == 200, merged.body
    assert merged.json()["customer"]["id"] == first
    assert repeated.json()["merge_id"] == merged.json()["merge_id"]
    assert refused.status == 422
    assert refused.json()["error"]["message"] == (
        "the customers are not merged: merge_protection: the customers hold different external identifiers"
    )
    assert api_post(running, f"/v1/customers/{first}/merge", {}).status == 400
    assert api_post(running, f"/v1/customers/{first}/merge", {"customer_id": "cus_nope"}).status == 404
    # An absorbed customer is a redirect: it is changed through the survivor.
    linked = api_post(running, f"/v1/customers/{second}/identifiers", {"identifier": "email:x@example.com"})
    assert linked.status == 409 and linked.json()["error"]["detail"] == {"merged_into": first}
    running.wait_for(lambda: running.settled() and events(running, "customer.merged"), message="merge event")
    assert len(events(running, "customer.merged")) == 1


def test_erasing_a_survivor_erases_the_customers_it_absorbed_and_the_merge_records(clocked):
    running, clock = clocked
    survivor_id, absorbed_id, _ = two_customers_tied_by_one_contact(running, clock)
    merge_id = running.api(f"/v1/customers/{survivor_id}").json()["merges"][0]["merge_id"]
    export = running.api(f"/v1/customers/{survivor_id}/export").json()

    refused = delete(running, f"/v1/customers/{absorbed_id}")
    erased = delete(running, f"/v1/customers/{survivor_id}")

    assert [c["id"] for c in export["merged_customers"]] == [absorbed_id]
    assert len(export["contacts"]) == 3 and [m["id"] for m in export["merges"]] == [merge_id]
    assert refused.status == 409 and refused.json()["error"]["detail"] == {"merged_into": survivor_id}
    assert erased.status == 200 and erased.json()["merged_customers"] == [absorbed_id]
    assert erased.json()["contacts"] == 3
    for path in (f"/v1/customers/{survivor_id}", f"/v1/customers/{absorbed_id}", f"/v1/merges/{merge_id}"):
        assert running.api(path).status == 404, path
    running.wait_for(lambda: running.settled() and len(events(running, "customer.erased")) == 2, message="erasures")
    assert {e["data"]["customer"]["id"] for e in events(running, "customer.erased")} == {survivor_id, absorbed_id}
