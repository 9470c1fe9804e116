"""Salesforce callbacks: record-triggered Flows post CaseComments and Case changes to the hub with
an HTTP Callout action (https://help.salesforce.com/s/articleView?id=platform.flow_http_callout_configure.htm).

Why a Flow HTTP Callout and not an Outbound Message: Outbound Messages are signed by nothing and
carry no secret (only the organization id, which is not a secret), while a Flow callout goes
through a Named Credential whose External Credential adds a custom header with a secret the
hub compares in constant time ("Guidelines for Authenticating HTTP Callout Actions": an
Authentication Parameter on the principal, a Custom Header pointing at it). The admin sets it up
in Setup and Flow Builder, without code.

The body is JSON the admin assembles in the flow from the triggering record's own fields
(`$Record.CommentBody`, `$Record.IsPublished`...), not from free-text placeholders, so a body
that carries `IsPublished` and `CreatedById` is taken as it is; one that lacks them is a hint,
and the worker re-reads the CaseComment through the REST API before relaying it.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from chalicelib.adapters.connectors.settings.salesforce import (  # noqa: F401 (re-exported)
    record_id,
    SalesforceCallbackSettings,
)
from chalicelib.adapters.callbacks.base import (
    SHARED_SECRET_HEADER,
    CallbackRequest,
    CallbackSetup,
    ParsedCallback,
    SetupStep,
    VendorCallbacks,
    event_digest,
    parse_time,
)
from chalicelib.adapters.channels.base import WebhookResponse
from chalicelib.domain.models import AgentAuthor, AgentReply, CaseStatusChange
from chalicelib.errors import MalformedPayloadError, PermanentDeliveryError, SignatureError

#: The header the External Credential adds (a Custom Header whose value is
#: `{!$Credential.<external credential>.<authentication parameter>}`).
SECRET_HEADER = SHARED_SECRET_HEADER
#: What the body's `sobject` names; without it the fields decide.
COMMENT, CASE = "CaseComment", "Case"
#: Names used in the printed setup (the admin may choose others: only the header name matters).
EXTERNAL_CREDENTIAL, AUTH_PARAMETER = "HubCallbacks", "Secret"

_CASE_FIELDS = ("Status", "IsClosed", "OwnerId", "Priority")

#: The bodies the two flows send, as the HTTP Callout wizard's sample request and as the
#: Assignment the flow makes (`{!$Record.<field>}` for each value).
COMMENT_BODY = {
    "sobject": COMMENT, "OrganizationId": "00D000000000001AAA", "Id": "00a000000000001AAA",
    "ParentId": "500000000000001AAA", "CommentBody": "Hello, your replacement ships today.",
    "IsPublished": True, "CreatedById": "005000000000001AAA", "CreatedDate": "2026-01-01T00:05:00.000Z",
}
CASE_BODY = {
    "sobject": CASE, "OrganizationId": "00D000000000001AAA", "Id": "500000000000001AAA", "Status": "Closed",
    "IsClosed": True, "OwnerId": "005000000000001AAA", "Priority": "High",
    "LastModifiedDate": "2026-01-01T00:10:00.000Z",
}
#: What the hub answers, as the wizard's sample response.
ACK_BODY = {"received": True}


def _flag(value: object) -> bool | None:
    """A Flow Boolean as the callout serialises it: JSON true/false, or the text "true"/"false"
    when the wizard's sample typed the field as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


