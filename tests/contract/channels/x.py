"""The X (Account Activity API) row of the channel-adapter contract suite."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from chalicelib.adapters.channels.x import adapter as x
from tests.support.channel_contract import JSON, LEAF, TEXT, Case, fixture, known_objects, mostly, without

SECRET = "test_x_consumer_secret"
US, CUSTOMER = "3001969357", "1221334455667788"

X_KEYS = ["type", "id", "id_str", "url", "expanded_url", "media_url_https", "video_info", "variants", "bitrate",
          "content_type", "text", "entities", "urls", "attachment", "media", "metadata", "name", "screen_name",
          "data", "recipient_id", "sender_id", "target"]  # fmt: skip
_known = known_objects(X_KEYS)
_ids = st.sampled_from([US, CUSTOMER, "42", "0"])
_an_id = mostly(_ids, st.sampled_from(["", "abc", "-1", "1" * 21]) | LEAF)
_timestamp = mostly(st.sampled_from(["1767225600123", "1767225605000"]), st.sampled_from(["", "9" * 14]) | LEAF)

_url = st.fixed_dictionaries(
    {"url": mostly(st.sampled_from(["https://t.co/a", "https://t.co/ab"]), TEXT)},
    optional={"expanded_url": mostly(st.just("https://example.com/x"), LEAF)},
)
_media = st.fixed_dictionaries(
    {"type": mostly(st.sampled_from(["photo", "video", "animated_gif", "sticker"]), LEAF)},
    optional={
        "id_str": _an_id,
        "url": mostly(st.just("https://t.co/ab"), LEAF),
        "media_url_https": mostly(st.sampled_from(["https://ton.twitter.com/x/a.jpg", "https://a/b.PNG"]), LEAF),
        "video_info": mostly(
            st.fixed_dictionaries(
                {"variants": st.lists(
                    mostly(st.fixed_dictionaries({"url": TEXT}, optional={"bitrate": LEAF, "content_type": TEXT}),
                           JSON),
                    max_size=3,
                )}
            ),
            JSON,
        ),
    },
)  # fmt: skip
_message_data = st.fixed_dictionaries(
    {},
    optional={
        "text": mostly(TEXT, LEAF),
        "entities": mostly(st.fixed_dictionaries({"urls": st.lists(mostly(_url, JSON), max_size=2)}), JSON),
        "attachment": mostly(st.fixed_dictionaries({"type": st.just("media"), "media": mostly(_media, JSON)}), JSON),
        "quick_reply_response": mostly(st.fixed_dictionaries({"type": st.just("options"), "metadata": TEXT}), JSON),
    },
)
_dm = st.fixed_dictionaries(
    {
        "type": mostly(st.just("message_create"), st.just("welcome_message") | LEAF),
        "id": _an_id,
        "message_create": mostly(
            st.fixed_dictionaries(
                {"sender_id": _an_id, "target": mostly(st.fixed_dictionaries({"recipient_id": _an_id}), JSON)},
                optional={"message_data": mostly(_message_data, JSON), "source_app_id": LEAF},
            ),
            _known,
        ),
    },
    optional={"created_timestamp": _timestamp, "initiated_via": JSON},
)
_read = st.fixed_dictionaries(
    {"sender_id": _an_id, "last_read_event_id": _an_id},
    optional={"created_timestamp": _timestamp, "target": mostly(st.fixed_dictionaries({"recipient_id": _an_id}), JSON)},
)
_user = st.fixed_dictionaries({}, optional={"name": TEXT, "screen_name": TEXT, "data": JSON})
_account_activity = st.fixed_dictionaries(
    {},
    optional={
        "for_user_id": _an_id,
        "direct_message_events": mostly(st.lists(mostly(_dm, JSON), max_size=3), JSON),
        "direct_message_mark_read_events": mostly(st.lists(mostly(_read, JSON), max_size=2), JSON),
        "direct_message_indicate_typing_events": st.lists(JSON, max_size=2),
        "tweet_create_events": st.lists(JSON, max_size=2),
        "users": mostly(st.dictionaries(_ids, mostly(_user, JSON), max_size=3), JSON),
        "apps": JSON,
        "something_new": JSON,
    },
)
_activity_api = st.fixed_dictionaries(
    {
        "data": st.fixed_dictionaries(
            {"event_type": mostly(st.sampled_from(["dm.received", "post.create"]), LEAF)},
            optional={"filter": st.fixed_dictionaries({"user_id": _an_id}), "payload": mostly(_account_activity, JSON)},
        )
    }
)
payloads = st.sampled_from([True] * 4 + [False]).flatmap(lambda aaa: _account_activity if aaa else _activity_api).map(
    lambda body: json.dumps(body).encode()
)


def sign(body: bytes) -> dict[str, str]:
    return {"content-type": "application/json", "x-twitter-webhooks-signature": x.compute_signature(SECRET, body)}


_body, _headers = fixture("x", "dm_text")

CASE = Case(
    settings={"consumer_secrets": [SECRET], "user_ids": [US]},
    secret_values=(SECRET,),
    hook=None,
    sample=_body,
    sample_headers=_headers,
    sign=sign,
    tamper=lambda body: body.replace(b"refund", b"refunc"),
    strip=lambda body, headers: (body, without(headers, "x-twitter-webhooks-signature")),
    body_signed=True,
    payloads=payloads,
    unknown=json.dumps({"for_user_id": US, "brand_new_events": [{"id": "1", "text": "something new"}]}).encode(),
)
