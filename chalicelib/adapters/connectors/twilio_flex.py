"""Twilio Flex: a TaskRouter task, or a Flex Interaction, per contact (https://www.twilio.com/docs/taskrouter/api/task, https://www.twilio.com/docs/flex/developer/conversations/interactions-api/interactions).

Two modes:
- `taskrouter` (default): POST /v1/Workspaces/{WorkspaceSid}/Tasks on taskrouter.twilio.com. The
  agent gets a task carrying the contact in its attributes and answers through the hub.
- `interaction`: POST /v1/Interactions on flex-api.twilio.com with `initiated_by: api`. Flex
  creates a Conversation with the customer as participant plus the task, so the agent answers
  from Flex through Twilio (the customer's address must be reachable through Twilio).

Neither threads cases: a TaskRouter task cannot take more messages, and an interaction's thread is
its Twilio Conversation, which the hub does not feed. Every contact is one task; the case shows in
the attributes (`hub.case_id`, and `conversations.conversation_id` in taskrouter mode).

Two-way (`callbacks.twilio_flex`): each delivery names the case's latest vendor object as its
`case_ref` (the task in taskrouter mode, the interaction's Conversation in interaction mode), which
the vendor's callbacks name; a later contact's task replaces it.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

from chalicelib.adapters.connectors.settings.twilio_flex import (  # noqa: F401 (re-exported)
    FLEX_URL,
    InteractionChannel,
    MAX_PRIORITY,
    MAX_TASK_TIMEOUT,
    TASKROUTER_URL,
    TwilioFlexSettings,
)
from chalicelib.adapters.connectors.base import DeliveryResult
from chalicelib.adapters.connectors.mapping import subject_for
from chalicelib.adapters.connectors.vendor import VendorConnector
from chalicelib.domain.identifiers import IdentifierKind
from chalicelib.domain.models import Channel, DeliveryJob
from chalicelib.errors import PermanentDeliveryError

DEFAULT_PRIORITIES = {"low": 0, "normal": 10, "high": 50, "urgent": 100}
#: "The maximum size of the JSON string used for defining Task attributes: 4096 characters",
#: whitespace included (https://www.twilio.com/docs/taskrouter/limits). Long texts are cut to fit.
ATTRIBUTES_LIMIT = 4096
#: In interaction mode Flex adds its own attributes (conversation, channel and invite sids,
#: `conversations`) to ours; this much is left for them.
INTERACTION_RESERVE = 1024

#: The hub channel → the Flex channel type shown in the task (`channelType`) and used for an
#: interaction's media channel when `channel_type` is not set.
FLEX_CHANNEL_TYPES: dict[Channel, str] = {
    Channel.SMS: "sms", Channel.MMS: "sms", Channel.WHATSAPP: "whatsapp", Channel.EMAIL: "email",
    Channel.WEBCHAT: "web", Channel.MESSENGER: "messenger",
}

_TC = re.compile(r"^TC[0-9a-fA-F]{32}$")


class TwilioFlexConnector(VendorConnector[TwilioFlexSettings]):
    """Idempotency: Twilio's REST API takes no idempotency key (`I-Twilio-Idempotency-Token` is a
    header Twilio sends on its webhooks, not one it honours on requests). So every task carries
    `hub_delivery_id`, and a delivery first asks TaskRouter for a task with that attribute
    (EvaluateTaskAttributes); one that exists is returned instead of creating another.
    TaskRouter deletes tasks about 5 minutes after they complete, which covers a worker that died
    between the create and the hub recording it.
    """

    key = "twilio_flex"
    vendor = "twilio_flex"
    docs_url = "https://www.twilio.com/docs/taskrouter/api/task"
    Settings = TwilioFlexSettings
    threads_cases = False
    callbacks = "chalicelib.adapters.callbacks.twilio_flex:TwilioFlexCallbacks"

    def deliver(self, job: DeliveryJob) -> DeliveryResult:
        # Built first: a job whose attributes cannot fit fails before any call.
        if self.settings.mode == "interaction":
            path, form = "/v1/Interactions", self.interaction_form(job)
        else:
            path, form = self._tasks_path(), self.task_form(job)
        existing = self._existing(job)
        if existing is not None:
            return existing
        response = self.api.call("POST", path, form=form)
        data = response.data if isinstance(response.data, dict) else {}
        sid = data.get("sid")
        if not sid:
            raise PermanentDeliveryError(f"{self.vendor} answered {response.status} without a sid")
        if self.settings.mode == "taskrouter":
            return DeliveryResult(external_ref=sid, case_ref=sid)
        return DeliveryResult(external_ref=sid, case_ref=_interaction_ref(data) or sid)

    # --- requests --------------------------------------------------------------------------------

    def task_form(self, job: DeliveryJob) -> dict[str, str]:
        """CreateTask's form: everything the agent and the workflow need is in `Attributes`."""
        settings = self.settings
        form = {
            "Attributes": _json(self.attributes(job)),
            "Priority": str(self._priority(job)),
            "TaskChannel": settings.task_channel,
        }
        if settings.workflow_sid:
            form["WorkflowSid"] = settings.workflow_sid
        if settings.task_timeout:
            form["Timeout"] = str(settings.task_timeout)
        return form

    def interaction_form(self, job: DeliveryJob) -> dict[str, str]:
        """CreateInteraction's form: the Channel and Routing objects as JSON strings."""
        settings = self.settings
        kind = settings.channel_type or FLEX_CHANNEL_TYPES.get(job.contact.channel, "chat")
        channel: dict[str, Any] = {"type": kind, "initiated_by": "api", "participants": [self._participant(job, kind)]}
        if kind == "email":
            channel["properties"] = {"from": settings.email_from, "from_name": settings.email_from_name or settings.email_from}
        properties: dict[str, Any] = {"workspace_sid": settings.workspace_sid, "priority": self._priority(job),
                                      "attributes": self.attributes(job)}
        if settings.workflow_sid:
            properties["workflow_sid"] = settings.workflow_sid
        properties["task_channel_sid" if _TC.match(settings.task_channel) else "task_channel_unique_name"] = settings.task_channel
        if settings.task_timeout:
            properties["timeout"] = settings.task_timeout
        return {"Channel": _json(channel), "Routing": _json({"properties": properties})}

    def attributes(self, job: DeliveryJob) -> dict[str, Any]:
        """The task attributes: Flex's known names (`name`, `channelType`, `customerName`,
        `customerAddress`, `customers`) for the agent's view and Insights, `routing` for workflow
        expressions (`routing.queue == "technical"`, `routing.skills HAS "german"`), `hub` ids."""
        contact, customer, routing = job.contact, job.customer, job.contact.routing
        mapping = self.settings.mapping
        address = _address(job)
        display = contact.sender.display_name or _attribute(job, "name") or address or customer.id
        language = contact.enrichment.get("language")
        attributes: dict[str, Any] = {
            **mapping.custom_values(job),
            "name": display,
            "title": subject_for(job),
            "text": contact.text or "",
            "channelType": FLEX_CHANNEL_TYPES.get(contact.channel, "custom"),
            "direction": "inbound",
            "customerName": display,
            "customerAddress": address or "",
            "customers": {k: v for k, v in {
                "external_id": customer.id, "name": _attribute(job, "name") or contact.sender.display_name,
                "email": _identifier(job, IdentifierKind.EMAIL), "phone": _identifier(job, IdentifierKind.PHONE),
            }.items() if v},
            "routing": {
                "queue": routing.queue,
                "priority": routing.priority.name.lower(),
                "skills": sorted(routing.skills),
                "skill_levels": dict(sorted(routing.skills.items())),
                "tags": mapping.tags_for(job),
            },
            "hub": {
                "contact_id": contact.id, "case_id": job.case.id, "customer_id": customer.id,
                "delivery_id": job.delivery_id, "channel": contact.channel.value, "provider": contact.provider,
                "language": language.get("code") if isinstance(language, dict) else None,
                "attachments": [a.url for a in contact.attachments if a.url],
            },
            "hub_delivery_id": job.delivery_id,
        }
        if self.settings.mode == "taskrouter":
            # Flex Insights groups the segments of one conversation by this id: the hub's case.
            # (In interaction mode Flex writes `conversations` itself, for the transcript.)
            attributes["conversations"] = {"conversation_id": job.case.id,
                                           "communication_channel": contact.channel.value}
        reserve = INTERACTION_RESERVE if self.settings.mode == "interaction" else 0
        return self._fit(attributes, ATTRIBUTES_LIMIT - reserve)

    def _fit(self, attributes: dict[str, Any], limit: int) -> dict[str, Any]:
        """The attributes within TaskRouter's size limit: attachment links go first, then the
        text is shortened. Raises PermanentDeliveryError when the rest is still too large."""
        if len(_json(attributes)) <= limit:
            return attributes
        attributes["hub"].pop("attachments", None)
        text = attributes["text"]
        low, high = 0, len(text)
        while low < high:
            middle = (low + high + 1) // 2
            attributes["text"] = _clip(text, middle)
            if len(_json(attributes)) <= limit:
                low = middle
            else:
                high = middle - 1
        attributes["text"] = _clip(text, low)
        size = len(_json(attributes))
        if size > limit:
            raise PermanentDeliveryError(
                f"{self.vendor}: task attributes are {size} characters without the text, over the {limit} "
                "TaskRouter allows; map fewer custom_fields")
        return attributes

    # --- helpers ---------------------------------------------------------------------------------

    def _existing(self, job: DeliveryJob) -> DeliveryResult | None:
        """The task (or interaction) already created for this delivery, if any."""
        expression = f'hub_delivery_id == "{job.delivery_id}"'
        path = f"{self._tasks_path()}?EvaluateTaskAttributes={quote(expression)}&PageSize=20"
        base = self.settings.base_url if self.settings.mode == "taskrouter" else self.settings.taskrouter_url
        response = self.api.call("GET", path, base_url=base)
        tasks = response.data.get("tasks") if isinstance(response.data, dict) else None
        for task in tasks or []:
            try:
                attributes = json.loads(task.get("attributes") or "{}")
            except (TypeError, ValueError):
                continue
            # Checked here too: a filter the API ignored must not make every delivery a duplicate.
            if isinstance(attributes, dict) and attributes.get("hub_delivery_id") == job.delivery_id:
                if self.settings.mode == "interaction":
                    conversation = attributes.get("conversationSid")
                    return DeliveryResult(external_ref=attributes.get("flexInteractionSid") or task.get("sid"),
                                          case_ref=conversation if isinstance(conversation, str) else task.get("sid"))
                return DeliveryResult(external_ref=task.get("sid"), case_ref=task.get("sid"))
        return None

    def _tasks_path(self) -> str:
        return f"/v1/Workspaces/{self.settings.workspace_sid}/Tasks"

    def _priority(self, job: DeliveryJob) -> int:
        return int(self.settings.mapping.priority_for(job, DEFAULT_PRIORITIES))

    def _participant(self, job: DeliveryJob, kind: str) -> dict[str, str]:
        if kind in ("sms", "whatsapp"):
            phone = _identifier(job, IdentifierKind.PHONE)
            if not phone:
                raise PermanentDeliveryError(f"{self.vendor}: a {kind} interaction needs the customer's phone number")
            proxy = self.settings.proxy_address or job.contact.account
            if kind == "whatsapp":
                phone, proxy = _whatsapp(phone), _whatsapp(proxy)
            return {"address": phone, "proxy_address": proxy}
        if kind == "email":
            email = _identifier(job, IdentifierKind.EMAIL)
            if not email:
                raise PermanentDeliveryError(f"{self.vendor}: an email interaction needs the customer's email address")
            name = job.contact.sender.display_name or _attribute(job, "name") or email
            return {"level": "to", "name": name, "address": email}
        # chat, web, messenger, gbm: a Conversations identity; the hub's customer id is stable.
        return {"identity": job.customer.id}


