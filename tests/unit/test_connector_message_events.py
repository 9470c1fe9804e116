"""Outbound-message events at the connector port: who declares which (`message_events`), the
refusal of an undeclared one, the echo marker, and the generic destinations' envelopes."""

from __future__ import annotations

import json

import pytest
import time_machine
from standardwebhooks import Webhook

from chalicelib.adapters.connectors.base import (
    MESSAGE_EVENTS,
    Connector,
    ConnectorRuntime,
    DeliveryResult,
)
from chalicelib.adapters.connectors.echo import carries, marked_contact, marker, outbound_html, outbound_text
from chalicelib.adapters.connectors.outbox import OutboxConnector, OutboxSettings
from chalicelib.adapters.connectors.registry import CONNECTORS
from chalicelib.adapters.connectors.webhook import WebhookConnector, WebhookSettings
from chalicelib.adapters.connectors.http import HttpResponse
from chalicelib.domain.models import OutboundStatus
from chalicelib.errors import PermanentDeliveryError
from chalicelib.secrets import SecretResolver
from tests.support.fakes import sample_job
from tests.support.outbound_jobs import OUTBOUND_ID, REPLY, outbound_job

GENERIC = {"webhook", "outbox", "eventbridge"}
TICKETS = {"zendesk", "freshdesk", "jira_service_management", "hubspot", "salesforce"}
#: Vendors that cannot take the hub's message as a comment (docs/destinations/<vendor>.md says why).
NEITHER = {"genesys", "twilio_flex", "amazon_connect"}


class Minimal(Connector):
    """A connector written without outbound messages in mind."""

    key = "minimal"
    docs_url = "https://example.com"
    Settings = OutboxSettings

    def deliver(self, job):
        self.message_event(job)
        return DeliveryResult(external_ref="made")


def minimal() -> Minimal:
    return Minimal("minimal", OutboxSettings(), SecretResolver({}), ConnectorRuntime(data_dir="/nonexistent"))


def test_a_connector_takes_no_message_events_unless_it_declares_them():
    assert Connector.message_events == frozenset()
    assert Minimal.message_events == frozenset()
    assert minimal().takes("contact.created")
    assert not minimal().takes("message.sent") and not minimal().takes("message.status")


@pytest.mark.parametrize("event_type", sorted(MESSAGE_EVENTS))
def test_an_undeclared_message_event_is_refused_before_the_connector_acts(event_type):
    with pytest.raises(PermanentDeliveryError, match=f"minimal does not take {event_type} events"):
        minimal().deliver(outbound_job("minimal", event_type=event_type))
    assert minimal().deliver(sample_job(destination="minimal")).external_ref == "made"


def test_every_connector_declares_what_it_takes():
    declared = {key: cls.message_events for key, cls in CONNECTORS.items()}
    assert set(declared) == GENERIC | TICKETS | NEITHER
    for key in GENERIC:
        assert declared[key] == MESSAGE_EVENTS, key
    for key in TICKETS:
        assert declared[key] == frozenset({"message.sent"}), key
    for key in NEITHER:
        assert declared[key] == frozenset(), key


# --- the echo marker -------------------------------------------------------------------------------


def test_the_marker_names_the_outbound_contact():
    assert marker(OUTBOUND_ID) == f"[hub:{OUTBOUND_ID}]"
    with pytest.raises(ValueError, match="not a hub id"):
        marker("ct 1] [hub:ct_2")


@pytest.mark.parametrize(("text", "expected"), [
    (f"Hallo\n\nSent … by the hub [hub:{OUTBOUND_ID}]", OUTBOUND_ID),
    (f"Hallo \\[hub:{OUTBOUND_ID}\\]", OUTBOUND_ID),                    # Jira wiki markup escapes brackets
    (f"<div>Hallo<br>[hub:{OUTBOUND_ID}]</div>", OUTBOUND_ID),          # Freshdesk, HubSpot HTML
    (f"<p>Hallo</p><p>&#91;hub:{OUTBOUND_ID}&#93;</p>", OUTBOUND_ID),   # entities for the brackets
    (f"quoted [hub:ct_01OLD] then [hub:{OUTBOUND_ID}]", OUTBOUND_ID),   # the last one counts
    ("Hallo, wie geht's?", None),
    ("hub:", None),
    (None, None),
])
def test_the_marker_is_found_wherever_a_vendor_leaves_it(text, expected):
    assert marked_contact(text) == expected


def test_a_longer_id_is_not_the_marker_of_its_prefix():
    assert not carries(f"[hub:{OUTBOUND_ID}0]", OUTBOUND_ID)
    assert carries(f"[hub:{OUTBOUND_ID}]", OUTBOUND_ID)


def test_the_outbound_comment_is_the_message_then_the_channel_and_marker():
    job = outbound_job("zendesk", attachments=[])
    assert outbound_text(job) == f"{REPLY}\n\nSent to the customer on whatsapp by the hub [hub:{OUTBOUND_ID}]"
    template = outbound_job("zendesk", text=None, metadata={"template": {"name": "case_update", "language": "de"}})
    assert outbound_text(template).startswith("(template message case_update)\n")
    assert outbound_html(outbound_job("x", text="a <b> & c")).startswith("<div>a &lt;b&gt; &amp; c<br><br>")


def test_an_html_comment_is_shortened_in_its_text_never_in_its_marker():
    body = outbound_html(outbound_job("x", text="<&>" * 30_000), limit=65_536)
    assert len(body) <= 65_536 and marked_contact(body) == OUTBOUND_ID and "…" in body


# --- generic destinations: the same envelope, signed as today ------------------------------------------


class RecordingHttp:
    def __init__(self):
        self.calls = []

    def request(self, method, url, *, headers=None, body=None, timeout=None):
        self.calls.append((headers, body))
        return HttpResponse(200, {}, b"")

    def close(self):
        pass


@pytest.mark.parametrize("event_type", ["message.sent", "message.status"])
def test_the_signed_webhook_carries_outbound_message_events(event_type):
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    http = RecordingHttp()
    webhook = WebhookConnector("crm", WebhookSettings(url="https://crm.example.com/hooks", secrets=[secret]),
                               SecretResolver({}), ConnectorRuntime(data_dir="/nonexistent", http=http))
    job = outbound_job("crm", event_type=event_type, status=OutboundStatus.READ)

    with time_machine.travel(1767225600, tick=False):
        webhook.deliver(job)
        headers, body = http.calls[0]
        payload = Webhook(secret).verify(body, headers)

    assert webhook.takes(event_type) and headers["webhook-id"] == job.delivery_id
    assert payload["type"] == event_type
    contact = payload["data"]["contact"]
    assert (contact["id"], contact["direction"], contact["status"]) == (OUTBOUND_ID, "outbound", "read")
    assert [c["status"] for c in contact["status_history"]] == ["queued", "read"]
    assert contact["metadata"] == {"origin": "api:support-desk"} and "raw" not in contact


def test_the_outbox_writes_each_outbound_event_once(tmp_path):
    def outbox():
        return OutboxConnector("outbox", OutboxSettings(), SecretResolver({}), ConnectorRuntime(data_dir=str(tmp_path)))

    sent, status = outbound_job("outbox"), outbound_job("outbox", event_type="message.status",
                                                          status=OutboundStatus.DELIVERED)
    for job in (sent, sent, status):
        outbox().deliver(job)

    lines = [json.loads(line) for line in (tmp_path / "outbox.jsonl").read_text().splitlines()]
    assert [(line["type"], line["data"]["contact"]["status"]) for line in lines] == [
        ("message.sent", "sent"), ("message.status", "delivered")]
