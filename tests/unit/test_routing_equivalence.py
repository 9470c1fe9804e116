"""The optimised router (plans decided per channel and the like, each written out as one function)
decides and explains exactly what evaluating every rule's conditions in order decides: for random
rule sets of every condition and action kind, with `stop`, calendars and nesting, and random
contacts, the same actions and the same trace, entry for entry."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.domain.models import RoutingDecision, RuleTrace
from chalicelib.hubconfig import parse_config
from chalicelib.routing import engine
from chalicelib.routing.actions import Draft
from chalicelib.routing.setup import RouterFactory
from tests.support.routing import routing_context

CONFIG = """
destinations: [{name: outbox, type: outbox}, {name: crm, type: outbox, path: crm.jsonl}]
routing:
  default: {queue: general, priority: normal}
  sla: {hours: 24, by_priority: {high: 4, urgent: 1}}
  calendars:
    default: {timezone: Europe/Berlin, hours: {mon-fri: "08:00-18:00", sat: "09:00-13:00"}, holidays: ["12-25"]}
    support_us: {timezone: America/New_York, hours: {mon-fri: "09:00-17:00"}}
  templates:
    ack: {de: "Danke {name}!", en: "Thanks {name}!"}
"""

CHANNELS = ["whatsapp", "sms", "email", "webchat"]
LANGUAGES = ["de", "en", "fr"]
WORDS = ["refund", "invoice", "router", "login", "paket", "störung"]
TAGS = ["t0", "t1", "t2", "t3"]

leaf = st.one_of(
    st.builds(lambda v: {"channel": v}, st.one_of(st.sampled_from(CHANNELS), st.lists(st.sampled_from(CHANNELS),
                                                                                       min_size=1, max_size=3))),
    st.builds(lambda v: {"language": v}, st.sampled_from(LANGUAGES)),
    st.builds(lambda v: {"provider": v}, st.sampled_from(["twilio", "meta"])),
    st.builds(lambda v: {"account": v}, st.sampled_from(["+4930123456", "+4930999999"])),
    st.builds(lambda v: {"content_type": v}, st.sampled_from(["text", "media"])),
    st.builds(lambda v: {"intent": v}, st.lists(st.sampled_from(["outage", "billing", "refund"]), min_size=1,
                                                 max_size=2)),
    st.builds(lambda k, v: {k: v}, st.sampled_from(["urgent", "new_customer", "has_attachments", "sender_verified"]),
              st.booleans()),
    st.builds(lambda words: {"text": {"contains": words}}, st.lists(st.sampled_from(WORDS), min_size=1, max_size=3)),
    st.builds(lambda phrase: {"subject": {"contains": [phrase]}}, st.sampled_from(["money back", "not working"])),
    st.builds(lambda n: {"text": {"matches": rf"order\s*#?\d{{{n}}}"}}, st.integers(4, 7)),
    st.builds(lambda tiers: {"attribute": {"name": "tier", "in": tiers}},
              st.lists(st.sampled_from(["gold", "silver", "vip"]), min_size=1, max_size=2)),
    st.builds(lambda op, n: {"attribute": {"name": "custom.score", op: n}}, st.sampled_from(["gte", "lte"]),
              st.integers(0, 99)),
    st.builds(lambda flag: {"attribute": {"name": "tier", "exists": flag}}, st.booleans()),
    st.builds(lambda v: {"attribute": {"name": "tier", "equals": v}}, st.sampled_from(["gold", "vip"])),
    st.builds(lambda v: {"ticket": {"destination": "crm", "field": "assignee", "in": v}},
              st.lists(st.sampled_from(["Kim", "Alex"]), min_size=1, max_size=2)),
    st.builds(lambda tag: {"tagged": tag}, st.sampled_from(TAGS)),
    st.builds(lambda c, h: {"repeat_contact": {"count": c, "within_hours": h}}, st.integers(2, 5),
              st.sampled_from([1, 24, 72])),
    st.builds(lambda h: {"case_age_hours": {"over": h}}, st.sampled_from([0, 2, 30])),
    st.builds(lambda v: {"sla_breached": v}, st.booleans()),
    st.builds(lambda v: {"business_hours": v}, st.sampled_from(["open", "closed"])),
    st.builds(lambda v: {"business_hours": {"calendar": "support_us", "is": v}}, st.sampled_from(["open", "closed"])),
)
condition = st.recursive(leaf, lambda children: st.one_of(
    st.builds(lambda items: {"all": items}, st.lists(children, min_size=1, max_size=3)),
    st.builds(lambda items: {"any": items}, st.lists(children, min_size=1, max_size=3)),
    st.builds(lambda item: {"not": item}, children),
    st.lists(children, min_size=1, max_size=3),
), max_leaves=6)
action = st.fixed_dictionaries({}, optional={
    "priority": st.sampled_from(["low", "normal", "high", "urgent"]),
    "escalate": st.integers(1, 3),
    "queue": st.sampled_from(["q1", "q2"]),
    "skills": st.dictionaries(st.sampled_from(["de", "billing"]), st.integers(1, 5), max_size=2),
    "tags": st.lists(st.sampled_from(TAGS), max_size=2),
    "destinations": st.lists(st.sampled_from(["outbox", "crm"]), min_size=1, max_size=2, unique=True),
    "add_destinations": st.lists(st.sampled_from(["outbox", "crm"]), max_size=2),
    "reply": st.just("ack"),
    "park": st.just("check by hand"),
    "suppress": st.just("spam"),
    "follow_up_hours": st.sampled_from([1, 24, 48.5]),
})
rule = st.fixed_dictionaries({"when": st.one_of(st.none(), condition), "then": action,
                              "stop": st.sampled_from([False, False, False, True])})

START = datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc)
contact = st.fixed_dictionaries({
    "channel": st.sampled_from(CHANNELS),
    "provider": st.sampled_from(["twilio", "meta"]),
    "account": st.sampled_from(["+4930123456", "+4930999999"]),
    "content_type": st.sampled_from(["text", "media"]),
    "language": st.sampled_from([*LANGUAGES, None]),
    "intents": st.frozensets(st.sampled_from(["outage", "billing", "refund"]), max_size=2),
    "urgent": st.booleans(),
    "new_customer": st.booleans(),
    "sender_verified": st.booleans(),
    "attachments": st.integers(0, 2),
    "text": st.builds(lambda words, n: " ".join(words) + (f" Order #{'1' * n}" if n else ""),
                      st.lists(st.sampled_from([*WORDS, "Refund", "hello"]), max_size=4), st.integers(0, 7)),
    "subject": st.sampled_from(["", "Money back please", "it is not working"]),
    "attributes": st.fixed_dictionaries({}, optional={"tier": st.sampled_from(["gold", "silver", "vip"]),
                                                      "custom.score": st.one_of(st.integers(0, 99), st.just("42"))}),
    "ticket": st.fixed_dictionaries({}, optional={"crm.assignee": st.sampled_from(["Kim", "Alex"])}),
    "minutes": st.integers(0, 7 * 24 * 60),
        # Whole hours, on the boundaries of the rules' windows as often as not.
    "recent_hours": st.lists(st.sampled_from([0, 1, 2, 5, 24, 30, 72, 100]), max_size=5),
    "case_hours": st.sampled_from([None, 0, 1, 2, 4, 24, 30, 60]),
})


def context(spec: dict):
    now = START + timedelta(minutes=spec["minutes"])
    values = {k: v for k, v in spec.items() if k not in ("minutes", "recent_hours", "case_hours")}
    return routing_context(
        **values, now=now, recent=[now - timedelta(hours=h) for h in sorted([0, *spec["recent_hours"]])],
        case_opened_at=None if spec["case_hours"] is None else now - timedelta(hours=spec["case_hours"]),
    )


def build(rules: list[dict]):
    named = [{"name": f"r{index}", **{k: v for k, v in rule.items() if v is not None}}
             for index, rule in enumerate(rules)]
    return RouterFactory(parse_config(CONFIG + "  rules: " + json.dumps(named) + "\n")).inline


def reference(router, ctx):
    """Every rule's condition evaluated in order, its steps applied: the straightforward engine."""
    ctx.priority, ctx.tags = router.default.priority, []
    draft = Draft(ctx, router.default.queue, list(router.default.destinations))
    trace = [router._start]
    rules = router.rules.rules
    for index, compiled in enumerate(rules):
        failed = compiled.condition.first_failure(ctx) if compiled.condition is not None else None
        if failed is not None:
            trace.append(RuleTrace(rule=compiled.name, matched=False, reason=failed.failure))
            continue
        trace.append(compiled.matched)
        for step in compiled.steps:
            step(draft)
        if compiled.stop:
            if index + 1 < len(rules):
                trace.append(RuleTrace(rule="(remaining rules)", matched=False,
                                       reason=f"{len(rules) - index - 1} rules not evaluated: "
                                              f"{compiled.name} stopped evaluation"))
            break
    return dict(priority=ctx.priority, queue=draft.queue, skills=draft.skills, tags=list(ctx.tags),
                destinations=draft.destinations, replies=[name for name, _ in draft.replies], parked=draft.parked,
                suppressed=draft.suppressed, follow_up_hours=draft.follow_up_hours, trace=trace)


