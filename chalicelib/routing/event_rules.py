"""Event rules: compiling them (their shape is `event_specs.py`) and evaluating them for one event.

    events:
      rules:
        - name: outage-broadcast
          when: {event_type: outage.started}
          customer_selector: {attribute: postcode, in: data.postcodes}
          then: {notify: {template: outage_notice, quiet_hours: false}, tag_customer: [outage]}

Rules run in order over an `EventContext`; every matching rule contributes its actions, and a
rule that `stop`s ends the evaluation. The trace says why each rule did or did not match; its
entries are built here, once per rule set. There are few event rules and a customer's event
costs I/O far beyond their evaluation, so the engine is a plain loop (routing's plans are for
hundreds of rules per contact).

An event without a customer is a broadcast. Its first phase (`EventEngine.broadcast_plan`)
decides from the event alone which rules fan out to which segments: only the event conditions
(`event_type`, `event`) at the start of a selector rule's `when` are evaluated then, split off
when the rules compile. Each selected customer then evaluates every rule (`selected_by` naming
the rules whose segments chose it), so customer conditions such as consent still decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.domain.models import RuleTrace
from chalicelib.errors import ConfigError
from chalicelib.routing.actions import raised_by
from chalicelib.routing.conditions import (
    _MISSING,
    Condition,
    ConditionEnvironment,
    RuleProblem,
    _All,
    parse_condition,
)
from chalicelib.routing.event_conditions import EVENT_ONLY, event_value
from chalicelib.routing.event_context import EventContext, event_context_for
from chalicelib.routing.event_specs import EventActionSpec, EventRuleSpec, is_event_path

def selector_value(value: Any) -> str | None:
    """A selector value as the customer index stores and looks it up (`domain/segments.py`), so
    `"10115 "`, `10115` and `10115.0` select the same customers."""
    from chalicelib.domain.segments import index_value

    return index_value(value)


@dataclass(frozen=True)
class EventRuleEnvironment:
    conditions: ConditionEnvironment
    templates: frozenset[str]
    destinations: frozenset[str]
    #: `customers.indexed_attributes`; None: not checked (a configuration without segments).
    indexed_attributes: frozenset[str] | None = None


@dataclass(frozen=True)
class CompiledSelector:
    attribute: str
    #: The literal values (normalized), or the event path the values come from.
    values: tuple[str, ...]
    path: tuple[str, ...] | None
    #: How the trace names the values: `data.postcodes` or `[10115, 10117]`.
    described: str

    def values_for(self, ctx: EventContext) -> tuple[str, ...]:
        """The selector's values for this event, normalized and without repeats, in order."""
        if self.path is None:
            return self.values
        raw = event_value(ctx, ".".join(self.path), self.path)
        items = raw if isinstance(raw, list) else [] if raw is _MISSING else [raw]
        return tuple(dict.fromkeys(v for v in (selector_value(item) for item in items) if v is not None))


@dataclass(frozen=True)
class CompiledEventRule:
    name: str
    condition: Condition | None
    #: The event-only conditions at the start of `when` (a broadcast's first phase), None: all of it.
    prefix: Condition | None
    selector: CompiledSelector | None
    actions: EventActionSpec
    stop: bool
    explain: str | None
    #: Trace entries: matched (what it does), outside its segment, and the selector's failure.
    matched: RuleTrace
    not_selected: RuleTrace
    selector_failed: RuleTrace | None


@dataclass(frozen=True)
class EventRuleSet:
    rules: tuple[CompiledEventRule, ...]
    #: `inline`, or the version of the document the rules came from.
    version: str


@dataclass(frozen=True)
class Fanout:
    """One selector rule's segment for a broadcast: customers whose `attribute` is one of `values`."""

    rule: str
    attribute: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class EventDecision:
    #: Every rule evaluated, in order, with why it did or did not match.
    trace: list[RuleTrace]
    #: (rule name, its actions) of every matching rule, in rule order.
    actions: list[tuple[str, EventActionSpec]]
    rules_version: str


