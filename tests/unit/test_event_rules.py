"""Event rules: parse errors with paths, event type wildcards, event paths, consent, open case and
selected conditions, the selector (a broadcast's segments, an addressed event's condition), the
trace, and the live rules source."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.domain import consent
from chalicelib.domain.models import Customer, Priority
from chalicelib.domain.stored import CaseSummary
from chalicelib.errors import ConfigError
from chalicelib.hubconfig import parse_config
from chalicelib.routing.event_context import event_context_for
from chalicelib.routing.event_rules import Fanout, segments
from chalicelib.routing.event_setup import (
    EventRulesFactory,
    LiveEventRules,
    check_event_config,
)
from chalicelib.routing.sources import FileRulesSource

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)  # Monday, 10:00 in Berlin

BASE = """
destinations: [{name: outbox, type: outbox}, {name: crm, type: outbox, path: crm.jsonl}]
routing:
  calendars:
    default: {timezone: Europe/Berlin, hours: {mon-fri: "08:00-18:00"}}
  sla: {hours: 24, by_priority: {urgent: 2}}
events:
  templates:
    outage_notice: {text: {de: "Störung in {data.region}", en: "Outage in {data.region}"}}
    tariff_offer: {text: {de: "Neuer Tarif"}}
    parcel_late: {text: {de: "Paket {data.parcel_id} verspätet"}}
"""


def factory(rules: str) -> EventRulesFactory:
    return EventRulesFactory(parse_config(BASE + "  rules:\n" + rules))


def engine(rules: str):
    return factory(rules).inline


def event(type_: str = "parcel.delayed", data: dict | None = None, **extra) -> dict:
    return {"type": type_, "id": "evt-1", "source": "api:shop", "occurred_at": NOW, "data": data or {}, **extra}


def customer(attributes: dict | None = None, *, ledger=None, open_case: CaseSummary | None = None) -> Customer:
    return Customer.model_validate({
        "id": "cus_1",
        "attributes": {k: {"value": v, "source": "crm", "updated_at": NOW} for k, v in (attributes or {}).items()},
        "consent": ledger or {},
        "open_case": open_case,
    })


def evaluate(rules: str, evt: dict, cust: Customer | None = None, **kwargs):
    ctx = event_context_for(evt, cust or customer(), now=NOW, **kwargs)
    return engine(rules).evaluate(ctx)


def outcome(decision) -> list[tuple[str, bool, str]]:
    return [(t.rule, t.matched, t.reason) for t in decision.trace]


# --- conditions ------------------------------------------------------------------------------------


def test_event_type_wildcards_and_exact_names():
    rules = """
    - {name: parcels, when: {event_type: "parcel.*"}, then: {tag_customer: [parcel]}}
    - {name: exact, when: {event_type: [outage.started, "outage.end?d"]}, then: {tag_customer: [outage]}}
"""
    assert [name for name, _ in evaluate(rules, event("parcel.delayed")).actions] == ["parcels"]
    assert [name for name, _ in evaluate(rules, event("outage.started")).actions] == ["exact"]
    assert [name for name, _ in evaluate(rules, event("outage.ended")).actions] == ["exact"]
    decision = evaluate(rules, event("parcelx.delayed"))
    assert decision.actions == []
    assert outcome(decision)[1] == ("parcels", False, "event_type does not match [parcel.*]")


def test_the_trace_starts_with_the_event_and_names_each_rule():
    decision = evaluate("""
    - {name: late, when: [{event_type: "parcel.*"}, {event: {path: data.delay_hours, gte: 24}}],
       then: {notify: {template: parcel_late, channels: [whatsapp, sms]}, open_case: {queue: logistics, tags: [parcel]}}}
