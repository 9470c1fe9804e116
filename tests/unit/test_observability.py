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
    counters = Counters(emit_emf=True, deployment="prod")
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
    # Every document names the deployment's stage, a dimension of every metric in it.
    assert [d["deployment"] for d in documents] == ["prod"] * 3
    assert [d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for d in documents] == [
        [["deployment", "provider", "service"]], [["deployment", "destination", "service"]],
        [["deployment", "provider", "service"]]]


def test_two_deployments_emit_apart_and_the_hub_names_its_stage(capsys, tmp_path):
    """Two stages in one account and region publish separate series (the dashboard and alarms
    filter on `deployment`); the hub's counters take the stage from its settings (HUB_STAGE)."""
    for deployment in ("dev", "prod", "dev"):
        counters = Counters(emit_emf=True, deployment=deployment)
        counters.incr("Delivered", destination="crm")
        counters.flush()
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["deployment"], d["destination"], d["Delivered"]) for d in documents] == [
        ("dev", "crm", [1.0]), ("prod", "crm", [1.0]), ("dev", "crm", [1.0])]

    settings = Settings.from_environ({"HUB_STAGE": "staging", "HUB_RUNTIME": "aws", "HUB_DATA_DIR": str(tmp_path)})
    hub = Hub(settings, config=parse_config(""))  # building the counters touches no AWS resource
    hub.counters.incr("WebhooksReceived", provider="meta")
    hub.counters.flush()
    [document] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert document["deployment"] == "staging"


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


# --- redaction: personal data out of every part of a log record, ids left alone -----------------

import io  # noqa: E402
import logging  # noqa: E402

import pytest  # noqa: E402

from chalicelib.observability import RedactingFilter, redact  # noqa: E402

PHONE, EMAIL = "+4915123456789", "jana.schmidt@example.com"


@pytest.mark.parametrize("text", [
    "c8bf1c14-5bd2-4c56-9a3e-501234567890",       # a UUID whose last group is digits
    "4E7E3A5B-9C2D-4F1E-8A6B-123456789012",       # upper case
    "d1c2a3b4-0000-1111-2222-333344445555",
    "12345678-1234-1234-1234-123456789012",       # all digits, still a UUID
    "01J3ZK8Q9X4E5T6Y7U8I9O0P1A",                 # a ULID
    "cus_01M96TH0YVE0ATQJ4QM9XQ847T", "dlv_0123456789012345678901234567", "ct_0123456789",
    "SM0123456789abcdef0123456789abcdef",         # a Twilio message sid
    "order-20260101123456", "batch_2026_0101_123456",
    "2026-12-06T23:20:19.123456Z", "2024-01-01 12:00:00", "2024-01-01",
])
def test_ids_and_times_are_not_taken_for_phone_numbers(text):
    line = f"message {text} handled"

    assert redact(line) == line


