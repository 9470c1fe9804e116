"""`routing:` in the hub configuration: the default route, the rules, calendars, reply templates,
the SLA, and where the rules live.

Validated with the rest of the configuration when it is loaded, so a bad key stops start-up with
its exact path; the rules are compiled (conditions, references) only where contacts are routed
(`setup.py`), so the webhook Lambda never pays for compiling them.
"""

from typing import Any

from pydantic import Field, field_validator

from chalicelib.domain.defaults import empty_list
from chalicelib.domain.models import Priority
from chalicelib.domain.policies import Strict
from chalicelib.routing.calendar import CalendarSettings
from chalicelib.routing.replies import template_problems
from chalicelib.routing.specs import RuleSpec
from chalicelib.routing.sources import RulesSourceSettings


class DefaultRouteSettings(Strict):
    queue: str = "default"
    priority: Priority = Priority.NORMAL
    #: Destination names every contact goes to; omitted means all configured destinations.
    destinations: list[str] | None = None

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        return Priority.coerce(value)


class SlaSettings(Strict):
    #: A case older than this (since it opened) is past its SLA...
    hours: float = Field(default=24, gt=0)
    #: ...unless its priority has its own.
    by_priority: dict[Priority, float] = Field(default_factory=dict)

    @field_validator("by_priority", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        return {Priority.coerce(k): v for k, v in value.items()} if isinstance(value, dict) else value

    def hours_for(self, priority: Priority) -> float:
        return self.by_priority.get(priority, self.hours)


class RoutingSettings(Strict):
    default: DefaultRouteSettings = Field(default_factory=DefaultRouteSettings)
    #: Ordered rules (`routing/specs.py`, README "Routing rules"), their shape checked here and
    #: their conditions when compiled (`routing/rules.py`).
    rules: list[RuleSpec] = Field(default_factory=empty_list)
    #: Business-hours calendars by name; `default` is the one conditions use when they name none.
    calendars: dict[str, CalendarSettings] = Field(default_factory=dict)
    #: Auto-reply templates: name → language → text.
    templates: dict[str, dict[str, str]] = Field(default_factory=dict)
    default_language: str = "en"
    #: `{hours: 24, by_priority: {urgent: 4}}`: when an open case is past its SLA.
    sla: SlaSettings = Field(default_factory=SlaSettings)
    #: Where the rules live when not in this file: a file, S3, SSM or AppConfig (`routing/sources.py`).
    source: RulesSourceSettings = Field(default_factory=RulesSourceSettings)

    @field_validator("templates")
    @classmethod
    def _templates(cls, templates: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        from pydantic import ValidationError

        from chalicelib.config_sections import problem

        problems = template_problems(templates)
        if problems:
            raise ValidationError.from_exception_data(
                "templates", [problem(where, message) for where, message in problems])
        return templates
