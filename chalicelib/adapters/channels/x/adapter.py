"""X (Twitter) Account Activity API webhooks, Direct Messages: https://docs.x.com/x-api/account-activity/introduction"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from chalicelib.adapters.channels.x.settings import NUMERIC_ID, XSettings
from chalicelib.adapters.channels.base import (
    ChannelAdapter,
    ParsedWebhook,
    SimulatedCustomer,
    SimulatedRequest,
    WebhookRequest,
    WebhookResponse,
)
from chalicelib.adapters.channels.json_body import text_of as _text, TooDeepError, clean, load_object, safe
from chalicelib.domain.models import (
    Attachment,
    Channel,
    ContentType,
    Handle,
    InboundMessage,
    Sender,
    StatusEvent,
)
from chalicelib.errors import MalformedPayloadError, SignatureError
from chalicelib.signing.compare import signed_by_any

SIGNATURE_HEADER = "x-twitter-webhooks-signature"
#: Signed with the app's OAuth 2.0 client secret instead; X sends it (alone, or beside the legacy
#: header while an app migrates) when the app has one: https://docs.x.com/x-api/webhooks/introduction
OAUTH2_SIGNATURE_HEADER = "x-twitter-webhooks-signature-oauth2"
#: Base64 (not hex, unlike Meta) of a 32-byte HMAC-SHA256: 43 characters and one `=`.
_SIGNATURE = re.compile(r"(?i:sha256)=([A-Za-z0-9+/]{43}=)")
#: X's CRC tokens are opaque base64/base64url/UUID-like strings. Anything else is refused, because
#: the CRC answer is HMAC(secret, token): the very signature a POST of those bytes would carry.
#: Every event body is a JSON object, so it contains `{`, which these characters exclude.
_CRC_TOKEN = re.compile(r"[A-Za-z0-9+/=_.~:-]{1,256}")

#: `created_timestamp`: milliseconds since the epoch, as a string; 13 digits reach the year 2286.
_MILLIS = re.compile(r"[0-9]{1,13}")

MESSAGE_CREATE = "message_create"
DIRECT_MESSAGES = "direct_message_events"
READ_RECEIPTS = "direct_message_mark_read_events"
#: Keys of the Account Activity envelope that describe events rather than being events.
ENVELOPE_KEYS = frozenset({"for_user_id", "users", "apps", "user_has_blocked", "is_blocked_by", "source", "target"})
#: Activities acknowledged but not turned into contacts, and why (each item is counted as ignored).
NOT_HANDLED: dict[str, str] = {
    # Typing indicators last ~3 s and carry no content or message id: nothing worth a queue entry.
    "direct_message_indicate_typing_events": "a typing indicator, not a message",
    "tweet_create_events": "a post, reply, repost or @mention, not a direct message",
    "tweet_delete_events": "a post deletion notice",
    "favorite_events": "a like",
    "follow_events": "a follow or unfollow",
    "block_events": "a block or unblock",
    "mute_events": "a mute or unmute",
    "user_event": "a user revoked the app's access (X deleted that account's subscription)",
    "replay_job_status": "the status report of a replay job",
}

#: Photo file extensions in `media_url_https`, as MIME types (no `mimetypes`: it reads system
#: files on first use, a cold-start cost for a handful of entries).
_PHOTO_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp"}


def compute_signature(secret: str | bytes, body: bytes) -> str:
    """The signature header value X sends: base64 HMAC-SHA256 of the exact bytes, `sha256=` first.
    Keyed with the consumer secret (`x-twitter-webhooks-signature`) or the OAuth 2.0 client secret
    (`x-twitter-webhooks-signature-oauth2`)."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "sha256=" + base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode("ascii")


def crc_response(secret: str | bytes, crc_token: str) -> dict[str, str]:
    """The JSON X expects back from `GET ?crc_token=…`: the same construction over the token."""
    return {"response_token": compute_signature(secret, crc_token.encode("utf-8"))}


