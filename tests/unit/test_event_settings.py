"""`events:` in the configuration: typed at load, or on first use when a deployed function defers
its sections (so no other cold start builds the event models), then kept; errors named by their
path, including the references to calendars, destinations and templates; the local
configuration's section works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.errors import ConfigError
from chalicelib.hubconfig import load_config, parse_config
from chalicelib.routing.event_settings import EventSettings
from chalicelib.routing.event_setup import EventRulesFactory, check_event_config

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
destinations: [{name: outbox, type: outbox}]
routing:
  calendars:
    default: {timezone: Europe/Berlin, hours: {mon-fri: "08:00-18:00"}}
events:
  templates:
    outage_notice: {text: {de: "Störung in {data.region}"}}
  quiet_hours: {calendar: default, purposes: [marketing, service]}
  frequency_caps: {marketing: {count: 2, per_hours: 168}, service: {count: 6, per_hours: 24}}
  suppress_when_open_case: {purposes: [service]}
  fanout_page_size: 250
  eventbridge: {bus: orders, pattern: {source: [shop.orders]}}
  rules:
    - name: outage
      when: {event_type: outage.started}
      then: {notify: outage_notice, forward: {destinations: [outbox]}}
"""


def test_the_section_is_typed_on_first_use_and_kept():
    config = parse_config(CONFIG, defer_sections=True)
    assert "events" not in config.__dict__  # as written until asked for
    settings = config.events
    assert isinstance(settings, EventSettings)
    assert config.events is settings
    assert settings.fanout_page_size == 250
    assert settings.frequency_caps["marketing"].count == 2
    assert settings.quiet_hours.purposes == ["marketing", "service"]
    assert settings.suppress_when_open_case.purposes == ["service"]
    assert settings.eventbridge.bus == "orders"
    assert settings.rules[0].then.notify.template == "outage_notice"


def test_defaults_without_a_section():
    settings = parse_config("version: 1").events
    assert settings.fanout_page_size == 100
    assert settings.rules == [] and settings.templates == {} and settings.frequency_caps == {}
    assert settings.source.type == "inline"
    assert settings.quiet_hours.calendar is None
    assert settings.suppress_when_open_case.purposes == ["service", "marketing"]


def test_a_bad_section_fails_the_load_or_with_deferred_sections_the_first_use_naming_the_path():
    expected = ("invalid hub configuration hub.yaml:\n"
                "  events.fanout_page_size: Input should be less than or equal to 1000")
    with pytest.raises(ConfigError) as raised:
        parse_config("events: {fanout_page_size: 5000}", source="hub.yaml")
    assert raised.value.message == expected
    config = parse_config("events: {fanout_page_size: 5000}", source="hub.yaml", defer_sections=True)
    with pytest.raises(ConfigError) as raised:
        _ = config.events
    assert raised.value.message == expected


def test_a_section_that_is_not_a_mapping_fails_at_load():
    with pytest.raises(ConfigError, match=r"events: Input should be a valid dictionary"):
        parse_config("events: [1, 2]")


@pytest.mark.parametrize("section, message", [
    ("{frequency_caps: {sales: {count: 1, per_hours: 1}}}", "events.frequency_caps.sales.[key]: Input should be"),
    ("{frequency_caps: {marketing: {count: 0, per_hours: 1}}}", "events.frequency_caps.marketing.count: Input should be"),
    ("{quiet_hours: {calendar: night}}", "events.quiet_hours.calendar: no calendar 'night' in routing.calendars (none "
                                         "configured)"),
    ("{quiet_hours: {purposes: [sales]}}", "events.quiet_hours.purposes[0]: Input should be 'service' or 'marketing'"),
    ("{eventbridge: {bus: orders}}", "events.eventbridge.pattern: Field required"),
    ("{source: {type: ftp}}", "events.source.type: Input should be"),
    ("{unknown: 1}", "events.unknown: Extra inputs are not permitted"),
    ("{templates: {t: {text: {}}}}", "events.templates.t.text: Dictionary should have at least 1 item"),
    ("{rules: [{name: r, then: {forward: {destinations: [crm]}}}]}",
     "events.rules[0] (r).then.forward.destinations[0]: no destination 'crm' (none configured)"),
    ("{rules: [{name: r, then: {forward: {destinations: []}}}]}",
     "events.rules[0].then.forward.destinations: List should have at least 1 item"),
    ("{rules: [{name: r, then: {set_attribute: {region: '{payload.x}'}}}]}",
     "events.rules[0] (r).then.set_attribute.region: '{payload.x}' is not a path into the event"),
])
def test_errors_name_their_path(section, message):
    with pytest.raises(ConfigError) as raised:
        parse_config(f"events: {section}")
    assert message in raised.value.message
    config = parse_config(f"events: {section}", defer_sections=True)
    with pytest.raises(ConfigError) as raised:
        _ = config.events
    assert message in raised.value.message


def test_check_event_config_types_the_section_and_compiles_the_rules():
    assert check_event_config(parse_config(CONFIG)) == "1 inline"
    broken = parse_config(CONFIG.replace("{event_type: outage.started}", "{event_type: outage.started, x: 1}"))
    with pytest.raises(ConfigError, match=r"events.rules\[0\] \(outage\).when: a condition is a mapping with one key"):
        check_event_config(broken)


def test_the_local_configuration_has_a_working_events_section():
    path = ROOT / "chalicelib" / "conf" / "local.yaml"
    config = load_config(path)
    assert config.events.templates, "local.yaml ships example templates"
    assert check_event_config(config, base_dir=path.parent).endswith("in event-rules.yaml")


def test_loading_a_configuration_builds_no_event_model():
    """Every deployed function loads the configuration at its cold start; only the events worker
    needs the event models, so a deferred load with an `events:` section imports none of them."""
    code = f"""
import json, sys
from chalicelib.hubconfig import parse_config
config = parse_config({CONFIG!r}, defer_sections=True)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("chalicelib.routing.event"))))
config.events
print(json.dumps(sorted(m for m in sys.modules if m.startswith("chalicelib.routing.event"))))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = (json.loads(line) for line in done.stdout.splitlines()[-2:])
    assert before == []
    assert "chalicelib.routing.event_settings" in after


def test_the_documented_examples_compile():
    """docs/examples/events.yaml (README "Business events and proactive messages") with a calendar
    and the outbox destination, as its header says."""
    import yaml

    from chalicelib.domain.policies import CustomerLimits

    example = yaml.safe_load((ROOT / "docs" / "examples" / "events.yaml").read_text())
    if "indexed_attributes" not in CustomerLimits.model_fields:  # segments arrive with the store's index
        example.pop("customers")
    document = {"destinations": [{"name": "outbox", "type": "outbox"}],
                "routing": {"calendars": {"default": {"timezone": "Europe/Berlin", "hours": {"mon-fri": "08:00-18:00"}}}},
                **example}
    config = parse_config(json.dumps(document), source="events.json")
    assert check_event_config(config) == "6 inline"
    engine = EventRulesFactory(config).inline
    plan = engine.broadcast_plan({"type": "outage.started", "id": "e", "source": "api", "occurred_at": None,
                                  "data": {"postcodes": ["10115"], "region": "Mitte", "eta": "14:00"}})
    assert [(f.rule, f.values) for f in plan] == [("outage-broadcast", ("10115",))]
