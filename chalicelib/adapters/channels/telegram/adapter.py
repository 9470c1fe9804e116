"""Telegram Bot API webhooks (setWebhook with secret_token): https://core.telegram.org/bots/api#setwebhook"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from datetime import datetime, timezone
from typing import Any, ClassVar

from pydantic import BaseModel

from chalicelib.adapters.channels.telegram.settings import TelegramSettings
from chalicelib.adapters.channels.base import (
    ChannelAdapter,
    ParsedWebhook,
    SimulatedCustomer,
    SimulatedRequest,
    WebhookRequest,
    WebhookResponse,
)
from chalicelib.adapters.channels.json_body import string_of as _text, load_clean_object
from chalicelib.domain.models import Attachment, Channel, ContentType, Handle, InboundMessage, Location, Sender
from chalicelib.errors import MalformedPayloadError, SignatureError
from chalicelib.signing.compare import matches_any

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

#: Update fields this adapter deliberately does not turn into contacts, with why.
#: https://core.telegram.org/bots/api#update
IGNORED_UPDATES: dict[str, str] = {
    "channel_post": "a post in a channel the bot administers (our own broadcast, not a customer)",
    "edited_channel_post": "an edit of a channel post",
    "deleted_business_messages": "a deletion of Telegram Business messages",
    "message_reaction_count": "anonymous reaction counts",
    "inline_query": "an inline query (the bot does not run inline mode)",
    "chosen_inline_result": "an inline result (the bot does not run inline mode)",
    "shipping_query": "a payments query (not handled)",
    "pre_checkout_query": "a payments query (not handled)",
    "purchased_paid_media": "a paid media purchase (not handled)",
    "poll": "a poll state change",
    "poll_answer": "a poll answer",
    "my_chat_member": "the bot's own membership changed (blocked, unblocked, added to a group)",
    "chat_member": "a chat membership change",
    "chat_join_request": "a request to join a chat",
    "chat_boost": "a chat boost",
    "removed_chat_boost": "a removed chat boost",
}

#: Updates that carry what customers say but that this adapter does not read yet: kept raw
#: (`GET /v1/unhandled-events`), so nothing a customer wrote is dropped unseen.
UNREAD_UPDATES: dict[str, str] = {
    "business_connection": "Telegram Business connection changes are not handled yet",
    "business_message": "Telegram Business messages are not handled yet",
    "edited_business_message": "Telegram Business messages are not handled yet",
    "message_reaction": "a reaction to a message (not subscribed by default)",
}

#: Media fields in precedence order: an animation also carries `document`, so it comes first.
#: Each is one object, except `photo`: the same picture in several sizes.
MEDIA_FIELDS = ("photo", "animation", "video", "video_note", "voice", "audio", "document", "sticker")
#: Telegram does not give a MIME type for these; photos are always re-encoded to JPEG.
DEFAULT_MIME = {"photo": "image/jpeg", "video_note": "video/mp4"}
#: Messages Telegram generates about the chat itself: not something a customer wrote.
SERVICE_FIELDS = frozenset({
    "new_chat_members", "left_chat_member", "new_chat_title", "new_chat_photo", "delete_chat_photo",
    "group_chat_created", "supergroup_chat_created", "channel_chat_created", "message_auto_delete_timer_changed",
    "migrate_to_chat_id", "migrate_from_chat_id", "pinned_message", "forum_topic_created", "forum_topic_edited",
    "forum_topic_closed", "forum_topic_reopened", "general_forum_topic_hidden", "general_forum_topic_unhidden",
    "video_chat_scheduled", "video_chat_started", "video_chat_ended", "video_chat_participants_invited",
    "write_access_allowed", "proximity_alert_triggered", "boost_added", "chat_background_set",
})  # fmt: skip
#: Content a customer sent that this adapter does not read yet: a contact of type UNSUPPORTED.
OTHER_CONTENT = ("poll", "dice", "game", "story", "invoice", "giveaway", "giveaway_winners", "paid_media",
                 "checklist", "users_shared", "chat_shared", "web_app_data", "successful_payment")  # fmt: skip


class TelegramAdapter(ChannelAdapter[TelegramSettings]):
    """Messages and button presses sent to our bot, one update per request."""

    key: ClassVar[str] = "telegram"
    docs_url: ClassVar[str] = "https://core.telegram.org/bots/api#setwebhook"
    Settings: ClassVar[type[BaseModel]] = TelegramSettings
    media_sources = ("chalicelib.adapters.channels.telegram.media:TelegramMediaSource",)
    content_types: ClassVar[tuple[str, ...]] = ("application/json",)
    sender: ClassVar[str | None] = "chalicelib.adapters.channels.telegram.sender:TelegramSender"

    @property
    def _secret_tokens(self) -> list[str]:
        return self.secrets.get_all(self.settings.secret_tokens)

    @property
    def _account(self) -> str:
        return str(self.settings.bot_id)

    def verify(self, request: WebhookRequest) -> None:
        """The shared secret Telegram echoes in a header. Telegram signs nothing: the token
        proves the sender, it does not cover the body. Raises `SignatureError`."""
        given = request.header(SECRET_HEADER)
        if not given:
            raise SignatureError(f"missing {SECRET_HEADER} header (was setWebhook called with secret_token?)")
        # Exact and case-sensitive.
        if not matches_any(self._secret_tokens, given):
            raise SignatureError(f"{SECRET_HEADER} does not match any configured secret_tokens")

    def parse(self, request: WebhookRequest) -> ParsedWebhook:
        update = load_clean_object(request.body)
        update_id = _id(update.get("update_id"))
        if update_id is None:
            raise MalformedPayloadError('body has no integer "update_id"')
        kinds = [k for k in update if k != "update_id"]
        parsed = ParsedWebhook()
        try:
            if "message" in update:
                parsed.events.append(self._message(update["message"], update_id, request, edited=False))
            elif "edited_message" in update:
                parsed.events.append(self._message(update["edited_message"], update_id, request, edited=True))
            elif "callback_query" in update:
                parsed.events.append(self._callback(update["callback_query"], update_id, request))
            elif not kinds:
                raise _Unreadable("an update without content")
            elif kinds[0] in IGNORED_UPDATES:
                raise _Skip(f"{kinds[0]}: {IGNORED_UPDATES[kinds[0]]}")
            elif kinds[0] in UNREAD_UPDATES:
                raise _Unreadable(f"{kinds[0]}: {UNREAD_UPDATES[kinds[0]]}")
            else:
                raise _Unreadable(f"update type {kinds[0][:64]!r} is not known to this adapter")
        except _Unreadable as unreadable:
            parsed.unhandled.append(self.unhandled(f"update {update_id}: {unreadable}", update, request))
        except _Skip as skip:
            parsed.ignored.append(f"update {update_id}: {skip}")
        return parsed

    def ack(self, parsed: ParsedWebhook) -> WebhookResponse:
        for event in parsed.events:
            query_id = event.metadata.get("callback_query_id") if isinstance(event, InboundMessage) else None
            if query_id:
                # A button press spins in the customer's app until answered; the webhook response
                # may carry that one call, so it costs no request of our own.
                # https://core.telegram.org/bots/api#making-requests-when-getting-updates
                body = json.dumps({"method": "answerCallbackQuery", "callback_query_id": query_id})
                return WebhookResponse(status=200, body=body, content_type="application/json")
        return WebhookResponse(status=200, body="")

    def simulated_request(self, customer: SimulatedCustomer) -> SimulatedRequest | None:
        """A private-chat text message from a Telegram user derived from the customer's phone."""
        user_id = 1_000_000_000 + int(hashlib.sha256(customer.phone.encode()).hexdigest()[:12], 16) % 8_000_000_000
        first, _, last = customer.name.partition(" ")
        person = {"first_name": first, **({"last_name": last} if last else {})}
        now = int(time.time())
        # Random, as Telegram's are unique: two simulations in one second are two messages.
        update = {
            "update_id": secrets.randbelow(2**31),
            "message": {
                "message_id": secrets.randbelow(2**31),
                "from": {"id": user_id, "is_bot": False, **person, "language_code": "de"},
                "chat": {"id": user_id, **person, "type": "private"},
                "date": now,
                "text": customer.text,
            },
        }
        # Telegram escapes non-ASCII (`\u00e4`), as json.dumps does by default.
        body = json.dumps(update, separators=(",", ":")).encode("ascii")
        token = self.secrets.get(self.settings.secret_tokens[0])
        headers = {"Content-Type": "application/json", SECRET_HEADER: token}
        return SimulatedRequest(path=f"/webhooks/{self.key}", body=body, headers=headers)

    # --- parsing -------------------------------------------------------------------------------

    def _message(self, message: Any, update_id: int, request: WebhookRequest, *, edited: bool) -> InboundMessage:
        if not isinstance(message, dict):
            raise _Unreadable("message is not an object")
        if message.get("is_automatic_forward") is True or isinstance(message.get("sender_chat"), dict):
            # A linked channel's post re-posted into its discussion group, an anonymous admin,
            # or a user writing as a channel: `from` is then a stand-in (777000, the group's bot).
            # https://core.telegram.org/bots/api#message (sender_chat, is_automatic_forward)
            raise _Skip("sent on behalf of a chat (sender_chat / is_automatic_forward), not by a customer")
        user = self._customer(message.get("from"))
        chat = message.get("chat")
        chat_id = _id(chat.get("id")) if isinstance(chat, dict) else None
        message_id = _id(message.get("message_id"))
        if chat_id is None or message_id is None:
            raise _Unreadable("message without chat.id or message_id")
        content = _Content.of(message, user["id"])
        if content is None:
            service = sorted(SERVICE_FIELDS & message.keys())
            raise _Skip(f"a service message ({service[0]}), not written by the customer")
        if edited and content.location is not None:
            # A live location sends an edit every few seconds while it moves: not news for an agent.
            raise _Skip("a live location update (edited_message with location)")

        metadata: dict[str, Any] = {
            "update_id": update_id,
            "message_id": message_id,
            "chat_id": chat_id,
            "chat_type": _text(chat, "type"),
            **_person_metadata(user),
            **content.metadata,
        }
        if title := _text(chat, "title"):
            metadata["chat_title"] = title
        if group := _text(message, "media_group_id"):
            metadata["media_group_id"] = group
        thread_keys = [self._thread(chat_id, message_id)]
        reply_to = message.get("reply_to_message")
        reply_id = _id(reply_to.get("message_id")) if isinstance(reply_to, dict) else None
        if reply_id is not None:
            metadata["reply_to"] = reply_id
            thread_keys.append(self._thread(chat_id, reply_id))
        topic = _id(message.get("message_thread_id"))
        if topic is not None and message.get("is_topic_message") is True:
            metadata["topic_id"] = topic
            thread_keys.append(f"telegram:{self._account}:{chat_id}:topic:{topic}")
        sent_at = _date(message.get("date"))
        if edited:
            # A new contact, not a duplicate: a customer edits to correct or complete what the
            # agent should act on, and Telegram only sends edits that a person made.
            metadata["edited"] = True
            metadata["original_date"] = sent_at.isoformat() if sent_at else None
            sent_at = _date(message.get("edit_date")) or sent_at

        return InboundMessage(
            provider=self.key,
            channel=Channel.TELEGRAM,
            # update_id is what Telegram repeats on a retry; it is unique per bot only.
            provider_message_id=f"{self._account}:{update_id}",
            account=self._account,
            sender=Sender(handles=[_handle(user), *content.handles], display_name=_name(user)),
            sent_at=sent_at,
            received_at=request.received_at,
            content_type=content.content_type,
            text=content.text,
            attachments=content.attachments,
            location=content.location,
            metadata=metadata,
            conversation_key=f"telegram:{self._account}:{chat_id}",
            thread_keys=thread_keys,
            raw={"update_id": update_id, "edited_message" if edited else "message": message},
        )

    def _callback(self, query: Any, update_id: int, request: WebhookRequest) -> InboundMessage:
        """A press on an inline keyboard button: the customer's answer to our question."""
        if not isinstance(query, dict):
            raise _Unreadable("callback_query is not an object")
        user = self._customer(query.get("from"))
        query_id, data = _text(query, "id"), _text(query, "data")
        if not query_id:
            raise _Unreadable("callback_query without id")
        if data is None:
            # game_short_name: a game launch, answered with the game's URL by whoever runs it.
            raise _Skip("callback_query without data (a game button)")
        message = query.get("message")
        message = message if isinstance(message, dict) else {}
        chat = message.get("chat")
        # No message for a button under an inline-mode message; the private chat with the user
        # has the user's id.
        chat_id = (_id(chat.get("id")) if isinstance(chat, dict) else None) or user["id"]
        message_id = _id(message.get("message_id"))
        metadata: dict[str, Any] = {
            "update_id": update_id,
            "chat_id": chat_id,
            "interactive_type": "callback_query",
            "reply_id": data,
            "callback_query_id": query_id,
            **_person_metadata(user),
        }
        if message_id is not None:
            metadata["reply_to"] = message_id
        if inline := _text(query, "inline_message_id"):
            metadata["inline_message_id"] = inline
        return InboundMessage(
            provider=self.key,
            channel=Channel.TELEGRAM,
            provider_message_id=f"{self._account}:{update_id}",
            account=self._account,
            sender=Sender(handles=[_handle(user)], display_name=_name(user)),
            received_at=request.received_at,
            content_type=ContentType.INTERACTIVE,
            # Telegram sends the button's callback data, not its label.
            text=data,
            metadata=metadata,
            conversation_key=f"telegram:{self._account}:{chat_id}",
            # The message carrying the keyboard: the press joins the case that message belongs to.
            thread_keys=[self._thread(chat_id, message_id)] if message_id is not None else [],
            raw={"update_id": update_id, "callback_query": query},
        )

    def _customer(self, sender: Any) -> dict:
        if not isinstance(sender, dict):
            # Channel posts and anonymous group admins have no `from` user (or a stand-in bot).
            raise _Skip("no from user (sent on behalf of a chat)")
        user_id = _id(sender.get("id"))
        if user_id is None:
            raise _Unreadable("from.id is not a Telegram user id")
        username = (_text(sender, "username") or "").lower()
        own_name = self.settings.bot_username
        if user_id == self.settings.bot_id or (own_name and username == own_name):
            raise _Skip("our own bot's message")
        if sender.get("is_bot") is True:
            raise _Skip("a bot's message (from.is_bot)")
        return sender | {"id": user_id}

    def _thread(self, chat_id: int, message_id: int) -> str:
        return f"telegram:{self._account}:{chat_id}:{message_id}"


