"""Meta Graph webhooks, one callback for WhatsApp Cloud API, Messenger and Instagram messaging: https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
import uuid
from datetime import datetime, timezone
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chalicelib.adapters.channels.meta.cdn_media import MetaCdnSource
from chalicelib.adapters.channels.meta.whatsapp_media import WhatsAppCloudSource
from chalicelib.adapters.channels.base import (
    ChannelAdapter,
    ParsedWebhook,
    SimulatedCustomer,
    SimulatedRequest,
    WebhookRequest,
    WebhookResponse,
)
from chalicelib.adapters.channels.json_body import TooDeepError, clean, load_object, safe
from chalicelib.domain.identifiers import IdentifierKind
from chalicelib.domain.models import (
    Attachment,
    Channel,
    ContentType,
    Handle,
    IdentityChange,
    InboundMessage,
    Location,
    Sender,
    StatusEvent,
)
from chalicelib.errors import ForbiddenError, MalformedPayloadError, SignatureError
from chalicelib.secrets import Secret

SIGNATURE_HEADER = "X-Hub-Signature-256"
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
#: Meta documents the challenge as an integer; anything outside printable ASCII is not echoed.
_CHALLENGE = re.compile(r"[\x21-\x7e]{1,256}")

WHATSAPP = "whatsapp_business_account"
#: `object` of the Messenger Platform products → their channel and the kind of their senders' ids
#: (a PSID is scoped to the Page, an IGSID to the Instagram professional account).
MESSAGING_OBJECTS: dict[str, tuple[Channel, IdentifierKind]] = {
    "page": (Channel.MESSENGER, IdentifierKind.MESSENGER),
    "instagram": (Channel.INSTAGRAM, IdentifierKind.INSTAGRAM),
}
#: Messenger/Instagram receipt events → the hub's delivery vocabulary (`read` is Instagram's
#: `messaging_seen` too). https://developers.facebook.com/documentation/business-messaging/messenger-platform/webhooks/webhook-events/message-deliveries
RECEIPTS: dict[str, str] = {"delivery": "delivered", "read": "read"}
#: Keys every messaging event has; any other key names the event's kind.
_ENVELOPE = frozenset({"sender", "recipient", "timestamp"})

UNKNOWN = "unknown"
#: WhatsApp `statuses[].status` → the hub's delivery vocabulary.
STATUSES: dict[str, str] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    # A voice note was played: at least read. `raw` keeps the original word.
    "played": "read",
    "failed": "failed",
}

#: System messages that say a user's ids changed: the customer keeps one record (IdentityChange).
IDENTITY_CHANGES = frozenset({"user_changed_user_id", "user_changed_number"})
MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})
#: Interactive replies whose `{id, title}` we read the same way.
REPLY_TYPES = frozenset({"button_reply", "list_reply"})
#: Types this adapter reads; a known type with an unreadable body is flagged `unreadable`.
KNOWN_TYPES = MEDIA_TYPES | {"text", "location", "interactive", "button", "reaction"}
#: Ten digits reach the year 2286; more would overflow `datetime`.
_TIMESTAMP = re.compile(r"[0-9]{1,10}")
_DIGITS = re.compile(r"\+?[0-9]{4,20}")
#: Messenger sends milliseconds (13 digits today); 15 digits reach the year 9999.
_EPOCH = re.compile(r"[0-9]{1,15}")

#: What `simulated_request` pretends the business is (the ids of Meta's own reference payloads).
SIMULATED_WABA_ID = "102290129340398"
SIMULATED_PHONE_NUMBER_ID = "106540352242922"
SIMULATED_DISPLAY_NUMBER = "14155550100"


def compute_signature(app_secret: str | bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` header value Meta sends: HMAC-SHA256 of the exact bytes, hex."""
    key = app_secret.encode("utf-8") if isinstance(app_secret, str) else app_secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


class MetaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: App Secret(s) from App Dashboard → App settings → Basic; the new one first while rotating.
    app_secrets: list[Secret] = Field(min_length=1)
    #: Verify token(s) typed into the webhook configuration; only the GET handshake uses them.
    verify_tokens: list[Secret] = Field(min_length=1)


