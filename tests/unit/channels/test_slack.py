"""Slack adapter: v0 signatures over exact bytes with a replay window, the url_verification
handshake, and which message events become contacts."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError
from slack_sdk.signature import Clock, SignatureVerifier

from chalicelib.adapters.channels.slack import adapter as slack
from chalicelib.adapters.channels.base import ParsedWebhook, SimulatedCustomer, WebhookRequest
from chalicelib.adapters.channels.slack.adapter import SlackAdapter, SlackParsed, SlackSettings
from chalicelib.domain.models import Channel, ContentType, InboundMessage
from chalicelib.errors import MalformedPayloadError, SignatureError
from chalicelib.secrets import SecretResolver
from tests.support.ingest import ingest
from tests.support.fakes import MemoryQueue

SECRET = "test_slack_signing_secret"
OLD_SECRET = "previous_slack_signing_secret"
TS = "1767225600"
AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
FIXTURE_NAMES = sorted(p.stem for p in (Path(__file__).parents[2] / "fixtures" / "slack").glob("*.body"))
CHALLENGE = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"


class FrozenClock(Clock):
    def __init__(self, now: float) -> None:
        self.t = now

    def now(self) -> float:
        return self.t


def adapter(**overrides) -> SlackAdapter:
    return SlackAdapter(SlackSettings.model_validate({"signing_secrets": [SECRET], **overrides}), SecretResolver({}))


def request(body: bytes, headers: dict[str, str], *, at: datetime = AT) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        hook=None,
        headers={k.lower(): v for k, v in headers.items()},
        query={},
        body=body,
        received_at=at,
    )


def signed(body: bytes, *, ts: str = TS, secret: str = SECRET, at: datetime = AT, **extra: str) -> WebhookRequest:
    headers = {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": slack.compute_signature(secret, ts, body)}
    return request(body, {**headers, **extra}, at=at)


def envelope(event: dict | None = None, **outer) -> bytes:
    """A compact event_callback around `event` (a customer's DM unless overridden; None removes a key)."""
    message = {
        "type": "message", "user": "U0CUST001", "text": "hello", "ts": "1767225600.000100",
        "team": "T0HUB0001", "channel": "D0HUB0001", "channel_type": "im",
    }  # fmt: skip
    body = {
        "token": "XXYYZZ", "team_id": "T0HUB0001", "api_app_id": "A0HUB0001",
        "event": {k: v for k, v in {**message, **(event or {})}.items() if v is not None},
        "type": "event_callback", "event_id": "Ev0TEST0001",
        "event_time": 1767225600, "is_ext_shared_channel": False,
        "authorizations": [{"team_id": "T0HUB0001", "user_id": "U0HUBBOT1", "is_bot": True}],
    }  # fmt: skip
    body.update(outer)
    return json.dumps({k: v for k, v in body.items() if v is not None}, separators=(",", ":")).encode()


def parse(body: bytes, **settings) -> SlackParsed:
    slack_adapter = adapter(**settings)
    req = signed(body)
    slack_adapter.verify(req)
    return slack_adapter.parse(req)


def parse_fixture(load, name: str, **settings) -> SlackParsed:
    slack_adapter = adapter(**settings)
    req = load("slack", name).request()
    slack_adapter.verify(req)
    return slack_adapter.parse(req)


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
    """The one item kept raw: Slack's envelope without its verification token."""
    assert parsed.events == [] and parsed.ignored == []
    [event] = parsed.unhandled
    assert event.provider == "slack" and "token" not in event.raw
    return event


# --- signatures: our verifier and slack_sdk agree on every fixture ------------------------------


def test_all_fixtures_are_stored():
    assert {"url_verification", "dm_text", "file_share", "dm_text_retry", "shared_channel_thread"} <= set(FIXTURE_NAMES)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_verifies_with_slack_sdk_and_with_the_adapter(load, name):
    fx = load("slack", name)
    ts = fx.headers["x-slack-request-timestamp"]
    official = SignatureVerifier(SECRET, clock=FrozenClock(int(ts) + 1))
    assert official.is_valid_request(fx.body, fx.headers)
    assert official.generate_signature(timestamp=ts, body=fx.body) == fx.headers["x-slack-signature"]
    assert slack.compute_signature(SECRET, ts, fx.body) == fx.headers["x-slack-signature"]
    adapter().verify(fx.request())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("url_verification", "v0=56896fd4270aa18ddee8fa552478d23109019642a896eec254020b6cca34153d"),
        ("dm_text", "v0=607dfed9983505c35c8567c4c0b9fcb1f4cbf080e3763163508d31430b90130f"),
        ("file_share", "v0=dd44ebc96869ad8739ebea4702ff111b3887d498e5c657fdf663d52f1fb3a5f8"),
    ],
)
def test_fixtures_carry_the_signatures_providers_md_recorded(load, name, expected):
    assert load("slack", name).headers["x-slack-signature"] == expected


