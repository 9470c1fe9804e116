"""Logs, metrics and traces, with personal data kept out of all three.

- Logs: one JSON document per record on AWS, in Powertools' shape (level, location, message,
  timestamp, service, correlation_id = API Gateway request id or SQS message id, exception,
  exception_name, stack_trace, xray_trace_id = the invocation's trace, read through
  `settings.xray_trace_id`), written by a formatter of our own: the Powertools Logger cost ~65 µs
  a line, a third of a webhook's CPU. Plain lines locally. A redaction filter masks email addresses and phone numbers in every record,
  as a safety net behind the rule that message text and identifiers are never logged.
- Metrics: counters accumulated during an invocation and flushed once as CloudWatch EMF (one
  document per dimension set), so a batch costs one log line per channel, not per message. Every
  document also carries the deployment's stage (`deployment`, from HUB_STAGE), so two stages in
  one account and region stay apart on their dashboards and alarms. The
  documents are serialised here, in the shape Powertools' `EphemeralMetrics` prints (a test holds
  them equal), at a tenth of its cost.
- Traces: Powertools `Tracer` only when `HUB_TRACING` is on; creating it costs ~0.3 s of cold start.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Mapping

from chalicelib.settings import Settings, xray_trace_id

SERVICE = "omnichannel-hub"
NAMESPACE = "OmnichannelHub"
#: The dimension every EMF document carries the deployment's stage (`Settings.stage`) in. Not
#: `stage`: that one names a pipeline step (process, deliver, send, events) on the step counters.
DEPLOYMENT_DIMENSION = "deployment"

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
#: What the phone pattern would otherwise take for a number, kept whole: UUIDs (SQS message ids,
#: request ids), ISO dates and times, and any run of ASCII letters, digits, '_' and '-' holding
#: a letter or '_' (ULIDs, `cus_01J…`, Twilio's `SM…`, `order-20260101…`).
_NOT_A_PHONE = (
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![\w-])"
    r"|\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?(?![\d-])"
    r"|[A-Za-z0-9_-]*[A-Za-z_][A-Za-z0-9_-]*"
)
#: Digits with the separators people write, 8 characters or more (E.164, national, WhatsApp's wa_id).
_PHONE = r"(?<![\w/])\+?\d[\d ()\-.]{6,}\d(?![\w/])"
_TOKENS = re.compile(f"(?P<keep>{_NOT_A_PHONE})|{_PHONE}")


#: The core every `_PHONE` match contains: text without it (and without '@') has nothing to mask.
_MAYBE_PHONE = re.compile(r"\d[\d ()\-.]{6,}\d")


def redact(text: str) -> str:
    """`text` with email addresses and phone numbers masked; ids and times are left alone."""
    if "@" not in text and _MAYBE_PHONE.search(text) is None:
        return text  # the common log line: a tenth of the cost of the full substitution
    return _redact_all(text)


def _redact_all(text: str) -> str:
    return _TOKENS.sub(_phone, _EMAIL.sub("[email]", text))


def _phone(match: re.Match) -> str:
    return match.group() if match.group("keep") is not None else "[phone]"


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is now (test runners and daemons swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class RedactingFilter(logging.Filter):
    """Masks personal data in every part of a record a formatter prints: the message, the
    traceback (as text, and as the exception Powertools formats again from `exc_info`), and the
    stack. Exceptions are where it hides: a driver or vendor error echoes the values it got."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Stored formatted, so the formatter does not format the arguments again.
        record.msg, record.args = redact(record.getMessage()), ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_info = (record.exc_info[0], _redacted_exception(record.exc_info[1]), record.exc_info[2])
            record.exc_text = None  # rendered again, from the redacted exception
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class _Redacted(Exception):
    """Stands in for a logged exception: the same type name, module and traceback, its text
    and notes redacted, and its cause and context chain redacted alike."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._text = text

    def __str__(self) -> str:
        return self._text


_standins: dict[type, type] = {}


def _redacted_exception(error: BaseException, _depth: int = 0) -> BaseException:
    if isinstance(error, _Redacted):
        return error
    kind = type(error)
    standin = _standins.get(kind)
    if standin is None:
        # Named like the original, so tracebacks and Powertools' `stack_trace.type` read the same.
        standin = _standins[kind] = type(kind.__name__, (_Redacted,), {
            "__module__": kind.__module__, "__qualname__": kind.__qualname__,
        })
    try:
        text = str(error)
    except Exception:  # an exception whose __str__ fails is still logged
        text = f"<unprintable {kind.__name__}>"
    copy = standin(redact(text))
    copy.__traceback__ = error.__traceback__
    copy.__suppress_context__ = error.__suppress_context__
    if notes := getattr(error, "__notes__", None):
        copy.__notes__ = [redact(str(note)) for note in notes]
    if _depth < 20:  # chains are short; a cycle must not recurse forever
        if error.__cause__ is not None:
            copy.__cause__ = _redacted_exception(error.__cause__, _depth + 1)
        if error.__context__ is not None:
            copy.__context__ = (copy.__cause__ if error.__context__ is error.__cause__
                                else _redacted_exception(error.__context__, _depth + 1))
    return copy


#: The record attribute `Counters.flush_with_line` hands its EMF documents over in.
_TRAILER = "hub_emf_trailer"


class _Trailer:
    """Text to write right after a record's line, in the same write; `written` once it was."""

    __slots__ = ("text", "written")

    def __init__(self, text: str) -> None:
        self.text = text
        self.written = False