@pytest.mark.parametrize(("text", "hidden"), [
    ("+14155550100", "4155550100"),
    ("+49 151 23456789", "23456789"),
    ("+44 (20) 7946-0958", "7946"),
    ("tel:+4915123456789", "4915123456789"),
    ("whatsapp:4915123456789", "4915123456789"),   # WhatsApp ids are numbers without the +
    ("phone:+16505550100 and c8bf1c14-5bd2-4c56-9a3e-501234567890", "6505550100"),
    ("0162 1234 5678", "1234 5678"),
    ("wa_id=4915123456789", "4915123456789"),
    ("jana.schmidt@example.com", "jana.schmidt"),
])
def test_phone_numbers_and_emails_are_redacted(text, hidden):
    cleaned = redact(f"from {text} at 2026-01-01 about cus_01M96TH0YVE0ATQJ4QM9XQ847T")

    assert hidden not in cleaned
    assert "[phone]" in cleaned or "[email]" in cleaned
    assert "cus_01M96TH0YVE0ATQJ4QM9XQ847T" in cleaned and "2026-01-01" in cleaned


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    """A logger with one real handler (the filter on it, as configure_logging installs it)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(f"tests.redaction.{id(stream)}")
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.DEBUG
    return logger, stream


def lookup(identifier: str) -> None:
    raise LookupError(f"no customer holds {identifier} (asked by {EMAIL})")


def test_a_logged_exceptions_traceback_is_redacted():
    logger, stream = capture(logging.Formatter("%(levelname)s %(message)s"))
    try:
        lookup(PHONE)
    except LookupError:
        logger.exception("lookup failed in request c8bf1c14-5bd2-4c56-9a3e-501234567890")

    output = stream.getvalue()
    assert "4915123456789" not in output and EMAIL not in output
    assert "Traceback (most recent call last)" in output and "in lookup" in output
    assert "LookupError: no customer holds [phone] (asked by [email])" in output
    assert "c8bf1c14-5bd2-4c56-9a3e-501234567890" in output


def test_chained_exceptions_and_notes_are_redacted_too():
    logger, stream = capture(logging.Formatter("%(message)s"))
    try:
        try:
            lookup(PHONE)
        except LookupError as cause:
            error = RuntimeError(f"retry for {EMAIL} failed")
            error.add_note(f"last number tried: {PHONE}")
            raise error from cause
    except RuntimeError:
        logger.error("giving up", exc_info=True)

    output = stream.getvalue()
    assert "4915123456789" not in output and EMAIL not in output
    assert "LookupError: no customer holds [phone]" in output
    assert "The above exception was the direct cause" in output
    assert "RuntimeError: retry for [email] failed" in output and "last number tried: [phone]" in output


def test_an_already_rendered_traceback_and_stack_info_are_redacted():
    logger, stream = capture(logging.Formatter("%(message)s"))
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "failed", (), None)
    record.exc_text = f"Traceback (most recent call last):\nValueError: {PHONE} / {EMAIL}"
    record.stack_info = f'Stack (most recent call last):\n  File "x.py", line 1\n    call("{PHONE}")'

    logger.handle(record)

    output = stream.getvalue()
    assert "4915123456789" not in output and EMAIL not in output
    assert "ValueError: [phone] / [email]" in output and 'call("[phone]")' in output


def test_a_stack_logged_with_stack_info_is_redacted():
    logger, stream = capture(logging.Formatter("%(message)s"))

    logger.warning("slow", stack_info=True); note = "+4915123456789"  # noqa: E702 (the line shows in the stack)

    assert note == PHONE and "Stack (most recent call last)" in stream.getvalue()
    assert "4915123456789" not in stream.getvalue()


def test_the_lambda_json_logs_carry_the_exception_redacted():
    """On AWS Powertools formats the record: its exception text and its structured stack trace
    are built from `exc_info`, not from the text a standard formatter renders."""
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    logger, stream = capture(LambdaPowertoolsFormatter(serialize_stacktrace=True))
    try:
        lookup(PHONE)
    except LookupError:
        logger.exception("lookup failed")

    output = stream.getvalue()
    document = json.loads(output)
    assert "4915123456789" not in output and EMAIL not in output
    assert document["exception_name"] == "LookupError"
    assert "LookupError: no customer holds [phone]" in document["exception"]
    assert document["stack_trace"]["type"] == "LookupError"
    assert document["stack_trace"]["value"] == "no customer holds [phone] (asked by [email])"
    assert any(frame["function"] == "lookup" for frame in document["stack_trace"]["frames"])


# --- EMF documents and JSON log lines, written by the hub itself (issue 14: ingest CPU) -----------


def test_emf_documents_match_what_powertools_prints():
    """The hand-written EMF document is the one Powertools' `EphemeralMetrics` prints, key for
    key and in order, apart from the timestamp."""
    import contextlib
    import io

    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    from chalicelib.observability import NAMESPACE, SERVICE, emf_document

    reference = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    reference.add_dimension(name="deployment", value="prod")
    reference.add_dimension(name="provider", value="meta")
    reference.add_metric(name="WebhooksReceived", unit=MetricUnit.Count, value=1)
    reference.add_metric(name="EventsEnqueued", unit=MetricUnit.Count, value=3)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        reference.flush_metrics()
    expected = json.loads(printed.getvalue())
    ours = json.loads(emf_document({"deployment": "prod", "provider": "meta"},
                                   [("WebhooksReceived", 1), ("EventsEnqueued", 3)],
                                   expected["_aws"]["Timestamp"]))

    assert ours == expected
    assert list(ours) == list(expected)


def test_a_flush_writes_one_document_per_dimension_set_and_splits_past_100_metrics(capsys):
    counters = Counters(emit_emf=True)
    for index in range(150):
        counters.incr(f"Metric{index}", index, stage="process")
    counters.incr("Delivered", destination="crm")
    counters.flush()

    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    process = [d for d in documents if d.get("stage") == "process"]
    assert [len(d["_aws"]["CloudWatchMetrics"][0]["Metrics"]) for d in process] == [100, 50]
    assert sum(len(d) for d in process) and process[1]["Metric149"] == [149.0]
    assert [d["Delivered"] for d in documents if d.get("destination") == "crm"] == [[1.0]]


def _json_capture():
    import io
    import logging

    from chalicelib.observability import JsonFormatter, RedactingFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(f"tests.json.{id(stream)}")
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.DEBUG
    return logger, stream


def test_json_log_lines_carry_the_correlation_id_and_powertools_keys():
    from chalicelib.observability import SERVICE, set_correlation_id

    logger, stream = _json_capture()
    set_correlation_id("c8bf1c14-5bd2-4c56-9a3e-501234567890")
    try:
        logger.info("webhook %s accepted: %d enqueued", "meta", 1)
    finally:
        set_correlation_id(None)
    logger.info("after the invocation")

    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "webhook meta accepted: 1 enqueued" and first["level"] == "INFO"
    assert first["correlation_id"] == "c8bf1c14-5bd2-4c56-9a3e-501234567890"
    assert first["service"] == SERVICE and first["location"].startswith("test_json_log_lines")
    assert first["timestamp"].endswith("+0000")
    assert "correlation_id" not in second


def test_json_log_lines_redact_the_message_and_the_exception():
    logger, stream = _json_capture()
    try:
        raise LookupError("no customer holds +4915123456789 (asked by ana@example.com)")
    except LookupError:
        logger.exception("lookup for %s failed", "ana@example.com")

    output = stream.getvalue()
    document = json.loads(output)
    assert "4915123456789" not in output and "ana@example.com" not in output
    assert document["message"] == "lookup for [email] failed"
    assert document["exception_name"] == "LookupError"
    assert "LookupError: no customer holds [phone] (asked by [email])" in document["exception"]
    assert document["stack_trace"]["type"] == "LookupError"
    assert document["stack_trace"]["value"] == "no customer holds [phone] (asked by [email])"
    assert any(frame["function"].startswith("test_json_log_lines") for frame in document["stack_trace"]["frames"])


from hypothesis import given, settings as hypothesis_settings, strategies as st  # noqa: E402


@hypothesis_settings(max_examples=400, deadline=None)
@given(st.text(alphabet="0123456789 ()-.+@_/:TZabcXY,é", max_size=60))
def test_the_fast_path_of_redact_never_keeps_what_the_full_substitution_masks(text):
    """`redact` skips the substitution when there is no '@' and no run of digits long enough to
    be a phone number; on any text that must be the full substitution's answer."""
    from chalicelib.observability import _redact_all, redact

    assert redact(text) == _redact_all(text)


