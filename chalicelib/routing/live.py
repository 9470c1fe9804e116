"""Rules that live in a source (a file, S3, SSM, AppConfig) and are recompiled when it changes.

Routing and business events both keep their rules this way: the inline rules of the configuration
file, or the source's current document, compiled once per version. A document that does not
compile is reported once per version and the previous rules stay in force, so a typo in S3 cannot
stop routing or outreach; with no good document yet (the source unreachable, or only bad versions)
the inline rules apply.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import yaml

from chalicelib.errors import ConfigError
from chalicelib.routing.sources import RulesDocument, RulesSource, RulesUnavailableError

logger = logging.getLogger(__name__)

Compiled = TypeVar("Compiled")


def document_rules(document: RulesDocument, *, where: str) -> list:
    """The raw rules of a fetched document (YAML or JSON: a list of rules, or `{rules: [...]}`),
    not yet validated. Raises `ConfigError` naming `where`."""
    try:
        data = yaml.safe_load(document.text) if document.text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML or JSON: {str(exc).splitlines()[0]}") from None
    if isinstance(data, dict) and set(data) == {"rules"}:
        data = data["rules"]
    if not isinstance(data, list):
        raise ConfigError(f"{where}: must be a list of rules, or a mapping with only a `rules` list")
    return data


class RulesFactory(Protocol[Compiled]):
    """What a live holder needs from a factory: the inline rules and a compiler for documents."""

    @property
    def inline(self) -> Compiled: ...

    def from_document(self, document: RulesDocument, *, where: str) -> Compiled: ...


class LiveRules(Generic[Compiled]):
    """The compiled rules in force for one source. `kind` names them in the log (`routing`,
    `event`); `on_rejected` hears of each rejected version (the hub counts them)."""

    def __init__(self, factory: RulesFactory[Compiled], source: RulesSource, *, describe: str, kind: str,
                 on_rejected: Callable[[str], None] = lambda reason: None) -> None:
        self._factory = factory
        self._source = source
        self._describe = describe
        self._kind = kind
        self._on_rejected = on_rejected
        self._lock = threading.Lock()
        self._document: RulesDocument | None = None
        self._compiled: Compiled | None = None
        self._rejected: str | None = None

    def current(self) -> Compiled:
        try:
            document = self._source.current()
        except RulesUnavailableError:
            return self._factory.inline  # the source logged why
        if document is None:
            return self._factory.inline
        with self._lock:
            if document is self._document or document.version == self._rejected:
                return self._compiled or self._factory.inline
            try:
                compiled = self._factory.from_document(document, where=self._describe)
            except ConfigError as exc:
                self._rejected = document.version
                logger.error("%s rules version %s from %s rejected; %s stay in force: %s", self._kind, document.version,
                             self._describe, "the previous rules" if self._compiled else "the inline rules",
                             exc.message)
                self._on_rejected(exc.message)
                return self._compiled or self._factory.inline
            self._document, self._compiled, self._rejected = document, compiled, None
            logger.info("%s rules version %s in force (%d rules)", self._kind, document.version,
                        len(compiled.rules.rules))
            return compiled
