"""A stand-in `ChannelSender` for the consent and window tests, until the providers' own senders
land: it derives a reply target the way a real one does (recipient, threading, the provider's
timestamp) and sends nothing. Register it with `register_fake_sender(monkeypatch, "twilio")`."""

from __future__ import annotations

from chalicelib.adapters.channels.sending import ChannelSender
from chalicelib.domain.models import Channel, Contact, ReplyContext, ReplyTarget
from chalicelib.domain.outbound import OutboundMessage, SendOutcome

PATH = "tests.support.fake_sender:FakeSender"


class FakeSender(ChannelSender):
    key = "fake"
    channels = frozenset(Channel)
    docs_url = "https://example.invalid/fake-sender"

    @classmethod
    def reply_target(cls, contact: Contact) -> ReplyTarget | None:
        if not contact.sender.identifiers:
            return None
        return ReplyTarget(
            contact_id=contact.id, case_id=contact.case_id, channel=contact.channel, provider=contact.provider,
            account=contact.account, to=contact.sender.identifiers[0].value,
            reply=ReplyContext(provider_message_id=contact.provider_message_id),
            at=contact.sent_at or contact.received_at,
        )

    def send(self, message: OutboundMessage) -> SendOutcome:
        raise NotImplementedError("the fake sender only derives reply targets")


def register_fake_sender(monkeypatch, provider: str) -> None:
    """Name the fake as `provider`'s sender for the test's duration."""
    from chalicelib.adapters.channels.registry import CHANNELS

    monkeypatch.setattr(CHANNELS[provider], "sender", PATH)
