"""I1 / I2 / I4 / I5: start-up of the ingest and worker entry points against their dependency floor.

Each measurement is a fresh interpreter (`python -c`), timed from its first statement:

* hub ingest  - `import app`, then what the first webhook builds: the Hub from the environment
                (runtime "aws"), its configuration, the channel adapter, the inbound queue (boto3
                SQS client) and the counters.
* hub worker  - `import app`, then what the first `process_inbound` batch builds: the Hub, its
                configuration, the inbound queue (app.py's handler passes it) and the processor
                (DynamoDB store, delivery queue).
* floors      - the same shape with the hub's code taken out: import exactly the modules of the
                runtime packages (chalice, pydantic, yaml, Powertools, boto3/botocore and what they
                pull in) that the hub's own start-up loaded, create a Chalice app and a Powertools
                Logger, and create the SQS client (ingest) or the SQS and DynamoDB clients (worker),
                with the hub's botocore Config.                            I1/I2: hub <= 1.2 x floor

Subjects and floors alternate run by run; each reports the median of RUNS runs after one discarded
warm-up run. Diagnostics: the modules `import app` + init loads beyond the floor (I5: no moto,
no phonenumbers, no test or CLI packages), whether a Powertools `Tracer` is created with tracing
off (I4: it must not be; a second child with HUB_TRACING=1 proves the check can see one), and the
`-X importtime` list of the heaviest imports.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.common import (
    CONFIG_YAML, REGION, ROOT, SECRET_ENV, Result, count_result, paired_ratio, queue_url, ratio_result,
)

NAME = "startup"
LIMIT = 1.2
#: Pairs per measurement. Start-up times on a shared 2-core VM swing by ±10 % run to run, and the
#: median of 9 pairs still moved by ±0.05 between invocations; 15 pairs halve that spread.
RUNS = 15
MARK = "BENCH_RESULT "

_PRELUDE = """
import time
_t0 = time.perf_counter()
_phases = []
def _phase(name):
    _phases.append((name, time.perf_counter()))
"""

_REPORT = """
_t1 = time.perf_counter()
import json, sys
_clients = {}
for _value in getattr(globals().get("hub"), "__dict__", {}).values():
    for _holder in (_value, getattr(_value, "_blobs", None), getattr(_value, "store", None),
                    getattr(_value, "delivery_queue", None)):
        _client = getattr(_holder, "_client", None)
        if getattr(_client, "meta", None) is not None:
            _clients[id(_client)] = _client.meta.service_model.service_name
_marks = [("", _t0)] + _phases + [("rest", _t1)]
_split = {name: end - start for (_, start), (name, end) in zip(_marks, _marks[1:])}
print(__MARK__ + json.dumps({"init": _t1 - _t0, "modules": sorted(sys.modules),
                             "clients": sorted(_clients.values()), "phases": _split}))
"""

HUB_INGEST = """
import app
_phase("import app")
from chalicelib.bootstrap import get_hub
hub = get_hub()
hub.config
hub.adapter("meta")
_phase("Hub + config + adapter")
hub.inbound_queue
_phase("inbound queue (AWS clients)")
hub.counters
"""

#: Diagnostic, after the timed start-up: what the S3 client the inbound queue's claim-check blob
#: store builds eagerly would cost at that point.
S3_PROBE = """
_t4 = time.perf_counter()
hub.aws_client("s3")
print(__MARK__ + json.dumps({"s3_client": time.perf_counter() - _t4}))
"""
HUB_INGEST_NO_S3 = HUB_INGEST.replace("hub.inbound_queue", 'hub.__dict__["blobs"] = None\nhub.inbound_queue')

HUB_WORKER = """
import app
_phase("import app")
from chalicelib.bootstrap import get_hub
hub = get_hub()
hub.config
_phase("Hub + config")
hub.inbound_queue
hub.processor
_phase("queues + store (AWS clients)")
"""

#: Third-party packages the entry points really need at runtime. The floor imports exactly the
#: modules of these packages that the hub's own start-up loaded (found from its `sys.modules`), so
#: it is the dependency closure alone; anything else the hub loads (tenacity on these paths, say)
#: counts against the hub.
RUNTIME_PACKAGES = frozenset({
    "chalice", "pydantic", "pydantic_core", "annotated_types", "typing_extensions", "typing_inspection",
    "yaml", "_yaml", "aws_lambda_powertools", "boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3",
    "certifi", "six",
})

#: The floor pauses the cyclic garbage collector while it imports, as app.py does while the app is
#: built (and freezes what it made), so the ratio compares the hub's code, not the two programs'
#: collector settings. The hub imports boto3 lazily, after app.py resumed collection; the floor
#: imports it paused: if anything, the floor gains.
FLOOR = """
import gc
gc.disable()
import importlib
for _name in __MODULES__:
    try:
        importlib.import_module(_name)
    except Exception:
        pass
