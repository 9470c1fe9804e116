"""The hub configuration: one validated file, every section typed when it is loaded.

YAML (JSON accepted), path from `HUB_CONFIG`. Validation happens once, at start-up, in one pass
over the whole file, and every error names its exact key (`channels.twilio.auth_tokens: Field
required`, `routing.rules[2].then.priority: ...`): a hub that starts with a half-valid
configuration fails later, on a customer's message. Sections whose model a registry chooses
(channels, destinations, media sources) are typed through `config_sections`. Routing rules are
checked here for their shape and compiled only where contacts are routed (`routing/setup.py`).
"""

# No `from __future__ import annotations`: pydantic would compile and evaluate each field's
# annotation string when a model class is created (about 0.15 ms a model at every cold start).

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chalicelib.domain.defaults import empty_list
from chalicelib.domain.policies import CasePolicy, CustomerLimits, IdentityPolicy, Strict, SurvivorshipPolicy
from chalicelib.enrichment.settings import EnrichmentSettings
from chalicelib.errors import ConfigError
from chalicelib.routing.settings import RoutingSettings
from chalicelib.secrets import is_reference
from chalicelib.service.consent_settings import ConsentSettings
from chalicelib.service.media_settings import MediaSettings

logger = logging.getLogger(__name__)

#: What a consumer API key may do; each route requires one (`chalicelib/api/consumer.py`).
SCOPES = (
    "customers:read",    # customers, their contacts, cases, merges, export
    "customers:write",   # attributes, identifiers, consent, merge and unmerge, closing cases
    "customers:erase",   # DELETE /v1/customers/{id} (GDPR erasure)
    "operations",        # exception queue, dead letters and replay, unhandled events, routing explain
    "messages:send",     # outbound messages
    "events:write",      # POST /v1/events (business events in)
)
Scope = Literal["customers:read", "customers:write", "customers:erase", "operations", "messages:send", "events:write"]
#: What a key configured without `scopes` (the form before scopes existed) may do: read only.
LEGACY_SCOPES: tuple[Scope, ...] = ("customers:read",)
#: The SHA-256 of `local-dev-key`, the development key `chalicelib/conf/local.yaml` ships with.
#: Anyone can read it in the repository, so a deployed configuration must never accept it.
DEVELOPMENT_KEY_SHA256 = hashlib.sha256(b"local-dev-key").hexdigest()


class ApiKey(Strict):
    name: str
    #: Hex SHA-256 of the key; the key itself is never stored. `hubctl api-key` makes one.
    sha256: str
    #: What the key may do. Omitted (configurations older than scopes): read only, with a
    #: start-up warning, so an old key never gains erasure or operations rights by accident.
    scopes: list[Scope] | None = None

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("must be the 64-character lower-case hex SHA-256 of the key")
        return value

    @property
    def granted(self) -> frozenset[str]:
        return frozenset(LEGACY_SCOPES if self.scopes is None else self.scopes)


class ProcessingSettings(Strict):
    #: Dedupe records live at least as long as any provider retries (WhatsApp: 7 days).
    dedupe_days: int = Field(default=8, ge=7, le=30)
    #: Requests larger than this get 413 before any parsing.
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=10 * 1024 * 1024)
    #: Receives of one inbound message before it is dead-lettered; must equal the inbound queue's
    #: maxReceiveCount (infra/stateful.yaml). The last receive delivers what it has.
    max_receives: int = Field(default=5, ge=1, le=100)
    #: Webhook items no adapter could read (`GET /v1/unhandled-events`) are kept this long. They
    #: may carry personal data that erasure cannot find, so keep it short.
    unhandled_days: int = Field(default=14, ge=1, le=90)


class DeliverySettings(Strict):
    #: Attempts inside one worker invocation before the message goes back to the queue.
    attempts_per_invocation: int = Field(default=3, ge=1, le=10)
    #: Receives of one delivery job before it is dead-lettered (queue redelivery).
    max_receives: int = Field(default=8, ge=1, le=100)
    #: Longest `Retry-After` honoured inside an invocation; longer waits go back to the queue.
    max_inline_wait_seconds: float = Field(default=5.0, ge=0, le=60)
    #: Consecutive retryable failures of one destination that open its circuit: its jobs then
    #: wait in the queue, without calls or spent attempts, for the cool-down (doubling, capped).
    circuit_failure_threshold: int = Field(default=5, ge=1, le=100)
    circuit_cooldown_seconds: float = Field(default=30.0, ge=1, le=3600)
    circuit_max_cooldown_seconds: float = Field(default=3600.0, ge=1, le=43200)
    #: Dead letters hold the message text and the customer's address: they are kept this long
    #: (and erased with the customer before that).
    dead_letter_days: int = Field(default=30, ge=1, le=365)


