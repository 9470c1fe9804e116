from __future__ import annotations

import json

from chalicelib.bootstrap import Hub
from chalicelib.hubconfig import parse_config
from chalicelib.observability import Counters
from chalicelib.settings import Settings


def test_the_tracer_exists_only_when_tracing_is_on(tmp_path):
    off = Hub(Settings(data_dir=str(tmp_path)), config=parse_config(""))
    on = Hub(Settings(data_dir=str(tmp_path), tracing=True), config=parse_config(""))

    assert off.tracer is None
    assert type(on.tracer).__name__ == "Tracer"
    on.annotate(provider="twilio")  # outside Lambda the tracer is disabled, annotating is safe
    off.annotate(provider="twilio")


def test_emf_documents_carry_only_what_was_counted_since_the_last_flush(capsys):
    counters = Counters(emit_emf=True)
    counters.incr("WebhooksReceived", provider="twilio")
    counters.incr("EventsEnqueued", 3, provider="twilio")
    counters.incr("Delivered", destination="crm")
    counters.flush()
    counters.incr("WebhooksReceived", provider="twilio")
    counters.flush()
    counters.flush()

    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(documents) == 3
    first, second, third = documents
    assert (first["provider"], first["WebhooksReceived"], first["EventsEnqueued"]) == ("twilio", [1.0], [3.0])
    assert first["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "OmnichannelHub"
    assert (second["destination"], second["Delivered"]) == ("crm", [1.0])
    assert third["WebhooksReceived"] == [1.0] and "EventsEnqueued" not in third
    assert counters.total("WebhooksReceived", provider="twilio") == 2


def test_local_counters_emit_nothing(capsys):
    counters = Counters(emit_emf=False)
    counters.incr("WebhooksReceived", provider="twilio")
    counters.flush()

    assert capsys.readouterr().out == ""
    assert counters.snapshot() == {"WebhooksReceived[provider=twilio]": 1.0}


def test_tracing_without_the_xray_sdk_runs_untraced_with_a_warning(tmp_path, monkeypatch, caplog):
    import sys

    from chalicelib import observability

    monkeypatch.setitem(sys.modules, "aws_xray_sdk", None)  # not importable, as in the Lambda zip
    monkeypatch.setattr(observability, "_tracer", None)

    with caplog.at_level("WARNING", logger="chalicelib.observability"):
        hub = Hub(Settings(data_dir=str(tmp_path), tracing=True), config=parse_config(""))

    assert hub.tracer is None
    assert "X-Ray SDK is not installed" in caplog.text