class XAdapter(ChannelAdapter[XSettings]):
    """Direct Messages and read receipts of the accounts subscribed to one X app's webhook."""

    key: ClassVar[str] = "x"
    docs_url: ClassVar[str] = "https://docs.x.com/x-api/account-activity/introduction"
    Settings: ClassVar[type[BaseModel]] = XSettings
    content_types: ClassVar[tuple[str, ...]] = ("application/json",)
    sender: ClassVar[str | None] = "chalicelib.adapters.channels.x.sender:XSender"

    def handshake(self, request: WebhookRequest) -> WebhookResponse:
        """X's Challenge-Response Check: `{"response_token": "sha256=<base64 HMAC(secret, token)>"}`.

        Answered with the *first* secret only: the GET names no key, and X holds exactly one
        secret per app, the current one, which the configuration lists first (older ones stay only
        to verify POSTs signed before a rotation). The OAuth 2.0 client secret, when configured,
        wins over the consumer secret (X's webhook docs). Raises `MalformedPayloadError` (400) for
        a missing or unexpected `crc_token`.
        """
        token = request.query.get("crc_token")
        if not token:
            raise MalformedPayloadError("missing crc_token query parameter")
        if not _CRC_TOKEN.fullmatch(token):
            raise MalformedPayloadError("crc_token must be 1-256 characters of base64, base64url or a UUID")
        secret = self.secrets.get(self.settings.crc_signing_secrets[0])
        body = json.dumps(crc_response(secret, token))
        return WebhookResponse(status=200, body=body, content_type="application/json")

    def verify(self, request: WebhookRequest) -> None:
        """Either signature header verifies the request, each with its own secrets."""
        checks = [
            (name, header, secrets)
            for name, secrets in ((OAUTH2_SIGNATURE_HEADER, self.settings.client_secrets),
                                  (SIGNATURE_HEADER, self.settings.consumer_secrets))
            if (header := (request.header(name) or "").strip())
        ]  # fmt: skip
        if not checks:
            raise SignatureError(f"missing {SIGNATURE_HEADER} header")
        usable = [(name, header, secrets) for name, header, secrets in checks if secrets]
        if not usable:
            configure = "client_secrets" if checks[0][0] == OAUTH2_SIGNATURE_HEADER else "consumer_secrets"
            raise SignatureError(f"{checks[0][0]} sent, but no {configure} are configured to verify it")
        malformed = []
        for name, header, secrets in usable:
            match = _SIGNATURE.fullmatch(header)
            if match is None:
                malformed.append(name)
                continue
            # Over the raw bytes.
            if signed_by_any(lambda secret: compute_signature(secret, request.body), self.secrets.get_all(secrets),
                             "sha256=" + match[1]):
                return
        if malformed and len(malformed) == len(usable):
            raise SignatureError(f"{malformed[0]} must be 'sha256=' followed by a base64 HMAC-SHA256")
        raise SignatureError(
            "x-twitter-webhooks-signature does not match the body for any configured consumer_secrets/client_secrets"
        )

    def parse(self, request: WebhookRequest) -> ParsedWebhook:
        data = load_object(request.body, finite_floats=True)
        parsed = ParsedWebhook()
        envelope = data.get("data")
        if isinstance(envelope, dict) and isinstance(envelope.get("event_type"), str):
            self._activity_envelope(envelope, request, parsed)
        else:
            self._account_activity(data, _id(data.get("for_user_id")), "", request, parsed)
        return parsed

    def simulated_request(self, customer: SimulatedCustomer) -> SimulatedRequest:
        # X DMs carry no phone or email: the simulated customer is an X user whose id is derived
        # from the phone, so repeated simulations are the same X account.
        sender = str(int.from_bytes(hashlib.sha256(customer.phone.encode()).digest()[:7], "big"))
        account = self.settings.user_ids[0]
        now_ms = int(time.time() * 1000)
        payload = {
            "for_user_id": account,
            "direct_message_events": [{
                "type": MESSAGE_CREATE,
                "id": str(uuid.uuid4().int % 10**19),
                "created_timestamp": str(now_ms),
                "message_create": {
                    "target": {"recipient_id": account},
                    "sender_id": sender,
                    "message_data": {"text": customer.text, "entities": {"hashtags": [], "symbols": [],
                                                                           "user_mentions": [], "urls": []}},
                },
            }],
            "users": {
                sender: {"id": sender, "name": customer.name, "screen_name": "sim" + sender[-8:],
                         "protected": False, "verified": False},
            },
        }  # fmt: skip
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        # Both headers when both secrets are configured, as X does while an app migrates.
        for name, secrets in ((SIGNATURE_HEADER, self.settings.consumer_secrets),
                              (OAUTH2_SIGNATURE_HEADER, self.settings.client_secrets)):  # fmt: skip
            if secrets:
                headers[name] = compute_signature(self.secrets.get(secrets[0]), body)
        return SimulatedRequest(path="/webhooks/x", body=body, headers=headers)

    # --- parsing: every item on its own, so one bad item never drops the others ----------------

    def _activity_envelope(self, envelope: dict, request: WebhookRequest, parsed: ParsedWebhook) -> None:
        """The X Activity API wraps the same DM payload as `data.payload` of a `dm.*` event (3P:
        captured live traffic, vercel/chat adapter-x sample-messages.md); other events are not handled."""
        event_type = _clean_reason(envelope["event_type"])
        payload = envelope.get("payload")
        if not isinstance(payload, dict) or DIRECT_MESSAGES not in payload:
            parsed.unhandled.append(self.unhandled(f"X Activity API event {event_type!r} is not handled", envelope, request))
            return
        account = _id(envelope["filter"].get("user_id")) if isinstance(envelope.get("filter"), dict) else None
        self._account_activity(payload, account, "data.payload.", request, parsed)

    def _account_activity(
        self, data: dict, for_user_id: str | None, where: str, request: WebhookRequest, parsed: ParsedWebhook
    ) -> None:
        users = data.get("users") if isinstance(data.get("users"), dict) else {}
        context = _Context(for_user_id, users, self._own_ids(for_user_id), request, self.settings.max_skew_seconds)
        handlers = {DIRECT_MESSAGES: self._message, READ_RECEIPTS: self._read_receipt}
        found = False
        for key, value in data.items():
            if key in ENVELOPE_KEYS:
                continue
            found = True
            name = _clean_reason(key)
            build = handlers.get(key)
            if key in NOT_HANDLED:
                why = NOT_HANDLED[key]
                if isinstance(value, list) and value:
                    parsed.ignored.extend(f"{where}{name}[{i}]: {why}" for i in range(len(value)))
                else:
                    parsed.ignored.append(f"{where}{name}: {why}")
                continue
            if build is None:
                parsed.unhandled.append(
                    self.unhandled(f"{where}{name}: not an Account Activity event this adapter knows", {key: value}, request)
                )
                continue
            if not isinstance(value, list):
                parsed.unhandled.append(self.unhandled(f"{where}{name}: not a list", {key: value}, request))
                continue
            for i, item in enumerate(value):
                try:
                    parsed.events.append(build(_clean(item), context))
                except _Unreadable as unreadable:
                    parsed.unhandled.append(self.unhandled(f"{where}{name}[{i}]: {unreadable}", item, request))
                except _Skip as skip:
                    parsed.ignored.append(f"{where}{name}[{i}]: {skip}")
                except ValidationError as exc:
                    fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors(include_input=False))
                    parsed.unhandled.append(self.unhandled(f"{where}{name}[{i}]: invalid {fields}", item, request))
        if not found:
            parsed.unhandled.append(self.unhandled(f"{where or 'body'}: no Account Activity events", data, request))

    def _own_ids(self, for_user_id: str | None) -> frozenset[str]:
        return frozenset(self.settings.user_ids) | ({for_user_id} if for_user_id else set())

    def _message(self, event: Any, ctx: _Context) -> InboundMessage:
        if not isinstance(event, dict):
            raise _Unreadable("not an object")
        kind = event.get("type")
        if kind != MESSAGE_CREATE:
            raise _Unreadable(f"type {_clean_reason(kind)!r} is not a message")
        message_id = _id(event.get("id"))
        if message_id is None:
            raise _Unreadable("message without a numeric id")
        create = event.get(MESSAGE_CREATE)
        if not isinstance(create, dict):
            raise _Unreadable("message_create is not an object")
        sender = _id(create.get("sender_id"))
        if sender is None:
            raise _Unreadable("message_create.sender_id is not a numeric X user id")
        if sender in ctx.own_ids:
            raise _Skip(f"sent by our own account {sender}: an echo of our send, not a customer message")
        target = create.get("target")
        account = (_id(target.get("recipient_id")) if isinstance(target, dict) else None) or ctx.for_user_id
        if account is None:
            raise _Unreadable("no recipient (message_create.target.recipient_id or for_user_id)")
        sent_at = ctx.check_window(event.get("created_timestamp"))

        data = create.get("message_data")
        data = data if isinstance(data, dict) else {}
        content = _Content.of(data)
        user = ctx.user(sender)
        metadata: dict[str, Any] = dict(content.metadata)
        if screen_name := _text(user, "screen_name") or _text(user, "username"):
            metadata["screen_name"] = screen_name
        if ctx.for_user_id:
            metadata["for_user_id"] = ctx.for_user_id
        if isinstance(event.get("initiated_via"), dict):
            metadata["initiated_via"] = event["initiated_via"]
        return InboundMessage(
            provider=self.key,
            channel=Channel.X,
            provider_message_id=message_id,
            account=account,
            sender=Sender(handles=[Handle(kind="x", value=sender)], display_name=_text(user, "name")),
            sent_at=sent_at,
            received_at=ctx.request.received_at,
            content_type=content.content_type,
            text=content.text,
            attachments=content.attachments,
            metadata=metadata,
            # A one-to-one DM conversation is the pair of our account and the customer; the
            # sender reads the participant to answer from it (`XSender.reply_target`).
            conversation_key=f"x:{account}:{sender}",
            raw={"for_user_id": ctx.for_user_id, "event": event, "user": user or None},
        )

    def _read_receipt(self, event: Any, ctx: _Context) -> StatusEvent:
        if not isinstance(event, dict):
            raise _Unreadable("not an object")
        reader = _id(event.get("sender_id"))
        last_read = _id(event.get("last_read_event_id"))
        if reader is None or last_read is None:
            raise _Unreadable("read receipt without a numeric sender_id or last_read_event_id")
        if reader in ctx.own_ids:
            raise _Skip(f"our own account {reader} read the conversation: not a receipt for a message we sent")
        target = event.get("target")
        account = (_id(target.get("recipient_id")) if isinstance(target, dict) else None) or ctx.for_user_id
        return StatusEvent(
            provider=self.key,
            channel=Channel.X,
            # Everything up to and including this event was read (X marks all earlier ones read too).
            provider_message_id=last_read,
            status="read",
            account=account,
            recipient=reader,
            occurred_at=ctx.check_window(event.get("created_timestamp")),
            received_at=ctx.request.received_at,
            raw={"for_user_id": ctx.for_user_id, "event": event},
        )


