"""Zendesk Support tickets: https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from chalicelib.adapters.connectors.settings.zendesk import (  # noqa: F401 (re-exported)
    DEFAULT_PRIORITIES,
    MAX_UPLOAD_BYTES,
    MIB,
    ZendeskSettings,
)
from chalicelib.adapters.connectors.base import MESSAGE_SENT, ConnectorRuntime, DeliveryResult, VendorResponse
from chalicelib.adapters.connectors.echo import carries, outbound_text
from chalicelib.adapters.connectors.http import MAX_REASON_CHARS, raise_for_status
from chalicelib.adapters.connectors.mapping import body_for, subject_for
from chalicelib.adapters.connectors.vendor import VendorConnector
from chalicelib.adapters.downloads import Downloader, DownloadFailedError, DownloadRefusedError, Refusal, resolve_addresses
from chalicelib.domain.identifiers import IdentifierKind
from chalicelib.domain.models import Attachment, CustomerEvent, DeliveryJob
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError
from chalicelib.secrets import SecretResolver

logger = logging.getLogger(__name__)

#: How long to wait after Zendesk refused a replayed Idempotency-Key: by then the lookup by
#: external id finds the ticket the first request created.
IDEMPOTENCY_RETRY_SECONDS = 5.0


class ZendeskConnector(VendorConnector[ZendeskSettings]):
    """One ticket per hub case (external id = case id), a comment per follow-up contact; end users
    are upserted by external id = hub customer id, which is how customer events find them."""

    key = "zendesk"
    vendor = "zendesk"
    docs_url = "https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/"
    Settings = ZendeskSettings
    threads_cases = True
    supports_customer_events = True
    message_events = frozenset({MESSAGE_SENT})
    callbacks = "chalicelib.adapters.callbacks.zendesk:ZendeskCallbacks"

    def __init__(self, name: str, settings: ZendeskSettings, secrets: SecretResolver,
                 runtime: ConnectorRuntime) -> None:
        super().__init__(name, settings, secrets, runtime)
        if not settings.outbound_messages:
            self.message_events = frozenset()  # type: ignore[misc]  # per destination, read by the deliverer
        #: Host name → addresses; tests replace it, as attachment hosts do not resolve offline.
        self.resolve_host: Callable[[str], list[str]] = resolve_addresses
        #: Attachment URLs come from senders (a web chat visitor can point one anywhere): they are
        #: fetched at checked public addresses only, capped, never inflated, within a deadline.
        self.downloads = Downloader(resolve=lambda host: self.resolve_host(host))

    # --- contacts ------------------------------------------------------------------------------

    def deliver(self, job: DeliveryJob) -> DeliveryResult:
        if self.message_event(job) is not None:
            return self._outbound(job)
        ref = job.case.external_refs.get(self.name)
        if ref is not None:
            return self._follow_up(job, ref.ref)
        found = self._case_tickets(job.case.id)
        if not found:
            return self._create(job, self._comment(job))
        # A ticket whose first comment is this contact: an earlier attempt of this very delivery
        # created it before the hub could record that, so there is nothing left to send.
        own = next((t for t in found if job.contact.id in str(t.get("description") or "")), None)
        if own is not None:
            return DeliveryResult(external_ref=str(own["id"]), case_ref=str(own["id"]))
        return self._follow_up(job, str(_current(found)["id"]))

    def _case_tickets(self, case_id: str) -> list[dict[str, Any]]:
        # External ids need not be unique in Zendesk: a case may own a closed ticket and its follow-up.
        response = self.api.call("GET", f"/api/v2/tickets?external_id={quote(case_id, safe='')}")
        return _records(_dict(response.data).get("tickets"))

    def _create(self, job: DeliveryJob, comment: dict[str, Any], *, follow_up_of: str | None = None) -> DeliveryResult:
        ticket: dict[str, Any] = {
            "subject": subject_for(job),
            "comment": comment,
            **self._requester(job),
            "external_id": job.case.id,
        }
        priority = self.settings.mapping.priority_for(job, DEFAULT_PRIORITIES)
        if priority:
            ticket["priority"] = priority
        tags = _tags(self.settings.mapping.tags_for(job))
        if tags:
            ticket["tags"] = tags
        custom = [{"id": int(field), "value": _field_value(value)}
                  for field, value in self.settings.mapping.custom_values(job).items()]
        if custom:
            ticket["custom_fields"] = custom
        for name in ("group_id", "brand_id", "ticket_form_id"):
            if getattr(self.settings, name) is not None:
                ticket[name] = getattr(self.settings, name)
        if follow_up_of is not None:
            ticket["via_followup_source_id"] = int(follow_up_of)
        # https://developer.zendesk.com/api-reference/ticketing/introduction/#idempotency
        response = self.api.call("POST", "/api/v2/tickets", json_body={"ticket": ticket},
                                 headers={"Idempotency-Key": job.delivery_id}, allow=(400,))
        if response.status == 400:
            if _error_code(response) == "IdempotentRequestError":
                # The key was used with another body (fresh upload tokens on a retry): the first
                # request created the ticket, which the retry's lookup will find.
                raise RetryableDeliveryError("zendesk already took this delivery's ticket with other parameters",
                                             retry_after=IDEMPOTENCY_RETRY_SECONDS)
            raise _rejected(response)
        ticket_id = str(_object_id(response, "ticket"))
        return DeliveryResult(external_ref=ticket_id, case_ref=ticket_id)

    def _follow_up(self, job: DeliveryJob, ticket_id: str) -> DeliveryResult:
        if not ticket_id.isdigit():
            raise PermanentDeliveryError(f"zendesk: stored ticket reference {ticket_id!r} is not a ticket id")
        comment = self._comment(job)
        update: dict[str, Any] = {"comment": comment}
        if self.settings.reopen_on_follow_up:
            update["status"] = "open"
        response = self.api.call("PUT", f"/api/v2/tickets/{ticket_id}", json_body={"ticket": update},
                                 allow=(404, 422))
        if response.status == 404:
            # An agent deleted the case's ticket: the case starts a new one.
            return self._create(job, comment)
        if response.status == 422:
            if "closed" in json.dumps(response.data).lower():
                # A closed ticket takes no comments: open a follow-up ticket linked to it.
                # https://developer.zendesk.com/documentation/ticketing/managing-tickets/creating-and-updating-tickets/
                return self._create(job, comment, follow_up_of=ticket_id)
            raise _rejected(response)
        return DeliveryResult(external_ref=comment_ref(response, ticket_id), case_ref=ticket_id)

    # --- outbound messages -----------------------------------------------------------------------

    def _outbound(self, job: DeliveryJob) -> DeliveryResult:
        """The hub's message to the customer as a public comment on the case's ticket, ending in
        the echo marker. Zendesk takes an Idempotency-Key on ticket creation only, so the newest
        comments are read first and a comment already carrying this contact's marker is not
        written again. A deleted or closed ticket takes no comment: the delivery is done without
        one (the customer's next message opens a follow-up ticket)."""
        ticket_id = _ticket_ref(job, self.name)
        listed = self.api.call("GET", f"/api/v2/tickets/{ticket_id}/comments?sort_order=desc", allow=(404,))
        if listed.status == 404:
            logger.info("zendesk: ticket %s is gone; outbound contact %s not added", ticket_id, job.contact.id)
            return DeliveryResult()
        for comment in _records(_dict(listed.data).get("comments")):
            if carries(str(comment.get("body") or comment.get("plain_body") or ""), job.contact.id):
                return DeliveryResult(external_ref=str(comment["id"]), case_ref=ticket_id)
        comment: dict[str, Any] = {"body": outbound_text(job), "public": True}
        if self.settings.outbound_author_id is not None:
            comment["author_id"] = self.settings.outbound_author_id
        # The audit's custom metadata (write-only on the ticket, read back under the audit's
        # `metadata.custom`) carries the ids too, for callbacks that re-read audits.
        update: dict[str, Any] = {"comment": comment, "metadata": {"hub": {
            "contact_id": job.contact.id, "delivery_id": job.delivery_id}}}
        if self.settings.outbound_status:
            update["status"] = self.settings.outbound_status
        response = self.api.call("PUT", f"/api/v2/tickets/{ticket_id}", json_body={"ticket": update}, allow=(404, 422))
        if response.status == 404 or (response.status == 422 and "closed" in json.dumps(response.data).lower()):
            logger.info("zendesk: ticket %s is gone or closed; outbound contact %s not added", ticket_id, job.contact.id)
            return DeliveryResult()
        if response.status == 422:
            raise _rejected(response)
        return DeliveryResult(external_ref=comment_ref(response, ticket_id), case_ref=ticket_id)

    def _requester(self, job: DeliveryJob) -> dict[str, Any]:
        """The end user, created or updated by external id = hub customer id (so a later
        `customer.erased` finds them), with the golden record's name, email and phone."""
        customer = job.customer
        email = _identifier(job, IdentifierKind.EMAIL)
        phone = _identifier(job, IdentifierKind.PHONE)
        name = _name(job) or email or phone or f"Customer {customer.id}"
        user: dict[str, Any] = {"name": name, "external_id": customer.id, "skip_verify_email": True}
        if email:
            user["email"] = email
        if phone:
            user["phone"] = phone
        response = self.api.call("POST", "/api/v2/users/create_or_update", json_body={"user": user}, allow=(422,))
        if response.status == 422:
            if email:
                # The address belongs to another user (another external id, or an agent): let
                # Zendesk match the requester by email alone, as its ticket form would.
                return {"requester": {"name": name, "email": email}}
            raise _rejected(response)
        return {"requester_id": _object_id(response, "user")}

    # --- comments and attachments ----------------------------------------------------------------

    def _comment(self, job: DeliveryJob) -> dict[str, Any]:
        body = body_for(job)
        tokens: list[str] = []
        if self.settings.upload_attachments and job.contact.attachments:
            skipped = []
            for attachment in job.contact.attachments:
                fetched = self._download(attachment)
                if isinstance(fetched, str):
                    skipped.append(f"Not attached ({fetched}): {_filename(attachment)}")
                else:
                    tokens.append(self._upload(*fetched))
            if skipped:
                body += "\n\n" + "\n".join(skipped)
        comment: dict[str, Any] = {"body": body, "public": self.settings.public_comments}
        if tokens:
            comment["uploads"] = tokens
        return comment

    def _download(self, attachment: Attachment) -> tuple[bytes, str, str] | str:
        """(content, content type, file name), or why the attachment cannot be copied."""
        limit = self.settings.max_attachment_bytes
        url = attachment.url or ""
        if not url:
            return "no URL"
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            return "not an https URL"
        if attachment.size is not None and attachment.size > limit:
            return f"larger than {limit // MIB} MB"
        try:
            response = self.downloads.get(url, max_bytes=limit, deadline=time.monotonic() + self.settings.timeout_seconds)
        except DownloadRefusedError as exc:
            return {Refusal.HOST_NOT_ALLOWED: "host not allowed", Refusal.TOO_LARGE: f"larger than {limit // MIB} MB",
                    Refusal.ENCODED: "compressed download refused"}.get(exc.reason, "download refused")
        except DownloadFailedError:
            return "download failed"
        if response.status != 200:
            return f"download answered {response.status}"
        content_type = (attachment.content_type or response.headers.get("content-type", "")).split(";")[0].strip()
        return response.body, content_type or "application/octet-stream", _filename(attachment)

    def _upload(self, content: bytes, content_type: str, filename: str) -> str:
        # Uploads take the raw bytes, not JSON:
        # https://developer.zendesk.com/api-reference/ticketing/tickets/ticket-attachments/#upload-files
        url = f"{self.api.base_url}/api/v2/uploads?filename={quote(filename, safe='')}"
        headers = {"accept": "application/json", "user-agent": "omnichannel-hub", "content-type": content_type,
                   **self.auth.headers()}
        response = self.runtime.http.request("POST", url, headers=headers, body=content,
                                             timeout=self.settings.timeout_seconds)
        raise_for_status(response, vendor=self.vendor)
        try:
            return str(json.loads(response.body)["upload"]["token"])
        except (ValueError, KeyError, TypeError):
            raise PermanentDeliveryError("zendesk answered an upload without a token") from None

    # --- customer events -------------------------------------------------------------------------

    def deliver_customer_event(self, event: CustomerEvent) -> DeliveryResult:
        if event.event_type == "customer.erased":
            return self._erase(event.customer_id)
        if event.event_type == "customer.merged":
            return self._merge(survivor=event.customer_id, absorbed=event.other_customer_id)
        if event.event_type == "customer.unmerged":
            # Zendesk cannot split merged users; the restored customer gets a new end user on its
            # next contact (upserted by its own external id).
            logger.info("zendesk: %s for merge %s left as is (Zendesk merges are final)",
                        event.event_type, event.merge_id)
            return DeliveryResult()
        raise PermanentDeliveryError(f"zendesk does not take {event.event_type} events")

    def _end_users(self, *customer_ids: str) -> dict[str, dict[str, Any]]:
        """Hub customer id → its Zendesk end user. Agents and admins are never returned: an
        external id that landed on a staff account must not get it deleted or merged."""
        ids = ",".join(quote(c, safe="") for c in customer_ids)
        response = self.api.call("GET", f"/api/v2/users/show_many?external_ids={ids}")
        found: dict[str, dict[str, Any]] = {}
        wanted = {c.lower(): c for c in customer_ids}  # Zendesk matches external ids case-insensitively
        for user in _records(_dict(response.data).get("users")):
            if user.get("role", "end-user") != "end-user":
                continue
            customer_id = wanted.get(str(user.get("external_id") or "").lower())
            if customer_id is not None:
                found.setdefault(customer_id, user)
        return found

    def _erase(self, customer_id: str) -> DeliveryResult:
        user = self._end_users(customer_id).get(customer_id)
        if user is None:
            return DeliveryResult()
        user_id = user["id"]
        # https://developer.zendesk.com/api-reference/ticketing/users/users/#delete-user, then
        # #permanently-delete-user: only a soft-deleted user can be deleted for good.
        self.api.call("DELETE", f"/api/v2/users/{user_id}", allow=(404,))
        if self.settings.permanently_delete_users:
            self.api.call("DELETE", f"/api/v2/deleted_users/{user_id}", allow=(404,))
        return DeliveryResult(external_ref=f"user:{user_id}")

    def _merge(self, *, survivor: str, absorbed: str | None) -> DeliveryResult:
        if not absorbed:
            raise PermanentDeliveryError("customer.merged without the absorbed customer")
        users = self._end_users(survivor, absorbed)
        if survivor not in users or absorbed not in users or users[survivor]["id"] == users[absorbed]["id"]:
            # Nothing to merge: one side never reached Zendesk, or an earlier attempt merged them.
            return DeliveryResult()
        # https://developer.zendesk.com/api-reference/ticketing/users/users/#merge-end-users: the
        # user in the path is merged into the one in the body.
        source, target = users[absorbed]["id"], users[survivor]["id"]
        self.api.call("PUT", f"/api/v2/users/{source}/merge", json_body={"user": {"id": target}})
        return DeliveryResult(external_ref=f"user:{target}")


# --- helpers -------------------------------------------------------------------------------------


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _records(value: object) -> list[dict[str, Any]]:
    """The objects with an id in a listed collection."""
    return [v for v in value if isinstance(v, dict) and v.get("id") is not None] if isinstance(value, list) else []


def _object_id(response: VendorResponse, kind: str) -> int:
    value = _dict(_dict(response.data).get(kind)).get("id")
    if value is None:
        raise PermanentDeliveryError(f"zendesk answered {response.status} without a {kind} id")
    return value


def _error_code(response: VendorResponse) -> str | None:
    error = _dict(response.data).get("error")
    return error if isinstance(error, str) else None


def _rejected(response: VendorResponse) -> PermanentDeliveryError:
    reason = json.dumps(response.data, separators=(",", ":")) if response.data is not None else ""
    return PermanentDeliveryError(f"zendesk answered {response.status}: {reason[:MAX_REASON_CHARS]}".strip())


def comment_ref(response: VendorResponse, ticket_id: str) -> str:
    """The id of the comment a ticket update added (its audit's Comment event), else the audit's."""
    audit = _dict(_dict(response.data).get("audit"))
    comment_id = next((e.get("id") for e in audit.get("events") or [] if isinstance(e, dict)
                       and e.get("type") == "Comment" and e.get("id") is not None), None)
    ref = comment_id if comment_id is not None else audit.get("id")
    return str(ref if ref is not None else ticket_id)


def _ticket_ref(job: DeliveryJob, destination: str) -> str:
    """The case's ticket id, which the deliverer hands outbound messages (it sends them only to
    cases that have one)."""
    ref = job.case.external_refs.get(destination)
    if ref is None:
        raise PermanentDeliveryError(f"zendesk: case {job.case.id} has no ticket for the outbound message")
    if not ref.ref.isdigit():
        raise PermanentDeliveryError(f"zendesk: stored ticket reference {ref.ref!r} is not a ticket id")
    return ref.ref


def _current(tickets: list[dict[str, Any]]) -> dict[str, Any]:
    """The newest ticket that still takes comments, else the newest."""
    open_ = [t for t in tickets if t.get("status") != "closed"]
    return max(open_ or tickets, key=lambda t: int(t["id"]))


def _identifier(job: DeliveryJob, kind: IdentifierKind) -> str | None:
    return next((i.value for i in job.customer.identifiers if i.kind == kind), None)


def _name(job: DeliveryJob) -> str | None:
    attribute = job.customer.attributes.get("name")
    if attribute is not None and isinstance(attribute.value, str) and attribute.value.strip():
        return attribute.value.strip()
    return job.contact.sender.display_name or None


def _tags(tags: list[str]) -> list[str]:
    # Zendesk splits a tag at spaces: https://support.zendesk.com/hc/en-us/articles/4408888664474
    return list(dict.fromkeys("_".join(t.split()) for t in tags if t.strip()))


def _field_value(value: Any) -> Any:
    """A custom field value in a shape Zendesk takes: text, number, checkbox, or tag list."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list):
        return [str(item) for item in value]
    return json.dumps(value, separators=(",", ":"), default=str)


def _filename(attachment: Attachment) -> str:
    if attachment.filename:
        return attachment.filename
    tail = unquote(urlsplit(attachment.url or "").path.rsplit("/", 1)[-1])
    return tail or "attachment"
