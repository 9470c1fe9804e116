"""HubSpot CRM: contacts upserted, each contact logged as a note, tickets per case
(https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/guide)."""

from __future__ import annotations

import html
from datetime import timezone
from typing import Any

from chalicelib.adapters.connectors.settings.hubspot import HubSpotSettings  # noqa: F401 (re-exported)
from chalicelib.adapters.connectors.base import MESSAGE_SENT, DeliveryResult
from chalicelib.adapters.connectors.echo import carries, outbound_html
from chalicelib.adapters.connectors.mapping import FieldMapping, body_for, subject_for
from chalicelib.adapters.connectors.vendor import VendorConnector
from chalicelib.domain.identifiers import IdentifierKind
from chalicelib.domain.models import CustomerEvent, DeliveryJob
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError

CONTACTS = "/crm/v3/objects/contacts"
TICKETS = "/crm/v3/objects/tickets"
NOTES = "/crm/v3/objects/notes"

#: HubSpot-defined association types (https://developers.hubspot.com/docs/api/crm/associations).
NOTE_TO_CONTACT = 202
NOTE_TO_TICKET = 228
TICKET_TO_CONTACT = 16

#: Hub priority → `hs_ticket_priority`; portals without URGENT map it with `mapping.priority`.
DEFAULT_PRIORITIES = {"low": "LOW", "normal": "MEDIUM", "high": "HIGH", "urgent": "URGENT"}
#: `hs_note_body` holds at most 65,536 characters.
NOTE_LIMIT = 65_536
#: A ticket's `subject` is a single-line text property.
SUBJECT_LIMIT = 255
#: The echo lookup reads this many of the record's newest notes (a search page holds at most 100).
NOTE_LOOKUP_LIMIT = 100


