"""The consent ledger (pure), keyword recognition, the consent settings, API statements and windows."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.domain import consent as ledger
from chalicelib.domain.consent import allows, merge_ledgers, record, state_of, unmerge_ledger
from chalicelib.domain.models import (
    Channel,
    ContentType,
    Contact,
    Customer,
    Party,
    ReplyTarget,
    Resolution,
)
from chalicelib.errors import ConfigError
from chalicelib.hubconfig import parse_config
from chalicelib.service.consent import (
    ConsentSettings,
    inbound_consent,
    parse_statements,
    recognize,
    service_windows,
    window_state,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


# --- the ledger --------------------------------------------------------------------------------


def test_a_statement_becomes_the_state_with_source_time_evidence_and_history():
    book = record({}, "sms", "service", "opted_out", "keyword:STOP", "ct_1", at(0))

    entry = book["sms"]["service"]
    assert (entry.state, entry.source, entry.evidence, entry.at) == ("opted_out", "keyword:STOP", "ct_1", at(0))
    assert [c.state for c in entry.history] == ["opted_out"]


def test_an_older_statement_never_overrides_a_newer_one_but_joins_the_history():
    book = record({}, "sms", "service", "opted_out", "keyword:STOP", "ct_2", at(10))
    book = record(book, "sms", "service", "opted_in", "keyword:START", "ct_1", at(5))

    entry = book["sms"]["service"]
    assert (entry.state, entry.evidence) == ("opted_out", "ct_2")
    assert [(c.state, c.at) for c in entry.history] == [("opted_in", at(5)), ("opted_out", at(10))]


def test_a_newer_statement_wins_and_at_the_same_instant_an_opt_out_wins():
    book = record({}, "sms", "service", "opted_out", "keyword:STOP", "ct_1", at(0))
    assert record(book, "sms", "service", "opted_in", "api:crm", None, at(1))["sms"]["service"].state == "opted_in"
    assert record(book, "sms", "service", "opted_in", "api:crm", None, at(0))["sms"]["service"].state == "opted_out"
    opted_in = record({}, "sms", "service", "opted_in", "api:crm", None, at(0))
    assert record(opted_in, "sms", "service", "opted_out", "error:21610", None, at(0))["sms"]["service"].state == "opted_out"


def test_recording_the_same_statement_twice_changes_nothing():
    once = record({}, "sms", "service", "opted_out", "keyword:STOP", "ct_1", at(0))
    assert record(once, "sms", "service", "opted_out", "keyword:STOP", "ct_1", at(0)) == once


def test_the_history_is_bounded_to_the_latest_changes():
    book: dict = {}
    for minute in range(15):
        book = record(book, "sms", "service", "opted_out" if minute % 2 else "opted_in", "api:crm", None, at(minute),
                      limit=4)
    history = book["sms"]["service"].history
    assert [c.at for c in history] == [at(11), at(12), at(13), at(14)]
    assert book["sms"]["service"].state == "opted_in"


def test_an_opt_out_covers_every_purpose_of_the_channel():
    book = record({}, "email", "marketing", "opted_in", "api:crm", None, at(0))
    out = ledger.opt_out(book, "email", source="complaint:ses", evidence="0100018f-feedback", at=at(1))
    assert {p: (e.state, e.source) for p, e in out["email"].items()} == {
        "service": ("opted_out", "complaint:ses"), "marketing": ("opted_out", "complaint:ses")}
    assert not allows(out, "email", "service") and allows(book, "email", "marketing")


def test_record_returns_a_new_ledger_and_leaves_the_old_one_alone():
    first = record({}, "sms", "service", "opted_in", "api:crm", None, at(0))
    second = record(first, "whatsapp", "service", "opted_out", "keyword:STOP", "ct_1", at(1))
    assert "whatsapp" not in first and set(second) == {"sms", "whatsapp"}


def test_sms_and_mms_are_one_consent_channel_and_unknown_values_are_refused():
    book = record({}, Channel.MMS, "service", "opted_out", "keyword:STOP", "ct_1", at(0))
    assert set(book) == {"sms"}
    assert not allows(book, Channel.SMS, "service")
    with pytest.raises(ValueError, match="unknown channel 'pager'"):
        record({}, "pager", "service", "opted_out", "api:crm", None, at(0))
    with pytest.raises(ValueError, match="unknown purpose 'sales'"):
        record({}, "sms", "sales", "opted_out", "api:crm", None, at(0))
    with pytest.raises(ValueError, match="unknown state 'maybe'"):
        record({}, "sms", "service", "maybe", "api:crm", None, at(0))


def test_the_consent_channels_are_the_channel_values_with_mms_folded_into_sms():
    # `event` is the timeline channel of business events: nobody consents to it.
    assert set(ledger.CHANNELS) | set(ledger.ALIASES) == {c.value for c in Channel} - {Channel.EVENT}
    assert set(ledger.CHANNELS) & set(ledger.ALIASES) == set()


@pytest.mark.parametrize(
    ("statements", "service", "marketing"),
    [
        ([], True, False),  # unknown: answers go out, marketing needs an opt-in
        ([("service", "opted_out")], False, False),
        ([("marketing", "opted_in")], True, True),
        ([("marketing", "opted_in"), ("service", "opted_out")], False, False),  # a channel refusal stops all
        ([("marketing", "opted_out")], True, False),
        ([("service", "opted_in"), ("marketing", "unknown")], True, False),
    ],
)
def test_allows_refuses_service_only_when_opted_out_and_marketing_without_an_opt_in(statements, service, marketing):
    book: dict = {}
    for minute, (purpose, state) in enumerate(statements):
        book = record(book, "whatsapp", purpose, state, "api:crm", None, at(minute))
    assert (allows(book, "whatsapp", "service"), allows(book, "whatsapp", "marketing")) == (service, marketing)
    assert allows(book, "sms", "service"), "another channel is untouched"


def test_an_old_shape_stored_consent_is_read_into_the_ledger():
    stored = Customer.model_validate_json(
        '{"id": "cus_1", "consent": {"sms": "opted_out", "mms": "opted_in", "email": "opted_in", "x": "whatever"}}'
    )

    assert set(stored.consent) == {"sms", "email"}
    assert state_of(stored.consent, "sms", "service") == "opted_out", "a refusal is never lost to a same-age grant"
    assert state_of(stored.consent, "sms", "marketing") == "opted_out"
    assert state_of(stored.consent, "email", "service") == "opted_in"
    assert state_of(stored.consent, "email", "marketing") == "unknown", "a purpose-less yes is no marketing consent"
    assert stored.consent["email"]["service"].source == "legacy"
    later = record(stored.consent, "email", "service", "opted_out", "complaint:ses", None, at(0))
    assert state_of(later, "email", "service") == "opted_out", "any real statement supersedes a legacy one"
    assert Customer.model_validate_json(stored.model_dump_json()).consent == stored.consent


def test_a_merge_keeps_a_refusal_from_either_record_and_joins_the_histories():
    survivor = record({}, "sms", "service", "opted_in", "api:crm", None, at(5))
    survivor = record(survivor, "email", "service", "opted_in", "api:crm", None, at(1))
    absorbed = record({}, "sms", "service", "opted_out", "keyword:STOP", "ct_9", at(1))
    absorbed = record(absorbed, "whatsapp", "marketing", "opted_in", "api:crm", None, at(2))

    merged = merge_ledgers(survivor, absorbed)

    assert (merged["sms"]["service"].state, merged["sms"]["service"].evidence) == ("opted_out", "ct_9")
    assert [c.at for c in merged["sms"]["service"].history] == [at(1), at(5)]
    assert merged["whatsapp"]["marketing"].state == "opted_in"
    assert merged["email"]["service"].state == "opted_in"

    undone = unmerge_ledger(merged, survivor_before=survivor, absorbed_before=absorbed)
    assert set(undone) == {"sms", "email"}, "what only the absorbed customer stated goes back with it"


def test_merging_customers_with_ledgers_works():
    from chalicelib.domain.merging import merge
    from chalicelib.domain.policies import SurvivorshipPolicy

    survivor = Customer(id="cus_A", created_at=at(0), consent=record({}, "sms", "service", "opted_in", "api:crm", None, at(1)))
    absorbed = Customer(id="cus_B", created_at=at(1), consent=record({}, "sms", "service", "opted_out", "keyword:STOP",
                                                                     "ct_1", at(2)))
    pair = merge(survivor, absorbed, now=at(3), trigger="t", matched=[], rules=SurvivorshipPolicy())
    assert state_of(pair.survivor.consent, "sms", "service") == "opted_out"


# --- keywords -----------------------------------------------------------------------------------

SETTINGS = ConsentSettings.model_validate({
    "keywords": {"opt_out": ["STOPP", "Abmelden"], "help": ["Hilfe"]},
    "help_text": {"de": "Hilfe: STOPP zum Abmelden.", "en": "Help: reply STOP to unsubscribe."},
})


def contact(text: str | None, *, channel: Channel = Channel.SMS, metadata: dict | None = None,
            language: str | None = None, sent_at: datetime | None = None) -> Contact:
    return Contact(
        id="ct_1", provider="twilio", channel=channel, provider_message_id="SM1", account="+14155550100",
        sender=Party(), received_at=at(0), sent_at=sent_at, content_type=ContentType.TEXT, text=text,
        metadata=metadata or {}, customer_id="cus_1", case_id="case_1",
        resolution=Resolution(customer_id="cus_1", created_customer=False, rule="r"),
        enrichment={"language": {"code": language}} if language else {},
    )


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("STOP", "opt_out"), ("stop", "opt_out"), ("  Stop!  ", "opt_out"), ("STOPALL", "opt_out"),
        ("unsubscribe.", "opt_out"), ("Cancel", "opt_out"), ("END", "opt_out"), ("quit", "opt_out"),
        ("REVOKE", "opt_out"), ("optout", "opt_out"), ("Stopp", "opt_out"), ("ABMELDEN!!", "opt_out"),
        ("START", "opt_in"), ("unstop", "opt_in"), ("Yes", "opt_in"),
        ("HELP", "help"), ("info?", "help"), ("hilfe", "help"),
        ("please stop", None), ("STOP calling me", None), ("stopped", None), ("", None), (None, None), ("!", None),
    ],
)
def test_a_keyword_is_the_whole_message_in_any_case_without_trailing_punctuation(text, action):
    found = recognize(contact(text), SETTINGS)
    assert (found.action if found else None) == action


def test_keywords_apply_on_the_configured_channels_only_and_never_on_email():
    assert recognize(contact("STOP", channel=Channel.WHATSAPP), SETTINGS) is not None
    assert recognize(contact("STOP", channel=Channel.EMAIL), SETTINGS) is None
    assert recognize(contact("STOP", channel=Channel.TELEGRAM), SETTINGS) is None
    telegram = ConsentSettings(channels=[Channel.TELEGRAM])
    assert recognize(contact("STOP", channel=Channel.TELEGRAM), telegram) is not None
    assert recognize(contact("STOP", channel=Channel.SMS), telegram) is None


def test_the_providers_own_verdict_wins_on_any_channel():
    found = recognize(contact("Bitte nicht mehr schreiben", channel=Channel.TELEGRAM,
                              metadata={"opt_out_type": "stop"}), SETTINGS)
    assert (found.action, found.source) == ("opt_out", "provider:twilio_opt_out")
    assert recognize(contact("x", metadata={"opt_out_type": "start"}), SETTINGS).action == "opt_in"
    assert recognize(contact("STOP", metadata={"opt_out_type": "other"}), SETTINGS).source == "keyword:STOP"


def test_standard_keywords_can_be_switched_off():
    local = ConsentSettings.model_validate({"standard_keywords": False, "keywords": {"opt_out": ["ABMELDEN"]}})
    assert recognize(contact("STOP"), local) is None
    assert recognize(contact("abmelden"), local).action == "opt_out"


def test_stop_opts_the_channel_out_for_both_purposes_with_the_contact_as_evidence():
    customer = Customer(id="cus_1", consent=record({}, "sms", "marketing", "opted_in", "api:crm", None, at(-60)))

    effect = inbound_consent(contact("Stop.", sent_at=at(-1)), customer, SETTINGS, default_language="en")

    assert effect.tag == "opt_out" and effect.reply is None
    for purpose in ("service", "marketing"):
        entry = effect.consent["sms"][purpose]
        assert (entry.state, entry.source, entry.evidence, entry.at) == ("opted_out", "keyword:STOP", "ct_1", at(-1))
    assert effect.decision == {"action": "opt_out", "keyword": "Stop.", "source": "keyword:STOP", "channel": "sms",
                               "purposes": ["service", "marketing"], "state": "opted_out"}
    assert customer.consent["sms"]["marketing"].state == "opted_in", "pure: the customer is not changed"


def test_start_opts_back_in_to_service_only_and_a_yes_on_a_channel_not_opted_out_changes_nothing():
    stopped = Customer(id="cus_1", consent=inbound_consent(contact("STOP"), Customer(id="cus_1"), SETTINGS,
                                                           default_language="en").consent)
    later = contact("START", sent_at=at(5))

    effect = inbound_consent(later, stopped, SETTINGS, default_language="en")
    assert effect.tag == "opt_in"
    assert (state_of(effect.consent, "sms", "service"), state_of(effect.consent, "sms", "marketing")) == (
        "opted_in", "opted_out")

    unchanged = inbound_consent(contact("Yes"), Customer(id="cus_1"), SETTINGS, default_language="en")
    assert unchanged.tag is None and unchanged.consent == {}
    assert unchanged.decision["reason"] == "the channel was not opted out"

    everything = ConsentSettings(opt_in_purposes=["service", "marketing"])
    assert state_of(inbound_consent(later, stopped, everything, default_language="en").consent, "sms",
                    "marketing") == "opted_in"


def test_help_answers_in_the_contacts_language_else_the_customers_else_the_default_else_the_first():
    customer = Customer(id="cus_1")
    assert inbound_consent(contact("HELP", language="de"), customer, SETTINGS, default_language="en").reply.text == \
        "Hilfe: STOPP zum Abmelden."
    reply = inbound_consent(contact("HELP", language="fr"), customer, SETTINGS, default_language="en").reply
    assert (reply.rule, reply.language, reply.text) == ("consent:help", "en", "Help: reply STOP to unsubscribe.")
    assert inbound_consent(contact("HELP"), customer, SETTINGS, default_language="it").reply.language == "de"
    effect = inbound_consent(contact("HELP"), customer, SETTINGS, default_language="en")
    assert (effect.tag, effect.consent, effect.decision["reply"]) == ("help", {}, "en")


def test_help_without_a_text_or_answered_by_the_provider_is_only_tagged():
    effect = inbound_consent(contact("HELP"), Customer(id="cus_1"), ConsentSettings(), default_language="en")
    assert (effect.tag, effect.reply, effect.decision["reason"]) == ("help", None, "no consent.help_text configured")
    answered = inbound_consent(contact("HELP", metadata={"opt_out_type": "help"}), Customer(id="cus_1"), SETTINGS,
                               default_language="en")
    assert (answered.reply, answered.decision["reason"]) == (None, "provider answered")


def test_the_consent_section_is_validated_naming_the_key():
    config = parse_config("consent: {keywords: {opt_out: [STOPP]}, help_text: {de: Hilfe}}")
    assert config.consent.vocabulary()["opt_out"] >= {"stop", "stopp"}
    for text, problem in [
        ("consent: {channels: [sms, email]}", "consent.channels: email takes no keywords"),
        ("consent: {keywords: {opt_in: [STOP]}}", "cannot mean both opt_out and opt_in"),
        ("consent: {keywords: {opt_out: ['  ']}}", "consent.keywords.opt_out"),
        ("consent: {help_text: {de: '  '}}", "consent.help_text"),
        ("consent: {opt_in_purposes: [sales]}", "consent.opt_in_purposes[0]"),
        ("consent: {keyword: {}}", "consent.keyword"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(problem)):
            parse_config(text)


# --- API statements -----------------------------------------------------------------------------


def test_statements_are_one_object_or_a_list_and_every_problem_names_its_field():
    [one] = parse_statements({"channel": "mms", "purpose": "marketing", "state": "opted_in", "evidence": "form 7"})
    assert (one.channel, one.purpose, one.state, one.evidence) == ("sms", "marketing", "opted_in", "form 7")
    assert len(parse_statements([{"channel": "sms", "purpose": "service", "state": "opted_out"}] * 2)) == 2
    for body, problem in [
        ({"channel": "sms", "purpose": "service", "state": "opted_out", "by": "me"}, "by: unknown field"),
        ({"channel": "fax", "purpose": "service", "state": "opted_out"}, "channel: unknown channel 'fax'"),
        ({"channel": "sms", "purpose": "sales", "state": "opted_out"}, "purpose: Input should be"),
        ({"channel": "sms", "purpose": "service"}, "state: Field required"),
        ([{"channel": "sms", "purpose": "service", "state": "opted_out"}, {"channel": "sms", "purpose": "service",
                                                                            "state": "no"}], "[1].state:"),
        ([], "body: one statement"),
        (["sms"], "[0]: must be an object"),
    ]:
        with pytest.raises(ValueError) as raised:
            parse_statements(body)
        assert str(raised.value).startswith(problem), str(raised.value)


# --- service windows ---------------------------------------------------------------------------


def target(channel: Channel, provider: str, account: str, opened: datetime) -> ReplyTarget:
    return ReplyTarget(contact_id="ct_1", case_id="case_1", channel=channel, provider=provider, account=account,
                       to="+4915123456789", at=opened)


def test_a_window_runs_24_hours_from_the_customers_latest_message_per_provider_and_account():
    whatsapp = target(Channel.WHATSAPP, "meta", "1234", at(0))
    customer = Customer(id="cus_1", reply_targets={whatsapp.key: whatsapp})

    assert window_state(customer, Channel.WHATSAPP, "meta", "1234", at(60)) == (True, at(0), at(24 * 60))
    assert window_state(customer, Channel.WHATSAPP, "meta", "1234", at(24 * 60)).open is False
    assert window_state(customer, Channel.WHATSAPP, "meta", "9999", at(60)) == (False, None, None)
    assert window_state(customer, Channel.WHATSAPP, "twilio", "1234", at(60)).open is False
    assert window_state(customer, Channel.SMS, "twilio", "+1415", at(60)) == (True, None, None), "no window on SMS"


def test_service_windows_list_the_windowed_channels_only():
    sms = target(Channel.SMS, "twilio", "+14155550100", at(0))
    messenger = target(Channel.MESSENGER, "meta", "page-1", at(0))
    customer = Customer(id="cus_1", reply_targets={sms.key: sms, messenger.key: messenger})

    assert service_windows(customer, at(30)) == [{
        "channel": "messenger", "provider": "meta", "account": "page-1", "opened_at": "2026-03-01T09:00:00Z",
        "closes_at": "2026-03-02T09:00:00Z", "open": True,
    }]