def test_slacks_documented_known_answer_vector():
    body = (
        "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    ).encode()
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert slack.compute_signature("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body) == expected


def test_reserialized_body_fails_verification(load):
    # Slack's bytes carry raw UTF-8 and escaped slashes; json.dumps writes \u escapes and bare slashes.
    fx = load("slack", "shared_channel_thread")
    assert "Köln".encode() in fx.body and b"https:\\/\\/shop" in fx.body
    reserialized = json.dumps(json.loads(fx.body), separators=(",", ":")).encode()
    assert json.loads(reserialized) == json.loads(fx.body)
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(fx.request(body=reserialized))


@pytest.mark.parametrize("name", ["dm_text", "shared_channel_thread", "file_share"])
def test_one_changed_byte_fails(load, name):
    fx = load("slack", name)
    tampered = fx.body.replace(b"U0", b"U1", 1)
    assert tampered != fx.body
    with pytest.raises(SignatureError):
        adapter().verify(fx.request(body=tampered))


def test_a_signature_moved_to_another_timestamp_fails(load):
    fx = load("slack", "dm_text")
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(fx.request(headers={"x-slack-request-timestamp": "1767225601"}))


@pytest.mark.parametrize(
    ("remove", "reason"),
    [
        ("x-slack-signature", "missing X-Slack-Signature"),
        ("x-slack-request-timestamp", "missing X-Slack-Request-Timestamp"),
    ],
)
def test_missing_headers_fail(load, remove, reason):
    with pytest.raises(SignatureError, match=reason):
        adapter().verify(load("slack", "dm_text").request(headers={remove: None}))


@pytest.mark.parametrize("timestamp", ["1767225600.5", "-1767225600", "now", "17672256000000", " "])
def test_timestamp_must_be_unix_seconds(load, timestamp):
    with pytest.raises(SignatureError, match="X-Slack-Request-Timestamp"):
        adapter().verify(load("slack", "dm_text").request(headers={"x-slack-request-timestamp": timestamp}))


@pytest.mark.parametrize(
    "header",
    [
        "607dfed9983505c35c8567c4c0b9fcb1f4cbf080e3763163508d31430b90130f",  # no version prefix
        "v1=607dfed9983505c35c8567c4c0b9fcb1f4cbf080e3763163508d31430b90130f",
        "v0=607dfed9983505c35c8567c4c0b9fcb1f4cbf080e3763163508d31430b90130",  # 63 hex
        "v0=zz7dfed9983505c35c8567c4c0b9fcb1f4cbf080e3763163508d31430b90130f",
        "v0=",
    ],
)
def test_garbled_signature_header_fails(load, header):
    with pytest.raises(SignatureError, match="v0="):
        adapter().verify(load("slack", "dm_text").request(headers={"x-slack-signature": header}))


def test_upper_case_hex_is_accepted(load):
    fx = load("slack", "dm_text")
    adapter().verify(fx.request(headers={"x-slack-signature": "v0=" + fx.headers["x-slack-signature"][3:].upper()}))


@pytest.mark.parametrize("secrets", [[OLD_SECRET, SECRET], [SECRET, OLD_SECRET]])
def test_rotated_signing_secrets_verify(load, secrets):
    adapter(signing_secrets=secrets).verify(load("slack", "dm_text").request())


def test_wrong_signing_secret_fails(load):
    with pytest.raises(SignatureError, match="signing_secrets"):
        adapter(signing_secrets=[OLD_SECRET]).verify(load("slack", "dm_text").request())


# --- the replay window, at the same boundaries as slack_sdk ------------------------------------


@pytest.mark.parametrize("skew", [-301, -300, 0, 300, 301])
def test_replay_window_matches_slack_sdk(load, skew):
    fx = load("slack", "dm_text")
    official = SignatureVerifier(SECRET, clock=FrozenClock(int(TS) + skew)).is_valid_request(fx.body, fx.headers)
    at = datetime.fromtimestamp(int(TS) + skew, tz=timezone.utc)
    try:
        adapter().verify(request(fx.body, fx.headers, at=at))
        ours = True
    except SignatureError as exc:
        assert "replay window" in exc.message
        ours = False
    assert ours is official is (abs(skew) <= 300)


def test_a_stale_request_is_refused_even_with_a_valid_signature(load):
    fx = load("slack", "dm_text")
    with pytest.raises(SignatureError, match="outside the 300 s replay window"):
        adapter().verify(request(fx.body, fx.headers, at=AT + timedelta(hours=1)))


def test_max_skew_seconds_narrows_the_window(load):
    fx = load("slack", "dm_text")
    adapter(max_skew_seconds=5).verify(request(fx.body, fx.headers, at=AT))
    with pytest.raises(SignatureError, match="outside the 4 s"):
        adapter(max_skew_seconds=4).verify(request(fx.body, fx.headers, at=AT))


# --- url_verification ---------------------------------------------------------------------------


def test_url_verification_echoes_the_challenge_as_text(load):
    parsed = parse_fixture(load, "url_verification")
    assert parsed.events == [] and parsed.ignored == []
    response = adapter().ack(parsed)
    assert (response.status, response.content_type, response.body) == (200, "text/plain", CHALLENGE)


def test_url_verification_goes_through_ingest_without_enqueueing(load):
    queue = MemoryQueue()
    result = ingest(adapter(), load("slack", "url_verification").request(), queue, max_body_bytes=65536,
                    content_type="application/json")  # fmt: skip
    assert (result.response.status, result.response.body, result.enqueued) == (200, CHALLENGE, 0)
    assert queue.sent == []


def test_a_forged_url_verification_is_refused_before_the_challenge_is_read(load):
    fx = load("slack", "url_verification")
    forged = fx.body.replace(b"3eZb", b"XXXX")
    assert forged != fx.body, "the fixture's challenge changed: forge another part"
    with pytest.raises(SignatureError):
        ingest(adapter(), fx.request(body=forged), MemoryQueue(), max_body_bytes=65536, content_type="application/json")


@pytest.mark.parametrize("challenge", [None, "", 42, "has space", "x" * 257, "é"])
def test_url_verification_with_a_bad_challenge_is_400(challenge):
    body = json.dumps({"token": "t", "type": "url_verification", "challenge": challenge}).encode()
    with pytest.raises(MalformedPayloadError, match="challenge"):
        parse(body)


# --- messages that become contacts ---------------------------------------------------------------


def test_direct_message(load):
    message = only(parse_fixture(load, "dm_text"))
    assert (message.provider, message.channel, message.content_type) == ("slack", Channel.SLACK, ContentType.TEXT)
    assert message.text == "Hi, my order hasn't arrived"
    assert message.provider_message_id == "D0HUB0001:1767225599.000100"
    assert message.dedupe_key == "msg:slack:D0HUB0001:1767225599.000100"
    assert message.account == "T0HUB0001"
    assert [(h.kind, h.scope, h.value, h.verified) for h in message.sender.handles] == [
        ("slack", "T0HUB0001", "U0CUST001", True)
    ]
    assert message.sent_at == datetime(2025, 12, 31, 23, 59, 59, 100, tzinfo=timezone.utc)
    assert message.received_at == AT
    assert message.conversation_key == "slack:D0HUB0001"
    assert message.thread_keys == ["slack:D0HUB0001:1767225599.000100"]
    assert message.metadata["event_id"] == "Ev0HUB00001"
    assert message.metadata["channel_type"] == "im"
    assert message.metadata["client_msg_id"] == "5b9a3e33-1f53-4b1f-9f0a-0d6f7f6c2a11"
    assert "retry_num" not in message.metadata
    assert message.raw["event"]["text"] == "Hi, my order hasn't arrived"
    assert "token" not in message.raw  # the deprecated verification token is a credential


def test_a_retry_is_the_same_message_so_it_dedupes(load):
    first = only(parse_fixture(load, "dm_text"))
    retry = only(parse_fixture(load, "dm_text_retry"))
    assert retry.dedupe_key == first.dedupe_key
    assert retry.order_key == first.order_key
    assert (retry.metadata["retry_num"], retry.metadata["retry_reason"]) == ("1", "http_timeout")
    # Through ingest: the queue's dedupe id is the same, so the retry is never queued twice.
    queue = MemoryQueue()
    for name in ("dm_text", "dm_text_retry"):
        result = ingest(adapter(), load("slack", name).request(), queue, max_body_bytes=65536,
                        content_type="application/json")  # fmt: skip
        assert (result.response.status, result.response.body, result.enqueued) == (200, "", 1)
    assert len(queue.sent) == 1


def test_the_same_message_under_another_event_id_is_still_a_duplicate():
    first = only(parse(envelope(event_id="Ev0A")))
    second = only(parse(envelope(event_id="Ev0B")))
    assert first.dedupe_key == second.dedupe_key


def test_file_share_keeps_the_private_url_and_marks_it(load):
    message = only(parse_fixture(load, "file_share"))
    assert message.content_type == ContentType.MEDIA
    assert message.text == "Here's the receipt"
    [attachment] = message.attachments
    assert attachment.provider_media_id == "F0HUBFILE1"
    assert attachment.url == "https://files.slack.com/files-pri/T0HUB0001-F0HUBFILE1/receipt.pdf"
    assert (attachment.content_type, attachment.filename, attachment.size) == ("application/pdf", "receipt.pdf", 48213)
    assert message.metadata["files_auth"] == "slack_bot_token"
    assert message.metadata["subtype"] == "file_share"


def test_slack_connect_customer_in_a_thread(load):
    message = only(parse_fixture(load, "shared_channel_thread"))
    assert message.text == (
        "Grüße aus Köln 👋 die Lieferung <https://shop.example.com/orders/1042|#1042> fehlt — ça arrive quand?"
    )
    # Scoped to the customer's own workspace, not ours.
    assert [(h.scope, h.value) for h in message.sender.handles] == [("T0CUSTOMR", "U0EXT0042")]
    assert message.account == "T0HUB0001"
    assert message.sender.display_name == "Jürgen Müller"
    assert message.metadata["username"] == "juergen"
    assert message.metadata["shared_channel"] is True
    assert message.conversation_key == "slack:C0SHARED1:1767225500.000100"
    assert message.thread_keys == ["slack:C0SHARED1:1767225500.000100"]
    assert message.provider_message_id == "C0SHARED1:1767225600.000300"


def test_a_thread_reply_shares_the_thread_key_of_its_root():
    root = only(parse(envelope({"ts": "1767225500.000100"})))
    reply = only(parse(envelope({"ts": "1767225600.000200", "thread_ts": "1767225500.000100"})))
    assert root.thread_keys == reply.thread_keys
    assert root.conversation_key == "slack:D0HUB0001"


def test_sender_team_falls_back_to_team_then_profile_then_workspace():
    def scope(event: dict) -> str | None:
        return only(parse(envelope({"team": None, **event}, is_ext_shared_channel=True))).sender.handles[0].scope

    assert scope({"channel_type": "channel", "team": "T0A", "user_team": "T0B"}) == "T0B"
    assert scope({"channel_type": "channel", "team": "T0A"}) == "T0A"
    assert scope({"channel_type": "channel", "user_profile": {"team": "T0C"}}) == "T0C"
    assert scope({"channel_type": "im"}) == "T0HUB0001"


@pytest.mark.parametrize("subtype", ["thread_broadcast", "me_message"])
def test_person_written_subtypes_are_contacts(subtype):
    assert only(parse(envelope({"subtype": subtype}))).metadata["subtype"] == subtype


def test_a_message_without_text_or_files_is_kept_as_unsupported():
    message = only(parse(envelope({"text": "", "blocks": [{"type": "rich_text"}]})))
    assert message.content_type == ContentType.UNSUPPORTED
    assert message.raw["event"]["blocks"] == [{"type": "rich_text"}]


def test_deleted_and_unreadable_files_are_skipped_but_an_id_only_file_is_kept():
    files = [
        {"id": "F1", "mode": "tombstone"},
        {"name": "no-id.png"},
        "garbage",
        {"id": "F2", "file_access": "check_file_info"},
    ]
    message = only(parse(envelope({"subtype": "file_share", "files": files})))
    assert [(a.provider_media_id, a.url) for a in message.attachments] == [("F2", None)]


def test_lone_surrogates_become_replacement_characters():
    body = envelope({"text": "x"}).replace(b'"text":"x"', b'"text":"bad \\ud83d end"')
    message = only(parse(body))
    assert message.text == "bad \ufffd end"
    InboundMessage.model_validate_json(message.model_dump_json())


# --- acknowledged but not contacts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("bot_echo", "our own bot user's message"),
        ("shared_channel_agent", "a member of our own workspace in a shared channel"),
        ("message_changed", "message subtype 'message_changed': an edit"),
    ],
)
def test_fixtures_that_are_ignored_with_a_reason(load, name, reason):
    assert reason in ignored(parse_fixture(load, name))