def parse_event_rule_specs(raw: Any, *, where: str = "events.rules") -> list[EventRuleSpec]:
    """Validate the rules' shape (not yet their conditions). Raises `ConfigError`."""
    from chalicelib.routing.rules import parse_specs

    return parse_specs(raw, EventRuleSpec, where=where, title="event rules")


def compile_event_rules(specs: Sequence[EventRuleSpec], env: EventRuleEnvironment, *, version: str = "inline",
                        where: str = "events.rules") -> EventRuleSet:
    """Compile validated specs; raises `ConfigError` listing every problem, each with its path
    (`events.rules[2] (parcel-late).when[1].event.path: ...`)."""
    problems: list[str] = []
    names: set[str] = set()
    compiled = []
    for index, spec in enumerate(specs):
        label = f"{where}[{index}] ({spec.name})"
        if spec.name in names:
            problems.append(f"{label}.name: duplicate rule name")
        names.add(spec.name)
        problems += [f"{label}.{problem}" for problem in action_reference_problems(
            spec, templates=env.templates, calendars=frozenset(env.conditions.calendars),
            destinations=env.destinations, indexed_attributes=env.indexed_attributes)]
        try:
            condition = parse_condition(spec.when, "when", env.conditions) if spec.when is not None else None
            selector = _selector(spec)
        except RuleProblem as problem:
            problems.append(f"{label}.{problem.path}: {problem.message}")
            continue
        prefix = _event_prefix(condition)
        if selector is not None and (condition is None or prefix is None):
            problems.append(f"{label}.when: a rule with a customer_selector must start with event_type or event "
                            "conditions, so a broadcast knows from the event alone whether to fan out")
            continue
        if spec.enabled:
            compiled.append(_compiled(spec, condition, prefix, selector))
    if problems:
        raise ConfigError("invalid event rules:\n  " + "\n  ".join(problems))
    return EventRuleSet(tuple(compiled), version)


def action_reference_problems(spec: EventRuleSpec, *, templates: frozenset[str], calendars: frozenset[str],
                              destinations: frozenset[str], indexed_attributes: Iterable[str] | None = None) -> list[str]:
    """What a rule names that the configuration lacks, each with its path below the rule."""
    problems = []
    actions = spec.then
    known_templates = ", ".join(sorted(templates)) or "none configured"
    if actions.notify is not None:
        if actions.notify.template not in templates:
            problems.append(f"then.notify.template: no template {actions.notify.template!r} in events.templates "
                            f"({known_templates})")
        quiet = actions.notify.quiet_hours
        if isinstance(quiet, str) and quiet not in calendars:
            problems.append(f"then.notify.quiet_hours: no calendar {quiet!r} in routing.calendars "
                            f"({', '.join(sorted(calendars)) or 'none configured'})")
    if actions.forward is not None:
        for index, name in enumerate(actions.forward.destinations):
            if name not in destinations:
                problems.append(f"then.forward.destinations[{index}]: no destination {name!r} "
                                f"({', '.join(sorted(destinations)) or 'none configured'})")
        if actions.forward.template is not None and actions.forward.template not in templates:
            problems.append(f"then.forward.template: no template {actions.forward.template!r} in events.templates "
                            f"({known_templates})")
    for name, value in actions.set_attribute.items():
        if isinstance(value, str) and value.startswith("{") and value.endswith("}") \
                and not is_event_path(value[1:-1]):
            problems.append(f"then.set_attribute.{name}: {value!r} is not a path into the event such as {{data.x}}")
    selector = spec.customer_selector
    if selector is not None and indexed_attributes is not None:
        indexed = list(indexed_attributes)
        if selector.attribute not in indexed:
            problems.append(f"customer_selector.attribute: {selector.attribute!r} is not in "
                            f"customers.indexed_attributes ({', '.join(indexed) or 'none'}); broadcasts select "
                            "customers by an indexed attribute only")
    return problems


