"""Agent replies: an agent's public answer in a vendor's tool goes to the customer.

A destination's callback (`AgentReply`) names the vendor's ticket; this service finds the hub case
the ticket stands for, makes sure the reply is a public one written by a person (not an internal
note, not the hub's own comment coming back: the callback side re-reads it from the vendor where
the callback was only a hint), and sends it through `MessageService.send` on the case's reply
channel, with everything a send gets there: consent, the channel's service window (and its
fallback template), the provider's limits, status tracking.

Its id derives from the vendor's delivery id, so a callback the vendor retries sends once: the
outbound contact's write is conditional on the id being new, which costs no extra read.

A reply the hub must refuse is recorded on the case as a failed outbound message with the reason,
and the agent hears of it the way failures of sent replies are told: `message.undelivered` to the
destination (an internal note on the ticket), `message.status` to the destinations that take it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from pydantic import ValidationError

from chalicelib.adapters.callbacks.base import VendorCallbacks
from chalicelib.adapters.store.base import Store
from chalicelib.domain.ids import stable_id
from chalicelib.domain.models import (
    AgentReply,
    Case,
    Contact,
    Customer,
    OutboundStatus,
    ReplyTarget,
    StatusChange,
)
from chalicelib.domain.outbound import OutboundAttachment, OutboundMessage
from chalicelib.errors import (
    ConflictError,
    NotFoundError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    SendRefusedError,
    TransientError,
    UnsendableMessageError,
)
from chalicelib.observability import Counters
from chalicelib.service.message_events import STATUS, MessageEvents
from chalicelib.service.messages import MessageService, outbound_contact
from chalicelib.service.send_request import Addressee, SendRequest
from chalicelib.service.tickets import ticket_case

logger = logging.getLogger(__name__)


#: Kept free beside a vendor call's own timeout, for the writes that follow it.
VENDOR_CALL_MARGIN_SECONDS = 3.0


class ReplyOutcome:
    SENT = "agent_reply_sent"
    DUPLICATE = "agent_reply_duplicate"
    REFUSED = "agent_reply_refused"
    IGNORED = "agent_reply_ignored"
    UNKNOWN_TICKET = "agent_reply_unknown_ticket"


class VendorUnavailableError(TransientError):
    """The vendor could not be read back now (a reply's re-read): the callback item is retried."""

    code = "vendor_unavailable"


class AgentReplies:
    def __init__(self, *, store: Store, callbacks: Callable[[str], VendorCallbacks | None],
                 messages: Callable[[], MessageService], events: Callable[[], MessageEvents], counters: Counters,
                 clock: Callable[[], datetime]) -> None:
        self._store = store
        self._callbacks = callbacks
        self._messages = messages
        self._events = events
        self._counters = counters
        self._clock = clock

    def relay(self, reply: AgentReply, *, seconds_left: Callable[[], float] | None = None) -> tuple[str, str | None]:
        """Send `reply` to the customer; the outcome and the outbound message's id. Raises
        `VendorUnavailableError` and the store's and queue's `TransientError`s (retry later).
        `seconds_left` is the worker's time left: a vendor call that might not finish in it is
        not started (the item is retried) rather than cut off by the worker's timeout."""
        side = self._callbacks(reply.destination)
        if side is None or not side.settings.replies:
            return self._ignored(reply, "the destination does not relay agent replies (callbacks.replies)")
        case = ticket_case(self._store, reply.destination, reply.ticket, reply.case_id)
        if case is None:
            logger.info("agent reply on %s ticket %s: no hub case has this ticket", reply.destination, reply.ticket)
            self._counters.incr("AgentRepliesUnmatched", destination=reply.destination)
            return ReplyOutcome.UNKNOWN_TICKET, None
        confirmed = self._confirmed(side, reply, seconds_left)
        if isinstance(confirmed, str):
            return self._ignored(reply, confirmed)
        reply = confirmed
        if not (reply.text or "").strip() and not reply.attachments:
            return self._ignored(reply, "the reply has neither text nor attachments")
        try:
            customer = self._messages().customer(case.customer_id)
        except NotFoundError:
            return self._ignored(reply, f"the customer of case {case.id} is gone (erased)")
        message_id = stable_id("ct", reply.dedupe_key, millis=_millis(reply))
        detail = agent_detail(reply)
        try:
            request = SendRequest(to=Addressee(case_id=case.id), text=(reply.text or "").strip() or None,
                                  attachments=[OutboundAttachment(url=a.url or "", content_type=a.content_type,
                                                                  filename=a.filename) for a in reply.attachments])
        except ValidationError as invalid:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in invalid.errors())
            return self._refused(reply, side, case, customer, message_id, detail, "invalid_message", problems,
                                 seconds_left)
        try:
            accepted = self._messages().send(request, origin=f"callback:{reply.destination}", human=True,
                                             message_id=message_id, addressee=(customer, case), agent_reply=detail)
        except (SendRefusedError, UnsendableMessageError) as refused:
            return self._refused(reply, side, case, customer, message_id, detail, refused.code, refused.message,
                                 seconds_left)
        if accepted.repeated:
            return ReplyOutcome.DUPLICATE, accepted.contact.id
        self._counters.incr("AgentRepliesSent", destination=reply.destination)
        logger.info("agent reply on %s ticket %s queued as %s on %s", reply.destination, reply.ticket,
                    accepted.contact.id, accepted.contact.channel.value)
        return ReplyOutcome.SENT, accepted.contact.id

    def _confirmed(self, side: VendorCallbacks, reply: AgentReply,
                   seconds_left: Callable[[], float] | None) -> AgentReply | str:
        """The reply as the vendor has it, or why it must not go out."""
        if not reply.confirmed:
            _require_time(side, reply, seconds_left)
            try:
                confirmed = side.confirm(reply)
            except RetryableDeliveryError as exc:
                raise VendorUnavailableError(f"{reply.destination}: {exc.message}") from None
            except PermanentDeliveryError as exc:
                return f"the reply could not be read back from {reply.destination}: {exc.message}"
            if isinstance(confirmed, str):
                return confirmed
            reply = confirmed
        # Whatever the vendor module checked, the hub's own comments never go back out.
        echo = side.echo_reason(reply.text, reply.author.id)
        return echo if echo is not None else reply

    def _ignored(self, reply: AgentReply, reason: str) -> tuple[str, None]:
        logger.info("agent reply on %s ticket %s not relayed: %s", reply.destination, reply.ticket, reason)
        self._counters.incr("AgentRepliesIgnored", destination=reply.destination)
        return ReplyOutcome.IGNORED, None

    def _refused(self, reply: AgentReply, side: VendorCallbacks, case: Case, customer: Customer, message_id: str,
                 detail: dict[str, str], code: str, reason: str,
                 seconds_left: Callable[[], float] | None) -> tuple[str, str | None]:
        """Record the refused reply on the case as a failed message, and tell the agent."""
        self._counters.incr("AgentRepliesRefused", destination=reply.destination, reason=code)
        logger.info("agent reply on %s ticket %s refused: %s (%s)", reply.destination, reply.ticket, code, reason)
        target = _target(case, customer)
        if target is None:
            # No conversation to record it on: the note is the only trace the agent gets.
            if side.takes_notes and side.settings.failure_notes:
                from chalicelib.service.failure_notes import refusal_note

                _require_time(side, reply, seconds_left)
                try:
                    side.note(reply.ticket, refusal_note(code, reason, reply.text, message_id), reply_ref=reply.comment_id)
                except RetryableDeliveryError as exc:
                    raise VendorUnavailableError(f"{reply.destination}: {exc.message}") from None
                except PermanentDeliveryError as exc:
                    logger.warning("failure note on %s ticket %s refused: %s", reply.destination, reply.ticket,
                                   exc.message)
            return ReplyOutcome.REFUSED, None
        contact = refused_contact(reply, target, case, customer, message_id, detail, code, reason, self._clock())
        try:
            self._store.commit_outbound(contact, only_new=True)
        except ConflictError:
            return ReplyOutcome.DUPLICATE, message_id
        self._events().publish(contact, STATUS, customer=customer, case=case)
        return ReplyOutcome.REFUSED, message_id


