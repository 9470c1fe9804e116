"""`type: amazon_connect` destinations' settings, their `callbacks` section included (the connector:
`connectors/amazon_connect.py`; the callbacks: `callbacks/amazon_connect.py`)."""

from __future__ import annotations

import re
import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.adapters.connectors.mapping import ROOTS, FieldMapping
from chalicelib.adapters.connectors.settings.callbacks import CallbackSettings


#: EventBridge resource names: letters, digits, `.`, `-`, `_`, at most 64 characters.
_RESOURCE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")


class AmazonConnectCallbackSettings(CallbackSettings):
    """`destinations[].callbacks` of an `amazon_connect` destination."""

    #: The contact event that closes the hub case: COMPLETED (the agent finished after-contact
    #: work; Connect sends it right after DISCONNECTED when there was none) or DISCONNECTED (the
    #: task left the agent, was ended by a flow, or expired after 7 days).
    closing_event: Literal["COMPLETED", "DISCONNECTED"] = "COMPLETED"
    #: Name of the EventBridge connection, API destination and rule (`create_setup`); default
    #: `hub-<destination>`.
    resource_name: str | None = None
    #: The role EventBridge assumes to invoke the API destination; `create_setup` creates
    #: `<resource_name>-invoke` when unset.
    target_role_arn: str | None = None
    #: Requests per second EventBridge may send (the API destination's rate limit).
    invocation_rate_per_second: int = Field(default=10, ge=1, le=300)

    @field_validator("resource_name")
    @classmethod
    def _resource_name(cls, value: str | None) -> str | None:
        if value is not None and not _RESOURCE_NAME.match(value):
            raise ValueError("must be 1-64 letters, digits, '.', '-' or '_'")
        return value

    @field_validator("target_role_arn")
    @classmethod
    def _role_arn(cls, value: str | None) -> str | None:
        if value is not None and not _ROLE_ARN.match(value):
            raise ValueError("must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
        return value


#: Reference types a task can be created with (ATTACHMENT is not allowed at creation).
ReferenceType = Literal["URL", "STRING", "NUMBER", "EMAIL", "DATE"]
_ATTRIBUTE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_INSTANCE_ARN = re.compile(r"^arn:aws[\w-]*:connect:([a-z0-9-]+):\d{12}:instance/([0-9a-fA-F-]{36})$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
#: Placeholders the name and description templates may use; nothing else (no attribute access).
TEMPLATE_FIELDS = frozenset({
    "subject", "text", "channel", "provider", "queue", "priority", "tags", "customer_name",
    "contact_id", "case_id", "customer_id", "body",
})


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
