"""What the hub sends: the message a sender receives, and the status vocabulary it reports in.

An `OutboundMessage` is the unit on the outbound queue. It carries everything a provider's sender
needs (recipient, our sending account, what is answered, text, attachments, template), so a sender
reads nothing from the store and a redelivered message is sent with exactly the same request.
The message is also a `Contact` with `direction: outbound` on the customer's timeline; its
`status` moves forward only (`advance`), however late or out of order the provider reports.
"""

# No `from __future__ import annotations`: pydantic would compile and evaluate each field's
# annotation string when a model class is created (about 0.15 ms a model at every cold start).

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.domain.consent import Purpose
from chalicelib.domain.defaults import empty_list
from chalicelib.domain.models import (
    STATUS_RANK,
    Channel,
    OutboundStatus,
    ReplyContext,
    StatusEvent,
)

if TYPE_CHECKING:  # the workers' model (domain/stored.py): senders load it, the webhook path does not
    from chalicelib.domain.stored import Contact

__all__ = [
    "STATUS_RANK", "OutboundAttachment", "OutboundMessage", "OutboundStatus", "Purpose", "ReplyContext", "SendOutcome",
    "TemplateMessage", "advance", "outbound_status", "with_reported",
]


def advance(current: OutboundStatus | None, reported: OutboundStatus) -> OutboundStatus:
    """The status after `reported` arrives: it, unless `current` is further along."""
    if current is None or STATUS_RANK[reported] > STATUS_RANK[current]:
        return reported
    return current


def outbound_status(provider_status: str) -> OutboundStatus | None:
    """A provider status in the hub's delivery vocabulary (`StatusEvent.status`, which adapters
    already normalize to queued/sending/sent/delivered/read/failed/canceled); None for one that
    says nothing about the message's progress (`sending`)."""
    return {
        "queued": OutboundStatus.QUEUED,
        "sent": OutboundStatus.SENT,
        "delivered": OutboundStatus.DELIVERED,
        "read": OutboundStatus.READ,
        "failed": OutboundStatus.FAILED,
        "canceled": OutboundStatus.FAILED,
    }.get(provider_status)


#: What only the send path builds (the API, the routing worker, the senders): its validators are
#: built on first use, so the webhook function, which imports this module for `TemplateMessage`
#: (channel settings), does not pay for them at cold start.
_SEND_SIDE = ConfigDict(defer_build=True)


class OutboundAttachment(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    #: A public http(s) URL the provider fetches (or the hub does, for providers that take bytes).
    url: str
    content_type: str | None = None
    filename: str | None = None


class TemplateMessage(BaseModel):
    """A pre-approved message (WhatsApp template), validated against `channels.<provider>.templates`."""

    model_config = ConfigDict(extra="forbid")

    name: str
    language: str
    #: The body's positional parameters, in order ({{1}}, {{2}}…).
    parameters: list[str] = Field(default_factory=empty_list)


class OutboundMessage(BaseModel):
    """One message to send, as it travels on the outbound queue."""

    model_config = _SEND_SIDE

    #: The outbound contact's id: also the idempotency key providers that take one receive.
    id: str
    customer_id: str
    case_id: str
    channel: Channel
    #: The channel provider package that sends it (`twilio`, `meta`, `ses`…).
    provider: str
    #: Our side: the number, page, mailbox, bot, workspace or site it is sent from, as the
    #: inbound side names it (`InboundMessage.account`).
    account: str
    #: The recipient as the provider addresses them: E.164 number, WhatsApp id, page-scoped or
    #: Instagram-scoped id, Telegram chat id, Slack channel id, X user id, email address, or the
    #: web chat visitor id.
    to: str
    text: str | None = None
    subject: str | None = None
    html: str | None = None
    attachments: list[OutboundAttachment] = Field(default_factory=empty_list)
    template: TemplateMessage | None = None
    reply: ReplyContext = Field(default_factory=ReplyContext)
    #: Email: the Message-ID the hub generated (`<…@domain>`); the case's thread key, so the
    #: customer's answer threads into the same case.
    message_id: str | None = None
    #: Messenger/Instagram outside the 24-hour window: the message tag to send with
    #: (`HUMAN_AGENT`), as the window check decided. None: `messaging_type: RESPONSE`.
    tag: str | None = None
    purpose: Purpose = "service"
    #: Who asked for it: `api:<key name>`, `routing:<rule>`, `cli`, `callback:<destination>`.
    origin: str
    #: An agent's reply from a destination's own tool: `{destination, vendor_ref, author,
    #: comment_id}` (the ticket and the agent), kept on the contact as `metadata.agent_reply`.
    agent_reply: dict[str, str] | None = None
    queued_at: datetime


class SendOutcome(BaseModel):
    """What the provider answered to an accepted send."""

    model_config = _SEND_SIDE

    provider_message_id: str
    #: The status the answer itself proves (`sent`; `delivered` for the web chat, which is its
    #: own provider).
    status: OutboundStatus = OutboundStatus.SENT
    #: Worth keeping on the contact (`message_id` of an email, the Slack channel and ts…).
    metadata: dict[str, str] = Field(default_factory=dict)
    #: Thread keys only the provider's answer tells, leading the customer's reply back to the
    #: message's case (the inbound form, `email:<id>`): SES replaces our Message-ID with its own,
    #: which the customer's In-Reply-To then names. Stored with the send's outcome.
    thread_keys: list[str] = Field(default_factory=empty_list)


def with_reported(contact: "Contact", reports: list[StatusEvent]) -> "Contact":
    """An outbound contact with the statuses its provider reported folded in: each report once
    (by status and code) in the history, in time order, and the status moved forward only."""
    from chalicelib.domain.stored import StatusChange  # the workers' model (stored.py says why)

    seen = {(change.status, change.code, change.source) for change in contact.status_history}
    history = list(contact.status_history)
    status = contact.status
    for report in reports:
        reported = outbound_status(report.status)
        if reported is None:
            continue
        change = StatusChange(at=report.occurred_at or report.received_at, status=reported, code=report.error_code,
                              reason=report.error_message, source=report.provider)
        if (change.status, change.code, change.source) in seen:
            continue
        seen.add((change.status, change.code, change.source))
        history.append(change)
        status = advance(status, reported)
    if len(history) == len(contact.status_history):
        return contact
    history.sort(key=lambda change: change.at)
    return contact.model_copy(update={"status": status, "status_history": history})
