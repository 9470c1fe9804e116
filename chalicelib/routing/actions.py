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


Step = Callable[[Draft], None]


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

        raised = {priority: _SCALE[min(index + by, len(_SCALE) - 1)] for index, priority in enumerate(_SCALE)}

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
    return tuple(steps)
