"""Rule actions, compiled to the few steps each rule really takes.

A rule that only adds a tag costs one call when it matches, not a check of every possible action:
with hundreds of rules and dozens matching, that is most of the routing time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from chalicelib.domain.models import Priority
from chalicelib.routing.context import RoutingContext

_SCALE = sorted(Priority)


@dataclass(slots=True)
class Draft:
    """The decision while rules run; priority and tags live on the context (rules test them)."""

    ctx: RoutingContext
    queue: str
    destinations: list[str]
    skills: dict[str, int] = field(default_factory=dict)
    #: (rule name, reply spec) in order; rendered once the evaluation is over.
    replies: list[tuple[str, object]] = field(default_factory=list)
    parked: str | None = None
    suppressed: str | None = None
    #: Hours until the case's follow-up is due (`then: {follow_up_hours: 48}`), None: no follow-up.
    follow_up_hours: float | None = None


Step = Callable[[Draft], None]


def raised_by(steps: int) -> dict[Priority, Priority]:
    """Each priority raised by `steps`, capped at the highest."""
    return {priority: _SCALE[min(index + steps, len(_SCALE) - 1)] for index, priority in enumerate(_SCALE)}


def action_lines(actions, rule: str, bind: Callable[[object], str]) -> list[str]:
    """The steps of `compile_actions` as Python statements over `c` (the context) and `draft`,
    for a plan written out as one function (`routing/program.py`); `bind` names a value the
    statements use. Same steps, same order: the routing equivalence test runs both."""
    lines: list[str] = []
    if actions.priority is not None:
        lines.append(f"c.priority = {bind(actions.priority)}")
    if actions.escalate:
        lines.append(f"c.priority = {bind(raised_by(actions.escalate))}[c.priority]")
    if actions.queue is not None:
        lines.append(f"draft.queue = {bind(actions.queue)}")
    for skill, level in actions.skills.items():
        lines.append(f"if {bind(level)} > draft.skills.get({bind(skill)}, 0): draft.skills[{bind(skill)}] = {bind(level)}")
    for tag in actions.tags:
        lines.append(f"if {bind(tag)} not in c.tags: c.tags.append({bind(tag)})")
    if actions.destinations is not None:
        lines.append(f"draft.destinations = list({bind(tuple(actions.destinations))})")
    for name in actions.add_destinations:
        lines.append(f"if {bind(name)} not in draft.destinations: draft.destinations.append({bind(name)})")
    if actions.reply is not None:
        lines.append(f"draft.replies.append({bind((rule, actions.reply))})")
    if actions.park is not None:
        lines.append(f"draft.parked = {bind(f'{actions.park} (rule {rule})')}")
    if actions.suppress is not None:
        lines.append(f"draft.suppressed = {bind(f'{actions.suppress} (rule {rule})')}")
    if actions.follow_up_hours is not None:
        lines.append(f"draft.follow_up_hours = {bind(actions.follow_up_hours)}")
    return lines


def compile_actions(actions, rule: str) -> tuple[Step, ...]:
    """The steps of an `ActionSpec`, in the order they apply."""
    steps: list[Step] = []
    if actions.priority is not None:
        priority = actions.priority

        def set_priority(draft: Draft) -> None:
            draft.ctx.priority = priority

        steps.append(set_priority)
    if actions.escalate:
        by = actions.escalate

        raised = raised_by(by)

        def escalate(draft: Draft) -> None:
            draft.ctx.priority = raised[draft.ctx.priority]

        steps.append(escalate)
    if actions.queue is not None:
        queue = actions.queue

        def set_queue(draft: Draft) -> None:
            draft.queue = queue

        steps.append(set_queue)
    if actions.skills:
        skills = tuple(actions.skills.items())

        def add_skills(draft: Draft) -> None:
            for skill, level in skills:
                if level > draft.skills.get(skill, 0):
                    draft.skills[skill] = level

        steps.append(add_skills)
    if actions.tags:
        tags = tuple(actions.tags)

        def add_tags(draft: Draft) -> None:
            current = draft.ctx.tags
            for tag in tags:
                if tag not in current:
                    current.append(tag)

        steps.append(add_tags)
    if actions.destinations is not None:
        destinations = tuple(actions.destinations)

        def set_destinations(draft: Draft) -> None:
            draft.destinations = list(destinations)

        steps.append(set_destinations)
    if actions.add_destinations:
        extra = tuple(actions.add_destinations)

        def add_destinations(draft: Draft) -> None:
            for name in extra:
                if name not in draft.destinations:
                    draft.destinations.append(name)

        steps.append(add_destinations)
    if actions.reply is not None:
        reply = (rule, actions.reply)

        def ask_reply(draft: Draft) -> None:
            draft.replies.append(reply)

        steps.append(ask_reply)
    if actions.park is not None:
        parked = f"{actions.park} (rule {rule})"

        def park(draft: Draft) -> None:
            draft.parked = parked

        steps.append(park)
    if actions.suppress is not None:
        suppressed = f"{actions.suppress} (rule {rule})"

        def suppress(draft: Draft) -> None:
            draft.suppressed = suppressed

        steps.append(suppress)
    if actions.follow_up_hours is not None:
        hours = actions.follow_up_hours

        def follow_up(draft: Draft) -> None:
            draft.follow_up_hours = hours

        steps.append(follow_up)
    return tuple(steps)
