"""Enrichment before routing: language, intents, contact history and the profile snapshot."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from chalicelib.domain.activity import RECENT_LIMIT, combine, contacts_within, counts_by_channel, record_contact
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.models import (
    AttributeValue,
    Case,
    Channel,
    Contact,
    ContactActivity,
    ContentType,
    Customer,
    Party,
    Resolution,
)
from chalicelib.enrichment.enrich import Enricher
from chalicelib.enrichment.language import LanguageGuess
from chalicelib.routing.lexicon import Lexicon

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


class FixedDetector:
    def __init__(self, guess: LanguageGuess | None) -> None:
        self.guess = guess
        self.seen: list[str | None] = []

    def detect(self, text):
        self.seen.append(text)
        return self.guess


def contact(text: str | None = "Internet Störung seit heute", *, subject: str | None = None, **extra) -> Contact:
    return Contact(
        id="ct_1", provider="twilio", channel=Channel.SMS, provider_message_id="SM1", account="+4930123456",
        sender=Party(), received_at=NOW, content_type=ContentType.TEXT, text=text, subject=subject,
        customer_id="cus_1", case_id="case_1",
        resolution=Resolution(customer_id="cus_1", created_customer=False, rule="test"), **extra,
    )


def customer(**extra) -> Customer:
    activity = ContactActivity()
    for hours, channel in ((24 * 20, Channel.EMAIL), (30, Channel.WHATSAPP), (0, Channel.SMS)):
        activity = record_contact(activity, channel, NOW - timedelta(hours=hours))
    return Customer(id="cus_1", activity=activity, **extra)


def test_detected_language_and_intents_are_recorded_with_their_evidence():
    detector = FixedDetector(LanguageGuess("de", 0.91234))
    enricher = Enricher(language=detector, lexicon=Lexicon())

    result = enricher.enrich(contact(subject="Dringend"), customer(), None, now=NOW)

    assert detector.seen == ["Dringend Internet Störung seit heute"]
    assert result["language"] == {"code": "de", "confidence": 0.912, "source": "fasttext"}
    assert result["intent"]["intents"] == ["outage"] and result["intent"]["urgent"] is True
    assert result["intent"]["terms"]["urgency"]


def test_without_a_confident_guess_the_customers_stated_language_stands_in():
    stated = {"language": AttributeValue(value="fr", source="crm", updated_at=NOW)}
    enricher = Enricher(language=FixedDetector(None), lexicon=Lexicon())

    assert enricher.enrich(contact("ok"), customer(attributes=stated), None, now=NOW)["language"] == {
        "code": "fr", "confidence": None, "source": "customer attribute (crm)",
    }
    assert enricher.enrich(contact("ok"), customer(), None, now=NOW)["language"]["code"] is None


def test_history_counts_channels_per_window_and_names_the_previous_contact_and_open_case():
    case = Case(id="case_1", customer_id="cus_1", opened_at=NOW - timedelta(hours=30), last_activity_at=NOW,
                contact_count=2)
    enricher = Enricher(language=None, lexicon=Lexicon())

    history = enricher.enrich(contact(), customer(), case, now=NOW)["history"]

    assert history["last_7_days"] == {"sms": 1, "whatsapp": 1}
    assert history["last_30_days"] == {"email": 1, "sms": 1, "whatsapp": 1}
    assert history["previous_contact"] == {"at": "2026-11-22T03:00:00Z", "channel": "whatsapp"}
    assert history["open_case"] == {"id": "case_1", "opened_at": "2026-11-22T03:00:00Z", "contact_count": 2,
                                    "age_hours": 30.0}


def test_the_profile_snapshot_carries_what_destinations_map_and_earlier_findings_stay():
    attributes = {name: AttributeValue(value=value, source="crm", updated_at=NOW)
                  for name, value in (("name", "Jana"), ("tier", "gold"), ("custom.contract", "K-1"))}
    identifiers = [Identifier.parse("email:jana@example.com"), Identifier.parse("phone:+4915123456789"),
                   Identifier.parse("external:CRM-1")]
    enricher = Enricher(language=None, lexicon=Lexicon())

    result = enricher.enrich(contact(enrichment={"data_quality": {"rejected_identifiers": ["phone: x"]}}),
                             customer(attributes=attributes, identifiers=identifiers), None, now=NOW)

    assert result["profile"] == {
        "customer_id": "cus_1", "name": "Jana", "tier": "gold", "email": "jana@example.com",
        "phone": "+4915123456789", "external_id": "CRM-1", "custom": {"custom.contract": "K-1"},
    }
    assert result["data_quality"] == {"rejected_identifiers": ["phone: x"]}


def test_activity_keeps_the_latest_contacts_and_31_days_of_counts():
    activity = ContactActivity()
    for minutes in range(RECENT_LIMIT + 5):
        activity = record_contact(activity, Channel.SMS, NOW - timedelta(days=40) + timedelta(minutes=minutes))
    activity = record_contact(activity, Channel.EMAIL, NOW)

    assert len(activity.recent) == RECENT_LIMIT and activity.recent[0] == (NOW, Channel.EMAIL)
    assert list(activity.daily) == ["2026-11-23"], "days older than 31 are dropped"
    assert contacts_within(activity, NOW, 1) == 1
    assert counts_by_channel(activity, NOW, 30) == {"email": 1}


def test_a_merge_combines_both_customers_activity():
    first = record_contact(ContactActivity(), Channel.SMS, NOW - timedelta(hours=2))
    second = record_contact(ContactActivity(), Channel.SMS, NOW - timedelta(hours=1))

    joined = combine(first, second)

    assert [at for at, _ in joined.recent] == [NOW - timedelta(hours=1), NOW - timedelta(hours=2)]
    assert joined.daily == {"2026-11-23": {Channel.SMS: 2}}