_LABEL = st.text(alphabet="abcservice_aws\"é\\ ", min_size=1, max_size=8)


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.dictionaries(_LABEL, _LABEL, max_size=3),
       st.lists(st.tuples(_LABEL, st.floats(allow_nan=True) | st.integers(-10**6, 10**6)), max_size=4))
def test_an_emf_document_from_its_kept_template_is_the_one_serialised_whole(dimensions, metrics):
    """`emf_document` reuses the fixed text per dimension set and metric names (issue 14); with
    any labels (quotes, non-ASCII, names that clash with `service` or a dimension, repeats) and
    any values, twice in a row, it writes what serialising the whole document writes."""
    from chalicelib.observability import _emf_json, emf_document

    for timestamp in (1767225600123, 1767225600124, 1, 0, 1767225600123):
        assert emf_document(dimensions, metrics, timestamp) == _emf_json(dimensions, metrics, timestamp)


TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


def test_json_log_lines_carry_the_invocations_xray_trace_id(monkeypatch):
    """As Powertools logs it: the header's Root, read for every line, since the Lambda runtime
    sets `_X_AMZN_TRACE_ID` anew for each invocation."""
    logger, stream = _json_capture()
    monkeypatch.setenv("_X_AMZN_TRACE_ID", TRACE_HEADER)
    logger.info("first invocation")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-6759e988-0000000000000000000000aa;Parent=1;Sampled=0")
    logger.info("second invocation")

    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert second["xray_trace_id"] == "1-6759e988-0000000000000000000000aa"


