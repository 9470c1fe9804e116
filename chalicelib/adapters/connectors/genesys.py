"""Genesys Cloud: contacts as Open Messaging inbound messages or task-management workitems:
https://developer.genesys.cloud/commdigital/digital/openmessaging/"""

from __future__ import annotations

import logging
from datetime import timezone
from typing import Any
from urllib.parse import quote

from chalicelib.adapters.connectors.settings.genesys import GenesysSettings  # noqa: F401 (re-exported)
from chalicelib.adapters.connectors.base import ConnectorRuntime, DeliveryResult, VendorResponse
from chalicelib.adapters.connectors.mapping import subject_for
from chalicelib.adapters.connectors.vendor import VendorConnector
from chalicelib.domain.models import DeliveryJob
from chalicelib.errors import PermanentDeliveryError
from chalicelib.secrets import SecretResolver

logger = logging.getLogger(__name__)

#: Hub priority → workitem priority (an integer; higher is routed first). The worktype's own
#: default applies when `mapping.priority` maps a name to nothing.
PRIORITIES = {"low": 0, "normal": 5, "high": 10, "urgent": 20}

# Limits from the SDK models (WorkitemCreate, WorkitemUpdate).
NAME_CHARS = 256
DESCRIPTION_CHARS = 512

_WORKITEMS = "/api/v2/taskmanagement/workitems"


class GenesysConnector(VendorConnector[GenesysSettings]):
    """Open Messaging: one call per contact. Workitems: a case's first delivery looks its
    workitem up by external tag (the hub case id) and creates it when absent; later contacts
    update it. The OAuth2 token is cached per process."""

    key = "genesys"
    vendor = "genesys cloud"
    docs_url = "https://developer.genesys.cloud/commdigital/digital/openmessaging/"
    Settings = GenesysSettings
    #: True for workitems. Genesys threads Open Messaging conversations by the customer id itself,
    #: so a one-way open_messaging destination turns it off on the instance (see `__init__`); a
    #: two-way one keeps it, so the deliverer records the customer id as the case's reference,
    #: which is how the agents' messages (addressed to that id) find the case.
    threads_cases = True
    callbacks = "chalicelib.adapters.callbacks.genesys:GenesysCallbacks"

    def __init__(self, name: str, settings: GenesysSettings, secrets: SecretResolver,
                 runtime: ConnectorRuntime) -> None:
        super().__init__(name, settings, secrets, runtime)
        if settings.mode == "open_messaging" and settings.callbacks is None:
            self.threads_cases = False  # type: ignore[misc]  # per destination, read by the deliverer

    def deliver(self, job: DeliveryJob) -> DeliveryResult:
        if self.settings.mode == "open_messaging":
            return self._send_message(job)
        known = job.case.external_refs.get(self.name)
        workitem_id = known.ref if known is not None else self._find_workitem(job)
        if workitem_id is not None:
            self.api.call("PATCH", f"{_WORKITEMS}/{quote(workitem_id, safe='')}", json_body=self._workitem_update(job))
            return DeliveryResult(external_ref=workitem_id, case_ref=workitem_id)
        response = self.api.call("POST", _WORKITEMS, json_body=self._workitem_create(job))
        created = _id(response, "workitem")
        return DeliveryResult(external_ref=created, case_ref=created)

    # --- Open Messaging ---------------------------------------------------------------------------

    def _send_message(self, job: DeliveryJob) -> DeliveryResult:
        path = f"/api/v2/conversations/messages/{self.settings.integration_id}/inbound/open/message"
        response = self.api.call("POST", path, json_body=open_message(job))
        # `channel.from.id`: the id Genesys addresses the agents' answers to (`channel.to.id`).
        return DeliveryResult(external_ref=_id(response, "message"),
                              case_ref=job.customer.id if self.threads_cases else None)

    def deliver_failure_note(self, job: DeliveryJob) -> DeliveryResult:
        """`message.undelivered`: a `Failed` receipt for the agent's Genesys message (its id is the
        reply's `comment_id`), since Genesys has no notes; with the failure's code and time taken
        from the message, so a retried delivery sends the same receipt."""
        from chalicelib.adapters.callbacks.genesys import GenesysCallbacks
        from chalicelib.service.failure_notes import failure_note

        side = self.callback_side()
        detail = job.contact.metadata.get("agent_reply")
        if not isinstance(side, GenesysCallbacks) or not isinstance(detail, dict):
            return super().deliver_failure_note(job)
        known = job.case.external_refs.get(self.name)
        ticket = detail.get("vendor_ref") or (known.ref if known is not None else job.customer.id)
        receipt = side.failure_receipt(str(ticket), detail.get("comment_id"), job.contact, failure_note(job.contact))
        return DeliveryResult(external_ref=receipt)

    # --- workitems --------------------------------------------------------------------------------

    def _find_workitem(self, job: DeliveryJob) -> str | None:
        """The workitem an earlier, unrecorded attempt created for this case, if any."""
        query = {
            # The query needs an EQ filter on typeId (or queue, assignee, workbin).
            "filters": [
                {"name": "typeId", "type": "String", "operator": "EQ", "values": [self.settings.type_id]},
                {"name": "externalTag", "type": "String", "operator": "EQ", "values": [job.case.id]},
            ],
            "pageSize": 1,
        }
        response = self.api.call("POST", f"{_WORKITEMS}/query", json_body=query, allow=(400,))
        if response.status == 400:
            # The query is a preview API: if it refuses the filter, deliver anyway and say so.
            logger.warning("genesys destination %s: workitem lookup refused (400); creating without the "
                           "duplicate check", self.name)
            return None
        entities = response.data.get("entities") if isinstance(response.data, dict) else None
        if entities and isinstance(entities[0], dict) and entities[0].get("id"):
            return str(entities[0]["id"])
        return None

    def _workitem_create(self, job: DeliveryJob) -> dict[str, Any]:
        settings = self.settings
        body: dict[str, Any] = {
            "name": subject_for(job, limit=NAME_CHARS),
            "typeId": settings.type_id,
            "description": summary(job),
            # The hub case id: how a retry finds the workitem an unrecorded attempt created.
            "externalTag": job.case.id,
        }
        priority = settings.mapping.priority_for(job, PRIORITIES)
        if priority is not None:
            body["priority"] = priority
        queue = settings.queues.get(job.contact.routing.queue) or settings.queue_id
        if queue:
            body["queueId"] = queue
        skills = [settings.skills[s] for s in job.contact.routing.skills if s in settings.skills]
        if skills:
            body["skillIds"] = skills
        language = settings.languages.get(_language(job) or "")
        if language:
            body["languageId"] = language
        if settings.workbin_id:
            body["workbinId"] = settings.workbin_id
        custom = settings.mapping.custom_values(job)
        if custom:
            body["customFields"] = custom
        return body

    def _workitem_update(self, job: DeliveryJob) -> dict[str, Any]:
        # Workitems have no comments, and the description holds 512 characters: it shows the
        # latest contact.
        body: dict[str, Any] = {"description": summary(job)}
        custom = self.settings.mapping.custom_values(job)
        if custom:
            body["customFields"] = custom
        return body