import chalice.app
from aws_lambda_powertools import Logger
chalice.app.Chalice(app_name="floor")
Logger(service="floor")
gc.freeze()
gc.enable()
_phase("imports")
import boto3
from botocore.config import Config
_config = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})
for _service in __CLIENTS__:
    boto3.client(_service, config=_config)
_phase("AWS clients")
"""

#: The AWS clients each shape needs on its first request.
FLOOR_CLIENTS = {"ingest": ("sqs",), "worker": ("sqs", "dynamodb")}


def floor_code(shape: str, hub_modules: list[str]) -> str:
    modules = [m for m in hub_modules if m.split(".")[0] in RUNTIME_PACKAGES]
    return _timed(FLOOR.replace("__MODULES__", repr(modules)).replace("__CLIENTS__", repr(FLOOR_CLIENTS[shape])))


#: After init (not timed): one webhook through the route with SQS answered at `before-send`.
FIRST_REQUEST = """
import os, sys, time
sys.path.insert(0, os.getcwd())
from bench.common import LambdaContext, NullOutput, fixture_event, load_fixture, stub_sqs_network
stub_sqs_network(hub.inbound_queue._client)
with NullOutput():
    _t2 = time.perf_counter()
    _response = app.app(fixture_event(load_fixture("meta", "whatsapp_text")), LambdaContext())
    _t3 = time.perf_counter()
import chalicelib.observability as _obs
print(__MARK__ + json.dumps({
    "first_request": _t3 - _t2, "status": _response["statusCode"],
    "modules_after_request": sorted(sys.modules),
    "tracer_global": _obs._tracer is not None,
    "hub_tracer": getattr(hub, "tracer", None) is not None,
}))
"""

#: Counts Powertools Tracer instances created while the hub starts and serves one webhook.
TRACER_PROBE = """
import json, sys
_phase = lambda name: None
from aws_lambda_powertools.tracing import tracer as _tracer_module
_created = []
_original_init = _tracer_module.Tracer.__init__
def _counting_init(self, *args, **kwargs):
    _created.append(1)
    _original_init(self, *args, **kwargs)
