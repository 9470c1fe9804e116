"""Telegram's row in the channel-adapter contract suite: a shared secret header, no body signature."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from tests.support.channel_contract import JSON, LEAF, TEXT, Case, fixture, known_objects, mostly, without

TOKEN = "test-telegram-secret_01"
BOT_ID = 7000000001

KEYS = ["message_id", "from", "chat", "id", "is_bot", "first_name", "username", "type", "date", "text", "caption",
        "photo", "file_id", "width", "height", "document", "voice", "sticker", "location", "latitude", "longitude",
        "venue", "contact", "phone_number", "user_id", "reply_to_message", "edit_date", "data"]  # fmt: skip
MEDIA = ["document", "voice", "audio", "video", "video_note", "sticker", "animation"]
OTHER = ["poll", "dice", "new_chat_members", "pinned_message", "brand_new_content"]
#: Weighted towards the updates that become contacts.
UPDATES = ["message"] * 4 + ["edited_message", "callback_query", "callback_query", "channel_post", "brand_new"]

_known = known_objects(KEYS)
_user_id = mostly(st.sampled_from([123456789, 123456789, BOT_ID]), st.integers(-(2**64), 2**64) | LEAF)
_user = st.fixed_dictionaries(
    {"id": _user_id}, optional={"is_bot": mostly(st.just(False), LEAF), "first_name": TEXT, "username": TEXT}
)
_chat = st.fixed_dictionaries(
    {"id": mostly(st.sampled_from([123456789, -1001234567890]))},
    optional={"type": mostly(st.sampled_from(["private", "supergroup"])), "title": TEXT},
)
_file = st.fixed_dictionaries(
    {"file_id": mostly(st.sampled_from(["AgAC1", "BQAC2"]))},
    optional={"mime_type": TEXT, "file_name": TEXT, "file_size": LEAF, "width": LEAF, "height": LEAF},
)
_point = st.fixed_dictionaries(
    {"latitude": mostly(st.floats(-100, 100), LEAF), "longitude": mostly(st.floats(-200, 200), LEAF)},
    optional={"live_period": LEAF},
)
_content = st.one_of(
    st.fixed_dictionaries({"text": mostly(TEXT)}),
    st.fixed_dictionaries(
        {"photo": mostly(st.lists(mostly(_file, JSON), max_size=3), JSON)}, optional={"caption": TEXT}
    ),
    st.sampled_from(MEDIA).flatmap(lambda field: st.fixed_dictionaries({field: mostly(_file, JSON)})),
    st.fixed_dictionaries({"location": mostly(_point, JSON)}),
    st.fixed_dictionaries({"venue": mostly(st.fixed_dictionaries({"location": _point, "title": TEXT}), JSON)}),
    st.fixed_dictionaries(
        {"contact": mostly(st.fixed_dictionaries({"phone_number": TEXT}, optional={"user_id": _user_id}))}
    ),
    st.sampled_from(OTHER).flatmap(lambda field: st.fixed_dictionaries({field: _known})),
)
_message = st.tuples(
    st.fixed_dictionaries(
        {"message_id": mostly(st.integers(1, 10**6)), "from": mostly(_user, JSON), "chat": mostly(_chat, JSON)},
        optional={
            "date": LEAF,
            "edit_date": LEAF,
            "reply_to_message": mostly(st.fixed_dictionaries({"message_id": LEAF}), JSON),
            "message_thread_id": LEAF,
            "is_topic_message": LEAF,
        },
    ),
    _content,
).map(lambda parts: {**parts[0], **parts[1]})
_callback = st.fixed_dictionaries(
    {
        "id": mostly(st.just("4382bfdwdsb323b2d9")),
        "from": mostly(_user, JSON),
        "data": mostly(st.just("csat:yes") | TEXT),
    },
    optional={"message": mostly(_message, JSON), "inline_message_id": TEXT},
)


@st.composite
def _update(draw) -> bytes:
    kind = draw(st.sampled_from(UPDATES))
    body = {"update_id": draw(mostly(st.integers(0, 2**31), LEAF))}
    body[kind] = draw(mostly(_callback if kind == "callback_query" else _message, _known))
    return json.dumps(body).encode()


_body, _headers = fixture("telegram", "text")

CASE = Case(
    settings={"secret_tokens": [TOKEN], "bot_id": BOT_ID, "bot_username": "acme_support_bot"},
    secret_values=(TOKEN,),
    hook=None,
    sample=_body,
    sample_headers=_headers,
    sign=lambda body: {"content-type": "application/json", "x-telegram-bot-api-secret-token": TOKEN},
    # Telegram signs nothing: the secret header proves the sender but covers no byte of the body
    # (PROVIDERS.md §4.2), so no change to the body could fail verify().
    tamper=None,
    strip=lambda body, headers: (body, without(headers, "x-telegram-bot-api-secret-token")),
    body_signed=False,
    payloads=_update(),
    unknown=json.dumps({"update_id": 9, "brand_new_update": {"id": 1, "text": "something new"}}).encode(),
)