""", event(data={"delay_hours": 30}))
    assert outcome(decision) == [
        ("events", True, "event parcel.delayed evt-1"),
        ("late", True, "notify parcel_late via whatsapp, sms; open case in logistics +parcel"),
    ]
    assert decision.rules_version == "inline"


@pytest.mark.parametrize("test, data, matches", [
    ({"gte": 24}, {"delay_hours": 30}, True),
    ({"gte": 24}, {"delay_hours": "24"}, True),
    ({"gte": 24}, {"delay_hours": 3}, False),
    ({"gte": 24}, {}, False),
    ({"lte": 2}, {"delay_hours": 1.5}, True),
    ({"equals": "DHL"}, {"carrier": "DHL"}, True),
    ({"in": ["DHL", "UPS"]}, {"carrier": "GLS"}, False),
    ({"exists": True}, {"carrier": None}, True),
    ({"exists": False}, {}, True),
    ({"matches": "^10[0-9]{3}$"}, {"carrier": 10115}, True),
    ({"matches": "^10[0-9]{3}$"}, {"carrier": "20095"}, False),
])
def test_event_path_tests(test, data, matches):
    field = "delay_hours" if "gte" in test or "lte" in test else "carrier"
    condition = {"event": {"path": f"data.{field}", **test}}
    rules = f"    - {{name: r, when: {condition}, then: {{tag_customer: [x]}}}}\n".replace("'", '"')
    assert bool(evaluate(rules, event(data=data)).actions) is matches


def test_event_paths_reach_nested_fields_and_list_items_and_the_envelope():
    rules = """
    - {name: nested, when: {event: {path: data.items.1.sku, equals: B-2}}, then: {tag_customer: [a]}}
    - {name: source, when: {event: {path: source, equals: "api:shop"}}, then: {tag_customer: [b]}}
    - {name: beyond, when: {event: {path: data.items.5.sku, exists: true}}, then: {tag_customer: [c]}}
"""
    decision = evaluate(rules, event(data={"items": [{"sku": "A-1"}, {"sku": "B-2"}]}))
    assert [name for name, _ in decision.actions] == ["nested", "source"]
    assert outcome(decision)[-1] == ("beyond", False, "event data.items.5.sku is missing")


def test_consent_for_a_purpose_on_any_or_one_channel():
    ledger = consent.record({}, "email", "marketing", "opted_in", "form", None, NOW)
    rules = """
    - {name: any, when: {consent: {purpose: marketing}}, then: {tag_customer: [any]}}
    - {name: sms, when: {consent: {purpose: marketing, channel: sms}}, then: {tag_customer: [sms]}}
    - {name: service, when: {consent: {purpose: service, channel: mms}}, then: {tag_customer: [service]}}
"""
    decision = evaluate(rules, event(), customer(ledger=ledger))
    assert [name for name, _ in decision.actions] == ["any", "service"]
    assert ("sms", False, "no consent for marketing on sms") in outcome(decision)
    opted_out = consent.opt_out({}, "sms", source="STOP", evidence=None, at=NOW)
    assert [n for n, _ in evaluate(rules, event(), customer(ledger=opted_out)).actions] == []
    assert outcome(evaluate(rules, event(), customer()))[1] == ("any", False, "no consent for marketing on any channel")


def open_case(**fields) -> CaseSummary:
    summary = CaseSummary(id="case_1", opened_at=NOW - timedelta(hours=30), last_activity_at=NOW)
    for name, value in fields.items():  # topic, tags, queue, priority: the case summary's (when it has them)
        object.__setattr__(summary, name, value)
    return summary


def test_open_case_conditions():
    rules = """
    - {name: any-case, when: {open_case: true}, then: {tag_customer: [a]}}
    - {name: no-case, when: {open_case: false}, then: {tag_customer: [b]}}
    - {name: topic, when: {open_case: {topic: outage}}, then: {tag_customer: [c]}}
    - {name: tagged, when: {open_case: {tagged: parcel}}, then: {tag_customer: [d]}}
    - {name: queue, when: {open_case: {queue: logistics}}, then: {tag_customer: [e]}}
    - {name: old, when: {case_age_hours: {over: 24}}, then: {tag_customer: [f]}}
    - {name: sla, when: {sla_breached: true}, then: {tag_customer: [g]}}
