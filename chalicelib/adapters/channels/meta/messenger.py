"""Messenger and Instagram messaging webhooks (`object: page` / `instagram`): `entry[].messaging[]`
messages, postbacks, reactions and receipts. https://developers.facebook.com/documentation/business-messaging/messenger-platform/webhooks"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.adapters.channels.base import ParsedWebhook, WebhookRequest
from chalicelib.adapters.channels.json_body import safe, string_of, text_of
from chalicelib.adapters.channels.meta.core import (
    UNKNOWN,
    KeepRaw,
    Skip,
    Unreadable,
    collect,
    coordinate,
    millis,
)
from chalicelib.domain.identifiers import IdentifierKind
from chalicelib.domain.models import Attachment, Channel, ContentType, Handle, InboundMessage, Location, Sender, StatusEvent

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


class MessengerPlatform:
    """Reads the `entry[]` of a Page's (Messenger) or an Instagram account's webhook."""

    def __init__(self, provider: str, keep_raw: KeepRaw) -> None:
        self._provider = provider
        self._keep_raw = keep_raw

    def entry(
        self,
        product: tuple[Channel, IdentifierKind],
        entry: Any,
        where: str,
        request: WebhookRequest,
        parsed: ParsedWebhook,
        clean: Callable[[Any], Any],
    ) -> None:
        """`clean` is `core.cleaner(request.body)`: what makes an item safe to queue."""
        if not isinstance(entry, dict):
            parsed.unhandled.append(self._keep_raw(f"{where}: not an object", entry, request))
            return
        entry_id = safe(text_of(entry, "id"))
        events = entry.get("messaging")
        if isinstance(events, list):
            for k, event in enumerate(events):
                collect(parsed, f"{where}.messaging[{k}]", event, request, self._keep_raw,
                        lambda event=event: self._messaging_event(product, clean(event), entry_id, request))
        elif events is not None:
            parsed.unhandled.append(self._keep_raw(f"{where}.messaging: not a list", events, request))
        standby = entry.get("standby")
        # Handover protocol: another app (a bot, an inbox) owns these conversations and answers
        # them. Customers' words all the same: each is kept raw, not dropped.
        for k, event in enumerate(standby if isinstance(standby, list) else [] if standby is None else [standby]):
            reason = f"{where}.standby[{k}]: an event of a conversation another app controls"
            parsed.unhandled.append(self._keep_raw(reason, event, request))
        changes = entry.get("changes")
        for j, change in enumerate(changes if isinstance(changes, list) else [] if changes is None else [changes]):
            field = change.get("field") if isinstance(change, dict) else None
            # feed, comments, mentions...: Page and Instagram fields that are not messaging.
            reason = f"{where}.changes[{j}]: field {safe(str(field)[:64])!r} is not handled"
            parsed.unhandled.append(self._keep_raw(reason, change, request))
        if events is None and standby is None and changes is None:
            parsed.unhandled.append(self._keep_raw(f"{where}: no messaging events", entry, request))

    def _messaging_event(
        self, product: tuple[Channel, IdentifierKind], event: Any, entry_id: str | None, request: WebhookRequest
    ) -> list[InboundMessage | StatusEvent]:
        if not isinstance(event, dict):
            raise Unreadable("not an object")
        sender = text_of(event.get("sender"), "id")
        # entry.id is our Page / Instagram account whichever way a message goes; recipient.id
        # is the same for a customer's message and the customer for our echoes.
        account = entry_id or text_of(event.get("recipient"), "id")
        message = event.get("message")
        if isinstance(message, dict) and message.get("is_echo") is True:
            raise Skip("echo of a message the business sent (is_echo), not a contact")
        if not account:
            raise Unreadable("no page or account id (entry.id, recipient.id)")
        if sender and sender == account:
            raise Skip("sent by the business account itself, not a contact")
        if not sender:
            if text_of(event.get("sender"), "user_ref"):
                raise Unreadable("sender known only by user_ref (a chat plugin guest), not handled")
            raise Unreadable("event without sender.id")
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
        raise Unreadable(f"{safe(str(kind)[:64])!r} events are not handled" if kind else "no event in the item")

    def _messenger_message(self, ctx: _Messaging, message: Any) -> InboundMessage:
        if not isinstance(message, dict):
            raise Unreadable("message is not an object")
        mid = text_of(message, "mid")
        if not mid:
            raise Unreadable("message without mid")
        if message.get("is_deleted") is True:
            # Instagram: the customer unsent an earlier message; the contact already made stays.
            raise Skip("the customer deleted an earlier message (is_deleted), not a contact")
        text = string_of(message, "text")
        attachments: list[Attachment] = []
        types: list[str] = []
        location = None
        metadata: dict[str, Any] = {"type": "message"}
        items = message.get("attachments")
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            kind = text_of(item, "type") or UNKNOWN
            payload = item.get("payload") if isinstance(item.get("payload"), dict) else {}
            coordinates = payload.get("coordinates")
            if kind == "location" and isinstance(coordinates, dict):
                latitude = coordinate(coordinates.get("lat"), 90)
                longitude = coordinate(coordinates.get("long"), 180)
                if latitude is not None and longitude is not None:
                    location = Location(latitude=latitude, longitude=longitude, name=text_of(payload, "title"))
                    continue
            url, title = text_of(payload, "url"), text_of(payload, "title")
            if kind == "fallback" and not url:
                # A link shared from outside Messenger: its url and title sit on the item itself,
                # with `payload: null`.
                url, title = text_of(item, "url"), text_of(item, "title")
            if url:
                # Short-lived CDN URLs: the worker or the vendor must fetch them soon (docs/channels/meta.md).
                attachments.append(Attachment(url=url, caption=title, kind=kind))
                types.append(kind)
            if kind == "story_mention":
                metadata["story_mention"] = True
            if sticker := text_of(payload, "sticker_id"):
                metadata["sticker_id"] = sticker
        if types:
            metadata["attachment_types"] = types
        quick_reply = message.get("quick_reply")
        reply_id = text_of(quick_reply, "payload") if isinstance(quick_reply, dict) else None
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
            if reply_mid := text_of(reply_to, "mid"):
                metadata["reply_to"] = reply_mid
            story = reply_to.get("story")
            if isinstance(story, dict):
                # An Instagram story reply: the story's CDN URL expires with the story (24 h).
                metadata["story_reply"] = {"id": text_of(story, "id"), "url": text_of(story, "url")}
        if isinstance(message.get("referral"), dict):
            metadata["referral"] = message["referral"]
        if message.get("is_unsupported") is True:
            metadata["unsupported"] = True
        return self._inbound(ctx, mid, content_type, text, attachments, location, metadata)

    def _postback(self, ctx: _Messaging, postback: Any) -> InboundMessage:
        if not isinstance(postback, dict):
            raise Unreadable("postback is not an object")
        # `mid` since Graph v11; before it, sender and time are what a retry repeats.
        mid = text_of(postback, "mid") or _synthetic("postback", ctx.sender, text_of(ctx.event, "timestamp"))
        if not mid:
            raise Unreadable("postback without mid or timestamp")
        metadata: dict[str, Any] = {
            "type": "postback",
            "interactive_type": "postback",
            "reply_id": text_of(postback, "payload"),
        }
        if isinstance(postback.get("referral"), dict):
            metadata["referral"] = postback["referral"]
        title = string_of(postback, "title")
        return self._inbound(ctx, mid, ContentType.INTERACTIVE, title, [], None, metadata)

    def _reaction(self, ctx: _Messaging, reaction: Any) -> InboundMessage:
        if not isinstance(reaction, dict):
            raise Unreadable("reaction is not an object")
        reacted = text_of(reaction, "mid")
        if not reacted:
            raise Unreadable("reaction without the reacted message's mid")
        action = text_of(reaction, "action") or "react"
        # A reaction has no id of its own: who reacted to what, how and when is what a retry repeats.
        mid = _synthetic("reaction", ctx.sender, reacted, action, text_of(ctx.event, "timestamp"))
        emoji, name = string_of(reaction, "emoji"), text_of(reaction, "reaction")
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
            raise Unreadable(f"{name} is not an object")
        mids = receipt.get("mids")
        ids = [m for m in mids if isinstance(m, str) and m] if isinstance(mids, list) else []
        if mid := text_of(receipt, "mid"):
            ids.append(mid)
        if not ids:
            watermark = text_of(receipt, "watermark")
            if not watermark:
                raise Unreadable(f"{name} receipt without mids or watermark")
            ids = [f"watermark:{ctx.account}:{ctx.sender}:{watermark}"]
        occurred_at = millis(ctx.event.get("timestamp"))
        return [
            StatusEvent(
                provider=self._provider,
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
            provider=self._provider,
            channel=ctx.channel,
            provider_message_id=message_id,
            account=ctx.account,
            # Profile names need a Graph API call; the worker never sees one from here.
            sender=Sender(handles=[Handle(kind=ctx.kind.value, value=ctx.sender, scope=ctx.account)]),
            sent_at=millis(ctx.event.get("timestamp")),
            received_at=ctx.request.received_at,
            content_type=content_type,
            text=text,
            attachments=attachments,
            location=location,
            metadata=metadata,
            conversation_key=f"meta:{ctx.account}:{ctx.sender}",
            raw={"entry_id": ctx.entry_id, "event": ctx.event},
        )


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


def _synthetic(kind: str, *parts: str | None) -> str | None:
    """A stable id for an event Meta gives none, from the fields a retry repeats; None if one is missing."""
    return f"{kind}:" + ":".join(parts) if all(parts) else None  # type: ignore[arg-type]
