"""Telegram Bot API sendMessage, sendPhoto and sendDocument (files by URL): https://core.telegram.org/bots/api#sendmessage"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

from chalicelib.adapters.channels.sending import (
    ChannelSender,
    CredentialRefusedError,
    Problem,
    first_accepted,
    is_http_url,
    json_object,
    resolved_secrets,
)
from chalicelib.adapters.channels.telegram.settings import TelegramSettings
from chalicelib.adapters.connectors.http import RETRYABLE_STATUSES, HttpResponse, retry_after_seconds
from chalicelib.domain.identifiers import Identifier, IdentifierKind
from chalicelib.domain.models import Channel, Contact, ReplyContext, ReplyTarget
from chalicelib.domain.outbound import OutboundAttachment, OutboundMessage, SendOutcome
from chalicelib.errors import PermanentDeliveryError, RecipientOptedOutError, RetryableDeliveryError

#: "1-4096 characters after entities parsing" (no parse_mode is sent, so the text is what counts).
#: Telegram does not say in which unit; its entity offsets are UTF-16 code units, the stricter
#: reading (an emoji counts twice), so nothing this check passes is too long for Telegram.
MAX_TEXT = 4096
#: sendPhoto / sendDocument: "Photo/document caption …, 0-1024 characters after entities parsing".
MAX_CAPTION = 1024
#: A chat id: an integer (negative for groups), or a public @username.
_CHAT_ID = re.compile(r"-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31}")
#: Bot token: `<bot id>:<secret>`.
_TOKEN = re.compile(r"([0-9]{1,20}):[A-Za-z0-9_-]+")
#: Sent with sendPhoto: what Telegram shows as a picture. Anything else goes as a document.
PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
#: "In sendDocument, sending by URL will currently only work for GIF, PDF and ZIP files."
#: https://core.telegram.org/bots/api#sending-files
URL_DOCUMENT_TYPES = frozenset({"image/gif", "application/pdf", "application/zip"})
_EXTENSIONS = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
               "gif": "image/gif", "pdf": "application/pdf", "zip": "application/zip"}  # fmt: skip
#: The 403 description when the user blocked the bot (or deleted the chat with it and stopped it).
BLOCKED = "bot was blocked by the user"


class TelegramSender(ChannelSender[TelegramSettings]):
    """Replies as the configured bot, to the chat the customer wrote in, quoting their message."""

    key: ClassVar[str] = "telegram"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.TELEGRAM})
    docs_url: ClassVar[str] = "https://core.telegram.org/bots/api#sendmessage"

    @classmethod
    def reply_target(cls, contact: Contact) -> ReplyTarget | None:
        """The chat (`chat_id`: the user's id in a private chat, negative for groups), the message
        answered (`message_id`; none for a button press) and, in a forum, its topic."""
        metadata = contact.metadata
        chat_id = _int(metadata.get("chat_id"))
        if chat_id is None:
            return None
        message_id, topic = _int(metadata.get("message_id")), _int(metadata.get("topic_id"))
        return ReplyTarget(
            contact_id=contact.id,
            case_id=contact.case_id,
            channel=Channel.TELEGRAM,
            provider=cls.key,
            account=contact.account,
            to=str(chat_id),
            reply=ReplyContext(
                provider_message_id=str(message_id) if message_id is not None else None,
                # A forum topic (`message_thread_id`): the reply stays in it.
                thread=str(topic) if topic is not None else None,
            ),
            at=contact.sent_at or contact.received_at,
        )

    def recipient_for(self, channel: Channel, identifiers: Sequence[Identifier]) -> str | None:
        """A Telegram user id is also the id of their private chat with any bot. The bot may only
        write first to users who started it; others answer 403 (a permanent failure)."""
        if channel is not Channel.TELEGRAM:
            return None
        return next((i.value for i in identifiers if i.kind is IdentifierKind.TELEGRAM), None)

    def default_account(self, channel: Channel) -> str | None:
        sendable = channel is Channel.TELEGRAM and self.settings.bot_tokens
        return str(self.settings.bot_id) if sendable else None

    def check(self, message: OutboundMessage) -> list[Problem]:
        problems: list[Problem] = []
        if not _CHAT_ID.fullmatch(message.to):
            problems.append(Problem("to", "must be a Telegram chat id (an integer) or a public @username"))
        if message.template is not None:
            problems.append(Problem("template", "Telegram has no message templates: send text"))
        if len(message.attachments) > 1:
            problems.append(Problem("attachments", "Telegram takes one attachment per message: send several messages"))
        for index, attachment in enumerate(message.attachments[:1]):
            if not is_http_url(attachment.url):
                problems.append(Problem(f"attachments[{index}].url", "must be an http(s) URL for Telegram to fetch"))
            elif (kind := media_type(attachment)) not in PHOTO_TYPES | URL_DOCUMENT_TYPES:
                problems.append(Problem(
                    f"attachments[{index}]",
                    f"Telegram fetches only JPEG, PNG and WebP photos and GIF, PDF and ZIP documents by URL, not {kind or 'an unknown type'}",
                ))  # fmt: skip
        limit = MAX_CAPTION if message.attachments else MAX_TEXT
        if not message.text and not message.attachments:
            problems.append(Problem("text", "is required (or an attachment) for Telegram"))
        elif _length(message.text) > limit:
            what = "a caption (the text sent with an attachment)" if message.attachments else "a message"
            problems.append(Problem("text", f"is {_length(message.text)} UTF-16 code units; Telegram takes at most {limit} in {what}"))
        return problems

    def send(self, message: OutboundMessage) -> SendOutcome:
        """One Bot API call (one more per rotated-out token Telegram refuses with 401, which sent nothing).

        Raises `RetryableDeliveryError` (429 with `parameters.retry_after`, 5xx, timeouts),
        `RecipientOptedOutError` (403 "bot was blocked by the user") or `PermanentDeliveryError`
        with Telegram's `error_code` as provider code.
        """
        method, body = request(message, link_previews=self.settings.link_previews)
        payload = json.dumps(body).encode("utf-8")

        def post(token: str) -> SendOutcome:
            # The token is in the path: this URL is never logged nor put in an error.
            return outcome(self.runtime.http.request(
                "POST", f"{self.settings.api_base_url}/bot{token}/{method}", body=payload,
                headers={"Content-Type": "application/json"},
            ), method)  # fmt: skip

        return first_accepted(self._tokens(), post, none_configured="no channels.telegram.bot_tokens configured")

    def _tokens(self) -> list[str]:
        """The configured tokens of *this* bot: another bot's token would answer from a stranger."""
        tokens = resolved_secrets(self.secrets, self.settings.bot_tokens, what="Telegram bot token")
        ours = [t for t in tokens if (m := _TOKEN.fullmatch(t.strip())) and int(m[1]) == self.settings.bot_id]
        if tokens and not ours:
            raise PermanentDeliveryError(
                f"no channels.telegram.bot_tokens entry is a token of bot_id {self.settings.bot_id}", provider_code="no_token"
            )
        return [t.strip() for t in ours]


def request(message: OutboundMessage, *, link_previews: bool = True) -> tuple[str, dict[str, Any]]:
    """The Bot API method and its JSON body: sendMessage, or sendPhoto/sendDocument with the text as caption."""
    chat_id = _int(message.to)
    body: dict[str, Any] = {"chat_id": message.to if chat_id is None else chat_id}
    topic = _int(message.reply.thread)
    if topic is not None:
        body["message_thread_id"] = topic
    if message.attachments:
        attachment = message.attachments[0]
        method, field = ("sendPhoto", "photo") if media_type(attachment) in PHOTO_TYPES else ("sendDocument", "document")
        body[field] = attachment.url
        if message.text:
            body["caption"] = message.text
    else:
        method = "sendMessage"
        body["text"] = message.text
        if not link_previews:
            body["link_preview_options"] = {"is_disabled": True}
    answered = _int(message.reply.provider_message_id)
    if answered is not None:
        # Sent even when the customer deleted their message meanwhile, as a plain message.
        body["reply_parameters"] = {"message_id": answered, "allow_sending_without_reply": True}
    return method, body


def media_type(attachment: OutboundAttachment) -> str | None:
    """The attachment's type as given, else as its file name or URL path ends."""
    if attachment.content_type:
        return attachment.content_type.split(";")[0].strip().lower()
    for name in (attachment.filename or "", urlsplit(attachment.url).path):
        extension = name.rpartition(".")[2].lower() if "." in name else ""
        if extension in _EXTENSIONS:
            return _EXTENSIONS[extension]
    return None


def outcome(response: HttpResponse, method: str = "sendMessage") -> SendOutcome:
    """The Bot API's answer as an outcome, or the error it means: `{"ok": false, "error_code",
    "description", "parameters"}` (https://core.telegram.org/bots/api#making-requests)."""
    body = json_object(response.body)
    result = body.get("result")
    if response.ok and body.get("ok") is True and isinstance(result, dict):
        chat = result.get("chat")
        chat_id = _int(chat.get("id")) if isinstance(chat, dict) else None
        message_id = _int(result.get("message_id"))
        if chat_id is None or message_id is None:
            raise PermanentDeliveryError(f"Telegram {method} accepted without chat.id and message_id", provider_code="no_id")
        # Telegram reports no delivery or read status: `sent` is the last status this message gets.
        return SendOutcome(provider_message_id=f"{chat_id}:{message_id}",
                           metadata={"chat_id": str(chat_id), "message_id": str(message_id)})  # fmt: skip
    code = _int(body.get("error_code")) or response.status
    description = body.get("description") if isinstance(body.get("description"), str) else ""
    reason = f"Telegram {method}: {code} {description[:200]}".strip()
    parameters = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    if code == 429 or response.status in RETRYABLE_STATUSES or response.status >= 500 or code >= 500:
        wait = _int(parameters.get("retry_after"))
        raise RetryableDeliveryError(reason, retry_after=float(wait) if wait is not None else retry_after_seconds(response.headers))
    if code == 403 and BLOCKED in description.lower():
        raise RecipientOptedOutError(reason, provider_code="403")
    if code == 401:
        raise CredentialRefusedError(reason, provider_code="401")
    # A group that became a supergroup has a new id: worth showing whoever fixes the case.
    detail = {"migrate_to_chat_id": parameters["migrate_to_chat_id"]} if "migrate_to_chat_id" in parameters else None
    raise PermanentDeliveryError(reason, provider_code=str(code), detail=detail)


def _length(text: str | None) -> int:
    return len(text.encode("utf-16-le")) // 2 if text else 0


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,20}", value):
        return int(value)
    return None
