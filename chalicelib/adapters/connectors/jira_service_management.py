"""Jira Service Management Cloud: customer requests and comments
(https://developer.atlassian.com/cloud/jira/service-desk/rest/api-group-request/)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import quote, urlencode

from chalicelib.adapters.connectors.settings.jira_service_management import (  # noqa: F401 (re-exported)
    JiraServiceManagementSettings,
    RequestFields,
)
from chalicelib.adapters.connectors.base import MESSAGE_SENT, DeliveryResult
from chalicelib.adapters.connectors.echo import carries, outbound_text
from chalicelib.adapters.connectors.mapping import body_for, subject_for
from chalicelib.adapters.connectors.vendor import VendorConnector
from chalicelib.domain.identifiers import IdentifierKind
from chalicelib.domain.models import DeliveryJob
from chalicelib.errors import PermanentDeliveryError

logger = logging.getLogger(__name__)

REQUESTS = "/rest/servicedeskapi/request"
#: The echo lookup reads the request's public comments, oldest first, this many a page and at
#: most this many pages (a request with more may get a duplicate comment on a retry).
COMMENT_PAGE = 100
MAX_COMMENT_PAGES = 10
#: `_marked_comment`'s answer for a request that no longer exists.
_GONE = "<gone>"
#: Jira's limit for an issue summary.
SUMMARY_LIMIT = 255
#: Hub priority → the name of a Jira priority (Jira's default scheme); `mapping.priority` overrides.
DEFAULT_PRIORITIES = {"urgent": "Highest", "high": "High", "normal": "Medium", "low": "Low"}
#: Customer search on a service desk is an experimental JSM method, opted into by this header.
#: https://developer.atlassian.com/cloud/jira/service-desk/rest/intro/#experimental-methods
EXPERIMENTAL = {"X-ExperimentalApi": "opt-in"}
#: Customers (email → accountId) remembered per warm container, so a returning customer costs
#: no lookup.
ACCOUNT_CACHE_SIZE = 1024


class JiraServiceManagementConnector(VendorConnector[JiraServiceManagementSettings]):
    key = "jira_service_management"
    vendor = "jira service management"
    docs_url = "https://developer.atlassian.com/cloud/jira/service-desk/rest/api-group-request/"
    Settings = JiraServiceManagementSettings
    threads_cases = True
    message_events = frozenset({MESSAGE_SENT})
    callbacks = "chalicelib.adapters.callbacks.jira_service_management:JiraServiceManagementCallbacks"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._accounts: OrderedDict[str, str] = OrderedDict()
        self._accounts_lock = threading.Lock()
        if not self.settings.outbound_messages:
            self.message_events = frozenset()  # type: ignore[misc]  # per destination, read by the deliverer

    def deliver(self, job: DeliveryJob) -> DeliveryResult:
        if self.message_event(job) is not None:
            return self._outbound(job)
        known = job.case.external_refs.get(self.name)
        if known is not None:
            comment = self._comment(known.ref, job)
            if comment is not None:
                return DeliveryResult(external_ref=comment, case_ref=known.ref)
            # 404: the request was deleted or moved out of reach; the case starts a new one.
        found = self._find(job) if self.settings.case_id_in_summary else None
        if found is not None:
            key, description = found
            if job.contact.id in description:
                # This contact raised it: a retry after the hub lost the answer.
                return DeliveryResult(external_ref=key, case_ref=key)
            comment = self._comment(key, job)
            if comment is not None:
                return DeliveryResult(external_ref=comment, case_ref=key)
        key = self._create(job)
        return DeliveryResult(external_ref=key, case_ref=key)

    # --- requests ---------------------------------------------------------------------------------

    def _create(self, job: DeliveryJob) -> str:
        settings = self.settings
        values: dict[str, Any] = {}
        note = ""
        body: dict[str, Any] = {"serviceDeskId": settings.service_desk_id, "requestTypeId": settings.request_type_id}
        if settings.raise_on_behalf:
            email = _email(job)
            account_id = self._account_id(email, _name(job)) if email else None
            if account_id:
                body["raiseOnBehalfOf"] = account_id
            elif email:
                note = f"Raised for {email} (not a customer of this service desk the API user can see).\n\n"
        if settings.fields.summary:
            values[settings.fields.summary] = self._summary(job)
        if settings.fields.description:
            values[settings.fields.description] = note + body_for(job)
        if settings.priority_field:
            priority = settings.mapping.priority_for(job, DEFAULT_PRIORITIES)
            if priority is not None:
                values[settings.priority_field] = {"name": str(priority)}
        if settings.labels_field:
            # Jira labels cannot contain spaces.
            labels = ["-".join(tag.split()) for tag in settings.mapping.tags_for(job)]
            if labels:
                values[settings.labels_field] = labels
        values.update(settings.mapping.custom_values(job))
        body["requestFieldValues"] = values
        response = self.api.call("POST", REQUESTS, json_body=body)
        key = response.data.get("issueKey") if isinstance(response.data, dict) else None
        if not key:
            raise PermanentDeliveryError(f"{self.vendor} answered {response.status} without an issueKey")
        return str(key)

    def _summary(self, job: DeliveryJob) -> str:
        if not self.settings.case_id_in_summary:
            return subject_for(job, limit=SUMMARY_LIMIT)
        marker = _marker(job)
        return f"{subject_for(job, limit=SUMMARY_LIMIT - len(marker) - 1)} {marker}"

    def _find(self, job: DeliveryJob) -> tuple[str, str] | None:
        """The request this case raised, by the case id at the end of its summary, with its
        description; None when there is none. `searchTerm` is a text search on the summary, so
        the hits are checked for the exact marker."""
        marker = _marker(job)
        query = urlencode({
            "searchTerm": job.case.id, "serviceDeskId": self.settings.service_desk_id,
            "requestStatus": "ALL_REQUESTS",
            # Agents see every request of the desk only with ALL_REQUESTS; the default covers the
            # caller's own requests, and raise_on_behalf makes the customer the reporter.
            "requestOwnership": "ALL_REQUESTS", "limit": 50,
        })
        response = self.api.call("GET", f"{REQUESTS}?{query}")
        values = response.data.get("values") if isinstance(response.data, dict) else None
        for request in values if isinstance(values, list) else []:
            if not isinstance(request, dict) or not request.get("issueKey"):
                continue
            fields = {f.get("fieldId"): f.get("value") for f in request.get("requestFieldValues") or []
                      if isinstance(f, dict)}
            summary = fields.get(self.settings.fields.summary)
            if isinstance(summary, str) and summary.endswith(marker):
                description = fields.get(self.settings.fields.description or "")
                return str(request["issueKey"]), description if isinstance(description, str) else ""
        return None

    def _comment(self, key: str, job: DeliveryJob) -> str | None:
        """Add the contact as a comment: `KEY/comment/ID`, or None when the request no longer
        exists."""
        response = self.api.call("POST", f"{REQUESTS}/{quote(key, safe='')}/comment",
                                 json_body={"body": body_for(job), "public": self.settings.public_comments},
                                 allow=(404,))
        if response.status == 404:
            return None
        comment_id = response.data.get("id") if isinstance(response.data, dict) else None
        return f"{key}/comment/{comment_id}" if comment_id is not None else key

    # --- outbound messages -----------------------------------------------------------------------

    def _outbound(self, job: DeliveryJob) -> DeliveryResult:
        """The hub's message to the customer as a public comment on the case's request, ending in
        the echo marker (brackets escaped, so Jira's wiki markup shows them instead of a link).
        JSM takes no idempotency key, so the request's public comments are read first and one
        already carrying this contact's marker is not written again. A deleted request takes no
        comment: the delivery is done without one."""
        known = job.case.external_refs.get(self.name)
        if known is None:
            raise PermanentDeliveryError(f"{self.vendor}: case {job.case.id} has no request for the outbound message")
        key = known.ref
        found = self._marked_comment(key, job.contact.id)
        if found is not None and found is not _GONE:
            return DeliveryResult(external_ref=f"{key}/comment/{found}", case_ref=key)
        if found is None:
            response = self.api.call("POST", f"{REQUESTS}/{quote(key, safe='')}/comment",
                                     json_body={"body": wiki_text(outbound_text(job)), "public": True}, allow=(404,))
            if response.status != 404:
                comment_id = response.data.get("id") if isinstance(response.data, dict) else None
                return DeliveryResult(external_ref=f"{key}/comment/{comment_id}" if comment_id is not None else key,
                                      case_ref=key)
        logger.info("%s: request %s is gone; outbound contact %s not added", self.vendor, key, job.contact.id)
        return DeliveryResult()

    def _marked_comment(self, key: str, contact_id: str) -> str | None:
        """The id of the public comment carrying this contact's marker; None when there is none,
        `_GONE` when the request no longer exists (404)."""
        for page in range(MAX_COMMENT_PAGES):
            query = urlencode({"public": "true", "internal": "false", "start": page * COMMENT_PAGE, "limit": COMMENT_PAGE})
            response = self.api.call("GET", f"{REQUESTS}/{quote(key, safe='')}/comment?{query}", allow=(404,))
            if response.status == 404:
                return _GONE
            data = response.data if isinstance(response.data, dict) else {}
            values = [c for c in data.get("values") or [] if isinstance(c, dict)]
            for comment in values:
                if carries(str(comment.get("body") or ""), contact_id):
                    return str(comment.get("id") or "0")
            if data.get("isLastPage", True) or len(values) < COMMENT_PAGE:
                return None
        return None

    # --- customers --------------------------------------------------------------------------------

    def _account_id(self, email: str, name: str | None) -> str | None:
        """The JSM customer's accountId for an email: found among the desk's customers, else
        created and added to the desk. None when the address belongs to an account the desk
        cannot list (JSM only reports that it exists)."""
        with self._accounts_lock:
            if email in self._accounts:
                self._accounts.move_to_end(email)
                return self._accounts[email]
        desk = self.settings.service_desk_id
        listing = self.api.call("GET", f"/rest/servicedeskapi/servicedesk/{desk}/customer?"
                                       + urlencode({"query": email, "limit": 50}), headers=EXPERIMENTAL)
        account_id = _account_with_email(listing.data, email)
        if account_id is None:
            # strictConflictStatusCode: an existing address is 409 instead of a generic 400.
            created = self.api.call("POST", "/rest/servicedeskapi/customer?strictConflictStatusCode=true",
                                    json_body={"email": email, "displayName": name or email}, allow=(400, 409))
            if created.status in (400, 409) or not isinstance(created.data, dict) or not created.data.get("accountId"):
                return None
            account_id = str(created.data["accountId"])
            self.api.call("POST", f"/rest/servicedeskapi/servicedesk/{desk}/customer",
                          json_body={"accountIds": [account_id]}, headers=EXPERIMENTAL)
        with self._accounts_lock:
            self._accounts[email] = account_id
            while len(self._accounts) > ACCOUNT_CACHE_SIZE:
                self._accounts.popitem(last=False)
        return account_id


def wiki_text(text: str) -> str:
    """Plain text for a comment body Jira renders as wiki markup: brackets and braces escaped,
    so `[hub:ct_…]` and a customer's `{…}` show as typed instead of becoming a link or a macro."""
    return "".join("\\" + ch if ch in "[]{}" else ch for ch in text)


def _marker(job: DeliveryJob) -> str:
    return f"[{job.case.id}]"


def _email(job: DeliveryJob) -> str | None:
    return next((i.value for i in job.customer.identifiers if i.kind is IdentifierKind.EMAIL), None)


def _name(job: DeliveryJob) -> str | None:
    attribute = job.customer.attributes.get("name")
    name = attribute.value if attribute is not None else job.contact.sender.display_name
    return str(name) if name else None


def _account_with_email(data: Any, email: str) -> str | None:
    """The accountId of the listed customer with exactly this email (the query also matches
    names and parts of addresses)."""
    values = data.get("values") if isinstance(data, dict) else None
    for customer in values if isinstance(values, list) else []:
        if isinstance(customer, dict) and str(customer.get("emailAddress", "")).lower() == email.lower():
            account_id = customer.get("accountId")
            if account_id:
                return str(account_id)
    return None