class SalesforceCallbacks(VendorCallbacks):
    takes_notes = True
    settings: SalesforceCallbackSettings

    # --- request path -----------------------------------------------------------------------------

    def verify(self, request: CallbackRequest) -> None:
        self.require_shared_secret(request.header(SECRET_HEADER),
                                   carried_by=f"{SECRET_HEADER} header (the External Credential's custom header)")

    def parse(self, request: CallbackRequest) -> ParsedCallback:
        try:
            payload = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            raise MalformedPayloadError("the body is not JSON (a Flow HTTP Callout posts a JSON object)") from None
        items = payload if isinstance(payload, list) else [payload]
        if not items or not all(isinstance(item, dict) for item in items):
            raise MalformedPayloadError("the body must be a JSON object (or a list of objects) with the record's fields")
        parsed = ParsedCallback()
        for item in items:
            self._check_org(item)
            kind = _kind(item)
            if kind == COMMENT:
                self._comment(item, request, parsed)
            elif kind == CASE:
                self._case(item, request, parsed)
            else:
                parsed.unhandled.append(self.unhandled(
                    f"neither a CaseComment nor a Case (sobject {item.get('sobject')!r})", item, request))
        return parsed

    def ack(self, parsed: ParsedCallback) -> WebhookResponse:
        # The HTTP Callout action reads the answer as JSON, typed from the wizard's sample response.
        return WebhookResponse(status=200, body=json.dumps(ACK_BODY), content_type="application/json")

    def _check_org(self, item: dict) -> None:
        expected = self.settings.organization_id
        given = item.get("OrganizationId")
        if expected is None or given in (None, ""):
            return
        if record_id(given) != expected:
            raise SignatureError("OrganizationId is not the configured callbacks.organization_id")

    def _comment(self, item: dict, request: CallbackRequest, parsed: ParsedCallback) -> None:
        comment_id, case_id = record_id(item.get("Id")), record_id(item.get("ParentId"))
        if comment_id is None or case_id is None:
            field = "Id" if comment_id is None else "ParentId"
            parsed.unhandled.append(self.unhandled(f"CaseComment.{field} is not a record id", item, request))
            return
        published = _flag(item.get("IsPublished"))
        if published is False:
            parsed.ignored.append("internal CaseComment (IsPublished false)")
            return
        author = record_id(item.get("CreatedById"))
        text = item.get("CommentBody") if isinstance(item.get("CommentBody"), str) else None
        echo = self.echo_reason(text, author)
        if echo is not None:
            parsed.ignored.append(echo)
            return
        parsed.items.append(AgentReply(
            destination=self.destination, ticket=case_id, event_id=comment_id, comment_id=comment_id,
            author=AgentAuthor(id=author), text=text.strip() if text else None,
            # The Flow sends the record's own values; what it left out is read back before relaying.
            confirmed=published is True and author is not None and text is not None,
            occurred_at=parse_time(item.get("CreatedDate")), received_at=request.received_at,
        ))

    def _case(self, item: dict, request: CallbackRequest, parsed: ParsedCallback) -> None:
        case_id = record_id(item.get("Id"))
        if case_id is None:
            parsed.unhandled.append(self.unhandled("Case.Id is not a record id", item, request))
            return
        changed_at = parse_time(item.get("LastModifiedDate"))
        if changed_at is None:
            # Without it neither the order of changes nor a retry's identity can be told.
            parsed.unhandled.append(self.unhandled("Case.LastModifiedDate is missing or not a time", item, request))
            return
        status = _text(item.get("Status"))
        parsed.items.append(CaseStatusChange(
            destination=self.destination, ticket=case_id,
            event_id=event_digest(CASE, case_id, item.get("LastModifiedDate"),
                                  *(item.get(name) for name in _CASE_FIELDS)),
            state=self._state(_flag(item.get("IsClosed")), status), vendor_status=status,
            assignee=record_id(item.get("OwnerId")) or _text(item.get("OwnerId")),
            priority=_text(item.get("Priority")), occurred_at=changed_at, received_at=request.received_at,
        ))

    def _state(self, closed: bool | None, status: str | None) -> str | None:
        if closed is not None:
            return "closed" if closed else "open"
        if status is None:
            return None
        return "closed" if status.casefold() in {s.casefold() for s in self.settings.closed_statuses} else "open"

    # --- worker -------------------------------------------------------------------------------------

    def confirm(self, reply: AgentReply) -> AgentReply | str:
        """Re-read the CaseComment (`GET …/sobjects/CaseComment/{id}`) when the Flow's body left
        out whether it is published, who wrote it, or its text."""
        comment_id = record_id(reply.comment_id)
        if comment_id is None:
            raise PermanentDeliveryError(f"comment id {reply.comment_id!r} is not a Salesforce record id")
        connector = self.connector
        response = connector.api.call("GET", f"{connector.sobjects_path}/CaseComment/{comment_id}",
                                      base_url=connector.api_base(), allow=(404,))
        record = response.data if isinstance(response.data, dict) else None
        if response.status == 404 or record is None:
            return f"CaseComment {comment_id} no longer exists in Salesforce"
        if record_id(record.get("ParentId")) != reply.ticket:
            return f"CaseComment {comment_id} belongs to another Case"
        if _flag(record.get("IsPublished")) is not True:
            return "internal CaseComment (IsPublished false)"
        author, text = record_id(record.get("CreatedById")), record.get("CommentBody")
        text = text.strip() if isinstance(text, str) else None
        echo = self.echo_reason(text, author)
        if echo is not None:
            return echo
        return reply.model_copy(update={
            "author": AgentAuthor(id=author), "text": text, "confirmed": True,
            "occurred_at": parse_time(record.get("CreatedDate")) or reply.occurred_at,
        })

    def note(self, ticket: str, text: str, *, reply_ref: str | None = None) -> str | None:
        """A private CaseComment (`IsPublished: false`): agents see it on the Case, the customer
        does not, and the comment flow (published comments only) does not fire for it."""
        from chalicelib.adapters.connectors.salesforce import COMMENT_BYTES, fit_bytes

        case_id = record_id(ticket)
        if case_id is None:
            raise PermanentDeliveryError(f"salesforce: {ticket!r} is not a Case id for the note")
        connector = self.connector
        response = connector.api.call("POST", f"{connector.sobjects_path}/CaseComment/", base_url=connector.api_base(),
                                      json_body={"ParentId": case_id, "CommentBody": fit_bytes(text, COMMENT_BYTES),
                                                 "IsPublished": False})
        data = response.data
        return str(data["id"]) if isinstance(data, dict) and data.get("id") else None

    # --- operator -----------------------------------------------------------------------------------

    def setup(self) -> CallbackSetup:
        url = self.callback_url()
        host, _, path = url.partition("/callbacks/")
        path = f"/callbacks/{quote(path, safe='')}" if path else "/callbacks/" + self.destination
        header_value = f"{{!$Credential.{EXTERNAL_CREDENTIAL}.{AUTH_PARAMETER}}}"
        comment_assign = {k: f"{{!$Record.{k}}}" for k in COMMENT_BODY if k not in ("sobject", "OrganizationId")}
        case_assign = {k: f"{{!$Record.{k}}}" for k in CASE_BODY if k not in ("sobject", "OrganizationId")}
        steps = [
            SetupStep("External Credential", {
                "Setup": "Named Credentials → External Credentials → New",
                "Label / Name": EXTERNAL_CREDENTIAL, "Authentication Protocol": "Custom",
                "Principal": "New: Parameter Name HubPrincipal, Identity Type Named Principal",
                "Authentication Parameter": f"Name {AUTH_PARAMETER}, Value = one of callbacks.secrets",
                "Custom Header": f"Name {SECRET_HEADER}, Value {header_value}",
            }, "The secret lives only in the credential; rotate by adding the new one to callbacks.secrets first."),
            SetupStep("Named Credential", {
                "Setup": "Named Credentials → Named Credentials → New",
                "Label / Name": "HubCallbacksEndpoint", "URL": host, "Enabled for Callouts": "on",
                "External Credential": EXTERNAL_CREDENTIAL, "Generate Authorization Header": "off",
            }),
            SetupStep("Permission set", {
                "Setup": "Permission Sets → New: Hub Callbacks",
                "External Credential Principal Access": f"{EXTERNAL_CREDENTIAL} - HubPrincipal",
                "Object Settings": "User External Credentials: Read",
                "Assign to": "the users whose edits run the flows (agents), and the Automated Process user",
            }, "The Automated Process user is not listed in Setup; Salesforce's help assigns it with anonymous "
               "Apex: insert new PermissionSetAssignment(AssigneeId = [SELECT Id FROM User WHERE alias = "
               "'autoproc'].Id, PermissionSetId = '<0PS… id>');"),
            SetupStep("Flow 1: published CaseComments", {
                "Flow type": "Record-Triggered Flow on Case Comment",
                "Trigger": "A record is created or updated",
                "Entry conditions": "IsPublished Equals True",
                "When to run": "Only when a record is updated to meet the condition requirements",
                "Optimize for": "Actions and Related Records",
                "Path": "Run Asynchronously (callouts are not allowed on the immediate path)",
                "Action": f"Create HTTP Callout: external service HubCallbacks, named credential "
                          f"HubCallbacksEndpoint, method POST, URL path {path}",
                "Sample request (JSON)": json.dumps(COMMENT_BODY),
                "Sample response (JSON)": json.dumps(ACK_BODY),
                "Body assignment": json.dumps({"sobject": COMMENT, "OrganizationId": "{!$Organization.Id}",
                                               **comment_assign}),
            }, "Create an Apex-defined variable of the body type the wizard generated, set its fields with an "
               "Assignment as shown, and pass it as the action's body."),
            SetupStep("Flow 2: Case status, owner and priority", {
                "Flow type": "Record-Triggered Flow on Case",
                "Trigger": "A record is updated",
                "Entry conditions": "Custom logic 1 OR 2 OR 3: Status Is Changed True, OwnerId Is Changed "
                                    "True, Priority Is Changed True",
                "When to run": "Every time a record is updated and meets the condition requirements",
                "Optimize for": "Actions and Related Records",
                "Path": "Run Asynchronously",
                "Action": f"Create HTTP Callout: external service HubCallbacksCase, named credential "
                          f"HubCallbacksEndpoint, method POST, URL path {path}",
                "Sample request (JSON)": json.dumps(CASE_BODY),
                "Sample response (JSON)": json.dumps(ACK_BODY),
                "Body assignment": json.dumps({"sobject": CASE, "OrganizationId": "{!$Organization.Id}",
                                               **case_assign}),
            }, "If Flow Builder refuses the asynchronous path with these conditions, leave the conditions out: "
               "the hub records a repeated state as no change."),
        ]
        limits = [
            "Attachments: Case files are not relayed (a CaseComment has none); agents send links in the text.",
            "Replies: only published CaseComments (IsPublished true); emails sent from the Case, Chatter posts "
            "and Messaging sessions are not read.",
            "Retries: Salesforce does not document retrying a failed callout on a flow's asynchronous path; a "
            "failure shows in the flow's error email, and the change is not sent again.",
            "Status: closed follows Case.IsClosed (else callbacks.closed_statuses); reopening a Case reopens the "
            "hub case.",
        ]
        return CallbackSetup(vendor="salesforce", steps=steps, limits=limits)


def _kind(item: dict[str, Any]) -> str | None:
    named = item.get("sobject")
    if named is not None:
        return named if named in (COMMENT, CASE) else None
    if "ParentId" in item or "CommentBody" in item:
        return COMMENT
    if any(name in item for name in _CASE_FIELDS):
        return CASE
    return None
