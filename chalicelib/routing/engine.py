"""Route a contact: the compiled rules, in order, over a `RoutingContext`. Pure: no I/O.

The decision starts from the default route (queue, priority, destinations), which therefore
always exists; each matching rule applies its actions, and a rule that `stop`s ends the
evaluation. The trace lists every rule evaluated with why it did or did not match; its entries
were built when the rules were compiled, so explaining costs nothing per contact.

The rules run as a plan per channel (and provider, account, content type and language, those
of them the rules test): a rule whose condition starts with such a test (`channel: sms`, or an
`all` whose first conditions are such tests) is decided for all contacts alike when the plan is
built, so a contact only evaluates what its channel and the like leave open. The trace is the
same as evaluating every condition: a rule decided in advance contributes the entry its
condition would have returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from chalicelib.domain.models import Priority, RoutingDecision, RuleTrace
from chalicelib.routing.actions import Draft, Step
from chalicelib.routing.conditions import Condition, _All, _Any, _Not, _OneOf
from chalicelib.routing.context import RoutingContext
from chalicelib.routing.replies import ReplyRenderer
from chalicelib.routing.rules import CompiledRule, RuleSet

#: One rule in a plan: the check to run (None when decided in advance), the trace entry when the
#: check passes, the steps to take then, and what a stop appends to the trace (None: no stop).
#: Or several rules decided in advance, in a row: None, their trace entries, None, None.
Entry = tuple[Callable[[RoutingContext], Condition | None] | None, RuleTrace | tuple[RuleTrace, ...],
              tuple[Step, ...] | None, tuple[RuleTrace, ...] | None]

#: What a plan may be built for: attributes of the contact that no rule changes.
_KNOWN_IN_ADVANCE = ("channel", "provider", "account", "content_type", "language")
#: Plans kept (a few dozen in practice: channels × the languages and accounts rules test); beyond
#: this, contacts evaluate every rule.
_MAX_PLANS = 128


@dataclass(frozen=True)
class DefaultRoute:
    queue: str
    priority: Priority
    destinations: tuple[str, ...]


class Router:
    def __init__(self, rules: RuleSet, default: DefaultRoute, replies: ReplyRenderer) -> None:
        self.rules = rules
        self.default = default
        self._replies = replies
        self._start = RuleTrace(
            rule="default", matched=True,
            reason=f"start from the default route: queue {default.queue}, priority {default.priority.name.lower()}, "
                   f"destinations [{', '.join(default.destinations)}]",
        )
        count = len(rules.rules)
        # What the trace says about the rules a stopping rule left unevaluated, per position.
        self._stops = [
            (RuleTrace(rule="(remaining rules)", matched=False,
                       reason=f"{count - index - 1} rules not evaluated: {rule.name} stopped evaluation"),)
            if index + 1 < count else ()
            for index, rule in enumerate(rules.rules)
        ]
        self._generic = tuple(self._entry(index, rule, _dynamic(rule.condition))
                              for index, rule in enumerate(rules.rules))
        tested = {node.attribute for rule in rules.rules if rule.condition is not None
                  for node in rule.condition.walk() if isinstance(node, _OneOf)}
        self._attributes = tuple(name for name in _KNOWN_IN_ADVANCE if name in tested)
        #: The values a plan is built for, from a context.
        self._key = attrgetter(*self._attributes) if self._attributes else _no_key
        self._plans: dict[Any, tuple[Entry, ...]] = {}

    def _entry(self, index: int, rule: CompiledRule, outcome: _Outcome) -> Entry:
        stop = self._stops[index] if rule.stop else None
        if outcome is _PASSES:
            return None, rule.matched, rule.steps, stop
        if isinstance(outcome, Condition):  # fails, always with this condition
            return None, outcome.trace, (), None
        return _check(outcome), rule.matched, rule.steps, stop

    def plan(self, ctx: RoutingContext) -> tuple[Entry, ...]:
        """The rules as contacts with the channel (and the like) of `ctx` run them (built on first use)."""
        key = self._key(ctx)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _MAX_PLANS:
                return self._generic
            known = {name: getattr(ctx, name) for name in self._attributes}
            plan = self._plans[key] = _merged(self._entry(index, rule, _decided(rule.condition, known))
                                              for index, rule in enumerate(self.rules.rules))
        return plan

    def route(self, ctx: RoutingContext) -> RoutingDecision:
        default = self.default
        ctx.priority = default.priority
        ctx.tags = []
        ctx.searched = {}
        draft = Draft(ctx, default.queue, list(default.destinations))
        trace = [self._start]
        append = trace.append
        plan = self._plans.get(self._key(ctx))
        if plan is None:
            plan = self.plan(ctx)
        for check, matched, steps, stop in plan:
            if check is not None:
                failed = check(ctx)
                if failed is not None:
                    append(failed.trace)
                    continue
            elif steps is None:  # several rules in a row decided in advance: their entries
                trace += matched
                continue
            append(matched)
            for step in steps:
                step(draft)
            if stop is not None:
                trace += stop
                break
        return RoutingDecision(
            priority=ctx.priority, queue=draft.queue, skills=draft.skills, tags=list(ctx.tags),
            destinations=draft.destinations,
            replies=[
                self._replies.render(rule=name, template=spec.template, calendar=spec.calendar, language=ctx.language,
                                     attributes=ctx.attributes, queue=draft.queue, now=ctx.now)
                for name, spec in draft.replies
            ],
            parked=draft.parked, suppressed=draft.suppressed, rules_version=self.rules.version, trace=trace,
        )


def _merged(entries: Iterable[Entry]) -> tuple[Entry, ...]:
    """Consecutive rules that were decided in advance and take no step become one entry: their
    trace entries, appended at once (`steps` None)."""
    merged: list[Entry] = []
    run: list[RuleTrace] = []

    def close_run() -> None:
        if len(run) == 1:
            merged.append((None, run[0], (), None))
        elif run:
            merged.append((None, tuple(run), None, None))
        run.clear()

    for entry in entries:
        check, matched, steps, stop = entry
        if check is None and not steps and stop is None:
            run.append(matched)
            continue
        close_run()
        merged.append(entry)
    close_run()
    return tuple(merged)


# --- deciding conditions in advance ------------------------------------------------------------------

#: What a condition comes to for a plan: `_PASSES`, the `Condition` it always fails with, or
#: the conditions still to evaluate in order (an `all` of them: the first failure decides).
_Outcome = object
_PASSES = object()


def _dynamic(condition: Condition | None) -> _Outcome:
    return _PASSES if condition is None else [condition]


def _no_key(ctx: RoutingContext) -> None:
    return None


def _decided(condition: Condition | None, known: dict[str, Any]) -> _Outcome:
    """What `condition` comes to when the context's attributes in `known` have those values."""
    if condition is None:
        return _PASSES
    kind = type(condition)
    if kind is _OneOf and condition.attribute in known:
        return _PASSES if known[condition.attribute] in condition.values else condition
    if kind is _Not:
        outcome = _decided(condition.child, known)
        if outcome is _PASSES:
            return condition
        return _PASSES if isinstance(outcome, Condition) else [condition]
    if kind is _Any:
        outcomes = [_decided(child, known) for child in condition.children]
        if any(outcome is _PASSES for outcome in outcomes):
            return _PASSES
        return condition if all(isinstance(outcome, Condition) for outcome in outcomes) else [condition]
    if kind is _All:
        # Flattened, `all` children run in order and the first failure decides: children that pass
        # drop out, one that fails before anything is left to evaluate decides.
        pending: list[Condition] = []
        for child in condition.children:
            outcome = _decided(child, known)
            if outcome is _PASSES:
                continue
            if isinstance(outcome, Condition):
                if not pending:
                    return outcome
                pending.append(_Fails(outcome))
                break
            pending += outcome
        return pending or _PASSES
    return [condition]


class _Fails(Condition):
    """A condition known to fail (with `failed`) once the conditions before it passed."""

    __slots__ = ("failed",)

    def __init__(self, failed: Condition) -> None:
        super().__init__(failed.statement, failed.failure)
        self.failed = failed

    def first_failure(self, ctx: RoutingContext) -> Condition | None:
        return self.failed


def _check(pending: list[Condition]) -> Callable[[RoutingContext], Condition | None]:
    if len(pending) == 1:
        return pending[0].first_failure
    checks = tuple(condition.first_failure for condition in pending)

    def first_failure(ctx: RoutingContext) -> Condition | None:
        for check in checks:
            failed = check(ctx)
            if failed is not None:
                return failed
        return None

    return first_failure