class MetaAdapter(ChannelAdapter[MetaSettings]):
    """WhatsApp Cloud API, Messenger and Instagram messages and receipts, one callback URL per Meta app."""

    key: ClassVar[str] = "meta"
    docs_url: ClassVar[str] = (
        "https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages"
    )
    Settings: ClassVar[type[BaseModel]] = MetaSettings
    media_sources = (WhatsAppCloudSource, MetaCdnSource)
    content_types: ClassVar[tuple[str, ...]] = ("application/json",)

    @property
    def _app_secrets(self) -> list[str]:
        return self.secrets.get_all(self.settings.app_secrets)

    @property
    def _verify_tokens(self) -> list[str]:
        return self.secrets.get_all(self.settings.verify_tokens)

    def handshake(self, request: WebhookRequest) -> WebhookResponse:
        """Meta's subscription check: echo `hub.challenge` only for our verify token.

        Raises `ForbiddenError` for a wrong mode or token, `MalformedPayloadError` for a missing
        or unprintable challenge once the token matched.
        """
        mode = request.query.get("hub.mode")
        token = request.query.get("hub.verify_token")
        if not mode:
            raise ForbiddenError("missing hub.mode query parameter")
        if mode != "subscribe":
            raise ForbiddenError("hub.mode must be 'subscribe'")
        if not token:
            raise ForbiddenError("missing hub.verify_token query parameter")
        matched = False
        for expected in self._verify_tokens:
            matched |= hmac.compare_digest(token.encode("utf-8", "replace"), expected.encode("utf-8"))
        if not matched:
            raise ForbiddenError("hub.verify_token does not match any configured verify_tokens")
        challenge = request.query.get("hub.challenge")
        if not challenge:
            raise MalformedPayloadError("missing hub.challenge query parameter")
        if not _CHALLENGE.fullmatch(challenge):
            raise MalformedPayloadError("hub.challenge must be 1-256 printable ASCII characters")
        return WebhookResponse(status=200, body=challenge, content_type="text/plain")

    def verify(self, request: WebhookRequest) -> None:
        header = (request.header(SIGNATURE_HEADER) or "").strip()
        if not header:
            raise SignatureError(f"missing {SIGNATURE_HEADER} header")
        match = _SIGNATURE.fullmatch(header)
        if match is None:
            raise SignatureError(f"{SIGNATURE_HEADER} must be 'sha256=' followed by 64 hex digits")
        given = ("sha256=" + match[1].lower()).encode("ascii")
        matched = False
        for secret in self._app_secrets:
            # Over the raw bytes: Meta signs its \u-escaped JSON, so any re-serialization breaks it.
            matched |= hmac.compare_digest(compute_signature(secret, request.body).encode("ascii"), given)
        if not matched:
            raise SignatureError(f"{SIGNATURE_HEADER} does not match the body for any configured app_secrets")

    def parse(self, request: WebhookRequest) -> ParsedWebhook:
        data = load_object(request.body)
        product, entries = data.get("object"), data.get("entry")
        if not isinstance(product, str) or not product:
            raise MalformedPayloadError('body has no "object" string')
        if not isinstance(entries, list):
            raise MalformedPayloadError('body has no "entry" list')
        if product != WHATSAPP and product not in MESSAGING_OBJECTS:
            reason = f"object {safe(product[:64])!r} is not a product this adapter handles"
            return ParsedWebhook(unhandled=[self.unhandled(reason, data, request)])
        parsed = ParsedWebhook()
        for i, entry in enumerate(entries):
            if product == WHATSAPP:
                self._entry(entry, f"entry[{i}]", request, parsed)
            else:
                self._messaging_entry(MESSAGING_OBJECTS[product], entry, f"entry[{i}]", request, parsed)
        return parsed

    def ack(self, parsed: ParsedWebhook) -> WebhookResponse:
        return WebhookResponse(status=200, body="EVENT_RECEIVED", content_type="text/plain")

    def simulated_request(self, customer: SimulatedCustomer) -> SimulatedRequest:
        """A WhatsApp text from `customer`'s number, signed with the first app secret."""
        wa_id = customer.phone.lstrip("+")
        message = {
            "from": wa_id,
            "id": "wamid." + uuid.uuid4().hex,
            "timestamp": str(int(time.time())),
            "type": "text",
            "text": {"body": customer.text},
        }
        business = {"display_phone_number": SIMULATED_DISPLAY_NUMBER, "phone_number_id": SIMULATED_PHONE_NUMBER_ID}
        value = {
            "messaging_product": "whatsapp",
            "metadata": business,
            "contacts": [{"profile": {"name": customer.name}, "wa_id": wa_id}],
            "messages": [message],
        }
        payload = {
            "object": WHATSAPP,
            "entry": [{"id": SIMULATED_WABA_ID, "changes": [{"field": "messages", "value": value}]}],
        }
        # Compact, non-ASCII escaped: the bytes Meta sends and signs.
        body = json.dumps(payload, separators=(",", ":")).encode()
        signature = compute_signature(self.secrets.get(self.settings.app_secrets[0]), body)
        return SimulatedRequest(
            path=f"/webhooks/{self.key}",
            body=body,
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: signature},
        )

    # --- parsing: every item on its own, so one bad item never drops the others ----------------

    def _entry(self, entry: Any, where: str, request: WebhookRequest, parsed: ParsedWebhook) -> None:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            parsed.unhandled.append(self.unhandled(f"{where}: not an object with a changes list", entry, request))
            return
        for j, change in enumerate(entry["changes"]):
            at = f"{where}.changes[{j}]"
            if not isinstance(change, dict):
                parsed.unhandled.append(self.unhandled(f"{at}: not an object", change, request))
                continue
            field = change.get("field")
            if field != "messages":
                # account_update, message_template_status_update, smb_message_echoes...: later issues.
                reason = f"{at}: field {safe(str(field)[:64])!r} is not handled"
                parsed.unhandled.append(self.unhandled(reason, change, request))
                continue
            value = change.get("value")
            if not isinstance(value, dict):
                parsed.unhandled.append(self.unhandled(f"{at}: value is not an object", change, request))
                continue
            self._value(value, safe(_text(entry, "id")), at, request, parsed)

    def _value(
        self, value: dict, entry_id: str | None, where: str, request: WebhookRequest, parsed: ParsedWebhook
    ) -> None:
        contacts = value.get("contacts")
        try:
            context = _Context(
                entry_id,
                _clean(value.get("metadata")),
                [c for c in contacts if isinstance(c, dict)] if isinstance(contacts, list) else [],
                request,
            )
        except _Unreadable as unreadable:
            parsed.unhandled.append(self.unhandled(f"{where}.value.metadata: {unreadable}", value, request))
            return
        for name, build in (("messages", self._message), ("statuses", self._status)):
            items = value.get(name)
            if items is None:
                continue
            if not isinstance(items, list):
                parsed.unhandled.append(self.unhandled(f"{where}.value.{name}: not a list", value, request))
                continue
            for k, item in enumerate(items):
                at = f"{where}.value.{name}[{k}]"
                try:
                    parsed.events.append(build(_clean(item), context))
                except _Unreadable as unreadable:
                    parsed.unhandled.append(self.unhandled(f"{at}: {unreadable}", item, request))
                except _Skip as skip:
                    parsed.ignored.append(f"{at}: {skip}")
                except ValidationError as exc:
                    fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors(include_input=False))
                    parsed.unhandled.append(self.unhandled(f"{at}: invalid {fields}", item, request))
        errors = value.get("errors")
        if isinstance(errors, list):
            for k, error in enumerate(errors):
                code = _text(error, "code") if isinstance(error, dict) else None
                title = _text(error, "title") if isinstance(error, dict) else None
                reason = f"{where}.value.errors[{k}]: WhatsApp reported error {safe(code)} ({safe(title)})"
                parsed.unhandled.append(self.unhandled(reason, error, request))

    def _message(self, message: Any, ctx: _Context) -> InboundMessage | IdentityChange:
        if not isinstance(message, dict):
            raise _Unreadable("not an object")
        message_id = _text(message, "id")
        if not message_id:
            raise _Unreadable("message without id")
        account = _text(ctx.metadata, "phone_number_id")
        if not account:
            raise _Unreadable("metadata.phone_number_id missing")
        if _text(message, "type") == "system":
            return self._identity_change(message, message_id, account, ctx)
        sender_phone = _text(message, "from")
        sender_user = _text(message, "from_user_id")
        contact = ctx.contact_for(sender_phone, sender_user)
        phone = sender_phone or _text(contact, "wa_id")
        user = sender_user or _text(contact, "user_id")
        if phone and not _DIGITS.fullmatch(phone) and not user:
            # Not a number: a business-scoped id in `from` is still a stable WhatsApp user id.
            phone, user = None, phone
        handles = []
        # The BSUID first: it is present for every user since 2026 while `wa_id` may vanish,
        # so the order key (first handle) stays stable for one customer.
        if user:
            handles.append(Handle(kind="whatsapp_user", value=user))
        if phone and _DIGITS.fullmatch(phone):
            # Kind "whatsapp": a wa_id is international without its "+", whatever the default region.
            handles.append(Handle(kind="whatsapp", value=phone))
        if not handles:
            raise _Unreadable("message without sender (from / from_user_id)")

        profile = contact.get("profile") if isinstance(contact.get("profile"), dict) else {}
        kind = _text(message, "type") or UNKNOWN
        content = _Content.of(kind, message)
        metadata: dict[str, Any] = {"type": kind, **content.metadata}
        if username := _text(profile, "username"):
            metadata["username"] = username
        parent = _text(message, "from_parent_user_id") or _text(contact, "parent_user_id")
        if parent:
            metadata["parent_user_id"] = parent
        context = message.get("context")
        if isinstance(context, dict):
            if reply_to := _text(context, "id"):
                metadata["reply_to"] = reply_to
            for flag in ("forwarded", "frequently_forwarded"):
                if context.get(flag) is True:
                    metadata[flag] = True
        if isinstance(message.get("referral"), dict):
            metadata["referral"] = message["referral"]

        return InboundMessage(
            provider=self.key,
            channel=Channel.WHATSAPP,
            provider_message_id=message_id,
            account=account,
            sender=Sender(handles=handles, display_name=_text(profile, "name")),
            sent_at=_timestamp(message.get("timestamp")),
            received_at=ctx.request.received_at,
            content_type=content.content_type,
            text=content.text,
            attachments=content.attachments,
            location=content.location,
            metadata=metadata,
            conversation_key=f"meta:{account}:{user or phone}",
            raw={"entry_id": ctx.entry_id, "metadata": ctx.metadata, "contact": contact or None, "message": message},
        )

    def _identity_change(self, message: dict, message_id: str, account: str, ctx: _Context) -> IdentityChange:
        """A user's new BSUID (`user_changed_user_id`) or new number (`user_changed_number`, which
        also brings a new BSUID): the customer keeps one record. Other system notices are kept raw.
        https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/system/"""
        system = message.get("system") if isinstance(message.get("system"), dict) else {}
        change = _text(system, "type")
        if change not in IDENTITY_CHANGES:
            raise _Unreadable(f"system message {safe(str(change)[:64])!r} is not handled")
        old_user = _text(system, "previous_user_id") or _text(message, "from_user_id")
        old_phone, new_phone = _text(message, "from"), _text(system, "wa_id")
        previous = [Handle(kind="whatsapp_user", value=v) for v in [old_user] if v]
        previous += [Handle(kind="whatsapp", value=v) for v in [old_phone] if v and _DIGITS.fullmatch(v)]
        current = [Handle(kind="whatsapp_user", value=v) for v in [_text(system, "user_id")] if v and v != old_user]
        current += [Handle(kind="whatsapp", value=v) for v in [new_phone] if v and _DIGITS.fullmatch(v) and v != old_phone]
        if not previous or not current:
            raise _Unreadable(f"{change} without both the previous and the new id")
        return IdentityChange(
            provider=self.key,
            channel=Channel.WHATSAPP,
            provider_message_id=message_id,
            account=account,
            previous=previous,
            current=current,
            change=change,
            occurred_at=_timestamp(message.get("timestamp")),
            received_at=ctx.request.received_at,
            raw={"entry_id": ctx.entry_id, "metadata": ctx.metadata, "message": message},
        )

    def _status(self, status: Any, ctx: _Context) -> StatusEvent:
        if not isinstance(status, dict):
            raise _Unreadable("not an object")
        message_id, provider_status = _text(status, "id"), _text(status, "status")
        if not message_id or not provider_status:
            raise _Unreadable("status without id or status")
        errors = status.get("errors")
        error = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
        phone, user = _text(status, "recipient_id"), _text(status, "recipient_user_id")
        # Since 2026 the recipient's phone may be missing (a username user we wrote to by BSUID),
        # and `failed` statuses carry no contacts; the BSUID then names the recipient.
        contact = ctx.contact_for(phone, user) if ctx.contacts else {}
        raw = {"entry_id": ctx.entry_id, "metadata": ctx.metadata, "status": status}
        if contact:
            raw["contact"] = contact
        return StatusEvent(
            provider=self.key,
            channel=Channel.WHATSAPP,
            provider_message_id=message_id,
            status=STATUSES.get(provider_status.lower(), UNKNOWN),
            account=_text(ctx.metadata, "phone_number_id"),
            recipient=phone or user or _text(contact, "wa_id") or _text(contact, "user_id"),
            occurred_at=_timestamp(status.get("timestamp")),
            received_at=ctx.request.received_at,
            error_code=_text(error, "code"),
            error_message=_text(error, "title") or _text(error, "message"),
            raw=raw,
        )

    # --- Messenger and Instagram: entry[].messaging[] ------------------------------------------

    def _messaging_entry(
        self,
        product: tuple[Channel, IdentifierKind],
        entry: Any,
        where: str,
        request: WebhookRequest,
        parsed: ParsedWebhook,
    ) -> None:
        if not isinstance(entry, dict):
            parsed.unhandled.append(self.unhandled(f"{where}: not an object", entry, request))
            return
        entry_id = safe(_text(entry, "id"))
        events = entry.get("messaging")
        if isinstance(events, list):
            for k, event in enumerate(events):
                at = f"{where}.messaging[{k}]"
                try:
                    parsed.events.extend(self._messaging_event(product, _clean(event), entry_id, request))
                except _Unreadable as unreadable:
                    parsed.unhandled.append(self.unhandled(f"{at}: {unreadable}", event, request))
                except _Skip as skip:
                    parsed.ignored.append(f"{at}: {skip}")
                except ValidationError as exc:
                    fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors(include_input=False))
                    parsed.unhandled.append(self.unhandled(f"{at}: invalid {fields}", event, request))
        elif events is not None:
            parsed.unhandled.append(self.unhandled(f"{where}.messaging: not a list", events, request))
        standby = entry.get("standby")
        # Handover protocol: another app (a bot, an inbox) owns these conversations and answers
        # them. Customers' words all the same: each is kept raw, not dropped.
        for k, event in enumerate(standby if isinstance(standby, list) else [] if standby is None else [standby]):
            reason = f"{where}.standby[{k}]: an event of a conversation another app controls"
            parsed.unhandled.append(self.unhandled(reason, event, request))
        changes = entry.get("changes")
        for j, change in enumerate(changes if isinstance(changes, list) else [] if changes is None else [changes]):
            field = change.get("field") if isinstance(change, dict) else None
            # feed, comments, mentions...: Page and Instagram fields that are not messaging.
            reason = f"{where}.changes[{j}]: field {safe(str(field)[:64])!r} is not handled"
            parsed.unhandled.append(self.unhandled(reason, change, request))
        if events is None and standby is None and changes is None:
            parsed.unhandled.append(self.unhandled(f"{where}: no messaging events", entry, request))

    def _messaging_event(
        self, product: tuple[Channel, IdentifierKind], event: Any, entry_id: str | None, request: WebhookRequest
    ) -> list[InboundMessage | StatusEvent]:
        if not isinstance(event, dict):
            raise _Unreadable("not an object")
        sender = _text(event.get("sender"), "id")
        # entry.id is our Page / Instagram account whichever way a message goes; recipient.id
        # is the same for a customer's message and the customer for our echoes.
        account = entry_id or _text(event.get("recipient"), "id")
        message = event.get("message")
        if isinstance(message, dict) and message.get("is_echo") is True:
            raise _Skip("echo of a message the business sent (is_echo), not a contact")
        if not account:
            raise _Unreadable("no page or account id (entry.id, recipient.id)")
        if sender and sender == account:
            raise _Skip("sent by the business account itself, not a contact")
        if not sender:
            if _text(event.get("sender"), "user_ref"):
                raise _Unreadable("sender known only by user_ref (a chat plugin guest), not handled")
            raise _Unreadable("event without sender.id")
        ctx = _Messaging(*product, account, sender, event, entry_id, request)
        if "message" in event:
            return [self._messenger_message(ctx, message)]
        if "postback" in event:
            return [self._postback(ctx, event["postback"])]
        if "reaction" in event:
            return [self._reaction(ctx, event["reaction"])]
        for name, status in RECEIPTS.items():
            if name in event:
                return self._receipts(ctx, name, status)
        kind = next((key for key in event if key not in _ENVELOPE), None)
        # message_edit, optin, referral, account_linking, thread-control handovers...: acknowledged.
        raise _Unreadable(f"{safe(str(kind)[:64])!r} events are not handled" if kind else "no event in the item")

    def _messenger_message(self, ctx: _Messaging, message: Any) -> InboundMessage:
        if not isinstance(message, dict):
            raise _Unreadable("message is not an object")
        mid = _text(message, "mid")
        if not mid:
            raise _Unreadable("message without mid")
        if message.get("is_deleted") is True:
            # Instagram: the customer unsent an earlier message; the contact already made stays.
            raise _Skip("the customer deleted an earlier message (is_deleted), not a contact")
        text = _string(message, "text")
        attachments: list[Attachment] = []
        types: list[str] = []
        location = None
        metadata: dict[str, Any] = {"type": "message"}
        items = message.get("attachments")
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            kind = _text(item, "type") or UNKNOWN
            payload = item.get("payload") if isinstance(item.get("payload"), dict) else {}
            coordinates = payload.get("coordinates")
            if kind == "location" and isinstance(coordinates, dict):
                latitude = _coordinate(coordinates.get("lat"), 90)
                longitude = _coordinate(coordinates.get("long"), 180)
                if latitude is not None and longitude is not None:
                    location = Location(latitude=latitude, longitude=longitude, name=_text(payload, "title"))
                    continue
            url, title = _text(payload, "url"), _text(payload, "title")
            if kind == "fallback" and not url:
                # A link shared from outside Messenger: its url and title sit on the item itself,
                # with `payload: null`.
                url, title = _text(item, "url"), _text(item, "title")
            if url:
                # Short-lived CDN URLs: the worker or the vendor must fetch them soon (docs/channels/meta.md).
                attachments.append(Attachment(url=url, caption=title, kind=kind))
                types.append(kind)
            if kind == "story_mention":
                metadata["story_mention"] = True
            if sticker := _text(payload, "sticker_id"):
                metadata["sticker_id"] = sticker
        if types:
            metadata["attachment_types"] = types
        quick_reply = message.get("quick_reply")
        reply_id = _text(quick_reply, "payload") if isinstance(quick_reply, dict) else None
        if reply_id:
            content_type = ContentType.INTERACTIVE
            metadata.update(interactive_type="quick_reply", reply_id=reply_id)
        elif attachments:
            content_type = ContentType.MEDIA
        elif location is not None:
            content_type = ContentType.LOCATION
        elif text is not None:
            content_type = ContentType.TEXT
        else:
            # A share, a fallback without payload, `is_unsupported`, or a type added later.
            content_type = ContentType.UNSUPPORTED
        reply_to = message.get("reply_to")
        if isinstance(reply_to, dict):
            if reply_mid := _text(reply_to, "mid"):
                metadata["reply_to"] = reply_mid
            story = reply_to.get("story")
            if isinstance(story, dict):
                # An Instagram story reply: the story's CDN URL expires with the story (24 h).
                metadata["story_reply"] = {"id": _text(story, "id"), "url": _text(story, "url")}
        if isinstance(message.get("referral"), dict):
            metadata["referral"] = message["referral"]
        if message.get("is_unsupported") is True:
            metadata["unsupported"] = True
        return self._inbound(ctx, mid, content_type, text, attachments, location, metadata)

    def _postback(self, ctx: _Messaging, postback: Any) -> InboundMessage:
        if not isinstance(postback, dict):
            raise _Unreadable("postback is not an object")
        # `mid` since Graph v11; before it, sender and time are what a retry repeats.
        mid = _text(postback, "mid") or _synthetic("postback", ctx.sender, _text(ctx.event, "timestamp"))
        if not mid:
            raise _Unreadable("postback without mid or timestamp")
        metadata: dict[str, Any] = {
            "type": "postback",
            "interactive_type": "postback",
            "reply_id": _text(postback, "payload"),
        }
        if isinstance(postback.get("referral"), dict):
            metadata["referral"] = postback["referral"]
        title = _string(postback, "title")
        return self._inbound(ctx, mid, ContentType.INTERACTIVE, title, [], None, metadata)

    def _reaction(self, ctx: _Messaging, reaction: Any) -> InboundMessage:
        if not isinstance(reaction, dict):
            raise _Unreadable("reaction is not an object")
        reacted = _text(reaction, "mid")
        if not reacted:
            raise _Unreadable("reaction without the reacted message's mid")
        action = _text(reaction, "action") or "react"
        # A reaction has no id of its own: who reacted to what, how and when is what a retry repeats.
        mid = _synthetic("reaction", ctx.sender, reacted, action, _text(ctx.event, "timestamp"))
        emoji, name = _string(reaction, "emoji"), _text(reaction, "reaction")
        removed = action == "unreact"
        metadata = {
            "type": "reaction",
            "reacted_message_id": reacted,
            "emoji": emoji,
            "reaction": name,
            "action": action,
            "removed": removed,
        }
        text = None if removed else emoji or name
        return self._inbound(ctx, mid, ContentType.REACTION, text, [], None, metadata)

    def _receipts(self, ctx: _Messaging, name: str, status: str) -> list[StatusEvent]:
        """Messenger's `delivery.mids[]` (when sent) and Instagram's `read.mid` name the messages;
        otherwise the `watermark` (ms) covers every message we sent the customer up to then."""
        receipt = ctx.event[name]
        if not isinstance(receipt, dict):
            raise _Unreadable(f"{name} is not an object")
        mids = receipt.get("mids")
        ids = [m for m in mids if isinstance(m, str) and m] if isinstance(mids, list) else []
        if mid := _text(receipt, "mid"):
            ids.append(mid)
        if not ids:
            watermark = _text(receipt, "watermark")
            if not watermark:
                raise _Unreadable(f"{name} receipt without mids or watermark")
            ids = [f"watermark:{ctx.account}:{ctx.sender}:{watermark}"]
        occurred_at = _millis(ctx.event.get("timestamp"))
        return [
            StatusEvent(
                provider=self.key,
                channel=ctx.channel,
                provider_message_id=message_id,
                status=status,
                account=ctx.account,
                recipient=ctx.sender,
                occurred_at=occurred_at,
                received_at=ctx.request.received_at,
                raw={"entry_id": ctx.entry_id, "event": ctx.event},
            )
            for message_id in dict.fromkeys(ids)
        ]

    def _inbound(
        self,
        ctx: _Messaging,
        message_id: str,
        content_type: ContentType,
        text: str | None,
        attachments: list[Attachment],
        location: Location | None,
        metadata: dict[str, Any],
    ) -> InboundMessage:
        return InboundMessage(
            provider=self.key,
            channel=ctx.channel,
            provider_message_id=message_id,
            account=ctx.account,
            # Profile names need a Graph API call; the worker never sees one from here.
            sender=Sender(handles=[Handle(kind=ctx.kind.value, value=ctx.sender, scope=ctx.account)]),
            sent_at=_millis(ctx.event.get("timestamp")),
            received_at=ctx.request.received_at,
            content_type=content_type,
            text=text,
            attachments=attachments,
            location=location,
            metadata=metadata,
            conversation_key=f"meta:{ctx.account}:{ctx.sender}",
            raw={"entry_id": ctx.entry_id, "event": ctx.event},
        )


