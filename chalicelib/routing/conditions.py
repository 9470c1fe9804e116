"""Rule conditions: parsed from the configuration once, evaluated per contact without allocating.

A condition is written as a mapping with one key, the condition's name:

    channel: whatsapp                      # or a list: any of them
    provider / account / language / content_type / intent: <value or list>
    urgent / new_customer / has_attachments / sender_verified: true | false
    text / subject: {contains: [refund, "money back"]} | {matches: "order #?\\d{6}"}
    attribute: {name: tier, in: [gold, vip]} | {name: tier, equals: gold} | {name: x, exists: true}
               | {name: custom.score, gte: 80} | {name: custom.score, lte: 20}
    ticket: {destination: helpdesk, field: assignee, in: [Alex Agent]}   # a two-way destination's
               ticket as its vendor reported it; field state | status | assignee | priority
    tagged: vip                            # a tag an earlier rule added
    repeat_contact: {count: 3, within_hours: 48}
    case_age_hours: {over: 24}
    sla_breached: true                     # the open case is older than the SLA of its priority
    business_hours: open | closed | {calendar: support_de, is: closed}
    all: [...] | any: [...] | not: {...}

Every condition knows, from the moment it is parsed, the sentence that explains its failure, so
the trace of a rule that did not match costs nothing to produce.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from operator import attrgetter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from chalicelib.domain.models import Channel, ContentType, Priority, RuleTrace
from chalicelib.routing.context import RoutingContext


class RuleProblem(Exception):
    """A rule cannot be compiled; `path` names the offending field (`when.any[1].channel`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class ConditionEnvironment:
    """What conditions may refer to, from the rest of the configuration."""

    #: Calendar name → object with `is_open(datetime) -> bool`.
    calendars: dict[str, Any]
    #: Case age (hours) after which a case of the given priority is past its SLA.
    sla_hours: Callable[[Priority], float]
    #: The conditions this language knows, by name; None: routing's (`_PARSERS`). Event rules
    #: pass their own table (`routing/event_conditions.py`), and `all`/`any`/`not` hand the
    #: environment down, so nested conditions parse from the same table.
    parsers: Mapping[str, Callable[[Any, str, "ConditionEnvironment"], "Condition"]] | None = None


class Condition:
    """Base: `first_failure` returns None when the condition holds, else the condition that
    failed (for `all`, the first child that failed), whose `failure` explains it."""

    __slots__ = ("statement", "failure", "trace")

    def __init__(self, statement: str, failure: str) -> None:
        #: What the condition states (`channel in [sms]`), for `any` and `not` explanations.
        self.statement = statement
        #: Why it failed (`channel not in [sms]`), for the trace.
        self.failure = failure
        #: The rule's prebuilt trace entry for this failure (set by the rule compiler).
        self.trace: RuleTrace | None = None

    def first_failure(self, ctx: RoutingContext) -> Condition | None:
        # Every condition implements this directly (one call per condition on the hot path).
        raise NotImplementedError

    def walk(self) -> Iterator[Condition]:
        yield self


class _OneOf(Condition):
    __slots__ = ("attribute", "value_of", "values")

    def __init__(self, attribute: str, values: frozenset, statement: str, failure: str) -> None:
        super().__init__(statement, failure)
        #: The context attribute tested (the router indexes rules on `channel`).
        self.attribute = attribute
        self.value_of = attrgetter(attribute)
        self.values = values

    def first_failure(self, ctx: RoutingContext) -> Condition | None:
        return None if self.value_of(ctx) in self.values else self


class _AnyIntent(Condition):
    __slots__ = ("values",)

    def __init__(self, values: frozenset[str], statement: str, failure: str) -> None:
        super().__init__(statement, failure)
        self.values = values

    def first_failure(self, ctx: RoutingContext) -> Condition | None:
        return None if not self.values.isdisjoint(ctx.intents) else self


class _Flag(Condition):
    __slots__ = ("test", "expected")

    def __init__(self, test: Callable[[RoutingContext], bool], expected: bool, statement: str, failure: str) -> None:
        super().__init__(statement, failure)
        self.test = test
        self.expected = expected

    def first_failure(self, ctx: RoutingContext) -> Condition | None:
        return None if self.test(ctx) is self.expected else self


class _Text(Condition):
    __slots__ = ("value_of", "search", "key")

    def __init__(self, attribute: str, pattern: re.Pattern, statement: str, failure: str) -> None:
        super().__init__(statement, failure)
        self.value_of = attrgetter(attribute)
        self.search = pattern.search
        #: Rules often repeat an expression: one search per contact, attribute and expression.
        self.key = f"{attribute}\0{pattern.flags}\0{pattern.pattern}"

    def first_failure(self, ctx: RoutingContext) -> Condition | None:
        found = ctx.searched.get(self.key)
        if found is None:
            found = ctx.searched[self.key] = self.search(self.value_of(ctx)) is not None
        return None if found else self


class _Words(Condition):
    """`contains` with single words only: a set test on the contact's words."""

    __slots__ = ("attribute", "terms")

    def __init__(self, attribute: str, terms: frozenset[str], statement: str, failure: str) -> None:
        super().__init__(statement, failure)
        self.attribute = attribute
        self.terms = terms

    def first_failure(self, ctx: RoutingContext) -> Condition | None:
        words = ctx.folded_words.get(self.attribute)
        if words is None:
            words = ctx.words(self.attribute)
        return None if not self.terms.isdisjoint(words) else self


class _Attribute(Condition):
    __slots__ = ("name", "test")

    def __init__(self, name: str, test: Callable[[Any], bool], statement: str, failure: str) -> None:
        super().__init__(statement, failure)
        self.name = name
        self.test = test

    def first_failure(self, ctx: RoutingContext) -> Condition | None:
        return None if self.test(ctx.attributes.get(self.name, _MISSING)) else self


class _Ticket(_Attribute):
    """A field of one of the case's tickets, as its vendor reported it (two-way destinations)."""

    __slots__ = ()

    def first_failure(self, ctx: RoutingContext) -> Condition | None:
        return None if self.test(ctx.ticket.get(self.name, _MISSING)) else self


class _Tagged(Condition):
    __slots__ = ("tag",)

    def __init__(self, tag: str, statement: str, failure: str) -> None:
        super().__init__(statement, failure)
        self.tag = tag

    def first_failure(self, ctx: RoutingContext) -> Condition | None:
        return None if self.tag in ctx.tags else self


class _RepeatContact(Condition):
    __slots__ = ("count", "window")

    def __init__(self, count: int, hours: float, statement: str, failure: str) -> None:
        super().__init__(statement, failure)
        self.count = count
        self.window = timedelta(hours=hours)

    def first_failure(self, ctx: RoutingContext) -> Condition | None:
        # `recent` is newest first and includes this contact: the count-th newest decides.
        recent = ctx.recent
        if len(recent) >= self.count and ctx.now - recent[self.count - 1] <= self.window:
            return None
        return self


class _CaseAge(Condition):
    __slots__ = ("over",)

    def __init__(self, hours: float, statement: str, failure: str) -> None:
        super().__init__(statement, failure)
        self.over = timedelta(hours=hours)

    def first_failure(self, ctx: RoutingContext) -> Condition | None:
        return None if ctx.case_opened_at is not None and ctx.now - ctx.case_opened_at > self.over else self


class _SlaBreached(Condition):
    __slots__ = ("sla_hours", "expected")

    def __init__(self, sla_hours: Callable[[Priority], float], expected: bool, statement: str, failure: str) -> None:
        super().__init__(statement, failure)
        self.sla_hours = sla_hours
        self.expected = expected

    def first_failure(self, ctx: RoutingContext) -> Condition | None:
        breached = ctx.case_opened_at is not None and (
            ctx.now - ctx.case_opened_at > timedelta(hours=self.sla_hours(ctx.priority))
        )
        return None if breached is self.expected else self


class _BusinessHours(Condition):
    __slots__ = ("calendar", "expect_open")

    def __init__(self, calendar: Any, expect_open: bool, statement: str, failure: str) -> None:
        super().__init__(statement, failure)
        self.calendar = calendar
        self.expect_open = expect_open

    def first_failure(self, ctx: RoutingContext) -> Condition | None:
        # Many rules may ask about the same calendar at the same moment: answer once per contact.
        is_open = ctx.calendar_open.get(self.calendar)
        if is_open is None:
            is_open = ctx.calendar_open[self.calendar] = self.calendar.is_open(ctx.now)
        return None if is_open is self.expect_open else self


class _All(Condition):
    __slots__ = ("children", "checks")

    def __init__(self, children: list[Condition]) -> None:
        super().__init__("all of: " + "; ".join(c.statement for c in children), "")
        self.children = children
        self.checks = tuple(child.first_failure for child in children)

    def first_failure(self, ctx: RoutingContext) -> Condition | None:
        for check in self.checks:
            failed = check(ctx)
            if failed is not None:
                return failed
        return None

    def walk(self) -> Iterator[Condition]:
        yield self
        for child in self.children:
            yield from child.walk()


class _Any(Condition):
    __slots__ = ("children", "checks")

    def __init__(self, children: list[Condition]) -> None:
        statements = "; ".join(c.statement for c in children)
        super().__init__(f"any of: {statements}", f"none of: {statements}")
        self.children = children
        self.checks = tuple(child.first_failure for child in children)

    def first_failure(self, ctx: RoutingContext) -> Condition | None:
        for check in self.checks:
            if check(ctx) is None:
                return None
        return self

    def walk(self) -> Iterator[Condition]:
        yield self
        for child in self.children:
            yield from child.walk()


class _Not(Condition):
    __slots__ = ("child", "check")

    def __init__(self, child: Condition) -> None:
        super().__init__(f"not ({child.statement})", f"{child.statement}, which the rule excludes")
        self.child = child
        self.check = child.first_failure

    def first_failure(self, ctx: RoutingContext) -> Condition | None:
        return self if self.check(ctx) is None else None

    def walk(self) -> Iterator[Condition]:
        yield self
        yield from self.child.walk()


_MISSING = object()
_SINGLE_WORD = re.compile(r"\w+")


# --- parsing ---------------------------------------------------------------------------------------


def parse_condition(spec: Any, path: str, env: ConditionEnvironment) -> Condition:
    """Parse one condition (a one-key mapping; a list means `all`). Raises `RuleProblem`."""
    if isinstance(spec, list):
        return _All([parse_condition(item, f"{path}[{index}]", env) for index, item in enumerate(spec)])
    table = env.parsers or _PARSERS
    if not isinstance(spec, dict) or len(spec) != 1:
        raise RuleProblem(path, f"a condition is a mapping with one key, one of: {', '.join(sorted(table))}")
    [(name, value)] = spec.items()
    parser = table.get(name)
    if parser is None:
        raise RuleProblem(path, f"unknown condition {name!r}; known: {', '.join(sorted(table))}")
    return parser(value, f"{path}.{name}", env)


def _values(value: Any, path: str, allowed: set[str] | None = None) -> frozenset[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) and item for item in items):
        raise RuleProblem(path, "must be a non-empty string or a list of them")
    if allowed is not None:
        unknown = [item for item in items if item not in allowed]
        if unknown:
            raise RuleProblem(path, f"unknown value {unknown[0]!r}; one of: {', '.join(sorted(allowed))}")
    return frozenset(items)


