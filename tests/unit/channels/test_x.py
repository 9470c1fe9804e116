"""X adapter: the CRC handshake, x-twitter-webhooks-signature over exact bytes, and Direct Message parsing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from chalicelib.adapters.channels.x import adapter as x
from chalicelib.adapters.channels.base import ParsedWebhook, SimulatedCustomer, WebhookRequest
from chalicelib.adapters.channels.x.adapter import XAdapter, XSettings
from chalicelib.domain.identifiers import normalize
from chalicelib.domain.models import Channel, ContentType, InboundMessage, StatusEvent
from chalicelib.errors import MalformedPayloadError, SignatureError
from chalicelib.secrets import SecretResolver

SECRET = "test_x_consumer_secret"
OLD_SECRET = "previous_x_consumer_secret"
US, OTHER_US, CUSTOMER = "3001969357", "4337869213", "1221334455667788"
AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
FIXTURE_NAMES = sorted(p.stem for p in (Path(__file__).parents[2] / "fixtures" / "x").glob("*.body"))
#: PROVIDERS.md §6.3, computed there with the reference signer and independent code.
CRC_TOKEN = "9b4507b3-9040-4669-9ca3-6b94edb50553"
CRC_ANSWER = "sha256=NwDKttF8Uq+AQpU/lSLhSVZhO9/psNSublF1+Rlo5pg="
DM_TEXT_SIGNATURE = "sha256=MpWBSV3v1jBg/9dZkwK1iIh4wlUz7OZAPP9u5A9v6OM="


def adapter(**overrides) -> XAdapter:
    settings = {"consumer_secrets": [SECRET], "user_ids": [US, OTHER_US], **overrides}
    return XAdapter(XSettings.model_validate(settings), SecretResolver({}))


def independent_signature(secret: str, data: bytes) -> str:
    """Written out here, not taken from the adapter: base64 HMAC-SHA256 with the `sha256=` prefix."""
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), data, hashlib.sha256).digest()).decode()


def request(body: bytes, headers: dict[str, str] | None = None, *, method="POST", query=None, at=AT) -> WebhookRequest:
    return WebhookRequest(
        method=method,
        hook=None,
        headers={k.lower(): v for k, v in (headers or {}).items()},
        query=query or {},
        body=body,
        received_at=at,
    )


def signed(body: bytes, secret: str = SECRET, *, at=AT) -> WebhookRequest:
    return request(body, {"x-twitter-webhooks-signature": independent_signature(secret, body)}, at=at)


def parse_body(payload: dict | bytes, **overrides) -> ParsedWebhook:
    body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    x_adapter = adapter(**overrides)
    req = signed(body)
    x_adapter.verify(req)
    return x_adapter.parse(req)


def parse_fixture(load, name: str, **overrides) -> ParsedWebhook:
    fx = load("x", name)
    x_adapter = adapter(**overrides)
    x_adapter.verify(fx.request())
    return x_adapter.parse(fx.request())


def only(parsed: ParsedWebhook):
    assert parsed.ignored == [] and parsed.unhandled == []
    assert len(parsed.events) == 1
    return parsed.events[0]


def unhandled(parsed: ParsedWebhook) -> list[str]:
    """The reasons of the items kept raw (each X's, each with its item)."""
    assert all(e.provider == "x" and e.raw is not None for e in parsed.unhandled)
    return [e.reason for e in parsed.unhandled]


def dm(event_id: str = "1950000000000000100", sender: str = CUSTOMER, recipient: str = US, **message_data) -> dict:
    data = {"text": "hello", **message_data}
    return {
        "type": "message_create",
        "id": event_id,
        "created_timestamp": "1767225600123",
        "message_create": {
            "target": {"recipient_id": recipient},
            "sender_id": sender,
            "message_data": {k: v for k, v in data.items() if v is not None},
        },
    }


def body(*events: dict, for_user_id: str | None = US, **extra) -> dict:
    payload: dict = {"direct_message_events": list(events), **extra}
    if for_user_id is not None:
        payload["for_user_id"] = for_user_id
    return payload


# --- signatures --------------------------------------------------------------------------------


def test_all_fixtures_are_stored():
    assert FIXTURE_NAMES == [
        "dm_echo", "dm_media", "dm_text", "dm_unicode", "dm_unicode_escaped", "read_receipt", "tweet_mention", "typing",
    ]  # fmt: skip


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_signature_is_independently_reproduced_and_verifies(load, name):
    fx = load("x", name)
    assert independent_signature(SECRET, fx.body) == fx.headers["x-twitter-webhooks-signature"]
    assert x.compute_signature(SECRET, fx.body) == fx.headers["x-twitter-webhooks-signature"]
    assert x.compute_signature(SECRET.encode(), fx.body) == fx.headers["x-twitter-webhooks-signature"]
    adapter().verify(fx.request())


def test_documented_dm_fixture_carries_the_signature_recorded_in_providers(load):
    assert load("x", "dm_text").headers["x-twitter-webhooks-signature"] == DM_TEXT_SIGNATURE


def test_non_ascii_fixtures_hold_raw_utf8_and_escapes_respectively(load):
    raw, escaped = load("x", "dm_unicode").body, load("x", "dm_unicode_escaped").body
    assert "😕".encode() in raw and "Müller".encode() in raw
    assert b"\\ud83d\\ude15" in escaped and escaped.isascii()


@pytest.mark.parametrize("name", ["dm_unicode", "dm_unicode_escaped"])
def test_reserialized_body_fails_verification(load, name):
    fx = load("x", name)
    ascii_only = name == "dm_unicode"  # re-encode the other way round
    reserialized = json.dumps(json.loads(fx.body), ensure_ascii=ascii_only, separators=(",", ":")).encode()
    assert json.loads(reserialized) == json.loads(fx.body) and reserialized != fx.body
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(fx.request(body=reserialized))


@pytest.mark.parametrize("name", ["dm_text", "dm_unicode", "read_receipt"])
def test_one_changed_byte_fails(load, name):
    fx = load("x", name)
    tampered = fx.body.replace(b"1221334455667788", b"1221334455667789", 1)
    tampered = tampered if tampered != fx.body else fx.body.replace(b"987654321", b"987654322", 1)
    assert tampered != fx.body
    with pytest.raises(SignatureError):
        adapter().verify(fx.request(body=tampered))


def test_missing_signature_header_fails(load):
    with pytest.raises(SignatureError, match="missing x-twitter-webhooks-signature"):
        adapter().verify(load("x", "dm_text").request(headers={"x-twitter-webhooks-signature": None}))


@pytest.mark.parametrize(
    "header",
    [
        "MpWBSV3v1jBg/9dZkwK1iIh4wlUz7OZAPP9u5A9v6OM=",  # no prefix
        "sha256=3295814957efd63060ffd7599302b5888878c2…",  # Meta-style hex, truncated
        "sha256=" + hashlib.sha256(b"x").hexdigest(),  # hex instead of base64
        "sha256=MpWBSV3v1jBg/9dZkwK1iIh4wlUz7OZAPP9u5A9v6OM",  # padding missing
        "sha256=MpWBSV3v1jBg/9dZkwK1iIh4wlUz7OZAPP9u5A9v6O=",  # 42 characters
        "sha256=",
        "sha1=MpWBSV3v1jBg/9dZkwK1iIh4wlU=",
        "sha256=MpWBSV3v1jBg/9dZkwK1iIh4 wlUz7OZAPP9u5A9v6OM=",
    ],
)
def test_garbled_signature_header_fails_with_the_expected_shape(load, header):
    with pytest.raises(SignatureError, match="base64 HMAC-SHA256"):
        adapter().verify(load("x", "dm_text").request(headers={"x-twitter-webhooks-signature": header}))


def test_prefix_case_and_surrounding_space_are_tolerated(load):
    fx = load("x", "dm_text")
    header = " SHA256=" + fx.headers["x-twitter-webhooks-signature"][7:] + " "
    adapter().verify(fx.request(headers={"x-twitter-webhooks-signature": header}))


def test_signature_of_a_different_body_fails(load):
    other = load("x", "dm_media").headers["x-twitter-webhooks-signature"]
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(load("x", "dm_text").request(headers={"x-twitter-webhooks-signature": other}))


@pytest.mark.parametrize("secrets", [[OLD_SECRET, SECRET], [SECRET, OLD_SECRET]])
def test_rotated_consumer_secrets_verify(load, secrets):
    adapter(consumer_secrets=secrets).verify(load("x", "dm_text").request())


def test_wrong_consumer_secret_fails(load):
    with pytest.raises(SignatureError, match="consumer_secrets"):
        adapter(consumer_secrets=[OLD_SECRET]).verify(load("x", "dm_text").request())


def test_every_secret_is_tried_even_after_a_match(load, counting_resolver):
    resolver = counting_resolver({"X_NEW": SECRET, "X_OLD": OLD_SECRET})
    settings = XSettings.model_validate({"consumer_secrets": ["env:X_NEW", "env:X_OLD"], "user_ids": [US]})
    x_adapter = XAdapter(settings, resolver)
    assert resolver.calls == 0, "nothing is resolved at construction"
    x_adapter.verify(load("x", "dm_text").request())
    assert resolver.calls == 2


CLIENT_SECRET = "test_x_oauth2_client_secret"


def test_oauth2_signature_header_verifies_with_the_client_secret(load):
    fx = load("x", "dm_text")
    headers = {"x-twitter-webhooks-signature": None,
               "x-twitter-webhooks-signature-oauth2": independent_signature(CLIENT_SECRET, fx.body)}  # fmt: skip
    adapter(consumer_secrets=[], client_secrets=[CLIENT_SECRET]).verify(fx.request(headers=headers))
    adapter(client_secrets=[OLD_SECRET, CLIENT_SECRET]).verify(fx.request(headers=headers))


def test_oauth2_header_without_client_secrets_configured_is_401_with_the_reason(load):
    fx = load("x", "dm_text")
    headers = {"x-twitter-webhooks-signature": None,
               "x-twitter-webhooks-signature-oauth2": independent_signature(CLIENT_SECRET, fx.body)}  # fmt: skip
    with pytest.raises(SignatureError, match="no client_secrets are configured"):
        adapter().verify(fx.request(headers=headers))


def test_during_migration_either_header_may_prove_the_request(load):
    fx = load("x", "dm_text")
    wrong = independent_signature("not-the-secret", fx.body)
    legacy_only = {"x-twitter-webhooks-signature-oauth2": wrong}
    adapter(client_secrets=[CLIENT_SECRET]).verify(fx.request(headers=legacy_only))
    oauth2_only = {"x-twitter-webhooks-signature": wrong,
                   "x-twitter-webhooks-signature-oauth2": independent_signature(CLIENT_SECRET, fx.body)}  # fmt: skip
    adapter(client_secrets=[CLIENT_SECRET]).verify(fx.request(headers=oauth2_only))
    with pytest.raises(SignatureError, match="does not match"):
        adapter(client_secrets=[CLIENT_SECRET]).verify(fx.request(headers={**oauth2_only, **legacy_only}))


def test_a_client_secret_never_verifies_the_legacy_header(load):
    fx = load("x", "dm_text")
    headers = {"x-twitter-webhooks-signature": independent_signature(CLIENT_SECRET, fx.body)}
    with pytest.raises(SignatureError, match="does not match"):
        adapter(consumer_secrets=[SECRET], client_secrets=[CLIENT_SECRET]).verify(fx.request(headers=headers))


# --- CRC handshake -----------------------------------------------------------------------------


def crc(token: str | None, **overrides):
    query = {} if token is None else {"crc_token": token}
    return adapter(**overrides).handshake(request(b"", method="GET", query=query))


def test_crc_answers_the_documented_token_with_the_documented_json():
    response = crc(CRC_TOKEN)
    assert (response.status, response.content_type) == (200, "application/json")
    answer = json.loads(response.body)
    assert answer == {"response_token": CRC_ANSWER}
    assert answer["response_token"] == independent_signature(SECRET, CRC_TOKEN.encode())
    assert x.crc_response(SECRET, CRC_TOKEN) == answer


@pytest.mark.parametrize(
    "token",
    ["MTc2NzIyNTYwMDEyMw==", "a-b_c", "Zm9v+YmFy/YmF6=", "x", "0" * 256, "MjAyNi0wMS0wMVQwMDowMDowMC4wMDBa"],
)
def test_crc_answers_any_opaque_token(token):
    assert json.loads(crc(token).body) == {"response_token": independent_signature(SECRET, token.encode())}


def test_crc_uses_the_first_consumer_secret_only():
    answer = json.loads(crc(CRC_TOKEN, consumer_secrets=[SECRET, OLD_SECRET]).body)["response_token"]
    assert answer == CRC_ANSWER
    assert json.loads(crc(CRC_TOKEN, consumer_secrets=[OLD_SECRET, SECRET]).body)["response_token"] == (
        independent_signature(OLD_SECRET, CRC_TOKEN.encode())
    )


def test_crc_uses_the_oauth2_client_secret_when_one_is_configured():
    answer = json.loads(crc(CRC_TOKEN, client_secrets=[CLIENT_SECRET]).body)["response_token"]
    assert answer == independent_signature(CLIENT_SECRET, CRC_TOKEN.encode())
    only_client = json.loads(crc(CRC_TOKEN, consumer_secrets=[], client_secrets=[CLIENT_SECRET]).body)
    assert only_client["response_token"] == answer


def test_crc_answer_names_which_secret_answers_while_both_verify_posts(load):
    both = {"consumer_secrets": [SECRET], "client_secrets": [CLIENT_SECRET], "crc_answer": "consumer"}
    assert json.loads(crc(CRC_TOKEN, **both).body)["response_token"] == CRC_ANSWER
    fx = load("x", "dm_text")
    x_adapter = adapter(**both)
    x_adapter.verify(fx.request())  # the consumer-secret signature still verifies
    oauth2 = {"x-twitter-webhooks-signature-oauth2": x.compute_signature(CLIENT_SECRET, fx.body)}
    x_adapter.verify(WebhookRequest("POST", None, {"content-type": "application/json", **oauth2}, {}, fx.body, AT))


@pytest.mark.parametrize(("crc_answer", "missing"), [("client", "client_secrets"), ("consumer", "consumer_secrets")])
def test_crc_answer_must_name_a_configured_list(crc_answer, missing):
    lists = {"client": {"consumer_secrets": [SECRET]}, "consumer": {"client_secrets": [CLIENT_SECRET]}}[crc_answer]
    with pytest.raises(ValidationError, match=f"no {missing} are configured"):
        XSettings.model_validate({"user_ids": [US], "crc_answer": crc_answer, **lists})


@pytest.mark.parametrize("token", [None, ""])
def test_crc_without_token_is_400(token):
    with pytest.raises(MalformedPayloadError, match="missing crc_token") as caught:
        crc(token)
    assert caught.value.http_status == 400


@pytest.mark.parametrize("token", ["0" * 257, "a b", "é", "<script>", "a\nb", '"quoted"'])
def test_crc_with_an_unexpected_token_is_400(token):
    with pytest.raises(MalformedPayloadError, match="crc_token must be"):
        crc(token)


def test_crc_cannot_be_used_to_sign_a_forged_event(load):
    # The CRC answer is the signature a POST of the token's bytes would carry; an event body is a
    # JSON object, and no token containing `{` is ever signed.
    forged = load("x", "dm_text").body.decode()
    with pytest.raises(MalformedPayloadError):
        crc(forged)
    with pytest.raises(MalformedPayloadError):
        crc("{}")


# --- parsing: the fixtures ---------------------------------------------------------------------


def test_text_message(load):
    message = only(parse_fixture(load, "dm_text"))
    assert isinstance(message, InboundMessage)
    assert (message.provider, message.channel, message.content_type) == ("x", Channel.X, ContentType.TEXT)
    assert message.provider_message_id == "1950000000000000001"
    assert message.dedupe_key == "msg:x:1950000000000000001"
    assert message.account == US
    assert [(h.kind, h.value, h.scope, h.verified) for h in message.sender.handles] == [
        ("x", CUSTOMER, None, True)
    ]
    assert message.sender.display_name == "Ana Souza"
    assert message.text == "Hi! Is my refund processed?"
    assert message.sent_at == datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=timezone.utc)
    assert message.received_at == AT
    assert message.conversation_key == f"x:{US}:{CUSTOMER}"
    assert message.metadata == {"screen_name": "anasouza", "for_user_id": US}
    assert message.raw["event"]["id"] == "1950000000000000001"
    assert message.raw["user"]["screen_name"] == "anasouza"
    assert message.raw["for_user_id"] == US
    assert type(message).model_validate_json(message.model_dump_json()) == message