def test_json_log_lines_without_a_trace_have_no_xray_trace_id(monkeypatch):
    logger, stream = _json_capture()
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    logger.info("outside Lambda")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "")
    logger.info("an empty header")

    assert all("xray_trace_id" not in json.loads(line) for line in stream.getvalue().splitlines())


def test_the_trace_id_is_the_one_powertools_logs(monkeypatch):
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    from chalicelib.settings import xray_trace_id

    monkeypatch.setenv("_X_AMZN_TRACE_ID", TRACE_HEADER)
    assert xray_trace_id() == LambdaPowertoolsFormatter()._get_latest_trace_id()


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)) | st.sampled_from('"\\\x00\x1f\u2028é\ud800'),
                max_size=40)


@hypothesis_settings(max_examples=300, deadline=None)
@given(message=_TEXT, correlation_id=st.none() | _TEXT, trace=st.none() | _TEXT, function=_TEXT)
def test_a_plain_line_written_key_by_key_is_the_encoders_document(message, correlation_id, trace, function):
    """Lines without an exception are written key by key (issue 14: ingest CPU); with any text
    (quotes, controls, non-ASCII, lone surrogates) they are what encoding the document writes."""
    import logging
    from unittest import mock

    from chalicelib import observability

    record = logging.LogRecord("chalicelib.x", logging.WARNING, __file__, 7, "%s", (message,), None, func=function)
    formatter = observability.JsonFormatter()
    document = {"level": "WARNING", "location": f"{function}:7", "message": message,
                "timestamp": formatter.formatTime(record), "service": observability.SERVICE}
    if correlation_id is not None:
        document["correlation_id"] = correlation_id
    if trace is not None:
        document["xray_trace_id"] = trace

    with mock.patch.object(observability, "_correlation_id", correlation_id), \
            mock.patch.object(observability, "xray_trace_id", lambda: trace):
        assert formatter.format(record) == observability._LINE_ENCODER.encode(document)


def test_metrics_riding_on_a_line_no_json_handler_writes_are_written_on_their_own(capsys):
    """`flush_with_line` hands the documents to the hub's JSON handler; any other handler
    leaves them to a write of their own, after the line, so no count is lost."""
    import io
    import logging

    stream = io.StringIO()
    logger = logging.getLogger("tests.trailer.plain")
    logger.handlers, logger.propagate, logger.level = [logging.StreamHandler(stream)], False, logging.INFO
    counters = Counters(emit_emf=True)
    counters.incr("WebhooksReceived", provider="meta")
    counters.flush_with_line(logger, logging.INFO, "webhook %s accepted", "meta")

    assert stream.getvalue() == "webhook meta accepted\n"
    assert [json.loads(line)["WebhooksReceived"] for line in capsys.readouterr().out.splitlines()] == [[1.0]]
    counters.flush_with_line(logger, logging.INFO, "nothing counted")
    assert capsys.readouterr().out == ""