def _selector(spec: EventRuleSpec) -> CompiledSelector | None:
    selector = spec.customer_selector
    if selector is None:
        return None
    operand = selector.in_ if selector.in_ is not None else selector.equals
    if is_event_path(operand):
        return CompiledSelector(selector.attribute, (), tuple(operand.split(".")), operand)
    items = operand if isinstance(operand, list) else [operand]
    values = tuple(dict.fromkeys(v for v in (selector_value(item) for item in items) if v is not None))
    if not values:
        key = "in" if selector.in_ is not None else "equals"
        raise RuleProblem(f"customer_selector.{key}", "no indexable value (text or a number)")
    return CompiledSelector(selector.attribute, values, None, f"[{', '.join(values)}]")


def _event_prefix(condition: Condition | None) -> Condition | None:
    """The event-only conditions `condition` starts with (its whole self when it is one), None
    when it starts with a customer condition."""
    if condition is None:
        return None
    if isinstance(condition, EVENT_ONLY):
        return condition
    if type(condition) is _All:
        leading = []
        for child in condition.children:
            if not isinstance(child, EVENT_ONLY):
                break
            leading.append(child)
        if not leading:
            return None
        return leading[0] if len(leading) == 1 else _All(leading)
    return None


def _compiled(spec: EventRuleSpec, condition: Condition | None, prefix: Condition | None,
              selector: CompiledSelector | None) -> CompiledEventRule:
    if condition is not None:
        for node in condition.walk():
            node.trace = RuleTrace(rule=spec.name, matched=False, reason=node.failure)
    if prefix is not None and prefix.trace is None:  # a new `all` of the leading children
        prefix.trace = RuleTrace(rule=spec.name, matched=False, reason=prefix.failure)
    summary = describe_event_actions(spec.then) + ("; stop" if spec.stop else "")
    if spec.explain:
        summary = f"{summary or 'no actions'} ({spec.explain})"
    selector_failed = None
    if selector is not None:
        selector_failed = RuleTrace(rule=spec.name, matched=False,
                                    reason=f"attribute {selector.attribute} not in the event's {selector.described}"
                                    if selector.path else f"attribute {selector.attribute} not in {selector.described}")
    return CompiledEventRule(
        name=spec.name, condition=condition, prefix=prefix, selector=selector, actions=spec.then, stop=spec.stop,
        explain=spec.explain, matched=RuleTrace(rule=spec.name, matched=True, reason=summary or "no actions"),
        not_selected=RuleTrace(rule=spec.name, matched=False, reason="not in this rule's segment"),
        selector_failed=selector_failed,
    )


def describe_event_actions(actions: EventActionSpec) -> str:
    """The actions in a few words, for the trace: `notify parcel_late via whatsapp, sms; open case in logistics`."""
    parts = []
    if actions.notify is not None:
        notify = actions.notify
        parts.append(f"notify {notify.template} via {', '.join(notify.channels)}"
                     + ("" if notify.purpose == "service" else f" ({notify.purpose})"))
    if actions.open_case is not None:
        opened = actions.open_case
        parts.append("open case" + (f" in {opened.queue}" if opened.queue else "")
                     + (f" priority {opened.priority.name.lower()}" if opened.priority is not None else "")
                     + ("".join(f" +{t}" for t in opened.tags)))
    if actions.add_to_case is not None:
        parts.append("add to case")
    if actions.close_case is not None:
        parts.append(f"close case ({actions.close_case.reason})")
    if actions.tag_customer:
        parts.append("tag customer " + " ".join(f"+{t}" for t in actions.tag_customer))
    if actions.set_attribute:
        parts.append("set " + ", ".join(actions.set_attribute))
    if actions.forward is not None:
        parts.append(f"forward to [{', '.join(actions.forward.destinations)}]")
    if actions.park is not None:
        parts.append(f"park: {actions.park}")
    if actions.priority is not None:
        parts.append(f"priority {actions.priority.name.lower()}")
    if actions.escalate:
        parts.append(f"escalate +{actions.escalate}")
    if actions.queue is not None:
        parts.append(f"queue {actions.queue}")
    if actions.follow_up_hours is not None:
        parts.append(f"follow up in {actions.follow_up_hours:g} h")
    return "; ".join(parts)