def test_the_sender_handle_normalizes_to_a_global_x_identifier(load):
    handle = only(parse_fixture(load, "dm_text")).sender.handles[0]
    identifier = normalize(handle.kind, handle.value, scope=handle.scope)
    assert identifier.key == f"x:{CUSTOMER}"


@pytest.mark.parametrize("name", ["dm_unicode", "dm_unicode_escaped"])
def test_non_ascii_and_emoji_survive_raw_utf8_and_escapes(load, name):
    message = only(parse_fixture(load, name))
    assert message.text == "Olá! Mein Paket ist beschädigt 😕 — réponse rapide, s’il vous plaît"
    assert message.sender.display_name == "João Müller-Šťastný"
    assert message.model_dump_json().encode("utf-8")


def test_media_message_expands_links_and_drops_the_media_link(load):
    message = only(parse_fixture(load, "dm_media"))
    assert message.content_type == ContentType.MEDIA
    assert message.text == "Box arrived crushed, order https://shop.example.com/orders/4471"
    [attachment] = message.attachments
    assert attachment.url == (
        "https://ton.twitter.com/1.1/ton/data/dm/1950000000000000004/1950000000000000100/aBcD1234.jpg"
    )
    assert (attachment.content_type, attachment.provider_media_id) == ("image/jpeg", "1950000000000000100")
    assert message.metadata["media_type"] == "photo"


