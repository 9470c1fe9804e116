"""Salesforce Service Cloud: Contacts and Cases over the REST API
(https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/intro_rest.htm)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlencode

from chalicelib.adapters.connectors.settings.salesforce import SalesforceSettings  # noqa: F401 (re-exported)
from chalicelib.adapters.connectors.base import MESSAGE_SENT, DeliveryResult, VendorResponse
from chalicelib.adapters.connectors.echo import carries, outbound_lines
from chalicelib.adapters.connectors.mapping import body_for, subject_for
from chalicelib.adapters.connectors.vendor import VendorConnector
from chalicelib.domain.identifiers import IdentifierKind
from chalicelib.domain.models import Channel, CustomerEvent, DeliveryJob
from chalicelib.errors import PermanentDeliveryError

#: Hub priority → Case.Priority; the standard picklist is High, Medium, Low.
PRIORITIES = {"low": "Low", "normal": "Medium", "high": "High", "urgent": "High"}
#: Channel → Case.Origin. Only the standard picklist values (Phone, Email, Web) by default, so a
#: fresh org accepts them; add org values (`whatsapp: WhatsApp`) through `origins`.
ORIGINS: dict[Channel, str] = {Channel.EMAIL: "Email"}
DEFAULT_ORIGIN = "Web"
#: Placeholder for Contact.LastName, which an insert requires, when the hub knows no name.
UNKNOWN_LAST_NAME = "Unknown"

# Field lengths from the Object Reference (Case, CaseComment, Contact).
SUBJECT_CHARS = 255
DESCRIPTION_CHARS = 32_000
COMMENT_BYTES = 4_000
FIRST_NAME_CHARS = 40
LAST_NAME_CHARS = 80

#: A Salesforce record id (15 or 18 characters): what may go into the echo lookup's SOQL.
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")


class SalesforceConnector(VendorConnector[SalesforceSettings]):
    """One Case per hub case, on the customer's Contact; later contacts add CaseComments.

    Calls per delivery: upsert the Contact by its external id, then either create the Case (an
    upsert by the hub case id when `case_external_id_field` is set) or add a CaseComment to the
    Case the first delivery created. The OAuth2 token is cached per process.
    """

    key = "salesforce"
    vendor = "salesforce"
    docs_url = "https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/intro_rest.htm"
    Settings = SalesforceSettings
    threads_cases = True
    supports_customer_events = True
    message_events = frozenset({MESSAGE_SENT})
    callbacks = "chalicelib.adapters.callbacks.salesforce:SalesforceCallbacks"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.settings.outbound_messages:
            self.message_events = frozenset()  # type: ignore[misc]  # per destination, read by the deliverer

    def deliver(self, job: DeliveryJob) -> DeliveryResult:
        if self.message_event(job) is not None:
            return self._outbound(job)
        base = self.api_base()
        known = job.case.external_refs.get(self.name)
        if known is not None:
            self._upsert_contact(base, job)
            comment = self._create(base, "CaseComment", {
                "ParentId": known.ref,
                "CommentBody": fit_bytes(body_for(job), COMMENT_BYTES),
                "IsPublished": self.settings.publish_comments,
            })
            return DeliveryResult(external_ref=comment, case_ref=known.ref)
        contact_id = self._upsert_contact(base, job)
        case_id = self._open_case(base, job, contact_id)
        return DeliveryResult(external_ref=case_id, case_ref=case_id)

    def deliver_customer_event(self, event: CustomerEvent) -> DeliveryResult:
        """`customer.erased` deletes the Contact; merges change nothing in Salesforce (the
        survivor's next contact upserts its own Contact). Raises like `deliver`."""
        if event.event_type != "customer.erased" or not self.settings.delete_contacts_on_erasure:
            return DeliveryResult()
        response = self.api.call("DELETE", self._contact_path(event.customer_id), base_url=self.api_base(),
                                 allow=(404,))
        if response.status == 404 and "external id field" in _errors(response).lower():
            raise PermanentDeliveryError(f"salesforce answered 404: {_errors(response)}")
        # 404 otherwise: no Contact has this customer id (never delivered, or already deleted).
        return DeliveryResult()

    # --- outbound messages -----------------------------------------------------------------------

    def _outbound(self, job: DeliveryJob) -> DeliveryResult:
        """The hub's message to the customer as a published CaseComment on the case's Case,
        ending in the echo marker. Salesforce takes no idempotency key for a create, and a
        CaseComment can have no external id field, so one SOQL query first looks for a comment
        of the Case whose CommentBody carries this contact's marker (CommentBody is filterable)."""
        known = job.case.external_refs.get(self.name)
        if known is None:
            raise PermanentDeliveryError(f"salesforce: case {job.case.id} has no Case for the outbound message")
        case_id = known.ref
        if not _RECORD_ID.match(case_id):
            raise PermanentDeliveryError(f"salesforce: stored Case reference {case_id!r} is not a record id")
        base = self.api_base()
        soql = ("SELECT Id, CommentBody FROM CaseComment WHERE ParentId = '" + case_id + "' AND CommentBody LIKE '%"
                + _like(f"hub:{job.contact.id}") + "%' ORDER BY CreatedDate DESC LIMIT 10")
        response = self.api.call("GET", f"/services/data/v{self.settings.api_version}/query?{urlencode({'q': soql})}",
                                 base_url=base)
        records = response.data.get("records") if isinstance(response.data, dict) else None
        for record in records if isinstance(records, list) else []:
            # LIKE is case-insensitive: the marker itself decides.
            if isinstance(record, dict) and record.get("Id") and carries(str(record.get("CommentBody") or ""), job.contact.id):
                return DeliveryResult(external_ref=str(record["Id"]), case_ref=case_id)
        response = self.api.call("POST", f"{self.sobjects_path}/CaseComment/", base_url=base, json_body={
            "ParentId": case_id, "CommentBody": outbound_comment(job), "IsPublished": True})
        return DeliveryResult(external_ref=_record_id(response, "CaseComment"), case_ref=case_id)

    # --- requests ---------------------------------------------------------------------------------

    def _upsert_contact(self, base: str, job: DeliveryJob) -> str:
        response = self.api.call("PATCH", self._contact_path(job.customer.id), json_body=contact_fields(job),
                                 base_url=base, allow=(300,))
        return _record_id(response, "Contact")

    def _open_case(self, base: str, job: DeliveryJob, contact_id: str) -> str:
        fields = self._case_fields(job, contact_id)
        headers = {"Sforce-Auto-Assign": "TRUE" if self._assign(job) else "FALSE"}
        field = self.settings.case_external_id_field
        if field is None:
            return self._create(base, "Case", fields, headers=headers)
        # An upsert by the hub case id: a retry after an unrecorded success updates the same Case.
        response = self.api.call("PATCH", f"{self.sobjects_path}/Case/{field}/{quote(job.case.id, safe='')}",
                                 json_body=fields, headers=headers, base_url=base, allow=(300,))
        return _record_id(response, "Case")

    def _create(self, base: str, sobject: str, fields: dict, *, headers: dict[str, str] | None = None) -> str:
        # The documented create path ends in a slash.
        response = self.api.call("POST", f"{self.sobjects_path}/{sobject}/", json_body=fields, headers=headers,
                                 base_url=base)
        return _record_id(response, sobject)

    def _case_fields(self, job: DeliveryJob, contact_id: str) -> dict[str, Any]:
        settings = self.settings
        fields: dict[str, Any] = {
            **settings.case_fields,
            "ContactId": contact_id,
            "Subject": subject_for(job, limit=SUBJECT_CHARS),
            "Description": _fit_chars(body_for(job), DESCRIPTION_CHARS),
            "Priority": settings.mapping.priority_for(job, PRIORITIES),
            "Origin": settings.origins.get(job.contact.channel) or ORIGINS.get(job.contact.channel, DEFAULT_ORIGIN),
            **settings.mapping.custom_values(job),
        }
        owner = settings.queues.get(job.contact.routing.queue)
        if owner:
            fields["OwnerId"] = owner
        return fields

    def _assign(self, job: DeliveryJob) -> bool:
        return self.settings.assignment_rules and job.contact.routing.queue not in self.settings.queues

    def api_base(self) -> str:
        """Where API calls go: the token's `instance_url` (the org's own host), else `base_url`.
        Public for the callback side, which reads and writes CaseComments on the same org."""
        if self.settings.use_instance_url and self.auth.uses_oauth:
            _, extra = self.auth.token()
            instance = extra.get("instance_url")
            if isinstance(instance, str) and instance.startswith(("https://", "http://")):
                return instance.rstrip("/")
        return self.settings.base_url

    @property
    def sobjects_path(self) -> str:
        return f"/services/data/v{self.settings.api_version}/sobjects"

    def _contact_path(self, customer_id: str) -> str:
        return f"{self.sobjects_path}/Contact/{self.settings.contact_external_id_field}/{quote(customer_id, safe='')}"


def contact_fields(job: DeliveryJob) -> dict[str, str]:
    """The Contact from the golden record: names, the first email and phone. Fields the hub does
    not know are left out, so an upsert keeps what Salesforce has."""
    customer = job.customer
    attributes = {name: value.value for name, value in customer.attributes.items()}
    first, last = attributes.get("first_name"), attributes.get("last_name")
    if not (isinstance(last, str) and last.strip()):
        name = attributes.get("name") or job.contact.sender.display_name or ""
        first, _, last = str(name).strip().rpartition(" ")
    fields = {"LastName": (last or UNKNOWN_LAST_NAME).strip()[:LAST_NAME_CHARS]}
    if isinstance(first, str) and first.strip():
        fields["FirstName"] = first.strip()[:FIRST_NAME_CHARS]
    email = attributes.get("email") or _identifier(job, IdentifierKind.EMAIL)
    if email:
        fields["Email"] = str(email)
    phone = _identifier(job, IdentifierKind.PHONE)
    if phone:
        fields["Phone"] = phone
    return fields


def outbound_comment(job: DeliveryJob) -> str:
    """The CaseComment body of an outbound message, within CommentBody's 4,000 bytes: the
    message is shortened when needed, never the closing line with the echo marker."""
    *message, footer = outbound_lines(job)
    room = COMMENT_BYTES - len(footer.encode()) - 1
    return fit_bytes("\n".join(message), room) + "\n" + footer


def _like(text: str) -> str:
    """A SOQL LIKE pattern matching `text` literally (`_` and `%` are wildcards, `\\` escapes)."""
    return text.replace("\\", "\\\\").replace("'", "\\'").replace("_", "\\_").replace("%", "\\%")


def _identifier(job: DeliveryJob, kind: IdentifierKind) -> str | None:
    return next((i.value for i in job.customer.identifiers if i.kind == kind), None)


def _record_id(response: VendorResponse, sobject: str) -> str:
    if response.status == 300:
        # Upsert: the external id matched several records, and nothing was written.
        raise PermanentDeliveryError(f"salesforce: several {sobject} records have this external id; make the "
                                     "field unique")
    data = response.data
    if isinstance(data, dict) and isinstance(data.get("id"), str) and data["id"]:
        return data["id"]
    raise PermanentDeliveryError(f"salesforce answered {response.status} without the {sobject} id")


def _errors(response: VendorResponse) -> str:
    """Salesforce's error body is a list of {errorCode, message}."""
    data = response.data
    items = data if isinstance(data, list) else [data]
    return "; ".join(f"{i.get('errorCode', '')}: {i.get('message', '')}" for i in items if isinstance(i, dict))


def _fit_chars(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fit_bytes(text: str, limit: int) -> str:
    """Salesforce counts CommentBody in bytes: multi-byte text holds fewer characters."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[: limit - len("…".encode())].decode(errors="ignore") + "…"
