"""Identity rules and cases through HTTP, with the hub's clock under the test's control."""

from __future__ import annotations

import json

import pytest

from chalicelib.bootstrap import Hub
from chalicelib.local.runtime import EmbeddedRuntime
from chalicelib.settings import Settings
from chalicelib.adapters.channels.webchat.adapter import user_hash
from tests.functional.conftest import API_KEY, WEBCHAT_SECRET, RunningHub, make_config
from tests.functional.test_ingest_edges import twilio_request
from tests.support.fakes import Clock

RULES = """
identity:
  default_region: US
  blocked: ["phone:+14155550199", "email:noreply@*"]
  max_per_kind: {email: 2, external: 1}
cases:
  window_hours: 24
  auto_close_after_hours: 72
"""


@pytest.fixture
def clocked(tmp_path, receiver):
    config = make_config(tmp_path / "hub.yaml", receiver.url)
    text = config.read_text().replace("identity:\n  default_region: US\n", "")
    config.write_text(RULES + text)
    clock = Clock()
    hub = Hub(Settings(config_path=str(config), data_dir=str(tmp_path / "data"), port=0, local_workers=1), clock=clock)
    runtime = EmbeddedRuntime(hub=hub, port=0).start()
    try:
        yield RunningHub(runtime, receiver, tmp_path / "data"), clock
    finally:
        runtime.stop()


def sms(running, sid: str, sender: str = "+16505550100", body: str = "hi") -> dict:
    path, data, headers = twilio_request(
        {"MessageSid": sid, "AccountSid": "AC" + "a" * 32, "From": sender, "To": "+14155550100", "Body": body,
         "NumMedia": "0"}
    )
    assert running.post(path, data, headers).status == 200
    running.wait_for(running.settled, message=f"{sid} processed")
    return running.outbox()[-1]["data"]


def chat(running, message_id: str, *, session: str | None = None, identity: dict | None = None, signed: str | None = None):
    payload = {"site_id": "acme", "visitor_id": "visitor-1", "message_id": message_id, "text": "hello"}
    if session:
        payload["session_id"] = session
    if identity:
        payload["identity"] = identity
    if signed:
        payload["user_hash"] = user_hash(WEBCHAT_SECRET, signed)
    response = running.post("/webhooks/webchat", json.dumps(payload).encode(), {"Content-Type": "application/json"})
    assert response.status == 202, response.body
    running.wait_for(running.settled, message=f"{message_id} processed")
    return running.outbox()[-1]["data"]


def api_post(running, path: str, body: dict):
    return running.request("POST", path, json.dumps(body).encode(),
                           {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})


def test_contacts_join_the_open_case_within_the_window_and_open_a_new_one_after(clocked):
    running, clock = clocked
    first = sms(running, "SM" + "1" * 32)
    clock.advance(23 * 3600)
    second = sms(running, "SM" + "2" * 32)
    clock.advance(25 * 3600)
    third = sms(running, "SM" + "3" * 32)

    assert second["case"]["id"] == first["case"]["id"]
    assert second["contact"]["case_reason"] == "within_window"
    assert third["case"]["id"] != first["case"]["id"]
    assert third["contact"]["case_reason"] == "new_case"
    old = running.api(f"/v1/cases/{first['case']['id']}").json()
    assert (old["status"], old["close_reason"], old["contact_count"]) == ("closed", "window_elapsed", 2)


def test_a_chat_session_keeps_its_case_however_long_the_pause(clocked):
    running, clock = clocked
    first = chat(running, "m-1", session="s-1")
    clock.advance(40 * 3600)
    later = chat(running, "m-2", session="s-1")
    clock.advance(40 * 3600)
    new_session = chat(running, "m-3", session="s-2")

    assert later["case"]["id"] == first["case"]["id"]
    assert later["contact"]["case_reason"] == "thread_key"
    assert new_session["case"]["id"] != first["case"]["id"]
    assert new_session["contact"]["case_reason"] == "new_case"


def test_an_inactive_case_reads_as_closed_and_the_close_api_closes_cases(clocked):
    running, clock = clocked
    first = sms(running, "SM" + "4" * 32)
    case_id, customer_id = first["case"]["id"], first["customer"]["id"]
    clock.advance(73 * 3600)

    inactive = running.api(f"/v1/cases/{case_id}").json()
    customer = running.api(f"/v1/customers/{customer_id}").json()
    assert (inactive["status"], inactive["close_reason"]) == ("closed", "inactive")
    assert customer["open_case"] is None

    second = sms(running, "SM" + "5" * 32)
    closed = api_post(running, f"/v1/cases/{second['case']['id']}/close", {})
    again = api_post(running, f"/v1/cases/{second['case']['id']}/close", {})
    third = sms(running, "SM" + "6" * 32)

    assert closed.status == again.status == 200
    assert (closed.json()["status"], closed.json()["close_reason"]) == ("closed", "api")
    assert running.api(f"/v1/customers/{customer_id}").json()["open_case"]["id"] == third["case"]["id"]
    assert third["case"]["id"] != second["case"]["id"]
    assert api_post(running, "/v1/cases/case_nope/close", {}).status == 404