def test_our_own_send_is_an_echo_not_a_contact(load):
    parsed = parse_fixture(load, "dm_echo")
    assert parsed.events == []
    assert parsed.ignored == [f"direct_message_events[0]: sent by our own account {US}: an echo of our send, "
                              "not a customer message"]  # fmt: skip


def test_read_receipt_is_a_status_event_not_a_contact(load):
    status = only(parse_fixture(load, "read_receipt"))
    assert isinstance(status, StatusEvent)
    assert (status.provider, status.channel, status.status) == ("x", Channel.X, "read")
    assert status.provider_message_id == "1950000000000000005"
    assert status.dedupe_key == "status:x:1950000000000000005:read"
    assert (status.account, status.recipient) == (US, CUSTOMER)
    assert status.occurred_at == datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
    assert status.raw["event"]["last_read_event_id"] == "1950000000000000005"


def test_typing_indicator_is_acknowledged_and_ignored(load):
    parsed = parse_fixture(load, "typing")
    assert parsed.events == []
    assert parsed.ignored == ["direct_message_indicate_typing_events[0]: a typing indicator, not a message"]


def test_mention_is_acknowledged_and_ignored(load):
    parsed = parse_fixture(load, "tweet_mention")
    assert parsed.events == []
    assert parsed.ignored == [
        "tweet_create_events[0]: a post, reply, repost or @mention, not a direct message"
    ]


