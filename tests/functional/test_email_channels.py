"""Email through HTTP on the running hub: Mailgun and SendGrid posts with their real bytes and
credentials become contacts; a wrong credential is refused; and an email thread stays with the
customer who started it, even when someone they copied replies to all."""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime, timezone
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as modern_policy
from urllib.parse import urlencode

import pytest

from chalicelib.adapters.channels.mailgun.adapter import compute_signature
from chalicelib.bootstrap import Hub
from chalicelib.local.runtime import EmbeddedRuntime
from chalicelib.settings import Settings
from tests.contract.channels.sendgrid import PASSWORD, PATH_TOKEN, PUBLIC_KEY
from tests.functional.conftest import HttpResult, RunningHub
from tests.support.fakes import Clock
from tests.support.fixtures import load

MAILGUN_KEY = "test-mailgun-webhook-signing-key"
SUPPORT = "support@mg.acme.example"
CONFIG = {
    "channels": {
        "mailgun": {"webhook_signing_keys": [MAILGUN_KEY], "own_addresses": [SUPPORT, "@acme.example"]},
        "sendgrid": {"basic_auth": [{"username": "sendgrid", "password": PASSWORD}], "path_tokens": [PATH_TOKEN],
                     "signature_public_keys": [PUBLIC_KEY], "own_addresses": ["@acme.example"]},
    },
    "destinations": [{"name": "outbox", "type": "outbox", "path": "outbox.jsonl", "case_events": False}],
    "media": {"enabled": False},
}


def running_email_hub(tmp_path, config: dict, *, resolver=None):
    """The embedded hub on a clock set to the fixtures' time (their signatures carry it), with a
    DNS that knows only what `resolver` publishes (by default nothing)."""
    from chalicelib.adapters.email_auth import FakeTxtResolver

    clock = Clock(datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc))
    path = tmp_path / "hub.json"
    path.write_text(json.dumps(config))
    settings = Settings(config_path=str(path), data_dir=str(tmp_path / "data"), port=0)
    hub = Hub(settings, clock=clock, txt_resolver=resolver or FakeTxtResolver())
    runtime = EmbeddedRuntime(settings, hub=hub, port=0).start()
    try:
        yield RunningHub(runtime, None, tmp_path / "data"), clock
    finally:
        runtime.stop()


@pytest.fixture
def email_hub(tmp_path):
    yield from running_email_hub(tmp_path, CONFIG)


@pytest.fixture
def email_hub_with_media(tmp_path):
    yield from running_email_hub(tmp_path, {**CONFIG, "media": {"enabled": True}})


def contacts(hub: RunningHub, count: int) -> list[dict]:
    hub.wait_for(lambda: hub.settled() and len(hub.outbox()) >= count, message=f"{count} contacts delivered")
    return [line["data"]["contact"] for line in hub.outbox()]


def mailgun_mime(message: EmailMessage, at: datetime) -> tuple[bytes, dict]:
    """A raw-MIME route POST (`forward(".../webhooks/mailgun/mime")`), signed at `at`."""
    timestamp, token = str(int(at.timestamp())), secrets.token_hex(25)
    fields = {"recipient": SUPPORT, "sender": message["From"], "body-mime": message.as_string(), "timestamp": timestamp,
              "token": token, "signature": compute_signature(MAILGUN_KEY, timestamp, token)}  # fmt: skip
    return urlencode(fields).encode(), {"Content-Type": "application/x-www-form-urlencoded"}


