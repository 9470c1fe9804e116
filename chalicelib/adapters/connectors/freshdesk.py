"""Freshdesk tickets and notes: https://developers.freshdesk.com/api/#tickets"""

from __future__ import annotations

import base64
import html
import json
import logging
from typing import Any
from urllib.parse import quote

from chalicelib.adapters.connectors.settings.freshdesk import FreshdeskSettings  # noqa: F401 (re-exported)
from chalicelib.adapters.connectors.base import MESSAGE_SENT, ConnectorRuntime, DeliveryResult, VendorResponse
from chalicelib.adapters.connectors.echo import carries, outbound_html
from chalicelib.adapters.connectors.mapping import body_for, subject_for
from chalicelib.adapters.connectors.vendor import VendorConnector
from chalicelib.domain.identifiers import IdentifierKind
from chalicelib.domain.models import Channel, DeliveryJob
from chalicelib.errors import PermanentDeliveryError
from chalicelib.secrets import Secret, SecretResolver

logger = logging.getLogger(__name__)

#: Conversations are listed oldest first, at most 100 a page
#: (https://developers.freshdesk.com/api/#list_all_ticket_notes): the echo lookup reads this many
#: pages at most, so a ticket with more conversations than that may get a duplicate on a retry.
CONVERSATION_PAGE = 100
MAX_CONVERSATION_PAGES = 10
#: Hub priority → Freshdesk priority (1 Low, 2 Medium, 3 High, 4 Urgent).
DEFAULT_PRIORITIES = {"low": 1, "normal": 2, "high": 3, "urgent": 4}
#: https://developers.freshdesk.com/api/#ticket_attributes: 2 Open, 3 Pending, 4 Resolved, 5 Closed.
STATUS_OPEN = 2
#: Channel → Freshdesk ticket source (1 Email, 2 Portal, 3 Phone, 7 Chat, 9 Feedback Widget,
#: 10 Outbound Email). Messaging apps arrive as chats, the way Freshdesk's own messaging
#: integrations file them; SMS and X have no Freshdesk source, so none is sent (Freshdesk then
#: records the API's default).
DEFAULT_SOURCES: dict[Channel, int] = {
    Channel.EMAIL: 1,
    Channel.WEBCHAT: 7,
    Channel.WHATSAPP: 7,
    Channel.MESSENGER: 7,
    Channel.INSTAGRAM: 7,
    Channel.TELEGRAM: 7,
    Channel.SLACK: 7,
}


class ApiKeyAuth:
    """Freshdesk's basic auth: the API key as user name and any password, conventionally `X`
    (https://developers.freshdesk.com/api/#authentication)."""

    uses_oauth = False

    def __init__(self, key: Secret, secrets: SecretResolver) -> None:
        self._key = key
        self._secrets = secrets

    def headers(self) -> dict[str, str]:
        pair = f"{self._secrets.get(self._key)}:X".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}

    def forget_token(self) -> None:
        pass


