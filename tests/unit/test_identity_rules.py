"""Identity rules: which identifiers may link a contact to a customer, and why each one did not."""

from __future__ import annotations

import pytest

from chalicelib.domain.identifiers import Identifier, IdentifierKind
from chalicelib.domain.identity_rules import Choice, IdentityRules, LinkPlan
from chalicelib.domain.models import Customer, Party
from chalicelib.domain.policies import DEFAULT_BLOCKED, IdentityPolicy

K = IdentifierKind


def ids(*texts: str) -> list[Identifier]:
    return [Identifier.parse(text) for text in texts]


def rules(**settings) -> IdentityRules:
    return IdentityRules(IdentityPolicy(**settings))


def outcomes(plan: LinkPlan) -> list[tuple[str, str]]:
    return [(d.identifier, d.outcome) for d in plan.decisions]


def rule_of(plan: LinkPlan, identifier: str) -> str:
    (rule,) = [d.rule for d in plan.decisions if d.identifier == identifier]
    return rule


def keys(identifiers) -> list[str]:
    return [i.key for i in identifiers]


# --- blocked -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("blocked", "identifier", "pattern"),
    [
        # the default no-reply list
        (None, "email:noreply@shop.example", "email:noreply@*"),
        (None, "email:no-reply@shop.example", "email:no-reply@*"),
        (None, "email:donotreply@shop.example", "email:donotreply@*"),
        (None, "email:do-not-reply@shop.example", "email:do-not-reply@*"),
        (None, "email:mailer-daemon@mx.example", "email:mailer-daemon@*"),
        (None, "email:postmaster@shop.example", "email:postmaster@*"),
        (None, "email:NoReply@Shop.Example", "email:noreply@*"),
        (None, "email:jane@shop.example", None),
        (None, "email:noreply-jane@shop.example", None),
        (None, "phone:+4915123456789", None),
        # an exact number: nothing else
        (["phone:+4930123456"], "phone:+49 30 123456", "phone:+4930123456"),
        (["phone:+4930123456"], "phone:+49301234567", None),
        (["phone:+4930123456"], "phone:+493012345", None),
        (["email:jane@example.com"], "external:email:jane@example.com", None),  # anchored at the start
        # wildcard domains
        (["email:*@shared.example"], "email:jane@shared.example", "email:*@shared.example"),
        (["email:*@shared.example"], "email:jane@sub.shared.example", None),
        (["email:*@*.shared.example"], "email:jane@sub.shared.example", "email:*@*.shared.example"),
        (["phone:+4930*"], "phone:+4930123456", "phone:+4930*"),
        # case-insensitive on both sides, also for case-sensitive ids
        (["EMAIL:Support@*"], "email:support@shop.example", "EMAIL:Support@*"),
        (["slack:t1/u0bot"], "slack:T1/U0BOT", "slack:t1/u0bot"),
        (["webchat:*/KIOSK-*"], "webchat:store/kiosk-7", "webchat:*/KIOSK-*"),
        # setting the list replaces the defaults
        (["phone:+4930123456"], "email:noreply@shop.example", None),
        ([], "email:noreply@shop.example", None),
    ],
)
def test_blocked_patterns_hold_identifiers_back_and_name_the_pattern(blocked, identifier, pattern):
    settings = {} if blocked is None else {"blocked": blocked}
    identifier = Identifier.parse(identifier)

    plan = rules(**settings).plan(Party(identifiers=[identifier]))

    if pattern is None:
        assert plan.candidates == [identifier]
        assert plan.decisions == []
    else:
        assert plan.candidates == []
        assert outcomes(plan) == [(identifier.key, "blocked")]
        assert rule_of(plan, identifier.key) == f"blocked: {pattern}"


def test_the_default_blocked_list_is_the_documented_one():
    assert IdentityPolicy().blocked == DEFAULT_BLOCKED
    assert IdentityPolicy().blocked is not DEFAULT_BLOCKED, "each settings object owns its list"


def test_blocking_comes_before_every_other_rule():
    blocked = Identifier.parse("telegram:42")

    plan = rules(blocked=["telegram:42"], link_kinds=[K.EMAIL]).plan(Party(unverified=[blocked]))

    assert outcomes(plan) == [("telegram:42", "blocked")]


# --- kinds, verification, order ----------------------------------------------------------------


def test_kinds_not_in_link_kinds_are_held_back_with_their_rule():
    party = Party(identifiers=ids("telegram:42", "email:jane@example.com", "slack:T1/U1"))

    plan = rules(link_kinds=[K.EMAIL, K.PHONE]).plan(party)

    assert keys(plan.candidates) == ["email:jane@example.com"]
    assert outcomes(plan) == [("telegram:42", "kind_not_linkable"), ("slack:T1/U1", "kind_not_linkable")]
    assert rule_of(plan, "telegram:42") == "link_kinds does not include telegram"
    assert rule_of(plan, "slack:T1/U1") == "link_kinds does not include slack"