def test_an_event_type_the_adapter_does_not_read_is_kept_raw(load):
    event = kept(parse_fixture(load, "reaction_added"))
    assert "event type 'reaction_added' is not handled" in event.reason
    assert event.raw["event"]["type"] == "reaction_added" and event.raw["event_id"]


@pytest.mark.parametrize(
    ("event", "settings", "reason"),
    [
        ({"bot_id": "B0OTHER", "user": "U0OTHERBOT"}, {}, "a bot's message (bot_id)"),
        ({"subtype": "bot_message", "bot_id": "B0OTHER", "user": None}, {}, "subtype 'bot_message': a bot's message"),
        ({"user": "U0HUBBOT2"}, {"bot_user_ids": ["U0HUBBOT2"]}, "our own bot user's message"),
        ({"bot_id": "B1", "app_id": "A0HUB0001", "user": None}, {"app_id": "A0HUB0001"}, "our own app's message"),
        ({"bot_id": "B1", "bot_profile": {"app_id": "A0HUB0001"}}, {"app_id": "A0HUB0001"}, "our own app's message"),
        ({"subtype": "message_deleted"}, {}, "a deletion"),
        ({"subtype": "channel_join"}, {}, "subtype 'channel_join': not a customer message"),
        ({"hidden": True}, {}, "a hidden message"),
        ({"type": "app_mention"}, {}, "app_mention repeats the message event"),
        ({"channel_type": "channel", "channel": "C0INTERNAL"}, {}, "outside Slack Connect"),
        ({"channel_type": "mpim"}, {}, "outside Slack Connect"),
    ],
)
def test_events_that_are_ignored_with_a_reason(event, settings, reason):
    assert reason in ignored(parse(envelope(event), **settings))


