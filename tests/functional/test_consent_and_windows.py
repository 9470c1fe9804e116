"""Consent and service windows through HTTP on the embedded hub: keyword webhooks, the consent
route, export and erasure, stored customers from before the ledger, and the windows' exposure."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from chalicelib.adapters.store.records import PutCustomer
from chalicelib.bootstrap import Hub
from chalicelib.local.runtime import EmbeddedRuntime
from chalicelib.settings import Settings
from tests.functional.conftest import API_KEY, RunningHub, make_config
from tests.functional.test_ingest_edges import twilio_request
from tests.support.fake_sender import register_fake_sender
from tests.support.fakes import Clock

CONSENT = """
consent:
  keywords:
    opt_out: [STOPP, ABMELDEN]
  help_text:
    de: "Beispiel GmbH Kundenservice. Abmelden mit STOPP."
    en: "Example Ltd customer service. Reply STOP to unsubscribe."
"""
START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
PHONE = "+16505551234"
NUMBER = "+14155550100"


@pytest.fixture
def hub(tmp_path, receiver, monkeypatch):
    register_fake_sender(monkeypatch, "twilio")
    config = make_config(tmp_path / "hub.yaml", receiver.url)
    config.write_text(config.read_text() + CONSENT)
    clock = Clock(START)
    runtime = EmbeddedRuntime(
        hub=Hub(Settings(config_path=str(config), data_dir=str(tmp_path / "data"), port=0, local_workers=1), clock=clock),
        port=0,
    ).start()
    try:
        yield RunningHub(runtime, receiver, tmp_path / "data"), clock
    finally:
        runtime.stop()


def inbound(running: RunningHub, n: int, body: str, *, whatsapp: bool = False) -> dict:
    """A Twilio webhook from the customer; answers the contact the hub made of it."""
    prefix = "whatsapp:" if whatsapp else ""
    sid = f"SM{n:032d}"
    path, data, headers = twilio_request({"MessageSid": sid, "AccountSid": "AC" + "a" * 32, "From": prefix + PHONE,
                                          "To": prefix + NUMBER, "Body": body, "NumMedia": "0"})
    assert running.post(path, data, headers).status == 200
    running.wait_for(running.settled, message=f"{sid} processed")
    [event] = [e for e in running.outbox() if e["data"]["contact"]["provider_message_id"] == sid]
    return event["data"]["contact"]


def call(running: RunningHub, method: str, path: str, body=None):
    data = json.dumps(body).encode() if body is not None else None
    return running.request(method, path, data, {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})


def test_sms_stop_opts_out_both_purposes_with_the_contact_as_evidence_and_start_opts_back_in(hub):
    running, clock = hub
    call_first = inbound(running, 1, "Hi, where is my order?")
    customer_id = call_first["customer_id"]
    assert call(running, "PUT", f"/v1/customers/{customer_id}/consent",
                {"channel": "sms", "purpose": "marketing", "state": "opted_in"}).status == 200

    clock.advance(60)
    stop = inbound(running, 2, "STOP")

    assert stop["routing"]["tags"] == ["opt_out"]
    assert stop["enrichment"]["consent"]["source"] == "keyword:STOP"
    consent = running.api(f"/v1/customers/{customer_id}").json()["consent"]
    for purpose in ("service", "marketing"):
        entry = consent["sms"][purpose]
        assert (entry["state"], entry["source"], entry["evidence"]) == ("opted_out", "keyword:STOP", stop["id"])
    assert [c["state"] for c in consent["sms"]["marketing"]["history"]] == ["opted_in", "opted_out"]

    clock.advance(60)
    start = inbound(running, 3, "Start")

    assert start["routing"]["tags"] == ["opt_in"]
    consent = running.api(f"/v1/customers/{customer_id}").json()["consent"]
    assert (consent["sms"]["service"]["state"], consent["sms"]["service"]["evidence"]) == ("opted_in", start["id"])
    assert consent["sms"]["marketing"]["state"] == "opted_out", "START is no consent to marketing"


def test_help_is_answered_with_the_configured_text_as_a_reply_intent(hub):
    running, _ = hub

    contact = inbound(running, 1, "help")

    assert contact["routing"]["tags"] == ["help"]
    [reply] = contact["routing"]["replies"]
    assert reply["rule"] == "consent:help"
    assert reply["text"] in ("Beispiel GmbH Kundenservice. Abmelden mit STOPP.",
                             "Example Ltd customer service. Reply STOP to unsubscribe.")
    stored = running.api(f"/v1/contacts/{contact['id']}").json()
    assert stored["routing"]["replies"] == [reply]
    assert running.api(f"/v1/customers/{contact['customer_id']}").json()["consent"] == {}


def test_a_local_keyword_on_whatsapp_opts_out_whatsapp_only(hub):
    running, _ = hub
    inbound(running, 1, "Hello")

    stopp = inbound(running, 2, "Stopp", whatsapp=True)

    assert stopp["routing"]["tags"] == ["opt_out"]
    consent = running.api(f"/v1/customers/{stopp['customer_id']}").json()["consent"]
    assert consent["whatsapp"]["service"]["state"] == "opted_out"
    assert consent["whatsapp"]["service"]["source"] == "keyword:STOPP"
    assert "sms" not in consent


def test_the_consent_route_records_statements_and_names_every_bad_field(hub):
    running, _ = hub
    customer_id = inbound(running, 1, "Hello")["customer_id"]
    path = f"/v1/customers/{customer_id}/consent"

    one = call(running, "PUT", path, {"channel": "email", "purpose": "marketing", "state": "opted_in",
                                      "evidence": "double opt-in 2026-03-01"})
    assert one.status == 200
    entry = one.json()["consent"]["email"]["marketing"]
    assert (entry["state"], entry["source"], entry["evidence"]) == ("opted_in", "api:tests", "double opt-in 2026-03-01")

    many = call(running, "PUT", path, [{"channel": "mms", "purpose": "service", "state": "opted_out"},
                                       {"channel": "whatsapp", "purpose": "marketing", "state": "opted_in"}])
    assert many.status == 200
    ledger = many.json()["consent"]
    assert set(ledger) == {"email", "sms", "whatsapp"}
    assert ledger["sms"]["service"]["evidence"].startswith("request:"), "the API call is the evidence"
    assert running.api(f"/v1/customers/{customer_id}").json()["consent"] == ledger

    for body, status, field in [
        ({"channel": "sms", "purpose": "service", "state": "opted_out", "reason": "x"}, 422, "reason"),
        ({"channel": "pager", "purpose": "service", "state": "opted_out"}, 422, "channel"),
        ({"channel": "sms", "purpose": "service", "state": "maybe"}, 422, "state"),
        ([{"channel": "sms", "purpose": "service", "state": "opted_out"}, {"channel": "sms"}], 422, "[1].purpose"),
    ]:
        answer = call(running, "PUT", path, body)
        assert (answer.status, answer.json()["error"]["detail"]["field"]) == (status, field), answer.body
    assert running.api(f"/v1/customers/{customer_id}").json()["consent"] == ledger, "a refused body changes nothing"
    assert call(running, "PUT", path, None).status == 400
    unknown = call(running, "PUT", "/v1/customers/cus_01JAAAAAAAAAAAAAAAAAAAAAAA/consent",
                   {"channel": "sms", "purpose": "service", "state": "opted_out"})
    assert unknown.status == 404


def test_export_shows_the_ledger_and_erasure_takes_it_away(hub):
    running, _ = hub
    stop = inbound(running, 1, "STOP")
    customer_id = stop["customer_id"]

    export = running.api(f"/v1/customers/{customer_id}/export").json()
    assert export["customer"]["consent"]["sms"]["service"]["evidence"] == stop["id"]
    assert [c["enrichment"]["consent"]["action"] for c in export["contacts"]] == ["opt_out"]

    assert call(running, "DELETE", f"/v1/customers/{customer_id}").status == 200
    assert running.hub.store.get_customer(customer_id) is None
    assert running.api(f"/v1/customers/{customer_id}/export").status == 404


def test_a_customer_stored_before_the_ledger_still_loads_and_takes_new_statements(hub):
    running, _ = hub
    customer_id = inbound(running, 1, "Hello")["customer_id"]
    store = running.hub.store
    doc = json.loads(store.get_customer(customer_id).model_dump_json())
    doc["consent"] = {"sms": "opted_out", "email": "opted_in"}
    store._write([PutCustomer(customer_id, doc["version"], json.dumps(doc))])  # the old shape, byte for byte

    body = running.api(f"/v1/customers/{customer_id}").json()
    assert body["consent"]["sms"]["marketing"]["state"] == "opted_out"
    assert (body["consent"]["email"]["service"]["state"], body["consent"]["email"]["service"]["source"]) == (
        "opted_in", "legacy")

    start = inbound(running, 2, "START")
    assert start["customer_id"] == customer_id
    answer = call(running, "PUT", f"/v1/customers/{customer_id}/consent",
                  {"channel": "email", "purpose": "marketing", "state": "opted_in"})
    assert answer.status == 200
    ledger = answer.json()["consent"]
    assert ledger["sms"]["service"]["state"] == "opted_in"
    assert ledger["email"]["marketing"]["state"] == "opted_in"


def test_the_customer_shows_its_service_windows_and_reply_targets(hub):
    running, clock = hub
    inbound(running, 1, "Hello on SMS")
    clock.advance(3600)
    whatsapp = inbound(running, 2, "Hello on WhatsApp", whatsapp=True)
    customer_id = whatsapp["customer_id"]

    body = running.api(f"/v1/customers/{customer_id}").json()
    assert body["service_windows"] == [{
        "channel": "whatsapp", "provider": "twilio", "account": f"whatsapp:{NUMBER}",
        "opened_at": "2026-03-02T09:00:00Z", "closes_at": "2026-03-03T09:00:00Z", "open": True,
    }]
    assert {t["channel"] for t in body["reply_targets"].values()} == {"sms", "whatsapp"}
    case = running.api(f"/v1/cases/{whatsapp['case_id']}").json()
    assert case["last_inbound"]["contact_id"] == whatsapp["id"]

    clock.advance(24 * 3600)
    [window] = running.api(f"/v1/customers/{customer_id}").json()["service_windows"]
    assert window["open"] is False
