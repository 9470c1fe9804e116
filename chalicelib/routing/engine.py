"""Route a contact: the compiled rules, in order, over a `RoutingContext`. Pure: no I/O.

The decision starts from the default route (queue, priority, destinations), which therefore
always exists; each matching rule applies its actions, and a rule that `stop`s ends the
evaluation. The trace lists every rule evaluated with why it did or did not match; its entries
were built when the rules were compiled, so explaining costs nothing per contact.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.domain.models import Priority, RoutingDecision, RuleTrace
from chalicelib.routing.actions import Draft
from chalicelib.routing.context import RoutingContext
from chalicelib.routing.replies import ReplyRenderer
from chalicelib.routing.rules import RuleSet

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
        self._skipped = [
            RuleTrace(rule="(remaining rules)", matched=False,
                      reason=f"{count - index - 1} rules not evaluated: {rule.name} stopped evaluation")
            for index, rule in enumerate(rules.rules)
        ]

    def route(self, ctx: RoutingContext) -> RoutingDecision:
        default = self.default
        ctx.priority = default.priority
        ctx.tags = []
        draft = Draft(ctx, default.queue, list(default.destinations))
        trace = [self._start]
        append = trace.append
        rules = self.rules.rules
        for index, rule in enumerate(rules):
            condition = rule.condition
            if condition is not None:
                failed = condition.first_failure(ctx)
                if failed is not None:
                    append(failed.trace)
                    continue
            append(rule.matched)
            for step in rule.steps:
                step(draft)
            if rule.stop:
                if index + 1 < len(rules):
                    append(self._skipped[index])
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
