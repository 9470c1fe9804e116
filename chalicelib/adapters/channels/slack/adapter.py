"""Slack Events API (customers in DMs and Slack Connect channels): https://api.slack.com/apis/events-api"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from pydantic import BaseModel

from chalicelib.adapters.channels.slack.settings import SlackSettings
from chalicelib.adapters.channels.base import (
    ChannelAdapter,
    ParsedWebhook,
    SimulatedCustomer,
    SimulatedRequest,
    WebhookRequest,
    WebhookResponse,
)
from chalicelib.adapters.channels.json_body import string_of as _text, load_clean_object
from chalicelib.domain.models import Attachment, Channel, ContentType, Handle, InboundMessage, Sender
from chalicelib.errors import MalformedPayloadError, SignatureError
from chalicelib.signing.compare import signed_by_any
from chalicelib.signing.window import check_window, unix_seconds

SIGNATURE_HEADER = "X-Slack-Signature"
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
#: Only on redeliveries: `1`, `2`, `3`, and why the previous attempt failed (`http_timeout`...).
RETRY_NUM_HEADER = "X-Slack-Retry-Num"
RETRY_REASON_HEADER = "X-Slack-Retry-Reason"
_SIGNATURE = re.compile(r"v0=([0-9a-fA-F]{64})")
#: Ten digits reach the year 2286; more would overflow `datetime`.
#: A message `ts`: unix seconds and a per-channel sequence, e.g. `1767225599.000100`.
_TS = re.compile(r"([0-9]{1,10})(?:\.([0-9]{1,6}))?")
#: Slack's challenges are ~50 URL-safe characters; anything unprintable is not echoed.
_CHALLENGE = re.compile(r"[\x21-\x7e]{1,256}")

URL_VERIFICATION = "url_verification"
EVENT_CALLBACK = "event_callback"
#: Sent each minute the app is over 30,000 deliveries per workspace per hour: events were dropped.
APP_RATE_LIMITED = "app_rate_limited"

#: `message` subtypes a person writes. Everything else (`message_changed`, `message_deleted`,
#: `bot_message`, `channel_join`, ...) is acknowledged and ignored with its subtype as reason.
#: https://api.slack.com/events/message#subtypes
CUSTOMER_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "me_message"})
#: Why a subtype is not a contact, where the subtype name alone does not say it.
SUBTYPE_REASONS: dict[str, str] = {
    "message_changed": "an edit of an earlier message (the original is the contact)",
    "message_deleted": "a deletion of an earlier message",
    "bot_message": "a bot's message",
    "message_replied": "a thread-reply notification, not a new message",
}


#: What `url_private` needs: `Authorization: Bearer <bot token>` (files:read scope).
FILES_AUTH = "slack_bot_token"


def compute_signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    """`X-Slack-Signature` as Slack sends it: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{raw body}`."""
    base = b"v0:" + timestamp.encode("ascii") + b":" + body
    return "v0=" + hmac.new(signing_secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


class SlackParsed(ParsedWebhook):
    """`challenge`: set for a verified `url_verification` request; `ack` echoes it."""

    __slots__ = ("challenge",)

    def __init__(self, events: list | None = None, ignored: list[str] | None = None,
                 unhandled: list | None = None, challenge: str | None = None) -> None:
        super().__init__(events, ignored, unhandled)
        self.challenge = challenge


class SlackAdapter(ChannelAdapter[SlackSettings]):
    """Messages customers write to our bot in a DM or in a Slack Connect (shared) channel."""

    key: ClassVar[str] = "slack"
    docs_url: ClassVar[str] = "https://api.slack.com/apis/events-api"
    Settings: ClassVar[type[BaseModel]] = SlackSettings
    media_sources = ("chalicelib.adapters.channels.slack.media:SlackFilesSource",)
    content_types: ClassVar[tuple[str, ...]] = ("application/json",)
    sender: ClassVar[str | None] = "chalicelib.adapters.channels.slack.sender:SlackSender"

    @property
    def _signing_secrets(self) -> list[str]:
        return self.secrets.get_all(self.settings.signing_secrets)

    def verify(self, request: WebhookRequest) -> None:
        """The v0 signature over `v0:{timestamp}:{raw body}`, within the replay window.

        Raises `SignatureError` for a missing, garbled, stale or non-matching signature.
        """
        signature = (request.header(SIGNATURE_HEADER) or "").strip()
        if not signature:
            raise SignatureError(f"missing {SIGNATURE_HEADER} header")
        timestamp = unix_seconds(request.header(TIMESTAMP_HEADER), field=f"{TIMESTAMP_HEADER} header")
        check_window(timestamp, request.received_at, max_age=self.settings.max_skew_seconds,
                     field=TIMESTAMP_HEADER, setting=f"{self.settings.max_skew_seconds} s")
        match = _SIGNATURE.fullmatch(signature)
        if match is None:
            raise SignatureError(f"{SIGNATURE_HEADER} must be 'v0=' followed by 64 hex digits")
        if not signed_by_any(lambda secret: compute_signature(secret, str(timestamp), request.body),
                             self._signing_secrets, "v0=" + match[1].lower()):
            raise SignatureError(f"{SIGNATURE_HEADER} does not match the body for any configured signing_secrets")

    def parse(self, request: WebhookRequest) -> SlackParsed:
        envelope = load_clean_object(request.body)
        kind = envelope.get("type")
        if not isinstance(kind, str) or not kind:
            raise MalformedPayloadError('body has no "type" string')
        if kind == URL_VERIFICATION:
            # Reached only after verify(): the challenge is echoed to Slack alone.
            challenge = envelope.get("challenge")
            if not isinstance(challenge, str) or not _CHALLENGE.fullmatch(challenge):
                raise MalformedPayloadError("url_verification challenge must be 1-256 printable ASCII characters")
            return SlackParsed(challenge=challenge)
        # The deprecated verification token is a credential: it is never kept.
        kept = {k: v for k, v in envelope.items() if k != "token"}
        if kind == APP_RATE_LIMITED:
            # An integer (unix minute) in Slack's examples.
            minute = _int(envelope.get("minute_rate_limited"))
            return SlackParsed(
                ignored=[f"app_rate_limited: Slack dropped events for minute {minute} (30,000 per workspace per hour)"]
            )
        if kind != EVENT_CALLBACK:
            return SlackParsed(unhandled=[self.unhandled(f"envelope type {_label(kind)} is not handled", kept, request)])
        event = envelope.get("event")
        if not isinstance(event, dict):
            raise MalformedPayloadError('event_callback has no "event" object')
        parsed = SlackParsed()
        where = f"event {_label(_text(envelope, 'event_id'))}"
        try:
            parsed.events.append(self._message(envelope, kept, event, request))
        except _Unreadable as unreadable:
            parsed.unhandled.append(self.unhandled(f"{where}: {unreadable}", kept, request))
        except _Skip as skip:
            parsed.ignored.append(f"{where}: {skip}")
        return parsed

    def ack(self, parsed: ParsedWebhook) -> WebhookResponse:
        if isinstance(parsed, SlackParsed) and parsed.challenge is not None:
            # https://api.slack.com/events/url_verification: the challenge as text/plain.
            return WebhookResponse(status=200, body=parsed.challenge, content_type="text/plain")
        return WebhookResponse(status=200, body="")

    def simulated_request(self, customer: SimulatedCustomer) -> SimulatedRequest | None:
        """A DM from a customer in our workspace, signed now with the first signing secret."""
        team = self.settings.team_ids[0] if self.settings.team_ids else "T0SIMULATE"
        user = "U" + hashlib.sha256(customer.phone.encode()).hexdigest()[:10].upper()
        now = time.time()
        ts = f"{now:.6f}"
        envelope = {
            "token": "simulated",
            "team_id": team,
            "api_app_id": self.settings.app_id or "A0SIMULATE",
            "event": {
                "type": "message", "user": user, "text": customer.text, "ts": ts, "team": team,
                "channel": "D" + user[1:], "channel_type": "im", "event_ts": ts,
                "user_profile": {"real_name": customer.name},
            },
            "type": EVENT_CALLBACK,
            "event_id": "Ev" + hashlib.sha256(ts.encode()).hexdigest()[:10].upper(),
            "event_time": int(now),
            "authorizations": [{"team_id": team, "user_id": "U0SIMBOT", "is_bot": True}],
            "is_ext_shared_channel": False,
        }  # fmt: skip
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        timestamp = str(int(now))
        signature = compute_signature(self.secrets.get(self.settings.signing_secrets[0]), timestamp, body)
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature}
        return SimulatedRequest(path=f"/webhooks/{self.key}", body=body, headers=headers)

    # --- parsing -------------------------------------------------------------------------------

    def _message(self, envelope: dict, kept: dict, event: dict, request: WebhookRequest) -> InboundMessage:
        team_id = _text(envelope, "team_id")
        shared = envelope.get("is_ext_shared_channel") is True
        # In a Slack Connect channel `team_id` names whichever installation Slack delivered
        # through, possibly the customer's: the allow-list then judges the sender's team below.
        if self.settings.team_ids and team_id not in self.settings.team_ids and not shared:
            raise _Skip(f"workspace {_label(team_id)} is not in team_ids")
        event_type = _text(event, "type")
        if event_type == "app_mention":
            raise _Skip("app_mention repeats the message event of the same message")
        if event_type != "message":
            raise _Unreadable(f"event type {_label(event_type)} is not handled")
        subtype = _text(event, "subtype")
        own = self._own_reason(envelope, event)
        if own:
            raise _Skip(own)
        if subtype not in CUSTOMER_SUBTYPES:
            reason = SUBTYPE_REASONS.get(subtype or "", "not a customer message")
            raise _Skip(f"message subtype {_label(subtype)}: {reason}")
        if _text(event, "bot_id"):
            raise _Skip("a bot's message (bot_id)")
        if event.get("hidden") is True:
            raise _Skip("a hidden message")
        user, channel, ts = _text(event, "user"), _text(event, "channel"), _text(event, "ts")
        if not user:
            raise _Unreadable("message without user")
        if not channel or not ts:
            raise _Unreadable("message without channel or ts")

        channel_type = _text(event, "channel_type")
        # Our workspaces: the configured ones; without them, the one the event was delivered to,
        # which is right as long as only our workspace installed the app (docs/channels/slack.md).
        ours = set(self.settings.team_ids) or {t for t in [team_id] if t}
        # The sender's own workspace: Slack Connect messages name it in `user_team` (or `team`),
        # which differs from the receiving workspace in `team_id`. https://api.slack.com/enterprise/grid/developing
        sender_team = _text(event, "user_team") or _text(event, "team") or _text(_dict(event, "user_profile"), "team")
        if channel_type != "im":
            if not shared:
                where = f"channel_type {_label(channel_type)} outside Slack Connect"
                raise _Skip(f"{where}: customers write in DMs and shared channels")
            if not sender_team:
                raise _Unreadable("a shared-channel message without the sender's team: agent or customer is unknown")
            if sender_team in ours:
                raise _Skip("a member of our own workspace in a shared channel (an agent, not a customer)")
        scope = sender_team or team_id
        if not scope:
            raise _Unreadable("no team to scope the user id to")

        thread_ts = _text(event, "thread_ts")
        text = _text(event, "text")
        attachments = _files(event.get("files"))
        if attachments:
            content_type = ContentType.MEDIA
        elif text:
            content_type = ContentType.TEXT
        else:
            content_type = ContentType.UNSUPPORTED
        profile = _dict(event, "user_profile")
        metadata: dict[str, Any] = {
            "event_id": _text(envelope, "event_id"),
            "channel": channel,
            "channel_type": channel_type,
            "ts": ts,
            "api_app_id": _text(envelope, "api_app_id"),
            "shared_channel": shared,
        }
        for key in ("subtype", "thread_ts", "client_msg_id"):
            if value := _text(event, key):
                metadata[key] = value
        if attachments:
            metadata["files_auth"] = FILES_AUTH
        if username := _text(profile, "name"):
            metadata["username"] = username
        retry = (request.header(RETRY_NUM_HEADER) or "").strip()
        if retry:
            metadata["retry_num"] = retry[:8]
            metadata["retry_reason"] = (request.header(RETRY_REASON_HEADER) or "")[:64] or None
        root = thread_ts or ts
        return InboundMessage(
            provider=self.key,
            channel=Channel.SLACK,
            # The message's identity in Slack, the same on every retry of the event (and on a
            # second event for the same message): a retry is a duplicate. `event_id` stays in metadata.
            provider_message_id=f"{channel}:{ts}",
            account=team_id or scope,
            sender=Sender(
                handles=[Handle(kind="slack", value=user, scope=scope)],
                display_name=_text(profile, "real_name") or _text(profile, "display_name"),
            ),
            sent_at=_ts(ts),
            received_at=request.received_at,
            content_type=content_type,
            text=text,
            attachments=attachments,
            metadata=metadata,
            conversation_key=f"slack:{channel}:{thread_ts}" if thread_ts else f"slack:{channel}",
            # The thread root: a top-level message is the root of any later thread on it, so a
            # reply days later finds the same case.
            thread_keys=[f"slack:{channel}:{root}"],
            raw=kept,
        )

    def _own_reason(self, envelope: dict, event: dict) -> str | None:
        user = _text(event, "user")
        bots = set(self.settings.bot_user_ids)
        authorizations = envelope.get("authorizations")
        for authorization in authorizations if isinstance(authorizations, list) else []:
            if isinstance(authorization, dict) and authorization.get("is_bot") is True:
                if bot_user := _text(authorization, "user_id"):
                    bots.add(bot_user)
        if user and user in bots:
            return "our own bot user's message"
        app_id = self.settings.app_id
        if app_id and app_id in (_text(event, "app_id"), _text(_dict(event, "bot_profile"), "app_id")):
            return "our own app's message"
        return None


class _Skip(Exception):
    """The event is deliberately not a contact (ours, a bot, an edit); its reason goes to
    `ParsedWebhook.ignored`."""


class _Unreadable(Exception):
    """The event is not one this adapter can read; it is kept raw (`ParsedWebhook.unhandled`)."""


def _files(value: Any) -> list[Attachment]:
    attachments = []
    for file in value if isinstance(value, list) else []:
        if not isinstance(file, dict) or not _text(file, "id") or _text(file, "mode") == "tombstone":
            continue
        # Slack Connect files may arrive as `file_access: check_file_info` with the id only:
        # files.info with the bot token gives the rest.
        attachments.append(
            Attachment(
                provider_media_id=_text(file, "id"),
                url=_text(file, "url_private"),
                content_type=_text(file, "mimetype"),
                filename=_text(file, "name"),
                size=_int(file.get("size")),
            )
        )
    return attachments


def _dict(obj: Any, key: str) -> dict:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _label(value: Any) -> str:
    """A provider value fit for a log line: short, quoted."""
    return repr(value[:64]) if isinstance(value, str) else repr(value) if value is None else type(value).__name__


def _ts(value: str) -> datetime | None:
    match = _TS.fullmatch(value)
    if match is None:
        return None
    micros = int((match[2] or "0").ljust(6, "0"))
    return datetime.fromtimestamp(int(match[1]), tz=timezone.utc) + timedelta(microseconds=micros)
