"""The router's per-channel plans: rules gated on a channel are decided once per channel, not
evaluated per contact, and the decision and trace are exactly those of evaluating every rule."""

from __future__ import annotations

from collections import Counter

import pytest

from chalicelib.hubconfig import parse_config
from chalicelib.routing import engine
from chalicelib.routing.actions import Draft
from chalicelib.routing.context import RoutingContext
from chalicelib.routing.setup import RouterFactory
from tests.support.routing import routing_context

BASE = """
destinations: [{name: outbox, type: outbox}, {name: crm, type: outbox, path: crm.jsonl}]
routing:
  default: {queue: general, priority: normal}
  calendars:
    default: {timezone: Europe/Berlin, hours: {mon-fri: "08:00-18:00"}}
"""
CHANNELS = ("whatsapp", "sms", "email", "webchat", "messenger")


def router(rules: list[str]):
    return RouterFactory(parse_config(BASE + "  rules:\n" + "".join(f"    - {r}\n" for r in rules))).inline


class CountingContext(RoutingContext):
    """A context counting how often conditions read `channel` and `urgent`."""

    reads: Counter[str] = Counter()


def _counted(name: str) -> property:
    slot = getattr(RoutingContext, name)

    def read(self):
        CountingContext.reads[name] += 1
        return slot.__get__(self)

    return property(read, slot.__set__)


for _name in ("channel", "urgent"):
    setattr(CountingContext, _name, _counted(_name))


@pytest.fixture
def reads(monkeypatch):
    """Reads of the context's `channel` and `urgent`, by name (per test)."""
    monkeypatch.setattr(CountingContext, "reads", Counter())
    return lambda: CountingContext.reads


def counting_context(**values) -> CountingContext:
    return CountingContext(**vars_of(routing_context(**values)))


def vars_of(ctx: RoutingContext) -> dict:
    return {name: getattr(ctx, name) for name in RoutingContext.__slots__}


def test_a_contact_evaluates_only_the_rules_its_channel_leaves_open(reads):
    rules = router([f"{{name: r{i}, when: [{{channel: {CHANNELS[i % 5]}}}, {{urgent: true}}], then: {{tags: [t{i}]}}}}"
                    for i in range(200)])
    planned(rules, channel="sms", urgent=True)
    ctx = counting_context(channel="sms", urgent=True)
    reads().clear()
    decision = rules.route(ctx)

    # No channel test runs per contact (the channel is read once, to find the plan); only the 40
    # sms rules evaluate their other condition.
    assert reads() == {"channel": 1, "urgent": 40}
    assert len(decision.trace) == 201
    assert [entry.rule for entry in decision.trace[1:]] == [f"r{i}" for i in range(200)]
    assert decision.tags == [f"t{i}" for i in range(200) if i % 5 == 1]
    assert {entry.reason for entry in decision.trace[1:] if not entry.matched} == {
        f"channel not in [{channel}]" for channel in CHANNELS if channel != "sms"}


def test_a_rule_that_is_only_a_channel_test_is_not_evaluated(reads):
    rules = router([f"{{name: r{i}, when: {{channel: {CHANNELS[i % 5]}}}, then: {{tags: [t{i}]}}}}" for i in range(200)])
    for channel in CHANNELS:
        planned(rules, channel=channel)
        ctx = counting_context(channel=channel)
        reads().clear()
        decision = rules.route(ctx)
        assert sum(entry.matched for entry in decision.trace[1:]) == 40
        assert reads() == {"channel": 1}  # to find the plan


def test_a_plan_is_built_once_enough_contacts_asked_for_it_and_they_are_routed_alike_meanwhile():
    rules = router(MIXED)
    decisions = [rules.route(routing_context(channel="email", language="en")) for _ in range(engine._PLAN_AFTER + 2)]
    assert len(rules._plans) == 1
    assert all(decision == decisions[0] for decision in decisions)