@pytest.mark.parametrize(
    ("trust", "candidates", "held_back"),
    [
        (False, ["phone:+4915123456789"], [("email:jane@example.com", "unverified")]),
        (True, ["email:jane@example.com", "phone:+4915123456789"], []),
    ],
)
def test_unverified_claims_are_held_back_unless_trusted(trust, candidates, held_back):
    party = Party(identifiers=ids("phone:+4915123456789"), unverified=ids("email:jane@example.com"))

    plan = rules(trust_unverified=trust).plan(party)

    assert keys(plan.candidates) == candidates
    assert outcomes(plan) == held_back
    if held_back:
        assert rule_of(plan, "email:jane@example.com") == "trust_unverified: false"


def test_an_unverified_claim_of_an_unlinkable_kind_names_the_kind_rule():
    plan = rules(link_kinds=[K.PHONE]).plan(Party(unverified=ids("email:jane@example.com")))

    assert outcomes(plan) == [("email:jane@example.com", "kind_not_linkable")]


@pytest.mark.parametrize(
    ("link_kinds", "expected"),
    [
        (
            None,  # the default: external, email, phone, whatsapp_user, webchat, messenger, ...
            ["external:CRM-1", "email:a@example.com", "email:b@example.com", "phone:+4915123456789", "slack:T1/U1"],
        ),
        (
            [K.PHONE, K.SLACK, K.EMAIL, K.EXTERNAL],
            ["phone:+4915123456789", "slack:T1/U1", "email:a@example.com", "email:b@example.com", "external:CRM-1"],
        ),
    ],
)
def test_candidates_are_ordered_by_link_kinds_priority_and_keep_their_order_within_a_kind(link_kinds, expected):
    party = Party(
        identifiers=ids("slack:T1/U1", "email:a@example.com", "phone:+4915123456789", "external:CRM-1"),
        unverified=ids("email:b@example.com"),
    )
    settings = {"trust_unverified": True} | ({} if link_kinds is None else {"link_kinds": link_kinds})

    assert keys(rules(**settings).plan(party).candidates) == expected


def test_an_identifier_given_twice_is_one_candidate():
    party = Party(identifiers=ids("email:jane@example.com"), unverified=ids("email:jane@example.com"))

    assert keys(rules(trust_unverified=True).plan(party).candidates) == ["email:jane@example.com"]


def test_an_identifier_both_verified_and_claimed_unverified_is_not_also_held_back():
    party = Party(identifiers=ids("email:jane@example.com"), unverified=ids("email:jane@example.com"))

    plan = rules().plan(party)

    assert keys(plan.candidates) == ["email:jane@example.com"]
    assert outcomes(plan) == []


# --- choose ------------------------------------------------------------------------------------

EMAIL, PHONE, EXTERNAL = "email:jane@example.com", "phone:+4915123456789", "external:CRM-1"


def test_nobody_owning_any_candidate_chooses_nobody_and_decides_nothing():
    rule_set = rules()
    plan = rule_set.plan(Party(identifiers=ids(EMAIL, PHONE)))

    assert rule_set.choose(plan, {}) == Choice(None)
    assert plan.decisions == []


@pytest.mark.parametrize(
    ("link_kinds", "owners", "chosen", "matched", "conflicts"),
    [
        # email outranks phone by default: the phone's other owner is recorded, not merged
        (None, {EMAIL: "cus_A", PHONE: "cus_B"}, "cus_A", EMAIL, [(PHONE, "email")]),
        ([K.PHONE, K.EMAIL, K.EXTERNAL], {EMAIL: "cus_A", PHONE: "cus_B"}, "cus_B", PHONE, [(EMAIL, "phone")]),
        # an unowned higher-priority candidate does not stop a lower one from matching
        (None, {PHONE: "cus_B"}, "cus_B", PHONE, []),
        # the same owner twice is no conflict
        (None, {EXTERNAL: "cus_A", PHONE: "cus_A"}, "cus_A", EXTERNAL, []),
        (None, {EXTERNAL: "cus_A", EMAIL: "cus_B", PHONE: "cus_C"}, "cus_A", EXTERNAL,
         [(EMAIL, "external"), (PHONE, "external")]),
    ],
)
def test_choose_picks_the_highest_priority_owner_and_records_the_others(link_kinds, owners, chosen, matched, conflicts):
    rule_set = rules() if link_kinds is None else rules(link_kinds=link_kinds)
    plan = rule_set.plan(Party(identifiers=ids(PHONE, EMAIL, EXTERNAL)))

    choice = rule_set.choose(plan, owners)

    assert (choice.customer_id, choice.matched.key) == (chosen, matched)
    assert outcomes(plan) == [(matched, "matched")] + [(key, "owned_by_other_customer") for key, _ in conflicts]
    assert rule_of(plan, matched) == f"link_kinds: {choice.matched.kind.value}"
    for key, winner_kind in conflicts:
        assert rule_of(plan, key) == (
            f"link_kinds: {choice.matched.key} matched first (priority order); merge considered (auto_merge)"
        )
    assert [(owner, identifier.key) for owner, identifier in choice.others] == [
        (owners[key], key) for key, _ in conflicts
    ]


