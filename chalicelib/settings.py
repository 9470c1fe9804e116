"""Process settings: the only module that reads `os.environ`.

Everything about *what* the hub does lives in the hub configuration file (`hubconfig.py`); this is
only *where* it runs: which runtime, which AWS resources, which directories.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from chalicelib.domain.values import Value

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "chalicelib" / "conf" / "local.yaml"


class Settings(Value):
    """A `Value` (a frozen record defined at no import cost; `values.replace` copies it with
    changes); its repr leaves out `environ`, which holds secrets."""

    #: `embedded` (SQLite store, local queue, local blobs) or `aws` (DynamoDB, SQS, S3).
    runtime: str = "embedded"
    stage: str = "local"
    config_path: str = str(DEFAULT_CONFIG)
    data_dir: str = str(PROJECT_ROOT / "data")
    host: str = "127.0.0.1"
    port: int = 8000
    #: Worker threads per queue in the embedded runtime.
    local_workers: int = 2
    #: Threads that run HTTP requests in the embedded runtime (connections beyond them wait,
    #: buffered by the server, never refused).
    http_threads: int = 16
    table_name: str = ""
    inbound_queue_url: str = ""
    delivery_queue_url: str = ""
    delivery_dlq_url: str = ""
    outbound_queue_url: str = ""
    outbound_dlq_url: str = ""
    #: Business events (`POST /v1/events`, EventBridge, case timers) and their dead letters.
    events_queue_url: str = ""
    events_dlq_url: str = ""
    #: EventBridge Scheduler timers (`adapters/timers/scheduler.py`): the schedule group, the role
    #: Scheduler assumes, the timers Lambda it invokes and the queue of timers it could not deliver.
    timers_group: str = ""
    timers_role_arn: str = ""
    timers_function_arn: str = ""
    timers_dlq_arn: str = ""
    bucket: str = ""
    region: str = ""
    log_level: str = "INFO"
    tracing: bool = False
    environ: Mapping[str, str] = MappingProxyType({})

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={self.__dict__[name]!r}" for name in self._fields if name != "environ")
        return f"Settings({inner})"

    @property
    def on_aws(self) -> bool:
        return self.runtime == "aws"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        runtime = env.get("HUB_RUNTIME", "embedded").strip().lower()
        if runtime not in ("embedded", "aws"):
            from chalicelib.errors import ConfigError

            raise ConfigError(f"HUB_RUNTIME must be 'embedded' or 'aws', not {runtime!r}")
        config_path = env.get("HUB_CONFIG") or str(DEFAULT_CONFIG)
        if not Path(config_path).is_absolute():
            config_path = str(PROJECT_ROOT / config_path)
        stage = env.get("HUB_STAGE", "local")
        return cls(
            runtime=runtime,
            stage=stage,
            config_path=config_path,
            data_dir=env.get("HUB_DATA_DIR") or str(PROJECT_ROOT / "data"),
            host=env.get("HUB_HOST", "127.0.0.1"),
            port=int(env.get("HUB_PORT", "8000")),
            local_workers=int(env.get("HUB_LOCAL_WORKERS", "2")),
            http_threads=int(env.get("HUB_HTTP_THREADS", "16")),
            table_name=env.get("HUB_TABLE", ""),
            inbound_queue_url=env.get("HUB_INBOUND_QUEUE_URL", ""),
            delivery_queue_url=env.get("HUB_DELIVERY_QUEUE_URL", ""),
            delivery_dlq_url=env.get("HUB_DELIVERY_DLQ_URL", ""),
            outbound_queue_url=env.get("HUB_OUTBOUND_QUEUE_URL", ""),
            outbound_dlq_url=env.get("HUB_OUTBOUND_DLQ_URL", ""),
            events_queue_url=env.get("HUB_EVENTS_QUEUE_URL", ""),
            events_dlq_url=env.get("HUB_EVENTS_DLQ_URL", ""),
            timers_group=env.get("HUB_TIMERS_GROUP") or f"hub-{stage}",
            timers_role_arn=env.get("HUB_TIMERS_ROLE_ARN", ""),
            timers_function_arn=env.get("HUB_TIMERS_FUNCTION_ARN", ""),
            timers_dlq_arn=env.get("HUB_TIMERS_DLQ_ARN", ""),
            bucket=env.get("HUB_BUCKET", ""),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION", ""),
            log_level=env.get("HUB_LOG_LEVEL", env.get("POWERTOOLS_LOG_LEVEL", "INFO")),
            tracing=env.get("HUB_TRACING", "").lower() in ("1", "true", "yes"),
            environ=env,
        )

    @property
    def listens_on_loopback(self) -> bool:
        """True when the embedded hub answers only this machine (`HUB_HOST` a loopback address):
        what its developer conveniences (the web chat demo's signed identities) require."""
        return not self.on_aws and is_loopback_host(self.host)

    def queue_url(self, variable: str) -> str:
        """The URL of a queue a provider's pull entry reads, from its variable
        (`PullEntry.environment_variable`, written by `infra/deploy.py`); empty when unset."""
        return self.environ.get(variable, "")

    def queue_name(self, role: str, *, fifo: bool = True) -> str:
        """The SQS queue name Chalice subscribes a worker to (`hub-<stage>-<role>.fifo`; S3 event
        notifications can only go to standard queues, hence `fifo=False`)."""
        return f"hub-{self.stage}-{role}" + (".fifo" if fifo else "")


def is_loopback_host(host: str | None) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1, with or without a port (`127.0.0.1:8000`, `[::1]:8000`)."""
    import ipaddress

    if not host:
        return False
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


#: Set by the Lambda runtime before every invocation: `Root=1-…;Parent=…;Sampled=…`.
XRAY_TRACE_VARIABLE = "_X_AMZN_TRACE_ID"
_trace: tuple[str, str] = ("", "")


def xray_trace_id() -> str | None:
    """The current invocation's X-Ray trace id (the header's `Root`, as Powertools logs it), or
    None outside Lambda. Read live, not a `Settings` field: the runtime sets the variable anew
    for each invocation. The last header's id is kept, so a log line pays one lookup."""
    global _trace
    header = os.environ.get(XRAY_TRACE_VARIABLE)
    if not header:
        return None
    cached_header, trace_id = _trace
    if header != cached_header:
        trace_id = header.split(";")[0].replace("Root=", "")
        _trace = (header, trace_id)
    return trace_id
