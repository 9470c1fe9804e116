"""Meta adapter: X-Hub-Signature-256 over exact bytes, the verify-token handshake, and WhatsApp parsing."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from chalicelib.adapters.channels import meta
from chalicelib.adapters.channels.base import ParsedWebhook, WebhookRequest
from chalicelib.adapters.channels.meta import MetaAdapter, MetaSettings
from chalicelib.domain.models import Channel, ContentType, InboundMessage, StatusEvent
from chalicelib.errors import ForbiddenError, MalformedPayloadError, SignatureError
from chalicelib.secrets import SecretResolver

SECRET = "test_meta_app_secret"
OLD_SECRET = "previous_meta_app_secret"
VERIFY_TOKEN = "test_meta_verify_token"
AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
FIXTURE_NAMES = sorted(p.stem for p in (Path(__file__).parents[2] / "fixtures" / "meta").glob("*.body"))
WHATSAPP_FIXTURES = [n for n in FIXTURE_NAMES if n.startswith("whatsapp_")]
PHONE_NUMBER_ID = "106540352242922"
BSUID = "US.13491208655302741918"
METADATA = {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID}
CONTACT = {"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234", "user_id": BSUID}


def adapter(**overrides) -> MetaAdapter:
    settings = {"app_secrets": [SECRET], "verify_tokens": [VERIFY_TOKEN], **overrides}
    return MetaAdapter(MetaSettings.model_validate(settings), SecretResolver({}))


def request(body: bytes, headers: dict[str, str] | None = None, *, method="POST", query=None) -> WebhookRequest:
    return WebhookRequest(
        method=method,
        hook=None,
        headers={k.lower(): v for k, v in (headers or {}).items()},
        query=query or {},
        body=body,
        received_at=AT,
    )


def signed(body: bytes, secret: str = SECRET) -> WebhookRequest:
    return request(body, {"X-Hub-Signature-256": meta.compute_signature(secret, body)})


def text_message(n: int = 1, **fields) -> dict:
    message = {
        "from": "16505551234",
        "from_user_id": BSUID,
        "id": f"wamid.TEST{n}",
        "timestamp": "1767225600",
        "type": "text",
        "text": {"body": f"message {n}"},
    }
    message.update(fields)
    return {k: v for k, v in message.items() if v is not None}


def whatsapp_body(*values: dict, entries: int = 1) -> bytes:
    """Compact JSON like Meta sends; each value becomes one change of field `messages`."""
    changes = [
        {"value": {"messaging_product": "whatsapp", "metadata": METADATA, **v}, "field": "messages"} for v in values
    ]
    entry = [{"id": "102290129340398", "changes": changes} for _ in range(entries)]
    return json.dumps({"object": "whatsapp_business_account", "entry": entry}, separators=(",", ":")).encode()


def parse_body(body: bytes) -> ParsedWebhook:
    meta_adapter = adapter()
    req = signed(body)
    meta_adapter.verify(req)
    return meta_adapter.parse(req)


def parse_fixture(load, name: str) -> ParsedWebhook:
    fx = load("meta", name)
    meta_adapter = adapter()
    meta_adapter.verify(fx.request())
    return meta_adapter.parse(fx.request())


def only(parsed: ParsedWebhook):
    assert parsed.ignored == []
    assert len(parsed.events) == 1
    return parsed.events[0]


# --- signatures --------------------------------------------------------------------------------


def test_all_documented_fixtures_are_stored():
    assert len(FIXTURE_NAMES) == 12
    assert {"messenger_text", "messenger_batch", "instagram_text", "whatsapp_text"} <= set(FIXTURE_NAMES)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_verifies(load, name):
    fx = load("meta", name)
    independent = "sha256=" + hmac.new(SECRET.encode(), fx.body, hashlib.sha256).hexdigest()
    assert independent == fx.headers["x-hub-signature-256"]
    assert meta.compute_signature(SECRET, fx.body) == independent
    adapter().verify(fx.request())


def test_reserialized_utf8_body_fails_verification(load):
    fx = load("meta", "whatsapp_text")
    assert b"\\u00e7" in fx.body
    reserialized = json.dumps(json.loads(fx.body), ensure_ascii=False, separators=(",", ":")).encode()
    assert json.loads(reserialized) == json.loads(fx.body)
    # The digest PROVIDERS §10.5 recorded for exactly this re-serialization.
    assert meta.compute_signature(SECRET, reserialized) == (
        "sha256=0ff88ff8d7a13f59e82d857f5c404249bedb3bf7b325fcc79bfeacd57448860f"
    )
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(fx.request(body=reserialized))


def test_githubs_cross_check_vector():
    secret, body = "It's a Secret to Everybody", b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert meta.compute_signature(secret, body) == expected
    assert meta.compute_signature(secret.encode(), body) == expected
    adapter(app_secrets=[secret]).verify(request(body, {"X-Hub-Signature-256": expected}))


@pytest.mark.parametrize("name", WHATSAPP_FIXTURES[:3])
def test_one_flipped_byte_fails(load, name):
    fx = load("meta", name)
    tampered = fx.body.replace(b"Sheena", b"Sheenb") if b"Sheena" in fx.body else fx.body[:-2] + b" }"
    assert tampered != fx.body
    with pytest.raises(SignatureError):
        adapter().verify(fx.request(body=tampered))


def test_missing_signature_header_fails(load):
    with pytest.raises(SignatureError, match="missing X-Hub-Signature-256"):
        adapter().verify(load("meta", "whatsapp_text").request(headers={"x-hub-signature-256": None}))


@pytest.mark.parametrize(
    "header",
    [
        "d01c1f591051724f874dc77a98d158cb005899b371db60eecaf2094743cb55b5",  # no prefix
        "sha1=d01c1f591051724f874dc77a98d158cb005899b3",  # legacy header format
        "sha256=d01c1f591051724f874dc77a98d158cb005899b371db60eecaf2094743cb55b",  # 63 hex
        "sha256=zz1c1f591051724f874dc77a98d158cb005899b371db60eecaf2094743cb55b5",
        "sha256=",
        "sha256=d01c1f59 1051724f874dc77a98d158cb005899b371db60eecaf2094743cb55b5",
    ],
)
def test_garbled_signature_header_fails(load, header):
    with pytest.raises(SignatureError, match="sha256="):
        adapter().verify(load("meta", "whatsapp_text").request(headers={"x-hub-signature-256": header}))


def test_upper_case_hex_is_accepted(load):
    fx = load("meta", "whatsapp_text")
    upper = "sha256=" + fx.headers["x-hub-signature-256"][7:].upper()
    adapter().verify(fx.request(headers={"x-hub-signature-256": upper}))


@pytest.mark.parametrize("secrets", [[OLD_SECRET, SECRET], [SECRET, OLD_SECRET]])
def test_rotated_app_secrets_verify(load, secrets):
    adapter(app_secrets=secrets).verify(load("meta", "whatsapp_text").request())


def test_wrong_app_secret_fails(load):
    with pytest.raises(SignatureError):
        adapter(app_secrets=[OLD_SECRET]).verify(load("meta", "whatsapp_text").request())


def test_legacy_sha1_header_alone_is_not_enough(load):
    fx = load("meta", "whatsapp_text")
    sha1 = "sha1=" + hmac.new(SECRET.encode(), fx.body, hashlib.sha1).hexdigest()
    with pytest.raises(SignatureError):
        adapter().verify(fx.request(headers={"x-hub-signature-256": None, "x-hub-signature": sha1}))


# --- handshake ---------------------------------------------------------------------------------


def handshake(query: dict[str, str], **overrides):
    return adapter(**overrides).handshake(request(b"", method="GET", query=query))


GOOD = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}


def test_handshake_echoes_the_challenge():
    response = handshake(GOOD)
    assert (response.status, response.body, response.content_type) == (200, "1158201444", "text/plain")


def test_handshake_accepts_any_token_of_the_rotation_list():
    assert handshake(GOOD, verify_tokens=["old-token", VERIFY_TOKEN]).body == "1158201444"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({**GOOD, "hub.verify_token": "wrong"}, "does not match"),
        ({**GOOD, "hub.verify_token": VERIFY_TOKEN + "x"}, "does not match"),
        ({**GOOD, "hub.mode": "unsubscribe"}, "subscribe"),
        ({k: v for k, v in GOOD.items() if k != "hub.mode"}, "missing hub.mode"),
        ({k: v for k, v in GOOD.items() if k != "hub.verify_token"}, "missing hub.verify_token"),
        ({"hub_mode": "subscribe", "hub_verify_token": VERIFY_TOKEN, "hub_challenge": "1"}, "missing hub.mode"),
    ],
)
def test_handshake_refuses_with_403_and_a_reason(query, reason):
    with pytest.raises(ForbiddenError, match=reason):
        handshake(query)


@pytest.mark.parametrize("challenge", [None, "", "<script>alert(1)</script> x", "1" * 257])
def test_handshake_with_good_token_but_bad_challenge_is_400(challenge):
    query = {k: v for k, v in GOOD.items() if k != "hub.challenge"}
    if challenge is not None:
        query["hub.challenge"] = challenge
    with pytest.raises(MalformedPayloadError, match="hub.challenge"):
        handshake(query)


# --- parsing: the fixtures ---------------------------------------------------------------------


def test_text_message(load):
    message = only(parse_fixture(load, "whatsapp_text"))
    assert isinstance(message, InboundMessage)
    assert (message.provider, message.channel, message.content_type) == ("meta", Channel.WHATSAPP, ContentType.TEXT)
    assert message.text == "Olá, ça coûte combien?"
    assert message.provider_message_id == "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQUVCMDAwMDAwMDAwMDAwMD1A="
    assert message.account == PHONE_NUMBER_ID
    assert message.sent_at == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert message.received_at == datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
    assert [(h.kind, h.value) for h in message.sender.handles] == [("whatsapp_user", BSUID), ("whatsapp", "16505551234")]
    assert message.sender.display_name == "Sheena Nelson"
    assert message.conversation_key == f"meta:{PHONE_NUMBER_ID}:{BSUID}"
    assert message.raw["message"]["text"]["body"] == "Olá, ça coûte combien?"
    assert message.raw["metadata"] == METADATA
    assert message.raw["contact"] == CONTACT


def test_image_message(load):
    message = only(parse_fixture(load, "whatsapp_image"))
    assert message.content_type is ContentType.MEDIA
    [attachment] = message.attachments
    assert attachment.provider_media_id == "1003383421387256"
    assert attachment.content_type == "image/jpeg"
    assert attachment.caption == "Broken seal"
    assert attachment.url == "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1003383421387256"
    assert message.text == "Broken seal"


def test_document_message(load):
    [attachment] = only(parse_fixture(load, "whatsapp_document")).attachments
    assert (attachment.filename, attachment.content_type, attachment.caption) == (
        "invoice-1042.pdf",
        "application/pdf",
        "Invoice",
    )
    assert attachment.url is None


def test_voice_note(load):
    message = only(parse_fixture(load, "whatsapp_voice"))
    assert message.content_type is ContentType.MEDIA
    assert message.metadata["voice"] is True
    assert message.attachments[0].content_type == "audio/ogg; codecs=opus"
    assert message.text is None


def test_location(load):
    message = only(parse_fixture(load, "whatsapp_location"))
    assert message.content_type is ContentType.LOCATION
    assert message.location.model_dump() == {
        "latitude": 37.483307,
        "longitude": -122.148981,
        "name": "Main office",
        "address": "1 Hacker Way, Menlo Park, CA 94025",
        "url": "https://example.com",
    }


def test_button_reply_quoting_our_message(load):
    message = only(parse_fixture(load, "whatsapp_interactive_button_reply"))
    assert message.content_type is ContentType.INTERACTIVE
    assert message.text == "Track order"
    assert message.metadata["reply_id"] == "track-order"
    assert message.metadata["interactive_type"] == "button_reply"
    assert message.metadata["reply_to"] == "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI0QUFCQ0RFRjAxMjM0NTY3OAA="


def test_reaction(load):
    message = only(parse_fixture(load, "whatsapp_reaction"))
    assert message.content_type is ContentType.REACTION
    assert message.text == "👍"
    assert message.metadata["emoji"] == "👍"
    assert message.metadata["removed"] is False
    assert message.metadata["reacted_message_id"] == "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI0QUFCQ0RFRjAxMjM0NTY3OAA="


def test_status_delivered(load):
    status = only(parse_fixture(load, "whatsapp_status_delivered"))
    assert isinstance(status, StatusEvent)
    assert (status.provider, status.channel, status.status) == ("meta", Channel.WHATSAPP, "delivered")
    assert status.provider_message_id == "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI0QUFCQ0RFRjAxMjM0NTY3OAA="
    assert status.occurred_at == datetime(2026, 1, 1, 0, 1, tzinfo=timezone.utc)
    assert status.recipient == "16505551234"
    assert status.account == PHONE_NUMBER_ID
    assert status.raw["status"]["pricing"]["category"] == "utility"


def test_status_failed_carries_the_first_error(load):
    status = only(parse_fixture(load, "whatsapp_status_failed"))
    assert (status.status, status.error_code, status.error_message) == ("failed", "131047", "Re-engagement message")


@pytest.mark.parametrize("name", ["messenger_text", "messenger_batch", "instagram_text"])
def test_messenger_and_instagram_are_acknowledged_with_a_reason(load, name):
    meta_adapter = adapter()
    parsed = parse_fixture(load, name)
    assert parsed.events == []
    [reason] = parsed.ignored
    assert ("Messenger" if name.startswith("messenger") else "Instagram") in reason
    assert meta_adapter.ack(parsed).status == 200


# --- parsing: shapes built here ----------------------------------------------------------------


def test_batched_multi_entry_body_produces_every_event():
    first = {"contacts": [CONTACT], "messages": [text_message(1), text_message(2)]}
    second = {"statuses": [{"id": "wamid.OUT1", "status": "read", "timestamp": "1767225700", "recipient_id": "1"}]}
    parsed = parse_body(whatsapp_body(first, second, entries=2))
    assert parsed.ignored == []
    ids = [e.provider_message_id for e in parsed.events]
    assert ids == ["wamid.TEST1", "wamid.TEST2", "wamid.OUT1", "wamid.TEST1", "wamid.TEST2", "wamid.OUT1"]
    assert [e.kind for e in parsed.events[:3]] == ["message", "message", "status"]


def test_each_message_takes_its_own_contact():
    other = {"profile": {"name": "Other Person"}, "wa_id": "4915123456789"}
    messages = [text_message(1), text_message(2, **{"from": "4915123456789", "from_user_id": None})]
    parsed = parse_body(whatsapp_body({"contacts": [CONTACT, other], "messages": messages}))
    assert [e.sender.display_name for e in parsed.events] == ["Sheena Nelson", "Other Person"]
    assert [(h.kind, h.value) for h in parsed.events[1].sender.handles] == [("whatsapp", "4915123456789")]


@pytest.mark.parametrize("wa_id", ["", None])
def test_empty_or_missing_wa_id_with_user_id_gives_a_whatsapp_user_handle(wa_id):
    contact = {"profile": {"name": "Username User", "username": "@sheena"}, "user_id": BSUID}
    message = text_message(1, **{"from": None})
    if wa_id is not None:
        contact["wa_id"] = wa_id
        message["from"] = wa_id
    parsed = parse_body(whatsapp_body({"contacts": [contact], "messages": [message]}))
    message_ = only(parsed)
    assert [(h.kind, h.value, h.verified) for h in message_.sender.handles] == [("whatsapp_user", BSUID, True)]
    assert message_.sender.display_name == "Username User"
    assert message_.metadata["username"] == "@sheena"
    assert message_.conversation_key == f"meta:{PHONE_NUMBER_ID}:{BSUID}"


def test_phone_only_sender_before_bsuids():
    message = text_message(1, from_user_id=None)
    contact = {"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}
    handles = only(parse_body(whatsapp_body({"contacts": [contact], "messages": [message]}))).sender.handles
    assert [(h.kind, h.value) for h in handles] == [("whatsapp", "16505551234")]


def test_a_non_numeric_from_without_user_id_is_a_whatsapp_user():
    message = text_message(1, **{"from": "US.99", "from_user_id": None})
    handles = only(parse_body(whatsapp_body({"messages": [message]}))).sender.handles
    assert [(h.kind, h.value) for h in handles] == [("whatsapp_user", "US.99")]


def test_parent_user_id_is_kept_in_metadata():
    message = text_message(1, from_parent_user_id="US.ENT.1")
    assert only(parse_body(whatsapp_body({"messages": [message]}))).metadata["parent_user_id"] == "US.ENT.1"


@pytest.mark.parametrize("kind", ["contacts", "order", "system", "unsupported", "brand_new_type"])
def test_unknown_or_unread_types_are_unsupported_and_kept(kind):
    message = text_message(1, type=kind, text=None, **{kind: {"something": [1, 2]}})
    parsed = parse_body(whatsapp_body({"contacts": [CONTACT], "messages": [message]}))
    unsupported = only(parsed)
    assert unsupported.content_type is ContentType.UNSUPPORTED
    assert unsupported.metadata["type"] == kind
    assert unsupported.raw["message"][kind] == {"something": [1, 2]}
    assert unsupported.sender.display_name == "Sheena Nelson"


@pytest.mark.parametrize(
    "broken",
    [
        {"type": "image", "image": {"caption": "no id or url"}},
        {"type": "location", "location": {"latitude": "north", "longitude": 1}},
        {"type": "location", "location": {"latitude": 100, "longitude": 1}},
        {"type": "interactive", "interactive": {"type": "button_reply"}},
        {"type": "text", "text": {"body": 5.5}},
    ],
)
def test_a_known_type_with_an_unreadable_body_is_unsupported_not_dropped(broken):
    message = only(parse_body(whatsapp_body({"messages": [{**text_message(1, text=None), **broken}]})))
    assert message.content_type is ContentType.UNSUPPORTED
    assert message.metadata["unreadable"] is True


def test_list_reply():
    interactive = {"type": "list_reply", "list_reply": {"id": "opt-2", "title": "Returns", "description": "30 days"}}
    message = only(
        parse_body(whatsapp_body({"messages": [text_message(1, type="interactive", interactive=interactive)]}))
    )
    assert message.content_type is ContentType.INTERACTIVE
    assert (message.text, message.metadata["reply_id"], message.metadata["reply_description"]) == (
        "Returns",
        "opt-2",
        "30 days",
    )


def test_template_quick_reply_button():
    message = only(
        parse_body(
            whatsapp_body({"messages": [text_message(1, type="button", button={"payload": "STOP", "text": "Stop"})]})
        )
    )
    assert message.content_type is ContentType.INTERACTIVE
    assert (message.text, message.metadata["reply_id"], message.metadata["interactive_type"]) == (
        "Stop",
        "STOP",
        "button",
    )


def test_flow_reply():
    nfm = {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent", "response_json": '{"a":1}'}}
    message = only(parse_body(whatsapp_body({"messages": [text_message(1, type="interactive", interactive=nfm)]})))
    assert message.content_type is ContentType.INTERACTIVE
    assert message.metadata["flow_response"] == '{"a":1}'


def test_removed_reaction_has_no_emoji():
    reaction = {"message_id": "wamid.OURS"}
    message = only(parse_body(whatsapp_body({"messages": [text_message(1, type="reaction", reaction=reaction)]})))
    assert message.content_type is ContentType.REACTION
    assert message.text is None
    assert message.metadata == {"type": "reaction", "reacted_message_id": "wamid.OURS", "emoji": None, "removed": True}


def test_context_forwarding_and_referral_are_kept():
    referral = {"source_url": "https://fb.me/ad", "source_type": "ad", "ctwa_clid": "ARAk"}
    message = text_message(1, context={"forwarded": True, "frequently_forwarded": True}, referral=referral)
    metadata = only(parse_body(whatsapp_body({"messages": [message]}))).metadata
    assert metadata["forwarded"] is True and metadata["frequently_forwarded"] is True
    assert metadata["referral"] == referral
    assert "reply_to" not in metadata


@pytest.mark.parametrize(("provider_status", "ours"), [*meta.STATUSES.items(), ("deleted", meta.UNKNOWN)])
def test_status_vocabulary_with_unknown_fallback(provider_status, ours):
    status = {"id": "wamid.OUT", "status": provider_status, "timestamp": "1767225600", "recipient_user_id": BSUID}
    event = only(parse_body(whatsapp_body({"statuses": [status]})))
    assert event.status == ours
    assert event.recipient == BSUID
    assert event.raw["status"]["status"] == provider_status


def test_one_malformed_item_never_drops_the_others():
    messages = [
        text_message(1),
        "not an object",
        {"type": "text", "text": {"body": "no id"}, "from": "1234567"},
        {"id": "wamid.NOSENDER", "type": "text", "text": {"body": "x"}},
        text_message(2),
    ]
    statuses = [{"id": "wamid.OUT"}, {"id": "wamid.OUT2", "status": "sent"}]
    parsed = parse_body(whatsapp_body({"messages": messages, "statuses": statuses}))
    assert [e.provider_message_id for e in parsed.events] == ["wamid.TEST1", "wamid.TEST2", "wamid.OUT2"]
    where = "entry[0].changes[0].value"
    assert parsed.ignored == [
        f"{where}.messages[1]: not an object",
        f"{where}.messages[2]: message without id",
        f"{where}.messages[3]: message without sender (from / from_user_id)",
        f"{where}.statuses[0]: status without id or status",
    ]


def test_an_absurdly_deep_item_is_ignored_and_the_rest_kept():
    deep: object = "x"
    for _ in range(meta.MAX_ITEM_DEPTH + 5):
        deep = [deep]
    parsed = parse_body(whatsapp_body({"messages": [text_message(1, type="weird", weird=deep), text_message(2)]}))
    assert [e.provider_message_id for e in parsed.events] == ["wamid.TEST2"]
    assert "nested deeper" in parsed.ignored[0]


def test_messages_need_the_business_phone_number_id():
    body = json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "messages", "value": {"messages": [text_message(1)]}}]}],
        }
    ).encode()
    parsed = parse_body(body)
    assert parsed.events == []
    assert parsed.ignored == ["entry[0].changes[0].value.messages[0]: metadata.phone_number_id missing"]


def test_value_errors_and_unknown_fields_are_ignored_with_reasons():
    errors = {"errors": [{"code": 131051, "title": "Unsupported message type", "message": "x"}]}
    body = json.loads(whatsapp_body(errors))
    body["entry"][0]["changes"].append({"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}})
    body["entry"].append("not an entry")
    parsed = parse_body(json.dumps(body).encode())
    assert parsed.events == []
    assert parsed.ignored == [
        "entry[0].changes[0].value.errors[0]: WhatsApp reported error 131051 (Unsupported message type)",
        "entry[0].changes[1]: field 'account_update' is not handled",
        "entry[1]: not an object with a changes list",
    ]


def test_unknown_object_is_acknowledged_with_a_reason():
    parsed = parse_body(b'{"object":"permissions","entry":[]}')
    assert parsed.events == [] and parsed.ignored == ["object 'permissions' is not a product this adapter handles"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not valid UTF-8 JSON"),
        (b"\xff\xfe{}", "not valid UTF-8 JSON"),
        (b"{'object': 1}", "not valid UTF-8 JSON"),
        (b'{"object":"whatsapp_business_account","entry":[NaN]}', "not valid UTF-8 JSON"),
        (b"[]", "not a JSON object"),
        (b'"text"', "not a JSON object"),
        (b'{"entry":[]}', '"object"'),
        (b'{"object":"whatsapp_business_account"}', '"entry"'),
        (b'{"object":"whatsapp_business_account","entry":{}}', '"entry"'),
        (b"[" * 100_000, "not valid UTF-8 JSON"),
    ],
)
def test_whole_body_problems_are_malformed_with_a_reason(body, reason):
    with pytest.raises(MalformedPayloadError, match=reason):
        parse_body(body)


def test_lone_surrogate_escape_becomes_a_replacement_character():
    body = whatsapp_body({"messages": [text_message(1)]}).replace(b"message 1", b"broken \\ud83d emoji")
    message = only(parse_body(body))
    assert message.text == "broken \ufffd emoji"
    assert InboundMessage.model_validate_json(message.model_dump_json()) == message


@pytest.mark.parametrize("timestamp", ["not a time", "99999999999999", None, True])
def test_unreadable_timestamp_leaves_sent_at_empty(timestamp):
    assert only(parse_body(whatsapp_body({"messages": [text_message(1, timestamp=timestamp)]}))).sent_at is None


def test_ack_is_200():
    response = adapter().ack(ParsedWebhook())
    assert (response.status, response.body) == (200, "EVENT_RECEIVED")


# --- settings and secrets ----------------------------------------------------------------------


def test_settings_reject_unknown_keys_and_empty_lists():
    with pytest.raises(ValidationError, match="app_secret\n"):
        MetaSettings.model_validate({"app_secrets": [SECRET], "verify_tokens": [VERIFY_TOKEN], "app_secret": SECRET})
    with pytest.raises(ValidationError, match="verify_tokens"):
        MetaSettings.model_validate({"app_secrets": [SECRET], "verify_tokens": []})


def test_settings_repr_hides_secrets():
    settings = MetaSettings.model_validate({"app_secrets": [SECRET], "verify_tokens": [VERIFY_TOKEN]})
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert SECRET not in text and VERIFY_TOKEN not in text


def test_secrets_resolve_lazily_and_each_use_sees_the_current_value(load, counting_resolver):
    environ = {"META_SECRET": SECRET, "META_TOKEN": VERIFY_TOKEN}
    resolver = counting_resolver(environ)
    settings = MetaSettings.model_validate({"app_secrets": ["env:META_SECRET"], "verify_tokens": ["env:META_TOKEN"]})
    meta_adapter = MetaAdapter(settings, resolver)
    assert resolver.calls == 0
    meta_adapter.verify(load("meta", "whatsapp_text").request())
    meta_adapter.handshake(request(b"", method="GET", query=GOOD))
    assert resolver.calls == 2
    environ["META_TOKEN"] = "rotated-verify-token"
    with pytest.raises(ForbiddenError):
        meta_adapter.handshake(request(b"", method="GET", query=GOOD))


def test_lone_surrogate_in_entry_id_is_cleaned_before_it_reaches_raw():
    # Found by the contract fuzz: an uncleaned id made the event impossible to put on the queue.
    body = json.loads(whatsapp_body({"statuses": [{"id": "wamid.OUT", "status": "sent"}]}))
    body["entry"][0]["id"] = "PLACEHOLDER"
    raw = json.dumps(body).replace("PLACEHOLDER", "\\ud800").encode()
    status = only(parse_body(raw))
    assert status.raw["entry_id"] == "\ufffd"
    assert StatusEvent.model_validate_json(status.model_dump_json()) == status
