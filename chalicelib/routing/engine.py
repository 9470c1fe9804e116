"""Route a contact: the compiled rules, in order, over a `RoutingContext`. Pure: no I/O.

The decision starts from the default route (queue, priority, destinations), which therefore
always exists; each matching rule applies its actions, and a rule that `stop`s ends the
evaluation. The trace lists every rule evaluated with why it did or did not match; its entries
were built when the rules were compiled, so explaining costs nothing per contact.

The rules run as a plan per channel: a rule whose condition starts with a channel test
(`channel: sms`, or an `all` whose first conditions are channel tests) is decided for every
contact of a channel when the plan is built, so a contact only evaluates what its channel leaves
open. The trace is the same as evaluating every condition: a rule decided in advance contributes
the entry its condition would have returned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.domain.models import Priority, RoutingDecision, RuleTrace
from chalicelib.routing.actions import Draft, Step
from chalicelib.routing.conditions import Condition, _All, _Not, _OneOf
from chalicelib.routing.context import RoutingContext
from chalicelib.routing.replies import ReplyRenderer
from chalicelib.routing.rules import CompiledRule, RuleSet

#: One rule in a plan: the check to run (None when decided in advance), the trace entry when the
#: check passes, the steps to take then, and what a stop appends to the trace (None: no stop).
Entry = tuple[Callable[[RoutingContext], Condition | None] | None, RuleTrace, tuple[Step, ...],
              tuple[RuleTrace, ...] | None]

#: Plans kept per channel; channels come from the `Channel` enum, so this is never reached in the
#: pipeline (a context built by hand may carry any string).
_MAX_PLANS = 32


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
        self._plans: dict[str, tuple[Entry, ...]] = {}

    def _entry(self, index: int, rule: CompiledRule, outcome: _Outcome) -> Entry:
        stop = self._stops[index] if rule.stop else None
        if outcome is _PASSES:
            return None, rule.matched, rule.steps, stop
        if isinstance(outcome, Condition):  # fails, always with this condition
            return None, outcome.trace, (), None
        return _check(outcome), rule.matched, rule.steps, stop

    def plan(self, channel: str) -> tuple[Entry, ...]:
        """The rules as contacts of `channel` run them (built on first use)."""
        plan = self._plans.get(channel)
        if plan is None:
            if len(self._plans) >= _MAX_PLANS:
                return self._generic
            plan = self._plans[channel] = tuple(self._entry(index, rule, _for_channel(rule.condition, channel))
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
        plan = self._plans.get(ctx.channel)
        if plan is None:
            plan = self.plan(ctx.channel)
        for check, matched, steps, stop in plan:
            if check is not None:
                failed = check(ctx)
                if failed is not None:
                    append(failed.trace)
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


# --- deciding conditions for one channel --------------------------------------------------------------

#: What a condition comes to for one channel: `_PASSES`, the `Condition` it always fails with, or
#: the conditions still to evaluate in order (an `all` of them: the first failure decides).
_Outcome = object
_PASSES = object()


def _dynamic(condition: Condition | None) -> _Outcome:
    return _PASSES if condition is None else [condition]


def _for_channel(condition: Condition | None, channel: str) -> _Outcome:
    if condition is None:
        return _PASSES
    if isinstance(condition, _OneOf) and condition.attribute == "channel":
        return _PASSES if channel in condition.values else condition
    if isinstance(condition, _Not) and isinstance(condition.child, _OneOf) and condition.child.attribute == "channel":
        return condition if channel in condition.child.values else _PASSES
    if type(condition) is _All:
        # Flattened, `all` children run in order and the first failure decides: children that pass
        # for this channel drop out, one that fails before anything left to evaluate decides.
        pending: list[Condition] = []
        for child in condition.children:
            outcome = _for_channel(child, channel)
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