@pytest.mark.parametrize(
    ("event", "outer", "reason"),
    [
        ({"user": None}, {}, "message without user"),
        ({"ts": None}, {}, "message without channel or ts"),
        ({"type": "member_joined_channel"}, {}, "event type 'member_joined_channel' is not handled"),
        ({"channel_type": "channel", "channel": "C0SHARED1", "team": None}, {"is_ext_shared_channel": True},
         "without the sender's team"),
    ],
)
def test_events_the_adapter_cannot_read_are_kept_raw(event, outer, reason):
    kept_event = kept(parse(envelope(event, **outer)))
    assert reason in kept_event.reason and kept_event.raw["event_id"] == "Ev0TEST0001"


def test_team_ids_is_an_allow_list_of_workspaces():
    assert "'T0HUB0001' is not in team_ids" in ignored(parse(envelope(), team_ids=["T0OTHER"]))
    only(parse(envelope(), team_ids=["T0OTHER", "T0HUB0001"]))


def test_team_ids_also_names_our_workspaces_in_shared_channels():
    event = {"channel_type": "channel", "channel": "C0SHARED1", "user_team": "T0SISTER"}
    only(parse(envelope(event, is_ext_shared_channel=True)))
    ours = ["T0HUB0001", "T0SISTER"]
    assert "our own workspace" in ignored(parse(envelope(event, is_ext_shared_channel=True), team_ids=ours))