def test_parsing_is_pure(load):
    fx = load("x", "dm_media")
    assert adapter().parse(fx.request()) == adapter().parse(fx.request())


def test_ack_is_an_empty_200(load):
    response = adapter().ack(parse_fixture(load, "dm_text"))
    assert (response.status, response.body) == (200, "")


# --- parsing: echoes, receipts, other activities -------------------------------------------------


def test_a_configured_account_writing_is_an_echo_even_on_another_accounts_subscription():
    parsed = parse_body(body(dm(sender=OTHER_US, recipient=US), for_user_id=US))
    assert parsed.events == []
    assert "sent by our own account 4337869213" in parsed.ignored[0]


def test_the_subscribed_account_is_ours_even_when_not_configured():
    parsed = parse_body(body(dm(sender="555", recipient="666"), for_user_id="555"))
    assert parsed.events == [] and "echo" in parsed.ignored[0]


def test_our_account_reading_the_customers_messages_is_not_a_receipt():
    event = {"created_timestamp": "1767225605000", "sender_id": US, "target": {"recipient_id": CUSTOMER},
             "last_read_event_id": "1950000000000000001"}  # fmt: skip
    parsed = parse_body({"for_user_id": US, "direct_message_mark_read_events": [event]})
    assert parsed.events == []
    assert "our own account 3001969357 read the conversation" in parsed.ignored[0]