class EventEngine:
    """Evaluates an `EventRuleSet`. Pure: no I/O; safe to share between threads."""

    def __init__(self, rules: EventRuleSet) -> None:
        self.rules = rules
        count = len(rules.rules)
        self._stops = [
            RuleTrace(rule="(remaining rules)", matched=False,
                      reason=f"{count - index - 1} rules not evaluated: {rule.name} stopped evaluation")
            if index + 1 < count else None
            for index, rule in enumerate(rules.rules)
        ]
        self._raised = {steps: raised_by(steps) for steps in (1, 2, 3)}

    def evaluate(self, ctx: EventContext) -> EventDecision:
        """The matching rules' actions for the event and customer of `ctx`, with the trace. A
        selector rule matches a broadcast's customer only when its segment chose them
        (`ctx.selected_by`); for an event addressed to a customer, the selector is a condition
        on the customer's attribute. Earlier rules' `tag_customer`, `priority` and `escalate`
        are visible to later rules (`tagged`, `sla_breached`)."""
        event = ctx.event
        trace = [RuleTrace(rule="events", matched=True, reason=f"event {event.get('type')} {event.get('id')}")]
        actions: list[tuple[str, EventActionSpec]] = []
        broadcast = bool(ctx.selected_by)
        for index, rule in enumerate(self.rules.rules):
            ctx.rule = rule.name
            if rule.condition is not None:
                failed = rule.condition.first_failure(ctx)
                if failed is not None:
                    trace.append(failed.trace or RuleTrace(rule=rule.name, matched=False, reason=failed.failure))
                    continue
            if rule.selector is not None:
                if broadcast:
                    if rule.name not in ctx.selected_by:
                        trace.append(rule.not_selected)
                        continue
                elif not self._selector_holds(rule.selector, ctx):
                    trace.append(rule.selector_failed)
                    continue
            trace.append(rule.matched)
            actions.append((rule.name, rule.actions))
            self._apply(rule.actions, ctx)
            if rule.stop:
                if self._stops[index] is not None:
                    trace.append(self._stops[index])
                break
        return EventDecision(trace=trace, actions=actions, rules_version=self.rules.version)

    def broadcast_plan(self, event: Any, *, now: Any = None) -> list[Fanout]:
        """A customerless event's segments: for each enabled selector rule whose leading event
        conditions hold, the attribute and the values (from the event or literal) to fan out to.
        Rules without a selector do not fan out; a rule whose values the event lacks neither."""
        from chalicelib.domain.models import utcnow

        ctx = event_context_for(event, None, now=now or utcnow())
        plan = []
        for rule in self.rules.rules:
            if rule.selector is None:
                continue
            ctx.rule = rule.name
            if rule.prefix is not None and rule.prefix.first_failure(ctx) is not None:
                continue
            values = rule.selector.values_for(ctx)
            if values:
                plan.append(Fanout(rule.name, rule.selector.attribute, values))
        return plan

    def _selector_holds(self, selector: CompiledSelector, ctx: EventContext) -> bool:
        value = selector_value(ctx.attributes.get(selector.attribute))
        return value is not None and value in selector.values_for(ctx)

    def _apply(self, actions: EventActionSpec, ctx: EventContext) -> None:
        for tag in actions.tag_customer:
            if tag not in ctx.tags:
                ctx.tags.append(tag)
        if actions.priority is not None:
            ctx.priority = actions.priority
        if actions.escalate:
            ctx.priority = self._raised[actions.escalate][ctx.priority]


def segments(plan: Sequence[Fanout]) -> list[tuple[str, str, tuple[str, ...]]]:
    """The fan-out's page chains: (attribute, value, rule names). Rules sharing an attribute and
    value share one chain, so a customer in two rules' segments is paged once."""
    chains: dict[tuple[str, str], list[str]] = {}
    for fanout in plan:
        for value in fanout.values:
            rules = chains.setdefault((fanout.attribute, value), [])
            if fanout.rule not in rules:
                rules.append(fanout.rule)
    return [(attribute, value, tuple(rules)) for (attribute, value), rules in chains.items()]