"""
    assert [n for n, _ in evaluate(rules, event(), customer()).actions] == ["no-case"]
    case = open_case(topic="outage", tags=["parcel"], queue="logistics")
    assert [n for n, _ in evaluate(rules, event(), customer(open_case=case)).actions] == [
        "any-case", "topic", "tagged", "queue", "old", "sla"]
    other = open_case(topic="billing", tags=[], queue="general")
    decision = evaluate(rules, event(), customer(open_case=other))
    assert ("topic", False, "no open case on topic outage") in outcome(decision)
    # The caller may pass the case in force (an expired case is no open case).
    assert [n for n, _ in evaluate(rules, event(), customer(open_case=case), open_case=None).actions] == ["no-case"]


def test_customer_conditions_of_routing_work_on_events():
    rules = """
    - {name: gold, when: {attribute: {name: tier, in: [gold]}}, then: {tag_customer: [vip]}}
    - {name: vip-later, when: {tagged: vip}, then: {priority: high}}
    - {name: hours, when: {business_hours: open}, then: {escalate: 1}}
"""
    decision = evaluate(rules, event(), customer({"tier": "gold"}))
    assert [n for n, _ in decision.actions] == ["gold", "vip-later", "hours"]
    assert outcome(evaluate(rules, event(), customer({"tier": "silver"})))[1] == (
        "gold", False, "attribute tier not in ['gold']")
    # The customer's own tags attribute counts too.
    assert [n for n, _ in evaluate(rules, event(), customer({"tags": ["vip"]})).actions] == ["vip-later", "hours"]


def test_stop_ends_the_evaluation_with_the_remaining_rules_entry():
    decision = evaluate("""
    - {name: first, when: {event_type: "parcel.*"}, then: {tag_customer: [a]}, stop: true}
    - {name: second, then: {tag_customer: [b]}}
    - {name: third, then: {tag_customer: [c]}}
""", event())
    assert outcome(decision)[1:] == [("first", True, "tag customer +a; stop"),
                                     ("(remaining rules)", False, "2 rules not evaluated: first stopped evaluation")]


def test_explain_and_disabled_rules():
    decision = evaluate("""
    - {name: disabled, enabled: false, then: {tag_customer: [a]}}
    - {name: why, then: {park: check the address}, explain: addresses from the old shop are often wrong}
""", event())
    assert outcome(decision)[1:] == [("why", True, "park: check the address (addresses from the old shop are often wrong)")]


# --- selectors and broadcasts ------------------------------------------------------------------------

BROADCAST = """
    - name: outage-broadcast
      when: [{event_type: outage.started}, {consent: {purpose: service}}]
      customer_selector: {attribute: postcode, in: data.postcodes}
      then: {notify: {template: outage_notice, quiet_hours: false}, tag_customer: [outage]}
    - name: tariff-offer
      when: [{event_type: offer.tariff}, {event: {path: data.active, equals: true}}, {consent: {purpose: marketing}}]
      customer_selector: {attribute: region, equals: data.region}
      then: {notify: {template: tariff_offer, purpose: marketing, channels: [email, sms]}}
    - name: berlin-only
      when: {event_type: outage.started}
      customer_selector: {attribute: city, in: [Berlin, " berlin", 10115]}
      then: {tag_customer: [berlin]}
    - name: addressed
      when: {event_type: "parcel.*"}
      then: {notify: parcel_late}
