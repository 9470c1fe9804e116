"""Event templates: text and subject per language from `{data.x}` paths, the per-channel text, the
WhatsApp TemplateMessage, clear errors for missing values and unknown placeholders."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chalicelib.domain.outbound import TemplateMessage
from chalicelib.errors import ConfigError
from chalicelib.hubconfig import parse_config
from chalicelib.routing.event_templates import EventTemplates, TemplateValueMissingError

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)

CONFIG = """
events:
  templates:
    parcel_late:
      text:
        de: "Hallo {name}, Ihr Paket {data.parcel.id} kommt {data.delay_hours} Stunden später."
        en: "Hi {name}, parcel {data.parcel.id} is {data.delay_hours} hours late."
      subject: {de: "Paket {data.parcel.id} verspätet", en: "Parcel {data.parcel.id} delayed"}
      channels: {sms: {de: "Paket {data.parcel.id}: +{data.delay_hours} h"}}
      whatsapp: {name: parcel_delay, language: de, parameters: ["{data.parcel.id}", "{data.delay_hours}"]}
    braces:
      text: {en: "{{literal}} {type} {id} from {source}, first item {data.items.0}"}
"""


def templates(default_language: str = "en") -> EventTemplates:
    return EventTemplates(parse_config(CONFIG).events.templates, default_language)


def event(data: dict) -> dict:
    return {"type": "parcel.delayed", "id": "evt-9", "source": "api:shop", "occurred_at": NOW, "data": data}


DATA = {"parcel": {"id": "P-77"}, "delay_hours": 26.0}


def test_text_subject_and_whatsapp_template_in_the_asked_language():
    rendered = templates().render("parcel_late", event(DATA), language="de", attributes={"name": "Ada"})
    assert rendered.language == "de"
    assert rendered.text == "Hallo Ada, Ihr Paket P-77 kommt 26 Stunden später."
    assert rendered.subject == "Paket P-77 verspätet"
    assert rendered.whatsapp == TemplateMessage(name="parcel_delay", language="de", parameters=["P-77", "26"])


@pytest.mark.parametrize("language, attributes, default, expected", [
    ("en", {}, "de", "en"),
    (None, {"language": "en"}, "de", "en"),
    ("fr", {"language": "it"}, "de", "de"),
    (None, {}, "fr", "de"),  # the template's first language
])
def test_the_language_falls_back_in_order(language, attributes, default, expected):
    rendered = templates(default).render("parcel_late", event(DATA), language=language, attributes=attributes)
    assert rendered.language == expected


def test_a_channel_text_replaces_the_text_on_that_channel():
    t = templates()
    assert t.render("parcel_late", event(DATA), language="de", channel="sms").text == "Paket P-77: +26 h"
    assert t.render("parcel_late", event(DATA), language="de", channel="email").text.startswith("Hallo")


def test_envelope_fields_list_items_and_escaped_braces():
    rendered = templates().render("braces", event({"items": ["A-1"]}))
    assert rendered.text == "{literal} parcel.delayed evt-9 from api:shop, first item A-1"
    assert rendered.subject is None and rendered.whatsapp is None


def test_an_event_model_renders_like_its_mapping():
    class Event:  # what BusinessEvent offers: model_dump(mode="json")
        def model_dump(self, mode: str) -> dict:
            return {**event(DATA), "occurred_at": NOW.isoformat(), "received_at": NOW.isoformat()}

    assert templates().render("parcel_late", Event(), language="en").text == "Hi, parcel P-77 is 26 hours late."


def test_a_missing_path_names_template_language_and_placeholder():
    with pytest.raises(TemplateValueMissingError) as raised:
        templates().render("parcel_late", event({"parcel": {"id": "P-77"}}), language="en")
    assert raised.value.message == "template parcel_late (en) text: the event has no value at {data.delay_hours}"
    assert raised.value.detail == {"fields": {"events.templates.parcel_late.text": "no value at data.delay_hours"}}
    with pytest.raises(TemplateValueMissingError, match=r"has an object or list at \{data.parcel.id\}"):
        templates().render("parcel_late", event({"parcel": {"id": {"x": 1}}, "delay_hours": 1}))


@pytest.mark.parametrize("text, message", [
    ("Hallo {customer}", "events.templates.t.text.de: unknown placeholder {customer}: 'customer' must start with one of"),
    ("Offen {", "events.templates.t.text.de: Single '{' encountered"),
    ("{}", "an empty placeholder"),
    ("{data.x!r}", "unknown placeholder"),
])
def test_template_problems_name_their_place(text, message):
    with pytest.raises(ConfigError) as raised:
        parse_config(f'events: {{templates: {{t: {{text: {{de: "{text}"}}}}}}}}')
    assert message in raised.value.message


def test_whatsapp_parameters_and_channels_are_checked():
    with pytest.raises(ConfigError) as raised:
        parse_config('events: {templates: {t: {text: {de: x}, channels: {fax: {de: y}}, '
                     'whatsapp: {name: n, language: de, parameters: ["{nope}"]}}}}')
    assert "events.templates.t.channels: unknown channel 'fax'" in raised.value.message
