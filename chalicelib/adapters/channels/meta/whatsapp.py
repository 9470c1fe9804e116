"""WhatsApp Cloud API webhooks (`object: whatsapp_business_account`): messages, statuses and
identity changes. https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from chalicelib.adapters.channels.base import ParsedWebhook, SimulatedCustomer, WebhookRequest
from chalicelib.adapters.channels.json_body import safe, text_of
from chalicelib.adapters.channels.meta.core import (
    UNKNOWN,
    KeepRaw,
    Unreadable,
    collect,
    coordinate,
    seconds,
)
from chalicelib.domain.models import (
    Attachment,
    Channel,
    ContentType,
    Handle,
    IdentityChange,
    InboundMessage,
    Location,
    StatusEvent,
)

OBJECT = "whatsapp_business_account"

#: WhatsApp `statuses[].status` → the hub's delivery vocabulary.
STATUSES: dict[str, str] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    # A voice note was played: at least read. `raw` keeps the original word.
    "played": "read",
    "failed": "failed",
}

#: Status error codes that mean the recipient unsubscribed, with what from: 131050, "This
#: recipient has chosen to stop receiving marketing messages on WhatsApp from your business"
#: (WhatsApp error codes page): marketing only.
OPTED_OUT_CODES = {"131050": ("marketing",)}

#: System messages that say a user's ids changed: the customer keeps one record (IdentityChange).
IDENTITY_CHANGES = frozenset({"user_changed_user_id", "user_changed_number"})
MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})
#: Interactive replies whose `{id, title}` we read the same way.
REPLY_TYPES = frozenset({"button_reply", "list_reply"})
#: Types this adapter reads; a known type with an unreadable body is flagged `unreadable`.
KNOWN_TYPES = MEDIA_TYPES | {"text", "location", "interactive", "button", "reaction"}
_DIGITS = re.compile(r"\+?[0-9]{4,20}")

#: What `simulated_request` pretends the business is (the ids of Meta's own reference payloads).
SIMULATED_WABA_ID = "102290129340398"
SIMULATED_PHONE_NUMBER_ID = "106540352242922"
SIMULATED_DISPLAY_NUMBER = "14155550100"


def simulated_payload(customer: SimulatedCustomer, message_id: str, sent_at: int) -> dict:
    """A WhatsApp text from `customer`'s number, as Meta posts it (`hubctl simulate`)."""
    wa_id = customer.phone.lstrip("+")
    message = {"from": wa_id, "id": message_id, "timestamp": str(sent_at), "type": "text",
               "text": {"body": customer.text}}
    business = {"display_phone_number": SIMULATED_DISPLAY_NUMBER, "phone_number_id": SIMULATED_PHONE_NUMBER_ID}
    value = {
        "messaging_product": "whatsapp",
        "metadata": business,
        "contacts": [{"profile": {"name": customer.name}, "wa_id": wa_id}],
        "messages": [message],
    }
    return {"object": OBJECT, "entry": [{"id": SIMULATED_WABA_ID, "changes": [{"field": "messages", "value": value}]}]}


