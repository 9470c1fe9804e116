"""Slack's row in the channel-adapter contract suite: v0 signatures over the exact body."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from chalicelib.adapters.channels.slack import adapter as slack
from tests.support.channel_contract import JSON, LEAF, TEXT, Case, fixture, known_objects, mostly, without

SECRET = "test_slack_signing_secret"
#: Inside the suite's replay window: it verifies requests received at 2026-01-01T00:00:05Z.
TIMESTAMP = "1767225600"

KEYS = ["type", "user", "text", "ts", "thread_ts", "channel", "channel_type", "team", "user_team", "subtype",
        "bot_id", "app_id", "files", "id", "url_private", "mimetype", "name", "size", "mode", "hidden",
        "user_profile", "real_name", "blocks", "client_msg_id"]  # fmt: skip
_known = known_objects(KEYS)
_file = st.fixed_dictionaries(
    {"id": mostly(st.sampled_from(["F0HUBFILE1", "F2"]))},
    optional={"name": TEXT, "mimetype": TEXT, "size": LEAF, "url_private": TEXT, "mode": mostly(st.just("hosted"))},
)
_message = st.fixed_dictionaries(
    {
        "type": mostly(st.just("message"), st.sampled_from(["app_mention", "reaction_added"]) | LEAF),
        "user": mostly(st.sampled_from(["U0CUST001", "U0EXT0042", "U0HUBBOT1"])),
        "channel": mostly(st.sampled_from(["D0HUB0001", "C0SHARED1"])),
        "ts": mostly(st.sampled_from(["1767225599.000100", "1767225600", "99999999999.1"]), TEXT),
        "channel_type": mostly(st.sampled_from(["im", "im", "channel", "group", "mpim"])),
    },
    optional={
        "text": mostly(TEXT),
        "subtype": st.sampled_from(["file_share", "thread_broadcast", "message_changed", "bot_message", "new"]) | LEAF,
        "thread_ts": mostly(st.sampled_from(["1767225500.000100"]), TEXT),
        "team": mostly(st.sampled_from(["T0HUB0001", "T0CUSTOMR"])),
        "user_team": mostly(st.sampled_from(["T0HUB0001", "T0CUSTOMR"])),
        "bot_id": LEAF,
        "app_id": st.sampled_from(["A0HUB0001", "A0OTHER"]),
        "hidden": LEAF,
        "files": mostly(st.lists(mostly(_file, JSON), max_size=3), JSON),
        "user_profile": mostly(st.fixed_dictionaries({}, optional={"real_name": TEXT, "team": TEXT}), JSON),
        "blocks": _known,
    },
)
payloads = st.fixed_dictionaries(
    {
        "type": mostly(st.just("event_callback"), st.sampled_from(["url_verification", "app_rate_limited"]) | LEAF),
        "event": mostly(_message, _known),
        "team_id": mostly(st.sampled_from(["T0HUB0001", "T0OTHER"])),
    },
    optional={
        "api_app_id": mostly(st.just("A0HUB0001")),
        "event_id": mostly(st.sampled_from(["Ev1", "Ev2"])),
        "authorizations": mostly(
            st.lists(st.fixed_dictionaries({"user_id": LEAF | st.just("U0HUBBOT1"), "is_bot": LEAF}), max_size=2), JSON
        ),
        "is_ext_shared_channel": LEAF,
        "challenge": mostly(st.just("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"), TEXT),
        "minute_rate_limited": LEAF,
    },
).map(lambda body: json.dumps(body).encode())


def sign(body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-slack-request-timestamp": TIMESTAMP,
        "x-slack-signature": slack.compute_signature(SECRET, TIMESTAMP, body),
    }


_body, _headers = fixture("slack", "dm_text")

CASE = Case(
    settings={"signing_secrets": [SECRET], "app_id": "A0HUB0001"},
    secret_values=(SECRET,),
    hook=None,
    sample=_body,
    sample_headers=_headers,
    sign=sign,
    tamper=lambda body: body.replace(b"hasn't arrived", b"has arrived"),
    strip=lambda body, headers: (body, without(headers, "x-slack-signature")),
    body_signed=True,
    payloads=payloads,
    unknown=json.dumps({"token": "t", "team_id": "T0HUB0001", "type": "brand_new_envelope", "detail": {"n": 1}}).encode(),
)
