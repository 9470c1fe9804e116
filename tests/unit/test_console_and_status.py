"""The console's file manifest and the status report, without a hub: a folder the test makes,
and status parts that fail on purpose."""

from __future__ import annotations

import json

import pytest

from chalicelib.api.http import HttpRequest
from chalicelib.console.files import STATIC, ConsoleFiles
from chalicelib.errors import ConfigError
from chalicelib.service.status import StatusSources, status_report


def request(**headers: str) -> HttpRequest:
    return HttpRequest(method="GET", path="/console/x", headers=headers)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "app.js").write_text("export const a = 1;")
    (tmp_path / "logo.svg").write_text("<svg/>")
    (tmp_path / ".secret.js").write_text("hidden")
    (tmp_path / "notes.txt").write_text("not a console file")
    (tmp_path / "server.py").write_text("import os")
    (tmp_path / "sub.js").mkdir()
    return tmp_path


def test_the_manifest_holds_only_visible_html_js_css_and_svg_files(folder):
    assert sorted(ConsoleFiles(folder).manifest()) == ["app.js", "index.html", "logo.svg"]


@pytest.mark.parametrize("name", ["notes.txt", "server.py", ".secret.js", "sub.js", "../app.js", "..", "", "APP.JS"])
def test_a_name_outside_the_manifest_is_a_404_in_the_one_error_shape(folder, name):
    answer = ConsoleFiles(folder).respond(request(), name)

    assert answer.status_code == 404
    assert json.loads(answer.body)["error"]["code"] == "not_found"
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]


def test_a_file_carries_its_type_an_etag_and_revalidates(folder):
    files = ConsoleFiles(folder)
    first = files.respond(request(), "logo.svg")
    again = files.respond(request(**{"if-none-match": f'W/{first.headers["ETag"]}, "other"'}), "logo.svg")
    changed = files.respond(request(**{"if-none-match": '"stale"'}), "logo.svg")

    assert (first.status_code, first.body, first.headers["Content-Type"]) == (200, "<svg/>", "image/svg+xml; charset=utf-8")
    assert again.status_code == 304 and again.body == ""
    assert changed.status_code == 200


def test_the_shipped_console_is_small_text_and_complete():
    manifest = ConsoleFiles(STATIC).manifest()

    assert {"index.html", "app.js", "styles.css"} <= set(manifest)
    assert sorted(manifest) == sorted(p.name for p in STATIC.iterdir()), "every shipped file is servable"
    assert sum(len(f.body.encode()) for f in manifest.values()) < 80_000


def sources(**overrides) -> StatusSources:
    values = {
        "runtime": "embedded", "stage": "local", "queues": [("inbound", lambda: 3), ("delivery", lambda: None)],
        "destinations": lambda: ["crm", "outbox"], "circuit_remaining": lambda: {"crm": 12.34}.get,
        "routing_rules": lambda: ("v7", "s3://rules/routing.yaml"), "event_rules": lambda: ("inline", "events.rules"),
        "parked": lambda limit: (2, False), "dead_letters": lambda limit: (limit, True),
    }
    return StatusSources(**{**values, **overrides})


def test_the_status_report_gathers_every_part():
    report = status_report(sources())

    assert report["queues"] == [{"name": "inbound", "depth": 3}, {"name": "delivery", "depth": None}]
    assert report["circuits"] == {"observed": True, "open": [{"destination": "crm", "open_for_seconds": 12.3}]}
    assert report["rules"]["routing"] == {"version": "v7", "source": "s3://rules/routing.yaml"}
    assert report["exceptions"] == {"count": 2, "more": False}
    assert report["dead_letters"] == {"count": 100, "more": True}


def test_a_part_that_cannot_be_read_is_reported_with_why_and_hides_no_other(caplog):
    def broken_queue():
        raise ConfigError("HUB_OUTBOUND_QUEUE_URL is not set")

    def bug(*_):
        raise KeyError("internal detail")

    report = status_report(sources(queues=[("outbound", broken_queue), ("inbound", lambda: 0)], routing_rules=bug,
                                   parked=bug, circuit_remaining=lambda: None))

    assert report["queues"] == [{"name": "outbound", "depth": None, "error": "HUB_OUTBOUND_QUEUE_URL is not set"},
                                {"name": "inbound", "depth": 0}]
    assert report["rules"]["routing"] == {"version": None, "source": None, "error": "could not be read (see the hub's log)"}
    assert "internal detail" not in json.dumps(report)
    assert report["exceptions"]["count"] is None
    assert report["circuits"]["observed"] is False and "delivery worker" in report["circuits"]["note"]
    assert report["dead_letters"] == {"count": 100, "more": True}