class _Skip(Exception):
    """One item is deliberately not an event (our own echo, an unsent message); its reason goes
    to `ParsedWebhook.ignored`."""


class _Unreadable(Exception):
    """One item is not one this adapter can read; it is kept raw (`ParsedWebhook.unhandled`)."""


class _Messaging:
    """One Messenger/Instagram event and who it is between."""

    def __init__(
        self,
        channel: Channel,
        kind: IdentifierKind,
        account: str,
        sender: str,
        event: dict,
        entry_id: str | None,
        request: WebhookRequest,
    ) -> None:
        self.channel, self.kind, self.account, self.sender = channel, kind, account, sender
        self.event, self.entry_id, self.request = event, entry_id, request


class _Context:
    def __init__(self, entry_id: str | None, metadata: Any, contacts: list[dict], request: WebhookRequest) -> None:
        self.entry_id = entry_id
        self.metadata = metadata if isinstance(metadata, dict) else {}
        self.contacts = contacts
        self.request = request

    def contact_for(self, phone: str | None, user: str | None) -> dict:
        for contact in self.contacts:
            if (phone and _text(contact, "wa_id") == phone) or (user and _text(contact, "user_id") == user):
                return _clean(contact)
        if len(self.contacts) == 1:
            only = self.contacts[0]
            wa_id, user_id = _text(only, "wa_id"), _text(only, "user_id")
            # A lone contact without matching ids is still the sender unless an id contradicts it.
            if not (phone and wa_id and wa_id != phone) and not (user and user_id and user_id != user):
                return _clean(only)
        return {}