@pytest.mark.parametrize("missing", ["sender_id", "last_read_event_id"])
def test_read_receipt_without_ids_is_skipped(missing):
    event = {"sender_id": CUSTOMER, "last_read_event_id": "1950000000000000001"}
    del event[missing]
    parsed = parse_body({"for_user_id": US, "direct_message_mark_read_events": [event]})
    assert parsed.events == [] and "read receipt without" in unhandled(parsed)[0]
    assert parsed.unhandled[0].raw == event


def test_every_other_activity_is_counted_and_named_and_unknown_ones_kept_raw():
    parsed = parse_body(
        {
            "for_user_id": US,
            "favorite_events": [{"id": "a"}, {"id": "b"}],
            "follow_events": [{"type": "follow"}],
            "user_event": {"revoke": {"source": {"user_id": CUSTOMER}}},
            "brand_new_events": [],
            "users": {},
            "apps": {},
        }
    )
    assert parsed.events == []
    assert parsed.ignored == [
        "favorite_events[0]: a like",
        "favorite_events[1]: a like",
        "follow_events[0]: a follow or unfollow",
        "user_event: a user revoked the app's access (X deleted that account's subscription)",
    ]
    assert unhandled(parsed) == ["brand_new_events: not an Account Activity event this adapter knows"]
    assert parsed.unhandled[0].raw == {"brand_new_events": []}