def email(sender: str, message_id: str, text: str, *, cc: str | None = None, reply_to: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, SUPPORT, "Lieferung"
    message["Message-ID"] = message_id
    # Mailgun's own verdict, as its MX adds it: the sender counts as proved.
    message["X-Mailgun-Spf"] = "Pass"
    if cc:
        message["Cc"] = cc
    if reply_to:
        message["In-Reply-To"] = message["References"] = reply_to
    message.set_content(text)
    return message


def post(hub: RunningHub, path: str, body: bytes, headers: dict) -> HttpResult:
    return hub.post(path, body, headers)


def test_a_mailgun_post_with_binary_attachments_becomes_one_email_contact(email_hub):
    hub, _ = email_hub
    fixture = load("mailgun", "multipart_attachments")

    response = post(hub, fixture.path, fixture.body, fixture.headers)

    assert response.status == 200
    [contact] = contacts(hub, 1)
    assert (contact["channel"], contact["provider"], contact["subject"]) == ("email", "mailgun", "Rechnung für März")
    assert [(a["filename"], a["size"]) for a in contact["attachments"]] == [("Rechnung-März.pdf", 59), ("bild.png", 69)]
    # The same POST again (Mailgun's retry: the same token with the same message): accepted, and
    # still one contact (the Message-ID dedupes it).
    assert post(hub, fixture.path, fixture.body, fixture.headers).status == 200
    time.sleep(0.3)
    assert len(hub.outbox()) == 1


def files_in(fixture) -> dict[str, bytes]:
    """File name -> bytes of every file a fixture's POST carries, read by the standard library:
    the form's file parts (Mailgun), or the attachments of the raw MIME in its `email` field
    (SendGrid)."""
    content_type = next(v for k, v in fixture.headers.items() if k.lower() == "content-type")
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    form = message_from_bytes(head + fixture.body, policy=modern_policy)
    files = {part.get_filename(): part.get_payload(decode=True) for part in form.iter_parts() if part.get_filename()}
    for part in form.iter_parts():
        if part.get_param("name", header="content-disposition") == "email":
            mime = message_from_bytes(part.get_payload(decode=True), policy=modern_policy)
            files.update({a.get_filename(): a.get_payload(decode=True) for a in mime.walk() if a.get_filename()})
    return files


@pytest.mark.parametrize("provider, name", [("mailgun", "multipart_attachments"), ("sendgrid", "raw_mime")])
def test_email_attachments_are_stored_and_destinations_get_links_to_the_exact_bytes(email_hub_with_media, provider, name):
    hub, _ = email_hub_with_media
    fixture = load(provider, name)
    expected = files_in(fixture)

    assert post(hub, fixture.path, fixture.body, fixture.headers).status == 200
    [contact] = contacts(hub, 1)

    assert len(contact["attachments"]) == len(expected) >= 1
    for attachment in contact["attachments"]:
        link = attachment["url"]
        assert "/v1/media/" in link and "signature=" in link
        fetched = hub.request("GET", "/v1/" + link.split("/v1/", 1)[1], headers={"Accept": "*/*"})
        assert (fetched.status, fetched.body) == (200, expected[attachment["filename"]])
    statuses = [(e["source"], e["status"]) for e in contact["enrichment"]["media"]["attachments"]]
    assert statuses == [("embedded", "stored")] * len(expected)
    # The bytes never become part of the contact itself.
    assert "attachment_content" not in json.dumps(contact)


def test_a_large_attachment_reaches_its_link_and_leaves_no_copy_in_the_queues_blobs(email_hub_with_media):
    hub, clock = email_hub_with_media
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 1200  # 300 KB: the queue claim-checks the message
    mail = email("Ana <ana@customer.example>", "<big-1@customer.example>", "Anbei die Rechnung.")
    mail.add_attachment(pdf, maintype="application", subtype="pdf", filename="Rechnung.pdf")
    body, headers = mailgun_mime(mail, clock())

    assert post(hub, "/webhooks/mailgun/mime", body, headers).status == 200
    [contact] = contacts(hub, 1)

    [attachment] = contact["attachments"]
    fetched = hub.request("GET", "/v1/" + attachment["url"].split("/v1/", 1)[1], headers={"Accept": "*/*"})
    assert (fetched.status, fetched.body) == (200, pdf)
    # The claim-checked copy was released: only a small marker is left, so a redelivery of the
    # handled message is known for a duplicate.
    queue_blobs = [p for p in (hub.data_dir / "blobs" / "queue").rglob("*") if p.is_file()]
    assert all(p.stat().st_size < 200 for p in queue_blobs)


def test_a_sendgrid_raw_post_with_basic_auth_path_token_and_signature_becomes_a_contact(email_hub):
    hub, _ = email_hub
    fixture = load("sendgrid", "raw_mime")

    response = post(hub, fixture.path, fixture.body, fixture.headers)

    assert response.status == 200
    [contact] = contacts(hub, 1)
    assert (contact["provider"], contact["subject"]) == ("sendgrid", "Rechnung für März")
    assert contact["sender"]["display_name"] == "Jürgen Müller"


@pytest.mark.parametrize("spoil", ["authorization", "path", "signature"])
def test_sendgrid_without_each_credential_is_refused(email_hub, spoil):
    hub, _ = email_hub
    fixture = load("sendgrid", "raw_mime")
    headers, path = dict(fixture.headers), fixture.path
    if spoil == "authorization":
        headers.pop("authorization")
    elif spoil == "path":
        path = "/webhooks/sendgrid/not-the-token"
    else:
        headers["x-twilio-email-event-webhook-signature"] = headers["x-twilio-email-event-webhook-signature"][::-1]

    assert post(hub, path, fixture.body, headers).status == 401
    assert hub.hub.inbound_queue.depth() == 0


def test_a_reply_all_from_someone_copied_never_takes_over_the_customers_thread(email_hub):
    hub, clock = email_hub
    ana, bob = "Ana Souza <ana@customer.example>", "Bob Meyer <bob@partner.example>"
    first = email(ana, "<m1@customer.example>", "Wo bleibt meine Lieferung?", cc=bob)
    assert post(hub, "/webhooks/mailgun/mime", *mailgun_mime(first, clock())).status == 200
    [ana_first] = contacts(hub, 1)

    reply_all = email(bob, "<m2@partner.example>", "Ich warte auch darauf.", reply_to="<m1@customer.example>")
    assert post(hub, "/webhooks/mailgun/mime", *mailgun_mime(reply_all, clock())).status == 200
    bob_reply = contacts(hub, 2)[1]
    assert bob_reply["customer_id"] != ana_first["customer_id"] and bob_reply["case_id"] != ana_first["case_id"]

    clock.advance(4 * 24 * 3600)  # past the 72 h case window: only the thread can lead back
    again = email(ana, "<m3@customer.example>", "Immer noch nichts angekommen.", reply_to="<m1@customer.example>")
    assert post(hub, "/webhooks/mailgun/mime", *mailgun_mime(again, clock())).status == 200
    ana_again = contacts(hub, 3)[2]

    # Her case is still open (auto-close comes after 7 days): the thread, not the window, leads there.
    assert ana_again["case_id"] == ana_first["case_id"] and ana_again["case_reason"] == "thread_key"