class FreshdeskConnector(VendorConnector[FreshdeskSettings]):
    """One ticket per hub case, a note per follow-up contact."""

    key = "freshdesk"
    vendor = "freshdesk"
    docs_url = "https://developers.freshdesk.com/api/#tickets"
    Settings = FreshdeskSettings
    threads_cases = True
    message_events = frozenset({MESSAGE_SENT})
    callbacks = "chalicelib.adapters.callbacks.freshdesk:FreshdeskCallbacks"

    def __init__(self, name: str, settings: FreshdeskSettings, secrets: SecretResolver,
                 runtime: ConnectorRuntime) -> None:
        super().__init__(name, settings, secrets, runtime)
        if settings.api_key is not None:
            self.auth = self.api.auth = ApiKeyAuth(settings.api_key, secrets)
        if not settings.outbound_messages:
            self.message_events = frozenset()  # type: ignore[misc]  # per destination, read by the deliverer

    def deliver(self, job: DeliveryJob) -> DeliveryResult:
        if self.message_event(job) is not None:
            return self._outbound(job)
        ref = job.case.external_refs.get(self.name)
        if ref is not None:
            return self._note(job, ref.ref)
        if self.settings.case_id_field:
            found = self._case_tickets(job.case.id)
            if found:
                # A ticket whose description names this contact: an earlier attempt of this very
                # delivery created it (when the search result carries the description).
                own = next((t for t in found
                            if job.contact.id in str(t.get("description_text") or t.get("description") or "")), None)
                if own is not None:
                    return DeliveryResult(external_ref=str(own["id"]), case_ref=str(own["id"]))
                return self._note(job, str(min(int(t["id"]) for t in found)))
        return self._create(job)

    def _case_tickets(self, case_id: str) -> list[dict[str, Any]]:
        # https://developers.freshdesk.com/api/#filter_tickets: the query is double-quoted,
        # string values single-quoted. The search index lags writes by up to a few minutes.
        field = self.settings.case_id_field
        query = f"\"{field}:'{case_id.replace(chr(39), '')}'\""
        response = self.api.call("GET", f"/api/v2/search/tickets?query={quote(query, safe='')}")
        results = _dict(response.data).get("results")
        return [t for t in results if isinstance(t, dict) and t.get("id") is not None] \
            if isinstance(results, list) else []

    def _create(self, job: DeliveryJob) -> DeliveryResult:
        ticket: dict[str, Any] = {
            **_requester(job),
            "subject": subject_for(job),
            "description": _html(body_for(job)),
            "status": STATUS_OPEN,
        }
        priority = self.settings.mapping.priority_for(job, DEFAULT_PRIORITIES)
        if priority is not None:
            ticket["priority"] = int(priority)
        source = {**DEFAULT_SOURCES, **self.settings.sources}.get(job.contact.channel)
        if source is not None:
            ticket["source"] = source
        tags = self.settings.mapping.tags_for(job)
        if tags:
            ticket["tags"] = tags
        custom = {field: _field_value(value) for field, value in self.settings.mapping.custom_values(job).items()}
        if self.settings.case_id_field:
            custom[self.settings.case_id_field] = job.case.id
        if custom:
            ticket["custom_fields"] = custom
        if self.settings.ticket_type:
            ticket["type"] = self.settings.ticket_type
        if self.settings.group_id is not None:
            ticket["group_id"] = self.settings.group_id
        response = self.api.call("POST", "/api/v2/tickets", json_body=ticket)
        ticket_id = str(_id(response, "ticket"))
        return DeliveryResult(external_ref=ticket_id, case_ref=ticket_id)

    def _note(self, job: DeliveryJob, ticket_id: str) -> DeliveryResult:
        if not ticket_id.isdigit():
            raise PermanentDeliveryError(f"freshdesk: stored ticket reference {ticket_id!r} is not a ticket id")
        note = {"body": _html(body_for(job)), "private": self.settings.private_notes, "incoming": True}
        response = self.api.call("POST", f"/api/v2/tickets/{ticket_id}/notes", json_body=note, allow=(404,))
        if response.status == 404:
            # An agent deleted the case's ticket: the case starts a new one.
            return self._create(job)
        return DeliveryResult(external_ref=str(_id(response, "note")), case_ref=ticket_id)


    # --- outbound messages -----------------------------------------------------------------------

    def _outbound(self, job: DeliveryJob) -> DeliveryResult:
        """The hub's message to the customer as a public note (`private: false`, `incoming:
        false`: an agent's, visible to the requester in the portal), ending in the echo marker.
        Not a reply: Freshdesk emails a reply to the requester, who already has the message on
        their channel. Freshdesk takes no idempotency key, so the ticket's conversations are read
        first and a note already carrying this contact's marker is not written again."""
        ref = job.case.external_refs.get(self.name)
        if ref is None:
            raise PermanentDeliveryError(f"freshdesk: case {job.case.id} has no ticket for the outbound message")
        ticket_id = ref.ref
        if not ticket_id.isdigit():
            raise PermanentDeliveryError(f"freshdesk: stored ticket reference {ticket_id!r} is not a ticket id")
        found = self._marked_conversation(ticket_id, job.contact.id)
        if found is False:
            logger.info("freshdesk: ticket %s is gone; outbound contact %s not added", ticket_id, job.contact.id)
            return DeliveryResult()
        if found is not None:
            return DeliveryResult(external_ref=str(found), case_ref=ticket_id)
        note: dict[str, Any] = {"body": outbound_html(job), "private": False, "incoming": False}
        if self.settings.outbound_agent_id is not None:
            note["user_id"] = self.settings.outbound_agent_id
        response = self.api.call("POST", f"/api/v2/tickets/{ticket_id}/notes", json_body=note, allow=(404,))
        if response.status == 404:
            logger.info("freshdesk: ticket %s is gone; outbound contact %s not added", ticket_id, job.contact.id)
            return DeliveryResult()
        return DeliveryResult(external_ref=str(_id(response, "note")), case_ref=ticket_id)

    def _marked_conversation(self, ticket_id: str, contact_id: str) -> str | bool | None:
        """The id of the conversation carrying this contact's marker; None when there is none,
        False when the ticket no longer exists."""
        for page in range(1, MAX_CONVERSATION_PAGES + 1):
            response = self.api.call(
                "GET", f"/api/v2/tickets/{ticket_id}/conversations?per_page={CONVERSATION_PAGE}&page={page}",
                allow=(404,))
            if response.status == 404:
                return False
            listed = [c for c in response.data if isinstance(c, dict)] if isinstance(response.data, list) else []
            for conversation in listed:
                if carries(str(conversation.get("body_text") or conversation.get("body") or ""), contact_id):
                    return str(conversation.get("id") or ticket_id)
            if len(listed) < CONVERSATION_PAGE:
                return None
        return None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _id(response: VendorResponse, kind: str) -> int:
    value = _dict(response.data).get("id")
    if value is None:
        raise PermanentDeliveryError(f"freshdesk answered {response.status} without a {kind} id")
    return value


def _requester(job: DeliveryJob) -> dict[str, Any]:
    """One requester identity, the most useful first: email (agents can reply), phone, else the
    hub customer id as the contact's unique external id. Freshdesk creates the contact if none
    has it; a phone without an email needs a name."""
    customer = job.customer
    email = next((i.value for i in customer.identifiers if i.kind == IdentifierKind.EMAIL), None)
    phone = next((i.value for i in customer.identifiers if i.kind == IdentifierKind.PHONE), None)
    attribute = customer.attributes.get("name")
    name = (attribute.value.strip() if attribute is not None and isinstance(attribute.value, str) else "") \
        or job.contact.sender.display_name or email or phone or f"Customer {customer.id}"
    if email:
        return {"email": email, "name": name}
    if phone:
        return {"phone": phone, "name": name}
    return {"unique_external_id": customer.id, "name": name}


def _html(text: str) -> str:
    # Descriptions and notes are HTML: escape the customer's text and keep its line breaks.
    return "<div>" + html.escape(text).replace("\n", "<br>") + "</div>"


def _field_value(value: Any) -> Any:
    """Freshdesk custom fields take text, numbers and booleans."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)
