"""The hub configuration: one validated file, every section typed (at load, or where a deployed
function defers it, on first read).

YAML (JSON accepted), path from `HUB_CONFIG`. Validation happens in one pass over the whole file,
and every error names its exact key (`channels.twilio.auth_tokens: Field required`,
`routing.rules[2].then.priority: ...`): a hub that starts with a half-valid configuration fails
later, on a customer's message. Sections whose model a registry chooses (channels, destinations,
media sources) are typed through `config_sections`. Routing rules are checked here for their shape
and compiled only where contacts are routed (`routing/setup.py`).

Deferred sections. The channel providers' sections and `routing`, `consent`, `enrichment`, `media`
and `events` are the larger part of the file, and a Lambda function reads few of them: the webhook
function of one provider reads that provider's section alone. Building their models costs a cold
start about 20 ms. So `parse_config(defer_sections=True)` (what a deployed function uses) checks
the file's shape and the small sections at load and types each deferred section when it is first
read, with the same errors at the same keys. Everything else (`hubctl check-config`, the deploy,
which validates the stage's file when it writes the IAM policies, the embedded runtime, tests)
validates the whole file at once, so a deployed file has been checked whole before it ships.
"""

# No `from __future__ import annotations`: pydantic would compile and evaluate each field's
# annotation string when a model class is created (about 0.15 ms a model at every cold start).

import hashlib
import importlib
import json
import logging
import re
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator
from pydantic import model_validator

from chalicelib.domain.defaults import empty_list
from chalicelib.domain.policies import CasePolicy, CustomerLimits, IdentityPolicy, Strict, SurvivorshipPolicy
from chalicelib.errors import ConfigError
from chalicelib.secrets import is_reference

if TYPE_CHECKING:
    from chalicelib.enrichment.settings import EnrichmentSettings
    from chalicelib.routing.event_settings import EventSettings
    from chalicelib.routing.settings import RoutingSettings
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


#: The sections typed when first read under `defer_sections` (see the module's docstring): the
#: model of each, by name, so that loading the file imports none of them.
DEFERRED_SECTIONS = {
    "routing": "chalicelib.routing.settings:RoutingSettings",
    "consent": "chalicelib.service.consent_settings:ConsentSettings",
    "enrichment": "chalicelib.enrichment.settings:EnrichmentSettings",
    "media": "chalicelib.service.media_settings:MediaSettings",
    "events": "chalicelib.routing.event_settings:EventSettings",
}