def _one_of(attribute: str, allowed: set[str] | None = None):
    def parse(value: Any, path: str, env: ConditionEnvironment) -> Condition:
        values = _values(value, path, allowed)
        listed = ", ".join(sorted(values))
        return _OneOf(attribute, values, f"{attribute} in [{listed}]", f"{attribute} not in [{listed}]")

    return parse


def _flag(name: str, test: Callable[[RoutingContext], bool]):
    def parse(value: Any, path: str, env: ConditionEnvironment) -> Condition:
        if not isinstance(value, bool):
            raise RuleProblem(path, "must be true or false")
        return _Flag(test, value, f"{name} is {str(value).lower()}", f"{name} is not {str(value).lower()}")

    return parse


def _intent(value: Any, path: str, env: ConditionEnvironment) -> Condition:
    values = _values(value, path)
    listed = ", ".join(sorted(values))
    return _AnyIntent(values, f"intent in [{listed}]", f"intent not in [{listed}]")


def _text(attribute: str):
    def parse(value: Any, path: str, env: ConditionEnvironment) -> Condition:
        if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("contains", "matches"):
            raise RuleProblem(path, "must be {contains: [words or phrases]} or {matches: <regular expression>}")
        [(mode, operand)] = value.items()
        if mode == "contains":
            terms = sorted(_values(operand, f"{path}.contains"), key=len, reverse=True)
            listed = ", ".join(sorted(terms))
            statement, failure = f"{attribute} contains one of [{listed}]", f"{attribute} contains none of [{listed}]"
            # Whole words or phrases, case-insensitive: "down" must not match "download".
            folded = [t.casefold() for t in terms]
            if all(_SINGLE_WORD.fullmatch(t) for t in folded):
                return _Words(attribute, frozenset(folded), statement, failure)
            pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(t) for t in terms) + r")(?!\w)", re.IGNORECASE)
            return _Text(attribute, pattern, statement, failure)
        if not isinstance(operand, str) or not operand:
            raise RuleProblem(f"{path}.matches", "must be a regular expression")
        try:
            pattern = re.compile(operand, re.IGNORECASE)
        except re.error as exc:
            raise RuleProblem(f"{path}.matches", f"invalid regular expression: {exc}") from None
        return _Text(attribute, pattern, f"{attribute} matches /{operand}/", f"{attribute} does not match /{operand}/")

    return parse