class _Skip(Exception):
    """One item is deliberately not an event (our own send, a replay); its reason goes to
    `ParsedWebhook.ignored`."""


class _Unreadable(Exception):
    """One item is not one this adapter can read; it is kept raw (`ParsedWebhook.unhandled`)."""


class _Context:
    def __init__(
        self,
        for_user_id: str | None,
        users: dict,
        own_ids: frozenset[str],
        request: WebhookRequest,
        max_skew_seconds: int | None,
    ) -> None:
        self.for_user_id = for_user_id
        self.users = users
        self.own_ids = own_ids
        self.request = request
        self.max_skew = timedelta(seconds=max_skew_seconds) if max_skew_seconds else None

    def user(self, user_id: str) -> dict:
        user = self.users.get(user_id)
        if not isinstance(user, dict):
            return {}
        # The X Activity API nests the hydrated user one level deeper, under `data`.
        nested = user.get("data")
        return _clean(nested) if isinstance(nested, dict) and "name" not in user else _clean(user)

    def check_window(self, value: Any) -> datetime | None:
        """The event time; raises `_Skip` outside the replay window when one is configured."""
        at = _millis(value)
        if self.max_skew is not None:
            if at is None:
                raise _Skip("no created_timestamp to check against max_skew_seconds")
            if abs(self.request.received_at - at) > self.max_skew:
                raise _Skip("created_timestamp outside the max_skew_seconds replay window")
        return at