@pytest.mark.parametrize(
    ("settings", "verified", "reason"),
    [
        ({"auto_merge": False}, True, "not merged: auto_merge is off"),
        ({"trust_unverified": True}, False, "not merged: only verified identifiers merge customers"),
    ],
)
def test_conflicts_that_may_not_merge_are_recorded_with_the_reason_and_offer_no_merge(settings, verified, reason):
    rule_set = rules(**settings)
    phone_claim = {"identifiers": ids(EMAIL, PHONE)} if verified else {"identifiers": ids(EMAIL), "unverified": ids(PHONE)}
    plan = rule_set.plan(Party(**phone_claim))

    choice = rule_set.choose(plan, {EMAIL: "cus_A", PHONE: "cus_B"})

    assert choice.customer_id == "cus_A"
    assert choice.others == ()
    assert rule_of(plan, PHONE).endswith(reason)


def test_held_back_identifiers_are_never_looked_at_by_choose():
    rule_set = rules(blocked=[EMAIL])
    plan = rule_set.plan(Party(identifiers=ids(EMAIL, PHONE)))

    choice = rule_set.choose(plan, {EMAIL: "cus_A", PHONE: "cus_B"})

    assert choice.customer_id == "cus_B"
    assert outcomes(plan) == [(EMAIL, "blocked"), (PHONE, "matched")]


# --- additions ---------------------------------------------------------------------------------


def test_a_matched_customer_gets_the_candidates_it_lacks_and_keeps_the_ones_it_has():
    rule_set = rules()
    customer = Customer(id="cus_A", identifiers=ids(EMAIL, "slack:T1/U1"))
    plan = rule_set.plan(Party(identifiers=ids(EMAIL, PHONE, "slack:T1/U1")))
    owners = {EMAIL: "cus_A", "slack:T1/U1": "cus_A"}
    rule_set.choose(plan, owners)

    added = rule_set.additions(customer, plan, owners, outcome="linked")

    assert keys(added) == [PHONE]
    assert outcomes(plan) == [(EMAIL, "matched"), (PHONE, "linked"), ("slack:T1/U1", "already_linked")]
    assert rule_of(plan, PHONE) == "link_kinds: phone"
    assert rule_of(plan, "slack:T1/U1") == "exact match"


def test_additions_skip_identifiers_another_customer_owns():
    rule_set = rules()
    customer = Customer(id="cus_A", identifiers=ids(EMAIL))
    plan = rule_set.plan(Party(identifiers=ids(EMAIL, PHONE)))
    owners = {EMAIL: "cus_A", PHONE: "cus_B"}
    rule_set.choose(plan, owners)

    assert rule_set.additions(customer, plan, owners, outcome="linked") == []
    assert outcomes(plan) == [(EMAIL, "matched"), (PHONE, "owned_by_other_customer")]


@pytest.mark.parametrize(
    ("max_per_kind", "held", "offered", "added", "refused"),
    [
        ({K.EMAIL: 1}, ["email:old@example.com"], ["email:new@example.com"], [], ["email:new@example.com"]),
        ({K.EMAIL: 2}, ["email:old@example.com"], ["email:a@example.com", "email:b@example.com"],
         ["email:a@example.com"], ["email:b@example.com"]),
        # a customer already over a lowered limit keeps what it holds and takes no more
        ({K.EMAIL: 1}, ["email:x@example.com", "email:y@example.com"], ["email:a@example.com"], [],
         ["email:a@example.com"]),
        # kinds without a limit take any number; a limit on one kind does not count the others
        ({K.EMAIL: 1}, ["email:old@example.com"], ["slack:T1/U1", "slack:T2/U1", "phone:+4915123456789"],
         ["phone:+4915123456789", "slack:T1/U1", "slack:T2/U1"], []),
    ],
)
def test_additions_honour_max_per_kind(max_per_kind, held, offered, added, refused):
    rule_set = rules(max_per_kind=max_per_kind)
    customer = Customer(id="cus_A", identifiers=ids(*held))
    plan = rule_set.plan(Party(identifiers=ids(*offered)))

    result = rule_set.additions(customer, plan, {}, outcome="linked")

    assert keys(result) == added
    assert [key for key, outcome in outcomes(plan) if outcome == "linked"] == added
    assert [key for key, outcome in outcomes(plan) if outcome == "limit_reached"] == refused
    for key in refused:
        kind = key.partition(":")[0]
        assert rule_of(plan, key) == f"max_per_kind: {kind}={max_per_kind[K(kind)]}"


