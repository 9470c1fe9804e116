"""Automatic reply texts (acknowledgement, out of hours) in the customer's language.

    routing:
      templates:
        out_of_hours:
          de: "Hallo {name}, wir sind ab {next_opening} wieder für Sie da."
          en: "Hi {name}, we are back at {next_opening}."

The language is the contact's detected language when the template has it, else the customer's
`language` attribute, else `routing.default_language`, else the template's first language.
Placeholders: `{name}` (the customer's name, empty when unknown), `{next_opening}` (when the
reply's calendar opens next, in the calendar's time zone) and `{queue}`.
"""

from __future__ import annotations

import re
import string
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chalicelib.domain.stored import ReplyIntent

PLACEHOLDERS = frozenset({"name", "next_opening", "queue"})


def template_problems(templates: dict[str, dict[str, str]]) -> list[tuple[tuple[str, ...], str]]:
    """Problems with the templates, each with its place (`<name>`, `<language>`) under `templates`."""
    problems: list[tuple[tuple[str, ...], str]] = []
    for name, texts in templates.items():
        if not texts:
            problems.append(((name,), "needs at least one language"))
        for language, text in texts.items():
            try:
                fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
            except ValueError as exc:
                problems.append(((name, language), str(exc)))
                continue
            unknown = sorted(fields - PLACEHOLDERS)
            if unknown:
                problems.append(((name, language), f"unknown placeholder {{{unknown[0]}}}; "
                                f"known: {', '.join('{' + p + '}' for p in sorted(PLACEHOLDERS))}"))
    return problems


class ReplyRenderer:
    def __init__(self, templates: dict[str, dict[str, str]], calendars: dict[str, Any], default_language: str) -> None:
        self._templates = templates
        self._calendars = calendars
        self._default_language = default_language

    def render(self, *, rule: str, template: str, calendar: str | None, language: str | None,
               attributes: dict[str, Any], queue: str, now: datetime) -> ReplyIntent:
        texts = self._templates[template]
        chosen = next(
            (code for code in (language, attributes.get("language"), self._default_language) if code in texts),
            next(iter(texts)),
        )
        from chalicelib.domain.stored import ReplyIntent  # configuration checks import this module; the workers render

        values = {"name": attributes.get("name") or "", "queue": queue,
                  "next_opening": self._next_opening(calendar, now)}
        return ReplyIntent(rule=rule, template=template, language=chosen, text=_tidy(texts[chosen].format_map(values)))

    def _next_opening(self, name: str | None, now: datetime) -> str:
        calendar = self._calendars.get(name or "default")
        if calendar is None:
            return ""
        opening = calendar.next_opening(now)
        if opening is None:
            return ""
        local = opening.astimezone(calendar.timezone)
        return f"{local:%Y-%m-%d %H:%M} ({calendar.timezone.key})"


def _tidy(text: str) -> str:
    """An empty placeholder leaves no gap: "Hallo {name}, …" without a name reads "Hallo, …"."""
    return re.sub(r" {2,}", " ", re.sub(r"\s+([,.!?;:])", r"\1", text)).strip()