class _Skip(Exception):
    """The update is deliberately not a contact (a bot, a service message, a channel post); its
    reason goes to `ParsedWebhook.ignored`."""


class _Unreadable(Exception):
    """The update is not one this adapter can read; it is kept raw (`ParsedWebhook.unhandled`)."""


class _Content:
    """What a message says: text, media, a location, a shared contact, or something unread."""

    def __init__(
        self,
        content_type: ContentType,
        text: str | None = None,
        attachments: list[Attachment] | None = None,
        location: Location | None = None,
        handles: list[Handle] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.content_type = content_type
        self.text = text
        self.attachments = attachments or []
        self.location = location
        self.handles = handles or []
        self.metadata = metadata or {}

    @classmethod
    def of(cls, message: dict, sender_id: int) -> _Content | None:
        """None for a service message (a member joined, a title changed)."""
        caption = _text(message, "caption")
        for field in MEDIA_FIELDS:
            if field in message and (attachment := _media(field, message[field], caption)):
                return cls(ContentType.MEDIA, text=caption, attachments=[attachment], metadata={"type": field})
        if isinstance(message.get("venue"), dict) or isinstance(message.get("location"), dict):
            venue = message.get("venue") if isinstance(message.get("venue"), dict) else {}
            point = venue.get("location") if isinstance(venue.get("location"), dict) else message.get("location")
            location = _location(point, _text(venue, "title"), _text(venue, "address"))
            if location is not None:
                kind = "venue" if venue else "location"
                live = isinstance(point, dict) and point.get("live_period") is not None
                return cls(ContentType.LOCATION, location=location, metadata={"type": kind, "live": live})
        if isinstance(message.get("contact"), dict):
            return cls._contact(message["contact"], sender_id)
        if (text := _text(message, "text")) is not None:
            return cls(ContentType.TEXT, text=text)
        for field in OTHER_CONTENT:
            if field in message:
                return cls(ContentType.UNSUPPORTED, text=caption, metadata={"type": field})
        if SERVICE_FIELDS & message.keys():
            return None
        # Media we could not read, or a content type added after this code: acknowledged and
        # kept raw, never an error.
        media = next((f for f in MEDIA_FIELDS if f in message), None)
        metadata = {"type": media, "unreadable": True} if media else {"type": "unknown"}
        return cls(ContentType.UNSUPPORTED, text=caption, metadata=metadata)

    @classmethod
    def _contact(cls, contact: dict, sender_id: int) -> _Content:
        """A shared phone contact. Only the customer's own number becomes a handle, and it stays
        unverified: the Bot API does not document that `user_id` is set by Telegram rather than
        by the sending client, so it is stored but never used to link customers."""
        phone = _text(contact, "phone_number")
        own = _id(contact.get("user_id")) == sender_id
        shared = {
            "phone_number": phone,
            "first_name": _text(contact, "first_name"),
            "last_name": _text(contact, "last_name"),
            "user_id": _id(contact.get("user_id")),
        }
        handles = []
        if own and phone:
            # Telegram gives account numbers in international form, often without the "+".
            digits = phone.strip()
            value = digits if digits.startswith("+") else "+" + digits
            handles.append(Handle(kind="phone", value=value, verified=False))
        name = " ".join(p for p in (shared["first_name"], shared["last_name"]) if p)
        text = f"{name} {phone}".strip() if phone else name or None
        metadata = {
            "type": "contact",
            "shared_contact": {k: v for k, v in shared.items() if v is not None},
            "own_contact": own,
        }
        return cls(ContentType.TEXT, text=text, handles=handles, metadata=metadata)


def _media(field: str, value: Any, caption: str | None) -> Attachment | None:
    if field == "photo":
        sizes = [s for s in value if isinstance(s, dict) and _text(s, "file_id")] if isinstance(value, list) else []
        if not sizes:
            return None
        # The same picture in several sizes, largest last by convention; pick by area to be sure.
        value = max(sizes, key=_photo_area)
    if not isinstance(value, dict) or not _text(value, "file_id"):
        return None
    return Attachment(
        # A file_id is stable for this bot; getFile turns it into a download URL valid for an hour.
        provider_media_id=_text(value, "file_id"),
        content_type=_text(value, "mime_type") or DEFAULT_MIME.get(field),
        filename=_text(value, "file_name"),
        size=_int(value.get("file_size")),
        caption=caption,
    )


def _photo_area(size: dict) -> tuple[int, int]:
    return (_int(size.get("width")) or 0) * (_int(size.get("height")) or 0), _int(size.get("file_size")) or 0


def _location(point: Any, name: str | None, address: str | None) -> Location | None:
    if not isinstance(point, dict):
        return None
    latitude, longitude = _coordinate(point.get("latitude"), 90), _coordinate(point.get("longitude"), 180)
    if latitude is None or longitude is None:
        return None
    return Location(latitude=latitude, longitude=longitude, name=name, address=address)


def _handle(user: dict) -> Handle:
    # Telegram user ids are the same for every bot, so the handle is not scoped to ours
    # (identifiers.py: TELEGRAM is not a scoped kind).
    return Handle(kind="telegram", value=str(user["id"]))


def _name(user: dict) -> str | None:
    return " ".join(p for p in (_text(user, "first_name"), _text(user, "last_name")) if p) or None


def _person_metadata(user: dict) -> dict[str, Any]:
    return {k: v for k in ("username", "language_code") if (v := _text(user, k))}


def _id(value: Any) -> int | None:
    """A Telegram id: an integer (chat ids of groups are negative), at most 52 significant bits."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53:
        return value
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _date(value: Any) -> datetime | None:
    number = _int(value)
    if number is None or number == 0 or number >= 10**10:
        return None
    return datetime.fromtimestamp(number, tz=timezone.utc)


def _coordinate(value: Any, limit: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) and abs(number) <= limit else None
