"""X API v2 Direct Messages: a DM to the participant: https://docs.x.com/x-api/direct-messages/manage/api-reference/post-dm_conversations-with-participant_id-messages"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import ClassVar

from chalicelib.adapters.channels.sending import (
    ChannelSender,
    CredentialRefusedError,
    Problem,
    first_accepted,
    json_object,
    linked_text_problems,
    resolved_secrets,
)
from chalicelib.adapters.channels.x.settings import XSettings
from chalicelib.adapters.connectors.http import RETRYABLE_STATUSES, HttpResponse, retry_after_seconds
from chalicelib.domain.identifiers import Identifier, IdentifierKind
from chalicelib.domain.models import Channel, Contact, ReplyTarget
from chalicelib.domain.outbound import OutboundAttachment, OutboundMessage, SendOutcome
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError

#: "Text of the Direct Message … up to 10,000 characters."
MAX_TEXT = 10_000
#: `participant_id` in X's spec: `^[0-9]{1,19}$`.
_USER_ID = re.compile(r"[0-9]{1,19}")
#: X's rate-limit headers: when the window resets, in epoch seconds.
RESET_HEADER = "x-rate-limit-reset"


class XSender(ChannelSender[XSettings]):
    """Sends a DM from one of our accounts with that account's OAuth 2.0 user-context token."""

    key: ClassVar[str] = "x"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.X})
    docs_url: ClassVar[str] = (
        "https://docs.x.com/x-api/direct-messages/manage/api-reference/post-dm_conversations-with-participant_id-messages"
    )

    @classmethod
    def reply_target(cls, contact: Contact) -> ReplyTarget | None:
        """The customer who wrote, from our account that received it. X DMs have no reply-to: the
        one-to-one conversation is the thread."""
        participant = _participant(contact)
        if participant is None:
            return None
        return ReplyTarget(
            contact_id=contact.id,
            case_id=contact.case_id,
            channel=Channel.X,
            provider=cls.key,
            account=contact.account,
            to=participant,
            at=contact.sent_at or contact.received_at,
        )

    def recipient_for(self, channel: Channel, identifiers: Sequence[Identifier]) -> str | None:
        """X user ids are global: anyone's `x:` identifier is a DM recipient (whether they accept
        DMs from us is theirs to say: a refusal is a permanent failure)."""
        if channel is not Channel.X:
            return None
        return next((i.value for i in identifiers if i.kind is IdentifierKind.X and _USER_ID.fullmatch(i.value)), None)

    def default_account(self, channel: Channel) -> str | None:
        return next(iter(self.settings.dm_access_tokens), None) if channel is Channel.X else None

    def sends_from(self, channel: Channel, account: str) -> bool:
        return channel is Channel.X and account in self.settings.dm_access_tokens

    def check(self, message: OutboundMessage) -> list[Problem]:
        return linked_text_problems(message, provider="X", limit=MAX_TEXT,
                                    to_problem=None if _USER_ID.fullmatch(message.to) else "must be a numeric X user id",
                                    text=compose_text(message.text, message.attachments))

    def send(self, message: OutboundMessage) -> SendOutcome:
        """One `POST /2/dm_conversations/with/:participant_id/messages` (one more per rotated-out
        token X refuses with 401, which sent nothing).

        Raises `RetryableDeliveryError` (429 until `x-rate-limit-reset`, 5xx, timeouts) or
        `PermanentDeliveryError` with X's error code or problem type as provider code.
        """
        tokens = self.settings.dm_access_tokens.get(message.account)
        if not tokens:
            raise PermanentDeliveryError(
                f"channels.x.dm_access_tokens has no token for account {message.account[:24]}", provider_code="no_token"
            )
        if not _USER_ID.fullmatch(message.to):
            raise PermanentDeliveryError("the recipient is not a numeric X user id", provider_code="bad_recipient")
        url = f"{self.settings.api_base_url}/2/dm_conversations/with/{message.to}/messages"
        body = json.dumps({"text": compose_text(message.text, message.attachments)}).encode("utf-8")

        def post(token: str) -> SendOutcome:
            response = self.runtime.http.request(
                "POST", url, body=body, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            )
            return outcome(response, now=self.runtime.clock().timestamp())

        return first_accepted(resolved_secrets(self.secrets, tokens, what="X access token"), post,
                              none_configured="no X access token resolved")


