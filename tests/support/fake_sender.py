"""A stand-in `ChannelSender` for the consent and window tests, which are about the ledger and the
windows, not a provider: it derives a reply target the way a real one does (recipient, threading,
the provider's timestamp) and accepts what it is asked to send, keeping it in `sent`. Register it
with `register_fake_sender(monkeypatch, "twilio")`."""

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

    #: Every message any fake sender accepted, in order.
    sent: list[OutboundMessage] = []

    def send(self, message: OutboundMessage) -> SendOutcome:
        FakeSender.sent.append(message)
        return SendOutcome(provider_message_id=f"fake-{message.id}")


def register_fake_sender(monkeypatch, provider: str) -> None:
    """Name the fake as `provider`'s sender for the test's duration."""
    from chalicelib.adapters.channels.registry import CHANNELS

    monkeypatch.setattr(CHANNELS[provider], "sender", PATH)