"""


def test_the_broadcast_plan_evaluates_the_event_prefix_and_reads_the_values():
    rules = engine(BROADCAST)
    plan = rules.broadcast_plan(event("outage.started", {"postcodes": ["10115", " 10117", 10115, ["x"]]}), now=NOW)
    assert plan == [Fanout("outage-broadcast", "postcode", ("10115", "10117")),
                    Fanout("berlin-only", "city", ("berlin", "10115"))]
    assert rules.broadcast_plan(event("offer.tariff", {"region": "Nord", "active": True}), now=NOW) == [
        Fanout("tariff-offer", "region", ("nord",))]
    # The prefix's event condition decides; the customer conditions wait for each member.
    assert rules.broadcast_plan(event("offer.tariff", {"region": "Nord", "active": False}), now=NOW) == []
    # No values in the event: no fan-out; rules without a selector never fan out.
    assert rules.broadcast_plan(event("outage.started", {}), now=NOW) == [Fanout("berlin-only", "city", ("berlin", "10115"))]
    assert rules.broadcast_plan(event("parcel.delayed", {}), now=NOW) == []


def test_segments_share_a_page_chain_per_attribute_and_value():
    plan = [Fanout("a", "postcode", ("10115", "10117")), Fanout("b", "postcode", ("10115",)), Fanout("c", "city", ("x",))]
    assert segments(plan) == [("postcode", "10115", ("a", "b")), ("postcode", "10117", ("a",)), ("city", "x", ("c",))]


def test_a_broadcast_member_matches_only_the_rules_whose_segment_chose_it():
    decision = evaluate(BROADCAST, event("outage.started", {"postcodes": ["10115"]}), customer({"postcode": "10115"}),
                        selected_by=["outage-broadcast"])
    assert [n for n, _ in decision.actions] == ["outage-broadcast"]
    assert ("berlin-only", False, "not in this rule's segment") in outcome(decision)


def test_a_member_still_needs_the_customer_conditions():
    ledger = consent.opt_out({}, "sms", source="STOP", evidence=None, at=NOW)
    for channel in consent.CHANNELS:
        ledger = consent.record(ledger, channel, "service", "opted_out", "STOP", None, NOW)
    decision = evaluate(BROADCAST, event("outage.started", {"postcodes": ["10115"]}), customer(ledger=ledger),
                        selected_by=["outage-broadcast"])
    assert decision.actions == []
    assert ("outage-broadcast", False, "no consent for service on any channel") in outcome(decision)


def test_an_addressed_event_tests_the_selector_on_the_customer():
    evt = event("outage.started", {"postcodes": ["10115", "10117"]})
    inside = evaluate(BROADCAST, evt, customer({"postcode": " 10117", "city": "Hamburg"}))
    assert [n for n, _ in inside.actions] == ["outage-broadcast"]
    outside = evaluate(BROADCAST, evt, customer({"postcode": "20095", "city": "BERLIN"}))
    assert [n for n, _ in outside.actions] == ["berlin-only"]
    assert ("outage-broadcast", False, "attribute postcode not in the event's data.postcodes") in outcome(outside)


def test_selected_condition():
    rules = """
    - name: seg
      when: [{event_type: outage.started}, {selected: true}]
      customer_selector: {attribute: postcode, in: [10115]}
      then: {tag_customer: [broadcast]}
    - {name: direct, when: {selected: false}, then: {tag_customer: [direct]}}
"""
    member = evaluate(rules, event("outage.started"), customer({"postcode": "10115"}), selected_by=["seg"])
    assert [n for n, _ in member.actions] == ["seg", "direct"]
    addressed = evaluate(rules, event("outage.started"), customer({"postcode": "10115"}))
    assert [n for n, _ in addressed.actions] == ["direct"]
    assert ("seg", False, "not chosen by this rule's segment") in outcome(addressed)


# --- errors with paths -------------------------------------------------------------------------------


@pytest.mark.parametrize("rule, message", [
    ("{name: r, when: {channel: sms}}", "events.rules[0] (r).when: unknown condition 'channel'; known: all, any, attribute, "),
    ("{name: r, when: {language: de}}", "unknown condition 'language'"),
    ("{name: r, when: [{event_type: x}, {event: {path: data.delay_hours, gt: 3}}]}",
     "events.rules[0] (r).when[1].event: unknown test 'gt'"),
    ("{name: r, when: {event: {path: payload.x, equals: 1}}}",
     "events.rules[0] (r).when.event.path: 'payload.x' must start with one of: type, id, source, occurred_at, data"),
    ("{name: r, when: {event: {path: data.x, matches: '('}}}", "events.rules[0] (r).when.event.matches: invalid regular"),
    ("{name: r, when: {all: [{any: [{consent: {purpose: spam}}]}]}}", "events.rules[0] (r).when.all[0].any[0].consent.purpose"),
    ("{name: r, when: {consent: {purpose: service, channel: fax}}}", "when.consent.channel: unknown channel 'fax'"),
    ("{name: r, when: {open_case: {status: x}}}", "when.open_case: must be true, false"),
    ("{name: r, when: {business_hours: {calendar: support, is: open}}}", "no calendar 'support'"),
    ("{name: r, when: {consent: {purpose: service}}, customer_selector: {attribute: postcode, in: [1]}}",
     "events.rules[0] (r).when: a rule with a customer_selector must start with event_type or event conditions"),
    ("{name: r, then: {notify: {template: nope}}}", "events.rules[0] (r).then.notify.template: no template 'nope'"),
    ("{name: r, then: {forward: {destinations: [helpdesk]}}}",
     "events.rules[0] (r).then.forward.destinations[0]: no destination 'helpdesk' (crm, outbox)"),
    ("{name: r, then: {notify: {template: parcel_late, quiet_hours: night}}}",
     "then.notify.quiet_hours: no calendar 'night' in routing.calendars (default)"),
])
def test_compile_errors_name_the_rule_and_path(rule, message):
    with pytest.raises(ConfigError) as raised:
        engine(f"    - {rule}\n")
    assert message in raised.value.message


def test_every_problem_is_reported_and_duplicates_are_named():
    with pytest.raises(ConfigError) as raised:
        engine("""
    - {name: a, when: {text: {contains: [x]}}}
    - {name: a, when: [{event_type: x}, {intent: refund}]}
