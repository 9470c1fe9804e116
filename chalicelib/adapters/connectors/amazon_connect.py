"""Amazon Connect Tasks: one task per contact, chained per case (https://docs.aws.amazon.com/connect/latest/APIReference/API_StartTaskContact.html)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar

from chalicelib.adapters.connectors.aws_clients import regional_client
from chalicelib.adapters.connectors.settings.amazon_connect import (  # noqa: F401 (re-exported)
    AmazonConnectSettings,
    ReferenceField,
    ReferenceType,
    TEMPLATE_FIELDS,
)
from chalicelib.adapters.connectors.base import Connector, DeliveryResult
from chalicelib.adapters.connectors.mapping import FieldMapping, body_for, subject_for
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


#: Codes worth retrying. ServiceQuotaExceeded is the active-tasks quota (tasks close and free it)
#: or a full chain; the chain case is handled before it gets here.
RETRYABLE_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "InternalServiceException",
    "InternalFailure", "ServiceUnavailable", "ServiceQuotaExceededException",
})


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