def agent_detail(reply: AgentReply) -> dict[str, str]:
    """`metadata.agent_reply` of the outbound message: which ticket, which comment, which agent."""
    detail = {"destination": reply.destination, "vendor_ref": reply.ticket}
    author = reply.author.name or reply.author.email or reply.author.id
    if author:
        detail["author"] = author
    if reply.author.id:
        detail["author_id"] = reply.author.id
    if reply.comment_id:
        detail["comment_id"] = reply.comment_id
    return detail


def refused_contact(reply: AgentReply, target: ReplyTarget, case: Case, customer: Customer, message_id: str,
                    detail: dict[str, str], code: str, reason: str, now: datetime) -> Contact:
    """The refused reply as an outbound message that failed at the hub, on the conversation it
    would have answered."""
    message = OutboundMessage(
        id=message_id, customer_id=customer.id, case_id=case.id, channel=target.channel, provider=target.provider,
        account=target.account, to=target.to, text=(reply.text or "").strip() or None,
        attachments=[OutboundAttachment(url=a.url, content_type=a.content_type, filename=a.filename)
                     for a in reply.attachments if a.url],
        origin=f"callback:{reply.destination}", agent_reply=detail, queued_at=now,
    )
    contact = outbound_contact(message, now)
    failed = StatusChange(at=now, status=OutboundStatus.FAILED, code=code, reason=reason[:500], source="hub")
    return contact.model_copy(update={
        "status": OutboundStatus.FAILED, "status_history": [*contact.status_history, failed],
        "metadata": {**contact.metadata, "refusal": {"code": code, "message": reason[:500]}},
    })


def _require_time(side: VendorCallbacks, reply: AgentReply, seconds_left: Callable[[], float] | None) -> None:
    """Raises `VendorUnavailableError` (the item is retried) when a vendor call might outlast the
    worker: better not started than cut off by the worker's timeout with the batch."""
    left = seconds_left() if seconds_left is not None else None
    needed = float(getattr(side.connector.settings, "timeout_seconds", 10.0)) + VENDOR_CALL_MARGIN_SECONDS
    if left is not None and left < needed:
        raise VendorUnavailableError(f"{reply.destination}: {left:.0f} s left in this worker, a vendor call may "
                                     f"take {needed:.0f} s; the reply is retried")


def _target(case: Case, customer: Customer) -> ReplyTarget | None:
    if case.last_inbound is not None:
        return case.last_inbound
    return max(customer.reply_targets.values(), key=lambda t: t.at, default=None)


def _millis(reply: AgentReply) -> int:
    """The time part of the reply's id: when the vendor says it was written, so the vendor's
    retry (received later) derives the same id; else 0, which still names one message."""
    return int(reply.occurred_at.timestamp() * 1000) if reply.occurred_at is not None else 0
