"""Meta's way out: the WhatsApp Cloud API `/messages` call and the Messenger/Instagram Send API,
configured by the same `channels.meta` section as the webhook. https://developers.facebook.com/documentation/business-messaging/whatsapp/reference/messages/message-api

Neither API takes an idempotency key: a crash after Graph accepted a message and before the hub
recorded it sends it again on redelivery (docs/channels/meta.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from chalicelib.adapters.channels.meta import graph, messenger_sender, whatsapp_sender
from chalicelib.adapters.channels.meta.core import MetaSettings
from chalicelib.adapters.channels.sending import ChannelSender, ExtendedWindow, Problem, resolved_secrets
from chalicelib.domain.models import Channel, Contact, ReplyTarget
from chalicelib.domain.outbound import OutboundMessage, SendOutcome, TemplateMessage
from chalicelib.errors import PermanentDeliveryError

if TYPE_CHECKING:
    from chalicelib.domain.identifiers import Identifier

MESSAGING = frozenset({Channel.MESSENGER, Channel.INSTAGRAM})


class MetaSender(ChannelSender[MetaSettings]):
    """WhatsApp (by phone number id), Messenger (by Page) and Instagram (by professional account)."""

    key: ClassVar[str] = "meta"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.WHATSAPP}) | MESSAGING
    docs_url: ClassVar[str] = "https://developers.facebook.com/documentation/business-messaging/whatsapp/reference/messages/message-api"

    # --- pure -------------------------------------------------------------------------------------

    @classmethod
    def reply_target(cls, contact: Contact) -> ReplyTarget | None:
        if contact.channel == Channel.WHATSAPP:
            return whatsapp_sender.reply_target(contact)
        if contact.channel in MESSAGING:
            return messenger_sender.reply_target(contact)
        return None

    def recipient_for(self, channel: Channel, identifiers: Sequence[Identifier]) -> str | None:
        """WhatsApp: the phone number's digits (else a BSUID). Messenger and Instagram ids are
        scoped to the account the customer wrote to, so only a reply target can address them."""
        return whatsapp_sender.from_identifiers(identifiers) if channel == Channel.WHATSAPP else None

    def default_account(self, channel: Channel) -> str | None:
        if channel == Channel.WHATSAPP:
            return self.settings.whatsapp.number_default() if self.settings.whatsapp else None
        if channel in MESSAGING:
            configured = messenger_sender.accounts(self.settings, channel)
            return next(iter(configured)) if len(configured) == 1 else None
        return None

    def sends_from(self, channel: Channel, account: str) -> bool:
        if channel == Channel.WHATSAPP:
            return self.settings.whatsapp is not None and account in self.settings.whatsapp.numbers
        return channel in MESSAGING and account in messenger_sender.accounts(self.settings, channel)

    def extended_window(self, channel: Channel, account: str | None = None) -> ExtendedWindow | None:
        """Messenger's and Instagram's HUMAN_AGENT (7 days) where `human_agent` is enabled: for
        `account` when given, else only when every configured account of the channel enables it."""
        return messenger_sender.extended_window(self.settings, channel, account) if channel in MESSAGING else None

    def fallback_template(self, channel: Channel, account: str) -> TemplateMessage | None:
        whatsapp = self.settings.whatsapp
        if channel != Channel.WHATSAPP or whatsapp is None:
            return None
        number = whatsapp.numbers.get(account)
        return (number.fallback_template if number else None) or whatsapp.fallback_template

    def check(self, message: OutboundMessage) -> list[Problem]:
        if message.channel == Channel.WHATSAPP:
            return whatsapp_sender.check(self.settings, message)
        if message.channel in MESSAGING:
            return messenger_sender.check(self.settings, message)
        return [Problem("channel", f"Meta does not send on {message.channel.value}")]

    # --- the one provider call --------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendOutcome:
        problems = self.check(message)
        if problems:
            # `check` ran before queueing; a configuration changed since then fails here, unsent.
            raise PermanentDeliveryError("; ".join(f"{p.field}: {p.message}" for p in problems))
        if message.channel == Channel.WHATSAPP:
            return self._whatsapp(message)
        return self._messaging(message)

    def _whatsapp(self, message: OutboundMessage) -> SendOutcome:
        settings = self.settings
        assert settings.whatsapp is not None
        number = settings.whatsapp.numbers[message.account]
        url = f"{settings.api_base_url}/{settings.graph_version}/{message.account}/messages"
        tokens = self._tokens(number.access_tokens or settings.whatsapp.access_tokens)
        answer = graph.post(self.runtime.http, url, whatsapp_sender.payload(settings, message), tokens,
                            vendor="WhatsApp Cloud API")
        messages = answer.get("messages")
        first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else {}
        metadata = _strings(first, "message_status")
        contacts = answer.get("contacts")
        if isinstance(contacts, list) and contacts and isinstance(contacts[0], dict):
            metadata.update(_strings(contacts[0], "wa_id", "user_id"))
        return SendOutcome(provider_message_id=_id(first.get("id"), "messages[0].id"), metadata=metadata)

    def _messaging(self, message: OutboundMessage) -> SendOutcome:
        settings = self.settings
        account = messenger_sender.accounts(settings, message.channel)[message.account]
        vendor = "Messenger Send API" if message.channel == Channel.MESSENGER else "Instagram Send API"
        answer = graph.post(self.runtime.http, messenger_sender.endpoint(settings, message.channel, message.account),
                            messenger_sender.payload(settings, message), self._tokens(account.access_tokens),
                            vendor=vendor)
        return SendOutcome(provider_message_id=_id(answer.get("message_id"), "message_id"),
                           metadata=_strings(answer, "recipient_id"))

    def _tokens(self, references) -> list[str]:
        # An SSM or Secrets Manager hiccup passes; a missing secret ends in the dead letters.
        return resolved_secrets(self.secrets, references, what="Meta access token")


def _id(value: Any, field: str) -> str:
    if isinstance(value, str) and value:
        return value
    # Accepted but unnamed: sending again could duplicate the message, and no status could match it.
    raise PermanentDeliveryError(f"Meta accepted the message but its answer has no {field}")


def _strings(holder: dict, *keys: str) -> dict[str, str]:
    return {key: holder[key] for key in keys if isinstance(holder.get(key), str) and holder[key]}
