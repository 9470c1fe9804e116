"""The process worker records consent keywords and reply targets in the contact's own commit."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from chalicelib.adapters.blobs.local import LocalBlobStore
from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.domain.consent import state_of
from chalicelib.domain.identity_rules import IdentityRules
from chalicelib.domain.models import Channel, Handle, InboundMessage, Sender, reply_key
from chalicelib.hubconfig import parse_config
from chalicelib.service.identity import IdentifierCache
from chalicelib.service.process import Processor
from tests.support.fake_sender import register_fake_sender
from tests.support.fakes import Clock, CountingStore, MemoryQueue

ROOT = Path(__file__).resolve().parents[2]
CONFIG = parse_config(
    """
identity: {default_region: DE}
destinations:
  - {name: outbox, type: outbox}
consent:
  keywords: {opt_out: [STOPP]}
  help_text: {en: "Reply STOP to unsubscribe."}
"""
)
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
ACCOUNT = "+14155550100"


def message(sid: str, text: str, *, channel=Channel.SMS, sent_at: datetime | None = None,
            received_at: datetime = T0, metadata: dict | None = None, provider: str = "twilio") -> InboundMessage:
    return InboundMessage(
        provider=provider, channel=channel, provider_message_id=sid, account=ACCOUNT,
        sender=Sender(handles=[Handle(kind="phone", value="+4915123456789")]), text=text,
        sent_at=sent_at, received_at=received_at, metadata=metadata or {},
    )


@pytest.fixture
def parts(tmp_path):
    store = CountingStore(SqliteStore(":memory:"))
    processor = Processor(
        store=store, delivery_queue=MemoryQueue(), config=CONFIG, cache=IdentifierCache(),
        default_region=lambda provider, account: "DE", clock=Clock(T0), blobs=LocalBlobStore(str(tmp_path / "b")),
        rules=IdentityRules(CONFIG.identity),
    )
    return processor, store


@pytest.fixture
def with_sender(monkeypatch):
    register_fake_sender(monkeypatch, "twilio")


@pytest.fixture
def without_sender(monkeypatch):
    from chalicelib.adapters.channels.registry import CHANNELS

    monkeypatch.setattr(CHANNELS["twilio"], "sender", None)


def test_stop_is_a_tagged_contact_and_opts_the_channel_out_in_the_same_commit(parts, without_sender):
    processor, store = parts
    first = processor.process(message("SM1", "Where is my parcel?"))
    store.calls[:] = []

    result = processor.process(message("SM2", "Stop"))

    assert store.calls == ["begin", "commit_contact"], "no extra store call"
    contact = store.get_contact(result.contact_id)
    assert "opt_out" in contact.routing.tags
    assert contact.enrichment["consent"]["state"] == "opted_out"
    assert result.destinations == ("outbox",), "a keyword message is still delivered as a contact"
    customer = store.get_customer(first.customer_id)
    entry = customer.consent["sms"]["marketing"]
    assert (entry.state, entry.source, entry.evidence) == ("opted_out", "keyword:STOP", result.contact_id)
    assert state_of(customer.consent, "whatsapp", "service") == "unknown"


def test_a_local_keyword_on_whatsapp_and_the_providers_verdict_are_recognised(parts, without_sender):
    processor, store = parts
    whatsapp = processor.process(message("SM1", "stopp!", channel=Channel.WHATSAPP))
    verdict = processor.process(message("SM2", "Bitte keine Nachrichten mehr", metadata={"opt_out_type": "stop"}))

    customer = store.get_customer(whatsapp.customer_id)
    assert state_of(customer.consent, "whatsapp", "service") == "opted_out"
    assert customer.consent["sms"]["service"].source == "provider:twilio_opt_out"
    assert customer.consent["sms"]["service"].evidence == verdict.contact_id


def test_help_appends_a_reply_intent_for_the_auto_reply_path(parts, without_sender):
    processor, store = parts

    result = processor.process(message("SM1", "HELP"))

    contact = store.get_contact(result.contact_id)
    [reply] = contact.routing.replies
    assert (reply.rule, reply.text) == ("consent:help", "Reply STOP to unsubscribe.")
    assert contact.routing.tags == ["help"]


def test_an_ordinary_message_changes_no_consent(parts, without_sender):
    processor, store = parts
    result = processor.process(message("SM1", "stop sending me the wrong parts"))
    assert store.get_customer(result.customer_id).consent == {}
    assert "consent" not in store.get_contact(result.contact_id).enrichment


def test_the_reply_target_is_kept_on_the_customer_and_the_case_newest_first(parts, with_sender):
    processor, store = parts
    first = processor.process(message("SM1", "hello", sent_at=T0))
    key = reply_key(Channel.SMS, "twilio", ACCOUNT)
    assert store.get_customer(first.customer_id).reply_targets[key].contact_id == first.contact_id
    assert store.get_case(first.case_id).last_inbound.contact_id == first.contact_id

    # Processed later, written earlier (the provider's timestamp says so): the newer one stays.
    late = processor.process(message("SM0", "earlier", sent_at=T0 - timedelta(minutes=5),
                                     received_at=T0 + timedelta(seconds=1)))
    customer = store.get_customer(first.customer_id)
    assert customer.reply_targets[key].contact_id == first.contact_id
    assert store.get_case(late.case_id).last_inbound.contact_id == first.contact_id

    newer = processor.process(message("SM2", "and again", channel=Channel.WHATSAPP, sent_at=T0 + timedelta(minutes=1)))
    customer = store.get_customer(first.customer_id)
    assert set(customer.reply_targets) == {key, reply_key(Channel.WHATSAPP, "twilio", ACCOUNT)}
    case = store.get_case(newer.case_id)
    assert case.last_inbound.contact_id == newer.contact_id
    assert case.last_inbound.at == T0 + timedelta(minutes=1)


def test_the_case_keeps_its_last_inbound_when_a_contact_comes_through_a_provider_that_cannot_send(
        parts, monkeypatch):
    processor, store = parts
    register_fake_sender(monkeypatch, "twilio")
    first = processor.process(message("SM1", "hello", sent_at=T0))
    monkeypatch.setattr("chalicelib.adapters.channels.registry.CHANNELS", {})  # no sender for anything

    second = processor.process(message("SM2", "more", sent_at=T0 + timedelta(minutes=1)))

    assert second.case_id == first.case_id
    assert store.get_case(first.case_id).last_inbound.contact_id == first.contact_id


def test_no_sender_no_reply_target(parts, without_sender):
    processor, store = parts
    result = processor.process(message("SM1", "hello"))
    assert store.get_customer(result.customer_id).reply_targets == {}
    assert store.get_case(result.case_id).last_inbound is None


def test_a_sender_that_fails_to_derive_a_target_does_not_lose_the_message(parts, monkeypatch, caplog):
    from tests.support.fake_sender import FakeSender

    register_fake_sender(monkeypatch, "twilio")

    def broken(contact):
        raise KeyError("metadata the parser did not provide")

    monkeypatch.setattr(FakeSender, "reply_target", broken)
    processor, store = parts
    with caplog.at_level(logging.ERROR):
        result = processor.process(message("SM1", "hello"))

    assert store.get_contact(result.contact_id) is not None
    assert "twilio sender could not derive a reply target" in caplog.text


def test_the_ingest_path_never_imports_the_sender_port():
    code = (
        "import sys, app\n"
        "from chalicelib.bootstrap import Hub\n"
        "from chalicelib.settings import DEFAULT_CONFIG, Settings\n"
        "hub = Hub(Settings(config_path=str(DEFAULT_CONFIG)))\n"
        "hub.config; [hub.adapter(key) for key in hub.config.channels]\n"
        "print('chalicelib.adapters.channels.sending' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
