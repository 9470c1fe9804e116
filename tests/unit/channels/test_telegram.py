"""Telegram adapter: the setWebhook secret token, update_id dedupe, and which updates become contacts."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from chalicelib.adapters.channels.base import ParsedWebhook, SimulatedCustomer, WebhookRequest
from chalicelib.adapters.channels.telegram.adapter import TelegramAdapter, TelegramSettings
from chalicelib.domain.models import Channel, ContentType, InboundMessage
from chalicelib.errors import MalformedPayloadError, SignatureError
from chalicelib.secrets import SecretResolver
from chalicelib.service.identity import normalize_sender
from tests.support.ingest import ingest
from tests.support.fakes import MemoryQueue

TOKEN = "test-telegram-secret_01"
OLD_TOKEN = "previous-telegram-secret_00"
BOT_ID = 7000000001
AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
FIXTURE_NAMES = sorted(p.stem for p in (Path(__file__).parents[2] / "fixtures" / "telegram").glob("*.body"))
ANA = {"id": 123456789, "is_bot": False, "first_name": "Ana"}
PRIVATE = {"id": 123456789, "first_name": "Ana", "type": "private"}


def adapter(**overrides) -> TelegramAdapter:
    settings = {"secret_tokens": [TOKEN], "bot_id": BOT_ID, "bot_username": "acme_support_bot", **overrides}
    return TelegramAdapter(TelegramSettings.model_validate(settings), SecretResolver({}))


def request(body: bytes, token: str | None = TOKEN) -> WebhookRequest:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["x-telegram-bot-api-secret-token"] = token
    return WebhookRequest(method="POST", hook=None, headers=headers, query={}, body=body, received_at=AT)


def update(update_id: int = 1, kind: str = "message", **fields) -> bytes:
    """An update whose `kind` object is a private text message from Ana unless overridden (None removes)."""
    message = {"message_id": 10, "from": ANA, "chat": PRIVATE, "date": 1767225600, "text": "hello"}
    body = {k: v for k, v in {**message, **fields}.items() if v is not None}
    return json.dumps({"update_id": update_id, kind: body}).encode()


def parse(body: bytes, **settings) -> ParsedWebhook:
    telegram = adapter(**settings)
    req = request(body)
    telegram.verify(req)
    return telegram.parse(req)


def parse_fixture(load, name: str) -> ParsedWebhook:
    telegram = adapter()
    req = load("telegram", name).request()
    telegram.verify(req)
    return telegram.parse(req)


def only(parsed: ParsedWebhook) -> InboundMessage:
    assert parsed.ignored == [] and parsed.unhandled == []
    assert len(parsed.events) == 1
    assert isinstance(parsed.events[0], InboundMessage)
    return parsed.events[0]


def ignored(parsed: ParsedWebhook) -> str:
    assert parsed.events == [] and parsed.unhandled == []
    assert len(parsed.ignored) == 1
    return parsed.ignored[0]


def kept(parsed: ParsedWebhook):
    """The one update kept raw, as Telegram sent it."""
    assert parsed.events == [] and parsed.ignored == []
    [event] = parsed.unhandled
    assert event.provider == "telegram" and event.received_at == AT
    return event


# --- the secret token ------------------------------------------------------------------------------


def test_all_fixtures_are_stored():
    assert {"text", "photo", "document_supergroup", "edited_message", "callback_query"} <= set(FIXTURE_NAMES)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_verifies(load, name):
    fx = load("telegram", name)
    assert fx.headers["x-telegram-bot-api-secret-token"] == TOKEN
    adapter().verify(fx.request())


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing X-Telegram-Bot-Api-Secret-Token"),
        ("", "missing X-Telegram-Bot-Api-Secret-Token"),
        ("wrong", "does not match"),
        (TOKEN.upper(), "does not match"),  # PROVIDERS §4.5: a different case of the value is refused
        (TOKEN + " ", "does not match"),
        (TOKEN[:-1], "does not match"),
        ("tést", "does not match"),
    ],
)
def test_missing_or_wrong_token_is_401(load, token, reason):
    with pytest.raises(SignatureError, match=reason) as caught:
        adapter().verify(load("telegram", "text").request(headers={"x-telegram-bot-api-secret-token": token}))
    assert caught.value.http_status == 401


@pytest.mark.parametrize("tokens", [[OLD_TOKEN, TOKEN], [TOKEN, OLD_TOKEN]])
def test_rotated_tokens_verify(load, tokens):
    adapter(secret_tokens=tokens).verify(load("telegram", "text").request())


def test_the_token_does_not_cover_the_body(load):
    # What the scheme proves and what it does not: any body with the token verifies.
    adapter().verify(load("telegram", "text").request(body=b"anything"))


def test_secrets_resolve_on_use_not_at_construction(load, counting_resolver):
    resolver = counting_resolver({"TG_TOKEN": TOKEN})
    settings = TelegramSettings.model_validate({"secret_tokens": ["env:TG_TOKEN"], "bot_id": 1})
    telegram = TelegramAdapter(settings, resolver)
    assert resolver.calls == 0
    telegram.verify(load("telegram", "text").request())
    assert resolver.calls == 1


# --- messages --------------------------------------------------------------------------------------


def test_text_message(load):
    message = only(parse_fixture(load, "text"))
    assert (message.provider, message.channel, message.content_type) == ("telegram", Channel.TELEGRAM, ContentType.TEXT)
    assert message.text == "Olá! /start"
    assert message.provider_message_id == f"{BOT_ID}:912345678"
    assert message.dedupe_key == f"msg:telegram:{BOT_ID}:912345678"
    assert message.account == str(BOT_ID)
    assert [(h.kind, h.value, h.scope, h.verified) for h in message.sender.handles] == [
        ("telegram", "123456789", None, True)
    ]
    assert message.sender.display_name == "Ana Souza"
    assert message.sent_at == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert message.received_at == AT
    assert message.conversation_key == f"telegram:{BOT_ID}:123456789"
    assert message.thread_keys == [f"telegram:{BOT_ID}:123456789:4711"]
    assert message.metadata == {
        "update_id": 912345678, "message_id": 4711, "chat_id": 123456789, "chat_type": "private",
        "username": "anasouza", "language_code": "pt-br",
    }  # fmt: skip
    assert message.raw["message"]["entities"] == [{"offset": 6, "length": 6, "type": "bot_command"}]
    assert message.raw["update_id"] == 912345678


def test_the_handle_normalizes_to_a_global_telegram_identifier(load):
    message = only(parse_fixture(load, "text"))
    party = normalize_sender(message.sender.handles, message.sender.display_name, default_region="US").party
    assert [i.key for i in party.identifiers] == ["telegram:123456789"]


def test_a_redelivered_update_dedupes_and_another_bot_does_not_collide(load):
    first = only(parse_fixture(load, "text"))
    again = only(parse_fixture(load, "text"))
    assert first.dedupe_key == again.dedupe_key
    other_bot = adapter(bot_id=42)
    assert only(other_bot.parse(load("telegram", "text").request())).dedupe_key != first.dedupe_key
    queue = MemoryQueue()
    for _ in range(2):
        result = ingest(adapter(), load("telegram", "text").request(), queue, max_body_bytes=65536,
                        content_type="application/json")  # fmt: skip
        assert (result.response.status, result.response.body) == (200, "")
    assert len(queue.sent) == 1


def test_photo_takes_the_largest_size(load):
    message = only(parse_fixture(load, "photo"))
    assert message.content_type == ContentType.MEDIA
    assert message.text == "Damaged package"
    [attachment] = message.attachments
    assert attachment.provider_media_id == "AgACAgQAAxkBAAIBQWYlarge"
    assert (attachment.content_type, attachment.size, attachment.caption) == ("image/jpeg", 98765, "Damaged package")
    assert attachment.url is None  # getFile with the bot token turns a file_id into a URL
    assert message.metadata["type"] == "photo"


def test_photo_largest_by_area_whatever_the_order():
    sizes = [{"file_id": "big", "width": 1280, "height": 960}, {"file_id": "small", "width": 90, "height": 67}]
    assert only(parse(update(text=None, photo=sizes))).attachments[0].provider_media_id == "big"


def test_document_in_a_supergroup(load):
    message = only(parse_fixture(load, "document_supergroup"))
    [attachment] = message.attachments
    assert (attachment.provider_media_id, attachment.filename, attachment.content_type, attachment.size) == (
        "BQACAgQAAxkBAAIBQmYdoc", "invoice-1042.pdf", "application/pdf", 48213,
    )  # fmt: skip
    assert message.conversation_key == f"telegram:{BOT_ID}:-1001234567890"
    assert (message.metadata["chat_type"], message.metadata["chat_title"]) == ("supergroup", "Support group")
    assert message.sender.handles[0].value == "123456789"


def test_voice_note(load):
    message = only(parse_fixture(load, "voice"))
    assert message.content_type == ContentType.MEDIA
    assert (message.attachments[0].provider_media_id, message.attachments[0].content_type) == (
        "AwACAgQAAxkBAAIBRGYvoice", "audio/ogg",
    )  # fmt: skip
    assert message.metadata["type"] == "voice"


@pytest.mark.parametrize(
    ("field", "value", "mime"),
    [
        ("audio", {"file_id": "a1", "mime_type": "audio/mpeg", "file_name": "song.mp3"}, "audio/mpeg"),
        ("video", {"file_id": "v1", "mime_type": "video/mp4"}, "video/mp4"),
        ("video_note", {"file_id": "n1", "length": 240}, "video/mp4"),
        ("sticker", {"file_id": "s1", "emoji": "😀", "is_animated": False}, None),
    ],
)
def test_other_media_become_attachments_with_their_file_id(field, value, mime):
    message = only(parse(update(text=None, **{field: value})))
    assert (message.content_type, message.attachments[0].provider_media_id) == (ContentType.MEDIA, value["file_id"])
    assert message.attachments[0].content_type == mime


def test_an_animation_is_one_attachment_not_two():
    animation = {"file_id": "anim", "mime_type": "video/mp4"}
    message = only(parse(update(text=None, animation=animation, document=animation)))
    assert [a.provider_media_id for a in message.attachments] == ["anim"]
    assert message.metadata["type"] == "animation"


def test_location_and_venue(load):
    message = only(parse_fixture(load, "location"))
    assert message.content_type == ContentType.LOCATION
    assert (message.location.latitude, message.location.longitude) == (-23.550519, -46.633309)
    venue = {
        "location": {"latitude": 52.52, "longitude": 13.405}, "title": "Filiale Mitte", "address": "Unter den Linden 1",
    }  # fmt: skip
    message = only(parse(update(text=None, venue=venue, location=venue["location"])))
    assert (message.location.name, message.location.address, message.metadata["type"]) == (
        "Filiale Mitte", "Unter den Linden 1", "venue",
    )  # fmt: skip


@pytest.mark.parametrize("location", [{"latitude": 91, "longitude": 0}, {"latitude": "1", "longitude": 2}, {}])
def test_an_unreadable_location_is_unsupported_not_an_error(location):
    assert only(parse(update(text=None, location=location))).content_type == ContentType.UNSUPPORTED


def test_reply_threads_to_the_message_it_answers(load):
    message = only(parse_fixture(load, "reply_emoji"))
    assert message.text == "Obrigada 🙏 é o endereço certo?"
    assert message.metadata["reply_to"] == 4701
    assert message.thread_keys == [f"telegram:{BOT_ID}:123456789:4714", f"telegram:{BOT_ID}:123456789:4701"]


def test_forum_topics_get_a_thread_key():
    message = only(parse(update(chat={"id": -100, "type": "supergroup", "is_forum": True},
                                message_thread_id=77, is_topic_message=True)))  # fmt: skip
    assert f"telegram:{BOT_ID}:-100:topic:77" in message.thread_keys


def test_own_contact_share_is_an_unverified_phone(load):
    message = only(parse_fixture(load, "contact_own"))
    assert message.content_type == ContentType.TEXT
    assert message.text == "Ana Souza 5511987654321"
    telegram, phone = message.sender.handles
    assert (telegram.kind, telegram.verified) == ("telegram", True)
    assert (phone.kind, phone.value, phone.verified) == ("phone", "+5511987654321", False)
    assert message.metadata["own_contact"] is True
    party = normalize_sender(message.sender.handles, None, default_region="US").party
    assert [i.key for i in party.identifiers] == ["telegram:123456789"]
    assert [i.key for i in party.unverified] == ["phone:+5511987654321"]


def test_someone_elses_contact_is_metadata_not_a_handle():
    contact = {"phone_number": "+4915123456789", "first_name": "Jana", "user_id": 555}
    message = only(parse(update(text=None, contact=contact)))
    assert [h.kind for h in message.sender.handles] == ["telegram"]
    assert message.metadata["own_contact"] is False
    assert message.metadata["shared_contact"]["phone_number"] == "+4915123456789"


@pytest.mark.parametrize("field", ["poll", "dice", "story", "game"])
def test_content_not_read_yet_is_kept_as_unsupported(field):
    message = only(parse(update(text=None, **{field: {"id": "x"}})))
    assert (message.content_type, message.metadata["type"]) == (ContentType.UNSUPPORTED, field)
    assert message.raw["message"][field] == {"id": "x"}


def test_unreadable_media_and_unknown_content_are_unsupported():
    assert only(parse(update(text=None, photo="garbage"))).metadata == {
        "update_id": 1, "message_id": 10, "chat_id": 123456789, "chat_type": "private",
        "type": "photo", "unreadable": True,
    }  # fmt: skip
    assert only(parse(update(text=None, brand_new_thing={}))).metadata["type"] == "unknown"


# --- edits and button presses: decisions ----------------------------------------------------------


def test_an_edit_is_a_new_contact_marked_edited(load):
    original = only(parse_fixture(load, "text"))
    edit = only(parse_fixture(load, "edited_message"))
    assert edit.text == "Olá! Where is order #1042?"
    assert edit.dedupe_key != original.dedupe_key  # its own update_id: not swallowed as a duplicate
    assert (edit.metadata["edited"], edit.metadata["message_id"]) == (True, 4711)
    assert edit.metadata["original_date"] == "2026-01-01T00:00:00+00:00"
    assert edit.sent_at == datetime(2026, 1, 1, 0, 2, tzinfo=timezone.utc)
    assert edit.thread_keys == original.thread_keys
    assert "edited_message" in edit.raw


def test_a_live_location_update_is_ignored():
    body = update(kind="edited_message", text=None, location={"latitude": 1.0, "longitude": 2.0, "live_period": 900},
                  edit_date=1767225700)  # fmt: skip
    assert "live location update" in ignored(parse(body))


def test_a_button_press_is_an_interactive_contact_and_is_answered(load):
    parsed = parse_fixture(load, "callback_query")
    message = only(parsed)
    assert (message.content_type, message.text) == (ContentType.INTERACTIVE, "csat:yes")
    assert message.metadata["interactive_type"] == "callback_query"
    assert (message.metadata["reply_id"], message.metadata["reply_to"]) == ("csat:yes", 4720)
    assert message.conversation_key == f"telegram:{BOT_ID}:123456789"
    assert message.thread_keys == [f"telegram:{BOT_ID}:123456789:4720"]
    assert message.provider_message_id == f"{BOT_ID}:912345686"
    response = adapter().ack(parsed)
    assert (response.status, response.content_type) == (200, "application/json")
    assert json.loads(response.body) == {"method": "answerCallbackQuery", "callback_query_id": "4382bfdwdsb323b2d9"}


def test_a_button_under_an_inline_message_uses_the_users_private_chat():
    query = {"id": "q1", "from": ANA, "inline_message_id": "AAAA", "chat_instance": "1", "data": "yes"}
    message = only(parse(json.dumps({"update_id": 5, "callback_query": query}).encode()))
    assert message.conversation_key == f"telegram:{BOT_ID}:123456789"
    assert message.thread_keys == []
    assert message.metadata["inline_message_id"] == "AAAA"


def test_a_game_button_is_ignored():
    query = {"id": "q1", "from": ANA, "chat_instance": "1", "game_short_name": "tetris"}
    assert "game" in ignored(parse(json.dumps({"update_id": 5, "callback_query": query}).encode()))


# --- acknowledged but not contacts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("channel_post", "channel_post: a post in a channel the bot administers"),
        ("my_chat_member", "my_chat_member: the bot's own membership changed"),
    ],
)
def test_fixtures_that_are_ignored_with_a_reason(load, name, reason):
    assert reason in ignored(parse_fixture(load, name))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (update(**{"from": {"id": BOT_ID, "is_bot": True, "first_name": "Acme"}}), "our own bot's message"),
        (update(**{"from": {"id": 9, "is_bot": True, "username": "Acme_Support_Bot"}}), "our own bot's message"),
        (update(**{"from": {"id": 9, "is_bot": True, "first_name": "Other"}}), "a bot's message"),
        # An anonymous group admin: the message is the group's, `from` its stand-in bot.
        (update(**{"from": {"id": 1087968824, "is_bot": True, "first_name": "Group"}},
                sender_chat={"id": -100, "type": "supergroup"}), "sent on behalf of a chat"),
        # A linked channel's post, re-posted into its discussion group by Telegram (777000).
        (update(**{"from": {"id": 777000, "is_bot": False, "first_name": "Telegram"}},
                sender_chat={"id": -1001111, "type": "channel", "title": "Acme News"}, is_automatic_forward=True,
                chat={"id": -1002222, "type": "supergroup", "title": "Acme Community"}), "sent on behalf of a chat"),
        (update(**{"from": None}), "no from user"),
        (update(text=None, new_chat_members=[ANA]), "a service message (new_chat_members)"),
        (update(text=None, pinned_message={"message_id": 1}), "service message (pinned_message)"),
        (json.dumps({"update_id": 1, "channel_post": {}}).encode(), "a post in a channel"),
    ],
)
def test_updates_that_are_ignored_with_a_reason(body, reason):
    parsed = parse(body)
    assert reason in ignored(parsed)
    assert adapter().ack(parsed).status == 200


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (update(**{"from": {"id": "123"}}), "from.id is not a Telegram user id"),
        (update(chat=None), "without chat.id or message_id"),
        (json.dumps({"update_id": 1, "message": "text"}).encode(), "message is not an object"),
        (json.dumps({"update_id": 1}).encode(), "an update without content"),
        (json.dumps({"update_id": 1, "business_message": {"text": "Hallo"}}).encode(), "Telegram Business"),
        (json.dumps({"update_id": 1, "message_reaction": {}}).encode(), "a reaction"),
        (json.dumps({"update_id": 1, "brand_new_update": {"a": [1]}}).encode(), "'brand_new_update' is not known"),
    ],
)
def test_updates_the_adapter_cannot_read_are_kept_raw(body, reason):
    parsed = parse(body)
    event = kept(parsed)
    assert reason in event.reason and event.reason.startswith("update 1: ")
    assert event.raw == json.loads(body)
    assert adapter().ack(parsed).status == 200


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not valid UTF-8 JSON"),
        (b"\xc3\x28", "not valid UTF-8 JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"message":{}}', '"update_id"'),
        (b'{"update_id":"1"}', '"update_id"'),
        (b'{"update_id":true}', '"update_id"'),
        (b'{"update_id":1,"message":' + b"{" * 0 + b"[" * 60 + b"]" * 60 + b"}", "nested deeper"),
    ],
)
def test_malformed_bodies_are_400(body, reason):
    with pytest.raises(MalformedPayloadError, match=reason):
        parse(body)


def test_lone_surrogates_become_replacement_characters():
    message = only(parse(update(text="x").replace(b'"text": "x"', b'"text": "a \\ude4f b"')))
    assert message.text == "a \ufffd b"
    InboundMessage.model_validate_json(message.model_dump_json())


# --- ack, simulate, settings -----------------------------------------------------------------------


def test_ack_is_an_empty_200_for_messages(load):
    for parsed in (parse_fixture(load, "text"), ParsedWebhook(), ParsedWebhook(ignored=["x"])):
        response = adapter().ack(parsed)
        assert (response.status, response.body) == (200, "")


def test_simulated_request_carries_the_token_and_becomes_a_contact():
    customer = SimulatedCustomer(
        name="Jana Schmidt", phone="+4915123456789", email="j@example.com", text="Grüße 👋"
    )
    telegram = adapter(secret_tokens=[OLD_TOKEN, TOKEN])
    simulated = telegram.simulated_request(customer)
    assert simulated is not None and simulated.path == "/webhooks/telegram"
    assert simulated.headers["X-Telegram-Bot-Api-Secret-Token"] == OLD_TOKEN
    assert b"\\u00fc" in simulated.body  # escaped like Telegram's own JSON
    req = WebhookRequest(method="POST", hook=None, headers={k.lower(): v for k, v in simulated.headers.items()},
                         query={}, body=simulated.body, received_at=AT)  # fmt: skip
    telegram.verify(req)
    message = only(telegram.parse(req))
    assert (message.text, message.sender.display_name) == ("Grüße 👋", "Jana Schmidt")
    again = telegram.simulated_request(customer)
    assert again is not None and json.loads(again.body)["message"]["from"]["id"] == message.metadata["chat_id"]


def test_settings():
    settings = TelegramSettings.model_validate({"secret_tokens": [TOKEN], "bot_id": 1, "bot_username": "@Acme_Bot"})
    assert settings.bot_username == "acme_bot"
    assert TOKEN not in repr(settings) and TOKEN not in settings.model_dump_json()
    for bad in (
        {"secret_tokens": [], "bot_id": 1},
        {"secret_tokens": [TOKEN]},
        {"secret_tokens": [TOKEN], "bot_id": 0},
        {"secret_tokens": [TOKEN], "bot_id": 1, "bot_username": "a b"},
        {"secret_tokens": [TOKEN], "bot_id": 1, "bot_token": "x"},
    ):
        with pytest.raises(ValidationError):
            TelegramSettings.model_validate(bad)