class HubSpotConnector(VendorConnector[HubSpotSettings]):
    key = "hubspot"
    vendor = "hubspot"
    docs_url = "https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/guide"
    Settings = HubSpotSettings
    #: Only destinations with `create_tickets: true` keep a ticket per case; the deliverer asks the
    #: instance, so the others are never handed a case reference.
    threads_cases = True
    supports_customer_events = True
    message_events = frozenset({MESSAGE_SENT})
    callbacks = "chalicelib.adapters.callbacks.hubspot:HubSpotCallbacks"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Per destination: without tickets there is no vendor object per case.
        self.threads_cases = self.settings.create_tickets
        if not self.settings.outbound_messages:
            self.message_events = frozenset()  # type: ignore[misc]  # per destination, read by the deliverer

    def deliver(self, job: DeliveryJob) -> DeliveryResult:
        if self.message_event(job) is not None:
            return self._outbound(job)
        contact_id = self._upsert_contact(job)
        ticket_id = self._ticket(job, contact_id) if self.settings.create_tickets else None
        note_id = self._note(job, contact_id, ticket_id)
        return DeliveryResult(external_ref=note_id, case_ref=ticket_id)

    def deliver_customer_event(self, event: CustomerEvent) -> DeliveryResult:
        """`customer.erased` GDPR-deletes the contacts holding the customer id; merges and
        unmerges change nothing in HubSpot."""
        if event.event_type != "customer.erased":
            return DeliveryResult()
        prop = self.settings.customer_id_property
        if not prop:
            raise PermanentDeliveryError(
                "hubspot cannot erase this customer: set customer_id_property so the hub can find its contact")
        deleted = []
        for contact_id in self._search(CONTACTS, [[_eq(prop, event.customer_id)]], limit=100):
            # By record id, never by email: HubSpot blocklists an email it does not find.
            self.api.call("POST", f"{CONTACTS}/gdpr-delete", json_body={"objectId": contact_id}, allow=(404,))
            deleted.append(contact_id)
        return DeliveryResult(external_ref=",".join(deleted) or None)

    # --- contacts ---------------------------------------------------------------------------------

    def _upsert_contact(self, job: DeliveryJob) -> str:
        """The contact's record id: upserted by email, else found by the hub customer id or phone
        number (search) and updated, else created."""
        email = _identifier(job, IdentifierKind.EMAIL)
        phone = _identifier(job, IdentifierKind.PHONE)
        properties = self._contact_properties(job, phone)
        if email:
            response = self.api.call("POST", f"{CONTACTS}/batch/upsert", json_body={
                "inputs": [{"idProperty": "email", "id": email, "properties": properties}],
            })
            return _first_result_id(response.data, vendor=self.vendor)
        groups = []
        if self.settings.customer_id_property:
            groups.append([_eq(self.settings.customer_id_property, job.customer.id)])
        if phone:
            groups += [[_eq("phone", phone)], [_eq("mobilephone", phone)]]
        if not groups:
            raise PermanentDeliveryError(
                "hubspot needs the customer's email address or phone number (or customer_id_property) "
                "to find the contact")
        found = self._search(CONTACTS, groups, limit=1)
        if found:
            self.api.call("PATCH", f"{CONTACTS}/{found[0]}", json_body={"properties": properties})
            return found[0]
        if not {"firstname", "lastname"} & properties.keys():
            # A new contact needs an email, first name or last name; the number stands in.
            properties["lastname"] = phone or job.customer.id
        response = self.api.call("POST", CONTACTS, json_body={"properties": properties})
        return _object_id(response.data, vendor=self.vendor)

    def _contact_properties(self, job: DeliveryJob, phone: str | None) -> dict[str, str]:
        properties: dict[str, str] = {}
        name = job.customer.attributes.get("name")
        full = str(name.value).strip() if name is not None and name.value else (job.contact.sender.display_name or "")
        if full:
            first, _, last = full.partition(" ")
            properties["firstname"] = first
            if last.strip():
                properties["lastname"] = last.strip()
        if phone:
            properties["phone"] = phone
        if self.settings.customer_id_property:
            properties[self.settings.customer_id_property] = job.customer.id
        properties.update(_texts(self.settings.mapping.custom_values(job)))
        return properties

    # --- tickets ----------------------------------------------------------------------------------

    def _ticket(self, job: DeliveryJob, contact_id: str) -> str:
        known = job.case.external_refs.get(self.name)
        if known is not None:
            return known.ref
        prop = self.settings.case_id_property
        if prop:
            found = self._search(TICKETS, [[_eq(prop, job.case.id)]], limit=1)
            if found:
                return found[0]
        response = self.api.call("POST", TICKETS, json_body={
            "properties": self._ticket_properties(job),
            "associations": [_association(contact_id, TICKET_TO_CONTACT)],
        }, allow=(409,) if prop else ())
        if response.status == 409:
            # The case id is already on a ticket that search does not show yet (HubSpot indexes
            # new records within seconds): the next attempt finds it.
            found = self._search(TICKETS, [[_eq(prop, job.case.id)]], limit=1)
            if found:
                return found[0]
            raise RetryableDeliveryError("hubspot: a ticket for this case exists but is not searchable yet",
                                         retry_after=5)
        return _object_id(response.data, vendor=self.vendor)

    def _ticket_properties(self, job: DeliveryJob) -> dict[str, str]:
        settings = self.settings
        properties = {"subject": subject_for(job, limit=SUBJECT_LIMIT), "hs_pipeline_stage": str(settings.ticket_stage)}
        if settings.ticket_pipeline:
            properties["hs_pipeline"] = settings.ticket_pipeline
        priority = settings.mapping.priority_for(job, DEFAULT_PRIORITIES)
        if priority is not None:
            properties["hs_ticket_priority"] = str(priority)
        if settings.case_id_property:
            properties[settings.case_id_property] = job.case.id
        properties.update(_texts(FieldMapping(custom_fields=settings.ticket_custom_fields).custom_values(job)))
        return properties

    # --- notes ------------------------------------------------------------------------------------

    def _note(self, job: DeliveryJob, contact_id: str, ticket_id: str | None) -> str:
        associations = [_association(contact_id, NOTE_TO_CONTACT)]
        if ticket_id:
            associations.append(_association(ticket_id, NOTE_TO_TICKET))
        response = self.api.call("POST", NOTES, json_body={
            "properties": {"hs_timestamp": _timestamp(job), "hs_note_body": _note_body(job)},
            "associations": associations,
        })
        return _object_id(response.data, vendor=self.vendor)

    # --- outbound messages -----------------------------------------------------------------------

    def _outbound(self, job: DeliveryJob) -> DeliveryResult:
        """The hub's message to the customer as a note on the case's ticket (or, without tickets,
        on the customer's contact), ending in the echo marker. HubSpot tickets have no public
        thread, and a note is never sent to anyone. HubSpot takes no idempotency key, so the
        record's newest notes are searched first (by association) and one carrying this
        contact's marker is not written again."""
        if self.settings.create_tickets:
            known = job.case.external_refs.get(self.name)
            if known is None:
                raise PermanentDeliveryError(f"{self.vendor}: case {job.case.id} has no ticket for the outbound message")
            record_id, kind, association = known.ref, "ticket", NOTE_TO_TICKET
        else:
            record_id, kind, association = self._upsert_contact(job), "contact", NOTE_TO_CONTACT
        found = self._marked_note(kind, record_id, job.contact.id)
        if found is None:
            response = self.api.call("POST", NOTES, json_body={
                "properties": {"hs_timestamp": _timestamp(job), "hs_note_body": outbound_html(job, limit=NOTE_LIMIT)},
                "associations": [_association(record_id, association)],
            })
            found = _object_id(response.data, vendor=self.vendor)
        return DeliveryResult(external_ref=found, case_ref=record_id if kind == "ticket" else None)

    def _marked_note(self, kind: str, record_id: str, contact_id: str) -> str | None:
        """The id of a note of the record that carries this contact's marker, among its newest.
        The search index trails writes by seconds, so a retry within that time can miss it."""
        response = self.api.call("POST", f"{NOTES}/search", json_body={
            "filterGroups": [{"filters": [_eq(f"associations.{kind}", record_id)]}],
            "sorts": [{"propertyName": "hs_timestamp", "direction": "DESCENDING"}],
            "properties": ["hs_note_body"], "limit": NOTE_LOOKUP_LIMIT,
        })
        results = response.data.get("results") if isinstance(response.data, dict) else None
        for note in results if isinstance(results, list) else []:
            body = (note.get("properties") or {}).get("hs_note_body") if isinstance(note, dict) else None
            if note.get("id") and carries(str(body or ""), contact_id):
                return str(note["id"])
        return None

    # --- search -----------------------------------------------------------------------------------

    def _search(self, path: str, groups: list[list[dict[str, str]]], *, limit: int) -> list[str]:
        """Record ids matching any of the filter groups (filters in a group are ANDed)."""
        response = self.api.call("POST", f"{path}/search", json_body={
            "filterGroups": [{"filters": filters} for filters in groups],
            "properties": ["hs_object_id"], "limit": limit,
        })
        results = response.data.get("results") if isinstance(response.data, dict) else None
        return [str(r["id"]) for r in results or [] if isinstance(r, dict) and r.get("id")]


