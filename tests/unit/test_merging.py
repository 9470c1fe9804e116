"""Merging and unmerging two customers: survivor choice, merge protection, what moves, what returns."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.domain.consent import record, state_of
from chalicelib.domain.golden_record import observe
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.merging import MAX_MOVED_IDENTIFIERS, merge, merge_refusal, survivor_first, unmerge
from chalicelib.hubconfig import parse_config
from chalicelib.domain.models import Customer

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
CONFIG = parse_config("identity: {max_per_kind: {email: 2, external: 1}}")
RULES = CONFIG.survivorship


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def customer(customer_id: str, *identifiers: str, created: float = 0, version: int = 3) -> Customer:
    return Customer(
        id=customer_id, identifiers=[Identifier.parse(i) for i in identifiers], created_at=at(created),
        updated_at=at(created), version=version,
    )


def test_the_older_customer_survives_whatever_the_argument_order_and_ties_go_to_the_smaller_id():
    old, young = customer("cus_Z", created=0), customer("cus_A", created=1)
    assert survivor_first(old, young) == survivor_first(young, old) == (old, young)

    twin_a, twin_b = customer("cus_A"), customer("cus_B")
    assert survivor_first(twin_b, twin_a) == (twin_a, twin_b)


@pytest.mark.parametrize(
    ("first", "second", "refusal"),
    [
        (("external:CRM-1", "phone:+4915123456789"), ("external:CRM-2",),
         "merge_protection: the customers hold different external identifiers"),
        (("email:a@example.com", "email:b@example.com"), ("email:c@example.com",),
         "max_per_kind: email=2 (the merged customer would hold 3)"),
    ],
)
def test_merges_the_rules_forbid_are_refused_naming_the_rule_never_a_value(first, second, refusal):
    reason = merge_refusal(customer("cus_A", *first), customer("cus_B", *second), CONFIG.identity)

    assert reason == refusal
    assert "CRM" not in reason and "@" not in reason


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("external:CRM-1",), ("external:CRM-1", "phone:+4915123456789")),  # the same external id
        (("external:CRM-1",), ("phone:+4915123456789",)),  # only one side has one
        (("email:a@example.com",), ("email:b@example.com",)),  # within the limit
    ],
)
def test_merges_within_the_rules_are_allowed(first, second):
    assert merge_refusal(customer("cus_A", *first), customer("cus_B", *second), CONFIG.identity) is None


def test_an_absorbed_customer_with_too_many_identifiers_for_one_transaction_is_refused():
    settings = parse_config("identity: {max_per_kind: {}}").identity
    many = customer("cus_B", *[f"phone:+49151000{n:05d}" for n in range(MAX_MOVED_IDENTIFIERS + 1)])

    assert "more than 90 identifiers" in merge_refusal(customer("cus_A"), many, settings)


def test_a_merge_moves_identifiers_joins_the_golden_record_and_records_both_customers_as_they_were():
    survivor = observe(customer("cus_A", "phone:+4915123456789"), {"name": "Jana"}, source="twilio", at=at(1), rules=RULES)
    absorbed = observe(customer("cus_B", "email:jana@example.com", created=2, version=7), {"name": "Jana Schmidt", "tier": "gold"},
                       source="api", at=at(3), rules=RULES)
    email_opt_in = record({}, "email", "service", "opted_in", "api:crm", None, at(2))
    absorbed = absorbed.model_copy(update={"consent": email_opt_in, "merged_from": ["cus_C"]})

    pair = merge(survivor, absorbed, now=at(5), trigger="contact:msg:twilio:SM1", matched=["phone:+4915123456789"],
                 rules=RULES)

    assert [str(i) for i in pair.survivor.identifiers] == ["phone:+4915123456789", "email:jana@example.com"]
    assert pair.survivor.attributes["name"].value == "Jana Schmidt"  # api outranks twilio by default
    assert pair.survivor.attributes["tier"].value == "gold"
    assert set(pair.survivor.observations["name"]) == {"twilio", "api"}
    assert pair.survivor.consent == email_opt_in
    assert pair.survivor.merged_from == ["cus_B", "cus_C"]  # flattened: one read per absorbed partition
    assert (pair.survivor.version, pair.absorbed.version) == (4, 8)
    assert (pair.absorbed.identifiers, pair.absorbed.merged_into, pair.absorbed.open_case) == ([], "cus_A", None)
    assert [(m.role, m.other_customer_id, m.merge_id) for m in pair.survivor.merges] == [("survivor", "cus_B", pair.record.id)]
    assert [(m.role, m.other_customer_id) for m in pair.absorbed.merges] == [("absorbed", "cus_A")]
    assert pair.record.survivor_before == survivor and pair.record.absorbed_before == absorbed
    assert [str(i) for i in pair.record.moved_identifiers] == ["email:jana@example.com"]


def test_the_merge_id_is_the_same_for_the_same_decision_so_a_retry_cannot_record_two_merges():
    a, b = customer("cus_A"), customer("cus_B", created=1)
    first = merge(a, b, now=at(1), trigger="t", matched=[], rules=RULES).record.id
    again = merge(a, b, now=at(2), trigger="t", matched=[], rules=RULES).record.id
    later = merge(a, b.model_copy(update={"version": 9}), now=at(1), trigger="t", matched=[], rules=RULES).record.id

    assert first == again != later


def test_unmerge_restores_the_absorbed_customer_and_takes_back_only_what_the_merge_gave():
    survivor = observe(customer("cus_A", "phone:+4915123456789"), {"name": "Jana"}, source="twilio", at=at(1), rules=RULES)
    absorbed = observe(customer("cus_B", "email:jana@example.com", created=2), {"tier": "gold"}, source="crm",
                       at=at(2), rules=RULES)
    pair = merge(survivor, absorbed, now=at(5), trigger="api:ops", matched=[], rules=RULES)
    # After the merge the survivor learns more: a new identifier and a new attribute source.
    later = observe(pair.survivor, {"language": "de"}, source="meta", at=at(6), rules=RULES)
    later = later.model_copy(update={"identifiers": [*later.identifiers, Identifier.parse("email:jana.new@example.com")]})

    undone = unmerge(pair.record, later, pair.absorbed, now=at(7), actor="api:ops", rules=RULES)

    assert [str(i) for i in undone.survivor.identifiers] == ["phone:+4915123456789", "email:jana.new@example.com"]
    assert set(undone.survivor.attributes) == {"name", "language"}  # tier went back with its customer
    assert undone.survivor.merged_from == []
    assert undone.absorbed.identifiers == absorbed.identifiers and undone.absorbed.merged_into is None
    assert undone.absorbed.attributes == absorbed.attributes
    assert undone.absorbed.version == pair.absorbed.version + 1  # still guarded against the stored one
    assert [m.reverted_at for m in undone.survivor.merges] == [at(7)]
    assert [m.reverted_at for m in undone.absorbed.merges] == [at(7)]
    assert (undone.record.reverted_at, undone.record.reverted_by) == (at(7), "api:ops")


def test_unmerge_gives_an_unproved_address_back_unproved_and_a_proved_one_proved():
    survivor = customer("cus_A", "phone:+4915123456789")
    absorbed = customer("cus_B", "email:x@example.com", "email:y@example.com", created=1).model_copy(
        update={"unverified_identifiers": ["email:x@example.com", "email:y@example.com"]})
    pair = merge(survivor, absorbed, now=at(2), trigger="t", matched=[], rules=RULES)
    assert pair.survivor.unverified_identifiers == ["email:x@example.com", "email:y@example.com"]
    # While merged, a DKIM-proved mail from x proves it on the survivor; y stays unproved.
    proved_x = pair.survivor.model_copy(update={"unverified_identifiers": ["email:y@example.com"]})

    undone = unmerge(pair.record, proved_x, pair.absorbed, now=at(3), actor="api:ops", rules=RULES)

    assert undone.survivor.unverified_identifiers == [], "no continuity claim on addresses it gave back"
    assert [str(i) for i in undone.absorbed.identifiers] == ["email:x@example.com", "email:y@example.com"]
    assert undone.absorbed.unverified_identifiers == ["email:y@example.com"]


def test_unmerge_keeps_what_the_survivor_observed_itself_even_when_stamped_before_the_merge():
    # A queue backlog: the survivor's own message arrived (and is stamped) before the merge but was
    # processed after it. Taking the merge back must not drop it.
    survivor = customer("cus_A", "phone:+4915123456789")
    absorbed = observe(customer("cus_B", "email:jana@example.com", created=2), {"name": "Jana B"}, source="crm",
                       at=at(2), rules=RULES)
    pair = merge(survivor, absorbed, now=at(5), trigger="api:ops", matched=[], rules=RULES)
    late = observe(pair.survivor, {"name": "Jana A"}, source="twilio", at=at(4), rules=RULES)

    undone = unmerge(pair.record, late, pair.absorbed, now=at(6), actor="api:ops", rules=RULES)

    assert set(undone.survivor.observations["name"]) == {"twilio"}
    assert undone.survivor.attributes["name"].value == "Jana A"


def test_a_consent_refusal_on_either_record_survives_the_merge():
    opted_in = record(record({}, "sms", "service", "opted_in", "api:crm", None, at(3)),
                      "email", "service", "opted_in", "api:crm", None, at(3))
    opted_out = record(record({}, "sms", "service", "opted_out", "keyword:STOP", "ct_1", at(1)),
                       "whatsapp", "service", "opted_in", "api:crm", None, at(1))
    survivor = customer("cus_A").model_copy(update={"consent": opted_in})
    absorbed = customer("cus_B", created=1).model_copy(update={"consent": opted_out})

    merged = merge(survivor, absorbed, now=at(2), trigger="api:ops", matched=[], rules=RULES).survivor

    assert {channel: state_of(merged.consent, channel, "service") for channel in merged.consent} == {
        "sms": "opted_out", "email": "opted_in", "whatsapp": "opted_in"}


# --- size: a merge never writes a customer or an audit record past `customers:` limits ------------

from chalicelib.domain.merging import size_refusal  # noqa: E402
from chalicelib.domain.policies import CustomerLimits  # noqa: E402

LIMITS = CustomerLimits(max_record_bytes=16 * 1024)


def sized(customer_id: str, prefix: str, count: int, *, length: int = 2000, created: float = 0) -> Customer:
    return observe(customer(customer_id, created=created), {f"{prefix}_{i}": "x" * length for i in range(count)},
                   source="crm", at=at(created + 1), rules=RULES)


def size_of(model) -> int:
    return len(model.model_dump_json().encode("utf-8"))


def test_a_merge_whose_survivor_would_outgrow_the_record_limit_is_refused_naming_the_limit():
    a, b = sized("cus_A", "a", 3), sized("cus_B", "b", 3, created=1)
    assert size_of(a) <= LIMITS.max_record_bytes and size_of(b) <= LIMITS.max_record_bytes
    pair = merge(a, b, now=at(5), trigger="t", matched=[], rules=RULES)

    reason = size_refusal(pair.survivor, pair.record, LIMITS)

    assert reason == (f"customers limits: after the merge, the customer record would be {size_of(pair.survivor)} bytes, "
                      "more than the 16384 allowed")


def test_a_merge_over_the_attribute_count_is_refused():
    a, b = sized("cus_A", "a", 3, length=10), sized("cus_B", "b", 3, length=10, created=1)
    pair = merge(a, b, now=at(5), trigger="t", matched=[], rules=RULES)

    assert size_refusal(pair.survivor, pair.record, CustomerLimits(max_attributes=6)) is None
    assert size_refusal(pair.survivor, pair.record, CustomerLimits(max_attributes=5)) == (
        "customers limits: after the merge, the customer would hold 6 attributes, more than the 5 allowed")


def test_an_audit_record_over_twice_the_record_limit_is_refused_even_when_the_survivor_fits():
    """The record keeps both customers whole; customers stored before the limits may be large."""
    record = merge(sized("cus_A", "a", 5), sized("cus_B", "b", 5, created=1), now=at(5), trigger="t", matched=[],
                   rules=RULES).record
    small = customer("cus_A")
    assert size_of(record) > 2 * LIMITS.max_record_bytes

    reason = size_refusal(small, record, LIMITS)

    assert reason == (f"customers limits: the merge record (both customers as they were) would be {size_of(record)} "
                      "bytes, more than the 32768 allowed (twice max_record_bytes)")
    assert size_refusal(small, record, CustomerLimits(max_record_bytes=size_of(record))) is None


def test_merges_refuses_an_oversized_merge_and_commits_nothing(tmp_path):
    from chalicelib.adapters.store.sqlite import SqliteStore
    from chalicelib.service.merge import Merges

    store = SqliteStore(str(tmp_path / "hub.db"))
    try:
        a, b = sized("cus_A", "a", 3), sized("cus_B", "b", 3, created=1)
        store.create_customer(a)
        store.create_customer(b)
        merges = Merges(store, CONFIG.identity, RULES, CONFIG.cases, LIMITS)

        outcome = merges.merge("cus_B", "cus_A", now=at(5), trigger="api:test", explicit=True)
        planned = merge(a, b, now=at(5), trigger="api:test", matched=[], rules=RULES).record

        assert (outcome.customer_id, outcome.record) == ("cus_A", None)
        assert outcome.refusal.startswith("customers limits: after the merge")
        assert store.get_customer("cus_A") == a and store.get_customer("cus_B") == b
        assert store.get_merge(planned.id) is None
        assert Merges(store, CONFIG.identity, RULES, CONFIG.cases, CustomerLimits()).merge(
            "cus_B", "cus_A", now=at(5), trigger="api:test", explicit=True).record is not None
    finally:
        store.close()
