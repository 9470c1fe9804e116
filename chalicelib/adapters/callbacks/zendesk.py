"""Zendesk's way back: a webhook, fired by two triggers, tells the hub about agents' public replies
and ticket changes.

Zendesk signs every webhook request: `X-Zendesk-Webhook-Signature` is base64 HMAC-SHA256 of
`X-Zendesk-Webhook-Signature-Timestamp` followed by the raw body, keyed with the webhook's signing
secret (https://developer.zendesk.com/documentation/webhooks/verifying/). Zendesk documents no
replay window; the hub refuses timestamps more than `max_age_seconds` away from its clock, and
reads the timestamp as ISO 8601 or unix seconds (the format is not pinned down in what we read).

The triggers post a body the hub defines (`BODY_FIELDS`, printed by `hubctl callbacks setup`):
Zendesk fills its placeholders, so the body is a hint, not the comment. For a reply the worker
re-reads the ticket's newest comments (`confirm`) and relays the newest public one only when an
agent wrote it (not the requester, not the hub's API user, not one of the hub's own comments).
Status, priority and assignee come from the same placeholders (Zendesk's own values).

Webhooks subscribed to Zendesk event types (`zen:event-type:ticket.*`, with the ticket under
`detail`) are read too where they carry a status; other event types are kept raw (unhandled): the
event names for comments were not confirmed in Zendesk's reference.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any
from urllib.parse import quote

from chalicelib.adapters.connectors.settings.zendesk import (  # noqa: F401 (re-exported)
    STATUSES,
    ZendeskCallbackSettings,
)
from chalicelib.adapters.callbacks.base import (
    CallbackRequest,
    CallbackSetup,
    ParsedCallback,
    SetupStep,
    VendorCallbacks,
    event_digest,
    parse_time,
    plain_text,
)
from chalicelib.domain.models import AgentAuthor, AgentReply, Attachment, CaseStatusChange
from chalicelib.errors import MalformedPayloadError, SignatureError
from chalicelib.signing.compare import hmac_sha256, signed_by_any
from chalicelib.signing.window import check_window

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-zendesk-webhook-signature"
TIMESTAMP_HEADER = "x-zendesk-webhook-signature-timestamp"
#: How many of the ticket's newest comments the re-read looks at.
COMMENTS_READ = 10

#: The body both triggers post: Zendesk placeholders, one JSON object. `hub_event` tells the two
#: triggers apart; everything else is the ticket as Zendesk renders it when the trigger fires.
BODY_FIELDS = {
    "ticket_id": "{{ticket.id}}",
    "external_id": "{{ticket.external_id}}",
    "status": "{{ticket.status}}",
    "priority": "{{ticket.priority}}",
    "assignee_id": "{{ticket.assignee.id}}",
    "assignee_name": "{{ticket.assignee.name}}",
    "updated_at": "{{ticket.updated_at_with_timestamp}}",
    "current_user_id": "{{current_user.id}}",
    "current_user_role": "{{current_user.role}}",
}


class ZendeskCallbacks(VendorCallbacks):
    takes_notes = True

    # --- request path ----------------------------------------------------------------------------

    def verify(self, request: CallbackRequest) -> None:
        signature = (request.header(SIGNATURE_HEADER) or "").strip()
        timestamp = (request.header(TIMESTAMP_HEADER) or "").strip()
        if not signature:
            raise SignatureError(f"missing {SIGNATURE_HEADER}")
        if not timestamp:
            raise SignatureError(f"missing {TIMESTAMP_HEADER}")
        signed_at = parse_time(timestamp)
        if signed_at is None:
            raise SignatureError(f"{TIMESTAMP_HEADER} is neither ISO 8601 nor unix seconds")
        check_window(signed_at.timestamp(), request.received_at, max_age=self.settings.max_age_seconds,
                     field=TIMESTAMP_HEADER, setting=f"destinations[{self.destination}].callbacks.max_age_seconds")
        message = timestamp.encode() + request.body
        if not signed_by_any(lambda secret: base64.b64encode(hmac_sha256(secret, message)).decode(), self.secrets(),
                             signature):
            raise SignatureError(f"{SIGNATURE_HEADER} does not match the body")

    def parse(self, request: CallbackRequest) -> ParsedCallback:
        try:
            body = json.loads(request.body)
        except ValueError:
            raise MalformedPayloadError("the body is not JSON") from None
        if not isinstance(body, dict):
            raise MalformedPayloadError("the body must be a JSON object")
        if str(body.get("type", "")).startswith("zen:event-type:"):
            return self._event(body, request)
        if "hub_event" not in body:
            return ParsedCallback(unhandled=[self.unhandled("neither a hub trigger body (hub_event) nor a Zendesk "
                                                            "event (type zen:event-type:*)", body, request)])
        ticket = _text(body.get("ticket_id"))
        if not ticket or not ticket.isdigit():
            return ParsedCallback(unhandled=[self.unhandled("ticket_id is not a ticket number", body, request)])
        event = body.get("hub_event")
        if event == "reply":
            return self._reply(body, ticket, request)
        if event == "status":
            return ParsedCallback(items=[self._status(body, ticket, request)])
        return ParsedCallback(unhandled=[self.unhandled(f"hub_event {event!r} is neither reply nor status", body,
                                                        request)])

    def _reply(self, body: dict, ticket: str, request: CallbackRequest) -> ParsedCallback:
        author_id = _text(body.get("current_user_id"))
        role = (_text(body.get("current_user_role")) or "").lower()
        if role in ("end-user", "end user", "end_user"):
            return ParsedCallback(ignored=[f"ticket {ticket}: the requester's own comment"])
        if author_id and author_id in self.settings.hub_author_ids:
            return ParsedCallback(ignored=[f"ticket {ticket}: comment by the hub's own user {author_id}"])
        updated = _text(body.get("updated_at"))
        reply = AgentReply(
            destination=self.destination, ticket=ticket, case_id=_text(body.get("external_id")) or None,
            event_id=event_digest("reply", ticket, updated or request.body.decode("utf-8", "replace")),
            author=AgentAuthor(id=author_id or None), confirmed=False, occurred_at=parse_time(updated),
            received_at=request.received_at,
        )
        return ParsedCallback(items=[reply])

    def _status(self, body: dict, ticket: str, request: CallbackRequest) -> CaseStatusChange:
        status = (_text(body.get("status")) or "").lower() or None
        updated = _text(body.get("updated_at"))
        assignee = _text(body.get("assignee_name")) or _text(body.get("assignee_id")) or None
        priority = (_text(body.get("priority")) or "").lower() or None
        return CaseStatusChange(
            destination=self.destination, ticket=ticket, case_id=_text(body.get("external_id")) or None,
            event_id=event_digest("status", ticket, status, priority, assignee, updated),
            state=self._state(status), vendor_status=status, assignee=assignee, priority=priority,
            occurred_at=parse_time(updated), received_at=request.received_at,
        )

    def _event(self, body: dict, request: CallbackRequest) -> ParsedCallback:
        """A webhook subscribed to Zendesk's own ticket events: the ticket is `detail`."""
        detail = body.get("detail")
        status = detail.get("status") if isinstance(detail, dict) else None
        ticket = _text(detail.get("id")) if isinstance(detail, dict) else ""
        if not isinstance(status, str) or not ticket.isdigit():
            return ParsedCallback(unhandled=[self.unhandled(f"Zendesk event {body.get('type')} without a ticket "
                                                            "status (detail.id, detail.status)", body, request)])
        status = status.lower()
        assignee = _text(detail.get("assignee_id")) or None
        priority = (_text(detail.get("priority")) or "").lower() or None
        change = CaseStatusChange(
            destination=self.destination, ticket=ticket, case_id=_text(detail.get("external_id")) or None,
            event_id=_text(body.get("id")) or event_digest(body.get("type"), ticket, status, body.get("time")),
            state=self._state(status), vendor_status=status, assignee=assignee, priority=priority,
            occurred_at=parse_time(body.get("time") or detail.get("updated_at")), received_at=request.received_at,
        )
        return ParsedCallback(items=[change])

    def _state(self, status: str | None):
        if status is None or status not in STATUSES:
            return None
        return "closed" if status in self.settings.closed_statuses else "open"

    # --- worker ----------------------------------------------------------------------------------

    def confirm(self, reply: AgentReply) -> AgentReply | str:
        """The ticket's newest public comment, if an agent other than the hub wrote it."""
        response = self.connector.api.call(
            "GET", f"/api/v2/tickets/{quote(reply.ticket)}/comments?sort_order=desc&include=users"
                   f"&per_page={COMMENTS_READ}", allow=(404,))
        if response.status == 404:
            return f"ticket {reply.ticket} is gone"
        data = response.data if isinstance(response.data, dict) else {}
        comments = [c for c in data.get("comments") or [] if isinstance(c, dict) and c.get("public") is True]
        if not comments:
            return f"ticket {reply.ticket} has no public comment"
        comment = max(comments, key=lambda c: (str(c.get("created_at") or ""), int(c.get("id") or 0)))
        users = {str(u.get("id")): u for u in data.get("users") or [] if isinstance(u, dict)}
        author_id = _text(comment.get("author_id"))
        author = users.get(author_id, {})
        if author.get("role") == "end-user":
            return f"ticket {reply.ticket}: the newest public comment is the requester's"
        text = _text(comment.get("plain_body")) or plain_text(_text(comment.get("html_body"))) or _text(comment.get("body"))
        echo = self.echo_reason(text, author_id)
        if echo is not None:
            return f"ticket {reply.ticket}: {echo}"
        return reply.model_copy(update={
            "event_id": _text(comment.get("id")) or reply.event_id, "comment_id": _text(comment.get("id")) or None,
            "author": AgentAuthor(id=author_id or None, name=author.get("name"), email=author.get("email")),
            "text": text, "attachments": _attachments(comment), "confirmed": True,
            "occurred_at": parse_time(comment.get("created_at")) or reply.occurred_at,
        })

    def note(self, ticket: str, text: str, *, reply_ref: str | None = None) -> str | None:
        """An internal note (a private comment) on the ticket; its comment id."""
        from chalicelib.adapters.connectors.zendesk import comment_ref

        update = {"ticket": {"comment": {"body": text, "public": False}}}
        response = self.connector.api.call("PUT", f"/api/v2/tickets/{quote(ticket)}", json_body=update)
        return comment_ref(response, ticket)

    # --- operator --------------------------------------------------------------------------------

    def setup(self) -> CallbackSetup:
        url = self.callback_url()
        return CallbackSetup(vendor="Zendesk", can_create=True, steps=[
            SetupStep("Webhook", {
                "Endpoint URL": url, "Request method": "POST", "Request format": "JSON",
                "Connect with": "Trigger or automation", "Authentication": "None (the request is signed)"},
                "Admin Center > Apps and integrations > Webhooks > Create webhook. After creating it, open it, "
                "click Reveal secret, and store the signing secret where destinations[].callbacks.secrets points."),
            SetupStep("Trigger: agent replies", {
                "Conditions (all)": "Ticket Is Updated; Comment Is Public; Current user Is (agent)",
                "Action": "Notify active webhook: the webhook above",
                "JSON body": json.dumps(self.trigger_body("reply"), indent=2)},
                "Admin Center > Objects and rules > Business rules > Triggers > Add trigger."),
            SetupStep("Trigger: ticket changes", {
                "Conditions (all)": "Ticket Is Updated",
                "Conditions (any)": "Status Changed; Priority Changed; Assignee Changed",
                "Action": "Notify active webhook: the webhook above",
                "JSON body": json.dumps(self.trigger_body("status"), indent=2)}),
        ], limits=[
            "Attachments go to the customer as Zendesk's attachment links; with private attachments turned on "
            "in Zendesk those links need a sign-in, and the customer cannot open them.",
            "Two public replies within the same second are read back as one: the newest is sent.",
        ])

    def trigger_body(self, event: str) -> dict[str, str]:
        return {"hub_event": event, **BODY_FIELDS}

    def create_setup(self) -> list[str]:
        """The webhook (Zendesk generates its signing secret, read back and printed once) and the
        two triggers, through the Support API."""
        setup_name = f"Omnichannel hub ({self.destination})"
        created = self.connector.api.call("POST", "/api/v2/webhooks", json_body={"webhook": {
            "name": setup_name, "endpoint": self.callback_url(), "http_method": "POST", "request_format": "json",
            "status": "active", "subscriptions": ["conditional_ticket_events"]}})
        webhook = (created.data or {}).get("webhook") if isinstance(created.data, dict) else None
        webhook_id = _text(webhook.get("id")) if isinstance(webhook, dict) else ""
        if not webhook_id:
            from chalicelib.errors import PermanentDeliveryError

            raise PermanentDeliveryError("zendesk answered the webhook creation without a webhook id")
        secret = self.connector.api.call("GET", f"/api/v2/webhooks/{quote(webhook_id)}/signing_secret")
        signing = (secret.data or {}).get("signing_secret") if isinstance(secret.data, dict) else None
        lines = [f"webhook {webhook_id} → {self.callback_url()}"]
        triggers = {
            "reply": {"all": [{"field": "update_type", "value": "Change"},
                              {"field": "comment_is_public", "value": "true"},
                              {"field": "role", "operator": "is", "value": "agent"}], "any": []},
            "status": {"all": [{"field": "update_type", "value": "Change"}],
                       "any": [{"field": "status", "operator": "changed"},
                               {"field": "priority", "operator": "changed"},
                               {"field": "assignee_id", "operator": "changed"}]},
        }
        for event, conditions in triggers.items():
            body = json.dumps(self.trigger_body(event), separators=(",", ":"))
            answer = self.connector.api.call("POST", "/api/v2/triggers", json_body={"trigger": {
                "title": f"{setup_name}: {event}", "conditions": conditions,
                "actions": [{"field": "notification_webhook", "value": [webhook_id, body]}]}})
            trigger = (answer.data or {}).get("trigger") if isinstance(answer.data, dict) else None
            lines.append(f"trigger {_text(trigger.get('id')) if isinstance(trigger, dict) else '?'} ({event})")
        if isinstance(signing, dict) and signing.get("secret"):
            lines.append(f"signing secret (store it where destinations[{self.destination}].callbacks.secrets "
                         f"points; shown once): {signing['secret']}")
        return lines


def _text(value: Any) -> str:
    if value is None or isinstance(value, bool | dict | list):
        return ""
    return str(value).strip()


def _attachments(comment: dict) -> list[Attachment]:
    found = []
    for item in comment.get("attachments") or []:
        if isinstance(item, dict) and isinstance(item.get("content_url"), str):
            found.append(Attachment(url=item["content_url"], content_type=item.get("content_type"),
                                    filename=item.get("file_name"), size=item.get("size")
                                    if isinstance(item.get("size"), int) else None))
    return found
