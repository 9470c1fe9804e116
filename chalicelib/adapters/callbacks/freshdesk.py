"""Freshdesk automation-rule webhooks: https://support.freshdesk.com/support/solutions/articles/132589

Freshdesk calls the hub from an automation rule's "Trigger Webhook" action with a body the admin
composed from placeholders, and **signs nothing** (docs/destinations/freshdesk.md, "Answering from
Freshdesk", names the sources). So:

- the operator puts a shared secret into the action, as the custom header `X-Hub-Callback-Secret`
  or as the password of the action's basic auth, compared in constant time with every secret of
  the rotation list. A shared secret proves only that the caller knows it: it does not bind the
  body, and there is no timestamp to bound replays;
- the body is a hint: `{"event": "reply"|"status", "ticket_id": …, "status": …}`. A reply hint
  (`confirmed=False`) is re-read in the worker from the ticket's conversations, and only a public
  agent conversation that is neither the customer's message nor the hub's own goes out. Status
  hints carry no free text, so they are taken as written (closing a case is undone by reopening).

The placeholders render as text: `{{ticket.status}}` as the status *name* ("Resolved"), an unset
one as "" (and an unknown one may stay `{{…}}`). Both names and numeric ids are read.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
from datetime import timedelta
from typing import Any

from chalicelib.adapters.connectors.settings.freshdesk import (  # noqa: F401 (re-exported)
    FreshdeskCallbackSettings,
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
    plain_text,
)
from chalicelib.domain.models import AgentAuthor, AgentReply, Attachment, CaseStatusChange
from chalicelib.errors import MalformedPayloadError, PermanentDeliveryError
from chalicelib.secrets import is_reference

#: The custom header the operator adds to the "Trigger Webhook" action.
SECRET_HEADER = SHARED_SECRET_HEADER
REPLY = "reply"
STATUS = "status"
#: https://developers.freshdesk.com/api/#ticket_attributes: 2 Open, 3 Pending, 4 Resolved, 5 Closed.
DEFAULT_STATUS_NAMES = {"open": 2, "pending": 3, "resolved": 4, "closed": 5}
#: Priority id → the hub's word for it (1 Low, 2 Medium, 3 High, 4 Urgent).
PRIORITY_NAMES = {1: "low", 2: "medium", 3: "high", 4: "urgent"}
#: Conversation `source`: 0 reply, 2 note (both reach the requester when public); 8 is a forward
#: to a third party, never an answer to the customer (values as in askasoft/pango's Freshdesk
#: SDK, sdk/fdk/freshdesk/conversation.go; the API reference was not read). Missing: accepted.
ANSWER_SOURCES = {None, 0, 2}
#: How much later than the callback a conversation may be dated and still be the one it announced
#: (Freshdesk's clock against the hub's).
CLOCK_SKEW = timedelta(seconds=10)


class FreshdeskCallbacks(VendorCallbacks):
    takes_notes = True
    settings: FreshdeskCallbackSettings

    # --- request path ----------------------------------------------------------------------------

    def verify(self, request: CallbackRequest) -> None:
        given = request.header(SECRET_HEADER) or _basic_password(request.header("authorization"))
        self.require_shared_secret(given, carried_by=f"{SECRET_HEADER} header or basic auth")

    def parse(self, request: CallbackRequest) -> ParsedCallback:
        try:
            body = json.loads(request.body)
        except ValueError:
            raise MalformedPayloadError("body: not JSON (set the webhook's encoding to JSON)") from None
        if not isinstance(body, dict):
            raise MalformedPayloadError("body: must be a JSON object")
        ticket = _ticket_id(body.get("ticket_id"))
        event = _text(body.get("event"))
        parsed = ParsedCallback()
        if event == REPLY:
            parsed.items.append(AgentReply(
                destination=self.destination, ticket=ticket, case_id=_text(body.get("case_id")),
                event_id=event_digest(ticket, REPLY, request.received_at.isoformat(), request.body),
                author=AgentAuthor(name=_text(body.get("agent_name")), email=_text(body.get("agent_email"))),
                confirmed=False, received_at=request.received_at,
            ))
        elif event == STATUS:
            parsed.items.append(self._status(body, ticket, request))
        else:
            parsed.unhandled.append(self.unhandled(
                f"freshdesk callback with event {event!r} (expected {REPLY!r} or {STATUS!r})", body, request))
        return parsed

    def _status(self, body: dict[str, Any], ticket: str, request: CallbackRequest) -> CaseStatusChange:
        status = _text(body.get("status"))
        return CaseStatusChange(
            destination=self.destination, ticket=ticket, case_id=_text(body.get("case_id")),
            # Freshdesk gives no delivery id or change time: a retry is a new event, which the case
            # sync applies idempotently (the same state recorded again).
            event_id=event_digest(ticket, STATUS, status, request.received_at.isoformat(), request.body),
            state=self.state_of(status), vendor_status=status,
            assignee=_text(body.get("agent_email")) or _text(body.get("agent_name")),
            priority=_priority(body.get("priority")), received_at=request.received_at,
        )

    def state_of(self, status: str | None) -> str | None:
        """`closed` for a closing status (id or name), `open` for any other known one, None when
        the status is absent or a name the settings do not know (recorded, decides nothing)."""
        if status is None:
            return None
        number = int(status) if status.isdigit() else \
            {**DEFAULT_STATUS_NAMES, **self.settings.status_names}.get(status.lower())
        if number is None:
            return None
        return "closed" if number in self.settings.closed_statuses else "open"

    # --- worker ----------------------------------------------------------------------------------

    def confirm(self, reply: AgentReply) -> AgentReply | str:
        """The newest public agent conversation on the ticket written before the callback arrived
        (so two quick replies each go out once, by their own callback), or why there is none."""
        conversations = self._conversations(reply.ticket)
        if conversations is None:
            return f"freshdesk ticket {reply.ticket} no longer exists"
        latest = reply.received_at + CLOCK_SKEW
        dated = [(parse_time(c.get("created_at")), c) for c in conversations]
        candidates = [c for at, c in dated if at is None or at <= latest] or conversations
        reasons: list[str] = []
        for conversation in reversed(candidates):
            reason = self._not_an_answer(conversation)
            if reason is None:
                return self._reply(reply, conversation)
            reasons.append(reason)
        return reasons[0] if reasons else f"freshdesk ticket {reply.ticket} has no conversation"

    def _not_an_answer(self, conversation: dict[str, Any]) -> str | None:
        ident = conversation.get("id")
        if conversation.get("private") is not False:
            return f"conversation {ident} is a private note"
        if conversation.get("incoming") is not False:
            # The customer's own messages: the hub writes them as incoming notes.
            return f"conversation {ident} is an incoming message, not an agent's answer"
        if conversation.get("source") not in ANSWER_SOURCES:
            return f"conversation {ident} has source {conversation.get('source')} (not a reply or note)"
        user = conversation.get("user_id")
        return self.echo_reason(_body_text(conversation), str(user) if user is not None else None)

    def _reply(self, hint: AgentReply, conversation: dict[str, Any]) -> AgentReply:
        user = conversation.get("user_id")
        attachments = [
            Attachment(url=str(a["attachment_url"]), content_type=_text(a.get("content_type")),
                       filename=_text(a.get("name")), size=a.get("size") if isinstance(a.get("size"), int) else None)
            for a in conversation.get("attachments") or [] if isinstance(a, dict) and a.get("attachment_url")
        ]
        return hint.model_copy(update={
            "event_id": str(conversation["id"]), "comment_id": str(conversation["id"]),
            "author": AgentAuthor(id=str(user) if user is not None else None),
            "text": _body_text(conversation), "attachments": attachments, "confirmed": True,
            "occurred_at": parse_time(conversation.get("created_at")),
        })

    def _conversations(self, ticket: str) -> list[dict[str, Any]] | None:
        """Every conversation of the ticket, oldest first (Freshdesk lists them so, 100 a page);
        None when the ticket is gone. Raises the API's delivery errors."""
        from chalicelib.adapters.connectors.freshdesk import CONVERSATION_PAGE, MAX_CONVERSATION_PAGES

        found: list[dict[str, Any]] = []
        for page in range(1, MAX_CONVERSATION_PAGES + 1):
            response = self.connector.api.call(
                "GET", f"/api/v2/tickets/{ticket}/conversations?per_page={CONVERSATION_PAGE}&page={page}",
                allow=(404,))
            if response.status == 404:
                return None
            listed = [c for c in response.data if isinstance(c, dict) and c.get("id") is not None] \
                if isinstance(response.data, list) else []
            found += listed
            if len(listed) < CONVERSATION_PAGE:
                break
        return found

    def note(self, ticket: str, text: str, *, reply_ref: str | None = None) -> str | None:
        if not ticket.isdigit():
            raise PermanentDeliveryError(f"freshdesk: {ticket!r} is not a ticket id")
        body = "<div>" + html.escape(text).replace("\n", "<br>") + "</div>"
        response = self.connector.api.call("POST", f"/api/v2/tickets/{ticket}/notes",
                                           json_body={"body": body, "private": True})
        ident = response.data.get("id") if isinstance(response.data, dict) else None
        return str(ident) if ident is not None else None

    # --- operator --------------------------------------------------------------------------------

    def body_template(self, event: str) -> str:
        """The JSON the operator pastes as the action's content (Content: Advanced)."""
        fields = {"event": event, "ticket_id": "{{ticket.id}}", "status": "{{ticket.status}}",
                  "priority": "{{ticket.priority}}", "agent_email": "{{ticket.agent.email}}",
                  "agent_name": "{{ticket.agent.name}}"}
        case_field = getattr(self.connector.settings, "case_id_field", None)
        if case_field:
            fields["case_id"] = "{{ticket." + case_field + "}}"
        return json.dumps(fields, indent=2)

    def setup(self) -> CallbackSetup:
        # A reference names where the secret is; an inline secret is never printed.
        references = [s.get_secret_value() for s in self.settings.secrets if is_reference(s.get_secret_value())]
        secret = f"<the value of {references[0]}>" if references else "<your callbacks.secrets value>"
        action = {
            "Action": "Trigger Webhook",
            "Request type": "POST",
            "URL": self.callback_url(),
            "Custom headers": f"{SECRET_HEADER}: {secret}",
            "Encoding": "JSON",
            "Content": "Advanced",
        }
        rule = "Admin → Workflows → Automations → Ticket updates → New rule."
        steps = [
            SetupStep("Agent replies", {
                "Rule name": "Hub: agent replies", "When an action performed by": "Agent",
                "Involves any of these events": "Reply is sent", **action,
                "Body": self.body_template(REPLY),
            }, f"{rule} Add the event for public notes too if agents answer with them. Without custom "
               f"headers on your plan: Requires authentication → user name `hub`, password {secret}."),
            SetupStep("Ticket status", {
                "Rule name": "Hub: ticket status",
                "When an action performed by": "Agent (and System, if automations resolve or close tickets)",
                "Involves any of these events": "Status is changed", **action,
                "Body": self.body_template(STATUS),
            }, rule),
            SetupStep("The hub's own agent", {"callbacks.hub_author_ids": "[<id>]"},
                      "The id of the agent whose API key the hub uses (`GET /api/v2/agents/me` → id), "
                      "and outbound_agent_id if set: their conversations are never sent back."),
        ]
        if self.settings.status_names or self.settings.closed_statuses != [4, 5]:
            steps.append(SetupStep("Custom statuses", {
                "callbacks.closed_statuses": str(self.settings.closed_statuses),
                "callbacks.status_names": json.dumps(self.settings.status_names)}))
        return CallbackSetup(vendor="freshdesk", steps=steps, limits=LIMITS)