class _Content:
    """What a DM says: text with t.co links expanded, its media, a quick-reply choice."""

    def __init__(
        self,
        content_type: ContentType,
        text: str | None,
        attachments: list[Attachment],
        metadata: dict[str, Any],
    ) -> None:
        self.content_type = content_type
        self.text = text
        self.attachments = attachments
        self.metadata = metadata

    @classmethod
    def of(cls, data: dict) -> _Content:
        text = data.get("text") if isinstance(data.get("text"), str) else None
        metadata: dict[str, Any] = {}
        attachments: list[Attachment] = []
        attachment = data.get("attachment")
        if isinstance(attachment, dict) and isinstance(attachment.get("media"), dict):
            media = attachment["media"]
            if (found := _media(media)) is not None:
                attachments.append(found)
                metadata["media_type"] = _text(media, "type")
            else:
                metadata["unreadable_attachment"] = True
            # X appends the media's t.co link to the text; the attachment stands for it.
            if text and (link := _text(media, "url")):
                text = text.replace(link, "")
        elif attachment is not None:
            metadata["unreadable_attachment"] = True
        entities = data.get("entities")
        if text and isinstance(entities, dict) and isinstance(entities.get("urls"), list):
            text = _expand_urls(text, entities["urls"])
        text = text.strip() if text else None
        quick_reply = data.get("quick_reply_response")
        if attachments:
            content_type = ContentType.MEDIA
        elif isinstance(quick_reply, dict) and _text(quick_reply, "metadata"):
            content_type = ContentType.INTERACTIVE
            metadata.update(interactive_type="quick_reply", reply_id=_text(quick_reply, "metadata"))
        elif text:
            content_type = ContentType.TEXT
        else:
            content_type = ContentType.UNSUPPORTED
        return cls(content_type, text or None, attachments, metadata)


