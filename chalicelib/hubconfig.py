"""The hub configuration: channels, destinations, routing and API keys, in one validated file.

YAML (JSON accepted), path from `HUB_CONFIG`. Validation happens once at start-up and every error
names the exact key (`channels.twilio.auth_tokens: Field required`), because a hub that starts with
a half-valid configuration fails later, on a customer's message.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chalicelib.domain.identifiers import IdentifierKind
from chalicelib.domain.models import Priority
from chalicelib.errors import ConfigError
from chalicelib.secrets import is_reference


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: Addresses that belong to nobody in particular; operators extend or replace the list.
DEFAULT_BLOCKED = [
    "email:noreply@*", "email:no-reply@*", "email:donotreply@*", "email:do-not-reply@*",
    "email:mailer-daemon@*", "email:postmaster@*",
]


class IdentitySettings(Strict):
    """Which identifiers may tie a contact to a customer (Segment's identity resolution, in rules)."""

    #: Region for phone numbers written without a country code (ISO 3166 alpha-2), per hub...
    default_region: str | None = None
    #: ...and per channel account, keyed `provider:account` (the number, page or site the
    #: customer wrote to, as in `Contact.account`): `{"twilio:+4930123456": "DE"}`.
    account_regions: dict[str, str] = Field(default_factory=dict)
    #: Kinds that may link a contact to an existing customer, highest priority first: when a
    #: contact's identifiers point to different customers, the first kind's owner wins.
    link_kinds: list[IdentifierKind] = Field(default_factory=lambda: [
        IdentifierKind.EXTERNAL, IdentifierKind.EMAIL, IdentifierKind.PHONE, IdentifierKind.WHATSAPP_USER,
        IdentifierKind.WEBCHAT, IdentifierKind.MESSENGER, IdentifierKind.INSTAGRAM, IdentifierKind.TELEGRAM,
        IdentifierKind.SLACK, IdentifierKind.X,
    ])
    #: At most this many values of a kind per customer; further ones stay on the contact only.
    max_per_kind: dict[IdentifierKind, int] = Field(default_factory=lambda: {
        IdentifierKind.EXTERNAL: 1, IdentifierKind.EMAIL: 5, IdentifierKind.PHONE: 5,
    })
    #: Identifier patterns (shell-style, on `kind:value`) that never link anything: shared family
    #: or office numbers, no-reply addresses. Setting the list replaces the defaults.
    blocked: list[str] = Field(default_factory=lambda: list(DEFAULT_BLOCKED))
    #: Whether unverified claims (an email typed into a web chat without `user_hash`) may link.
    trust_unverified: bool = False
    #: Whether a contact whose verified identifiers belong to two customers merges them (the
    #: oldest customer survives; `POST /v1/customers/{id}/unmerge` reverses it).
    auto_merge: bool = True
    #: Kinds a person holds one true value of: two customers holding different values of one of
    #: these kinds are never merged, automatically or through the API.
    merge_protection: list[IdentifierKind] = Field(default_factory=lambda: [IdentifierKind.EXTERNAL])

    @field_validator("blocked")
    @classmethod
    def _normalized_patterns(cls, patterns: list[str]) -> list[str]:
        """Exact entries are normalized like identifiers (`phone:+49 30 123456` → E.164), so they
        match what the hub stores; wildcard entries get an IDNA-encoded email domain."""
        from chalicelib.domain.identifiers import Identifier
        from chalicelib.errors import InvalidIdentifierError

        normalized = []
        for index, pattern in enumerate(patterns):
            if not any(ch in pattern for ch in "*?["):
                try:
                    normalized.append(Identifier.parse(pattern).key)
                except InvalidIdentifierError as exc:
                    raise ValueError(f"entry {index}: {exc.message}") from None
                continue
            kind, _, rest = pattern.partition(":")
            local, at, domain = rest.rpartition("@")
            if kind.strip().lower() == "email" and at and not domain.isascii():
                domain = ".".join(
                    label if any(ch in label for ch in "*?[") else label.encode("idna").decode() for label in domain.split(".")
                )
                pattern = f"{kind}:{local}@{domain}"
            normalized.append(pattern)
        return normalized

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z]{2}", value):
            raise ValueError("must be a two-letter country code such as DE or US")
        return value.upper() if value else None

    @field_validator("account_regions")
    @classmethod
    def _account_regions(cls, value: dict[str, str]) -> dict[str, str]:
        for account, region in value.items():
            if ":" not in account:
                raise ValueError(f"key {account[:40]!r} must be provider:account, e.g. twilio:+4930123456")
            if not re.fullmatch(r"[A-Za-z]{2}", region):
                raise ValueError(f"{account}: must be a two-letter country code such as DE or US")
        return {account: region.upper() for account, region in value.items()}

    def region_for(self, provider: str, account: str) -> str | None:
        return self.account_regions.get(f"{provider}:{account}", self.default_region)