def test_replay_job_status_is_acknowledged():
    parsed = parse_body({"replay_job_status": {"webhook_id": "1", "job_state": "Complete", "job_id": "2"}})
    assert parsed.ignored == ["replay_job_status: the status report of a replay job"]


@pytest.mark.parametrize("payload", [{}, {"for_user_id": US, "users": {}}])
def test_object_without_events_is_acknowledged_and_kept_raw(payload):
    parsed = parse_body(payload)
    assert unhandled(parsed) == ["body: no Account Activity events"] and parsed.unhandled[0].raw == payload


def test_one_bad_item_never_drops_the_others():
    events = [
        dm("1"),
        "not an object",
        {**dm("2"), "id": None},
        {**dm("3"), "type": "welcome_message"},
        dm("4", sender="@anasouza"),
        {**dm("5"), "message_create": []},
        dm("6", recipient=None),
        dm("7"),
    ]
    events[6]["message_create"].pop("target")
    parsed = parse_body(body(*events, for_user_id=None))
    assert [e.provider_message_id for e in parsed.events] == ["1", "7"]
    assert parsed.ignored == []
    assert [e.raw for e in parsed.unhandled] == events[1:7]
    assert unhandled(parsed) == [
        "direct_message_events[1]: not an object",
        "direct_message_events[2]: message without a numeric id",
        "direct_message_events[3]: type 'welcome_message' is not a message",
        "direct_message_events[4]: message_create.sender_id is not a numeric X user id",
        "direct_message_events[5]: message_create is not an object",
        "direct_message_events[6]: no recipient (message_create.target.recipient_id or for_user_id)",
    ]


def test_recipient_falls_back_to_the_subscribed_account():
    event = dm()
    event["message_create"].pop("target")
    assert only(parse_body(body(event))).account == US


def test_event_list_that_is_not_a_list_is_kept_raw():
    parsed = parse_body({"direct_message_events": {"id": "1"}})
    assert unhandled(parsed) == ["direct_message_events: not a list"]
    assert parsed.unhandled[0].raw == {"direct_message_events": {"id": "1"}}


def test_the_same_dm_delivered_twice_has_one_dedupe_key():
    # X delivers once per subscribed user and once per app sharing the URL: the event id is the key.
    first = only(parse_body(body(dm("99"), for_user_id=US)))
    second = only(parse_body(body(dm("99"), for_user_id=None)))
    assert first.dedupe_key == second.dedupe_key == "msg:x:99"


def test_integer_ids_are_read_like_strings():
    event = dm()
    event["id"], event["message_create"]["sender_id"] = 1950000000000000100, int(CUSTOMER)
    message = only(parse_body(body(event)))
    assert (message.provider_message_id, message.sender.handles[0].value) == ("1950000000000000100", CUSTOMER)


# --- parsing: content ----------------------------------------------------------------------------


def test_quick_reply_is_interactive_with_its_metadata():
    event = dm(text="Track my order", quick_reply_response={"type": "options", "metadata": "track_order"})
    message = only(parse_body(body(event)))
    assert message.content_type == ContentType.INTERACTIVE
    assert message.text == "Track my order"
    assert message.metadata["interactive_type"] == "quick_reply" and message.metadata["reply_id"] == "track_order"


def test_video_uses_the_best_rendition():
    media = {
        "id_str": "77", "type": "video", "url": "https://t.co/vid",
        "media_url_https": "https://pbs.twimg.com/dm_video_preview/77/img/a.jpg",
        "video_info": {"variants": [
            {"content_type": "application/x-mpegURL", "url": "https://video.twimg.com/dm_video/77/pl.m3u8"},
            {"bitrate": 832000, "content_type": "video/mp4", "url": "https://video.twimg.com/dm_video/77/480.mp4"},
            {"bitrate": 2176000, "content_type": "video/mp4", "url": "https://video.twimg.com/dm_video/77/720.mp4"},
        ]},
    }  # fmt: skip
    message = only(parse_body(body(dm(text="https://t.co/vid", attachment={"type": "media", "media": media}))))
    assert message.content_type == ContentType.MEDIA
    assert message.text is None
    [attachment] = message.attachments
    assert (attachment.url, attachment.content_type) == ("https://video.twimg.com/dm_video/77/720.mp4", "video/mp4")


