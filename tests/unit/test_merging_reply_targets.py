"""Reply targets through a customer merge and its unmerge (domain/merging.py): the survivor can
answer the person on every channel either record heard them on, by the newest message per
channel, provider and account; an unmerge gives the absorbed customer's targets back with it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.merging import merge, unmerge
from chalicelib.domain.models import Channel, Customer, ReplyContext, ReplyTarget
from chalicelib.hubconfig import parse_config

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
RULES = parse_config("identity: {max_per_kind: {email: 2}}").survivorship


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def target(contact: str, channel: Channel, provider: str, account: str, to: str, hours: float) -> ReplyTarget:
    return ReplyTarget(contact_id=contact, case_id=f"case_{contact}", channel=channel, provider=provider,
                       account=account, to=to, reply=ReplyContext(provider_message_id=f"m_{contact}"), at=at(hours))


def customer(customer_id: str, identifier: str, *targets: ReplyTarget, created: float = 0) -> Customer:
    return Customer(id=customer_id, identifiers=[Identifier.parse(identifier)], created_at=at(created),
                    updated_at=at(created), version=3, reply_targets={t.key: t for t in targets})


SMS_OLD = target("ct_1", Channel.SMS, "twilio", "+14155550100", "+4915123456789", 1)
SMS_NEW = target("ct_2", Channel.SMS, "twilio", "+14155550100", "+4915123456789", 4)
WHATSAPP = target("ct_3", Channel.WHATSAPP, "meta", "106540352242922", "4915123456789", 2)
EMAIL = target("ct_4", Channel.EMAIL, "ses", "support@acme.example", "jana@kunde.example", 3)


def merged(survivor: Customer, absorbed: Customer):
    return merge(survivor, absorbed, now=at(5), trigger="api:ops", matched=[], rules=RULES)


def test_the_survivor_keeps_the_newest_target_per_channel_provider_and_account_from_both():
    survivor = customer("cus_A", "phone:+4915123456789", SMS_OLD, WHATSAPP)
    absorbed = customer("cus_B", "email:jana@kunde.example", SMS_NEW, EMAIL, created=1)

    pair = merged(survivor, absorbed)

    assert pair.survivor.reply_targets == {SMS_NEW.key: SMS_NEW, WHATSAPP.key: WHATSAPP, EMAIL.key: EMAIL}


def test_an_older_target_of_the_absorbed_customer_does_not_replace_the_survivors():
    survivor = customer("cus_A", "phone:+4915123456789", SMS_NEW)
    absorbed = customer("cus_B", "email:jana@kunde.example", SMS_OLD, created=1)

    assert merged(survivor, absorbed).survivor.reply_targets == {SMS_NEW.key: SMS_NEW}


def test_on_a_tie_the_survivors_target_stays():
    tied = SMS_OLD.model_copy(update={"contact_id": "ct_9", "to": "+4915100000000"})
    survivor = customer("cus_A", "phone:+4915123456789", SMS_OLD)
    absorbed = customer("cus_B", "phone:+4915100000000", tied, created=1)

    assert merged(survivor, absorbed).survivor.reply_targets[SMS_OLD.key] == SMS_OLD


def test_unmerge_gives_the_absorbed_targets_back_and_restores_the_survivors_own():
    survivor = customer("cus_A", "phone:+4915123456789", SMS_OLD, WHATSAPP)
    absorbed = customer("cus_B", "email:jana@kunde.example", SMS_NEW, EMAIL, created=1)
    pair = merged(survivor, absorbed)
    # While merged, the person wrote on WhatsApp again: that target is the survivor's own now.
    later_whatsapp = WHATSAPP.model_copy(update={"contact_id": "ct_5", "at": at(6)})
    later = pair.survivor.model_copy(update={"reply_targets": {**pair.survivor.reply_targets,
                                                                WHATSAPP.key: later_whatsapp}})

    undone = unmerge(pair.record, later, pair.absorbed, now=at(7), actor="api:ops", rules=RULES)

    assert undone.survivor.reply_targets == {SMS_OLD.key: SMS_OLD, WHATSAPP.key: later_whatsapp}
    assert undone.absorbed.reply_targets == absorbed.reply_targets


def test_merge_then_unmerge_is_the_identity_on_reply_targets():
    survivor = customer("cus_A", "phone:+4915123456789", SMS_OLD)
    absorbed = customer("cus_B", "email:jana@kunde.example", EMAIL, created=1)
    pair = merged(survivor, absorbed)

    undone = unmerge(pair.record, pair.survivor, pair.absorbed, now=at(7), actor="api:ops", rules=RULES)

    assert (undone.survivor.reply_targets, undone.absorbed.reply_targets) == (survivor.reply_targets,
                                                                              absorbed.reply_targets)