class SurvivorshipRule(Strict):
    """How one attribute's surviving value is chosen among its sources' observations."""

    rule: Literal["most_recent", "source_priority"] = "most_recent"
    #: For source_priority: highest first; sources not listed rank below all listed ones (and
    #: among themselves by recency).
    sources: list[str] = Field(default_factory=list)


class SurvivorshipSettings(Strict):
    default: SurvivorshipRule = Field(default_factory=SurvivorshipRule)
    #: Per attribute (name, language, preferred_channel, tier, or any custom attribute).
    attributes: dict[str, SurvivorshipRule] = Field(default_factory=lambda: {
        # What a person or a CRM typed beats a profile name a messaging app reports.
        "name": SurvivorshipRule(rule="source_priority", sources=["api", "webchat"]),
    })

    def rule_for(self, attribute: str) -> SurvivorshipRule:
        return self.attributes.get(attribute, self.default)


class CaseSettings(Strict):
    #: A contact joins the customer's open case when the case was active this recently...
    window_hours: float = Field(default=72, gt=0)
    #: ...and an open case with no activity for this long is closed (on its next read or contact).
    auto_close_after_hours: float = Field(default=168, gt=0)

    @model_validator(mode="after")
    def _window_within_auto_close(self) -> CaseSettings:
        if self.window_hours > self.auto_close_after_hours:
            raise ValueError("window_hours must not exceed auto_close_after_hours (a case would be joined after it closed)")
        return self


class ApiKey(Strict):
    name: str
    #: Hex SHA-256 of the key; the key itself is never stored. `hubctl api-key` makes one.
    sha256: str

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("must be the 64-character lower-case hex SHA-256 of the key")
        return value


class DefaultRoute(Strict):
    queue: str = "default"
    priority: Priority = Priority.NORMAL
    #: Destination names every contact goes to; omitted means all configured destinations.
    destinations: list[str] | None = None

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        return Priority.coerce(value)


class RoutingSettings(Strict):
    """`routing:`. Only the default route is validated with the rest of the file; the rules and
    what they refer to are validated when routing is first used (`chalicelib/routing/setup.py`),
    so processes that never route (the webhook Lambda) do not pay for compiling them."""

    default: DefaultRoute = Field(default_factory=DefaultRoute)
    #: Ordered rules (`chalicelib/routing/rules.py`, README "Routing rules").
    rules: list[Any] = Field(default_factory=list)
    #: Business-hours calendars by name (`chalicelib/routing/calendar.py`); `default` is the one
    #: conditions use when they name none.
    calendars: dict[str, Any] = Field(default_factory=dict)
    #: Auto-reply templates: name → language → text.
    templates: dict[str, Any] = Field(default_factory=dict)
    default_language: str = "en"
    #: `{hours: 24, by_priority: {urgent: 4}}`: when an open case is past its SLA.
    sla: dict[str, Any] = Field(default_factory=dict)
    #: Where the rules live when not in this file: S3, SSM or AppConfig (`routing/sources.py`).
    source: dict[str, Any] = Field(default_factory=dict)


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