def test_unreadable_attachment_keeps_the_text_and_is_flagged():
    message = only(parse_body(body(dm(text="see this", attachment={"type": "media", "media": {"type": "photo"}}))))
    assert (message.content_type, message.text, message.attachments) == (ContentType.TEXT, "see this", [])
    assert message.metadata["unreadable_attachment"] is True


def test_message_with_nothing_readable_is_unsupported_not_an_error():
    event = dm(text=None)
    event["message_create"]["message_data"]["sticker"] = {"id": "1"}
    message = only(parse_body(body(event)))
    assert (message.content_type, message.text) == (ContentType.UNSUPPORTED, None)
    assert message.raw["event"]["message_create"]["message_data"]["sticker"] == {"id": "1"}


def test_links_are_expanded_in_one_pass_even_when_one_is_a_prefix_of_another():
    urls = [
        {"url": "https://t.co/ab", "expanded_url": "https://one.example"},
        {"url": "https://t.co/abc", "expanded_url": "https://two.example"},
        {"url": "https://t.co/zz"},  # no expansion: left as is
    ]
    event = dm(text="https://t.co/abc and https://t.co/ab, https://t.co/zz", entities={"urls": urls})
    assert only(parse_body(body(event))).text == "https://two.example and https://one.example, https://t.co/zz"


def test_initiated_via_is_kept():
    event = {**dm(), "initiated_via": {"tweet_id": "123", "welcome_message_id": "456"}}
    assert only(parse_body(body(event))).metadata["initiated_via"] == {"tweet_id": "123", "welcome_message_id": "456"}


def test_lone_surrogates_become_replacement_characters():
    payload = b'{"direct_message_events":[{"type":"message_create","id":"1","message_create":{"sender_id":"12",' \
              b'"target":{"recipient_id":"3001969357"},"message_data":{"text":"hi \\ud800 there"}}}]}'
    message = only(parse_body(payload))
    assert message.text == "hi \ufffd there"
    assert type(message).model_validate_json(message.model_dump_json()) == message


def test_display_name_comes_from_the_users_map_only_for_the_sender():
    users = {US: {"name": "Acme Support"}, "999": {"name": "Someone Else"}}
    assert only(parse_body(body(dm(), users=users))).sender.display_name is None


# --- the X Activity API envelope (3P) -----------------------------------------------------------


def activity(event_type: str, payload: dict | None) -> dict:
    data: dict = {"event_uuid": "1900000000000000009", "filter": {"user_id": US}, "event_type": event_type}
    if payload is not None:
        data["payload"] = payload
    return {"data": data}


def test_activity_api_dm_envelope_is_parsed_like_account_activity():
    users = {CUSTOMER: {"data": {"id": CUSTOMER, "name": "Ana Souza", "username": "anasouza"}}}
    payload = {"direct_message_events": [dm("1900000000000000003")], "users": users}
    message = only(parse_body(activity("dm.received", payload)))
    assert (message.provider_message_id, message.account) == ("1900000000000000003", US)
    assert (message.sender.display_name, message.metadata["screen_name"]) == ("Ana Souza", "anasouza")
    assert message.metadata["for_user_id"] == US


def test_activity_api_dm_from_the_filtered_account_is_an_echo():
    payload = {"direct_message_events": [dm(sender="5", recipient=CUSTOMER)]}
    wrapped = activity("dm.sent", payload)
    wrapped["data"]["filter"]["user_id"] = "5"
    parsed = parse_body(wrapped)
    assert parsed.events == [] and parsed.ignored[0].startswith("data.payload.direct_message_events[0]: sent by our")


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [("post.create", {"id": "1", "text": "hello"}), ("dm.received", {"id": "1", "sender_id": "2", "text": "hi"})],
)
def test_other_activity_api_events_are_acknowledged_and_kept_raw(event_type, payload):
    parsed = parse_body(activity(event_type, payload))
    assert unhandled(parsed) == [f"X Activity API event {event_type!r} is not handled"]
    assert parsed.unhandled[0].raw["payload"] == payload


# --- malformed bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"", b"not json", b"[]", b"null", b'"text"', b"\xff\xfe{}", b'{"a": NaN}', b'{"a": 1e999}', b"{" * 100_000],
    ids=["empty", "text", "array", "null", "string", "bad-utf8", "nan", "infinity", "deep"],
)
def test_malformed_bodies_are_400_after_a_valid_signature(payload):
    x_adapter = adapter()
    req = signed(payload)
    x_adapter.verify(req)
    with pytest.raises(MalformedPayloadError) as caught:
        x_adapter.parse(req)
    assert caught.value.http_status == 400


