"""The conditions of event rules: routing's customer conditions plus conditions on the event.

    event_type: "parcel.*"                       # or a list; `*`, `?` and `[...]` are wildcards
    event: {path: data.delay_hours, gte: 24}     # also equals, in, exists, lte, matches
    consent: {purpose: marketing, channel: sms}  # channel omitted: any channel allows it
    open_case: true | false | {topic: outage} | {tagged: outage} | {queue: logistics}
    selected: true                               # this rule's segment chose the customer (broadcast)

Shared with routing (same parsers, same explanations): `attribute`, `ticket`, `tagged`,
`repeat_contact`, `case_age_hours`, `sla_breached`, `business_hours`, `all`, `any`, `not`.
Conditions about an inbound contact (`channel`, `text`, `intent`, ...) are unknown here, and
`language` is `attribute: {name: language, ...}`: an event has no detected language.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from typing import Any

from chalicelib.domain import consent as consent_rules
from chalicelib.routing.conditions import (
    _MISSING,
    _PARSERS,
    Condition,
    ConditionEnvironment,
    RuleProblem,
    _Attribute,
    _value_test,
)
from chalicelib.routing.event_context import EVENT_ROOTS, EventContext

_WILDCARD = re.compile(r"[*?\[]")
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


def parse_event_path(value: Any, path: str) -> tuple[str, ...]:
    """`data.items.0.sku` as its segments; raises `RuleProblem` unless it starts at an event field."""
    if not isinstance(value, str) or not value:
        raise RuleProblem(path, f"must be a path into the event such as data.delay_hours (from: {', '.join(EVENT_ROOTS)})")
    parts = tuple(value.split("."))
    if parts[0] not in EVENT_ROOTS:
        raise RuleProblem(path, f"{value!r} must start with one of: {', '.join(EVENT_ROOTS)}")
    if parts[0] != "data" and len(parts) > 1:
        raise RuleProblem(path, f"{value!r}: only data has fields below it")
    bad = next((part for part in parts if not _PATH_SEGMENT.fullmatch(part)), None)
    if bad is not None:
        raise RuleProblem(path, f"{value!r}: each segment is letters, digits, '_' or '-' (a list index is a number)")
    return parts


def resolve_path(event: Mapping[str, Any], parts: tuple[str, ...]) -> Any:
    """The value at `parts` in the normalized event, `_MISSING` when any step is absent (a list
    step is a number: `data.items.0`)."""
    value: Any = event
    for part in parts:
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def event_value(ctx: EventContext, name: str, parts: tuple[str, ...]) -> Any:
    """The resolved path, looked up once per context however many rules name it."""
    value = ctx.paths.get(name, _MISSING)
    if value is _MISSING and name not in ctx.paths:
        value = ctx.paths[name] = resolve_path(ctx.event, parts)
    return value


class _EventType(Condition):
    __slots__ = ("names", "pattern")

    def __init__(self, names: frozenset[str], pattern: re.Pattern | None, statement: str, failure: str) -> None:
        super().__init__(statement, failure)
        self.names = names
        self.pattern = pattern

    def first_failure(self, ctx: EventContext) -> Condition | None:
        kind = ctx.event_type
        if kind in self.names or (self.pattern is not None and self.pattern.fullmatch(kind)):
            return None
        return self


class _EventPath(_Attribute):
    """A value in the event (`data.delay_hours`), tested like a customer attribute."""

    __slots__ = ("parts",)

    def __init__(self, name: str, test: Callable[[Any], bool], statement: str, failure: str) -> None:
        super().__init__(name, test, statement, failure)
        self.parts = tuple(name.split("."))

    def first_failure(self, ctx: EventContext) -> Condition | None:
        return None if self.test(event_value(ctx, self.name, self.parts)) else self


class _Consent(Condition):
    __slots__ = ("purpose", "channels")

    def __init__(self, purpose: str, channels: tuple[str, ...], statement: str, failure: str) -> None:
        super().__init__(statement, failure)
        self.purpose = purpose
        self.channels = channels

    def first_failure(self, ctx: EventContext) -> Condition | None:
        ledger, purpose = ctx.consent, self.purpose
        return None if any(consent_rules.allows(ledger, channel, purpose) for channel in self.channels) else self


class _OpenCase(Condition):
    __slots__ = ("test",)

    def __init__(self, test: Callable[[EventContext], bool], statement: str, failure: str) -> None:
        super().__init__(statement, failure)
        self.test = test

    def first_failure(self, ctx: EventContext) -> Condition | None:
        return None if self.test(ctx) else self


class _Selected(Condition):
    __slots__ = ("expected",)

    def __init__(self, expected: bool, statement: str, failure: str) -> None:
        super().__init__(statement, failure)
        self.expected = expected

    def first_failure(self, ctx: EventContext) -> Condition | None:
        return None if (ctx.rule in ctx.selected_by) is self.expected else self


# --- parsing ---------------------------------------------------------------------------------------


def _event_type(value: Any, path: str, env: ConditionEnvironment) -> Condition:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) and item for item in items):
        raise RuleProblem(path, "must be an event type (wildcards * and ?) or a list of them")
    names = frozenset(item for item in items if not _WILDCARD.search(item))
    patterns = sorted(item for item in items if _WILDCARD.search(item))
    # One compiled expression for all the patterns: a rule costs one match however many it lists.
    pattern = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)) if patterns else None
    listed = ", ".join(sorted(items))
    return _EventType(names, pattern, f"event_type matches [{listed}]", f"event_type does not match [{listed}]")


_EVENT_OPS = ("equals", "in", "exists", "gte", "lte", "matches")


def _event(value: Any, path: str, env: ConditionEnvironment) -> Condition:
    if not isinstance(value, dict) or "path" not in value or len(value) != 2:
        raise RuleProblem(path, f"must be {{path: data.<field>, <test>: ...}} with one test of: {', '.join(_EVENT_OPS)}")
    parts = parse_event_path(value["path"], f"{path}.path")
    name = ".".join(parts)
    [(op, operand)] = [(k, v) for k, v in value.items() if k != "path"]
    if op == "matches":
        if not isinstance(operand, str) or not operand:
            raise RuleProblem(f"{path}.matches", "must be a regular expression")
        try:
            search = re.compile(operand).search
        except re.error as exc:
            raise RuleProblem(f"{path}.matches", f"invalid regular expression: {exc}") from None

        def matches(v: Any) -> bool:
            return v is not _MISSING and v is not None and search(str(v)) is not None

        return _EventPath(name, matches, f"event {name} matches /{operand}/", f"event {name} does not match /{operand}/")
    if op not in _EVENT_OPS:
        raise RuleProblem(path, f"unknown test {op!r}; one of: {', '.join(_EVENT_OPS)}")
    return _value_test(_EventPath, "event", name, op, operand, path)


def _consent(value: Any, path: str, env: ConditionEnvironment) -> Condition:
    if not isinstance(value, dict) or "purpose" not in value or not set(value) <= {"purpose", "channel"}:
        raise RuleProblem(path, "must be {purpose: service | marketing} or {purpose: ..., channel: <channel>}")
    purpose = value["purpose"]
    if purpose not in consent_rules.PURPOSES:
        raise RuleProblem(f"{path}.purpose", f"must be one of: {', '.join(consent_rules.PURPOSES)}")
    if "channel" in value:
        try:
            channel = consent_rules.consent_channel(value["channel"])
        except ValueError as exc:
            raise RuleProblem(f"{path}.channel", str(exc)) from None
        return _Consent(purpose, (channel,), f"consent for {purpose} on {channel}", f"no consent for {purpose} on {channel}")
    return _Consent(purpose, consent_rules.CHANNELS, f"consent for {purpose} on some channel",
                    f"no consent for {purpose} on any channel")


_OPEN_CASE_FORMS = "true, false, {topic: <topic>}, {tagged: <tag>} or {queue: <queue>}"


def _open_case(value: Any, path: str, env: ConditionEnvironment) -> Condition:
    if isinstance(value, bool):
        if value:
            return _OpenCase(lambda ctx: ctx.open_case is not None, "an open case", "no open case")
        return _OpenCase(lambda ctx: ctx.open_case is None, "no open case", "an open case")
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("topic", "tagged", "queue"):
        raise RuleProblem(path, f"must be {_OPEN_CASE_FORMS}")
    [(key, wanted)] = value.items()
    if not isinstance(wanted, str) or not wanted:
        raise RuleProblem(f"{path}.{key}", "must be a non-empty name")
    if key == "topic":
        return _OpenCase(lambda ctx: ctx.open_case is not None and ctx.case_topic == wanted,
                         f"an open case on topic {wanted}", f"no open case on topic {wanted}")
    if key == "tagged":
        return _OpenCase(lambda ctx: ctx.open_case is not None and wanted in ctx.case_tags,
                         f"an open case tagged {wanted}", f"no open case tagged {wanted}")
    return _OpenCase(lambda ctx: ctx.open_case is not None and ctx.case_queue == wanted,
                     f"an open case in queue {wanted}", f"no open case in queue {wanted}")


def _selected(value: Any, path: str, env: ConditionEnvironment) -> Condition:
    if not isinstance(value, bool):
        raise RuleProblem(path, "must be true or false")
    chosen, addressed = "chosen by this rule's segment", "not chosen by this rule's segment"
    return _Selected(value, chosen if value else addressed, addressed if value else chosen)


_SHARED = ("attribute", "ticket", "tagged", "repeat_contact", "case_age_hours", "sla_breached", "business_hours",
           "all", "any", "not")

#: The event rule language's conditions, for `ConditionEnvironment(parsers=EVENT_PARSERS)`.
EVENT_PARSERS: dict[str, Callable[[Any, str, ConditionEnvironment], Condition]] = {
    **{name: _PARSERS[name] for name in _SHARED},
    "event_type": _event_type,
    "event": _event,
    "consent": _consent,
    "open_case": _open_case,
    "selected": _selected,
}

#: Conditions that read the event alone: a broadcast decides them before any customer is known.
EVENT_ONLY = (_EventType, _EventPath)
