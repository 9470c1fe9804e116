"""The shape of a routing rule in the configuration (`routing.rules[...]`): pydantic only.

Every function types `routing:` when it loads the configuration, and most never route a contact;
so the rule specs live apart from the compiler (`rules.py`, with conditions, actions and their
context), which only the functions that route import.
"""

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.domain.defaults import empty_list
from chalicelib.domain.models import Priority

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReplySpec(_Strict):
    #: A template name from `routing.templates`.
    template: str
    #: The calendar whose next opening `{next_opening}` names (default: `default`, when configured).
    calendar: str | None = None


class ActionSpec(_Strict):
    """What a matching rule does. Every field is optional; absent ones leave the decision alone."""

    #: Set the priority (low < normal < high < urgent).
    priority: Priority | None = None
    #: Raise the priority by this many steps (capped at urgent): escalation for repeat contacts.
    escalate: int = Field(default=0, ge=0, le=3)
    queue: str | None = None
    #: Skill → required proficiency 1-5; several rules' skills combine (the higher level wins).
    skills: dict[str, int] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=empty_list)
    #: Replace the destinations the contact goes to...
    destinations: list[str] | None = None
    #: ...or add to them.
    add_destinations: list[str] = Field(default_factory=empty_list)
    #: Reply automatically through the originating channel (recorded on the decision).
    reply: ReplySpec | None = None
    #: Park the contact in the exception queue for manual handling, with this reason.
    park: str | None = None
    #: Deliver nothing (spam, auto-replies), with this reason.
    suppress: str | None = None
    #: Ask for a follow-up on the case this many hours from now (a `case.follow_up_due` timer);
    #: a later matching rule's value replaces an earlier one's.
    follow_up_hours: float | None = Field(default=None, gt=0, le=24 * 365)

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_by_name(cls, value: Any) -> Any:
        return Priority.coerce(value)

    @field_validator("reply", mode="before")
    @classmethod
    def _reply_shorthand(cls, value: Any) -> Any:
        return {"template": value} if isinstance(value, str) else value

    @field_validator("skills")
    @classmethod
    def _levels(cls, skills: dict[str, int]) -> dict[str, int]:
        for skill, level in skills.items():
            if not 1 <= level <= 5:
                raise ValueError(f"{skill}: proficiency must be 1-5")
        return skills


class RuleSpec(_Strict):
    name: str
    description: str | None = None
    enabled: bool = True
    #: Conditions (a one-key mapping, or a list meaning all of them); omitted: always matches.
    when: Any = None
    then: ActionSpec = Field(default_factory=ActionSpec)
    stop: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("must be 1-64 letters, digits, '_', '.' or '-'")
        return value