# --- replay window ---------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(seconds=599), timedelta(seconds=-599)])
def test_events_inside_the_replay_window_are_accepted(offset):
    event = dm()
    event["created_timestamp"] = str(int((AT + offset).timestamp() * 1000))
    parsed = parse_body(body(event), max_skew_seconds=600)
    assert len(parsed.events) == 1


@pytest.mark.parametrize("timestamp", [str(int((AT - timedelta(hours=1)).timestamp() * 1000)),
                                       str(int((AT + timedelta(hours=1)).timestamp() * 1000)), None])  # fmt: skip
def test_events_outside_the_replay_window_are_ignored(timestamp):
    event = dm()
    if timestamp is None:
        del event["created_timestamp"]
    else:
        event["created_timestamp"] = timestamp
    parsed = parse_body(body(event), max_skew_seconds=600)
    assert parsed.events == [] and "max_skew_seconds" in parsed.ignored[0]


def test_without_a_window_old_events_are_accepted():
    event = dm()
    event["created_timestamp"] = "1000"
    assert only(parse_body(body(event))).sent_at == datetime(1970, 1, 1, 0, 0, 1, tzinfo=timezone.utc)


# --- settings ----------------------------------------------------------------------------------


def test_user_ids_accept_integers_and_normalize():
    settings = XSettings.model_validate({"consumer_secrets": [SECRET], "user_ids": [3001969357, " 0042 "]})
    assert settings.user_ids == ["3001969357", "42"]


@pytest.mark.parametrize("user_ids", [[], ["@acmesupport"], ["acme"], [True], [1.5], ["1" * 21]])
def test_user_ids_must_be_numeric_account_ids(user_ids):
    with pytest.raises(ValidationError):
        XSettings.model_validate({"consumer_secrets": [SECRET], "user_ids": user_ids})


@pytest.mark.parametrize("secrets", [[], [""], ["  "]])
def test_settings_need_at_least_one_non_empty_secret(secrets):
    with pytest.raises(ValidationError):
        XSettings.model_validate({"consumer_secrets": secrets, "user_ids": [US]})


def test_settings_need_a_consumer_or_a_client_secret():
    with pytest.raises(ValidationError, match="consumer_secrets .* client_secrets"):
        XSettings.model_validate({"user_ids": [US]})
    assert XSettings.model_validate({"client_secrets": ["c"], "user_ids": [US]}).consumer_secrets == []


@pytest.mark.parametrize("skew", [0, 60, 299])
def test_replay_window_shorter_than_xs_retries_is_refused(skew):
    with pytest.raises(ValidationError, match="max_skew_seconds"):
        XSettings.model_validate({"consumer_secrets": [SECRET], "user_ids": [US], "max_skew_seconds": skew})


def test_settings_repr_hides_secrets():
    settings = XSettings.model_validate({"consumer_secrets": [SECRET], "user_ids": [US]})
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert SECRET not in text


# --- simulate ----------------------------------------------------------------------------------


def test_simulated_request_is_signed_and_parses_into_one_message():
    x_adapter = adapter(consumer_secrets=[SECRET, OLD_SECRET])
    customer = SimulatedCustomer(name="Jana Schmidt", phone="+4915123456789", email="j@example.com",
                                 text="Grüß dich 👋")
    simulated = x_adapter.simulated_request(customer)
    assert simulated.path == "/webhooks/x"
    assert simulated.headers["x-twitter-webhooks-signature"] == independent_signature(SECRET, simulated.body)
    req = request(simulated.body, simulated.headers)
    x_adapter.verify(req)
    message = only(x_adapter.parse(req))
    assert (message.text, message.sender.display_name, message.account) == ("Grüß dich 👋", "Jana Schmidt", US)
    again = only(x_adapter.parse(request(x_adapter.simulated_request(customer).body)))
    assert again.sender.handles == message.sender.handles, "the same customer is the same X user"
    assert again.provider_message_id != message.provider_message_id


def test_simulated_request_carries_both_headers_when_both_secrets_are_configured():
    x_adapter = adapter(client_secrets=[CLIENT_SECRET])
    customer = SimulatedCustomer(name="Jana", phone="+4915123456789", email="j@example.com", text="hi")
    simulated = x_adapter.simulated_request(customer)
    assert simulated.headers["x-twitter-webhooks-signature"] == independent_signature(SECRET, simulated.body)
    assert simulated.headers["x-twitter-webhooks-signature-oauth2"] == (
        independent_signature(CLIENT_SECRET, simulated.body)
    )