_tracer_module.Tracer.__init__ = _counting_init
""" + HUB_INGEST + FIRST_REQUEST + """
print(__MARK__ + json.dumps({"tracers_created": len(_created), "xray_loaded": "aws_xray_sdk" in sys.modules}))
"""

#: Packages that must never be loaded by the deployed entry points (I5).
FORBIDDEN = ("moto", "pytest", "hypothesis", "werkzeug", "responses", "twilio", "slack_sdk", "standardwebhooks",
             "time_machine", "cfnlint", "click", "chalice.cli", "chalice.deploy", "chalice.local",
             "phonenumbers.geocoder", "phonenumbers.carrier", "phonenumbers.timezone", "aws_xray_sdk")


#: What Chalice gives every deployed function (`.chalice/config.json` → `environment_variables`),
#: PYDANTIC_DISABLE_PLUGINS among it: the children start as a deployed function starts, floors too.
DEPLOYED_ENVIRONMENT = ROOT / ".chalice" / "config.json"


def deployed_variables() -> dict[str, str]:
    """The variables every deployed function gets, whatever its stage (a stage only adds its name,
    its configuration file and the stack's resources, which the benchmark sets itself)."""
    return dict(json.loads(DEPLOYED_ENVIRONMENT.read_text())["environment_variables"])


def _environment(workdir: Path, tracing: bool = False) -> dict[str, str]:
    """The children's environment: a deployed function's variables, fake credentials, and a private
    bytecode cache (every .pyc, the hub's and the dependencies', is compiled once by the warm-up
    run into `workdir`, never into the repository). Subjects and floors get the same one."""
    config = workdir / "hub.yaml"
    config.write_text(CONFIG_YAML)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "POWERTOOLS_", "PYDANTIC_"))}
    env.update(deployed_variables())
    env.update(SECRET_ENV)
    env.update({
        "HUB_RUNTIME": "aws",
        "HUB_STAGE": "bench",
        "HUB_CONFIG": str(config),
        "HUB_DATA_DIR": str(workdir / "data"),
        "HUB_TABLE": "hub-bench",
        "HUB_INBOUND_QUEUE_URL": queue_url("hub-bench-inbound.fifo"),
        "HUB_DELIVERY_QUEUE_URL": queue_url("hub-bench-delivery.fifo"),
        "HUB_DELIVERY_DLQ_URL": queue_url("hub-bench-delivery-dlq.fifo"),
        "HUB_BUCKET": "hub-bench-bucket",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONPYCACHEPREFIX": str(workdir / "pycache"),
    })
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if tracing:
        env["HUB_TRACING"] = "true"
    return env


def _child(code: str, env: dict[str, str], *flags: str) -> tuple[list[dict], str]:
    completed = subprocess.run(
        [sys.executable, *flags, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"start-up child failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    results = [json.loads(line[len(MARK):]) for line in completed.stdout.splitlines() if line.startswith(MARK)]
    return results, completed.stderr


def _code(text: str) -> str:
    return text.replace("__MARK__", repr(MARK))


def _timed(body: str) -> str:
    return _code(_PRELUDE + body + _REPORT)


def _forbidden(modules) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))