_ATTRIBUTE_OPS = ("equals", "in", "exists", "gte", "lte")


def _attribute(value: Any, path: str, env: ConditionEnvironment) -> Condition:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or len(value) != 2:
        raise RuleProblem(path, f"must be {{name: <attribute>, <test>: ...}} with one test of: {', '.join(_ATTRIBUTE_OPS)}")
    name = value["name"]
    [(op, operand)] = [(k, v) for k, v in value.items() if k != "name"]
    return _value_test(_Attribute, "attribute", name, op, operand, path)


_TICKET_FIELDS = ("state", "status", "assignee", "priority")
_TICKET_OPS = ("equals", "in", "exists")


def _ticket(value: Any, path: str, env: ConditionEnvironment) -> Condition:
    """`ticket: {destination: helpdesk, field: assignee, in: [...]}`: what a two-way destination
    last reported about the case's ticket (`case.external_state`)."""
    shape = (f"must be {{destination: <name>, field: <{'|'.join(_TICKET_FIELDS)}>, <test>: ...}} "
             f"with one test of: {', '.join(_TICKET_OPS)}")
    if not isinstance(value, dict) or len(value) != 3 or not isinstance(value.get("destination"), str):
        raise RuleProblem(path, shape)
    if value.get("field") not in _TICKET_FIELDS:
        raise RuleProblem(f"{path}.field", f"must be one of: {', '.join(_TICKET_FIELDS)}")
    [(op, operand)] = [(k, v) for k, v in value.items() if k not in ("destination", "field")]
    if op not in _TICKET_OPS:
        raise RuleProblem(path, f"unknown test {op!r}; one of: {', '.join(_TICKET_OPS)}")
    return _value_test(_Ticket, "ticket", f"{value['destination']}.{value['field']}", op, operand, path)


