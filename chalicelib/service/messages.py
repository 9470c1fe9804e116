"""Answering customers: decide where a message goes, refuse what must not be sent, queue the rest.

Every send (the API, `hubctl send`, routing's auto-replies) comes through `MessageService.send`:

1. the addressee is resolved (case, customer or identifier: one or two reads);
2. the channel is chosen (`reply`: the case's, else the customer's, latest inbound conversation;
   `preferred`: the golden record's preferred channel; or an explicit channel), with the
   recipient and threading kept from that conversation (`ReplyTarget`);
3. consent, the channel's customer service window and the provider's own limits (`check`) are
   enforced: a message the hub can tell it must not send is refused with its reason, and nothing
   is queued;
4. the message becomes an outbound contact (`status: queued`) on the customer's timeline and
   the case, and goes on the outbound queue (one FIFO group per customer and channel, so a
   customer's messages on a channel arrive in the order they were sent).

An idempotency key makes the whole call repeatable: the same key (per API key) within
`IDEMPOTENCY_HOURS` answers with the same message and queues nothing again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from chalicelib.adapters.channels.sending import ChannelSender, ExtendedWindow, window_hours
from chalicelib.adapters.queue.base import OutgoingMessage, Queue
from chalicelib.adapters.store.base import Store
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.ids import digest_id, group_id, new_id
from chalicelib.domain.models import (
    Case,
    Channel,
    Contact,
    ContentType,
    Customer,
    Direction,
    OutboundStatus,
    Party,
    ReplyTarget,
    Resolution,
    StatusChange,
)
from chalicelib.domain.outbound import OutboundMessage, ReplyContext, TemplateMessage
from chalicelib.errors import (
    ConflictError,
    InvalidIdentifierError,
    NotFoundError,
    RequestRejectedError,
    SendRefusedError,
    UnsendableMessageError,
)
from chalicelib.service.send_request import SendRequest

logger = logging.getLogger(__name__)

IDEMPOTENCY_HOURS = 24
EMAIL_THREAD_PREFIX = "email:"


@dataclass(frozen=True)
class Accepted:
    """A queued message, as the API answers it (`202`), or an earlier one an idempotency key named."""

    contact: Contact
    repeated: bool = False

    def view(self) -> dict:
        contact = self.contact
        return {"id": contact.id, "status": (contact.status or OutboundStatus.QUEUED).value,
                "channel": contact.channel.value, "provider": contact.provider, "account": contact.account,
                "to": contact.metadata.get("to"), "case_id": contact.case_id, "customer_id": contact.customer_id}


@dataclass(frozen=True)
class Route:
    """Where one message goes: the conversation it continues, or a new one."""

    channel: Channel
    provider: str
    account: str
    to: str
    reply: ReplyContext
    #: When the customer last wrote on this channel and account (service windows run from it).
    last_inbound_at: datetime | None


class MessageService:
    def __init__(
        self,
        *,
        store: Store,
        outbound_queue: Callable[[], Queue],
        senders: Callable[[str], ChannelSender | None],
        providers_for: Callable[[Channel], list[str]],
        default_region: str | None,
        clock: Callable[[], datetime],
        consent_allows: Callable[[Customer, Channel, str], bool],
    ) -> None:
        self._store = store
        self._queue = outbound_queue
        self._senders = senders
        self._providers_for = providers_for
        self._region = default_region
        self._clock = clock
        self._consent_allows = consent_allows

    # --- the one way in ----------------------------------------------------------------------------

    def auto_replies(self, contact: Contact, customer: Customer, case: Case) -> list[dict]:
        """Send the replies routing asked for (`contact.routing.replies`) on the contact's own
        conversation, once per contact and rule (their ids derive from both, so reprocessing the
        contact queues nothing twice), subject to consent and windows like any send. Returns
        what each did, for the contact to record: the message id, or why it was not sent."""
        from chalicelib.domain.ids import stable_id
        from chalicelib.service.send_request import Addressee

        outcomes = []
        millis = int(contact.received_at.timestamp() * 1000)
        own = _own_target(contact, customer)
        for intent in contact.routing.replies:
            message_id = stable_id("ct", f"auto-reply:{contact.id}:{intent.rule}", millis=millis)
            request = SendRequest(to=Addressee(case_id=case.id), text=intent.text)
            try:
                accepted = self.send(request, origin=f"routing:{intent.rule}", human=False, message_id=message_id,
                                     addressee=(customer, case), reply_target=own)
            except (SendRefusedError, UnsendableMessageError) as refused:
                outcomes.append({"rule": intent.rule, "sent": False, "reason": refused.code,
                                 "detail": refused.message})
                continue
            outcomes.append({"rule": intent.rule, "sent": True, "message_id": accepted.contact.id,
                             "channel": accepted.contact.channel.value})
        return outcomes

    def send(self, request: SendRequest, *, origin: str, idempotency_scope: str | None = None,
             human: bool = True, message_id: str | None = None,
             addressee: tuple[Customer, Case | None] | None = None,
             reply_target: ReplyTarget | None = None, agent_reply: dict[str, str] | None = None,
             fallback_template: TemplateMessage | None = None, dry_run: bool = False) -> Accepted:
        """Queue `request` or refuse it (`SendRefusedError`, `NotFoundError`, `RequestRejectedError`).
        `origin` says who asked (`api:<key>`, `routing:<rule>`, `cli`, `callback:<destination>`);
        `human` is False for automatic messages (they never use Messenger's human-agent
        extension); `message_id` fixes the contact id (auto-replies: derived from the contact
        answered; agent replies: from the vendor's delivery id), and a second send with it
        returns the first message; `reply_target` is the conversation `channel: reply` continues
        instead of the case's latest (auto-replies: the contact's own); `agent_reply` says which
        agent wrote it on which ticket (`metadata.agent_reply`).

        `fallback_template` is what goes instead of the free text outside a service window, in
        place of the sender's configured one (proactive messages bring their own, rendered for the
        customer). `dry_run` runs every check and answers with the contact that would be queued,
        but writes and queues nothing (explain): an idempotency key is then not remembered, and an
        earlier message with `message_id` is not looked up."""
        now = self._clock()
        contact_id = message_id
        if request.idempotency_key is not None and not dry_run:
            scope = idempotency_scope or origin
            # A fresh, time-ordered id, remembered under the key for 24 h: a repeat within them
            # gets the first call's id; after them the key names a new message (and never
            # overwrites the old one, which an id derived from the key would).
            fresh = new_id("ct", millis=int(now.timestamp() * 1000))
            key = "send:" + digest_id("idem", f"{scope}:{request.idempotency_key}")
            contact_id = self._store.remember(key, value=fresh,
                                              expires_at=now + timedelta(hours=IDEMPOTENCY_HOURS), now=now) or fresh
            if contact_id != fresh and (repeated := self._repeated(contact_id)) is not None:
                return repeated
            # Else the first call stopped between remembering the key and recording: finish it now.
        customer, case = addressee or self._addressee(request)
        route = self._route(request, customer, case, reply_target)
        sender = self._sender(route)
        self._check_consent(customer, route.channel, request.purpose)
        template, tag = self._window(request, route, sender, now, human=human, fallback_template=fallback_template)
        text, html, attachments = request.text, request.html, request.attachments
        if template is not None and request.template is None:
            # Outside the window the configured fallback template goes instead of the free text.
            text, html, attachments = None, None, []
        contact_id = contact_id or new_id("ct", millis=int(now.timestamp() * 1000))
        case_id = case.id if case is not None else self._case_for(customer)
        message = OutboundMessage(
            id=contact_id, customer_id=customer.id, case_id=case_id, channel=route.channel, provider=route.provider,
            account=route.account, to=route.to, text=text, html=html,
            subject=request.subject, attachments=attachments, template=template, reply=route.reply,
            message_id=_email_message_id(contact_id, route) if route.channel == Channel.EMAIL else None,
            tag=tag, purpose=request.purpose, origin=origin, agent_reply=agent_reply, queued_at=now,
        )
        problems = sender.check(message)
        if problems:
            raise UnsendableMessageError(
                "; ".join(f"{p.field}: {p.message}" for p in problems),
                detail={"fields": {p.field: p.message for p in problems}},
            )
        contact = outbound_contact(message, now)
        if dry_run:
            return Accepted(contact)
        # Inbound mail keys threads by the ids without their angle brackets (email/mime.py).
        thread_keys = [EMAIL_THREAD_PREFIX + message.message_id.strip("<>")] if message.message_id else []
        if message_id is not None and request.idempotency_key is None:
            # The id derives from what caused the message (the contact an auto-reply answers, the
            # vendor's delivery of an agent's reply): the write itself is the repeat check.
            try:
                self._store.commit_outbound(contact, thread_keys=thread_keys, only_new=True)
            except ConflictError:
                repeated = self._repeated(message_id)
                if repeated is not None:
                    return repeated
                raise
        else:
            self._store.commit_outbound(contact, thread_keys=thread_keys)
        self._queue().send([queued(message)])
        return Accepted(contact)

    def _repeated(self, contact_id: str) -> Accepted | None:
        """The message an earlier call made with this id, if it got as far as recording it. Its
        contact is never written again (that would put a message already sent back to `queued`);
        one still `queued` is queued again, since the earlier call may have stopped between the
        record and the queue: the queue's deduplication on the id and the worker's status check
        keep that to one send."""
        existing = self._store.get_contact(contact_id)
        if existing is None:
            return None
        body = existing.raw.get("outbound")
        if existing.status == OutboundStatus.QUEUED and isinstance(body, dict):
            self._queue().send([queued(OutboundMessage.model_validate(body))])
        return Accepted(existing, repeated=True)

    # --- who -----------------------------------------------------------------------------------------

    def _addressee(self, request: SendRequest) -> tuple[Customer, Case | None]:
        to = request.to
        if to.case_id is not None:
            case = self._store.get_case(to.case_id)
            if case is None:
                raise NotFoundError(f"case {to.case_id} not found")
            return self._customer(case.customer_id), case
        if to.customer_id is not None:
            return self._customer(to.customer_id), None
        try:
            identifier = Identifier.parse(to.identifier or "", default_region=self._region)
        except (InvalidIdentifierError, ValueError) as exc:
            raise RequestRejectedError(f"to.identifier: {exc}") from None
        owner = self._store.find_customer_ids([identifier]).get(identifier.key)
        if owner is None:
            raise NotFoundError(f"no customer holds {identifier.key}")
        return self._customer(owner), None

    def customer(self, customer_id: str) -> Customer:
        """The customer messages to `customer_id` go to (the survivor of a merge). Raises
        `NotFoundError` for an unknown or erased customer."""
        return self._customer(customer_id)

    def _customer(self, customer_id: str) -> Customer:
        customer = self._store.get_customer(customer_id)
        # An absorbed customer's messages go to the one that absorbed it.
        for _ in range(3):
            if customer is None or customer.merged_into is None:
                break
            customer = self._store.get_customer(customer.merged_into)
        if customer is None or customer.erasing:
            raise NotFoundError(f"customer {customer_id} not found")
        return customer

    def _case_for(self, customer: Customer) -> str:
        if customer.open_case is not None:
            return customer.open_case.id
        targets = sorted(customer.reply_targets.values(), key=lambda t: t.at)
        if targets:
            return targets[-1].case_id
        raise SendRefusedError("no_reachable_channel", f"customer {customer.id} has no case to send on")

    # --- where -----------------------------------------------------------------------------------------

    def _route(self, request: SendRequest, customer: Customer, case: Case | None,
               reply_target: ReplyTarget | None = None) -> Route:
        channel = request.explicit_channel
        if request.channel == "preferred":
            preferred = customer.attributes.get("preferred_channel")
            channel = _channel_or_none(preferred.value if preferred is not None else None)
        if channel is None:
            target = reply_target or _reply_target(customer, case)
            if target is None:
                raise SendRefusedError("no_reachable_channel", "the customer never wrote on a channel the hub can "
                                       "answer on; name an explicit channel")
            return _route_of(target)
        return self._route_on(channel, request, customer, case)

    def _route_on(self, channel: Channel, request: SendRequest, customer: Customer, case: Case | None) -> Route:
        """An explicit channel: the customer's latest conversation on it (same provider and
        account if named), else a new one from the configured account to an identifier."""
        targets = [t for t in customer.reply_targets.values() if _same_channel(t.channel, channel)
                   and (request.provider is None or t.provider == request.provider)
                   and (request.account is None or t.account == request.account)]
        if case is not None and case.last_inbound is not None and case.last_inbound in targets:
            return _route_of(case.last_inbound)
        if targets:
            return _route_of(max(targets, key=lambda t: t.at))
        providers = [request.provider] if request.provider else self._providers_for(channel)
        for provider in providers:
            sender = self._senders(provider)
            if sender is None or channel not in sender.channels:
                continue
            account = request.account or sender.default_account(channel)
            to = sender.recipient_for(channel, customer.identifiers)
            if account is not None and to is not None:
                return Route(channel, provider, account, to, ReplyContext(), None)
        raise SendRefusedError("no_reachable_channel", f"no configured {channel.value} sender can reach the customer "
                               f"(no conversation on {channel.value} and no identifier it can send to)")

    def _sender(self, route: Route) -> ChannelSender:
        sender = self._senders(route.provider)
        if sender is None:
            raise SendRefusedError("no_reachable_channel", f"channel provider {route.provider} has no sending "
                                   f"configuration (channels.{route.provider})")
        if not sender.sends_from(route.channel, route.account):
            raise SendRefusedError("no_reachable_channel", f"the hub is not configured to send {route.channel.value} "
                                   f"from {route.account} (channels.{route.provider})")
        return sender

    # --- whether ------------------------------------------------------------------------------------

    def _check_consent(self, customer: Customer, channel: Channel, purpose: str) -> None:
        if not self._consent_allows(customer, channel, purpose):
            raise SendRefusedError("consent_refused", f"the customer has not consented to {purpose} messages on "
                                   f"{channel.value}", status=409)

    def _window(self, request: SendRequest, route: Route, sender: ChannelSender, now: datetime, *,
                human: bool, fallback_template: TemplateMessage | None = None
                ) -> tuple[TemplateMessage | None, str | None]:
        """The template and message tag to send with, given the channel's service window.
        Outside it, `fallback_template` (the caller's) goes before the sender's configured one."""
        hours = window_hours(route.channel)
        if hours is None or request.template is not None:
            return request.template, None
        opened = route.last_inbound_at
        if opened is not None and now < opened + timedelta(hours=hours):
            return None, None
        extended: ExtendedWindow | None = sender.extended_window(route.channel, route.account)
        if human and extended is not None and opened is not None and now < opened + timedelta(hours=extended.hours):
            return None, extended.tag
        fallback = fallback_template or sender.fallback_template(route.channel, route.account)
        if fallback is not None:
            return fallback, None
        if opened is None:
            # No conversation to be outside of: the business opens one, which only a template may.
            raise SendRefusedError(
                "template_required",
                f"the customer has never written on {route.channel.value} to {route.account}: a conversation "
                "the business starts needs a template",
                detail={"channel": route.channel.value, "account": route.account},
            )
        raise SendRefusedError(
            "outside_service_window",
            f"the customer has not written on {route.channel.value} to {route.account} within {hours} hours "
            f"(last: {opened.isoformat()}); send a template",
            detail={"channel": route.channel.value, "account": route.account, "last_inbound_at": opened.isoformat()},
        )


# --- the outbound contact ------------------------------------------------------------------------------


def outbound_contact(message: OutboundMessage, now: datetime) -> Contact:
    """The contact a queued message is on the timeline and the case."""
    metadata: dict = {"origin": message.origin, "to": message.to, "purpose": message.purpose}
    if message.agent_reply:
        metadata["agent_reply"] = dict(message.agent_reply)
    if message.message_id:
        metadata["message_id"] = message.message_id
    if message.template is not None:
        metadata["template"] = message.template.model_dump()
    if message.tag:
        metadata["tag"] = message.tag
    return Contact(
        id=message.id, direction=Direction.OUTBOUND, provider=message.provider, channel=message.channel,
        provider_message_id="", account=message.account, sender=Party(), received_at=now, sent_at=None,
        content_type=ContentType.MEDIA if message.attachments and not message.text else ContentType.TEXT,
        text=message.text, subject=message.subject,
        attachments=[_attachment(a) for a in message.attachments], metadata=metadata,
        customer_id=message.customer_id, case_id=message.case_id, case_reason="outbound",
        resolution=Resolution(customer_id=message.customer_id, created_customer=False, rule="outbound"),
        status=OutboundStatus.QUEUED, status_history=[StatusChange(at=now, status=OutboundStatus.QUEUED)],
        raw={"outbound": message.model_dump(mode="json")},
    )


def queued(message: OutboundMessage) -> OutgoingMessage:
    """The queue message of `message`: one FIFO group per customer and channel, deduplicated by id."""
    return OutgoingMessage(body=message.model_dump_json(), group=group_id(f"{message.customer_id}:{message.channel}"),
                           dedupe_id=message.id)


def _attachment(attachment):
    from chalicelib.domain.models import Attachment

    return Attachment(url=attachment.url, content_type=attachment.content_type, filename=attachment.filename)


def _reply_target(customer: Customer, case: Case | None) -> ReplyTarget | None:
    if case is not None and case.last_inbound is not None:
        return case.last_inbound
    if not customer.reply_targets:
        return None
    return max(customer.reply_targets.values(), key=lambda t: t.at)


def _own_target(contact: Contact, customer: Customer) -> ReplyTarget | None:
    """The conversation `contact` belongs to, as the customer remembers it: its own target, else
    the newest on its channel and provider (a newer message there replaced it; senders write
    `account` in their own form, so it is not compared). Not the case's latest inbound message:
    that can be on another channel, since providers' timestamps differ and a late redelivery
    keeps its own."""
    same = [t for t in customer.reply_targets.values()
            if t.provider == contact.provider and _same_channel(contact.channel, t.channel)]
    return next((t for t in same if t.contact_id == contact.id), None) or max(same, key=lambda t: t.at, default=None)


def _route_of(target: ReplyTarget) -> Route:
    return Route(target.channel, target.provider, target.account, target.to, target.reply, target.at)


def _same_channel(heard: Channel, wanted: Channel) -> bool:
    """SMS and MMS are one conversation: a customer heard by MMS is answered by SMS and back."""
    phone = (Channel.SMS, Channel.MMS)
    return heard == wanted or (heard in phone and wanted in phone)


def _channel_or_none(value: object) -> Channel | None:
    try:
        return Channel(str(value)) if value else None
    except ValueError:
        return None


def _email_message_id(contact_id: str, route: Route) -> str:
    """`<contact id@domain of our mailbox>`: unique, and stable across retries of the send."""
    domain = route.account.rpartition("@")[2] or "omnichannel-hub.invalid"
    return f"<{contact_id.lower()}@{domain}>"