class EmailSettings(Strict):
    """`email:`: how the hub proves the senders of inbound email itself."""

    #: Verify DKIM signatures (and their alignment with the From domain, as DMARC defines it)
    #: from the raw message, for mail whose provider gave no trustworthy verdict: Mailgun's and
    #: SendGrid's raw-MIME modes, SES. Needs DNS (TXT lookups, cached).
    verify_dkim: bool = True
    #: Resolvers to ask (IP addresses); empty: the system's (Lambda: the VPC or AWS resolver).
    dns_nameservers: list[str] = Field(default_factory=empty_list)
    #: Seconds one TXT lookup may take; a message's lookups share a few such budgets.
    dns_timeout_seconds: float = Field(default=2.0, gt=0, le=10)

    @field_validator("dns_nameservers")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        import ipaddress

        for value in values:
            ipaddress.ip_address(value)
        return values


class Destination(BaseModel):
    """A configured destination: a name, a connector type and that connector's settings."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    type: str
    settings: BaseModel


_DESTINATION_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class HubConfig(Strict):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    version: Literal[1] = 1
    identity: IdentityPolicy = Field(default_factory=IdentityPolicy)
    survivorship: SurvivorshipPolicy = Field(default_factory=SurvivorshipPolicy)
    cases: CasePolicy = Field(default_factory=CasePolicy)
    customers: CustomerLimits = Field(default_factory=CustomerLimits)
    #: Each provider's section, typed by its adapter's settings (`adapters/channels/registry.py`).
    channels: dict[str, BaseModel] = Field(default_factory=dict)
    #: Each entry typed by its connector's settings (`adapters/connectors/registry.py`).
    destinations: list[Destination] = Field(default_factory=empty_list)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    #: Opt-out keywords, HELP's answer, where keywords apply (`chalicelib/service/consent_settings.py`).
    consent: ConsentSettings = Field(default_factory=ConsentSettings)
    email: EmailSettings = Field(default_factory=EmailSettings)
    #: Language detection, lexicons, Comprehend (`chalicelib/enrichment/settings.py`).
    enrichment: EnrichmentSettings = Field(default_factory=EnrichmentSettings)
    #: Downloading attachments whose links expire or need credentials (`chalicelib/service/media_settings.py`).
    media: MediaSettings = Field(default_factory=MediaSettings)
    processing: ProcessingSettings = Field(default_factory=ProcessingSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    api_keys: list[ApiKey] = Field(default_factory=empty_list)

    @model_validator(mode="wrap")
    @classmethod
    def _registry_sections(cls, data: Any, handler):
        """Channels and destinations are typed by their registries' models, in the same pass."""
        if not isinstance(data, dict):
            return handler(data)
        from chalicelib.config_sections import validate_together

        typed, errors = dict(data), []
        if "channels" in data:
            typed["channels"], found = _typed_channels(data["channels"])
            errors += found
        if "destinations" in data:
            typed["destinations"], found = _typed_destinations(data["destinations"])
            errors += found
        return validate_together(handler, typed, errors, cls.__name__)

    @model_validator(mode="after")
    def _references(self) -> "HubConfig":
        names = [d.name for d in self.destinations]
        for index, name in enumerate(names):
            if names.index(name) != index:
                raise ValueError(f"destinations[{index}].name: duplicate destination name {name!r}")
        for index, name in enumerate(self.routing.default.destinations or []):
            if name not in names:
                raise ValueError(f"routing.default.destinations[{index}]: no destination named {name!r}")
        for index, name in enumerate(self.cases.close_on):
            destination = self.destination(name)
            if destination is None:
                raise ValueError(f"cases.close_on[{index}]: no destination named {name!r}")
            if getattr(destination.settings, "callbacks", None) is None:
                raise ValueError(f"cases.close_on[{index}]: destination {name!r} has no callbacks section, so it "
                                 "never reports its tickets' status")
        return self

    def two_way_destinations(self) -> list[str]:
        """Destinations whose vendors report back (`callbacks` configured)."""
        return [d.name for d in self.destinations if getattr(d.settings, "callbacks", None) is not None]

    def destination(self, name: str) -> Destination | None:
        return next((d for d in self.destinations if d.name == name), None)

    def default_destinations(self) -> list[str]:
        names = self.routing.default.destinations
        return list(names) if names is not None else [d.name for d in self.destinations]


def _typed_channels(channels: Any) -> tuple[Any, list]:
    from chalicelib.adapters.channels.registry import CHANNEL_SETTINGS
    from chalicelib.config_sections import problem, typed_sections

    if not isinstance(channels, dict):
        return channels, []
    unknown = [key for key in channels if key not in CHANNEL_SETTINGS]
    errors = [problem(("channels", key), f"unknown channel provider; known: {', '.join(sorted(CHANNEL_SETTINGS))}")
              for key in unknown]
    # Only the configured providers' settings modules are imported (no adapter), each section
    # still typed at load.
    known = {k: v for k, v in channels.items() if k in CHANNEL_SETTINGS}
    typed, section_errors = typed_sections(known, {k: CHANNEL_SETTINGS[k] for k in known}, prefix=("channels",))
    return typed, errors + section_errors


