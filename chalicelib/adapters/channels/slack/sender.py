"""Slack chat.postMessage: the answer in the customer's channel, in the thread answered:
https://api.slack.com/methods/chat.postMessage"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, ClassVar

from chalicelib.adapters.channels.sending import (
    ChannelSender,
    CredentialRefusedError,
    Problem,
    first_accepted,
    json_object,
    linked_text_problems,
    resolved_secrets,
)
from chalicelib.adapters.channels.slack.settings import SlackSettings
from chalicelib.adapters.connectors.http import RETRYABLE_STATUSES, HttpResponse, retry_after_seconds
from chalicelib.domain.identifiers import Identifier, IdentifierKind
from chalicelib.domain.models import Channel, Contact, ReplyContext, ReplyTarget
from chalicelib.domain.outbound import OutboundAttachment, OutboundMessage, SendOutcome
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError

METHOD_PATH = "/api/chat.postMessage"
#: "The text field … will be truncated … beyond 40,000 characters": refused here instead of cut.
#: https://api.slack.com/methods/chat.postMessage#truncating
MAX_TEXT = 40_000
#: `error` values that are Slack's own trouble or throttling: the same request may pass later.
#: (`internal_error` and `fatal_error` say the post may have happened anyway; Slack takes no
#: idempotency key, so a retry can show the message twice — docs/channels/slack.md.)
RETRYABLE_ERRORS = frozenset({"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable",
                              "request_timeout"})  # fmt: skip
#: `error` values that condemn the token, not the message: the next token of the rotation list is tried.
TOKEN_ERRORS = frozenset({"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"})
#: Where a bot posts: a conversation id (`C…` channel, `G…` private, `D…` DM) or a user id (`U…`,
#: `W…` on Enterprise Grid) for the app's DM with them. Names (`#general`) are not accepted: they change.
_CONVERSATION = re.compile(r"[CGDUW][A-Z0-9]{2,31}")


class SlackSender(ChannelSender[SlackSettings]):
    """Posts as the app's bot user with the installing workspace's bot token."""

    key: ClassVar[str] = "slack"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.SLACK})
    docs_url: ClassVar[str] = "https://api.slack.com/methods/chat.postMessage"

    @classmethod
    def reply_target(cls, contact: Contact) -> ReplyTarget | None:
        """The channel the customer wrote in and the thread parent: the message's `thread_ts` when
        it was a thread reply, else its own `ts` (Slack: "avoid using a reply's ts; use its parent")."""
        channel, ts = _identity(contact)
        if not channel or not ts:
            return None
        thread = contact.metadata.get("thread_ts")
        return ReplyTarget(
            contact_id=contact.id,
            case_id=contact.case_id,
            channel=Channel.SLACK,
            provider=cls.key,
            account=contact.account,
            to=channel,
            reply=ReplyContext(thread=thread if isinstance(thread, str) and thread else ts),
            at=contact.sent_at or contact.received_at,
        )

    def recipient_for(self, channel: Channel, identifiers: Sequence[Identifier]) -> str | None:
        """A Slack user of our default workspace: chat.postMessage to a user id posts in the app's
        DM with them (the Messages tab of the app's home)."""
        team = self.default_account(channel)
        for identifier in identifiers:
            if identifier.kind is IdentifierKind.SLACK and team and identifier.scope == team:
                return identifier.value
        return None

    def default_account(self, channel: Channel) -> str | None:
        return next(iter(self.settings.bot_tokens), None) if channel is Channel.SLACK else None

    def sends_from(self, channel: Channel, account: str) -> bool:
        return channel is Channel.SLACK and account in self.settings.bot_tokens

    def check(self, message: OutboundMessage) -> list[Problem]:
        return linked_text_problems(message, provider="Slack", limit=MAX_TEXT,
                                    to_problem=None if _CONVERSATION.fullmatch(message.to) else "must be a Slack channel, DM or user id (C…, G…, D…, U…, W…)",
                                    text=compose_text(message.text, message.attachments))

    def send(self, message: OutboundMessage) -> SendOutcome:
        """One chat.postMessage (one more per rotated-out token Slack refuses, which posted nothing).

        Raises `RetryableDeliveryError` (429 `ratelimited` with Retry-After, Slack's own errors,
        5xx, timeouts) or `PermanentDeliveryError` with Slack's `error` string as provider code.
        """
        tokens = self.settings.bot_tokens.get(message.account)
        if not tokens:
            raise PermanentDeliveryError(
                f"channels.slack.bot_tokens has no token for workspace {message.account[:40]}", provider_code="no_token"
            )
        body = json.dumps(request_body(message, reply_broadcast=self.settings.reply_broadcast)).encode("utf-8")
        url = self.settings.api_base_url + METHOD_PATH

        def post(token: str) -> SendOutcome:
            return outcome(self.runtime.http.request(
                "POST", url, body=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json; charset=utf-8"},
            ))  # fmt: skip

        return first_accepted(resolved_secrets(self.secrets, tokens, what="Slack bot token"), post,
                              none_configured="no bot token of this workspace resolved")


def request_body(message: OutboundMessage, *, reply_broadcast: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"channel": message.to, "text": compose_text(message.text, message.attachments)}
    if message.reply.thread:
        body["thread_ts"] = message.reply.thread
        if reply_broadcast:
            body["reply_broadcast"] = True
    return body


def compose_text(text: str | None, attachments: Sequence[OutboundAttachment]) -> str:
    """The message text with Slack's three control characters escaped, so an agent's `<` or `&`
    shows as written (https://api.slack.com/reference/surfaces/formatting#escaping), and each
    attachment as a link on its own line: posting files needs files.upload v2 (three calls),
    which this sender does not make."""
    lines = [_escape(text)] if text else []
    for attachment in attachments:
        url = attachment.url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
        label = _escape(attachment.filename or "").replace("|", "/")
        lines.append(f"<{url}|{label}>" if label else f"<{url}>")
    return "\n".join(lines)


def outcome(response: HttpResponse) -> SendOutcome:
    """Slack's answer as an outcome, or the error it means. Slack answers most failures with
    HTTP 200 and `{"ok": false, "error": "<code>"}`, and rate limits with 429 and Retry-After
    (https://api.slack.com/apis/rate-limits)."""
    body = json_object(response.body)
    error = body.get("error") if isinstance(body.get("error"), str) else None
    if response.ok and body.get("ok") is True:
        channel, ts = body.get("channel"), body.get("ts")
        if not isinstance(channel, str) or not channel or not isinstance(ts, str) or not ts:
            raise PermanentDeliveryError("Slack accepted the message without a channel and ts", provider_code="no_ts")
        metadata = {"channel": channel, "ts": ts}
        message = body.get("message")
        if isinstance(message, dict) and isinstance(message.get("thread_ts"), str):
            metadata["thread_ts"] = message["thread_ts"]
        # Slack reports no delivery or read status: `sent` is the last status this message gets.
        return SendOutcome(provider_message_id=f"{channel}:{ts}", metadata=metadata)
    code = (error or f"http_{response.status}")[:64]
    reason = f"Slack chat.postMessage: {code}"
    if response.status in RETRYABLE_STATUSES or response.status >= 500 or code in RETRYABLE_ERRORS:
        raise RetryableDeliveryError(reason, retry_after=retry_after_seconds(response.headers))
    if code in TOKEN_ERRORS:
        raise CredentialRefusedError(reason, provider_code=code)
    raise PermanentDeliveryError(reason, provider_code=code)


def _identity(contact: Contact) -> tuple[str | None, str | None]:
    """The message's channel and ts: from metadata, else from `provider_message_id` (`channel:ts`)."""
    channel, ts = contact.metadata.get("channel"), contact.metadata.get("ts")
    if isinstance(channel, str) and channel and isinstance(ts, str) and ts:
        return channel, ts
    channel, _, ts = contact.provider_message_id.partition(":")
    return (channel, ts) if channel and ts else (None, None)


def _escape(text: str | None) -> str:
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
