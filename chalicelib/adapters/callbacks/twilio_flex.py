"""Twilio Flex callbacks: Conversations post-event webhooks and TaskRouter workspace events (https://www.twilio.com/docs/conversations/conversations-webhooks, https://www.twilio.com/docs/taskrouter/api/event/reference).

What the vendor says back depends on the connector's mode (`connectors/twilio_flex.py`):

- `interaction`: Flex made a Conversation for the contact (the case's ticket is its `CH…` sid).
  `onMessageAdded` carries the agent's messages and `onConversationStateUpdated` its end. When the
  customer takes part through a chat identity (the hub's customer id: web chat, Messenger, and
  every channel Flex has no type for), nothing but the hub reaches them, so the hub relays the
  agent's messages. When the customer has a messaging binding (SMS, WhatsApp, email), Twilio
  delivers the agent's messages itself, and the hub must not send them a second time: `confirm`
  reads the conversation's participants to tell the two apart.
- `taskrouter`: the case's ticket is the task (`WT…`). A task holds no conversation, so the agent
  answers through the hub's API; only its status comes back (workspace events).

Both are form posts signed with `X-Twilio-Signature` (HMAC-SHA1 over the exact URL and the sorted
parameters, keyed with the Auth Token), the same signature as Programmable Messaging's webhooks,
verified with the Messaging adapter's functions. Twilio signs no timestamp, so there is no replay
window: a replayed request is deduplicated by its ids (`MessageSid`, the event sid).
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from chalicelib.adapters.connectors.settings.twilio_flex import (  # noqa: F401 (re-exported)
    CONVERSATIONS_URL,
    TwilioFlexCallbackSettings,
)
from chalicelib.adapters.callbacks.base import (
    CallbackRequest,
    CallbackSetup,
    ParsedCallback,
    SetupStep,
    VendorCallbacks,
    event_digest,
    parse_time,
)
from chalicelib.domain.models import AgentAuthor, AgentReply, CaseStatusChange
from chalicelib.errors import ConfigError, MalformedPayloadError, PermanentDeliveryError, SignatureError

SIGNATURE_HEADER = "X-Twilio-Signature"

#: Conversations post-event webhooks the hub subscribes to (service `Filters`).
CONVERSATION_EVENTS = ("onMessageAdded", "onConversationStateUpdated")
#: TaskRouter workspace events the hub subscribes to (`EventsFilter`).
TASK_EVENTS = ("task.completed", "task.canceled", "task.wrapup", "reservation.accepted")

#: Conversation `state` → the hub's ticket state; `inactive` (no activity for a while) is neither.
#: States: initializing, inactive, active, closed (twilio-oai conversations_v1 `conversation_enum_state`).
CONVERSATION_STATES: dict[str, str | None] = {"active": "open", "closed": "closed", "inactive": None,
                                              "initializing": None}
#: TaskRouter event → the hub's ticket state. A canceled task (timed out, withdrawn) was never
#: answered: the case stays open, and the status is only recorded.
TASK_STATES: dict[str, str | None] = {"task.completed": "closed", "task.canceled": None, "task.wrapup": None,
                                      "reservation.accepted": None}
TASK_VENDOR_STATUS = {"task.completed": "completed", "task.canceled": "canceled", "task.wrapup": "wrapping",
                      "reservation.accepted": "assigned"}

#: `Source` of a message the customer sent through a binding; agents write from the Flex UI
#: (`SDK`), bots and integrations through the REST API (`API`).
AGENT_SOURCES = frozenset({"SDK", "API"})
#: Authors that are customers' addresses (`+4930…`, `whatsapp:+…`, `messenger:…`, an email).
_ADDRESS_AUTHOR = re.compile(r"^(\+[0-9]{6,}|[a-z]+:.+|[^@\s]+@[^@\s]+)$")
#: The hub's customer ids: the identity the connector gives a chat participant.
_HUB_CUSTOMER = re.compile(r"^cus_[0-9A-Za-z]+$")
_CONVERSATION = re.compile(r"^CH[0-9a-fA-F]{32}$")
_TASK = re.compile(r"^WT[0-9a-fA-F]{32}$")


class TwilioFlexCallbacks(VendorCallbacks):
    content_types: ClassVar[tuple[str, ...]] = ("application/x-www-form-urlencoded",)
    takes_notes: ClassVar[bool] = True
    settings: TwilioFlexCallbackSettings

    # --- request path ----------------------------------------------------------------------------

    def verify(self, request: CallbackRequest) -> None:
        from chalicelib.adapters.channels.twilio.adapter import compute_signature, signed_params, signed_urls
        from chalicelib.signing.compare import matches_any

        signature = (request.header(SIGNATURE_HEADER) or "").strip()
        if not signature:
            raise SignatureError(f"missing {SIGNATURE_HEADER} header")
        params = signed_params(request.body)
        expected = (compute_signature(url, params, token)
                    for url in signed_urls(self.settings.public_url) for token in self.secrets())
        if not matches_any(expected, signature):
            raise SignatureError(f"{SIGNATURE_HEADER} does not match: check that callbacks.public_url is exactly the "
                                 "URL configured at Twilio and that callbacks.secrets holds the account's Auth Token")

    def parse(self, request: CallbackRequest) -> ParsedCallback:
        form = _form(request.body)
        event = form.get("EventType", "").strip()
        if not event:
            raise MalformedPayloadError("not a Twilio Conversations or TaskRouter event: EventType is missing")
        parsed = ParsedCallback()
        if event == "onMessageAdded":
            self._message(form, request, parsed)
        elif event == "onConversationStateUpdated":
            self._conversation_state(form, request, parsed)
        elif event in TASK_STATES:
            self._task_event(event, form, request, parsed)
        elif event.startswith("on") or re.fullmatch(r"[a-z-]+(\.[a-z-]+)+", event):
            parsed.ignored.append(f"{event}: not an event the hub follows")
        else:
            parsed.unhandled.append(self.unhandled(f"unknown Twilio event type {event[:80]!r}", form, request))
        return parsed

    def _message(self, form: dict[str, str], request: CallbackRequest, parsed: ParsedCallback) -> None:
        conversation, message = form.get("ConversationSid", ""), form.get("MessageSid", "")
        if not _CONVERSATION.match(conversation) or not message:
            parsed.unhandled.append(self.unhandled("onMessageAdded without ConversationSid or MessageSid", form, request))
            return
        author, source = form.get("Author", ""), form.get("Source", "").upper()
        skip = self._skip_reason(author, source, form.get("Body"))
        if skip is not None:
            parsed.ignored.append(f"message {message}: {skip}")
            return
        text = (form.get("Body") or "").strip() or None
        if text is None:
            # Conversations media sits behind the Media Content Service's authenticated URLs,
            # whose direct links expire within minutes: nothing a customer's channel could fetch.
            why = "media only (Conversations media is not relayed)" if form.get("Media") else "empty"
            parsed.ignored.append(f"message {message}: {why}")
            return
        parsed.items.append(AgentReply(
            destination=self.destination, ticket=conversation, event_id=message, comment_id=message,
            author=AgentAuthor(id=author or None, name=author or None), text=text,
            # Whether Twilio already delivered it to the customer is in the conversation's
            # participants, which only the API tells: the worker reads them (`confirm`).
            confirmed=False,
            occurred_at=parse_time(form.get("DateCreated")), received_at=request.received_at,
        ))

    def _skip_reason(self, author: str, source: str, body: str | None) -> str | None:
        """Why a message is not an agent's answer: the hub's own, or the customer's."""
        if author == self.settings.hub_author:
            return f"written by the hub ({author})"
        echo = self.echo_reason(body, author or None)
        if echo is not None:
            return echo
        if source and source not in AGENT_SOURCES:
            return f"the customer's own message (via {source})"
        if _HUB_CUSTOMER.match(author) or _ADDRESS_AUTHOR.match(author):
            return "the customer's own message"
        return None

    def _conversation_state(self, form: dict[str, str], request: CallbackRequest, parsed: ParsedCallback) -> None:
        conversation = form.get("ConversationSid", "")
        # `StateTo` (Event Streams' name, read by public handlers); some read `State`: either works.
        state = (form.get("StateTo") or form.get("State") or "").strip().lower()
        if not _CONVERSATION.match(conversation) or state not in CONVERSATION_STATES:
            parsed.unhandled.append(self.unhandled("onConversationStateUpdated without a known state", form, request))
            return
        at = form.get("StateUpdated") or form.get("DateUpdated") or ""
        parsed.items.append(CaseStatusChange(
            destination=self.destination, ticket=conversation, state=CONVERSATION_STATES[state],  # type: ignore[arg-type]
            event_id=event_digest(conversation, state, at, form.get("StateFrom", "")), vendor_status=state,
            occurred_at=parse_time(at), received_at=request.received_at,
        ))

    def _task_event(self, event: str, form: dict[str, str], request: CallbackRequest, parsed: ParsedCallback) -> None:
        task = form.get("TaskSid", "")
        if not _TASK.match(task):
            parsed.unhandled.append(self.unhandled(f"{event} without a TaskSid", form, request))
            return
        attributes = _json_object(form.get("TaskAttributes"))
        # In interaction mode the case's ticket is the task's conversation (Flex writes
        # `conversationSid` into the attributes); in taskrouter mode it is the task itself.
        conversation = attributes.get("conversationSid")
        ticket = conversation if isinstance(conversation, str) and _CONVERSATION.match(conversation) else task
        hub = attributes.get("hub") if isinstance(attributes.get("hub"), dict) else {}
        at = form.get("TimestampMs") or form.get("Timestamp")
        parsed.items.append(CaseStatusChange(
            destination=self.destination, ticket=ticket, case_id=_text(hub.get("case_id")),
            event_id=form.get("Sid") or event_digest(task, event, at, form.get("ReservationSid", "")),
            state=TASK_STATES[event],  # type: ignore[arg-type]
            vendor_status=TASK_VENDOR_STATUS[event],
            assignee=(form.get("WorkerName") or None) if event == "reservation.accepted" else None,
            priority=form.get("TaskPriority") or None,
            occurred_at=parse_time(at), received_at=request.received_at,
        ))

    # --- worker ----------------------------------------------------------------------------------

    def confirm(self, reply: AgentReply) -> AgentReply | str:
        binding = self._customer_binding(reply.ticket)
        if binding is not None:
            return f"Twilio delivers this conversation to the customer's {binding} address itself"
        return reply.model_copy(update={"confirmed": True})

    def note(self, ticket: str, text: str, *, reply_ref: str | None = None) -> str | None:
        """A message by `hub_author` in the conversation: only the agent sees it, because the
        customer takes part through a chat identity that nothing but the hub reads. Refused
        where the customer has a binding (Twilio would send the note to them) and for tasks."""
        if not _CONVERSATION.match(ticket):
            raise PermanentDeliveryError(f"twilio_flex: {ticket} is a TaskRouter task, which takes no notes")
        binding = self._customer_binding(ticket)
        if binding is not None:
            raise PermanentDeliveryError(f"twilio_flex: the customer receives conversation {ticket} through "
                                         f"{binding}, so a note would reach them")
        form = {"Author": self.settings.hub_author, "Body": text, "Attributes": json.dumps({"hub": {"note": True}})}
        response = self.connector.api.call("POST", f"{self._conversation_path(ticket)}/Messages", form=form,
                                           base_url=self.settings.conversations_url)
        return response.data.get("sid") if isinstance(response.data, dict) else None

    def _customer_binding(self, conversation: str) -> str | None:
        """The type of the first messaging binding among the conversation's participants (SMS,
        WhatsApp, email...), or None when everyone takes part through an identity."""
        response = self.connector.api.call("GET", f"{self._conversation_path(conversation)}/Participants?PageSize=100",
                                           base_url=self.settings.conversations_url)
        participants = response.data.get("participants") if isinstance(response.data, dict) else None
        if not isinstance(participants, list):
            raise PermanentDeliveryError(f"twilio_flex answered {response.status} without a participants list")
        for participant in participants:
            binding = participant.get("messaging_binding") if isinstance(participant, dict) else None
            if binding:
                kind = binding.get("type") if isinstance(binding, dict) else None
                return str(kind or "messaging")
        return None

    def _conversation_path(self, conversation: str) -> str:
        service = self.settings.chat_service_sid
        return f"/v1/Services/{service}/Conversations/{conversation}" if service else f"/v1/Conversations/{conversation}"

    # --- operator --------------------------------------------------------------------------------

    def setup(self) -> CallbackSetup:
        url = self.callback_url()
        interaction = getattr(self.connector.settings, "mode", "taskrouter") == "interaction"
        steps: list[SetupStep] = []
        if interaction:
            service = self.settings.chat_service_sid or "<your Flex Conversation Service IS…>"
            steps.append(SetupStep(
                title="Conversations service webhook (agent messages, conversation closed)",
                values={"Service": service, "Post-Event URL": url, "Method": "POST",
                        "Post-webhooks (Filters)": ", ".join(CONVERSATION_EVENTS)},
                text="Console: Conversations > Services > your Flex Conversation Service > Webhooks. Leave the "
                     "Pre-Event URL as it is."))
        steps.append(SetupStep(
            title="TaskRouter workspace events (task completed, canceled, assigned)",
            values={"Workspace": self.connector.settings.workspace_sid, "Event Callback URL": url,
                    "Callback Events (EventsFilter)": ", ".join(TASK_EVENTS)},
            text="Console: TaskRouter > Workspaces > your Flex workspace > Settings. A workspace has one event "
                 "callback URL: if another system already uses it, keep theirs and forward these events."))
        steps.append(SetupStep(
            title="Signing secret",
            values={"callbacks.public_url": url, "callbacks.secrets": "the account's Auth Token (ssm:/…)"},
            text="Twilio signs every request with the Auth Token (X-Twilio-Signature). During a rotation list the "
                 "primary and the secondary token."))
        limits = ["Attachments agents add in Flex are not relayed: Conversations media is only reachable through "
                  "authenticated, short-lived Media Content Service links.",
                  "A canceled task (timed out, withdrawn) leaves the case open; only a completed task closes it."]
        if interaction:
            limits.insert(0, "Where the customer takes part through SMS, WhatsApp or email, Twilio delivers the "
                             "agent's messages itself: the hub records nothing of them and writes no failure notes.")
        else:
            limits.insert(0, "Taskrouter mode has no conversation: agents answer through the hub's API "
                             "(POST /v1/messages); only the task's status comes back, and failure notes cannot be "
                             "written (a task takes no notes).")
        return CallbackSetup(vendor="Twilio Flex", steps=steps, limits=limits, can_create=True)

    def create_setup(self) -> list[str]:
        """Points the Flex Conversation Service's post-event webhook (interaction mode) and the
        workspace's event callback at the hub. Refuses to replace another system's URL: each
        holds only one."""
        url = self.callback_url()
        done: list[str] = []
        if getattr(self.connector.settings, "mode", "taskrouter") == "interaction":
            service = self.settings.chat_service_sid
            if service is None:
                raise ConfigError("callbacks.chat_service_sid is required to configure the Flex Conversation Service")
            path = f"/v1/Services/{service}/Configuration/Webhooks"
            current = self.connector.api.call("GET", path, base_url=self.settings.conversations_url).data
            _refuse_other(current, "post_webhook_url", url, f"Conversation Service {service}")
            # `Filters` is a list: Twilio takes it as the parameter repeated.
            form: Any = [("PostWebhookUrl", url), ("Method", "POST"), *[("Filters", e) for e in CONVERSATION_EVENTS]]
            self.connector.api.call("POST", path, form=form, base_url=self.settings.conversations_url)
            done.append(f"Conversation Service {service}: post-event webhook {url} for {', '.join(CONVERSATION_EVENTS)}")
        workspace = self.connector.settings.workspace_sid
        path = f"/v1/Workspaces/{workspace}"
        settings = self.connector.settings
        base = settings.base_url if settings.mode == "taskrouter" else settings.taskrouter_url
        current = self.connector.api.call("GET", path, base_url=base).data
        _refuse_other(current, "event_callback_url", url, f"workspace {workspace}")
        self.connector.api.call("POST", path, form={"EventCallbackUrl": url, "EventsFilter": ",".join(TASK_EVENTS)},
                                base_url=base)
        done.append(f"workspace {workspace}: event callback {url} for {', '.join(TASK_EVENTS)}")
        return done


def _refuse_other(current: object, field: str, url: str, what: str) -> None:
    existing = current.get(field) if isinstance(current, dict) else None
    if existing and existing != url:
        raise ConfigError(f"{what} already sends its events to {existing}; Twilio keeps one URL there. "
                          "Remove it (or forward from it) before creating the hub's")


def _form(body: bytes) -> dict[str, str]:
    """The form's parameters, first value of each; Twilio posts every one once."""
    from urllib.parse import parse_qsl

    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except ValueError:
        raise MalformedPayloadError("the callback body is not UTF-8 form data") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value)
    return form


def _json_object(value: str | None) -> dict[str, Any]:
    try:
        parsed = json.loads(value or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