def test_a_shared_channel_event_delivered_through_the_customers_install_keeps_the_roles():
    """Slack may deliver a Slack Connect event through the customer's installation: `team_id`
    is then theirs. With team_ids configured, the sender's team alone decides."""
    customer_said = {"channel_type": "channel", "channel": "C0SHARED1", "user": "U0CUST001", "user_team": "T0CUSTOMR"}
    agent_said = {**customer_said, "user": "U0AGENT07", "user_team": "T0HUB0001"}
    via_customer = {"is_ext_shared_channel": True, "team_id": "T0CUSTOMR"}
    message = only(parse(envelope(customer_said, **via_customer), team_ids=["T0HUB0001"]))
    assert (message.sender.handles[0].value, message.sender.handles[0].scope) == ("U0CUST001", "T0CUSTOMR")
    assert "our own workspace" in ignored(parse(envelope(agent_said, **via_customer), team_ids=["T0HUB0001"]))
    # A workspace outside the allow-list still cannot send DMs in.
    assert "is not in team_ids" in ignored(parse(envelope(team_id="T0CUSTOMR"), team_ids=["T0HUB0001"]))


def test_a_dm_from_a_colleague_is_still_a_contact():
    only(parse(envelope({"user": "U0AGENT07", "team": "T0HUB0001"})))


