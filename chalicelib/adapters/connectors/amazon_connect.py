"""Amazon Connect Tasks: one task per contact, chained per case (https://docs.aws.amazon.com/connect/latest/APIReference/API_StartTaskContact.html)."""

from __future__ import annotations

import json
import re
import string
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.adapters.callbacks.amazon_connect import AmazonConnectCallbackSettings
from chalicelib.adapters.connectors.aws_clients import regional_client
from chalicelib.adapters.connectors.base import Connector, DeliveryResult
from chalicelib.adapters.connectors.mapping import ROOTS, FieldMapping, body_for, subject_for
from chalicelib.domain.models import DeliveryJob
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError

#: StartTaskContact limits: the API reference documents a 512-character task name (the service
#: model now allows 1024; the documented bound is kept) and 4096 for the description.
NAME_LIMIT = 512
DESCRIPTION_LIMIT = 4096
REFERENCE_VALUE_LIMIT = 4096
#: "Up to 32,768 UTF-8 bytes across all key-value pairs per contact."
ATTRIBUTES_BYTE_LIMIT = 32_768
CLIENT_TOKEN_LIMIT = 500

#: Hub priority → the `priority` attribute the flow reads (`$.Attributes.priority`). Lower is
#: more urgent, as in Connect's routing priority, which the flow sets from it.
DEFAULT_PRIORITIES = {"urgent": "1", "high": "2", "normal": "3", "low": "4"}

#: Reference types a task can be created with (ATTACHMENT is not allowed at creation).
ReferenceType = Literal["URL", "STRING", "NUMBER", "EMAIL", "DATE"]

#: Codes worth retrying. ServiceQuotaExceeded is the active-tasks quota (tasks close and free it)
#: or a full chain; the chain case is handled before it gets here.
RETRYABLE_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "InternalServiceException",
    "InternalFailure", "ServiceUnavailable", "ServiceQuotaExceededException",
})