def _interaction_ref(interaction: dict[str, Any]) -> str | None:
    """The Conversation Flex made for an interaction: `conversationSid` in the attributes of the
    task it routed (`routing.properties.attributes`, a JSON string), else the task's sid."""
    routing = interaction.get("routing")
    properties = routing.get("properties") if isinstance(routing, dict) else None
    if not isinstance(properties, dict):
        return None
    try:
        attributes = json.loads(properties.get("attributes") or "{}")
    except (TypeError, ValueError):
        attributes = {}
    conversation = attributes.get("conversationSid") if isinstance(attributes, dict) else None
    return conversation if isinstance(conversation, str) and conversation else properties.get("sid")


def _address(job: DeliveryJob) -> str | None:
    """How the customer wrote in: the contact's first sender identifier."""
    identifiers = job.contact.sender.identifiers
    return identifiers[0].value if identifiers else None


def _identifier(job: DeliveryJob, kind: IdentifierKind) -> str | None:
    for identifier in [*job.contact.sender.identifiers, *job.customer.identifiers]:
        if identifier.kind == kind:
            return identifier.value
    return None


def _attribute(job: DeliveryJob, name: str) -> str | None:
    value = job.customer.attributes.get(name)
    return str(value.value) if value is not None and value.value is not None else None


def _whatsapp(address: str) -> str:
    return address if address.startswith("whatsapp:") else f"whatsapp:{address}"


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…" if limit > 0 else ""


def _json(value: Any) -> str:
    # ASCII escapes: the limit counts characters, and escaped JSON is the same size however counted.
    return json.dumps(value, separators=(",", ":"), default=str)