class _Content:
    """What a message says, by type; unknown or unreadable content is kept as UNSUPPORTED."""

    def __init__(
        self,
        content_type: ContentType,
        text: str | None = None,
        attachments: list[Attachment] | None = None,
        location: Location | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.content_type = content_type
        self.text = text
        self.attachments = attachments or []
        self.location = location
        self.metadata = metadata or {}

    @classmethod
    def of(cls, kind: str, message: dict) -> _Content:
        body = message.get(kind)
        body = body if isinstance(body, dict) else {}
        if kind == "text" and _text(body, "body") is not None:
            return cls(ContentType.TEXT, text=_text(body, "body"))
        if kind in MEDIA_TYPES and (_text(body, "id") or _text(body, "url")):
            caption = _text(body, "caption")
            attachment = Attachment(
                kind=kind,
                provider_media_id=_text(body, "id"),
                content_type=_text(body, "mime_type"),
                url=_text(body, "url"),
                filename=_text(body, "filename"),
                caption=caption,
            )
            metadata = {"voice": True} if kind == "audio" and body.get("voice") is True else {}
            return cls(ContentType.MEDIA, text=caption, attachments=[attachment], metadata=metadata)
        if kind == "location":
            latitude, longitude = _coordinate(body.get("latitude"), 90), _coordinate(body.get("longitude"), 180)
            if latitude is not None and longitude is not None:
                location = Location(
                    latitude=latitude,
                    longitude=longitude,
                    name=_text(body, "name"),
                    address=_text(body, "address"),
                    url=_text(body, "url"),
                )
                return cls(ContentType.LOCATION, location=location)
        if kind == "interactive":
            reply_type = _text(body, "type")
            reply = body.get(reply_type) if reply_type in REPLY_TYPES else None
            if isinstance(reply, dict) and _text(reply, "id"):
                metadata = {"interactive_type": reply_type, "reply_id": _text(reply, "id")}
                if description := _text(reply, "description"):
                    metadata["reply_description"] = description
                return cls(ContentType.INTERACTIVE, text=_text(reply, "title"), metadata=metadata)
            if reply_type == "nfm_reply" and isinstance(body.get("nfm_reply"), dict):
                flow = body["nfm_reply"]
                metadata = {"interactive_type": "nfm_reply", "flow_response": _text(flow, "response_json")}
                return cls(ContentType.INTERACTIVE, text=_text(flow, "body"), metadata=metadata)
        if kind == "button" and (_text(body, "payload") or _text(body, "text")):
            # A template quick-reply button: the payload is what the business defined for it.
            metadata = {"interactive_type": "button", "reply_id": _text(body, "payload")}
            return cls(ContentType.INTERACTIVE, text=_text(body, "text"), metadata=metadata)
        if kind == "reaction" and _text(body, "message_id"):
            emoji = _text(body, "emoji")
            # No emoji means the customer removed their reaction.
            metadata = {"reacted_message_id": _text(body, "message_id"), "emoji": emoji, "removed": emoji is None}
            return cls(ContentType.REACTION, text=emoji, metadata=metadata)
        # contacts, order, system, unsupported, a type added after this code, or a known type
        # whose body we could not read: acknowledged and kept raw, never an error.
        known = kind in KNOWN_TYPES
        return cls(ContentType.UNSUPPORTED, metadata={"unreadable": True} if known else {})


def _clean(value: Any) -> Any:
    """`json_body.clean`, an item too deep to queue being one this adapter cannot read."""
    try:
        return clean(value)
    except TooDeepError as exc:
        raise _Unreadable(str(exc)) from None


def _text(obj: Any, key: str) -> str | None:
    """A string field, or an integer one as text (ids and codes come either way); else None."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(key)
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _string(obj: Any, key: str) -> str | None:
    """A text field (message text, a title, an emoji): only a non-empty string counts."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, str) and value else None


def _synthetic(kind: str, *parts: str | None) -> str | None:
    """A stable id for an event Meta gives none, from the fields a retry repeats; None if one is missing."""
    return f"{kind}:" + ":".join(parts) if all(parts) else None  # type: ignore[arg-type]


def _millis(value: Any) -> datetime | None:
    # Messenger times are integers of milliseconds; seconds (10 digits) are read as seconds.
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not _EPOCH.fullmatch(text):
        return None
    number = int(text)
    try:
        return datetime.fromtimestamp(number / 1000 if number >= 10**11 else number, tz=timezone.utc)
    except (OverflowError, ValueError, OSError):
        return None


def _timestamp(value: Any) -> datetime | None:
    # WhatsApp timestamps are strings of unix seconds.
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not _TIMESTAMP.fullmatch(text):
        return None
    return datetime.fromtimestamp(int(text), tz=timezone.utc)


def _coordinate(value: Any, limit: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and abs(number) <= limit else None
