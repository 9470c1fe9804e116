"""`events:` in the hub configuration: business event rules, message templates and the guards on
proactive messages (quiet hours, frequency caps, suppression while a case is open).

    events:
      source: {type: file, path: event-rules.yaml}      # optional, like routing.source
      templates: {outage_notice: {text: {de: "...", en: "..."}, whatsapp: {...}}}
      quiet_hours: {calendar: default, purposes: [marketing]}
      frequency_caps: {marketing: {count: 2, per_hours: 168}}
      suppress_when_open_case: {purposes: [service, marketing]}
      fanout_page_size: 100
      rules: [...]                                       # routing/event_specs.py
      eventbridge: {bus: orders, pattern: {source: [shop.orders]}}

Only the functions that handle events need this section, so `HubConfig` keeps it as written and
types it on first use (`HubConfig.events`); `hubctl check-config` and the embedded runtime's
start type it at once, so a mistake still stops a start, not an event.
"""

# No `from __future__ import annotations`: pydantic evaluates string annotations per model.

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from chalicelib.domain.defaults import empty_list
from chalicelib.domain.policies import Strict
from chalicelib.routing.event_specs import NOTIFY_CHANNELS, EventRuleSpec
from chalicelib.routing.sources import RulesSourceSettings

Purpose = Literal["service", "marketing"]


class WhatsAppTemplateSpec(Strict):
    """The approved WhatsApp template sent outside the 24-hour service window."""

    name: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=2, max_length=15)
    #: The body's positional parameters ({{1}}, {{2}}…), each a text with placeholders.
    parameters: list[str] = Field(default_factory=empty_list)


class EventTemplate(Strict):
    """One proactive message: the text per language, optionally a subject (email), a shorter text
    per channel (sms) and the WhatsApp template (`routing/event_templates.py`)."""

    text: dict[str, str] = Field(min_length=1)
    subject: dict[str, str] = Field(default_factory=dict)
    #: Channel → language → text, used instead of `text` on that channel.
    channels: dict[str, dict[str, str]] = Field(default_factory=dict)
    whatsapp: WhatsAppTemplateSpec | None = None

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, channels: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for channel, texts in channels.items():
            if channel not in NOTIFY_CHANNELS or channel in ("preferred", "reply"):
                raise ValueError(f"unknown channel {channel!r}")
            if not texts:
                raise ValueError(f"{channel}: needs at least one language")
        return channels


class QuietHoursSettings(Strict):
    #: A calendar of `routing.calendars`: messages of the purposes below wait until it opens.
    #: None: no quiet hours (rules may still name a calendar in `notify.quiet_hours`).
    calendar: str | None = None
    purposes: list[Purpose] = Field(default_factory=lambda: ["marketing"])


class FrequencyCap(Strict):
    #: At most this many messages of the purpose...
    count: int = Field(ge=1, le=1000)
    #: ...within this many hours, per customer.
    per_hours: float = Field(gt=0, le=24 * 366)


class SuppressionSettings(Strict):
    #: No message of these purposes while the customer's open case has the message's topic.
    purposes: list[Purpose] = Field(default_factory=lambda: ["service", "marketing"])


class EventBridgeSettings(Strict):
    """Business events from an EventBridge bus (`hubctl event setup-eventbridge`)."""

    bus: str = Field(min_length=1, max_length=256)
    #: The EventBridge event pattern that selects the events to deliver.
    pattern: dict[str, Any] = Field(min_length=1)


class EventSettings(Strict):
    #: Where the event rules live when not in this file (like `routing.source`).
    source: RulesSourceSettings = Field(default_factory=RulesSourceSettings)
    templates: dict[str, EventTemplate] = Field(default_factory=dict)
    quiet_hours: QuietHoursSettings = Field(default_factory=QuietHoursSettings)
    frequency_caps: dict[Purpose, FrequencyCap] = Field(default_factory=dict)
    suppress_when_open_case: SuppressionSettings = Field(default_factory=SuppressionSettings)
    #: Customers per fan-out page of a broadcast: one queue message and one index query each.
    fanout_page_size: int = Field(default=100, ge=1, le=1000)
    rules: list[EventRuleSpec] = Field(default_factory=empty_list)
    eventbridge: EventBridgeSettings | None = None

    @model_validator(mode="after")
    def _templates(self) -> "EventSettings":
        from pydantic import ValidationError

        from chalicelib.config_sections import problem
        from chalicelib.routing.event_templates import template_problems

        problems = [problem(("templates", name, *where), message)
                    for name, template in self.templates.items()
                    for where, message in template_problems(name, template)]
        if problems:
            raise ValidationError.from_exception_data("EventSettings", problems)
        return self

    def reference_problems(self, *, calendars: set[str] | frozenset[str], destinations: set[str] | frozenset[str],
                           indexed_attributes: Any = None) -> list[str]:
        """What the section names that the rest of the configuration lacks (calendars,
        destinations, templates, indexed attributes), each with its path below `events`."""
        from chalicelib.routing.event_rules import action_reference_problems

        problems = []
        if self.quiet_hours.calendar is not None and self.quiet_hours.calendar not in calendars:
            problems.append(f"events.quiet_hours.calendar: no calendar {self.quiet_hours.calendar!r} in "
                            f"routing.calendars ({', '.join(sorted(calendars)) or 'none configured'})")
        for index, rule in enumerate(self.rules):
            label = f"events.rules[{index}] ({rule.name})"
            problems += [f"{label}.{p}" for p in action_reference_problems(
                rule, templates=frozenset(self.templates), calendars=frozenset(calendars),
                destinations=frozenset(destinations), indexed_attributes=indexed_attributes)]
        return problems