def _records_of(logger_name: str):
    import logging

    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    keep = Keep()
    logger = logging.getLogger(logger_name)
    logger.handlers, logger.propagate, logger.level = [keep], False, logging.INFO
    return logger, keep.records


def _log_as_caller(logger, message, *args):
    """A stand-in for `Counters.flush_with_line`: the line is its caller's."""
    import logging

    from chalicelib.observability import log_from_caller

    log_from_caller(logger, logging.INFO, message, args, {"hub_test_extra": 1})


def test_a_line_logged_for_the_caller_is_the_record_logger_log_makes(monkeypatch):
    """`log_from_caller` builds the record itself (the cheap path, as on Lambda, where threads and
    processes are not collected): every attribute but the time is what `logger.log` with
    `stacklevel=2` makes, and the time is now."""
    import logging
    import sys
    import time

    for flag in ("logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, flag, False)
    logger, records = _records_of("tests.log_from_caller.cheap")

    def caller():
        before, line = time.time(), sys._getframe().f_lineno + 1
        _log_as_caller(logger, "webhook %s accepted: %d enqueued", "meta", 1)
        logger.log(logging.INFO, "webhook %s accepted: %d enqueued", "meta", 1, extra={"hub_test_extra": 1})
        return before, line

    before, line = caller()
    fast, slow = records
    assert fast.lineno == line and fast.funcName == "caller" and fast.pathname == slow.pathname
    assert fast.getMessage() == "webhook meta accepted: 1 enqueued" and fast.hub_test_extra == 1
    times = ("created", "msecs", "relativeCreated", "lineno")
    assert {k: v for k, v in vars(fast).items() if k not in times} == {k: v for k, v in vars(slow).items() if k not in times}
    assert before <= fast.created <= slow.created
    assert type(fast) is logging.LogRecord


def test_a_line_logged_for_the_caller_takes_logger_log_when_the_record_could_differ(monkeypatch):
    import logging

    logger, records = _records_of("tests.log_from_caller.fallback")
    monkeypatch.setattr(logging, "logThreads", True)
    _log_as_caller(logger, "with threads")
    monkeypatch.setattr(logging, "logThreads", False)
    monkeypatch.setattr(logging, "logProcesses", False)
    monkeypatch.setattr(logging, "logMultiprocessing", False)
    _log_as_caller(logger, "a mapping: %(n)s", {"n": 1})
    logger.setLevel(logging.WARNING)
    _log_as_caller(logger, "below the level")

    assert [r.getMessage() for r in records] == ["with threads", "a mapping: 1"]
    assert records[0].thread is not None
    assert all(r.funcName.startswith("test_a_line_logged") for r in records)


def test_the_json_line_of_a_call_site_seen_before_names_that_site_and_its_service():
    """The text before the message is kept per call site; the service may be renamed."""
    import logging

    from chalicelib.observability import JsonFormatter

    formatter = JsonFormatter(service="first")
    lines = []
    for lineno, function in ((10, "one"), (10, "one"), (11, "one"), (10, "two")):
        record = logging.LogRecord("x", logging.INFO, "x.py", lineno, "m", (), None, function)
        lines.append(json.loads(formatter.format(record)))
    assert [line["location"] for line in lines] == ["one:10", "one:10", "one:11", "two:10"]
    formatter.service = "second"
    record = logging.LogRecord("x", logging.WARNING, "x.py", 10, "m", (), None, "one")
    line = json.loads(formatter.format(record))
    assert (line["service"], line["level"], line["location"]) == ("second", "WARNING", "one:10")
