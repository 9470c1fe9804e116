"""Proactive message texts, rendered from the event in the customer's language.

    events:
      templates:
        parcel_late:
          text: {de: "Ihr Paket {data.parcel_id} kommt {data.delay_hours} Stunden später.", en: "..."}
          subject: {de: "Ihr Paket verspätet sich"}
          channels: {sms: {de: "Paket {data.parcel_id}: +{data.delay_hours} h"}}   # optional, per channel
          whatsapp: {name: parcel_delay, language: de, parameters: ["{data.parcel_id}", "{data.delay_hours}"]}

Placeholders are paths into the event (`{data.parcel_id}`, `{data.items.0.sku}`, `{type}`,
`{id}`, `{source}`, `{occurred_at}`) and `{name}`, the customer's name (empty when unknown).
`{{` and `}}` write braces. The configuration check refuses unknown placeholders; an event
that lacks a path a template names gets `TemplateValueMissingError` naming template, language
and path, rather than a message with a hole in it.

The language is the one asked for when the template has it, else the customer's `language`
attribute, else `routing.default_language`, else the template's first language. The WhatsApp
entry is the approved template sent outside the 24-hour window (`TemplateMessage`).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from chalicelib.domain.values import Value
from chalicelib.errors import UnsendableMessageError
from chalicelib.routing.conditions import _MISSING, RuleProblem
from chalicelib.routing.event_conditions import parse_event_path, resolve_path
from chalicelib.routing.event_context import normalized_event
from chalicelib.routing.replies import _tidy

#: Placeholders that are not event paths.
CUSTOMER_PLACEHOLDERS = frozenset({"name"})


class TemplateValueMissingError(UnsendableMessageError):
    """The event lacks a value a template needs; `detail.fields` names template, language and path."""

    code = "template_value_missing"


class RenderedTemplate(Value):
    template: str
    language: str
    text: str
    subject: str | None = None
    #: The WhatsApp template with its parameters filled (`domain.outbound.TemplateMessage`), or None.
    whatsapp: Any = None


def placeholders(text: str) -> list[str]:
    """The placeholders of `text`, in order. Raises ValueError for a malformed text (a lone `{`)
    and for a format specification or conversion (`{data.x:>5}`, `{data.x!r}`): values are text."""
    found = []
    for _, field, spec, conversion in string.Formatter().parse(text):
        if field is None:
            continue
        if spec or conversion:
            raise ValueError(f"unknown placeholder {{{field}{'!' + conversion if conversion else ''}"
                             f"{':' + spec if spec else ''}}}: no conversions or formats")
        found.append(field)
    return found


def template_problems(name: str, template: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems of one template (an `EventTemplate` from `routing/event_settings.py`), each with
    its place below `events.templates.<name>`."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    texts: list[tuple[tuple[str | int, ...], str]] = [(("text", lang), t) for lang, t in template.text.items()]
    texts += [(("subject", lang), t) for lang, t in template.subject.items()]
    texts += [(("channels", channel, lang), t) for channel, by_language in template.channels.items()
              for lang, t in by_language.items()]
    if template.whatsapp is not None:
        texts += [(("whatsapp", "parameters", index), t) for index, t in enumerate(template.whatsapp.parameters)]
    for where, text in texts:
        try:
            fields = placeholders(text)
        except ValueError as exc:
            hint = " (write {{ and }} for braces)" if "encountered" in str(exc) else ""
            problems.append((where, f"{exc}{hint}"))
            continue
        for field in fields:
            problem = _placeholder_problem(field)
            if problem is not None:
                problems.append((where, problem))
                break
    return problems


def _placeholder_problem(field: str) -> str | None:
    if field in CUSTOMER_PLACEHOLDERS:
        return None
    if not field:
        return "an empty placeholder {}; name a path such as {data.region}"
    try:
        parse_event_path(field, "")
    except RuleProblem as problem:
        return f"unknown placeholder {{{field}}}: {problem.message}; or {{name}}"
    return None


class EventTemplates:
    """The configured templates (`events.templates`), rendered for one event and customer."""

    def __init__(self, templates: Mapping[str, Any], default_language: str | None = None) -> None:
        self._templates = templates
        self._default_language = default_language

    def __contains__(self, name: str) -> bool:
        return name in self._templates

    def render(self, name: str, event: Any, *, language: str | None = None, channel: str | None = None,
               attributes: Mapping[str, Any] | None = None) -> RenderedTemplate:
        """The template `name` for `event` (a `BusinessEvent` or its normalized mapping), in the
        best language; the text is the channel's own when the template has one. Raises KeyError
        for an unknown template and `TemplateValueMissingError` for a path the event lacks."""
        template = self._templates[name]
        attributes = attributes or {}
        normalized = event if _is_normalized(event) else normalized_event(event)
        chosen = self._language(template.text, language, attributes)
        values = _Values(name, chosen, normalized, attributes)
        by_channel = template.channels.get(channel) if channel is not None else None
        texts = by_channel if by_channel else template.text
        text = values.fill("text", _in_language(texts, chosen))
        subject = None
        if template.subject:
            subject = values.fill("subject", _in_language(template.subject, chosen))
        whatsapp = None
        if template.whatsapp is not None:
            from chalicelib.domain.outbound import (
                TemplateMessage,  # the worker renders; configuration checks do not
            )

            spec = template.whatsapp
            whatsapp = TemplateMessage(name=spec.name, language=spec.language,
                                       parameters=[values.fill(f"whatsapp.parameters[{i}]", p)
                                                   for i, p in enumerate(spec.parameters)])
        return RenderedTemplate(template=name, language=chosen, text=text, subject=subject, whatsapp=whatsapp)

    def _language(self, texts: Mapping[str, str], language: str | None, attributes: Mapping[str, Any]) -> str:
        for code in (language, attributes.get("language"), self._default_language):
            if isinstance(code, str) and code in texts:
                return code
        return next(iter(texts))


def _in_language(texts: Mapping[str, str], language: str) -> str:
    return texts[language] if language in texts else next(iter(texts.values()))


def _is_normalized(event: Any) -> bool:
    return isinstance(event, Mapping) and set(event) == {"type", "id", "source", "occurred_at", "data"}


class _Values:
    """Fills one template's texts; names the template, language and path of a missing value."""

    def __init__(self, template: str, language: str, event: Mapping[str, Any], attributes: Mapping[str, Any]) -> None:
        self.template = template
        self.language = language
        self.event = event
        self.attributes = attributes

    def fill(self, where: str, text: str) -> str:
        out: list[str] = []
        for literal, field, _spec, _conversion in string.Formatter().parse(text):
            out.append(literal)
            if field is not None:
                out.append(self._value(where, field))
        return _tidy("".join(out))

    def _value(self, where: str, field: str) -> str:
        if field == "name":
            return str(self.attributes.get("name") or "")
        value = resolve_path(self.event, tuple(field.split(".")))
        if value is _MISSING or value is None or isinstance(value, dict | list):
            what = "has no value at" if value is _MISSING or value is None else "has an object or list at"
            message = f"template {self.template} ({self.language}) {where}: the event {what} {{{field}}}"
            raise TemplateValueMissingError(
                message, detail={"fields": {f"events.templates.{self.template}.{where}": f"no value at {field}"}})
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value)