def _value_test(kind: type[_Attribute], label: str, name: str, op: str, operand: Any, path: str) -> Condition:
    where = f"{path}.{op}"
    if op == "equals":
        return kind(name, lambda v: v == operand, f"{label} {name} is {operand!r}", f"{label} {name} is not {operand!r}")
    if op == "in":
        if not isinstance(operand, list) or not operand:
            raise RuleProblem(where, "must be a non-empty list")
        options = list(operand)
        # `options.__contains__(v)` is `v in options`, without a Python call per evaluation.
        return kind(name, options.__contains__, f"{label} {name} in {options!r}", f"{label} {name} not in {options!r}")
    if op == "exists":
        if not isinstance(operand, bool):
            raise RuleProblem(where, "must be true or false")
        present, absent = f"{label} {name} exists", f"{label} {name} is missing"
        return kind(name, lambda v: (v is not _MISSING) is operand,
                    present if operand else absent, absent if operand else present)
    if op in ("gte", "lte"):
        if isinstance(operand, bool) or not isinstance(operand, int | float):
            raise RuleProblem(where, "must be a number")
        if op == "gte":
            def at_least(v: Any) -> bool:
                if type(v) is not int and type(v) is not float:  # the common case skips `_number`
                    v = _number(v)
                    if v is None:
                        return False
                return v >= operand

            return kind(name, at_least, f"{label} {name} >= {operand}", f"{label} {name} is not a number >= {operand}")

        def at_most(v: Any) -> bool:
            if type(v) is not int and type(v) is not float:
                v = _number(v)
                if v is None:
                    return False
            return v <= operand

        return kind(name, at_most, f"{label} {name} <= {operand}", f"{label} {name} is not a number <= {operand}")
    raise RuleProblem(path, f"unknown test {op!r}; one of: {', '.join(_ATTRIBUTE_OPS)}")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is _MISSING:
        return None
    if isinstance(value, int | float):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _tagged(value: Any, path: str, env: ConditionEnvironment) -> Condition:
    if not isinstance(value, str) or not value:
        raise RuleProblem(path, "must be a tag name")
    return _Tagged(value, f"tagged {value}", f"not tagged {value}")