def _identifier(job: DeliveryJob, kind: IdentifierKind) -> str | None:
    return next((i.value for i in job.customer.identifiers if i.kind is kind), None)


def _eq(prop: str, value: str) -> dict[str, str]:
    return {"propertyName": prop, "operator": "EQ", "value": value}


def _association(record_id: str, type_id: int) -> dict[str, Any]:
    return {"to": {"id": record_id},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}


def _texts(values: dict[str, Any]) -> dict[str, str]:
    """Property values as HubSpot takes them, strings; empty ones are left out, since "" would
    clear what HubSpot holds."""
    texts = {name: _text(value) for name, value in values.items()}
    return {name: text for name, text in texts.items() if text}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)  # multi-select values are ;-separated
    return str(value)


def _timestamp(job: DeliveryJob) -> str:
    """When the customer wrote, as HubSpot's UTC ISO form with milliseconds."""
    at = job.contact.received_at.astimezone(timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _note_body(job: DeliveryJob) -> str:
    """The note body is rich text (HTML): the plain body escaped, with its line breaks kept."""
    return _fit_note("<br>".join(html.escape(line) for line in body_for(job).split("\n")))


def _fit_note(body: str) -> str:
    if len(body) <= NOTE_LIMIT:
        return body
    cut = body[: NOTE_LIMIT - 1]
    if cut.rfind("&") > cut.rfind(";") or cut.rfind("<") > cut.rfind(">"):
        cut = cut[: max(cut.rfind("&"), cut.rfind("<"))]  # never end inside an entity or a tag
    return cut + "…"


def _first_result_id(data: Any, *, vendor: str) -> str:
    """The record id of a one-input batch answer; its error message when the input failed."""
    results = data.get("results") if isinstance(data, dict) else None
    if results and isinstance(results[0], dict) and results[0].get("id"):
        return str(results[0]["id"])
    errors = data.get("errors") if isinstance(data, dict) else None
    if errors and isinstance(errors[0], dict):
        raise PermanentDeliveryError(f"{vendor} refused the contact: {str(errors[0].get('message', ''))[:500]}")
    raise PermanentDeliveryError(f"{vendor} answered the contact upsert without a record id")


def _object_id(data: Any, *, vendor: str) -> str:
    record_id = data.get("id") if isinstance(data, dict) else None
    if not record_id:
        raise PermanentDeliveryError(f"{vendor} answered without a record id")
    return str(record_id)
