"""Routing rules: compiling them (their configuration schema is `specs.py`) into something fast to evaluate.

    routing:
      rules:
        - name: vip-first
          when: {attribute: {name: tier, in: [gold, vip]}}
          then: {priority: high, queue: vip, tags: [vip]}
          stop: true

Rules run in order. A matching rule applies its `then` actions; later rules may add to the
result (tags, skills, destinations) or change it (priority, queue), unless the rule `stop`s.
Compiling checks every rule against the rest of the configuration (calendars, reply templates,
destinations) and reports every problem with its path, so a bad rule fails at start-up, not on a
customer's message. Each rule's possible trace entries are built here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from chalicelib.domain.models import RuleTrace
from chalicelib.errors import ConfigError
from chalicelib.routing.actions import Step, compile_actions
from chalicelib.routing.conditions import Condition, ConditionEnvironment, RuleProblem, parse_condition
from chalicelib.routing.specs import ActionSpec, ReplySpec, RuleSpec  # noqa: F401 (ReplySpec: importable from here)

#: A rule spec model (`RuleSpec`, or the business events' `EventRuleSpec`).
SpecT = TypeVar("SpecT", bound=BaseModel)


@dataclass(frozen=True)
class RuleEnvironment:
    conditions: ConditionEnvironment
    templates: frozenset[str]
    destinations: frozenset[str]


@dataclass(frozen=True)
class CompiledRule:
    name: str
    condition: Condition | None
    actions: ActionSpec
    #: The actions as the few steps this rule takes (`routing/actions.py`).
    steps: tuple[Step, ...]
    stop: bool
    #: The trace entry when the rule matched (what it did).
    matched: RuleTrace


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[CompiledRule, ...]
    #: `inline`, or the version of the document the rules came from.
    version: str


def parse_rule_specs(raw: Any, *, where: str = "routing.rules") -> list[RuleSpec]:
    """Validate the rules' shape (not yet their conditions). Raises `ConfigError`."""
    return parse_specs(raw, RuleSpec, where=where, title="routing rules")


def parse_specs(raw: Any, model: type[SpecT], *, where: str, title: str) -> list[SpecT]:
    """A list of rule specs validated by `model`, every problem named by its rule's index and name
    (`routing.rules[2] (vip).then.priority: ...`); raises `ConfigError` titled `invalid <title>`.
    Routing's and the business events' rules share it."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: must be a list of rules")
    specs, problems = [], []
    for index, item in enumerate(raw):
        label = f"{where}[{index}]" + (f" ({item['name']})" if isinstance(item, dict) and "name" in item else "")
        try:
            specs.append(model.model_validate(item))
        except ValidationError as exc:
            problems += [f"{label}.{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
                         for e in exc.errors(include_url=False)]
    if problems:
        raise ConfigError(f"invalid {title}:\n  " + "\n  ".join(problems))
    return specs


def compile_rules(specs: list[RuleSpec], env: RuleEnvironment, *, version: str = "inline",
                  where: str = "routing.rules") -> RuleSet:
    """Compile validated specs; raises `ConfigError` listing every problem, each with its path."""
    problems: list[str] = []
    names: set[str] = set()
    compiled = []
    for index, spec in enumerate(specs):
        label = f"{where}[{index}] ({spec.name})"
        if spec.name in names:
            problems.append(f"{label}.name: duplicate rule name")
        names.add(spec.name)
        problems += [f"{label}.then.{problem}" for problem in _reference_problems(spec.then, env)]
        try:
            condition = parse_condition(spec.when, "when", env.conditions) if spec.when is not None else None
        except RuleProblem as problem:
            problems.append(f"{label}.{problem.path}: {problem.message}")
            continue
        if spec.enabled:
            compiled.append(_compiled(spec, condition))
    if problems:
        raise ConfigError("invalid routing rules:\n  " + "\n  ".join(problems))
    return RuleSet(tuple(compiled), version)


def _compiled(spec: RuleSpec, condition: Condition | None) -> CompiledRule:
    if condition is not None:
        for node in condition.walk():
            node.trace = RuleTrace(rule=spec.name, matched=False, reason=node.failure)
    summary = describe_actions(spec.then) + ("; stop" if spec.stop else "")
    return CompiledRule(spec.name, condition, spec.then, compile_actions(spec.then, spec.name), spec.stop,
                        RuleTrace(rule=spec.name, matched=True, reason=summary or "no actions"))


def describe_actions(actions: ActionSpec) -> str:
    """The actions in a few words, for the trace: `priority high; queue vip; tags +vip`."""
    parts = []
    if actions.priority is not None:
        parts.append(f"priority {actions.priority.name.lower()}")
    if actions.escalate:
        parts.append(f"escalate +{actions.escalate}")
    if actions.queue is not None:
        parts.append(f"queue {actions.queue}")
    if actions.skills:
        parts.append("skills " + ", ".join(f"{k}:{v}" for k, v in actions.skills.items()))
    if actions.tags:
        parts.append("tags " + " ".join(f"+{t}" for t in actions.tags))
    if actions.destinations is not None:
        parts.append(f"destinations [{', '.join(actions.destinations)}]")
    if actions.add_destinations:
        parts.append("destinations " + " ".join(f"+{d}" for d in actions.add_destinations))
    if actions.reply is not None:
        parts.append(f"reply {actions.reply.template}")
    if actions.park is not None:
        parts.append(f"park: {actions.park}")
    if actions.suppress is not None:
        parts.append(f"suppress: {actions.suppress}")
    if actions.follow_up_hours is not None:
        parts.append(f"follow up in {actions.follow_up_hours:g} h")
    return "; ".join(parts)


def _reference_problems(actions: ActionSpec, env: RuleEnvironment) -> list[str]:
    problems = []
    for field, names in (("destinations", actions.destinations or []), ("add_destinations", actions.add_destinations)):
        for name in names:
            if name not in env.destinations:
                known = ", ".join(sorted(env.destinations)) or "none configured"
                problems.append(f"{field}: no destination {name!r} ({known})")
    if actions.reply is not None:
        if actions.reply.template not in env.templates:
            known = ", ".join(sorted(env.templates)) or "none configured"
            problems.append(f"reply.template: no template {actions.reply.template!r} in routing.templates ({known})")
        calendar = actions.reply.calendar
        if calendar is not None and calendar not in env.conditions.calendars:
            problems.append(f"reply.calendar: no calendar {calendar!r} in routing.calendars")
    return problems
