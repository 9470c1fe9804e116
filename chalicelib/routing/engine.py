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
condition would have returned. Each plan is then written out as one function
(`routing/program.py`), so a contact pays for its conditions and steps, not for a loop over rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from chalicelib.domain.models import Priority, RoutingDecision, RuleTrace
from chalicelib.routing.actions import Draft
from chalicelib.routing.conditions import Condition, _All, _Any, _Not, _OneOf
from chalicelib.routing.context import RoutingContext
from chalicelib.routing.program import PASSES as _PASSES
from chalicelib.routing.program import AlwaysFails, Program, compile_program
from chalicelib.routing.replies import ReplyRenderer
from chalicelib.routing.rules import RuleSet

#: What a plan may be built for: attributes of the contact that no rule changes.
_KNOWN_IN_ADVANCE = ("channel", "provider", "account", "content_type", "language")
#: Plans kept (a few dozen in practice: channels × the languages and accounts rules test); beyond
#: this, contacts evaluate every rule.
_MAX_PLANS = 128
#: Writing a plan out costs milliseconds (compiling its source): a plan is built once this many
#: contacts asked for it; until then they run the program of every rule, built once per rule set.
_PLAN_AFTER = 8


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
        #: Every rule evaluated per contact: for plans not built yet, and beyond `_MAX_PLANS`
        #: (built on first use).
        self._generic: Program | None = None
        #: Contacts that asked for a plan not built yet, by plan key.
        self._asked: dict[Any, int] = {}
        tested = {node.attribute for rule in rules.rules if rule.condition is not None
                  for node in rule.condition.walk() if isinstance(node, _OneOf)}
        self._attributes = tuple(name for name in _KNOWN_IN_ADVANCE if name in tested)
        #: The values a plan is built for, from a context.
        self._key = attrgetter(*self._attributes) if self._attributes else _no_key
        self._plans: dict[Any, Program] = {}

    def plan(self, ctx: RoutingContext) -> Program:
        """The rules as contacts with the channel (and the like) of `ctx` run them: their plan once
        `_PLAN_AFTER` contacts asked for it, every rule until then."""
        key = self._key(ctx)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        if len(self._plans) < _MAX_PLANS:
            asked = self._asked[key] = self._asked.get(key, 0) + 1
            if asked >= _PLAN_AFTER:
                self._asked.pop(key, None)  # workers in threads may share the router
                known = {name: getattr(ctx, name) for name in self._attributes}
                plan = self._plans[key] = self._program([_decided(rule.condition, known) for rule in self.rules.rules])
                return plan
            if len(self._asked) > 4 * _MAX_PLANS:
                self._asked.clear()  # many rare keys: start counting afresh
        if self._generic is None:
            self._generic = self._program([_dynamic(rule.condition) for rule in self.rules.rules])
        return self._generic

    def _program(self, outcomes: list[_Outcome]) -> Program:
        return compile_program(self.rules.rules, outcomes, self._stops)

    def route(self, ctx: RoutingContext) -> RoutingDecision:
        default = self.default
        ctx.priority = default.priority
        ctx.tags = []
        ctx.searched = {}
        draft = Draft(ctx, default.queue, list(default.destinations))
        trace = [self._start]
        plan = self._plans.get(self._key(ctx))
        if plan is None:
            plan = self.plan(ctx)
        plan(ctx, trace, draft)
        # Every value is the engine's own, of the field's type: validating the decision again
        # would only re-check its hundreds of prebuilt trace entries.
        return RoutingDecision.model_construct(
            priority=ctx.priority, queue=draft.queue, skills=draft.skills, tags=list(ctx.tags),
            destinations=draft.destinations,
            replies=[
                self._replies.render(rule=name, template=spec.template, calendar=spec.calendar, language=ctx.language,
                                     attributes=ctx.attributes, queue=draft.queue, now=ctx.now)
                for name, spec in draft.replies
            ],
            parked=draft.parked, suppressed=draft.suppressed, follow_up_hours=draft.follow_up_hours,
            rules_version=self.rules.version, trace=trace,
        )


# --- deciding conditions in advance ------------------------------------------------------------------

#: What a condition comes to for a plan: `_PASSES`, the `Condition` it always fails with, or
#: the conditions still to evaluate in order (an `all` of them: the first failure decides).
_Outcome = object


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
                pending.append(AlwaysFails(outcome))
                break
            pending += outcome
        return pending or _PASSES
    return [condition]