def _media(media: dict) -> Attachment | None:
    kind = _text(media, "type")
    url = _text(media, "media_url_https") or _text(media, "media_url")
    content_type = None
    if kind in ("video", "animated_gif"):
        info = media.get("video_info")
        variants = info.get("variants") if isinstance(info, dict) else None
        variants = variants if isinstance(variants, list) else []
        playable = [v for v in variants if isinstance(v, dict) and _text(v, "url")]
        if playable:
            # The best-quality rendition: MP4s carry a bitrate, the HLS playlist does not.
            best = max(playable, key=lambda v: v["bitrate"] if isinstance(v.get("bitrate"), int) else -1)
            url, content_type = _text(best, "url"), _text(best, "content_type")
    elif kind == "photo" and url:
        content_type = _PHOTO_TYPES.get(url.rpartition(".")[2].lower())
    media_id = _text(media, "id_str") or _text(media, "id")
    if not url and not media_id:
        return None
    # DM media URLs (ton.twitter.com) need an OAuth 1.0a user-context request to download.
    return Attachment(content_type=content_type, url=url, provider_media_id=media_id)


def _expand_urls(text: str, urls: list) -> str:
    """t.co links replaced by what they point to, in one pass (one link may be a prefix of another)."""
    mapping = {
        short: expanded
        for item in urls
        if isinstance(item, dict) and (short := _text(item, "url")) and (expanded := _text(item, "expanded_url"))
    }
    if not mapping:
        return text
    pattern = "|".join(re.escape(short) for short in sorted(mapping, key=len, reverse=True))
    return re.sub(pattern, lambda m: mapping[m[0]], text)


def _clean(value: Any) -> Any:
    """`json_body.clean`, an item too deep to queue being one this adapter cannot read."""
    try:
        return clean(value)
    except TooDeepError as exc:
        raise _Unreadable(str(exc)) from None


def _clean_reason(value: Any) -> str:
    """Provider text quoted in an ignored reason: bounded, and safe to log."""
    return safe(value)[:64] if isinstance(value, str) else type(value).__name__


def _id(value: Any) -> str | None:
    """An X id (user or event) in canonical decimal form, or None."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    return str(int(text)) if NUMERIC_ID.fullmatch(text) else None


def _millis(value: Any) -> datetime | None:
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not _MILLIS.fullmatch(text):
        return None
    return datetime.fromtimestamp(int(text) / 1000, tz=timezone.utc)
