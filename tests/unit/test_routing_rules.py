"""Routing rules: every condition and action, the trace, and validation errors that name the rule."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.domain.models import Priority
from chalicelib.errors import ConfigError
from chalicelib.hubconfig import parse_config
from chalicelib.routing.setup import RouterFactory
from tests.support.routing import MONDAY_MORNING, routing_context


BASE = """
destinations:
  - {name: outbox, type: outbox}
  - {name: crm, type: webhook, url: "https://crm.example.com/hooks", secrets: ["whsec_AAAA"]}
routing:
  default: {queue: general, priority: normal}
  calendars:
    default:
      timezone: Europe/Berlin
      hours: {mon-fri: "08:00-18:00"}
      holidays: ["12-25"]
  templates:
    out_of_hours:
      de: "Hallo {name}, wir sind ab {next_opening} wieder da."
      en: "Hi {name}, we are back at {next_opening}."
  sla: {hours: 24, by_priority: {urgent: 2}}
"""


def router(rules: str, base: str = BASE):
    return RouterFactory(parse_config(base + "  rules:\n" + rules)).inline


def ctx(**values):
    return routing_context(**values)


def rule(when: str) -> str:
    return f"    - {{name: r, when: {when}, then: {{tags: [hit]}}}}\n"


def matches(when: str, **values) -> bool:
    decision = router(rule(when)).route(ctx(**values))
    return decision.trace[1].matched


@pytest.mark.parametrize(
    ("when", "values", "expected"),
    [
        ("{channel: whatsapp}", {"channel": "whatsapp"}, True),
        ("{channel: [whatsapp, webchat]}", {"channel": "sms"}, False),
        ("{provider: meta}", {"provider": "meta"}, True),
        ("{account: '+4930123456'}", {}, True),
        ("{account: '+4930999999'}", {}, False),
        ("{language: de}", {"language": "de"}, True),
        ("{language: de}", {"language": None}, False),
        ("{content_type: media}", {"content_type": "media"}, True),
        ("{intent: [outage, refund]}", {"intents": frozenset({"refund"})}, True),
        ("{intent: outage}", {"intents": frozenset({"billing"})}, False),
        ("{urgent: true}", {"urgent": True}, True),
        ("{urgent: false}", {"urgent": True}, False),
        ("{new_customer: true}", {"new_customer": True}, True),
        ("{has_attachments: true}", {"attachments": 2}, True),
        ("{has_attachments: true}", {"attachments": 0}, False),
        ("{text: {contains: [refund, money back]}}", {"text": "I want my MONEY BACK now"}, True),
        ("{text: {contains: [down]}}", {"text": "the download failed"}, False),
        ("{text: {matches: 'order #?\\d{6}'}}", {"text": "Order 123456 missing"}, True),
        ("{subject: {contains: [invoice]}}", {"subject": "Your invoice 42"}, True),
        ("{subject: {contains: [invoice]}}", {"text": "invoice", "subject": ""}, False),
        ("{attribute: {name: tier, equals: gold}}", {"attributes": {"tier": "gold"}}, True),
        ("{attribute: {name: tier, in: [gold, vip]}}", {"attributes": {"tier": "silver"}}, False),
        ("{attribute: {name: tier, exists: true}}", {"attributes": {}}, False),
        ("{attribute: {name: tier, exists: false}}", {"attributes": {}}, True),
        ("{attribute: {name: custom.score, gte: 80}}", {"attributes": {"custom.score": "85"}}, True),
        ("{attribute: {name: custom.score, lte: 20}}", {"attributes": {"custom.score": 85}}, False),
        ("{attribute: {name: custom.score, gte: 1}}", {"attributes": {"custom.score": "n/a"}}, False),
        ("{repeat_contact: {count: 3, within_hours: 48}}",
         {"recent": [MONDAY_MORNING - timedelta(hours=h) for h in (0, 20, 47)]}, True),
        ("{repeat_contact: {count: 3, within_hours: 48}}",
         {"recent": [MONDAY_MORNING - timedelta(hours=h) for h in (0, 20, 49)]}, False),
        ("{repeat_contact: {count: 3, within_hours: 48}}", {"recent": [MONDAY_MORNING]}, False),
        ("{case_age_hours: {over: 24}}", {"case_opened_at": MONDAY_MORNING - timedelta(hours=25)}, True),
        ("{case_age_hours: {over: 24}}", {"case_opened_at": None}, False),
        ("{sla_breached: true}", {"case_opened_at": MONDAY_MORNING - timedelta(hours=25)}, True),
        ("{sla_breached: true}", {"case_opened_at": MONDAY_MORNING - timedelta(hours=3)}, False),
        ("{sla_breached: false}", {"case_opened_at": MONDAY_MORNING - timedelta(hours=3)}, True),
        ("{business_hours: open}", {}, True),
        ("{business_hours: closed}", {"now": MONDAY_MORNING + timedelta(hours=10)}, True),
        ("{business_hours: {calendar: default, is: closed}}", {"now": datetime(2026, 12, 25, 9, tzinfo=timezone.utc)}, True),
        ("{all: [{channel: sms}, {urgent: true}]}", {"urgent": True}, True),
        ("{all: [{channel: sms}, {urgent: true}]}", {}, False),
        ("{any: [{channel: whatsapp}, {urgent: true}]}", {"urgent": True}, True),
        ("{any: [{channel: whatsapp}, {urgent: true}]}", {}, False),
        ("{not: {channel: sms}}", {}, False),
        ("{not: {channel: whatsapp}}", {}, True),
        ("[{channel: sms}, {provider: twilio}]", {}, True),
    ],
)
def test_each_condition(when, values, expected):
    assert matches(when, **values) is expected


def test_sla_follows_the_priority_earlier_rules_set():
    rules = (
        "    - {name: urgent, when: {urgent: true}, then: {priority: urgent}}\n"
        "    - {name: late, when: {sla_breached: true}, then: {tags: [late]}}\n"
    )
    three_hours_old = MONDAY_MORNING - timedelta(hours=3)

    assert router(rules).route(ctx(urgent=True, case_opened_at=three_hours_old)).tags == ["late"]
    assert router(rules).route(ctx(case_opened_at=three_hours_old)).tags == []


def test_a_rule_may_test_the_tags_earlier_rules_added():
    rules = (
        "    - {name: vip, when: {attribute: {name: tier, equals: vip}}, then: {tags: [vip]}}\n"
        "    - {name: vip-outage, when: [{tagged: vip}, {intent: outage}], then: {queue: vip-tech}}\n"
    )
    decision = router(rules).route(ctx(attributes={"tier": "vip"}, intents=frozenset({"outage"})))

    assert decision.queue == "vip-tech"


def test_the_trace_names_every_rule_and_the_condition_that_failed():
    rules = (
        "    - {name: german-outage, when: [{language: de}, {intent: outage}], then: {queue: technical}}\n"
        "    - {name: whatsapp-or-urgent, when: {any: [{channel: whatsapp}, {urgent: true}]}, then: {tags: [x]}}\n"
        "    - {name: not-sms, when: {not: {channel: sms}}, then: {tags: [y]}}\n"
        "    - {name: always, then: {tags: [seen]}}\n"
    )

    decision = router(rules).route(ctx(language="de", intents=frozenset({"billing"})))

    assert [(t.rule, t.matched, t.reason) for t in decision.trace] == [
        ("default", True, "start from the default route: queue general, priority normal, destinations [outbox, crm]"),
        ("german-outage", False, "intent not in [outage]"),
        ("whatsapp-or-urgent", False, "none of: channel in [whatsapp]; urgent is true"),
        ("not-sms", False, "channel in [sms], which the rule excludes"),
        ("always", True, "tags +seen"),
    ]
    assert decision.rules_version == "inline"


def test_actions_combine_in_order_and_stop_ends_evaluation():
    rules = (
        "    - {name: a, then: {priority: high, queue: first, skills: {german: 2, billing: 3}, tags: [a]}}\n"
        "    - {name: b, then: {escalate: 2, skills: {german: 4}, tags: [a, b], add_destinations: [crm]}}\n"
        "    - {name: c, then: {destinations: [crm], queue: second}, stop: true}\n"
        "    - {name: d, then: {queue: never}}\n"
        "    - {name: e, then: {queue: never}}\n"
    )
    base = BASE.replace("default: {queue: general, priority: normal}",
                        "default: {queue: general, priority: normal, destinations: [outbox]}")

    decision = router(rules, base).route(ctx())

    assert decision.priority == Priority.URGENT  # high + 2 steps, capped
    assert (decision.queue, decision.destinations) == ("second", ["crm"])
    assert decision.skills == {"german": 4, "billing": 3}
    assert decision.tags == ["a", "b"]
    assert [t.rule for t in decision.trace] == ["default", "a", "b", "c", "(remaining rules)"]
    assert decision.trace[-1].reason == "2 rules not evaluated: c stopped evaluation"
    assert decision.trace[3].reason == "queue second; destinations [crm]; stop"


def test_park_and_suppress_record_the_reason_and_the_rule():
    rules = (
        "    - {name: unknown-with-files, when: [{new_customer: true}, {has_attachments: true}], "
        "then: {park: unknown sender with attachments}}\n"
        "    - {name: auto-replies, when: {text: {contains: [out of office]}}, then: {suppress: auto-reply}}\n"
    )

    parked = router(rules).route(ctx(new_customer=True, attachments=1))
    suppressed = router(rules).route(ctx(text="Out of office until Monday"))

    assert parked.parked == "unknown sender with attachments (rule unknown-with-files)"
    assert suppressed.suppressed == "auto-reply (rule auto-replies)"


@pytest.mark.parametrize(
    ("values", "language", "text"),
    [
        ({"language": "de", "attributes": {"name": "Jana"}}, "de",
         "Hallo Jana, wir sind ab 2026-11-24 08:00 (Europe/Berlin) wieder da."),
        ({"language": "tr", "attributes": {"language": "en"}}, "en", "Hi, we are back at 2026-11-24 08:00 (Europe/Berlin)."),
        ({"language": None}, "en", "Hi, we are back at 2026-11-24 08:00 (Europe/Berlin)."),
    ],
)
def test_out_of_hours_replies_are_rendered_in_the_customers_language(values, language, text):
    rules = "    - {name: ooh, when: {business_hours: closed}, then: {reply: out_of_hours}}\n"
    evening = MONDAY_MORNING + timedelta(hours=11)

    [reply] = router(rules).route(ctx(now=evening, **values)).replies

    assert (reply.rule, reply.template, reply.language, reply.text) == ("ooh", "out_of_hours", language, text)


def test_without_rules_the_default_route_decides():
    decision = RouterFactory(parse_config(BASE)).inline.route(ctx())

    assert (decision.queue, decision.priority, decision.destinations) == ("general", Priority.NORMAL, ["outbox", "crm"])
    assert [t.rule for t in decision.trace] == ["default"]


@pytest.mark.parametrize(
    ("rules", "problem"),
    [
        ("    - {name: a, when: {chanel: sms}}\n", "routing.rules[0] (a).when: unknown condition 'chanel'"),
        ("    - {name: a, when: {channel: fax}}\n", "routing.rules[0] (a).when.channel: unknown value 'fax'"),
        ("    - {name: a, when: {all: [{urgent: true}, {text: {matches: '(['}}]}}\n",
         "routing.rules[0] (a).when.all[1].text.matches: invalid regular expression"),
        ("    - {name: a, when: {business_hours: {calendar: support_fr, is: open}}}\n",
         "routing.rules[0] (a).when.business_hours: no calendar 'support_fr'"),
        ("    - {name: a, then: {destinations: [zendesk]}}\n", "routing.rules[0] (a).then.destinations: no destination 'zendesk'"),
        ("    - {name: a, then: {reply: welcome}}\n", "routing.rules[0] (a).then.reply.template: no template 'welcome'"),
        ("    - {name: a, then: {priority: critical}}\n", "routing.rules[0].then.priority"),
        ("    - {name: a, then: {skills: {german: 9}}}\n", "routing.rules[0].then.skills"),
        ("    - {name: a}\n    - {name: a}\n", "routing.rules[1] (a).name: duplicate rule name"),
        ("    - {name: a, when: {repeat_contact: {count: 30, within_hours: 48}}}\n",
         "routing.rules[0] (a).when.repeat_contact.count: must be a whole number from 2 to 20"),
        ("    - {name: a, when: {attribute: {name: tier, like: gold}}}\n", "routing.rules[0] (a).when.attribute"),
    ],
)
def test_invalid_rules_fail_at_start_naming_the_rule_and_the_field(rules, problem):
    with pytest.raises(ConfigError) as raised:
        router(rules)

    assert problem in raised.value.message


def test_templates_with_unknown_placeholders_are_refused():
    base = BASE.replace("wieder da.", "wieder da, {agent}.")

    with pytest.raises(ConfigError, match=r"routing.templates.out_of_hours.de: unknown placeholder \{agent\}"):
        router("    []\n", base)