def test_app_rate_limited_is_acknowledged_and_counted_with_its_minute():
    body = json.dumps({"token": "t", "team_id": "T0HUB0001", "minute_rate_limited": 1767225540,
                       "api_app_id": "A0HUB0001", "type": "app_rate_limited"}).encode()  # fmt: skip
    assert "for minute 1767225540" in ignored(parse(body))


def test_unknown_envelope_types_are_acknowledged_and_kept_raw():
    parsed = parse(json.dumps({"type": "brand_new_envelope", "token": "t", "detail": {"x": 1}}).encode())
    event = kept(parsed)
    assert "'brand_new_envelope' is not handled" in event.reason
    assert event.raw == {"type": "brand_new_envelope", "detail": {"x": 1}}
    assert adapter().ack(parsed).status == 200


# --- malformed bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not valid UTF-8 JSON"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b'{"type": NaN}', "not valid UTF-8 JSON"),
        (b"[]", "not a JSON object"),
        (b"{}", '"type"'),
        (b'{"type":"event_callback"}', '"event" object'),
        (b'{"type":"event_callback","event":[]}', '"event" object'),
        (b'{"type":"event_callback","x":' + b"[" * 60 + b"]" * 60 + b"}", "nested deeper"),
    ],
)
def test_malformed_bodies_are_400(body, reason):
    with pytest.raises(MalformedPayloadError, match=reason):
        parse(body)


# --- ack, simulate, settings --------------------------------------------------------------------


def test_ack_is_an_empty_200(load):
    for parsed in (parse_fixture(load, "dm_text"), ParsedWebhook(), SlackParsed(ignored=["x"])):
        response = adapter().ack(parsed)
        assert (response.status, response.body) == (200, "")


def test_simulated_request_is_signed_as_slack_signs_and_becomes_a_contact():
    customer = SimulatedCustomer(
        name="Jana Schmidt", phone="+4915123456789", email="j@example.com", text="Grüße 👋"
    )
    slack_adapter = adapter(signing_secrets=[OLD_SECRET, SECRET], team_ids=["T0HUB0001"])
    simulated = slack_adapter.simulated_request(customer)
    assert simulated is not None and simulated.path == "/webhooks/slack"
    assert SignatureVerifier(OLD_SECRET).is_valid_request(simulated.body, simulated.headers)
    req = request(simulated.body, simulated.headers, at=datetime.now(timezone.utc))
    slack_adapter.verify(req)
    message = only(slack_adapter.parse(req))
    assert (message.text, message.sender.display_name, message.account) == ("Grüße 👋", "Jana Schmidt", "T0HUB0001")
    again = slack_adapter.simulated_request(customer)
    assert again is not None
    assert json.loads(again.body)["event"]["user"] == json.loads(simulated.body)["event"]["user"]


def test_settings_mask_secrets_and_refuse_unknown_keys():
    settings = SlackSettings.model_validate({"signing_secrets": [SECRET]})
    assert SECRET not in repr(settings) and SECRET not in settings.model_dump_json()
    assert settings.max_skew_seconds == 300
    for bad in ({"signing_secrets": []}, {"signing_secrets": [SECRET], "verification_token": "x"},
                {"signing_secrets": [SECRET], "max_skew_seconds": 0}, {"signing_secrets": [" "]}):  # fmt: skip
        with pytest.raises(ValidationError):
            SlackSettings.model_validate(bad)


def test_secrets_resolve_on_use_not_at_construction(load, counting_resolver):
    resolver = counting_resolver({"SLACK_SECRET": SECRET})
    slack_adapter = SlackAdapter(SlackSettings.model_validate({"signing_secrets": ["env:SLACK_SECRET"]}), resolver)
    assert resolver.calls == 0
    slack_adapter.verify(load("slack", "dm_text").request())
    assert resolver.calls == 1