def _top_level(modules: list[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def _third_party(modules: set[str]) -> set[str]:
    return {m for m in modules if m not in sys.stdlib_module_names and not m.startswith("_")
            and m not in ("app", "chalicelib", "__main__", "__mp_main__", "cython_runtime")}


#: Parts of the hub whose presence in a start-up says what it paid for (diagnostic): a webhook
#: needs its provider's package; the others load through the configuration's typing or eager imports.
HUB_PARTS = {
    "routing engine": ("chalicelib.routing.rules", "chalicelib.routing.conditions", "chalicelib.routing.actions",
                       "chalicelib.routing.context", "chalicelib.routing.engine", "chalicelib.routing.setup"),
    "enrichment engine": ("chalicelib.enrichment.comprehend", "chalicelib.enrichment.language"),
    "store": ("chalicelib.adapters.store",),
    "consumer services": ("chalicelib.service.customers", "chalicelib.service.operations"),
    "callback sides": ("chalicelib.adapters.callbacks",),
    "email sender proof": ("chalicelib.adapters.email_auth",),
}


def _hub_parts(modules) -> str:
    """Which channel packages, connector modules and other parts of the hub a start-up loaded."""
    def under(prefix: str, skip: tuple[str, ...]) -> list[str]:
        return sorted({m.split(".")[3] for m in modules if m.startswith(prefix) and m.count(".") >= 3
                       and m.split(".")[3] not in skip})

    channels = under("chalicelib.adapters.channels.", ("base", "registry", "json_body"))
    connectors = under("chalicelib.adapters.connectors.", ("registry",))
    parts = [name for name, packages in HUB_PARTS.items()
             if any(m == p or m.startswith(p + ".") for m in modules for p in packages)]
    return (f"hub parts loaded: channel packages {', '.join(channels) or 'none'}; connector modules "
            f"{', '.join(connectors) or 'none'}; also {', '.join(parts) or 'nothing else listed'}")


def _importtime(stderr: str, top: int = 8) -> tuple[str, float, str]:
    """From -X importtime: the heaviest top-level packages (cumulative), the hub's own modules'
    total self time, and the heaviest of them (self)."""
    cumulative: dict[str, int] = {}
    own = 0
    own_modules: dict[str, int] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        self_us, cumulative_us, raw_name = line[len("import time:"):].split("|")
        name = raw_name.strip()
        if name.split(".")[0] in ("chalicelib", "app"):
            own += int(self_us)
            own_modules[name] = int(self_us)
        if not raw_name.startswith("  "):  # a top-level import: the name is not indented
            package = name.split(".")[0]
            cumulative[package] = cumulative.get(package, 0) + int(cumulative_us)
    heaviest = sorted(cumulative.items(), key=lambda kv: -kv[1])[:top]
    heaviest_own = sorted(own_modules.items(), key=lambda kv: -kv[1])[:5]
    return (", ".join(f"{name} {us / 1000:.0f} ms" for name, us in heaviest), own / 1e6,
            ", ".join(f"{name} {us / 1000:.0f} ms" for name, us in heaviest_own))


def run() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="hub-bench-start-") as tmp:
        workdir = Path(tmp)
        env = _environment(workdir)
        # discovery (also the warm-up: compiles any stale .pyc): what the hub's start-up loads
        modules: dict[str, list[str]] = {}
        client_lists: dict[str, list[str]] = {}
        for shape, code in (("ingest", HUB_INGEST), ("worker", HUB_WORKER)):
            found = _child(_timed(code), env)[0][0]
            modules[f"hub {shape}"], client_lists[f"hub {shape}"] = found["modules"], found["clients"]
        subjects = {
            "floor ingest": floor_code("ingest", modules["hub ingest"]),
            "hub ingest": _timed(HUB_INGEST),
            "floor worker": floor_code("worker", modules["hub worker"]),
            "hub worker": _timed(HUB_WORKER),
        }
        samples: dict[str, list[float]] = {name: [] for name in subjects}
        phases: dict[str, list[dict[str, float]]] = {name: [] for name in subjects}
        for round_ in range(RUNS + 1):
            for name, code in subjects.items():
                results, _ = _child(code, env)
                if round_ == 0:
                    modules.setdefault(name, results[0]["modules"])  # warm-up run, not timed
                    continue
                samples[name].append(results[0]["init"])
                phases[name].append(results[0]["phases"])
        t = {name: statistics.median(values) for name, values in samples.items()}

        def split(name: str) -> str:
            keys = phases[name][0].keys()
            return ", ".join(f"{k} {statistics.median(p[k] for p in phases[name]) * 1e3:.0f}" for k in keys)

        # diagnostics (not timed against anything)
        s3_client = [_child(_timed(HUB_INGEST_NO_S3) + _code(S3_PROBE), env)[0][1]["s3_client"] for _ in range(5)]
        ingest_detail, _ = _child(_timed(HUB_INGEST) + _code(FIRST_REQUEST), env)
        _, importtime_err = _child(_timed(HUB_INGEST), env, "-X", "importtime")
        heaviest, own_seconds, heaviest_own = _importtime(importtime_err)
        tracer_off, _ = _child(_code(TRACER_PROBE), env)
        tracer_on, _ = _child(_code(TRACER_PROBE), _environment(workdir, tracing=True))
        tracing_init = statistics.median(
            _child(_timed(HUB_INGEST), _environment(workdir, tracing=True))[0][0]["init"] for _ in range(3)
        )

    results: list[Result] = []
    for shape, goal in (("ingest", "I1"), ("worker", "I2")):
        hub_modules = set(modules[f"hub {shape}"])
        floor_modules = set(modules[f"floor {shape}"])
        extra = hub_modules - floor_modules
        extra_third = sorted(_third_party(_top_level(sorted(extra))) - _third_party(_top_level(sorted(floor_modules))))
        extra_stdlib = sorted(m for m in _top_level(sorted(extra)) if m in sys.stdlib_module_names
                              and m not in _top_level(sorted(floor_modules)))
        foreign = Counter(m.split(".")[0] for m in extra if m.split(".")[0] not in ("chalicelib", "app"))
        clients = Counter(client_lists[f"hub {shape}"])
        results.append(ratio_result(
            f"{goal} {shape} init (import app + first-request objects) vs deps floor",
            t[f"hub {shape}"] * 1e3, t[f"floor {shape}"] * 1e3, LIMIT, "ms",
            ratio=paired_ratio(samples[f"hub {shape}"], samples[f"floor {shape}"]),
            note=f"phases (ms): hub {split(f'hub {shape}')}; floor {split(f'floor {shape}')}. "
                 f"AWS clients built: {', '.join(f'{k} x{v}' for k, v in sorted(clients.items()))} "
                 f"(floor: {', '.join(FLOOR_CLIENTS[shape])}); {len(extra)} modules beyond the floor, "
                 f"{sum(foreign.values())} of them not the hub's own "
                 f"({', '.join(f'{k} x{v}' for k, v in sorted(foreign.items())) or 'none'}); "
                 f"third-party packages beyond it: {', '.join(extra_third) or 'none'}; "
                 f"stdlib packages beyond it: {', '.join(extra_stdlib) or 'none'}; {_hub_parts(hub_modules)}",
        ))

    detail = ingest_detail[1]
    after = detail["modules_after_request"]
    forbidden_init = _forbidden(set(modules["hub ingest"]) | set(modules["hub worker"]))
    forbidden_request = _forbidden(after)
    results.append(count_result(
        "I5 non-runtime modules loaded by import app + init (+ 1st webhook)",
        len(set(forbidden_init) | set(forbidden_request)), "== 0",
        not forbidden_init and not forbidden_request, unit="modules",
        note=(f"init: {', '.join(forbidden_init) or 'none'}; first webhook adds: "
              f"{', '.join(sorted(set(forbidden_request) - set(forbidden_init))) or 'none'}; "
              f"phonenumbers loaded: init {'phonenumbers' in modules['hub ingest']}/"
              f"{'phonenumbers' in modules['hub worker']} (ingest/worker), "
              f"after 1st webhook {'phonenumbers' in after}"),
    ))
    off, on = tracer_off[-1], tracer_on[-1]
    results.append(count_result(
        "I4 Tracer instances created with HUB_TRACING off", off["tracers_created"], "== 0",
        off["tracers_created"] == 0, unit="tracers",
        note=f"aws_xray_sdk loaded: {off['xray_loaded']}; control with HUB_TRACING=1: "
             f"{on['tracers_created']} created (the probe works), init {tracing_init * 1e3:.0f} ms vs "
             f"{t['hub ingest'] * 1e3:.0f} ms off",
    ))
    s3 = statistics.median(s3_client)
    results[0].note += f"; the eager S3 client costs {s3 * 1e3:.0f} ms ({s3 / t['floor ingest']:.0%} of the floor)"
    results[0].note += (f"; first webhook after init {detail['first_request'] * 1e3:.1f} ms "
                        f"(HTTP {detail['status']}); -X importtime (inflates): heaviest {heaviest}; "
                        f"hub's own modules {own_seconds * 1e3:.0f} ms self, most in {heaviest_own}")
    return results