def _participant(contact: Contact) -> str | None:
    """The customer's user id: the parser's conversation key is `x:<our account>:<sender id>`;
    failing that, the sender's X identifier."""
    prefix = f"x:{contact.account}:"
    key = contact.conversation_key or ""
    if key.startswith(prefix) and _USER_ID.fullmatch(key[len(prefix):]):
        return key[len(prefix):]
    ids = [i.value for i in (*contact.sender.identifiers, *contact.sender.unverified) if i.kind is IdentifierKind.X]
    return next((i for i in ids if _USER_ID.fullmatch(i)), None)


def compose_text(text: str | None, attachments: Sequence[OutboundAttachment]) -> str:
    """The text, and each attachment's URL on its own line: a DM attachment needs a media upload
    first (another call and the `media.write` scope), which this sender does not make."""
    return "\n".join([*([text] if text else []), *(a.url for a in attachments)])


def outcome(response: HttpResponse, *, now: float) -> SendOutcome:
    """X's answer as an outcome (`201 {"data": {"dm_conversation_id", "dm_event_id"}}`), or the
    error it means: a problem (`title`, `detail`, `type`, `status`) or v1.1-style `errors[]`."""
    body = json_object(response.body)
    data = body.get("data")
    if response.ok and isinstance(data, dict):
        event_id = data.get("dm_event_id")
        if not isinstance(event_id, str) or not event_id:
            raise PermanentDeliveryError("X accepted the DM without a dm_event_id", provider_code="no_id")
        metadata = {"dm_event_id": event_id}
        if isinstance(data.get("dm_conversation_id"), str):
            metadata["dm_conversation_id"] = data["dm_conversation_id"]
        # The read receipt (`direct_message_mark_read_events`) names this id: the adapter's `read` status.
        return SendOutcome(provider_message_id=event_id, metadata=metadata)
    code, reason = _error(body, response.status)
    reason = f"X direct message: {response.status} {reason}".strip()
    if response.status in RETRYABLE_STATUSES or response.status >= 500:
        raise RetryableDeliveryError(reason, retry_after=_retry_after(response, now))
    if response.status == 401:
        raise CredentialRefusedError(reason, provider_code=code)
    raise PermanentDeliveryError(reason, provider_code=code)


def _error(body: dict, status: int) -> tuple[str, str]:
    """X's code for the failure and its words: a v1.1 `errors[].code` (`349`), else the problem
    type's last segment (`usage-capped`), else the HTTP status."""
    errors = [e for e in body.get("errors", []) if isinstance(e, dict)] if isinstance(body.get("errors"), list) else []
    numbered = next((e for e in errors if isinstance(e.get("code"), int) and not isinstance(e.get("code"), bool)), None)
    words = [body.get("title"), body.get("detail"), *(e.get("message") for e in errors[:1])]
    reason = ": ".join(dict.fromkeys(w for w in words if isinstance(w, str) and w))[:200]
    if numbered is not None:
        return str(numbered["code"]), reason
    kind = body.get("type") if isinstance(body.get("type"), str) else ""
    segment = kind.rstrip("/").rpartition("/")[2]
    if kind and kind != "about:blank" and re.fullmatch(r"[a-z0-9-]{1,64}", segment):
        return segment, reason
    return f"http_{status}", reason


def _retry_after(response: HttpResponse, now: float) -> float | None:
    """Until `x-rate-limit-reset` (epoch seconds), else `Retry-After`."""
    reset = (response.headers.get(RESET_HEADER) or "").strip()
    if reset.isdigit():
        return max(0.0, float(reset) - now)
    return retry_after_seconds(response.headers, now=now)
