"""Building the event rules engine from the configuration, and keeping it current when the rules
live in their own source (`events.source`, like `routing.source`).

Only the events worker (and explain) compiles event rules; `hubctl check-config` and the embedded
runtime's start call `check_event_config`, so a bad rule fails before an event reaches it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chalicelib.errors import ConfigError
from chalicelib.hubconfig import HubConfig
from chalicelib.routing.conditions import ConditionEnvironment
from chalicelib.routing.event_conditions import EVENT_PARSERS
from chalicelib.routing.event_rules import (
    EventEngine,
    EventRuleEnvironment,
    EventRuleSet,
    compile_event_rules,
    parse_event_rule_specs,
)
from chalicelib.routing.event_templates import EventTemplates
from chalicelib.routing.live import LiveRules, document_rules
from chalicelib.routing.sources import RulesDocument, RulesSource, RulesUnavailableError

logger = logging.getLogger(__name__)


class EventRulesFactory:
    """Compiles event rule sets for one configuration: the inline rules, or a fetched document's.
    The conditions share routing's calendars and SLA."""

    def __init__(self, config: HubConfig) -> None:
        from chalicelib.routing.calendar import Calendar

        self.settings = config.events
        routing = config.routing
        self.calendars = {name: Calendar(settings) for name, settings in routing.calendars.items()}
        indexed = getattr(config.customers, "indexed_attributes", None)
        self._env = EventRuleEnvironment(
            conditions=ConditionEnvironment(calendars=self.calendars, sla_hours=routing.sla.hours_for,
                                            parsers=EVENT_PARSERS),
            templates=frozenset(self.settings.templates),
            destinations=frozenset(d.name for d in config.destinations),
            indexed_attributes=frozenset(indexed) if indexed is not None else None,
        )
        self.templates = EventTemplates(self.settings.templates, routing.default_language)
        self.inline = EventEngine(compile_event_rules(self.settings.rules, self._env))

    def engine(self, rules: EventRuleSet) -> EventEngine:
        return EventEngine(rules)

    def from_document(self, document: RulesDocument, *, where: str) -> EventEngine:
        """An engine for a fetched event rules document (YAML or JSON: a list of rules, or
        {rules: [...]}). Raises `ConfigError` naming `where` and the offending rule."""
        data = document_rules(document, where=where)
        specs = parse_event_rule_specs(data, where=f"{where} rules")
        return EventEngine(compile_event_rules(specs, self._env, version=document.version, where=f"{where} rules"))


def event_rules_source(config: HubConfig, client_for: Callable[[str], Any], *,
                       base_dir: Path | None = None) -> RulesSource:
    """Where the event rules in force come from (`events.source`): the configuration file, a
    rules file, S3, SSM or AppConfig, through routing's sources."""
    from chalicelib.routing.sources import rules_source

    return rules_source(config.events.source, client_for, base_dir=base_dir)


def check_event_rules_file(factory: EventRulesFactory, source: RulesSource) -> EventEngine | None:
    """Strictly compile a `file` source's event rules now (start-up, `hubctl check-config`).
    Other sources are checked when fetched. Raises `ConfigError`."""
    from chalicelib.routing.sources import FileRulesSource

    if not isinstance(source, FileRulesSource):
        return None
    try:
        document = source.current()
    except RulesUnavailableError as exc:
        raise ConfigError(exc.message) from None
    return factory.from_document(document, where=source.describe)


def check_event_config(config: HubConfig, *, base_dir: Path | None = None,
                       client_for: Callable[[str], Any] = lambda service: None) -> str:
    """Type `events:` and compile its rules (and a rules file's) now; what the rules in force
    are, in words (`3 inline`, `5 in event-rules.yaml`). Raises `ConfigError` naming each problem's
    path. For `hubctl check-config` and the embedded runtime's start."""
    factory = EventRulesFactory(config)
    source_settings = config.events.source
    described = f"{len(factory.inline.rules.rules)} inline"
    if source_settings.type == "file":
        checked = check_event_rules_file(factory, event_rules_source(config, client_for, base_dir=base_dir))
        described = f"{len(checked.rules.rules)} in {source_settings.path}"
    elif source_settings.type != "inline":
        described += f"; in force: the {source_settings.type} source's (checked when fetched)"
    return described


class LiveEventRules(LiveRules[EventEngine]):
    """The event rules in force: the inline rules, or the source's current document
    (`routing/live.py`)."""

    def __init__(self, factory: EventRulesFactory, source: RulesSource, *, describe: str,
                 on_rejected: Callable[[str], None] = lambda reason: None) -> None:
        super().__init__(factory, source, describe=describe, kind="event", on_rejected=on_rejected)