LIMITS = [
    "Freshdesk signs no webhook: the hub checks a shared secret (header or basic-auth password), "
    "then reads every reply back through the API before it reaches the customer.",
    "The hub creates no automation rule: Freshdesk's rule API is not documented for the webhook "
    "action's content and events; follow these steps by hand.",
    "Attachments go to the customer as Freshdesk's attachment links, which expire.",
    "Replies are relayed from the ticket's first 1,000 conversations.",
    "A custom status closes the case only when callbacks.closed_statuses lists its id.",
]


def _text(value: object) -> str | None:
    """A placeholder's rendering: None when empty or left unrendered (`{{…}}`)."""
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return None if not text or "{{" in text else text


def _ticket_id(value: object) -> str:
    text = (_text(value) or "").lstrip("#")
    if isinstance(value, bool) or not text.isdigit():
        raise MalformedPayloadError(f"ticket_id: {value!r} is not a Freshdesk ticket id (use {{{{ticket.id}}}})")
    return str(int(text))


def _priority(value: object) -> str | None:
    text = _text(value)
    if text is None:
        return None
    return PRIORITY_NAMES.get(int(text), text) if text.isdigit() else text.lower()


def _body_text(conversation: dict[str, Any]) -> str | None:
    text = conversation.get("body_text")
    if isinstance(text, str) and text.strip():
        return text.strip()
    return plain_text(conversation.get("body"))


def _basic_password(header: str | None) -> str | None:
    """The password of a basic-auth header (the action's "Requires authentication")."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2] or None