def _typed_destinations(entries: Any) -> tuple[Any, list]:
    from chalicelib.adapters.connectors.registry import CONNECTOR_SETTINGS
    from chalicelib.config_sections import problem, relocated

    if not isinstance(entries, list):
        return entries, []
    typed, errors = [], []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            errors.append(problem(("destinations", index), "must be a mapping with name, type and settings"))
            continue
        body = dict(entry)
        name, kind = body.pop("name", None), body.pop("type", None)
        if not isinstance(name, str) or not _DESTINATION_NAME.fullmatch(name):
            errors.append(problem(("destinations", index, "name"), "required, lower-case letters, digits, '-' or '_'"))
            continue
        settings = CONNECTOR_SETTINGS.get(kind) if isinstance(kind, str) else None
        if settings is None:
            errors.append(problem(("destinations", index, "type"),
                                  f"unknown connector {kind!r}; known: {', '.join(sorted(CONNECTOR_SETTINGS))}"))
            continue
        try:
            typed.append(Destination(name=name, type=kind, settings=settings.model_validate(body)))
        except ValidationError as exc:
            errors.extend(relocated(exc, ("destinations", index)))
    return typed, errors


def load_config(path: str | Path, *, allow_inline_secrets: bool = True) -> HubConfig:
    """Read and validate the configuration file. Raises `ConfigError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read hub configuration {path}: {exc.strerror}") from None
    return parse_config(text, source=str(path), allow_inline_secrets=allow_inline_secrets)


def parse_config(text: str, *, source: str = "<config>", allow_inline_secrets: bool = True) -> HubConfig:
    """Validate a configuration document. `allow_inline_secrets=False` is a deployed stage's check:
    secrets must be references, the development API key is refused, and what AWS needs beyond
    the embedded runtime (a shared media link secret) must be there."""
    data = _load_document(text, source)
    try:
        config = HubConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(source, _errors(exc))) from None
    problems = [] if allow_inline_secrets else _deployment_problems(data, config)
    if problems:
        raise ConfigError(_describe(source, problems))
    for key in config.api_keys:
        if key.scopes is None:
            logger.warning("api_keys %s has no scopes and may only read (customers:read); grant what it needs with "
                           "`scopes: [...]` (hubctl api-key --scopes)", key.name)
    return config


def _deployment_problems(data: dict, config: HubConfig) -> list[str]:
    problems = _inline_secrets(data)
    for index, key in enumerate(config.api_keys):
        if key.sha256 == DEVELOPMENT_KEY_SHA256:
            problems.append(f"api_keys[{index}].sha256: the development key of local.yaml (local-dev-key) is public; "
                            "make a key with `hubctl api-key`")
    media = config.media
    if media.enabled and media.public_url and not media.link_secret:
        problems.append("media.link_secret: required on AWS when media.public_url is set (every Lambda container "
                        "must sign hub links with the same secret)")
    return problems


def _inline_secrets(data: Any, where: str = "") -> list[str]:
    """Deployed configurations must reference secrets; this finds inline values by field name."""
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{where}.{key}" if where else str(key)
            if _is_secret_field(key):
                values = value if isinstance(value, list) else [value]
                for i, item in enumerate(values):
                    if isinstance(item, str) and not is_reference(item):
                        suffix = f"[{i}]" if isinstance(value, list) else ""
                        found.append(f"{path}{suffix}: inline secret; use env:, ssm: or secretsmanager:")
            else:
                found.extend(_inline_secrets(value, path))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            found.extend(_inline_secrets(item, f"{where}[{i}]"))
    return found


def _is_secret_field(name: str) -> bool:
    return bool(re.search(r"(secret|token|password|api_key|signing_key)s?$", str(name)))


def _load_document(text: str, source: str) -> Any:
    if source.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    else:
        import yaml

        try:
            # libyaml's loader when the wheel has it: 10x faster on large rule sets at cold start.
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 (a safe loader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{source}: invalid YAML{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    return data


def _errors(exc: ValidationError) -> list[str]:
    out = []
    for error in exc.errors(include_url=False, include_input=False):
        location = ""
        for part in error["loc"]:
            location += f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
        message = error["msg"].removeprefix("Value error, ")
        # A model-wide check names its own location (`destinations[1].name: ...`).
        out.append(message if not location and ": " in message else f"{location or '(top level)'}: {message}")
    return out


def _describe(source: str, problems: list[str]) -> str:
    return f"invalid hub configuration {source}:\n  " + "\n  ".join(problems)