def decided(router, ctx):
    decision = router.route(ctx)
    # Built without validation (the engine's own values): it is what validating it would give.
    assert RoutingDecision.model_validate(decision.model_dump()) == decision
    return dict(priority=decision.priority, queue=decision.queue, skills=decision.skills, tags=decision.tags,
                destinations=decision.destinations, replies=[reply.rule for reply in decision.replies],
                parked=decision.parked, suppressed=decision.suppressed, follow_up_hours=decision.follow_up_hours,
                trace=decision.trace)


@pytest.mark.parametrize("plans", ["per channel and the like", "every rule evaluated (beyond the plan limit)",
                                   "every rule evaluated (plans not built yet)"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(rules=st.lists(rule, min_size=1, max_size=25), contacts=st.lists(contact, min_size=1, max_size=6))
def test_the_router_decides_and_explains_exactly_as_evaluating_every_rule(plans, rules, contacts, monkeypatch_plans):
    monkeypatch_plans(0 if "limit" in plans else 128, plan_after=1 if plans.startswith("per") else 10**6)
    router = build(rules)
    for spec in contacts:
        # Twice: a plan built by the first contact of its kind runs again for the next.
        for _ in range(2):
            assert decided(router, context(spec)) == reference(router, context(spec))


@pytest.fixture
def monkeypatch_plans(monkeypatch):
    def limit(count: int, plan_after: int) -> None:
        monkeypatch.setattr(engine, "_MAX_PLANS", count)
        monkeypatch.setattr(engine, "_PLAN_AFTER", plan_after)

    return limit