class HubConfig(Strict):
    """The whole file. `routing`, `consent`, `enrichment`, `media`, `events` and each provider's
    section of `channels` are typed properties rather than fields: they are validated at load, or on first
    read when the file was parsed with `defer_sections` (the module's docstring says why)."""

    version: Literal[1] = 1
    identity: IdentityPolicy = Field(default_factory=IdentityPolicy)
    survivorship: SurvivorshipPolicy = Field(default_factory=SurvivorshipPolicy)
    cases: CasePolicy = Field(default_factory=CasePolicy)
    customers: CustomerLimits = Field(default_factory=CustomerLimits)
    destinations: list[Destination] = Field(default_factory=empty_list)
    email: EmailSettings = Field(default_factory=EmailSettings)
    processing: ProcessingSettings = Field(default_factory=ProcessingSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    api_keys: list[ApiKey] = Field(default_factory=empty_list)

    #: The deferred sections as the file gave them, and where the file came from (for errors).
    _raw_sections: dict[str, Any] = PrivateAttr(default_factory=dict)
    _source: str = PrivateAttr(default="<config>")

    @model_validator(mode="wrap")
    @classmethod
    def _registry_sections(cls, data: Any, handler, info: ValidationInfo):
        """Destinations are typed by their registry's models in the same pass. The deferred
        sections are set aside, and typed here too unless the caller defers them."""
        if not isinstance(data, dict):
            return handler(data)
        from chalicelib.config_sections import validate_together

        typed, errors = dict(data), []
        raw = {name: typed.pop(name) for name in (*DEFERRED_SECTIONS, "channels") if name in typed}
        if "channels" in raw:
            errors += _unknown_channels(raw["channels"])
        if "destinations" in data:
            typed["destinations"], found = _typed_destinations(data["destinations"])
            errors += found
        deferred = bool(info.context and info.context.get("defer_sections"))
        sections: dict[str, Any] = {}
        if not deferred:
            for name in DEFERRED_SECTIONS:
                sections[name], found = _typed_section(name, raw.get(name))
                errors += found
            channels, found = _typed_channels(raw.get("channels"))
            sections["channels"] = ChannelSections(_mapping(raw.get("channels")), "<config>", channels)
            errors += found
        config = validate_together(handler, typed, errors, cls.__name__)
        config._raw_sections = raw
        if sections:
            config.__dict__.update(sections)  # what the typed properties would compute, computed now
            problems = [p for name in DEFERRED_SECTIONS for p in _reference_problems(name, sections[name], config)]
            if problems:
                from chalicelib.config_sections import problem

                raise ValidationError.from_exception_data(cls.__name__, [problem((), p) for p in problems])
        return config

    @model_validator(mode="after")
    def _references(self) -> "HubConfig":
        names = [d.name for d in self.destinations]
        for index, name in enumerate(names):
            if names.index(name) != index:
                raise ValueError(f"destinations[{index}].name: duplicate destination name {name!r}")
        for index, name in enumerate(self.cases.close_on):
            destination = self.destination(name)
            if destination is None:
                raise ValueError(f"cases.close_on[{index}]: no destination named {name!r}")
            if getattr(destination.settings, "callbacks", None) is None:
                raise ValueError(f"cases.close_on[{index}]: destination {name!r} has no callbacks section, so it "
                                 "never reports its tickets' status")
        return self

    # --- deferred sections (cached: typed once per configuration) --------------------------------

    @cached_property
    def routing(self) -> "RoutingSettings":
        return self._deferred("routing")

    @cached_property
    def consent(self) -> "ConsentSettings":
        return self._deferred("consent")

    @cached_property
    def enrichment(self) -> "EnrichmentSettings":
        return self._deferred("enrichment")

    @cached_property
    def media(self) -> "MediaSettings":
        return self._deferred("media")

    @cached_property
    def events(self) -> "EventSettings":
        """Business events' rules, templates and guards (`routing/event_settings.py`)."""
        return self._deferred("events")

    @cached_property
    def channels(self) -> "ChannelSections":
        """The configured providers' sections, each typed when first read."""
        return ChannelSections(_mapping(self._raw_sections.get("channels")), self._source)

    def _deferred(self, name: str) -> BaseModel:
        section, errors = _typed_section(name, self._raw_sections.get(name))
        if errors:
            raise _section_error(self._source, errors)
        problems = _reference_problems(name, section, self)
        if problems:
            raise ConfigError(_describe(self._source, problems))
        return section

    # --- questions about the file -------------------------------------------------------------

    def two_way_destinations(self) -> list[str]:
        """Destinations whose vendors report back (`callbacks` configured)."""
        return [d.name for d in self.destinations if getattr(d.settings, "callbacks", None) is not None]

    def destination(self, name: str) -> Destination | None:
        return next((d for d in self.destinations if d.name == name), None)

    def default_destinations(self) -> list[str]:
        names = self.routing.default.destinations
        return list(names) if names is not None else [d.name for d in self.destinations]


class ChannelSections(Mapping):
    """`channels:` by provider key. Iterating lists the configured providers without typing
    anything; reading one types its section on first read (a deployed webhook function reads only
    its own provider's). Unknown provider keys were refused when the file was loaded."""

    def __init__(self, raw: dict[str, Any], source: str, typed: dict[str, BaseModel] | None = None) -> None:
        self._raw = raw
        self._source = source
        self._typed: dict[str, BaseModel] = dict(typed or {})

    def __getitem__(self, key: str) -> BaseModel:
        section = self._typed.get(key)
        if section is None:
            if key not in self._raw:
                raise KeyError(key)
            typed, errors = _typed_channels({key: self._raw[key]})
            if errors:
                raise _section_error(self._source, errors)
            section = self._typed[key] = typed[key]
        return section

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"ChannelSections({', '.join(self._raw)})"


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _section_model(name: str) -> type[BaseModel]:
    module, _, attribute = DEFERRED_SECTIONS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def _typed_section(name: str, body: Any) -> tuple[BaseModel | None, list]:
    """One deferred section typed (absent: its defaults), with its errors at `<name>.<field...>`."""
    from chalicelib.config_sections import relocated

    try:
        return _section_model(name).model_validate(body if body is not None else {}), []
    except ValidationError as exc:
        return None, relocated(exc, (name,))


def _reference_problems(name: str, section: Any, config: HubConfig) -> list[str]:
    """What a typed section names that the rest of the file lacks, each as `path: problem`."""
    destinations = _destination_names(config.destinations)
    if name == "routing":
        return [f"routing.default.destinations[{index}]: no destination named {destination!r}"
                for index, destination in enumerate(section.default.destinations or [])
                if destination not in destinations]
    if name == "events":
        return section.reference_problems(calendars=frozenset(config.routing.calendars),
                                          destinations=frozenset(destinations),
                                          indexed_attributes=getattr(config.customers, "indexed_attributes", None))
    return []


def _destination_names(destinations: Any) -> list[str]:
    return [d.name for d in destinations or () if isinstance(d, Destination)]


def _section_error(source: str, errors: list) -> ConfigError:
    return ConfigError(_describe(source, _errors(ValidationError.from_exception_data("HubConfig", errors))))


def _unknown_channels(channels: Any) -> list:
    from chalicelib.adapters.channels.registry import CHANNEL_SETTINGS
    from chalicelib.config_sections import problem

    if not isinstance(channels, dict):
        return [problem(("channels",), "must be a mapping of provider keys to their sections")]
    return [problem(("channels", key), f"unknown channel provider; known: {', '.join(sorted(CHANNEL_SETTINGS))}")
            for key in channels if key not in CHANNEL_SETTINGS]


def _typed_channels(channels: Any) -> tuple[Any, list]:
    """The known providers' sections typed (unknown keys are `_unknown_channels`' to report).
    Only the configured providers' settings modules are imported, never an adapter."""
    from chalicelib.adapters.channels.registry import CHANNEL_SETTINGS
    from chalicelib.config_sections import typed_sections

    if not isinstance(channels, dict):
        return {}, []
    known = {k: v for k, v in channels.items() if k in CHANNEL_SETTINGS}
    return typed_sections(known, {k: CHANNEL_SETTINGS[k] for k in known}, prefix=("channels",))


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


def load_config(path: str | Path, *, allow_inline_secrets: bool = True, defer_sections: bool = False) -> HubConfig:
    """Read and validate the configuration file. Raises `ConfigError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read hub configuration {path}: {exc.strerror}") from None
    return parse_config(text, source=str(path), allow_inline_secrets=allow_inline_secrets,
                        defer_sections=defer_sections)


def parse_config(text: str, *, source: str = "<config>", allow_inline_secrets: bool = True,
                 defer_sections: bool = False) -> HubConfig:
    """Validate a configuration document. `allow_inline_secrets=False` is a deployed stage's check:
    secrets must be references, the development API key is refused, and what AWS needs beyond
    the embedded runtime (a shared media link secret) must be there. `defer_sections=True` types
    the deferred sections when first read (the module's docstring says when that is right)."""
    data = _load_document(text, source)
    try:
        config = HubConfig.model_validate(data, context={"defer_sections": defer_sections})
    except ValidationError as exc:
        raise ConfigError(_describe(source, _errors(exc))) from None
    config._source = source
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
    # Read from the file, not from `config.media`: a deferred `media` section stays untyped here.
    media = data.get("media") if isinstance(data.get("media"), dict) else {}
    if media.get("enabled", True) is not False and media.get("public_url") and not media.get("link_secret"):
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