class _CurrentStdoutHandler(logging.StreamHandler):
    """Writes to whatever `sys.stdout` is now (Lambda ships stdout; tests capture it), a record's
    trailer (`Counters.flush_with_line`) in the same write as its line."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        trailer = record.__dict__.get(_TRAILER)
        if trailer is None or trailer.written:
            super().emit(record)
            return
        try:
            line = self.format(record)
            stream = self.stream
            stream.write(f"{line}{self.terminator}{trailer.text}")
            trailer.written = True
            stream.flush()  # `Handler.handle` holds the lock `StreamHandler.flush` would take again
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)


_correlation_id: str | None = None
#: One encoder for every line: `json.dumps` with options builds a new one per call.
_LINE_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False, separators=(",", ":"))
#: A string as that encoder writes it (non-ASCII kept, quotes, backslashes and controls escaped).
_quote = json.encoder.encode_basestring


class JsonFormatter(logging.Formatter):
    """A record as one JSON line with Powertools' keys, at a fraction of its cost: no key
    templates, one encoder, the time's seconds formatted once per second. The `RedactingFilter`
    runs before it, so the message and the exception it prints are already redacted."""

    def __init__(self, service: str = SERVICE) -> None:
        super().__init__()
        self.service = service
        self._heads: dict[tuple, str] = {}
        self._second: tuple[int, str] = (-1, "")

    @property
    def service(self) -> str:
        return self._service

    @service.setter
    def service(self, value: str) -> None:
        self._service = value
        self._service_field = ',"service":' + _quote(value)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        second = int(record.created)
        cached_second, text = self._second
        if second != cached_second:
            text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        return f"{text},{int(record.msecs):03d}+0000"

    def format(self, record: logging.LogRecord) -> str:
        if not (record.exc_info or record.exc_text or record.stack_info):
            line = self._plain_line(record)
            if line is not None:
                return line
        document: dict[str, object] = {
            "level": record.levelname,
            "location": f"{record.funcName}:{record.lineno}",
            "message": record.getMessage(),
            "timestamp": self.formatTime(record),
            "service": self.service,
        }
        if _correlation_id is not None:
            document["correlation_id"] = _correlation_id
        if record.exc_info and record.exc_info[1] is not None:
            kind, error, tb = record.exc_info
            # Redacted once more as text: the source lines a traceback quotes are not the filter's.
            document["exception"] = redact(self.formatException(record.exc_info))
            document["exception_name"] = getattr(kind, "__name__", type(error).__name__)
            document["stack_trace"] = {
                "type": type(error).__name__,
                "value": redact(str(error)),
                "module": type(error).__module__,
                "frames": [{"file": frame.filename, "line": frame.lineno, "function": frame.name,
                            "statement": redact(frame.line or "")} for frame in traceback.extract_tb(tb)],
            }
        elif record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack_info"] = record.stack_info
        if (trace_id := xray_trace_id()) is not None:
            document["xray_trace_id"] = trace_id
        return _LINE_ENCODER.encode(document)

    def _plain_line(self, record: logging.LogRecord) -> str | None:
        """The line of a record without exception or stack, written key by key: the same text as
        `_LINE_ENCODER` makes of the document (a test holds them equal), at half its cost, on the
        path of every webhook. None when a value is not text (the encoder decides then)."""
        message, correlation_id, trace_id = record.getMessage(), _correlation_id, xray_trace_id()
        if not (isinstance(message, str) and isinstance(correlation_id, (str, type(None)))
                and isinstance(trace_id, (str, type(None))) and isinstance(record.funcName, str)):
            return None
        site = (record.levelname, record.funcName, record.lineno)
        head = self._heads.get(site)
        if head is None:  # the text before the message, the same for every line of a call site
            if len(self._heads) >= _MAX_CALL_SITES:
                self._heads.clear()
            head = self._heads[site] = "".join((
                '{"level":', _quote(record.levelname), ',"location":', _quote(f"{record.funcName}:{record.lineno}"),
                ',"message":'))
        return "".join((
            head, _quote(message), ',"timestamp":', _quote(self.formatTime(record)), self._service_field,
            "" if correlation_id is None else ',"correlation_id":' + _quote(correlation_id),
            "" if trace_id is None else ',"xray_trace_id":' + _quote(trace_id),
            "}",
        ))


_configured = False


def configure_logging(settings: Settings) -> None:
    """Install the handler on the `chalicelib` logger tree once per process."""
    global _configured
    if _configured:
        return
    root = logging.getLogger("chalicelib")
    root.setLevel(settings.log_level.upper())
    root.propagate = False
    root.handlers = [log_handler(on_aws=settings.on_aws)]
    if settings.on_aws:
        # Lambda runs one invocation at a time in one process, and no line printed there (ours,
        # the runtime's) names a thread or process: not collecting them into every record saves
        # a third of creating one, on the path of every webhook.
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    _configured = True


def log_handler(*, on_aws: bool) -> logging.Handler:
    """The one handler of the `chalicelib` tree: JSON lines to stdout on AWS, plain lines to
    stderr locally, the redaction filter on both."""
    handler: logging.Handler
    if on_aws:
        handler = _CurrentStdoutHandler()
        handler.setFormatter(JsonFormatter())
    else:
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    return handler


def set_correlation_id(value: str | None) -> None:
    """The id every JSON log line carries until the next call (one invocation on Lambda)."""
    global _correlation_id
    _correlation_id = value


#: CloudWatch takes at most 100 metrics in one EMF document (Powertools splits alike).
MAX_METRICS_PER_DOCUMENT = 100


def emf_document(dimensions: dict[str, str], metrics: list[tuple[str, float]], timestamp_ms: int) -> str:
    """One CloudWatch EMF document, as Powertools' `EphemeralMetrics(namespace=NAMESPACE,
    service=SERVICE)` prints it: the service is a dimension, every metric a Count.

    Only the timestamp and the values change from one flush to the next, so the rest is
    serialised once per dimension set and metric names (a handful per hub) and kept: a third
    of the cost of `_emf_json`, which writes the same text (a test holds them equal)."""
    return _emf_line(tuple(dimensions.items()), metrics, timestamp_ms)


def _emf_line(dimensions: tuple[tuple[str, str], ...], metrics: list[tuple[str, float]], timestamp_ms: int) -> str:
    # A webhook's flush counts the same few things by the same values each time: the document's
    # text around its timestamp is kept by what it counts (the rest of it follows from that).
    seen = (dimensions, tuple(metrics))
    kept = _emf_documents.get(seen)
    if kept is not None:
        return f"{kept[0]}{timestamp_ms}{kept[1]}"
    text = _emf_line_of_templates(dimensions, metrics, timestamp_ms)
    head, _, tail = text.partition(f"{timestamp_ms}")
    if head == _EMF_HEAD:  # the timestamp is where a template puts it (not so for `_emf_json`'s order)
        if len(_emf_documents) >= _MAX_EMF_TEMPLATES:
            _emf_documents.clear()
        _emf_documents[seen] = (head, tail)
    return text


_EMF_HEAD = '{"_aws":{"Timestamp":'
_emf_documents: dict[tuple, tuple[str, str]] = {}


def _emf_line_of_templates(dimensions: tuple[tuple[str, str], ...], metrics: list[tuple[str, float]],
                           timestamp_ms: int) -> str:
    names = tuple([name for name, _ in metrics])
    key = (dimensions, names)
    template = _emf_templates.get(key, _UNKNOWN)
    if template is _UNKNOWN:
        if len(_emf_templates) >= _MAX_EMF_TEMPLATES:  # labels are bounded by configuration: a guard
            _emf_templates.clear()
        template = _emf_templates[key] = _emf_template(dict(dimensions), names)
    if template is None:
        return _emf_json(dict(dimensions), metrics, timestamp_ms)
    head, tail, prefixes = template
    values = []
    for prefix, (_, value) in zip(prefixes, metrics):
        number = float(value)
        if not math.isfinite(number):
            return _emf_json(dict(dimensions), metrics, timestamp_ms)
        values.append(f",{prefix}{number!r}]")
    return f"{head}{timestamp_ms}{tail}{''.join(values)}}}"


_emf_templates: dict[tuple, tuple[str, str, list[str]] | None] = {}
_UNKNOWN = object()
_MAX_EMF_TEMPLATES = 512


def _emf_template(dimensions: dict[str, str], names: tuple[str, ...]) -> tuple[str, str, list[str]] | None:
    """The document's text before the timestamp, from the timestamp to the first metric, and each
    metric's `"Name":[`. None when a name repeats or clashes with another key (`_aws`,
    `service`, a dimension): `_emf_json` then decides what such a document holds."""
    reserved = {"_aws", "service"}
    if len(set(names)) != len(names) or (reserved | set(dimensions)) & set(names) or reserved & set(dimensions):
        return None
    cloudwatch = json.dumps({"CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [[*dimensions, "service"]],
                                                    "Metrics": [{"Name": name, "Unit": "Count"} for name in names]}]},
                            separators=(",", ":"))
    labels = "".join(f",{json.dumps(k)}:{json.dumps(v)}" for k, v in [*dimensions.items(), ("service", SERVICE)])
    return '{"_aws":{"Timestamp":', f",{cloudwatch[1:-1]}}}{labels}", [json.dumps(name) + ":[" for name in names]


def _emf_json(dimensions: dict[str, str], metrics: list[tuple[str, float]], timestamp_ms: int) -> str:
    names = [*dimensions, "service"]
    document: dict[str, object] = {"_aws": {
        "Timestamp": timestamp_ms,
        "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [names],
                               "Metrics": [{"Name": name, "Unit": "Count"} for name, _ in metrics]}],
    }}
    document.update(dimensions)
    document["service"] = SERVICE
    for name, value in metrics:
        document[name] = [float(value)]
    return json.dumps(document, separators=(",", ":"))


class Counters:
    """Thread-safe counters by name and dimensions, flushed as EMF on AWS.

    `deployment` is the stage the process serves (`Settings.stage`, whose default it shares):
    every document carries it as the `DEPLOYMENT_DIMENSION`, added per document at the flush,
    not per `incr`, so counting stays a dict key. The counts themselves (`total`, `snapshot`)
    are the process's own and do not name it."""

    def __init__(self, *, emit_emf: bool, deployment: str = "local") -> None:
        self._emit = emit_emf
        self._deployment = ((DEPLOYMENT_DIMENSION, deployment),)
        self._lock = threading.Lock()
        self._pending: dict[tuple, float] = defaultdict(float)
        self._totals: dict[tuple, float] = defaultdict(float)

    def incr(self, name: str, value: float = 1, **dimensions: str) -> None:
        key = (name, tuple(sorted(dimensions.items())) if len(dimensions) > 1 else tuple(dimensions.items()))
        with self._lock:
            self._pending[key] += value
            self._totals[key] += value

    def flush(self) -> None:
        """Emit what was counted since the last flush: one EMF document per dimension set, all
        in one write."""
        if documents := self._take_documents():
            sys.stdout.write(documents)

    def flush_with_line(self, logger: logging.Logger, level: int, message: str, *args: object) -> None:
        """`flush`, and `logger.log(level, message, *args)`, in one write: Lambda's runtime writes
        stdout through on every write, so a webhook's metrics and its log line would otherwise be
        two writes (and two log events). The documents ride on the record and the hub's JSON
        handler writes them with the line; when nothing did (the level is off, another handler,
        a failed write), they get a write of their own, so no count is lost."""
        documents = self._take_documents()
        # stacklevel: the line's `location` is the caller's, as if it had logged itself.
        if not documents:
            log_from_caller(logger, level, message, args)
            return
        trailer = _Trailer(documents)
        log_from_caller(logger, level, message, args, {_TRAILER: trailer})
        if not trailer.written:
            sys.stdout.write(documents)

    def _take_documents(self) -> str:
        """The EMF documents of what was counted since the last call, newline-terminated ("" for
        none), the counts taken."""
        with self._lock:
            pending = self._pending
            if not pending:
                return ""
            self._pending = defaultdict(float)
        if not self._emit:
            return ""
        by_dimensions: dict[tuple, list[tuple[str, float]]] = {}
        for (name, dims), value in pending.items():
            metrics = by_dimensions.get(dims)
            if metrics is None:
                by_dimensions[dims] = [(name, value)]
            else:
                metrics.append((name, value))
        timestamp = int(time.time() * 1000)
        lines = []
        deployment = self._deployment
        for dims, metrics in by_dimensions.items():
            dims = deployment + dims
            if len(metrics) <= MAX_METRICS_PER_DOCUMENT:
                lines.append(_emf_line(dims, metrics, timestamp))
                continue
            for start in range(0, len(metrics), MAX_METRICS_PER_DOCUMENT):
                lines.append(_emf_line(dims, metrics[start:start + MAX_METRICS_PER_DOCUMENT], timestamp))
        lines.append("")
        return "\n".join(lines)

    def total(self, name: str, **dimensions: str) -> float:
        with self._lock:
            return self._totals.get((name, tuple(sorted(dimensions.items()))), 0.0)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {
                name + "".join(f"[{k}={v}]" for k, v in dims): value for (name, dims), value in self._totals.items()
            }


def log_from_caller(logger: logging.Logger, level: int, message: str, args: tuple,
                    extra: dict[str, object] | None = None) -> None:
    """`logger.log(level, message, *args, extra=extra)` for the caller of the function calling
    this (its `location`), with the record that call would make, at half its cost: on the path
    of every webhook. `Logger.findCaller` walks the stack past logging's own frames, and
    `LogRecord` works out the file's base name and module per record; here the caller is one
    frame up, and what a record holds of its call site is worked out once per call site.
    Anything that could make the record differ (a record factory or logger class of its own,
    threads or processes collected, a mapping as the only argument) takes `logger.log`."""
    if not logger.isEnabledFor(level):
        return
    frame = sys._getframe(2)
    if (logging.logThreads or logging.logProcesses or logging.logMultiprocessing
            or logging.getLogRecordFactory() is not logging.LogRecord
            or type(logger).makeRecord is not logging.Logger.makeRecord
            or (len(args) == 1 and isinstance(args[0], Mapping))):
        logger.log(level, message, *args, extra=extra, stacklevel=3)
        return
    code = frame.f_code
    site = (logger.name, level, code.co_filename, frame.f_lineno, code.co_name)
    fields = _call_sites.get(site)
    if fields is None:
        if len(_call_sites) >= _MAX_CALL_SITES:  # call sites are bounded by the code: a guard
            _call_sites.clear()
        fields = _call_sites[site] = logging.LogRecord(*site[:4], "", (), None, site[4]).__dict__
    record = logging.LogRecord.__new__(logging.LogRecord)
    values = record.__dict__
    values.update(fields)
    created = time.time()
    values["msg"], values["args"] = message, args
    values["created"], values["msecs"] = created, int((created - int(created)) * 1000) + 0.0
    values["relativeCreated"] = (created - logging._startTime) * 1000
    if extra:
        for key in extra:  # as `Logger.makeRecord` refuses them
            if key in ("message", "asctime") or key in values:
                raise KeyError(f"Attempt to overwrite {key!r} in LogRecord")
        values.update(extra)
    logger.handle(record)


#: What a `LogRecord` holds of its call site (file, module, line, function, level, logger), by site.
_call_sites: dict[tuple, dict[str, object]] = {}
_MAX_CALL_SITES = 1024


_tracer = None
_tracer_lock = threading.Lock()


def get_tracer(settings: Settings):
    """The Powertools Tracer when tracing is on, else None (callers skip annotations)."""
    global _tracer
    if not settings.tracing:
        return None
    with _tracer_lock:
        if _tracer is None:
            try:
                import aws_xray_sdk  # noqa: F401
            except ImportError:
                # Not in the Lambda zip on purpose (it brings its own botocore): tracing stages add
                # the AWS-published Powertools layer. Without it, run untraced rather than fail.
                logging.getLogger(__name__).warning(
                    "HUB_TRACING is on but the AWS X-Ray SDK is not installed: add the Powertools Lambda "
                    "layer (docs/deploy.md); running without traces"
                )
                return None
            from aws_lambda_powertools import Tracer

            _tracer = Tracer(service=SERVICE)
        return _tracer
