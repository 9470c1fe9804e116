from __future__ import annotations

from datetime import datetime, timedelta, timezone

from chalicelib.domain.golden_record import observe, quality_flags, record_issue
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.models import Customer
from chalicelib.hubconfig import parse_config

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
RULES = parse_config(
    "survivorship: {attributes: {name: {rule: source_priority, sources: [crm, webchat]}, tier: {rule: most_recent}}}"
).survivorship


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_source_priority_keeps_the_trusted_source_whatever_arrives_later():
    customer = Customer(id="cus_1")
    customer = observe(customer, {"name": "Jana S."}, source="meta", at=at(0), rules=RULES)
    customer = observe(customer, {"name": "Jana Schmidt"}, source="crm", at=at(1), rules=RULES)
    customer = observe(customer, {"name": "jana 🌸"}, source="meta", at=at(2), rules=RULES)

    assert (customer.attributes["name"].value, customer.attributes["name"].source) == ("Jana Schmidt", "crm")
    assert customer.observations["name"]["meta"].value == "jana 🌸"
    assert customer.observations["name"]["crm"].updated_at == at(1)


def test_unlisted_sources_rank_below_listed_ones_and_by_recency_among_themselves():
    customer = observe(Customer(id="c"), {"name": "A"}, source="twilio", at=at(0), rules=RULES)
    customer = observe(customer, {"name": "B"}, source="meta", at=at(1), rules=RULES)
    assert customer.attributes["name"].value == "B"
    customer = observe(customer, {"name": "C"}, source="webchat", at=at(0.5), rules=RULES)
    assert customer.attributes["name"].value == "C"


def test_most_recent_wins_and_late_older_observations_never_replace_newer_ones():
    customer = observe(Customer(id="c"), {"tier": "silver"}, source="crm", at=at(5), rules=RULES)
    customer = observe(customer, {"tier": "bronze"}, source="crm", at=at(1), rules=RULES)
    assert customer.attributes["tier"].value == "silver"
    customer = observe(customer, {"tier": "gold"}, source="billing", at=at(6), rules=RULES)
    assert (customer.attributes["tier"].value, customer.attributes["tier"].source) == ("gold", "billing")


def test_withdrawing_the_surviving_observation_falls_back_to_the_next_and_then_to_nothing():
    customer = observe(Customer(id="c"), {"tier": "gold"}, source="crm", at=at(2), rules=RULES)
    customer = observe(customer, {"tier": "silver"}, source="billing", at=at(1), rules=RULES)
    customer = observe(customer, {"tier": None}, source="crm", at=at(3), rules=RULES)
    assert customer.attributes["tier"].value == "silver"
    customer = observe(customer, {"tier": None}, source="billing", at=at(4), rules=RULES)
    assert "tier" not in customer.attributes and "tier" not in customer.observations


def test_quality_flags_show_missing_identifiers_conflicting_names_and_recorded_issues():
    bare = Customer(id="c")
    assert quality_flags(bare) == ["missing_email", "missing_phone"]

    complete = Customer(id="c", identifiers=[Identifier.parse("email:a@example.com"), Identifier.parse("phone:+4915123456789")])
    same_name = observe(complete, {"name": "Jana Schmidt"}, source="meta", at=at(0), rules=RULES)
    same_name = observe(same_name, {"name": " jana  SCHMIDT"}, source="crm", at=at(1), rules=RULES)
    assert quality_flags(same_name) == []
    conflicting = observe(same_name, {"name": "Peter Schmidt"}, source="webchat", at=at(2), rules=RULES)
    assert quality_flags(conflicting) == ["conflicting_names"]
    assert quality_flags(record_issue(complete, "invalid_phone", at=at(3))) == ["invalid_phone"]