def open_message(job: DeliveryJob) -> dict[str, Any]:
    """The inbound message: from the hub customer (an opaque id, so merges of phone and email
    stay one sender), with the delivery id as the message id."""
    contact, customer = job.contact, job.customer
    sender: dict[str, str] = {"id": customer.id, "idType": "Opaque"}
    name = customer.attributes.get("name")
    nickname = (name.value if name is not None else None) or contact.sender.display_name
    if nickname:
        sender["nickname"] = str(nickname)
        first, _, last = str(nickname).strip().rpartition(" ")
        if first:
            sender["firstName"], sender["lastName"] = first, last
    at = (contact.sent_at or contact.received_at).astimezone(timezone.utc)
    return {
        "channel": {
            "messageId": job.delivery_id,
            "time": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
            "from": sender,
        },
        "text": message_text(job),
    }


def message_text(job: DeliveryJob) -> str:
    """The customer's text, with attachments and a shared location as lines (never empty)."""
    contact = job.contact
    lines = [contact.text] if contact.text else []
    for attachment in contact.attachments:
        label = attachment.filename or attachment.content_type or "file"
        lines.append(f"Attachment: {label} {attachment.url or ''}".rstrip())
    if contact.location is not None:
        lines.append(f"Location: {contact.location.latitude}, {contact.location.longitude}")
    return "\n".join(lines) or f"({contact.content_type.value} message on {contact.channel.value})"


def summary(job: DeliveryJob) -> str:
    """A workitem description: who wrote on which channel, and the message, in 512 characters."""
    contact = job.contact
    sender = contact.sender.display_name or job.customer.id
    text = " ".join(message_text(job).split())
    line = f"{sender} via {contact.channel.value}: {text}"
    return line if len(line) <= DESCRIPTION_CHARS else line[: DESCRIPTION_CHARS - 1] + "…"


def _language(job: DeliveryJob) -> str | None:
    language = job.contact.enrichment.get("language")
    return language.get("code") if isinstance(language, dict) else None


def _id(response: VendorResponse, what: str) -> str:
    data = response.data
    if isinstance(data, dict) and data.get("id"):
        return str(data["id"])
    raise PermanentDeliveryError(f"genesys cloud answered {response.status} without the {what} id")
