"""Who sent an email, through HTTP on the running hub: the hub proves senders with DKIM when the
provider gave no verdict, and an unproved sender keeps continuity by address without ever
reaching a customer who proved the address.

Mailgun's raw-MIME route (`forward(".../webhooks/mailgun/mime")`) carries no verdict headers, so
every sender there is unproved unless the hub's own DKIM check passes. DNS is a fake that
publishes the test signer's key only where a test says so.
"""

from __future__ import annotations

import urllib.parse
from datetime import datetime, timezone

import pytest

from chalicelib.adapters.email_auth import FakeTxtResolver
import hashlib

from tests.functional.conftest import API_KEY
from tests.functional.test_email_channels import CONFIG as EMAIL_CONFIG
from tests.functional.test_email_channels import SUPPORT, contacts, running_email_hub
from tests.support.dkim_signing import Signer

CONFIG = {**EMAIL_CONFIG, "api_keys": [{"name": "tests", "sha256": hashlib.sha256(API_KEY.encode()).hexdigest(),
                                        "scopes": ["customers:read", "customers:write", "operations"]}]}
ADDRESS = "jana.schmidt@kunde.example"
SIGNER = Signer("kunde.example")
AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)


def raw_mail(message_id: str, text: str, *, sender: str = f"Jana Schmidt <{ADDRESS}>") -> bytes:
    lines = [f"From: {sender}", f"To: {SUPPORT}", "Subject: Rechnung", "Date: Thu, 01 Jan 2026 00:00:00 +0000",
             f"Message-ID: {message_id}", "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8"]
    return ("\r\n".join(lines) + "\r\n\r\n" + text + "\r\n").encode("utf-8")


def mailgun_raw(raw: bytes) -> tuple[bytes, dict]:
    """A raw-MIME route POST of exactly these bytes, signed as Mailgun signs."""
    import secrets

    from chalicelib.adapters.channels.mailgun.adapter import compute_signature
    from tests.functional.test_email_channels import MAILGUN_KEY

    timestamp, token = str(int(AT.timestamp())), secrets.token_hex(25)
    fields = {"recipient": SUPPORT, "sender": ADDRESS, "body-mime": raw.decode("utf-8"), "timestamp": timestamp,
              "token": token, "signature": compute_signature(MAILGUN_KEY, timestamp, token)}
    return urllib.parse.urlencode(fields).encode(), {"Content-Type": "application/x-www-form-urlencoded"}


def send(hub, raw: bytes) -> None:
    body, headers = mailgun_raw(raw)
    assert hub.post("/webhooks/mailgun/mime", body, headers).status == 200


@pytest.fixture
def dns():
    return FakeTxtResolver()


@pytest.fixture
def email_hub(tmp_path, dns):
    yield from running_email_hub(tmp_path, CONFIG, resolver=dns)


def customer_of(hub, address: str) -> list[dict]:
    return hub.api("/v1/customers?identifier=" + urllib.parse.quote(f"email:{address}")).json()["data"]


def test_unproved_mail_from_one_address_is_one_customer_found_by_the_address(email_hub):
    hub, _ = email_hub
    send(hub, raw_mail("<first@kunde.example>", "Meine Rechnung stimmt nicht."))
    contacts(hub, 1)  # the second mail must find the first one's customer
    send(hub, raw_mail("<second@kunde.example>", "Haben Sie meine Mail bekommen?"))

    first, second = contacts(hub, 2)
    assert first["customer_id"] == second["customer_id"], "two mails from one address are one customer"
    assert [c["sender_verified"] for c in (first, second)] == [False, False]
    assert first["resolution"]["rule"] == "new_customer_by_email_continuity"
    assert second["resolution"]["rule"] == "email_continuity"
    assert first["metadata"]["sender_verification"]["hub"]["reason"] == "no_signature"
    [customer] = customer_of(hub, ADDRESS)
    assert customer["id"] == first["customer_id"]
    assert customer["unverified_identifiers"] == [f"email:{ADDRESS}"]


