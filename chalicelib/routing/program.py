"""A routing plan as one Python function: the rules' checks, trace entries and steps in a row.

Evaluating a plan rule by rule costs, per rule, a loop step, a tuple unpacking and a call per
condition; with 200 rules that interpreter overhead is most of the routing time. The plan is
therefore written out once per rules version and channel (and the like) as straight-line source,
    if not (c.language in k3): append(k4)
    elif not (k5(c) is True): append(k6)
    else:
        append(k7); k8(draft)
and compiled. Simple conditions become inline expressions, the others call their own
`first_failure`; every value the code uses is bound by a generated name (`k<n>`), so nothing
from the configuration is ever part of the source text.

The function appends exactly the trace entries evaluating the conditions would: for a rule that
fails, the prebuilt entry of the condition `first_failure` would return (the first failing child
of an `all`, the `any` or `not` itself), so the explanation of a decision does not change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from chalicelib.domain.models import RuleTrace
from chalicelib.routing.actions import Draft, action_lines
from chalicelib.routing.conditions import (
    _MISSING,
    Condition,
    _All,
    _AnyIntent,
    _Any,
    _Attribute,
    _BusinessHours,
    _Flag,
    _Not,
    _OneOf,
    _RepeatContact,
    _Text,
    _Ticket,
    _Words,
)
from chalicelib.routing.context import RoutingContext
from chalicelib.routing.rules import CompiledRule

#: What a rule comes to in a plan: `PASSES`, the `Condition` it always fails with, or the
#: conditions still to evaluate in order (the first failure decides).
PASSES = object()

Program = Callable[[RoutingContext, list[RuleTrace], Draft], None]


class AlwaysFails(Condition):
    """A condition known to fail (with `failed`) once the conditions before it passed."""

    __slots__ = ("failed",)

    def __init__(self, failed: Condition) -> None:
        super().__init__(failed.statement, failed.failure)
        self.failed = failed

    def first_failure(self, ctx: RoutingContext) -> Condition | None:
        return self.failed


def compile_program(rules: Sequence[CompiledRule], outcomes: Sequence[Any],
                    stops: Sequence[tuple[RuleTrace, ...]]) -> Program:
    """One function running `rules`, each reduced to its outcome for the plan; `stops[i]` is
    what the trace says when rule i stops evaluation."""
    writer = _Writer()
    pending_entries: list[RuleTrace] = []

    def flush() -> None:
        # Rules decided in advance to fail: their entries, appended at once.
        if len(pending_entries) == 1:
            writer.line(f"append({writer.bind(pending_entries[0])})")
        elif pending_entries:
            writer.line(f"extend({writer.bind(tuple(pending_entries))})")
        pending_entries.clear()

    for index, (rule, outcome) in enumerate(zip(rules, outcomes)):
        if isinstance(outcome, Condition):
            pending_entries.append(outcome.trace)
            continue
        flush()
        if outcome is PASSES:
            writer.matched(rule, stops[index] if rule.stop else None, indent=1)
            continue
        chain = [link for condition in outcome for link in _chain(condition)]
        for position, condition in enumerate(chain):
            keyword = "if" if position == 0 else "elif"
            if isinstance(condition, AlwaysFails):
                writer.line(f"{'else' if position else 'if True'}:")
                writer.line(f"append({writer.bind(condition.failed.trace)})", indent=2)
                break
            expression = writer.passes(condition)
            if expression is None:
                writer.line(f"{keyword} (failed := {writer.bind(condition.first_failure)}(c)) is not None:")
                writer.line("append(failed.trace)", indent=2)
            else:
                writer.line(f"{keyword} not ({expression}):")
                writer.line(f"append({writer.bind(condition.trace)})", indent=2)
        else:
            writer.line("else:")
            writer.matched(rule, stops[index] if rule.stop else None, indent=2)
    flush()
    return writer.function()


def _chain(condition: Condition) -> list[Condition]:
    """An `all` is its children in order (its failure is its first failing child's)."""
    if type(condition) is _All:
        return [link for child in condition.children for link in _chain(child)]
    return [condition]


def _search(ctx: RoutingContext, condition: _Text) -> bool:
    found = ctx.searched[condition.key] = condition.search(condition.value_of(ctx)) is not None
    return found


def _calendar_open(ctx: RoutingContext, calendar: Any) -> bool:
    is_open = ctx.calendar_open[calendar] = calendar.is_open(ctx.now)
    return is_open


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"MISSING": _MISSING, "_search": _search, "_calendar_open": _calendar_open}
        self._bound: dict[int, str] = {}

    def bind(self, value: Any) -> str:
        name = self._bound.get(id(value))
        if name is None:
            name = self._bound[id(value)] = f"k{len(self._bound)}"
            self.names[name] = value
        return name

    def line(self, text: str, indent: int = 1) -> None:
        self.lines.append("    " * indent + text)

    def matched(self, rule: CompiledRule, stop: tuple[RuleTrace, ...] | None, indent: int) -> None:
        self.line(f"append({self.bind(rule.matched)})", indent)
        for statement in action_lines(rule.actions, rule.name, self.bind):
            self.line(statement, indent)
        if stop is not None:
            self.line(f"extend({self.bind(stop)})", indent)
            self.line("return", indent)

    def passes(self, condition: Condition) -> str | None:
        """An expression true when `condition` holds, or None: call its `first_failure`."""
        kind = type(condition)
        if kind is _OneOf and condition.attribute.isidentifier():
            return f"c.{condition.attribute} in {self.bind(condition.values)}"
        if kind is _AnyIntent:
            return f"not {self.bind(condition.values)}.isdisjoint(c.intents)"
        if kind is _Flag:
            return f"{self.bind(condition.test)}(c) is {condition.expected!r}"
        if kind is _Words:
            attribute = self.bind(condition.attribute)
            return (f"not {self.bind(condition.terms)}.isdisjoint("
                    f"c.folded_words.get({attribute}) or c.words({attribute}))")
        if kind is _Attribute:
            return f"{self.bind(condition.test)}(c.attributes.get({self.bind(condition.name)}, MISSING))"
        if kind is _Ticket:
            return f"{self.bind(condition.test)}(c.ticket.get({self.bind(condition.name)}, MISSING))"
        if kind is _Text:
            # One search per contact and expression, however many rules repeat it (`_Text`).
            key = self.bind(condition.key)
            return (f"(found if (found := c.searched.get({key})) is not None "
                    f"else _search(c, {self.bind(condition)}))")
        if kind is _BusinessHours:
            calendar = self.bind(condition.calendar)
            return (f"(known if (known := c.calendar_open.get({calendar})) is not None "
                    f"else _calendar_open(c, {calendar})) is {condition.expect_open!r}")
        if kind is _RepeatContact:
            count = self.bind(condition.count)
            return (f"(len(c.recent) >= {count} and "
                    f"c.now - c.recent[{self.bind(condition.count - 1)}] <= {self.bind(condition.window)})")
        if kind in (_Any, _All):
            parts = [self.passes(child) or f"{self.bind(child.first_failure)}(c) is None"
                     for child in condition.children]
            return "(" + (" or " if kind is _Any else " and ").join(f"({part})" for part in parts) + ")"
        if kind is _Not:
            inner = self.passes(condition.child) or f"{self.bind(condition.child.first_failure)}(c) is None"
            return f"not ({inner})"
        return None

    def function(self) -> Program:
        source = "\n".join(["def run(c, trace, draft):",
                            "    append = trace.append",
                            "    extend = trace.extend",
                            *self.lines])
        namespace = dict(self.names)
        exec(compile(source, "<routing plan>", "exec"), namespace)  # noqa: S102 - our own source, see above
        run = namespace["run"]
        run.source = source  # for debugging a plan
        return run
