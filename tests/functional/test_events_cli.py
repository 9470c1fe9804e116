"""`hubctl event`: business events onto the embedded hub's events queue with the API's checks,
`--explain` through the event processor, and `setup-eventbridge`'s deploy command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from chalicelib.bootstrap import Hub
from chalicelib.cli import main
from chalicelib.settings import DEFAULT_CONFIG, Settings
from tests.support.cloudformation import load_template

ROOT = Path(__file__).resolve().parents[2]


def queued(tmp_path) -> list[dict]:
    hub = Hub(Settings(config_path=str(DEFAULT_CONFIG), data_dir=str(tmp_path)))
    try:
        bodies = []
        while batch := hub.events_queue.receive(max_messages=10):
            hub.events_queue.delete([m.receipt for m in batch])
            bodies += [json.loads(m.body) for m in batch]
        return bodies
    finally:
        hub.close()


def test_an_event_from_options_and_a_file_of_events_are_queued(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HUB_CONFIG", str(DEFAULT_CONFIG))
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path))
    events = tmp_path / "events.json"
    events.write_text(json.dumps([
        {"type": "outage.started", "id": "noc:1", "occurred_at": "2026-01-02T10:00:00Z", "customer": None,
         "data": {"postcodes": ["10115"]}},
        {"type": "outage.ended", "id": "noc:2", "occurred_at": "2026-01-02T12:00:00Z", "customer": None},
    ]))

    single = main(["event", "--type", "parcel.late", "--id", "shop:1", "--customer", "cus_1",
                   "--data", '{"delay_hours": 30}', "--occurred-at", "2026-01-02T09:00:00+01:00"])
    from_file = main(["event", "--file", str(events), "--json"])

    assert (single, from_file) == (0, 0)
    out = capsys.readouterr().out
    assert "queued shop:1" in out
    assert json.loads(out[out.index("{"):]) == {"data": [{"id": "noc:1", "status": "queued"},
                                                         {"id": "noc:2", "status": "queued"}]}
    bodies = queued(tmp_path)
    assert [b["event"]["id"] for b in bodies] == ["shop:1", "noc:1", "noc:2"]
    assert bodies[0]["event"]["source"] == "cli"
    assert bodies[0]["event"]["customer"] == {"identifier": None, "customer_id": "cus_1"}
    assert bodies[0]["event"]["data"] == {"delay_hours": 30}


def test_an_invalid_event_is_refused_naming_its_fields_and_nothing_is_queued(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HUB_CONFIG", str(DEFAULT_CONFIG))
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path))

    refused = main(["event", "--type", "Parcel Late", "--id", "shop:1", "--occurred-at", "2026-01-02T09:00:00"])
    no_id = main(["event", "--type", "parcel.late"])
    bad_data = main(["event", "--type", "parcel.late", "--id", "x", "--data", "{nope"])

    assert (refused, no_id, bad_data) == (1, 2, 2)
    err = capsys.readouterr().err
    assert "invalid_event" in err
    assert "  type: " in err and "  occurred_at: " in err
    assert "give --type and --id" in err
    assert "the event data is not JSON" in err
    assert queued(tmp_path) == []


def test_explain_prints_the_processor_s_trace_and_queues_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HUB_CONFIG", str(DEFAULT_CONFIG))
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path))
    explained = []

    class Explaining:
        def explain(self, body: dict) -> dict:
            explained.append(body)
            return {"trace": [{"rule": "events", "matched": True, "reason": "event parcel.late shop:1"},
                              {"rule": "parcel-late", "matched": False, "reason": "event data.delay_hours >= 24"}],
                    "actions": []}

    monkeypatch.setattr(Hub, "event_processor", Explaining(), raising=False)

    code = main(["event", "--type", "parcel.late", "--id", "shop:1", "--identifier", "phone:+4915123456789",
                 "--explain"])

    assert code == 0
    out = capsys.readouterr().out
    assert "  MATCH events: event parcel.late shop:1" in out
    assert "    -   parcel-late: event data.delay_hours >= 24" in out
    assert explained[0]["event"]["customer"] == {"identifier": "phone:+4915123456789"}
    assert queued(tmp_path) == []


def test_setup_eventbridge_prints_a_deploy_command_the_template_accepts(capsys):
    code = main(["event", "setup-eventbridge", "--bus", "shop-events", "--stage", "dev",
                 "--pattern", '{"source": ["shop.logistics"]}'])
    bad = main(["event", "setup-eventbridge", "--pattern", "[1]"])

    assert (code, bad) == (0, 2)
    out = capsys.readouterr().out
    command = out[out.index("aws cloudformation deploy"):].split("\n\n")[0]
    assert "--template-file infra/eventbridge-events.yaml" in command
    given = dict(re.findall(r"(\w+)=('[^']*'|\S+)", command.split("--parameter-overrides", 1)[1]))
    assert given == {"Stage": "dev", "EventBusName": "shop-events", "EventPattern": """'{"source":["shop.logistics"]}'"""}
    template = load_template(ROOT / "infra" / "eventbridge-events.yaml")
    assert set(given) == set(template["Parameters"])


def test_the_eventbridge_template_lints_clean():
    lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run([str(lint), str(ROOT / "infra" / "eventbridge-events.yaml")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_setup_eventbridge_takes_the_bus_and_pattern_from_the_configuration(tmp_path, capsys):
    document = yaml.safe_load(DEFAULT_CONFIG.read_text())
    document.setdefault("events", {})["eventbridge"] = {"bus": "orders", "pattern": {"source": ["shop.orders"]}}
    config = tmp_path / "hub.yaml"
    config.write_text(yaml.safe_dump(document))

    assert main(["event", "setup-eventbridge", "--stage", "prod", "--config", str(config)]) == 0
    assert main(["event", "setup-eventbridge", "--stage", "prod", "--config", str(config), "--bus", "other"]) == 0

    first, second = capsys.readouterr().out.split("Business events from")[1:]
    assert """EventBusName=orders EventPattern='{"source":["shop.orders"]}'""" in first
    assert """EventBusName=other EventPattern='{"source":["shop.orders"]}'""" in second
