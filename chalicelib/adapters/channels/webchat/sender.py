"""The web chat's sender: the hub is the provider, so a reply goes into the visitor's outbox,
where the widget fetches it (`GET /webhooks/webchat/messages`, see service/visitor_outbox.py)."""

from __future__ import annotations

from typing import ClassVar

from chalicelib.adapters.channels.sending import ChannelSender, Problem, ReplyTarget, text_problem
from chalicelib.adapters.channels.webchat.adapter import MAX_ATTACHMENTS, MAX_TEXT, WebchatSettings
from chalicelib.domain.models import Channel, Contact, ReplyContext
from chalicelib.domain.outbound import OutboundMessage, OutboundStatus, SendOutcome
from chalicelib.errors import PermanentDeliveryError


class WebchatSender(ChannelSender[WebchatSettings]):
    key: ClassVar[str] = "webchat"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.WEBCHAT})
    docs_url: ClassVar[str] = "docs/channels/webchat.md"

    @classmethod
    def reply_target(cls, contact: Contact) -> ReplyTarget | None:
        # provider_message_id is `<site>/<visitor>/<client message id>` (see the adapter's parse).
        site, _, rest = contact.provider_message_id.partition("/")
        visitor = rest.partition("/")[0]
        if not site or not visitor:
            return None
        return ReplyTarget(contact_id=contact.id, case_id=contact.case_id, channel=Channel.WEBCHAT, provider=cls.key,
                           account=site, to=visitor, reply=ReplyContext(),
                           at=contact.sent_at or contact.received_at)

    def recipient_for(self, channel: Channel, identifiers) -> str | None:
        """The visitor the customer was on the default site (a web chat id is scoped to its site)."""
        site = self.default_account(channel)
        return next((i.value for i in identifiers if i.kind == "webchat" and i.scope == site), None)

    def default_account(self, channel: Channel) -> str | None:
        return self.settings.sites[0].id if channel == Channel.WEBCHAT and self.settings.sites else None

    def sends_from(self, channel: Channel, account: str) -> bool:
        return channel == Channel.WEBCHAT and any(site.id == account for site in self.settings.sites)

    def check(self, message: OutboundMessage) -> list[Problem]:
        problems = text_problem(message.text, MAX_TEXT)
        if len(message.attachments) > MAX_ATTACHMENTS:
            problems.append(Problem("attachments", f"the web chat takes at most {MAX_ATTACHMENTS} attachments"))
        if message.template is not None:
            problems.append(Problem("template", "the web chat has no templates; send text"))
        return problems

    def send(self, message: OutboundMessage) -> SendOutcome:
        outbox = self.runtime.visitor_outbox
        if outbox is None:
            raise PermanentDeliveryError("this hub has no web chat outbox")
        outbox.append(message.account, message.to, message, sent_at=self.runtime.clock())
        # Waiting in the outbox is as delivered as the web chat gets: the widget fetches it.
        return SendOutcome(provider_message_id=message.id, status=OutboundStatus.DELIVERED)