def _repeat_contact(value: Any, path: str, env: ConditionEnvironment) -> Condition:
    from chalicelib.domain.activity import RECENT_LIMIT

    if not isinstance(value, dict) or set(value) != {"count", "within_hours"}:
        raise RuleProblem(path, "must be {count: <contacts>, within_hours: <hours>}")
    count, hours = value["count"], value["within_hours"]
    if isinstance(count, bool) or not isinstance(count, int) or not 2 <= count <= RECENT_LIMIT:
        raise RuleProblem(f"{path}.count", f"must be a whole number from 2 to {RECENT_LIMIT}")
    if isinstance(hours, bool) or not isinstance(hours, int | float) or hours <= 0:
        raise RuleProblem(f"{path}.within_hours", "must be a positive number of hours")
    return _RepeatContact(count, hours, f"{count} or more contacts within {hours:g} h",
                          f"fewer than {count} contacts within {hours:g} h")


def _case_age(value: Any, path: str, env: ConditionEnvironment) -> Condition:
    hours = value.get("over") if isinstance(value, dict) and set(value) == {"over"} else None
    if isinstance(hours, bool) or not isinstance(hours, int | float) or hours < 0:
        raise RuleProblem(path, "must be {over: <hours>}")
    return _CaseAge(hours, f"case older than {hours:g} h", f"case is not older than {hours:g} h")


def _sla_breached(value: Any, path: str, env: ConditionEnvironment) -> Condition:
    if not isinstance(value, bool):
        raise RuleProblem(path, "must be true or false")
    past, within = "case is past its SLA", "case is within its SLA"
    return _SlaBreached(env.sla_hours, value, past if value else within, within if value else past)


def _business_hours(value: Any, path: str, env: ConditionEnvironment) -> Condition:
    calendar_name, state = "default", value
    if isinstance(value, dict):
        if set(value) != {"calendar", "is"}:
            raise RuleProblem(path, "must be open, closed, or {calendar: <name>, is: open | closed}")
        calendar_name, state = value["calendar"], value["is"]
    if state not in ("open", "closed"):
        raise RuleProblem(path, "must be open or closed")
    calendar = env.calendars.get(calendar_name)
    if calendar is None:
        known = ", ".join(sorted(env.calendars)) or "none configured"
        raise RuleProblem(path, f"no calendar {calendar_name!r} in routing.calendars ({known})")
    inside, outside = f"within business hours ({calendar_name})", f"outside business hours ({calendar_name})"
    expect_open = state == "open"
    return _BusinessHours(calendar, expect_open, inside if expect_open else outside,
                          outside if expect_open else inside)


def _all(value: Any, path: str, env: ConditionEnvironment) -> Condition:
    return _All(_children(value, path, env))


def _any(value: Any, path: str, env: ConditionEnvironment) -> Condition:
    return _Any(_children(value, path, env))


def _not(value: Any, path: str, env: ConditionEnvironment) -> Condition:
    return _Not(parse_condition(value, path, env))


def _children(value: Any, path: str, env: ConditionEnvironment) -> list[Condition]:
    if not isinstance(value, list) or not value:
        raise RuleProblem(path, "must be a non-empty list of conditions")
    return [parse_condition(item, f"{path}[{index}]", env) for index, item in enumerate(value)]


_PARSERS: dict[str, Callable[[Any, str, ConditionEnvironment], Condition]] = {
    "channel": _one_of("channel", {c.value for c in Channel}),
    "provider": _one_of("provider"),
    "account": _one_of("account"),
    "language": _one_of("language"),
    "content_type": _one_of("content_type", {c.value for c in ContentType}),
    "intent": _intent,
    "urgent": _flag("urgent", attrgetter("urgent")),
    "new_customer": _flag("new_customer", attrgetter("new_customer")),
    "has_attachments": _flag("has_attachments", lambda ctx: ctx.attachments > 0),
    "sender_verified": _flag("sender_verified", attrgetter("sender_verified")),
    "text": _text("text"),
    "subject": _text("subject"),
    "attribute": _attribute,
    "ticket": _ticket,
    "tagged": _tagged,
    "repeat_contact": _repeat_contact,
    "case_age_hours": _case_age,
    "sla_breached": _sla_breached,
    "business_hours": _business_hours,
    "all": _all,
    "any": _any,
    "not": _not,
}