def test_linking_an_unproved_address_through_the_api_proves_it(email_hub):
    import json

    hub, _ = email_hub
    send(hub, raw_mail("<unproved@kunde.example>", "Ohne Signatur."))
    [contact] = contacts(hub, 1)
    linked = hub.request("POST", f"/v1/customers/{contact['customer_id']}/identifiers",
                         json.dumps({"identifier": f"email:{ADDRESS}"}).encode(),
                         {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
    assert linked.status == 200 and linked.json()["unverified_identifiers"] == []
    [customer] = customer_of(hub, ADDRESS)
    assert customer["unverified_identifiers"] == [], "the CRM vouched for the address"


def test_a_dkim_signature_the_hub_verifies_proves_the_sender(email_hub, dns):
    hub, _ = email_hub
    SIGNER.publish(dns)
    send(hub, SIGNER.sign(raw_mail("<signed@kunde.example>", "Signiert.")))

    [contact] = contacts(hub, 1)
    verification = contact["metadata"]["sender_verification"]
    assert contact["sender_verified"] is True
    assert (verification["method"], verification["hub"]["dkim_domain"]) == ("hub_dkim", "kunde.example")
    assert contact["resolution"]["rule"] == "new_customer"
    [customer] = customer_of(hub, ADDRESS)
    assert customer["unverified_identifiers"] == []


def test_a_tampered_signed_mail_stays_unproved(email_hub, dns):
    hub, _ = email_hub
    SIGNER.publish(dns)
    signed = SIGNER.sign(raw_mail("<tampered@kunde.example>", "Bitte 10 EUR erstatten."))
    send(hub, signed.replace(b"10 EUR", b"99 EUR"))

    [contact] = contacts(hub, 1)
    assert contact["sender_verified"] is False
    assert contact["metadata"]["sender_verification"]["hub"]["reason"] == "signature_failed"


def test_a_dns_failure_answers_503_and_mailguns_retry_proves_the_sender(email_hub, dns):
    """While DNS is down nothing can be told about the sender: the hub answers 503 without
    queueing, so Mailgun retries; its retry (same token, same bytes) is then proved."""
    hub, _ = email_hub
    SIGNER.publish(dns)
    dns.fail(SIGNER.dns_name)
    body, headers = mailgun_raw(SIGNER.sign(raw_mail("<dns@kunde.example>", "Bitte zurückrufen.")))
    refused = hub.post("/webhooks/mailgun/mime", body, headers)
    assert refused.status == 503 and "DNS" in refused.json()["error"]["message"]
    hub.wait_for(hub.settled, message="nothing queued")
    assert hub.outbox() == [], "nothing was queued for the refused delivery"

    dns.failing.clear()
    assert hub.post("/webhooks/mailgun/mime", body, headers).status == 200
    [contact] = contacts(hub, 1)
    assert contact["sender_verified"] is True


def test_unproved_mail_never_joins_a_customer_who_proved_the_address(email_hub, dns):
    hub, _ = email_hub
    SIGNER.publish(dns)
    send(hub, SIGNER.sign(raw_mail("<proved@kunde.example>", "Echt von mir.")))
    contacts(hub, 1)  # the forged mail must find the address already proved
    send(hub, raw_mail("<forged@kunde.example>", "Überweisen Sie mein Guthaben an IBAN ...", sender=ADDRESS))

    proved, forged = contacts(hub, 2)
    assert proved["sender_verified"] and not forged["sender_verified"]
    assert forged["customer_id"] != proved["customer_id"]
    decisions = {d["outcome"] for d in forged["resolution"]["decisions"]}
    assert "held_by_verified_customer" in decisions
    assert forged["resolution"]["rule"] == "new_customer_without_linkable_identifier"
    [owner] = customer_of(hub, ADDRESS)
    assert owner["id"] == proved["customer_id"], "the address stays with the customer who proved it"


def test_a_proved_mail_joins_the_continuity_customer_and_proves_the_address(email_hub, dns):
    hub, _ = email_hub
    send(hub, raw_mail("<before@kunde.example>", "Noch ohne Signatur."))
    contacts(hub, 1)  # the signed mail must find the continuity customer
    SIGNER.publish(dns)
    send(hub, SIGNER.sign(raw_mail("<after@kunde.example>", "Jetzt signiert.")))

    before, after = contacts(hub, 2)
    assert after["customer_id"] == before["customer_id"]
    assert "proved" in {d["outcome"] for d in after["resolution"]["decisions"]}
    [customer] = customer_of(hub, ADDRESS)
    assert customer["unverified_identifiers"] == []


def test_a_routing_rule_can_park_unproved_senders(tmp_path, dns):
    config = {**CONFIG, "routing": {"rules": [
        {"name": "unproved-email", "when": {"all": [{"channel": "email"}, {"sender_verified": False}]},
         "then": {"park": "the sender's address is not proved"}, "stop": True},
    ]}}
    for hub, _ in running_email_hub(tmp_path, config, resolver=dns):
        send(hub, raw_mail("<park@kunde.example>", "Bitte Konto ändern."))
        hub.wait_for(lambda: hub.settled() and hub.api("/v1/exceptions").json()["data"], message="parked")
        [parked] = hub.api("/v1/exceptions").json()["data"]
        assert parked["reason"] == "the sender's address is not proved (rule unproved-email)"
        assert hub.outbox() == []


def test_a_captured_mailgun_signature_cannot_carry_another_message_to_another_container(tmp_path):
    """Two hub processes on one store (two Lambda containers on one table): the token one of them
    accepted for a message is refused to the other for any other message, and accepted again
    for the same message (Mailgun's retry), which the Message-ID dedupe then drops."""
    import secrets

    from chalicelib.adapters.channels.mailgun.adapter import compute_signature
    from tests.functional.test_email_channels import MAILGUN_KEY

    timestamp, token = str(int(AT.timestamp())), secrets.token_hex(25)

    def signed(raw: bytes) -> bytes:
        fields = {"recipient": SUPPORT, "sender": ADDRESS, "body-mime": raw.decode(), "timestamp": timestamp,
                  "token": token, "signature": compute_signature(MAILGUN_KEY, timestamp, token)}
        return urllib.parse.urlencode(fields).encode()

    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    original = signed(raw_mail("<original@kunde.example>", "Bitte Adresse ändern."))
    forged = signed(raw_mail("<forged@kunde.example>", "Bitte IBAN ändern: DE00 ..."))
    first = running_email_hub(tmp_path, CONFIG)
    second = running_email_hub(tmp_path, CONFIG)  # same data directory: the same store
    hub_a, _ = next(first)
    hub_b, _ = next(second)
    try:
        assert hub_a.post("/webhooks/mailgun/mime", original, headers).status == 200
        refused = hub_b.post("/webhooks/mailgun/mime", forged, headers)
        assert (refused.status, refused.json()["error"]["code"]) == (406, "replayed_token")
        assert hub_b.post("/webhooks/mailgun/mime", original, headers).status == 200, "Mailgun's retry"
        [contact] = contacts(hub_a, 1)
        assert contact["metadata"]["message_id"] == "original@kunde.example"
    finally:
        first.close()
        second.close()
