"""Building the router from the configuration, and keeping it current when rules live on AWS.

The `routing:` section is validated with the rest of the configuration when it is loaded
(`routing/settings.py`); here the rules are compiled (conditions, and what they refer to:
calendars, templates, destinations), only in processes that route: the webhook Lambda reads the
same file and never pays for compiling rules it never runs. `hubctl check-config`, `make run` and
the deploy script compile at once, so a bad rule still fails before it reaches a customer's message.
"""

from __future__ import annotations

import logging
from typing import Callable

from chalicelib.errors import ConfigError
from chalicelib.hubconfig import HubConfig
from chalicelib.routing.calendar import Calendar
from chalicelib.routing.conditions import ConditionEnvironment
from chalicelib.routing.engine import DefaultRoute, Router
from chalicelib.routing.live import LiveRules, document_rules
from chalicelib.routing.replies import ReplyRenderer
from chalicelib.routing.rules import RuleEnvironment, RuleSet, compile_rules, parse_rule_specs
from chalicelib.routing.sources import RulesDocument, RulesSource, RulesUnavailableError

logger = logging.getLogger(__name__)


class RouterFactory:
    """Compiles rule sets for one configuration: the inline rules, or a fetched document's."""

    def __init__(self, config: HubConfig) -> None:
        extras = self.settings = config.routing
        self._calendars = {name: Calendar(settings) for name, settings in extras.calendars.items()}
        default = extras.default
        self._default = DefaultRoute(default.queue, default.priority, tuple(config.default_destinations()))
        self._env = RuleEnvironment(
            conditions=ConditionEnvironment(calendars=self._calendars, sla_hours=extras.sla.hours_for),
            templates=frozenset(extras.templates),
            destinations=frozenset(d.name for d in config.destinations),
        )
        self._replies = ReplyRenderer(extras.templates, self._calendars, extras.default_language)
        self.inline = self.router(compile_rules(list(extras.rules), self._env))

    def router(self, rules: RuleSet) -> Router:
        return Router(rules, self._default, self._replies)

    def from_document(self, document: RulesDocument, *, where: str) -> Router:
        """A router for a fetched rules document (YAML or JSON: a list of rules, or {rules: [...]}).
        Raises `ConfigError` naming `where` and the offending rule."""
        data = document_rules(document, where=where)
        specs = parse_rule_specs(data, where=f"{where} rules")
        return self.router(compile_rules(specs, self._env, version=document.version, where=f"{where} rules"))


def check_rules_file(factory: RouterFactory, source: RulesSource) -> Router | None:
    """Strictly compile a `file` source's document now (start-up, `hubctl check-config`): a rules
    file ships with the configuration, so an error in it must stop the start like one in the
    configuration. Other sources are checked when fetched. Raises `ConfigError`."""
    from chalicelib.routing.sources import FileRulesSource

    if not isinstance(source, FileRulesSource):
        return None
    try:
        document = source.current()
    except RulesUnavailableError as exc:
        raise ConfigError(exc.message) from None
    return factory.from_document(document, where=source.describe)


class LiveRouter(LiveRules[Router]):
    """The router in force: the inline rules, or the source's current document (`routing/live.py`)."""

    def __init__(self, factory: RouterFactory, source: RulesSource, *, describe: str,
                 on_rejected: Callable[[str], None] = lambda reason: None) -> None:
        super().__init__(factory, source, describe=describe, kind="routing", on_rejected=on_rejected)


