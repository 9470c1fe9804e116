"""Telegram sender: reply targets from the stored update fixtures, check(), the Bot API requests
(sendMessage, sendPhoto, sendDocument) and Telegram's answers (exact bytes,
tests/fixtures/telegram/send/) mapped to outcomes and errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chalicelib.adapters.channels.sending import sender_class
from chalicelib.adapters.channels.telegram.adapter import TelegramAdapter, TelegramSettings
from chalicelib.adapters.channels.telegram.sender import MAX_CAPTION, MAX_TEXT, TelegramSender, outcome
from chalicelib.adapters.connectors.http import HttpResponse
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.models import Channel, ReplyContext
from chalicelib.domain.outbound import OutboundAttachment
from chalicelib.errors import PermanentDeliveryError, RecipientOptedOutError, RetryableDeliveryError
from chalicelib.secrets import SecretResolver
from tests.contract.channels.telegram import BOT_ID, CASE
from tests.support.send_fixtures import ScriptedHttp, answer, contact_from, outbound, sender

TOKEN = f"{BOT_ID}:AAHcurrentTokenOfTheSupportBot_0123456789"
OLD_TOKEN = f"{BOT_ID}:AAHrevokedTokenOfTheSupportBot_012345678"
ENV = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_OLD_BOT_TOKEN": OLD_TOKEN, "OTHER_BOT_TOKEN": "42:AAHanotherBot"}
BASE = "https://api.telegram.org"


def settings(**overrides) -> dict:
    return {**CASE.settings, "bot_tokens": ["env:TELEGRAM_BOT_TOKEN"], **overrides}


def telegram(*answers, **overrides) -> tuple[TelegramSender, ScriptedHttp]:
    http = ScriptedHttp(*answers)
    return sender(TelegramSender, TelegramSettings, settings(**overrides), http, ENV), http


def contact(fixture: str):
    adapter = TelegramAdapter(TelegramSettings.model_validate(CASE.settings), SecretResolver({}))
    return contact_from(adapter, "telegram", fixture)


def reply(**fields):
    defaults = {"account": str(BOT_ID), "to": "123456789", "text": "Olá Ana, how can we help?"}
    return outbound(channel="telegram", provider="telegram", **{**defaults, **fields})


# --- wiring and configuration ----------------------------------------------------------------------


def test_the_adapter_names_this_sender_and_a_receive_only_configuration_stays_valid():
    assert sender_class(TelegramAdapter.sender) is TelegramSender
    parsed = TelegramSettings.model_validate(CASE.settings)
    assert parsed.bot_tokens == [] and parsed.api_base_url == BASE
    assert TelegramSettings.model_validate(settings(bot_tokens="env:TELEGRAM_BOT_TOKEN")).bot_tokens
    with pytest.raises(ValidationError, match="scheme and host"):
        TelegramSettings.model_validate(settings(api_base_url="api.telegram.org"))


def test_the_account_is_the_bot_and_only_with_a_token():
    configured, _ = telegram()
    assert configured.default_account(Channel.TELEGRAM) == str(BOT_ID)
    assert configured.sends_from(Channel.TELEGRAM, str(BOT_ID))
    assert not configured.sends_from(Channel.TELEGRAM, "42")
    receive_only = sender(TelegramSender, TelegramSettings, CASE.settings, ScriptedHttp())
    assert receive_only.default_account(Channel.TELEGRAM) is None


def test_a_telegram_user_id_is_a_recipient():
    sender_, _ = telegram()
    ids = [Identifier.parse("phone:+4915123456789"), Identifier.parse("telegram:123456789")]
    assert sender_.recipient_for(Channel.TELEGRAM, ids) == "123456789"
    assert sender_.recipient_for(Channel.TELEGRAM, ids[:1]) is None


# --- reply targets from what the parser keeps ------------------------------------------------------


def test_a_private_message_is_answered_in_the_chat_quoting_it():
    target = TelegramSender.reply_target(contact("text"))
    assert (target.channel, target.provider, target.account, target.to) == (Channel.TELEGRAM, "telegram", str(BOT_ID), "123456789")
    assert target.reply == ReplyContext(provider_message_id="4711")
    assert target.at.isoformat() == "2026-01-01T00:00:00+00:00"


def test_a_supergroup_message_is_answered_in_the_group():
    target = TelegramSender.reply_target(contact("document_supergroup"))
    assert (target.to, target.reply.provider_message_id) == ("-1001234567890", "4713")


def test_an_edit_is_answered_quoting_the_edited_message_at_its_edit_time():
    target = TelegramSender.reply_target(contact("edited_message"))
    assert target.reply.provider_message_id == "4711"
    assert target.at.isoformat() == "2026-01-01T00:02:00+00:00"


def test_a_button_press_is_answered_in_its_chat_without_quoting():
    target = TelegramSender.reply_target(contact("callback_query"))
    assert target.to == "123456789" and target.reply == ReplyContext()


def test_a_forum_topic_message_is_answered_in_its_topic():
    stored = contact("text")
    in_topic = stored.model_copy(update={"metadata": {**stored.metadata, "topic_id": 77}})
    assert TelegramSender.reply_target(in_topic).reply == ReplyContext(provider_message_id="4711", thread="77")
    assert TelegramSender.reply_target(stored.model_copy(update={"metadata": {}})) is None


# --- check -----------------------------------------------------------------------------------------


def test_text_up_to_4096_utf16_units_passes_and_emoji_count_twice():
    sender_, _ = telegram()
    assert sender_.check(reply(text="a" * MAX_TEXT)) == []
    assert [p.field for p in sender_.check(reply(text="a" * (MAX_TEXT + 1)))] == ["text"]
    assert sender_.check(reply(text="👋" * (MAX_TEXT // 2))) == []
    assert [p.field for p in sender_.check(reply(text="👋" * (MAX_TEXT // 2 + 1)))] == ["text"]


def test_with_an_attachment_the_text_is_a_caption_of_at_most_1024():
    sender_, _ = telegram()
    pdf = [OutboundAttachment(url="https://files.example.com/invoice.pdf")]
    assert sender_.check(reply(text="a" * MAX_CAPTION, attachments=pdf)) == []
    [problem] = sender_.check(reply(text="a" * (MAX_CAPTION + 1), attachments=pdf))
    assert problem.field == "text" and "caption" in problem.message


def test_attachments_one_by_url_of_a_type_telegram_fetches():
    sender_, _ = telegram()
    photo = OutboundAttachment(url="https://files.example.com/receipt", content_type="image/jpeg")
    word = OutboundAttachment(url="https://files.example.com/letter.docx")
    ftp = OutboundAttachment(url="ftp://files.example.com/a.pdf")
    assert sender_.check(reply(attachments=[photo])) == []
    assert [p.field for p in sender_.check(reply(attachments=[photo, photo]))] == ["attachments"]
    assert [p.field for p in sender_.check(reply(attachments=[word]))] == ["attachments[0]"]
    assert [p.field for p in sender_.check(reply(attachments=[ftp]))] == ["attachments[0].url"]


def test_recipients_templates_and_empty_messages_are_refused_by_field():
    sender_, _ = telegram()
    assert sender_.check(reply(to="@acme_channel")) == []
    assert [p.field for p in sender_.check(reply(to="anasouza"))] == ["to"]
    assert [p.field for p in sender_.check(reply(template={"name": "x", "language": "pt"}))] == ["template"]
    assert [p.field for p in sender_.check(reply(text=None))] == ["text"]


# --- the requests ----------------------------------------------------------------------------------


def test_a_reply_is_one_send_message_quoting_the_customers_message():
    sender_, http = telegram(answer("telegram", "ok"))

    result = sender_.send(reply(reply=ReplyContext(provider_message_id="4711")))

    [sent] = http.sent
    assert (sent.method, sent.url) == ("POST", f"{BASE}/bot{TOKEN}/sendMessage")
    assert sent.json() == {"chat_id": 123456789, "text": "Olá Ana, how can we help?",
                           "reply_parameters": {"message_id": 4711, "allow_sending_without_reply": True}}  # fmt: skip
    assert result.provider_message_id == "123456789:4714"
    assert result.metadata == {"chat_id": "123456789", "message_id": "4714"}


def test_topics_usernames_and_link_previews():
    sender_, http = telegram(answer("telegram", "ok"), link_previews=False)
    sender_.send(reply(to="-1001234567890", reply=ReplyContext(thread="77")))
    assert http.sent[0].json() == {"chat_id": -1001234567890, "message_thread_id": 77, "text": "Olá Ana, how can we help?",
                                   "link_preview_options": {"is_disabled": True}}  # fmt: skip


@pytest.mark.parametrize(("attachment", "method", "field"), [
    (OutboundAttachment(url="https://files.example.com/receipt.jpg"), "sendPhoto", "photo"),
    (OutboundAttachment(url="https://files.example.com/x", content_type="image/png"), "sendPhoto", "photo"),
    (OutboundAttachment(url="https://files.example.com/dl?id=7", filename="invoice-1042.pdf"), "sendDocument", "document"),
])  # fmt: skip
def test_an_attachment_is_sent_by_url_with_the_text_as_caption(attachment, method, field):
    sender_, http = telegram(answer("telegram", "ok"))
    sender_.send(reply(text="Your invoice", attachments=[attachment], reply=ReplyContext(provider_message_id="4713")))
    [sent] = http.sent
    assert sent.url == f"{BASE}/bot{TOKEN}/{method}"
    assert sent.json() == {"chat_id": 123456789, field: attachment.url, "caption": "Your invoice",
                           "reply_parameters": {"message_id": 4713, "allow_sending_without_reply": True}}  # fmt: skip


def test_a_revoked_token_is_followed_by_the_next_and_another_bots_token_is_never_used():
    rotating = ["env:OTHER_BOT_TOKEN", "env:TELEGRAM_OLD_BOT_TOKEN", "env:TELEGRAM_BOT_TOKEN"]
    sender_, http = telegram(answer("telegram", "unauthorized"), answer("telegram", "ok"), bot_tokens=rotating)

    sender_.send(reply())

    assert [s.url for s in http.sent] == [f"{BASE}/bot{OLD_TOKEN}/sendMessage", f"{BASE}/bot{TOKEN}/sendMessage"]


def test_only_other_bots_tokens_is_a_permanent_configuration_failure_without_a_call():
    sender_, http = telegram(bot_tokens=["env:OTHER_BOT_TOKEN"])
    with pytest.raises(PermanentDeliveryError, match=f"bot_id {BOT_ID}") as caught:
        sender_.send(reply())
    assert caught.value.provider_code == "no_token" and http.sent == []


def test_every_token_refused_is_permanent_and_the_token_never_shows():
    sender_, _ = telegram(answer("telegram", "unauthorized"))
    with pytest.raises(PermanentDeliveryError) as caught:
        sender_.send(reply())
    assert caught.value.provider_code == "401" and TOKEN not in caught.value.message


# --- Telegram's answers ----------------------------------------------------------------------------


def test_a_user_who_blocked_the_bot_is_an_opt_out():
    with pytest.raises(RecipientOptedOutError) as caught:
        outcome(answer("telegram", "blocked"))
    assert caught.value.provider_code == "403" and "blocked by the user" in caught.value.message


def test_a_bot_kicked_from_a_group_is_permanent_but_not_an_opt_out():
    with pytest.raises(PermanentDeliveryError) as caught:
        outcome(answer("telegram", "kicked"))
    assert not isinstance(caught.value, RecipientOptedOutError) and caught.value.provider_code == "403"


def test_flood_control_is_retryable_after_parameters_retry_after():
    with pytest.raises(RetryableDeliveryError) as caught:
        outcome(answer("telegram", "flood"))
    assert caught.value.retry_after == 2.0


def test_flood_control_without_parameters_is_retryable_without_a_delay():
    with pytest.raises(RetryableDeliveryError) as caught:
        outcome(answer("telegram", "flood_2016"))
    assert caught.value.retry_after is None


def test_an_unknown_chat_is_permanent_with_the_error_code():
    with pytest.raises(PermanentDeliveryError) as caught:
        outcome(answer("telegram", "chat_not_found"))
    assert caught.value.provider_code == "400" and "chat not found" in caught.value.message


def test_a_migrated_group_names_its_new_id():
    with pytest.raises(PermanentDeliveryError) as caught:
        outcome(answer("telegram", "migrated"))
    assert caught.value.detail == {"migrate_to_chat_id": -1001201784679}


def test_server_trouble_is_retryable_and_an_answer_without_ids_is_permanent():
    with pytest.raises(RetryableDeliveryError):
        outcome(HttpResponse(502, {}, b"<html>Bad Gateway</html>"))
    with pytest.raises(PermanentDeliveryError, match="without chat.id"):
        outcome(HttpResponse(200, {}, b'{"ok":true,"result":{"date":1}}'))