def test_the_limit_also_applies_when_a_customer_is_created():
    rule_set = rules()  # external: 1 by default
    plan = rule_set.plan(Party(identifiers=ids("external:CRM-1", "external:CRM-2", EMAIL)))

    added = rule_set.additions(Customer(id="cus_new"), plan, {}, outcome="created_with")

    assert keys(added) == ["external:CRM-1", EMAIL]
    assert outcomes(plan) == [
        ("external:CRM-1", "created_with"), ("external:CRM-2", "limit_reached"), (EMAIL, "created_with"),
    ]
    assert rule_of(plan, "external:CRM-2") == "max_per_kind: external=1"


def test_an_identifier_the_customer_already_holds_does_not_count_twice_against_the_limit():
    rule_set = rules(max_per_kind={K.EMAIL: 1})
    customer = Customer(id="cus_A", identifiers=ids(EMAIL))
    plan = rule_set.plan(Party(identifiers=ids(EMAIL)))

    assert rule_set.additions(customer, plan, {EMAIL: "cus_A"}, outcome="linked") == []
    assert outcomes(plan) == [(EMAIL, "already_linked")]


# --- explicit links ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "held", "identifier", "refusal"),
    [
        ({}, [], "email:noreply@shop.example", "the email identifier is blocked by identity.blocked[0]"),
        ({"blocked": ["PHONE:+4930*"]}, [], "phone:+4930123456", "the phone identifier is blocked by identity.blocked[0]"),
        ({}, ["external:CRM-1"], "external:CRM-2", "already holds 1 external identifiers (max_per_kind 1)"),
        ({"max_per_kind": {K.EMAIL: 2}}, ["email:a@example.com", "email:b@example.com"], "email:c@example.com",
         "already holds 2 email identifiers (max_per_kind 2)"),
        # allowed: under the limit, already held (idempotent), unlimited kinds
        ({}, [], "external:CRM-2", None),
        ({}, ["external:CRM-1"], "external:CRM-1", None),
        ({"max_per_kind": {}}, ["external:CRM-1"], "external:CRM-2", None),
        # explicit links are trusted: link_kinds and verification do not apply
        ({"link_kinds": [K.EMAIL]}, [], "telegram:42", None),
    ],
)
def test_explicit_link_refusal_applies_blocking_and_the_limit_only(settings, held, identifier, refusal):
    customer = Customer(id="cus_A", identifiers=ids(*held))

    result = rules(**settings).explicit_link_refusal(customer, Identifier.parse(identifier))

    if refusal is None:
        assert result is None
    else:
        assert result is not None and refusal in result


# --- every decision explains itself ------------------------------------------------------------


def test_every_decision_names_the_rule_that_made_it():
    rule_set = rules(link_kinds=[K.EXTERNAL, K.EMAIL, K.PHONE, K.SLACK], max_per_kind={K.PHONE: 1},
                     blocked=["email:noreply@*"])
    party = Party(
        identifiers=ids("external:CRM-1", "email:noreply@shop.example", "telegram:42", "slack:T1/U1",
                        "email:jane@example.com", "phone:+4915123456789", "phone:+4930123456"),
        unverified=ids("email:claimed@example.com"),
    )
    customer = Customer(id="cus_A", identifiers=ids("external:CRM-1", "slack:T1/U1"))
    owners = {"external:CRM-1": "cus_A", "slack:T1/U1": "cus_A", "email:jane@example.com": "cus_B"}
    plan = rule_set.plan(party)
    rule_set.choose(plan, owners)
    rule_set.additions(customer, plan, owners, outcome="linked")

    names = {
        "blocked": "blocked: email:noreply@*",
        "kind_not_linkable": "link_kinds does not include telegram",
        "unverified": "trust_unverified: false",
        "matched": "link_kinds: external",
        "owned_by_other_customer": "merge considered (auto_merge)",
        "linked": "link_kinds: phone",
        "limit_reached": "max_per_kind: phone=1",
        "already_linked": "exact match",
    }
    seen = {d.outcome: d.rule for d in plan.decisions}
    assert set(seen) == set(names), "every outcome is exercised once"
    for outcome, rule in names.items():
        assert rule in seen[outcome], outcome
