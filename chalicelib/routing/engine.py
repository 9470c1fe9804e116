"""Route a contact: the compiled rules, in order, over a `RoutingContext`. Pure: no I/O.

The decision starts from the default route (queue, priority, destinations), which therefore
always exists; each matching rule applies its actions, and a rule that `stop`s ends the
evaluation. The trace lists every rule evaluated with why it did or did not match; its entries
were built when the rules were compiled, so explaining costs nothing per contact.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.domain.models import Priority, RoutingDecision, RuleTrace
from chalicelib.routing.context import RoutingContext
from chalicelib.routing.replies import ReplyRenderer
from chalicelib.routing.rules import RuleSet

_SCALE = sorted(Priority)


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
        queue = default.queue
        skills: dict[str, int] = {}
        destinations = list(default.destinations)
        replies = []
        parked = suppressed = None
        trace = [self._start]
        rules = self.rules.rules
        for index, rule in enumerate(rules):
            if rule.condition is not None:
                failed = rule.condition.first_failure(ctx)
                if failed is not None:
                    trace.append(failed.trace)
                    continue
            trace.append(rule.matched)
            actions = rule.actions
            if actions.priority is not None:
                ctx.priority = actions.priority
            if actions.escalate:
                ctx.priority = _SCALE[min(_SCALE.index(ctx.priority) + actions.escalate, len(_SCALE) - 1)]
            if actions.queue is not None:
                queue = actions.queue
            for skill, level in actions.skills.items():
                skills[skill] = max(level, skills.get(skill, 0))
            for tag in actions.tags:
                if tag not in ctx.tags:
                    ctx.tags.append(tag)
            if actions.destinations is not None:
                destinations = list(actions.destinations)
            for name in actions.add_destinations:
                if name not in destinations:
                    destinations.append(name)
            if actions.reply is not None:
                replies.append((rule.name, actions.reply))
            if actions.park is not None:
                parked = f"{actions.park} (rule {rule.name})"
            if actions.suppress is not None:
                suppressed = f"{actions.suppress} (rule {rule.name})"
            if rule.stop:
                if index + 1 < len(rules):
                    trace.append(self._skipped[index])
                break
        return RoutingDecision(
            priority=ctx.priority, queue=queue, skills=skills, tags=list(ctx.tags), destinations=destinations,
            replies=[
                self._replies.render(rule=name, template=spec.template, calendar=spec.calendar, language=ctx.language,
                                     attributes=ctx.attributes, queue=queue, now=ctx.now)
                for name, spec in replies
            ],
            parked=parked, suppressed=suppressed, rules_version=self.rules.version, trace=trace,
        )