def test_blocked_numbers_never_link_people(clocked):
    running, _ = clocked
    mother = sms(running, "SM" + "7" * 32, sender="+14155550199")
    son = sms(running, "SM" + "8" * 32, sender="+14155550199")

    assert mother["customer"]["id"] != son["customer"]["id"]
    decision = son["contact"]["resolution"]["decisions"][0]
    assert decision == {"identifier": "phone:+14155550199", "outcome": "blocked", "rule": "blocked: phone:+14155550199"}
    assert son["customer"]["identifiers"] == []


def test_a_verified_web_chat_login_links_to_the_customer_who_wrote_by_sms_with_the_same_phone(clocked):
    running, _ = clocked
    by_sms = sms(running, "SM" + "9" * 32, sender="+16505550142")
    unverified = chat(running, "m-10", identity={"phone": "+16505550142", "email": "x@example.com"})
    verified = chat(running, "m-11", identity={"phone": "+16505550142"}, signed="+16505550142")

    assert unverified["customer"]["id"] != by_sms["customer"]["id"]
    assert {d["outcome"] for d in unverified["contact"]["resolution"]["decisions"]} >= {"unverified"}
    # The visitor id already belongs to the anonymous web chat customer; both are verified, so the
    # two customers merge, and the older one (the SMS customer) survives.
    assert verified["customer"]["id"] == by_sms["customer"]["id"]
    decisions = [(d["identifier"], d["outcome"]) for d in verified["contact"]["resolution"]["decisions"]]
    assert decisions[0] == ("webchat:acme/visitor-1", "merged")
    assert ("phone:+16505550142", "matched") in decisions
    assert ("webchat:acme/visitor-1", "already_linked") in decisions
    absorbed = running.api(f"/v1/customers/{unverified['customer']['id']}").json()
    assert absorbed["merged_into"] == by_sms["customer"]["id"]


def test_identifiers_link_explicitly_within_the_rules(clocked):
    running, _ = clocked
    ada = sms(running, "SM" + "a" * 32, sender="+16505550001")["customer"]["id"]
    bob = sms(running, "SM" + "b" * 32, sender="+16505550002")["customer"]["id"]

    linked = api_post(running, f"/v1/customers/{ada}/identifiers", {"identifier": "external:CRM-1"})
    again = api_post(running, f"/v1/customers/{ada}/identifiers", {"identifier": "external:CRM-1"})
    second_external = api_post(running, f"/v1/customers/{ada}/identifiers", {"identifier": "external:CRM-2"})
    owned = api_post(running, f"/v1/customers/{bob}/identifiers", {"identifier": "external:CRM-1"})
    blocked = api_post(running, f"/v1/customers/{bob}/identifiers", {"identifier": "email:NoReply@shop.example"})
    invalid = api_post(running, f"/v1/customers/{bob}/identifiers", {"identifier": "email:not-an-address"})
    missing = api_post(running, "/v1/customers/cus_nobody/identifiers", {"identifier": "external:CRM-9"})

    assert linked.status == again.status == 200
    assert {"kind": "external", "value": "CRM-1", "scope": None} in linked.json()["identifiers"]
    assert (second_external.status, second_external.json()["error"]["code"]) == (422, "rule_refused")
    assert (owned.status, owned.json()["error"]["detail"]["customer_id"]) == (409, ada)
    assert blocked.status == 422 and "blocked" in blocked.json()["error"]["message"]
    assert invalid.status == 400
    assert missing.status == 404
    found = running.api("/v1/customers?identifier=external:CRM-1").json()["data"]
    assert [c["id"] for c in found] == [ada]


def test_the_golden_record_carries_sources_survivorship_and_quality_flags(clocked):
    running, clock = clocked
    customer_id = sms(running, "SM" + "c" * 32, sender="+16505550003")["customer"]["id"]
    path, body, headers = twilio_request(
        {"MessageSid": "SM" + "d" * 32, "AccountSid": "AC" + "a" * 32, "From": "whatsapp:+16505550003",
         "To": "whatsapp:+14155550100", "Body": "hi", "NumMedia": "0", "ProfileName": "Jana S."}
    )
    assert running.post(path, body, headers).status == 200
    running.wait_for(running.settled, message="whatsapp processed")

    crm = running.request(
        "PATCH", f"/v1/customers/{customer_id}/attributes",
        json.dumps({"source": "api", "attributes": {"name": "Jana Schmidt", "tier": "gold", "custom.contract": "K-9"}}).encode(),
        {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    bad = running.request(
        "PATCH", f"/v1/customers/{customer_id}/attributes", json.dumps({"attributes": {"Bad Name": 1}}).encode(),
        {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    record = running.api(f"/v1/customers/{customer_id}").json()

    assert crm.status == 200 and bad.status == 400
    assert record["attributes"]["name"]["value"] == "Jana Schmidt"
    assert record["attributes"]["name"]["source"] == "api"
    assert record["observations"]["name"]["twilio"]["value"] == "Jana S."
    assert record["attributes"]["preferred_channel"]["value"] == "whatsapp"
    assert record["attributes"]["custom.contract"]["value"] == "K-9"
    assert record["quality_flags"] == ["conflicting_names", "missing_email"]
    assert record["consent"] == {}