class Destination(BaseModel):
    """A configured destination: a name, a connector type and that connector's settings."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    type: str
    settings: BaseModel


class HubConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    survivorship: SurvivorshipSettings = Field(default_factory=SurvivorshipSettings)
    cases: CaseSettings = Field(default_factory=CaseSettings)
    channels: dict[str, BaseModel] = Field(default_factory=dict)
    destinations: list[Destination] = Field(default_factory=list)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    #: Language detection, lexicons, Comprehend (`chalicelib/enrichment/settings.py`), validated
    #: when enrichment is first used, like the routing rules.
    enrichment: dict[str, Any] = Field(default_factory=dict)
    #: Downloading attachments whose links expire or need credentials (`chalicelib/service/media.py`),
    #: validated when first used, like the routing rules.
    media: dict[str, Any] = Field(default_factory=dict)
    processing: ProcessingSettings = Field(default_factory=ProcessingSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    api_keys: list[ApiKey] = Field(default_factory=list)

    def destination(self, name: str) -> Destination | None:
        return next((d for d in self.destinations if d.name == name), None)

    def default_destinations(self) -> list[str]:
        names = self.routing.default.destinations
        return list(names) if names is not None else [d.name for d in self.destinations]


class _RawConfig(Strict):
    """First pass: the top level, with channel and destination bodies still untyped."""

    version: int = 1
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    survivorship: SurvivorshipSettings = Field(default_factory=SurvivorshipSettings)
    cases: CaseSettings = Field(default_factory=CaseSettings)
    channels: dict[str, dict[str, Any]] = Field(default_factory=dict)
    destinations: list[dict[str, Any]] = Field(default_factory=list)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    enrichment: dict[str, Any] = Field(default_factory=dict)
    media: dict[str, Any] = Field(default_factory=dict)
    processing: ProcessingSettings = Field(default_factory=ProcessingSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    api_keys: list[ApiKey] = Field(default_factory=list)


def load_config(path: str | Path, *, allow_inline_secrets: bool = True) -> HubConfig:
    """Read and validate the configuration file. Raises `ConfigError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read hub configuration {path}: {exc.strerror}") from None
    return parse_config(text, source=str(path), allow_inline_secrets=allow_inline_secrets)


def parse_config(text: str, *, source: str = "<config>", allow_inline_secrets: bool = True) -> HubConfig:
    data = _load_document(text, source)
    problems: list[str] = []
    try:
        raw = _RawConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(source, _errors(exc, ""))) from None

    channels = _typed_channels(raw.channels, problems)
    destinations = _typed_destinations(raw.destinations, problems)
    names = [d.name for d in destinations]
    for index, name in enumerate(names):
        if names.index(name) != index:
            problems.append(f"destinations[{index}].name: duplicate destination name {name!r}")
    for index, name in enumerate(raw.routing.default.destinations or []):
        if name not in names:
            problems.append(f"routing.default.destinations[{index}]: no destination named {name!r}")
    if not allow_inline_secrets:
        problems.extend(_inline_secrets(data))
    if problems:
        raise ConfigError(_describe(source, problems))
    return HubConfig(
        identity=raw.identity,
        survivorship=raw.survivorship,
        cases=raw.cases,
        channels=channels,
        destinations=destinations,
        routing=raw.routing,
        enrichment=raw.enrichment,
        media=raw.media,
        processing=raw.processing,
        delivery=raw.delivery,
        api_keys=raw.api_keys,
    )


def _typed_channels(channels: dict[str, dict[str, Any]], problems: list[str]) -> dict[str, BaseModel]:
    from chalicelib.adapters.channels.registry import CHANNELS

    typed: dict[str, BaseModel] = {}
    for key, body in channels.items():
        adapter = CHANNELS.get(key)
        if adapter is None:
            problems.append(f"channels.{key}: unknown channel provider; known: {', '.join(sorted(CHANNELS))}")
            continue
        try:
            typed[key] = adapter.Settings.model_validate(body or {})
        except ValidationError as exc:
            problems.extend(_errors(exc, f"channels.{key}"))
    return typed


def _typed_destinations(entries: list[dict[str, Any]], problems: list[str]) -> list[Destination]:
    from chalicelib.adapters.connectors.registry import CONNECTORS

    typed = []
    for index, entry in enumerate(entries):
        where = f"destinations[{index}]"
        body = dict(entry)
        name, kind = body.pop("name", None), body.pop("type", None)
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", name):
            problems.append(f"{where}.name: required, lower-case letters, digits, '-' or '_'")
            continue
        connector = CONNECTORS.get(kind) if isinstance(kind, str) else None
        if connector is None:
            problems.append(f"{where}.type: unknown connector {kind!r}; known: {', '.join(sorted(CONNECTORS))}")
            continue
        try:
            typed.append(Destination(name=name, type=kind, settings=connector.Settings.model_validate(body)))
        except ValidationError as exc:
            problems.extend(_errors(exc, where))
    return typed


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
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
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


def _errors(exc: ValidationError, prefix: str) -> list[str]:
    out = []
    for error in exc.errors(include_url=False, include_input=False):
        location = prefix
        for part in error["loc"]:
            location += f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
        out.append(f"{location or '(top level)'}: {error['msg']}")
    return out


def _describe(source: str, problems: list[str]) -> str:
    return f"invalid hub configuration {source}:\n  " + "\n  ".join(problems)