""")
    text = raised.value.message
    assert "events.rules[0] (a).when: unknown condition 'text'" in text
    assert "events.rules[1] (a).name: duplicate rule name" in text
    assert "events.rules[1] (a).when[1]: unknown condition 'intent'" in text


@pytest.mark.parametrize("rule, message", [
    ("{name: r, then: {notify: {template: t, channels: [fax]}}}", "events.rules[0].then.notify.channels: unknown channel 'fax'"),
    ("{name: r, customer_selector: {attribute: postcode}}", "events.rules[0].customer_selector: needs exactly one of `in`"),
    ("{name: r, customer_selector: {attribute: postcode, in: postcodes}}", "a path into the event such as data.postcodes"),
    ("{name: r, then: {escalate: 5}}", "events.rules[0].then.escalate"),
    ("{name: 'bad name'}", "events.rules[0].name"),
])
def test_shape_errors_name_the_path_at_load_or_at_first_use(rule, message):
    text = BASE + f"  rules:\n    - {rule}\n"
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    assert message in raised.value.message
    config = parse_config(text, defer_sections=True)  # a deployed function types the section on first use
    with pytest.raises(ConfigError) as raised:
        _ = config.events
    assert message in raised.value.message


# --- rules source ------------------------------------------------------------------------------------


def test_a_rules_file_is_checked_and_followed(tmp_path):
    rules_file = tmp_path / "event-rules.yaml"
    rules_file.write_text("rules:\n  - {name: from-file, when: {event_type: 'parcel.*'}, then: {notify: parcel_late}}\n")
    (tmp_path / "hub.yaml").write_text(BASE + "  source: {type: file, path: event-rules.yaml, cache_seconds: 5}\n")
    config = parse_config((tmp_path / "hub.yaml").read_text())
    assert check_event_config(config, base_dir=tmp_path) == "1 in event-rules.yaml"

    now, rejected = [0.0], []
    live = LiveEventRules(EventRulesFactory(config), FileRulesSource(rules_file, cache_seconds=5, clock=lambda: now[0]),
                          describe="rules file", on_rejected=rejected.append)
    assert [r.name for r in live.current().rules.rules] == ["from-file"]
    rules_file.write_text("- {name: broken, when: {nope: 1}}\n")
    now[0] = 10.0
    assert [r.name for r in live.current().rules.rules] == ["from-file"]  # the previous rules stay in force
    assert len(rejected) == 1 and "rules file rules[0] (broken).when: unknown condition 'nope'" in rejected[0]

    rules_file.write_text("- {name: broken, when: {nope: 1}}\n")
    with pytest.raises(ConfigError, match=r"\(broken\)\.when: unknown condition 'nope'"):
        check_event_config(config, base_dir=tmp_path)


def test_priority_escalation_is_visible_to_later_rules():
    decision = evaluate("""
    - {name: up, when: {event_type: case.sla_breached}, then: {escalate: 2, queue: escalations}}
    - {name: urgent-now, when: {sla_breached: true}, then: {tag_customer: [late]}}
""", event("case.sla_breached"), customer(open_case=open_case(priority=Priority.NORMAL)))
    assert [n for n, _ in decision.actions] == ["up", "urgent-now"]  # urgent's SLA (2 h) < the case's 30 h