def planned(rules, **values) -> None:
    """Route enough contacts like `values` for their plan to be built."""
    for _ in range(engine._PLAN_AFTER):
        rules.route(routing_context(**values))


MIXED = [
    "{name: plain, when: {channel: [sms, email]}, then: {queue: text}}",
    "{name: excluded, when: {not: {channel: sms}}, then: {tags: [not-sms]}}",
    "{name: first, when: {all: [{channel: webchat}, {urgent: true}, {language: de}]}, then: {tags: [web]}}",
    "{name: nested, when: [{all: [{channel: sms}, {language: de}]}, {urgent: false}], then: {tags: [nested]}}",
    "{name: second, when: [{urgent: false}, {channel: email}, {language: en}], then: {tags: [second]}}",
    "{name: late, when: [{language: de}, {all: [{urgent: false}, {channel: whatsapp}]}], then: {tags: [late]}}",
    "{name: either, when: {any: [{channel: sms}, {urgent: true}]}, then: {priority: high}}",
    "{name: always, then: {add_destinations: [crm]}}",
    "{name: stopper, when: [{channel: email}, {language: en}], then: {queue: stop}, stop: true}",
    "{name: after, when: {channel: email}, then: {tags: [after]}}",
]


def reference(rules, ctx):
    """Every condition of every rule evaluated in order: what the plans must reproduce."""
    ctx.priority, ctx.tags = rules.default.priority, []
    draft = Draft(ctx, rules.default.queue, list(rules.default.destinations))
    trace = []
    for index, rule in enumerate(rules.rules.rules):
        failed = rule.condition.first_failure(ctx) if rule.condition is not None else None
        if failed is not None:
            trace.append((rule.name, False, failed.failure))
            continue
        trace.append((rule.name, True, rule.matched.reason))
        for step in rule.steps:
            step(draft)
        if rule.stop:
            break
    return trace, ctx.tags, draft.queue, draft.destinations, ctx.priority


@pytest.mark.parametrize("channel", [*CHANNELS, "a-channel-no-plan-expected"])
@pytest.mark.parametrize("language", ["de", "en"])
@pytest.mark.parametrize("urgent", [True, False])
def test_plans_decide_and_explain_exactly_as_evaluating_every_rule(channel, language, urgent):
    rules = router(MIXED)
    decision = rules.route(routing_context(channel=channel, language=language, urgent=urgent))
    trace, tags, queue, destinations, priority = reference(rules, routing_context(
        channel=channel, language=language, urgent=urgent))
    stopped = [e for e in decision.trace if e.rule == "(remaining rules)"]
    assert [(e.rule, e.matched, e.reason) for e in decision.trace[1:] if e not in stopped] == trace
    assert (decision.tags, decision.queue, decision.destinations, decision.priority) == (
        tags, queue, destinations, priority)
    assert len(stopped) == (channel == "email" and language == "en")


def test_many_unknown_channels_fall_back_to_evaluating_every_rule():
    rules = router(MIXED)
    for index in range(300):
        channel = f"channel-{index}"
        decision = rules.route(routing_context(channel=channel, language="de"))
        trace, *_ = reference(rules, routing_context(channel=channel, language="de"))
        assert [(e.rule, e.matched, e.reason) for e in decision.trace[1:]] == trace


def test_an_expression_repeated_by_many_rules_is_searched_once_per_contact():
    rules = router([f"{{name: r{i}, when: {{text: {{matches: 'order #?\\d{{{5 + i % 2}}}'}}}}, then: {{tags: [t{i}]}}}}"
                    for i in range(40)])
    ctx = routing_context(text="Order #123456 is missing")
    assert sum(e.matched for e in rules.route(ctx).trace[1:]) == 40
    assert len(ctx.searched) == 2
    # Each routing starts afresh: a context whose text changed is searched again.
    ctx.text = "no number here"
    assert sum(e.matched for e in rules.route(ctx).trace[1:]) == 0
