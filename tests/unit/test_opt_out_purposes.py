"""An opt-out covers what the provider says it covers: WhatsApp's 131050 ("chosen to stop
receiving marketing messages … from your business") withdraws marketing consent only, so the
customer's service messages still go out; Twilio's 21610 (STOP) and the others withdraw both.

From the provider's word (the Graph error of a send, a WhatsApp status report) through the
status service to the consent ledger, on the SQLite store."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chalicelib.adapters.channels.base import WebhookRequest
from chalicelib.adapters.channels.meta.adapter import MetaAdapter
from chalicelib.adapters.channels.meta.core import MetaSettings
from chalicelib.adapters.channels.meta.graph import GraphError, classify
from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.domain.consent import state_of
from chalicelib.domain.models import (
    Channel,
    Contact,
    ContentType,
    Customer,
    Direction,
    OutboundStatus,
    Party,
    Resolution,
    StatusEvent,
)
from chalicelib.errors import RecipientOptedOutError
from chalicelib.secrets import SecretResolver
from chalicelib.service.consent_updates import consent_allows, record_opt_out
from chalicelib.service.message_statuses import OutboundReports
from tests.support.fixtures import load

AT = datetime(2026, 1, 1, 0, 1, tzinfo=timezone.utc)
WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI1QUFCQ0RFRjAxMjM0NTY3OAA="


def whatsapp_failure(code: int) -> StatusEvent:
    """The stored failed-status webhook (131047) with its error code changed to `code`."""
    stored = load("meta", "whatsapp_status_failed")
    body = stored.body.replace(b'"code":131047', b'"code":%d' % code)
    adapter = MetaAdapter(MetaSettings.model_validate({"app_secrets": ["s"], "verify_tokens": ["v"]}), SecretResolver({}))
    request = WebhookRequest(method="POST", hook=None, headers=dict(stored.headers), query={}, body=body, received_at=AT)
    [event] = adapter.parse(request).events
    assert isinstance(event, StatusEvent)
    return event


def test_whatsapp_131050_in_a_status_report_opts_out_of_marketing_only():
    event = whatsapp_failure(131050)

    assert (event.opted_out, event.opt_out_purposes) == (True, ("marketing",))
    assert whatsapp_failure(131047).opted_out is False


def test_whatsapp_131050_on_a_send_is_an_opt_out_of_marketing_only():
    error = classify(GraphError(400, code=131050, message="Unable to deliver message"), {}, "WhatsApp Cloud API")

    assert isinstance(error, RecipientOptedOutError)
    assert error.purposes == ("marketing",)
    assert RecipientOptedOutError("21610").purposes == ("service", "marketing")
    assert StatusEvent(provider="twilio", channel=Channel.SMS, provider_message_id="SM1", status="failed",
                       opted_out=True).opt_out_purposes == ("service", "marketing")


# --- the ledger --------------------------------------------------------------------------------------


@pytest.fixture
def store():
    store = SqliteStore(":memory:")
    store.create_customer(Customer(id="cus_1", created_at=AT, updated_at=AT))
    contact = Contact(
        id="ct_01JD0000000000000000000001", direction=Direction.OUTBOUND, provider="meta", channel=Channel.WHATSAPP,
        provider_message_id=WAMID, account="106540352242922", sender=Party(), received_at=AT, sent_at=AT,
        content_type=ContentType.TEXT, text="Unser Angebot", customer_id="cus_1", case_id="case_1",
        resolution=Resolution(customer_id="cus_1", created_customer=False, rule="outbound"), status=OutboundStatus.SENT,
    )
    store.commit_outbound(contact)
    store.record_sent(contact)
    yield store
    store.close()


class Published(list):
    """Stands in for `MessageEvents`: keeps what would be announced."""

    def publish(self, contact, event_type):
        self.append((contact.id, event_type))


def reports(store, events=None) -> OutboundReports:
    def opted_out(contact, source, evidence, purposes):
        record_opt_out(store, contact, source=source, evidence=evidence, now=AT, purposes=purposes)

    return OutboundReports(store, events if events is not None else Published(), wants=lambda event_type: False,
                           opted_out=opted_out)


def test_a_marketing_opt_out_report_leaves_service_messages_allowed(store):
    reports(store).status_reported(whatsapp_failure(131050))

    customer = store.get_customer("cus_1")
    assert state_of(customer.consent, "whatsapp", "marketing") == "opted_out"
    assert state_of(customer.consent, "whatsapp", "service") != "opted_out"
    assert consent_allows(customer, Channel.WHATSAPP, "service")
    assert not consent_allows(customer, Channel.WHATSAPP, "marketing")


def test_a_refused_send_opts_out_of_what_the_provider_named(store):
    contact = store.get_contact("ct_01JD0000000000000000000001")
    published = Published()
    service = reports(store, published)

    service.refused(contact, None, RecipientOptedOutError("131050", provider_code="131050", purposes=("marketing",)))
    assert consent_allows(store.get_customer("cus_1"), Channel.WHATSAPP, "service")

    service.refused(contact, None, RecipientOptedOutError("21610", provider_code="21610"))
    assert not consent_allows(store.get_customer("cus_1"), Channel.WHATSAPP, "service")
    assert published == [(contact.id, "message.status")] * 2


def test_an_unknown_purpose_is_refused_before_anything_is_written(store):
    contact = store.get_contact("ct_01JD0000000000000000000001")

    with pytest.raises(ValueError, match="purposes"):
        record_opt_out(store, contact, source="s", evidence="e", now=AT, purposes=("newsletters",))
    assert store.get_customer("cus_1").consent == {}
