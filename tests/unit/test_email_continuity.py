"""Email continuity in the process step: unproved senders join the customer their address's
earlier unproved mail created, never one who proved the address, and never merge anyone."""

from __future__ import annotations


from chalicelib.adapters.blobs.local import LocalBlobStore
from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.domain.identity_rules import IdentityRules
from chalicelib.domain.models import Channel, Handle, InboundMessage, Sender
from chalicelib.hubconfig import parse_config
from chalicelib.service.identity import IdentifierCache
from chalicelib.service.process import Processor
from tests.support.fakes import Clock, MemoryQueue

ADDRESS = "Jana.Schmidt@Kunde.example"
KEY = "email:jana.schmidt@kunde.example"


def processor_for(tmp_path, config_text: str = "{}") -> tuple[Processor, SqliteStore]:
    config = parse_config(config_text)
    store = SqliteStore(":memory:")
    processor = Processor(
        store=store, delivery_queue=MemoryQueue(), config=config, cache=IdentifierCache(),
        default_region=lambda provider, account: "DE", clock=Clock(), blobs=LocalBlobStore(str(tmp_path / "blobs")),
        rules=IdentityRules(config.identity),
    )
    return processor, store


def mail(message_id: str, *, proved: bool) -> InboundMessage:
    return InboundMessage(
        provider="mailgun", channel=Channel.EMAIL, provider_message_id=message_id, account="support@acme.example",
        sender=Sender(handles=[Handle(kind="email", value=ADDRESS, verified=proved)]), text="Rechnung",
    )


def chat(message_id: str, *, visitor: str, email: str, proved_email: bool) -> InboundMessage:
    handles = [Handle(kind="webchat", value=visitor, scope="shop"),
               Handle(kind="email", value=email, verified=proved_email)]
    return InboundMessage(provider="webchat", channel=Channel.WEBCHAT, provider_message_id=message_id, account="shop",
                          sender=Sender(handles=handles), text="Hallo")


def test_unproved_mail_creates_then_joins_one_customer_holding_the_address_unproved(tmp_path):
    processor, store = processor_for(tmp_path)
    first = processor.process(mail("<1@k>", proved=False))
    second = processor.process(mail("<2@k>", proved=False))

    assert first.customer_id == second.customer_id
    customer = store.get_customer(first.customer_id)
    assert [i.key for i in customer.identifiers] == [KEY] and customer.unverified_identifiers == [KEY]
    assert store.find_customer_ids([customer.identifiers[0]]) == {KEY: customer.id}
    contact = store.get_contact(second.contact_id)
    assert contact.sender_verified is False
    assert contact.resolution.rule == "email_continuity"


def test_continuity_can_be_switched_off(tmp_path):
    processor, store = processor_for(tmp_path, "identity: {email_continuity: false}")
    first = processor.process(mail("<1@k>", proved=False))
    second = processor.process(mail("<2@k>", proved=False))

    assert first.customer_id != second.customer_id
    assert store.get_contact(first.contact_id).resolution.rule == "new_customer_without_linkable_identifier"


def test_unproved_mail_never_joins_a_customer_who_proved_the_address(tmp_path):
    processor, store = processor_for(tmp_path)
    proved = processor.process(mail("<1@k>", proved=True))
    forged = processor.process(mail("<2@k>", proved=False))

    assert forged.customer_id != proved.customer_id
    assert store.get_customer(forged.customer_id).identifiers == []
    outcomes = [d.outcome for d in store.get_contact(forged.contact_id).resolution.decisions]
    assert outcomes == ["held_by_verified_customer"]


def test_a_proved_mail_proves_the_continuity_customers_address(tmp_path):
    processor, store = processor_for(tmp_path)
    unproved = processor.process(mail("<1@k>", proved=False))
    proved = processor.process(mail("<2@k>", proved=True))

    assert proved.customer_id == unproved.customer_id
    assert store.get_customer(proved.customer_id).unverified_identifiers == []
    # From now on the address is proved: unproved mail no longer joins.
    forged = processor.process(mail("<3@k>", proved=False))
    assert forged.customer_id != proved.customer_id


def test_a_web_chat_visitors_typed_address_is_a_claim_not_continuity(tmp_path):
    processor, store = processor_for(tmp_path)
    email_customer = processor.process(mail("<1@k>", proved=False))
    visitor = processor.process(chat("m1", visitor="v-1", email=ADDRESS, proved_email=False))

    assert visitor.customer_id != email_customer.customer_id
    outcomes = {d.outcome for d in store.get_contact(visitor.contact_id).resolution.decisions}
    assert "unverified" in outcomes


def test_continuity_never_merges_customers(tmp_path):
    """A proved web chat login and the continuity customer of the same address stay apart until
    a proved contact ties them; the unproved mail itself never merges anything."""
    processor, store = processor_for(tmp_path)
    login = processor.process(chat("m1", visitor="v-1", email="other@kunde.example", proved_email=True))
    unproved = processor.process(mail("<1@k>", proved=False))
    again = processor.process(mail("<2@k>", proved=False))

    assert len({login.customer_id, unproved.customer_id}) == 2
    assert again.customer_id == unproved.customer_id
    assert store.get_customer(unproved.customer_id).merges == []