_ATTRIBUTE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_INSTANCE_ARN = re.compile(r"^arn:aws[\w-]*:connect:([a-z0-9-]+):\d{12}:instance/([0-9a-fA-F-]{36})$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
#: Placeholders the name and description templates may use; nothing else (no attribute access).
TEMPLATE_FIELDS = frozenset({
    "subject", "text", "channel", "provider", "queue", "priority", "tags", "customer_name",
    "contact_id", "case_id", "customer_id", "body",
})


class ReferenceField(BaseModel):
    """A custom reference shown to the agent: a value from the delivery (a mapping path)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    type: ReferenceType = "STRING"

    @field_validator("path")
    @classmethod
    def _rooted(cls, value: str) -> str:
        if value.split(".", 1)[0] not in ROOTS:
            raise ValueError(f"path {value!r} must start with one of {', '.join(ROOTS)}")
        return value


class AmazonConnectSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The instance id, or the instance ARN (whose region is then used when `region` is unset).
    instance_id: str
    #: The flow that runs each task. Exactly one of this and `task_template_id` (a template with
    #: a flow configured), as StartTaskContact refuses both.
    contact_flow_id: str | None = None
    task_template_id: str | None = None
    #: The instance's region when it differs from the hub's.
    region: str | None = None
    #: `str.format` templates over TEMPLATE_FIELDS; default: the channel and subject, and the
    #: readable body (sender, text, attachments, hub ids and routing).
    name_template: str | None = None
    description_template: str | None = None
    #: URL templates for the hub references (`{contact_id}`, `{case_id}`, `{customer_id}`), e.g. a
    #: console page; without one the reference is the id as a STRING.
    link_templates: dict[Literal["contact", "case", "customer"], str] = Field(default_factory=dict)
    #: Extra references: name shown in the CCP → value from the delivery.
    references: dict[str, ReferenceField] = Field(default_factory=dict)
    #: `priority` maps hub priorities to the `priority` attribute, `tags` adds to the `tags`
    #: attribute, `custom_fields` adds contact attributes (flows read them as `$.Attributes.<key>`).
    mapping: FieldMapping = Field(default_factory=FieldMapping)
    #: Link each case's tasks through PreviousContactId (the latest task is the chain head).
    chain_tasks: bool = True
    #: Two-way sync: task status from Connect's contact events (EventBridge API destination).
    #: None: the destination is one-way (`POST /callbacks/<name>` answers 404).
    callbacks: AmazonConnectCallbackSettings | None = None

    @field_validator("instance_id")
    @classmethod
    def _instance(cls, value: str) -> str:
        if _INSTANCE_ARN.match(value) or _UUID.match(value):
            return value
        raise ValueError("must be the instance id (a UUID) or the instance ARN")

    @field_validator("name_template", "description_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            _check_template(value)
        return value

    @field_validator("link_templates")
    @classmethod
    def _links(cls, value: dict[str, str]) -> dict[str, str]:
        for name, template in value.items():
            _check_template(template, allowed=frozenset({"contact_id", "case_id", "customer_id"}))
            if not template.startswith("https://"):
                raise ValueError(f"{name}: must be an https:// URL template")
        return value

    @field_validator("references")
    @classmethod
    def _reference_names(cls, value: dict[str, ReferenceField]) -> dict[str, ReferenceField]:
        for name in value:
            if not 1 <= len(name) <= 4096:
                raise ValueError(f"reference name {name[:40]!r} must be 1-4096 characters")
        return value

    @field_validator("mapping")
    @classmethod
    def _attribute_keys(cls, value: FieldMapping) -> FieldMapping:
        for key in value.custom_fields:
            if not _ATTRIBUTE_KEY.match(key):
                raise ValueError(f"custom_fields: attribute key {key!r} may only hold letters, digits, - and _")
        return value

    @model_validator(mode="after")
    def _one_flow(self) -> AmazonConnectSettings:
        if (self.contact_flow_id is None) == (self.task_template_id is None):
            raise ValueError("set exactly one of contact_flow_id and task_template_id")
        return self

    @property
    def instance(self) -> str:
        match = _INSTANCE_ARN.match(self.instance_id)
        return match.group(2) if match else self.instance_id

    @property
    def instance_region(self) -> str | None:
        match = _INSTANCE_ARN.match(self.instance_id)
        return self.region or (match.group(1) if match else None)


class AmazonConnectConnector(Connector[AmazonConnectSettings]):
    """Each contact starts a task; the case's previous task is its PreviousContactId, so the
    case's tasks form one chain in the agent's contact view and share user-defined attributes.

    Idempotent through ClientToken = the delivery id: a repeated StartTaskContact with the same
    token returns the task it already started instead of starting another.
    """

    key = "amazon_connect"
    docs_url = "https://docs.aws.amazon.com/connect/latest/APIReference/API_StartTaskContact.html"
    Settings = AmazonConnectSettings
    threads_cases = True
    callbacks = "chalicelib.adapters.callbacks.amazon_connect:AmazonConnectCallbacks"

    #: Shown in error messages: "amazon_connect: InvalidParameterException: …".
    vendor: ClassVar[str] = "amazon_connect"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._connect = None

    def deliver(self, job: DeliveryJob) -> DeliveryResult:
        previous = job.case.external_refs.get(self.name)
        request = self.request_for(job, previous.ref if previous is not None and self.settings.chain_tasks else None)
        try:
            contact_id = self._start(request)
        except _ChainFull:
            # 12 tasks already reference this PreviousContactId (or the chain is at its limit):
            # start a new chain that still points at the old one. RelatedContactId has no such
            # limit. Its own token keeps this branch idempotent too.
            request = {k: v for k, v in request.items() if k != "PreviousContactId"}
            request["RelatedContactId"] = previous.ref
            request["ClientToken"] = client_token(job.delivery_id, suffix="related")
            contact_id = self._start(request, chained=False)
        return DeliveryResult(external_ref=contact_id, case_ref=contact_id)

    def request_for(self, job: DeliveryJob, previous_contact_id: str | None) -> dict[str, Any]:
        """The StartTaskContact parameters for a delivery (public for tests and docs)."""
        settings = self.settings
        values = _template_values(job, settings.mapping)
        name = _render(settings.name_template, values) if settings.name_template else subject_for(job, limit=NAME_LIMIT)
        description = _render(settings.description_template, values) if settings.description_template else values["body"]
        request: dict[str, Any] = {
            "InstanceId": settings.instance,
            "Name": _clip(name, NAME_LIMIT) or job.contact.id,
            "Description": _clip(description, DESCRIPTION_LIMIT),
            "References": self._references(job),
            "Attributes": self._attributes(job),
            "ClientToken": client_token(job.delivery_id),
        }
        if settings.contact_flow_id:
            request["ContactFlowId"] = settings.contact_flow_id
        else:
            request["TaskTemplateId"] = settings.task_template_id
        if previous_contact_id:
            request["PreviousContactId"] = previous_contact_id
        return request

    def close(self) -> None:
        self._connect = None

    # --- request parts ---------------------------------------------------------------------------

    def _references(self, job: DeliveryJob) -> dict[str, dict[str, str]]:
        ids = {"contact_id": job.contact.id, "case_id": job.case.id, "customer_id": job.customer.id}
        references: dict[str, dict[str, str]] = {}
        for kind, label in (("contact", "Hub contact"), ("case", "Hub case"), ("customer", "Hub customer")):
            template = self.settings.link_templates.get(kind)
            if template:
                references[label] = {"Type": "URL", "Value": _render(template, ids)}
            else:
                references[label] = {"Type": "STRING", "Value": ids[f"{kind}_id"]}
        if self.settings.references:
            found = FieldMapping(custom_fields={n: f.path for n, f in self.settings.references.items()}).custom_values(job)
            for name, raw in found.items():
                kind = self.settings.references[name].type
                value = _reference_value(raw, kind)
                if value is not None:
                    references[name] = {"Type": kind, "Value": value}
        return references

    def _attributes(self, job: DeliveryJob) -> dict[str, str]:
        contact, mapping = job.contact, self.settings.mapping
        routing = contact.routing
        language = contact.enrichment.get("language")
        attributes = {
            "hub_delivery_id": job.delivery_id,
            "hub_contact_id": contact.id,
            "hub_case_id": job.case.id,
            "hub_customer_id": job.customer.id,
            "channel": contact.channel.value,
            "provider": contact.provider,
            "routing_queue": routing.queue,
            "priority": str(mapping.priority_for(job, DEFAULT_PRIORITIES)),
            "tags": ",".join(mapping.tags_for(job)),
            "skills": ",".join(f"{skill}:{level}" for skill, level in sorted(routing.skills.items())),
            "language": language.get("code") if isinstance(language, dict) else None,
        }
        attributes = {key: value for key, value in attributes.items() if value}
        for key, value in mapping.custom_values(job).items():
            attributes[key] = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
        size = sum(len(k.encode()) + len(v.encode()) for k, v in attributes.items())
        if size > ATTRIBUTES_BYTE_LIMIT:
            raise PermanentDeliveryError(
                f"{self.vendor}: contact attributes are {size} bytes, over Connect's {ATTRIBUTES_BYTE_LIMIT}; "
                "map fewer or smaller custom_fields")
        return attributes

    # --- the call --------------------------------------------------------------------------------

    def _start(self, request: dict[str, Any], *, chained: bool | None = None) -> str:
        from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

        chained = "PreviousContactId" in request if chained is None else chained
        try:
            response = self._client().start_task_contact(**request)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", ""), error.get("Message", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if code == "ServiceQuotaExceededException" and chained:
                raise _ChainFull() from None
            reason = f"{self.vendor}: {code}: {message}".rstrip(": ")
            if code in RETRYABLE_CODES or status >= 500 or status == 429:
                raise RetryableDeliveryError(reason) from None
            raise PermanentDeliveryError(reason) from None
        except ParamValidationError as exc:
            # botocore refused the request before sending it: resending it cannot help.
            raise PermanentDeliveryError(f"{self.vendor}: invalid request: {exc}") from None
        except BotoCoreError as exc:
            # Connection errors, timeouts, credentials that could not be fetched: nothing was done.
            raise RetryableDeliveryError(f"{self.vendor}: {type(exc).__name__}") from None
        return response["ContactId"]

    def _client(self):
        if self._connect is None:
            # The connect resource may live in another region than the hub.
            self._connect = regional_client(self.runtime, "connect", self.settings.instance_region)
        return self._connect


class _ChainFull(Exception):
    """ServiceQuotaExceededException for a chained task: the caller starts a new chain."""


def client_token(delivery_id: str, *, suffix: str = "") -> str:
    """The StartTaskContact ClientToken of a delivery: the delivery id, stable across retries and
    redeliveries, so Connect returns the task it already started."""
    token = f"hub-{delivery_id}" + (f"-{suffix}" if suffix else "")
    return token[:CLIENT_TOKEN_LIMIT]


def _template_values(job: DeliveryJob, mapping: FieldMapping) -> dict[str, str]:
    contact = job.contact
    return {
        "subject": subject_for(job, limit=NAME_LIMIT),
        "text": contact.text or "",
        "channel": contact.channel.value,
        "provider": contact.provider,
        "queue": contact.routing.queue,
        "priority": contact.routing.priority.name.lower(),
        "tags": ", ".join(mapping.tags_for(job)),
        "customer_name": contact.sender.display_name or _attribute(job, "name") or "",
        "contact_id": contact.id,
        "case_id": job.case.id,
        "customer_id": job.customer.id,
        "body": body_for(job),
    }


def _attribute(job: DeliveryJob, name: str) -> str | None:
    value = job.customer.attributes.get(name)
    return str(value.value) if value is not None and value.value is not None else None


def _check_template(template: str, *, allowed: frozenset[str] = TEMPLATE_FIELDS) -> set[str]:
    fields = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"invalid template: {exc}") from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in allowed or spec or conversion:
            raise ValueError(f"unknown placeholder {{{field}}}; use {', '.join(sorted(allowed))}")
        fields.add(field)
    return fields


def _render(template: str, values: dict[str, str]) -> str:
    return template.format_map(values)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _reference_value(value: Any, kind: str) -> str | None:
    if value == "":
        return None
    if kind == "DATE":
        # DATE references must be epoch timestamps.
        if isinstance(value, (int, float)):
            return str(int(value))
        try:
            return str(int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()))
        except ValueError:
            return None
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return _clip(text, REFERENCE_VALUE_LIMIT)