class WhatsAppCloud:
    """Reads the `entry[].changes[]` of a WhatsApp Business Account's webhook."""

    def __init__(self, provider: str, keep_raw: KeepRaw) -> None:
        self._provider = provider
        self._keep_raw = keep_raw

    def entry(self, entry: Any, where: str, request: WebhookRequest, parsed: ParsedWebhook,
              clean: Callable[[Any], Any]) -> None:
        """`clean` is `core.cleaner(request.body)`: what makes an item safe to queue."""
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            parsed.unhandled.append(self._keep_raw(f"{where}: not an object with a changes list", entry, request))
            return
        for j, change in enumerate(entry["changes"]):
            at = f"{where}.changes[{j}]"
            if not isinstance(change, dict):
                parsed.unhandled.append(self._keep_raw(f"{at}: not an object", change, request))
                continue
            field = change.get("field")
            if field != "messages":
                # account_update, message_template_status_update, smb_message_echoes...: later issues.
                reason = f"{at}: field {safe(str(field)[:64])!r} is not handled"
                parsed.unhandled.append(self._keep_raw(reason, change, request))
                continue
            value = change.get("value")
            if not isinstance(value, dict):
                parsed.unhandled.append(self._keep_raw(f"{at}: value is not an object", change, request))
                continue
            # `clean` replaces lone surrogates in text as `safe` does, and only when the body can hold one.
            self._value(value, clean(text_of(entry, "id")), at, request, parsed, clean)

    def _value(
        self, value: dict, entry_id: str | None, where: str, request: WebhookRequest, parsed: ParsedWebhook,
        clean: Callable[[Any], Any],
    ) -> None:
        contacts = value.get("contacts")
        try:
            context = _Context(
                entry_id,
                clean(value.get("metadata")),
                [c for c in contacts if isinstance(c, dict)] if isinstance(contacts, list) else [],
                request,
                clean,
            )
        except Unreadable as unreadable:
            parsed.unhandled.append(self._keep_raw(f"{where}.value.metadata: {unreadable}", value, request))
            return
        for name, build in (("messages", self._message), ("statuses", self._status)):
            items = value.get(name)
            if items is None:
                continue
            if not isinstance(items, list):
                parsed.unhandled.append(self._keep_raw(f"{where}.value.{name}: not a list", value, request))
                continue
            for k, item in enumerate(items):
                collect(parsed, f"{where}.value.{name}[{k}]", item, request, self._keep_raw,
                        lambda item=item, build=build: build(clean(item), context))
        errors = value.get("errors")
        if isinstance(errors, list):
            for k, error in enumerate(errors):
                code = text_of(error, "code") if isinstance(error, dict) else None
                title = text_of(error, "title") if isinstance(error, dict) else None
                reason = f"{where}.value.errors[{k}]: WhatsApp reported error {safe(code)} ({safe(title)})"
                parsed.unhandled.append(self._keep_raw(reason, error, request))

    def _message(self, message: Any, ctx: _Context) -> InboundMessage | IdentityChange:
        if not isinstance(message, dict):
            raise Unreadable("not an object")
        message_id = text_of(message, "id")
        if not message_id:
            raise Unreadable("message without id")
        account = text_of(ctx.metadata, "phone_number_id")
        if not account:
            raise Unreadable("metadata.phone_number_id missing")
        kind = text_of(message, "type") or UNKNOWN
        if kind == "system":
            return self._identity_change(message, message_id, account, ctx)
        sender_phone = text_of(message, "from")
        sender_user = text_of(message, "from_user_id")
        contact = ctx.contact_for(sender_phone, sender_user)
        phone = sender_phone or text_of(contact, "wa_id")
        user = sender_user or text_of(contact, "user_id")
        is_number = phone is not None and _DIGITS.fullmatch(phone) is not None
        if phone and not is_number and not user:
            # Not a number: a business-scoped id in `from` is still a stable WhatsApp user id.
            phone, user = None, phone
        # As data, validated once with the message (a model per handle cost a validation each).
        handles: list[dict[str, str]] = []
        # The BSUID first: it is present for every user since 2026 while `wa_id` may vanish,
        # so the order key (first handle) stays stable for one customer.
        if user:
            handles.append({"kind": "whatsapp_user", "value": user})
        if is_number and phone:
            # Kind "whatsapp": a wa_id is international without its "+", whatever the default region.
            handles.append({"kind": "whatsapp", "value": phone})
        if not handles:
            raise Unreadable("message without sender (from / from_user_id)")

        profile = contact.get("profile")
        if not isinstance(profile, dict):
            profile = {}
        content = _Content.of(kind, message)
        metadata: dict[str, Any] = {"type": kind, **content.metadata}
        if username := text_of(profile, "username"):
            metadata["username"] = username
        parent = text_of(message, "from_parent_user_id") or text_of(contact, "parent_user_id")
        if parent:
            metadata["parent_user_id"] = parent
        context = message.get("context")
        if isinstance(context, dict):
            if reply_to := text_of(context, "id"):
                metadata["reply_to"] = reply_to
            for flag in ("forwarded", "frequently_forwarded"):
                if context.get(flag) is True:
                    metadata[flag] = True
        if isinstance(message.get("referral"), dict):
            metadata["referral"] = message["referral"]

        return InboundMessage(
            provider=self._provider,
            channel=Channel.WHATSAPP,
            provider_message_id=message_id,
            account=account,
            sender={"handles": handles, "display_name": text_of(profile, "name")},
            sent_at=seconds(message.get("timestamp")),
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
        change = text_of(system, "type")
        if change not in IDENTITY_CHANGES:
            raise Unreadable(f"system message {safe(str(change)[:64])!r} is not handled")
        old_user = text_of(system, "previous_user_id") or text_of(message, "from_user_id")
        old_phone, new_phone = text_of(message, "from"), text_of(system, "wa_id")
        previous = [Handle(kind="whatsapp_user", value=v) for v in [old_user] if v]
        previous += [Handle(kind="whatsapp", value=v) for v in [old_phone] if v and _DIGITS.fullmatch(v)]
        current = [Handle(kind="whatsapp_user", value=v) for v in [text_of(system, "user_id")] if v and v != old_user]
        current += [Handle(kind="whatsapp", value=v) for v in [new_phone] if v and _DIGITS.fullmatch(v) and v != old_phone]
        if not previous or not current:
            raise Unreadable(f"{change} without both the previous and the new id")
        return IdentityChange(
            provider=self._provider,
            channel=Channel.WHATSAPP,
            provider_message_id=message_id,
            account=account,
            previous=previous,
            current=current,
            change=change,
            occurred_at=seconds(message.get("timestamp")),
            received_at=ctx.request.received_at,
            raw={"entry_id": ctx.entry_id, "metadata": ctx.metadata, "message": message},
        )

    def _status(self, status: Any, ctx: _Context) -> StatusEvent:
        if not isinstance(status, dict):
            raise Unreadable("not an object")
        message_id, provider_status = text_of(status, "id"), text_of(status, "status")
        if not message_id or not provider_status:
            raise Unreadable("status without id or status")
        errors = status.get("errors")
        error = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
        phone, user = text_of(status, "recipient_id"), text_of(status, "recipient_user_id")
        # Since 2026 the recipient's phone may be missing (a username user we wrote to by BSUID),
        # and `failed` statuses carry no contacts; the BSUID then names the recipient.
        contact = ctx.contact_for(phone, user) if ctx.contacts else {}
        raw = {"entry_id": ctx.entry_id, "metadata": ctx.metadata, "status": status}
        if contact:
            raw["contact"] = contact
        return StatusEvent(
            provider=self._provider,
            channel=Channel.WHATSAPP,
            provider_message_id=message_id,
            status=STATUSES.get(provider_status.lower(), UNKNOWN),
            account=text_of(ctx.metadata, "phone_number_id"),
            recipient=phone or user or text_of(contact, "wa_id") or text_of(contact, "user_id"),
            occurred_at=seconds(status.get("timestamp")),
            received_at=ctx.request.received_at,
            error_code=text_of(error, "code"),
            error_message=text_of(error, "title") or text_of(error, "message"),
            opted_out=text_of(error, "code") in OPTED_OUT_CODES,
            opt_out_purposes=OPTED_OUT_CODES.get(text_of(error, "code") or "", ("service", "marketing")),
            raw=raw,
        )


class _Context:
    def __init__(self, entry_id: str | None, metadata: Any, contacts: list[dict], request: WebhookRequest,
                 clean: Callable[[Any], Any]) -> None:
        self.entry_id = entry_id
        self.metadata = metadata if isinstance(metadata, dict) else {}
        self.contacts = contacts
        self.request = request
        self.clean = clean

    def contact_for(self, phone: str | None, user: str | None) -> dict:
        for contact in self.contacts:
            if (phone and text_of(contact, "wa_id") == phone) or (user and text_of(contact, "user_id") == user):
                return self.clean(contact)
        if len(self.contacts) == 1:
            only = self.contacts[0]
            wa_id, user_id = text_of(only, "wa_id"), text_of(only, "user_id")
            # A lone contact without matching ids is still the sender unless an id contradicts it.
            if not (phone and wa_id and wa_id != phone) and not (user and user_id and user_id != user):
                return self.clean(only)
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
        if kind == "text" and text_of(body, "body") is not None:
            return cls(ContentType.TEXT, text=text_of(body, "body"))
        if kind in MEDIA_TYPES and (text_of(body, "id") or text_of(body, "url")):
            caption = text_of(body, "caption")
            attachment = Attachment(
                kind=kind,
                provider_media_id=text_of(body, "id"),
                content_type=text_of(body, "mime_type"),
                url=text_of(body, "url"),
                filename=text_of(body, "filename"),
                caption=caption,
            )
            metadata = {"voice": True} if kind == "audio" and body.get("voice") is True else {}
            return cls(ContentType.MEDIA, text=caption, attachments=[attachment], metadata=metadata)
        if kind == "location":
            latitude, longitude = coordinate(body.get("latitude"), 90), coordinate(body.get("longitude"), 180)
            if latitude is not None and longitude is not None:
                location = Location(
                    latitude=latitude,
                    longitude=longitude,
                    name=text_of(body, "name"),
                    address=text_of(body, "address"),
                    url=text_of(body, "url"),
                )
                return cls(ContentType.LOCATION, location=location)
        if kind == "interactive":
            reply_type = text_of(body, "type")
            reply = body.get(reply_type) if reply_type in REPLY_TYPES else None
            if isinstance(reply, dict) and text_of(reply, "id"):
                metadata = {"interactive_type": reply_type, "reply_id": text_of(reply, "id")}
                if description := text_of(reply, "description"):
                    metadata["reply_description"] = description
                return cls(ContentType.INTERACTIVE, text=text_of(reply, "title"), metadata=metadata)
            if reply_type == "nfm_reply" and isinstance(body.get("nfm_reply"), dict):
                flow = body["nfm_reply"]
                metadata = {"interactive_type": "nfm_reply", "flow_response": text_of(flow, "response_json")}
                return cls(ContentType.INTERACTIVE, text=text_of(flow, "body"), metadata=metadata)
        if kind == "button" and (text_of(body, "payload") or text_of(body, "text")):
            # A template quick-reply button: the payload is what the business defined for it.
            metadata = {"interactive_type": "button", "reply_id": text_of(body, "payload")}
            return cls(ContentType.INTERACTIVE, text=text_of(body, "text"), metadata=metadata)
        if kind == "reaction" and text_of(body, "message_id"):
            emoji = text_of(body, "emoji")
            # No emoji means the customer removed their reaction.
            metadata = {"reacted_message_id": text_of(body, "message_id"), "emoji": emoji, "removed": emoji is None}
            return cls(ContentType.REACTION, text=emoji, metadata=metadata)
        # contacts, order, system, unsupported, a type added after this code, or a known type
        # whose body we could not read: acknowledged and kept raw, never an error.
        known = kind in KNOWN_TYPES
        return cls(ContentType.UNSUPPORTED, metadata={"unreadable": True} if known else {})
