"""Meta adapter: X-Hub-Signature-256 over exact bytes, the verify-token handshake, WhatsApp parsing
(with 2026's business-scoped user ids), Messenger and Instagram messaging, and simulated requests."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from chalicelib.adapters.channels import json_body
from chalicelib.adapters.channels.meta import adapter as meta
from chalicelib.adapters.channels.meta import whatsapp as meta_whatsapp
from chalicelib.adapters.channels.base import ParsedWebhook, SimulatedCustomer, WebhookRequest
from chalicelib.adapters.channels.meta.adapter import MetaAdapter, MetaSettings
from chalicelib.domain.models import (
    MAX_UNHANDLED_DEPTH,
    Channel,
    ContentType,
    IdentityChange,
    InboundMessage,
    StatusEvent,
)
from chalicelib.errors import ForbiddenError, MalformedPayloadError, SignatureError
from chalicelib.secrets import SecretResolver

SECRET = "test_meta_app_secret"
OLD_SECRET = "previous_meta_app_secret"
VERIFY_TOKEN = "test_meta_verify_token"
AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
FIXTURE_NAMES = sorted(p.stem for p in (Path(__file__).parents[2] / "fixtures" / "meta").glob("*.body"))
WHATSAPP_FIXTURES = [n for n in FIXTURE_NAMES if n.startswith("whatsapp_")]
MESSAGING_FIXTURES = [n for n in FIXTURE_NAMES if n.startswith(("messenger_", "instagram_"))]
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
    assert parsed.ignored == [] and parsed.unhandled == []
    assert len(parsed.events) == 1
    return parsed.events[0]


def unhandled(parsed: ParsedWebhook) -> list[str]:
    """The reasons of the items kept raw; each event is Meta's and carries its item."""
    assert all(e.provider == "meta" and e.raw is not None and e.received_at == AT for e in parsed.unhandled)
    return [e.reason for e in parsed.unhandled]


# --- signatures --------------------------------------------------------------------------------


def test_all_documented_fixtures_are_stored():
    assert len(FIXTURE_NAMES) == 26
    assert {"messenger_text", "messenger_batch", "instagram_text", "whatsapp_text"} <= set(FIXTURE_NAMES)
    assert len(MESSAGING_FIXTURES) == 14


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_bodies_are_compact_escaped_json_as_meta_sends(load, name):
    body = load("meta", name).body
    assert body.isascii()
    assert json.dumps(json.loads(body), separators=(",", ":")).encode() == body


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


@pytest.mark.parametrize("name", WHATSAPP_FIXTURES[:3] + MESSAGING_FIXTURES)
def test_one_flipped_byte_fails(load, name):
    fx = load("meta", name)
    # Another customer (or name) in otherwise identical bytes.
    swaps = [
        (b"Sheena", b"Sheenb"),
        (b"6789012345678901", b"6789012345678902"),
        (b"5566778899001122", b"5566778899001123"),
    ]
    old, new = next(((a, b) for a, b in swaps if a in fx.body), (b"]}]}", b"]} ]}"))
    tampered = fx.body.replace(old, new)
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


@pytest.mark.parametrize("kind", ["contacts", "order", "unsupported", "brand_new_type"])
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


@pytest.mark.parametrize(("provider_status", "ours"), [*meta_whatsapp.STATUSES.items(), ("deleted", meta_whatsapp.UNKNOWN)])
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
    assert parsed.ignored == []
    assert unhandled(parsed) == [
        f"{where}.messages[1]: not an object",
        f"{where}.messages[2]: message without id",
        f"{where}.messages[3]: message without sender (from / from_user_id)",
        f"{where}.statuses[0]: status without id or status",
    ]
    assert [e.raw for e in parsed.unhandled] == [messages[1], messages[2], messages[3], statuses[0]]


def test_an_absurdly_deep_item_is_kept_as_text_and_the_rest_parsed():
    deep: object = "x"
    # Deeper than the adapter reads and than a raw copy is kept as JSON: kept as its JSON text.
    for _ in range(max(json_body.MAX_DEPTH, MAX_UNHANDLED_DEPTH) + 5):
        deep = [deep]
    parsed = parse_body(whatsapp_body({"messages": [text_message(1, type="weird", weird=deep), text_message(2)]}))
    assert [e.provider_message_id for e in parsed.events] == ["wamid.TEST2"]
    [kept] = parsed.unhandled
    assert "nested deeper" in kept.reason and isinstance(kept.raw, str) and '"weird"' in kept.raw
    # What the queue carries survives the trip.
    assert type(kept).model_validate_json(kept.model_dump_json()) == kept


def test_messages_need_the_business_phone_number_id():
    body = json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "messages", "value": {"messages": [text_message(1)]}}]}],
        }
    ).encode()
    parsed = parse_body(body)
    assert parsed.events == []
    assert unhandled(parsed) == ["entry[0].changes[0].value.messages[0]: metadata.phone_number_id missing"]
    assert parsed.unhandled[0].raw == text_message(1)


def test_value_errors_and_unknown_fields_are_kept_raw_with_reasons():
    errors = {"errors": [{"code": 131051, "title": "Unsupported message type", "message": "x"}]}
    body = json.loads(whatsapp_body(errors))
    body["entry"][0]["changes"].append({"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}})
    body["entry"].append("not an entry")
    parsed = parse_body(json.dumps(body).encode())
    assert parsed.events == [] and parsed.ignored == []
    assert unhandled(parsed) == [
        "entry[0].changes[0].value.errors[0]: WhatsApp reported error 131051 (Unsupported message type)",
        "entry[0].changes[1]: field 'account_update' is not handled",
        "entry[1]: not an object with a changes list",
    ]
    assert [e.raw for e in parsed.unhandled] == [
        errors["errors"][0], {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}}, "not an entry",
    ]


def test_unknown_object_is_acknowledged_and_kept_raw():
    parsed = parse_body(b'{"object":"permissions","entry":[]}')
    assert parsed.events == [] and unhandled(parsed) == ["object 'permissions' is not a product this adapter handles"]
    assert parsed.unhandled[0].raw == {"object": "permissions", "entry": []}


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


@pytest.mark.parametrize("body", [
    b'{"a":"\\ud800"}', b'{"a":"\\uDBFF\\uDFFF"}', b'{"a":"\\udc00"}',  # any surrogate escape, paired too
    b'{"a":' + b"[" * json_body.MAX_DEPTH + b"{}" + b"]" * json_body.MAX_DEPTH + b"}",  # brackets past MAX_DEPTH
])
def test_the_parse_cleans_items_of_a_body_that_may_need_it(body):
    from chalicelib.adapters.channels.meta.core import cleaned, cleaner

    assert cleaner(body) is cleaned


@pytest.mark.parametrize("body", [b'{"a":"\\ud7ff \\ue000 \\\\u"}', b'{"a":' + b"[" * 20 + b"]" * 20 + b"}"])
def test_the_parse_takes_items_as_they_are_from_a_body_that_cannot_need_cleaning(body):
    from chalicelib.adapters.channels.meta.core import as_is, cleaner

    assert cleaner(body) is as_is


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_skipping_the_clean_of_a_plain_body_changes_no_event(load, name, monkeypatch):
    """The fast path (issue 14: a third of the parse) is only an optimisation: every fixture
    parses to the same events and reasons with every item cleaned."""
    from chalicelib.adapters.channels.meta import core

    fast = parse_fixture(load, name)
    monkeypatch.setattr(meta, "cleaner", lambda body: core.cleaned)
    slow = parse_fixture(load, name)
    assert [e.model_dump() for e in fast.events] == [e.model_dump() for e in slow.events]
    assert [(e.reason, e.raw) for e in fast.unhandled] == [(e.reason, e.raw) for e in slow.unhandled]
    assert fast.ignored == slow.ignored


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


# --- WhatsApp: business-scoped user ids (2026) -------------------------------------------------


def test_bsuid_only_message_gives_a_whatsapp_user_handle_and_no_phone(load):
    message = only(parse_fixture(load, "whatsapp_bsuid_only"))
    assert [(h.kind, h.value, h.scope) for h in message.sender.handles] == [
        ("whatsapp_user", "BR.1502576394655843", None)
    ]
    assert message.sender.display_name == "Ana Souza"
    assert message.metadata["username"] == "@ana.souza"
    assert message.text == "Olá! Meu pedido chegou quebrado."
    assert message.conversation_key == f"meta:{PHONE_NUMBER_ID}:BR.1502576394655843"
    assert message.raw["contact"]["user_id"] == "BR.1502576394655843"


def test_bsuid_and_wa_id_give_both_handles_so_identity_links_them(load):
    message = only(parse_fixture(load, "whatsapp_bsuid_and_wa_id"))
    assert [(h.kind, h.value) for h in message.sender.handles] == [
        ("whatsapp_user", "DE.88012345678901234567"),
        ("whatsapp", "4915123456789"),
    ]
    assert all(h.verified for h in message.sender.handles)
    assert message.sender.display_name == "Jürgen Weiß"
    assert message.metadata["parent_user_id"] == "DE.ENT.11815799212886844830"
    assert message.text == "Grüß Gott, wo bleibt meine Lieferung?"


def test_the_bsuid_handle_normalizes_to_the_whatsapp_user_identifier(load):
    from chalicelib.domain.identifiers import IdentifierKind
    from chalicelib.service.identity import normalize_sender

    handles = only(parse_fixture(load, "whatsapp_bsuid_and_wa_id")).sender.handles
    party = normalize_sender(handles, None, default_region="US").party
    assert [(i.kind, i.value) for i in party.identifiers] == [
        (IdentifierKind.WHATSAPP_USER, "DE.88012345678901234567"),
        (IdentifierKind.PHONE, "+4915123456789"),
    ]


BOTH = [("whatsapp_user", BSUID), ("whatsapp", "16505551234")]


@pytest.mark.parametrize(
    ("message_ids", "contact_ids", "expected"),
    [
        # The message names only the BSUID; the phone comes from its contact.
        ({"from": None}, {"wa_id": "16505551234", "user_id": BSUID}, BOTH),
        # The message names only the phone; the BSUID comes from its contact.
        ({"from_user_id": None}, {"wa_id": "16505551234", "user_id": BSUID}, BOTH),
        # `from` empty, contact without wa_id: a username user.
        ({"from": ""}, {"user_id": BSUID}, [("whatsapp_user", BSUID)]),
        # No contacts at all (system messages have none): the message's own ids.
        ({}, None, BOTH),
    ],
)
def test_bsuid_and_phone_are_read_from_the_message_or_its_contact(message_ids, contact_ids, expected):
    value: dict = {"messages": [text_message(1, **message_ids)]}
    if contact_ids is not None:
        value["contacts"] = [{"profile": {"name": "N"}, **contact_ids}]
    handles = only(parse_body(whatsapp_body(value))).sender.handles
    assert [(h.kind, h.value) for h in handles] == expected


def test_status_sent_to_a_bsuid_names_the_bsuid_as_recipient(load):
    status = only(parse_fixture(load, "whatsapp_status_read_bsuid"))
    assert isinstance(status, StatusEvent)
    assert (status.status, status.recipient) == ("read", "BR.1502576394655843")
    assert status.raw["status"]["recipient_user_id"] == "BR.1502576394655843"
    assert status.raw["contact"]["profile"]["username"] == "@ana.souza"


def test_status_recipient_prefers_the_phone_and_falls_back_to_the_contact():
    with_phone = {"id": "wamid.OUT", "status": "delivered", "recipient_id": "16505551234", "recipient_user_id": BSUID}
    assert only(parse_body(whatsapp_body({"statuses": [with_phone]}))).recipient == "16505551234"
    bare = {"id": "wamid.OUT", "status": "delivered"}
    contact = {"user_id": BSUID}
    assert only(parse_body(whatsapp_body({"contacts": [contact], "statuses": [bare]}))).recipient == BSUID


# --- Messenger and Instagram: the fixtures -----------------------------------------------------

PAGE_ID, PSID = "1234567890", "6789012345678901"
IG_ID, IGSID = "17841400000000000", "5566778899001122"


def test_messenger_text(load):
    message = only(parse_fixture(load, "messenger_text"))
    assert isinstance(message, InboundMessage)
    assert (message.provider, message.channel, message.content_type) == ("meta", Channel.MESSENGER, ContentType.TEXT)
    assert message.provider_message_id == "m_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
    assert message.account == PAGE_ID
    assert [(h.kind, h.value, h.scope, h.verified) for h in message.sender.handles] == [
        ("messenger", PSID, PAGE_ID, True)
    ]
    assert message.sender.display_name is None
    assert message.text == "Is the store open on Sunday?"
    # Messenger times are milliseconds.
    assert message.sent_at == datetime(2026, 1, 1, 0, 0, 0, 1000, tzinfo=timezone.utc)
    assert message.received_at == AT
    assert message.conversation_key == f"meta:{PAGE_ID}:{PSID}"
    assert message.dedupe_key == "msg:meta:m_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
    assert message.raw["event"]["message"]["text"] == "Is the store open on Sunday?"
    assert message.raw["entry_id"] == PAGE_ID


def test_messenger_non_ascii_text_and_its_signature(load):
    fx = load("meta", "messenger_text_non_ascii")
    assert b"\\u00fc" in fx.body and b"\\ud83d\\udce6" in fx.body
    message = only(parse_fixture(load, "messenger_text_non_ascii"))
    assert message.text == "Grüße aus Köln — ist das Paket schon unterwegs? 📦"
    reserialized = json.dumps(json.loads(fx.body), ensure_ascii=False, separators=(",", ":")).encode()
    with pytest.raises(SignatureError):
        adapter().verify(fx.request(body=reserialized))


def test_messenger_quick_reply_keeps_the_payload(load):
    message = only(parse_fixture(load, "messenger_quick_reply"))
    assert message.content_type is ContentType.INTERACTIVE
    assert message.text == "Track my order"
    assert message.metadata == {"type": "message", "interactive_type": "quick_reply", "reply_id": "TRACK_ORDER"}


def test_messenger_postback_keeps_title_and_payload(load):
    message = only(parse_fixture(load, "messenger_postback"))
    assert message.content_type is ContentType.INTERACTIVE
    assert message.provider_message_id == "m_Postback000000000000000000000001"
    assert message.text == "Get Started"
    assert message.metadata == {"type": "postback", "interactive_type": "postback", "reply_id": "GET_STARTED"}
    assert [(h.kind, h.value) for h in message.sender.handles] == [("messenger", PSID)]


def test_messenger_attachments_keep_url_and_type(load):
    message = only(parse_fixture(load, "messenger_attachments"))
    assert message.content_type is ContentType.MEDIA
    assert message.text is None
    assert [a.url for a in message.attachments] == [
        "https://cdn.fbsbx.com/v/t59.2708-21/invoice-1042.pdf?_nc_cat=1&oh=00_AfB",
        "https://video.xx.fbcdn.net/v/t42.3356-2/broken-seal.mp4?_nc_cat=1&oh=00_AfC",
    ]
    # Messenger names a kind, not a MIME type: the vendor reads the type from the download.
    assert [a.content_type for a in message.attachments] == [None, None]
    assert message.metadata["attachment_types"] == ["file", "video"]


def test_messenger_batch_gives_the_attachment_and_the_read_receipt(load):
    parsed = parse_fixture(load, "messenger_batch")
    assert parsed.ignored == []
    image, read = parsed.events
    assert isinstance(image, InboundMessage) and isinstance(read, StatusEvent)
    assert image.metadata["attachment_types"] == ["image"]
    assert image.attachments[0].url == "https://scontent.xx.fbcdn.net/v/t1.15752-9/example.jpg"
    assert read.status == "read"


def test_messenger_echo_is_ignored_with_a_reason_never_a_contact(load):
    parsed = parse_fixture(load, "messenger_echo")
    assert parsed.events == []
    assert parsed.ignored == ["entry[0].messaging[0]: echo of a message the business sent (is_echo), not a contact"]
    assert adapter().ack(parsed).status == 200


def test_messenger_read_receipt_is_a_status_event_by_watermark(load):
    status = only(parse_fixture(load, "messenger_read"))
    assert isinstance(status, StatusEvent)
    assert (status.provider, status.channel, status.status) == ("meta", Channel.MESSENGER, "read")
    # No message id: the watermark (every message up to then) makes a stable one.
    assert status.provider_message_id == f"watermark:{PAGE_ID}:{PSID}:1767225600450"
    assert (status.account, status.recipient) == (PAGE_ID, PSID)
    assert status.occurred_at == datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=timezone.utc)
    assert status.raw["event"]["read"] == {"watermark": 1767225600450}


def test_messenger_delivery_receipt_is_one_status_event_per_mid(load):
    parsed = parse_fixture(load, "messenger_delivery")
    assert parsed.ignored == []
    assert [(e.kind, e.provider_message_id, e.status) for e in parsed.events] == [
        ("status", "m_Out000000000000000000000000001", "delivered"),
        ("status", "m_Out000000000000000000000000002", "delivered"),
    ]
    assert {e.dedupe_key for e in parsed.events} == {
        "status:meta:m_Out000000000000000000000000001:delivered",
        "status:meta:m_Out000000000000000000000000002:delivered",
    }


def test_messenger_reaction_names_the_reacted_message(load):
    message = only(parse_fixture(load, "messenger_reaction"))
    assert message.content_type is ContentType.REACTION
    assert message.text == "❤️"
    assert message.metadata == {
        "type": "reaction",
        "reacted_message_id": "m_Out000000000000000000000000001",
        "emoji": "❤️",
        "reaction": "love",
        "action": "react",
        "removed": False,
    }
    # Reactions have no id of their own; a retry of the same webhook repeats every part of this one.
    assert message.provider_message_id == f"reaction:{PSID}:m_Out000000000000000000000000001:react:1767225600700"


def test_instagram_text_has_an_instagram_scoped_handle(load):
    message = only(parse_fixture(load, "instagram_text"))
    assert (message.channel, message.content_type, message.text) == (
        Channel.INSTAGRAM,
        ContentType.TEXT,
        "Do you ship to Canada?",
    )
    assert message.account == IG_ID
    assert [(h.kind, h.value, h.scope) for h in message.sender.handles] == [("instagram", IGSID, IG_ID)]
    assert message.conversation_key == f"meta:{IG_ID}:{IGSID}"


def test_instagram_story_reply_keeps_the_story(load):
    message = only(parse_fixture(load, "instagram_story_reply"))
    assert (message.channel, message.content_type) == (Channel.INSTAGRAM, ContentType.TEXT)
    assert message.text == "¡Me encanta! ¿Lo tienen en azul?"
    assert message.metadata["story_reply"] == {
        "id": "17900000000000001",
        "url": "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17900000000000001&signature=AbC",
    }


def test_instagram_story_mention_is_media_with_the_story_url(load):
    message = only(parse_fixture(load, "instagram_story_mention"))
    assert message.content_type is ContentType.MEDIA
    [attachment] = message.attachments
    assert attachment.url == "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17900000000000002&signature=DeF"
    assert message.metadata["story_mention"] is True
    assert message.metadata["attachment_types"] == ["story_mention"]


def test_instagram_seen_is_a_read_status_for_that_message(load):
    status = only(parse_fixture(load, "instagram_seen"))
    assert (status.channel, status.status, status.recipient, status.account) == (
        Channel.INSTAGRAM,
        "read",
        IGSID,
        IG_ID,
    )
    assert status.provider_message_id == "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDk5"


@pytest.mark.parametrize("name", MESSAGING_FIXTURES)
def test_every_messaging_fixture_parses_the_same_twice_and_survives_the_queue(load, name):
    first, second = parse_fixture(load, name), parse_fixture(load, name)
    assert first == second
    for event in first.events:
        assert type(event).model_validate_json(event.model_dump_json()) == event


# --- Messenger and Instagram: shapes built here ------------------------------------------------


def messaging_body(*events: dict, product: str = "page", account: str = PAGE_ID, **entry) -> bytes:
    body = {"object": product, "entry": [{"id": account, "time": 1767225601000, "messaging": list(events), **entry}]}
    return json.dumps(body, separators=(",", ":")).encode()


def from_customer(timestamp: int | str | None = 1767225600000, **kind) -> dict:
    event = {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID}, "timestamp": timestamp, **kind}
    return {k: v for k, v in event.items() if v is not None}


def test_instagram_echo_arrives_in_messages_and_is_ignored():
    echo = {
        "sender": {"id": IG_ID},
        "recipient": {"id": IGSID},
        "timestamp": 1767225600000,
        "message": {"mid": "aWdf_echo", "text": "Thanks!", "is_echo": True},
    }
    parsed = parse_body(messaging_body(echo, product="instagram", account=IG_ID))
    assert parsed.events == [] and "is_echo" in parsed.ignored[0]


def test_a_message_sent_by_the_page_itself_is_never_a_contact_even_without_is_echo():
    event = {"sender": {"id": PAGE_ID}, "recipient": {"id": PSID}, "message": {"mid": "m_1", "text": "x"}}
    parsed = parse_body(messaging_body(event))
    assert parsed.events == []
    assert parsed.ignored == ["entry[0].messaging[0]: sent by the business account itself, not a contact"]


def test_removed_reaction():
    reaction = {"action": "unreact", "mid": "m_Out1", "reaction": "love"}
    message = only(parse_body(messaging_body(from_customer(reaction=reaction))))
    assert message.content_type is ContentType.REACTION
    assert message.text is None
    assert (message.metadata["removed"], message.metadata["action"]) == (True, "unreact")
    assert message.provider_message_id == f"reaction:{PSID}:m_Out1:unreact:1767225600000"


def test_postback_without_mid_gets_a_stable_id_from_sender_and_time():
    postback = {"title": "Talk to a human", "payload": "HUMAN"}
    first = only(parse_body(messaging_body(from_customer(postback=postback))))
    again = only(parse_body(messaging_body(from_customer(postback=postback))))
    assert first.provider_message_id == again.provider_message_id == f"postback:{PSID}:1767225600000"
    parsed = parse_body(messaging_body(from_customer(timestamp=None, postback=postback)))
    assert parsed.events == [] and unhandled(parsed) == ["entry[0].messaging[0]: postback without mid or timestamp"]


def test_postback_referral_and_message_reply_to_are_kept():
    referral = {"ref": "summer-sale", "source": "SHORTLINK", "type": "OPEN_THREAD"}
    event = from_customer(postback={"mid": "m_p", "payload": "X", "referral": referral})
    postback = only(parse_body(messaging_body(event)))
    assert postback.metadata["referral"] == referral
    assert postback.text is None
    reply = {"mid": "m_r", "text": "this one", "reply_to": {"mid": "m_Out1", "is_self_reply": False}}
    assert only(parse_body(messaging_body(from_customer(message=reply)))).metadata["reply_to"] == "m_Out1"


@pytest.mark.parametrize(
    ("message", "content_type"),
    [
        ({"attachments": [{"type": "fallback"}]}, ContentType.UNSUPPORTED),
        ({"is_unsupported": True}, ContentType.UNSUPPORTED),
        ({"attachments": [{"type": "share", "payload": {"url": "https://www.instagram.com/p/x"}}]}, ContentType.MEDIA),
        ({"attachments": [{"type": "ig_reel", "payload": {"url": "https://x.example/r"}}]}, ContentType.MEDIA),
        ({"attachments": [{"type": "location", "payload": {"coordinates": {"lat": 5, "long": 1}}}]},
         ContentType.LOCATION),
        ({"attachments": ["junk", {"type": "image", "payload": "junk"}]}, ContentType.UNSUPPORTED),
        ({"text": ""}, ContentType.UNSUPPORTED),
    ],
)
def test_attachment_kinds_and_unreadable_content_are_all_kept(message, content_type):
    event = from_customer(message={"mid": "m_x", **message})
    parsed = only(parse_body(messaging_body(event)))
    assert parsed.content_type is content_type
    assert parsed.raw["event"]["message"] == {"mid": "m_x", **message}


def test_a_fallback_attachment_keeps_the_shared_links_url_and_title_from_the_item():
    shared = {"type": "fallback", "title": "Lieferstatus", "url": "https://shop.example/track/1042", "payload": None}
    message = only(parse_body(messaging_body(from_customer(message={"mid": "m_f", "attachments": [shared]}))))
    assert message.content_type is ContentType.MEDIA
    [attachment] = message.attachments
    assert (attachment.url, attachment.caption, attachment.kind) == ("https://shop.example/track/1042", "Lieferstatus", "fallback")


def test_legacy_location_attachment():
    payload = {"title": "Pinned", "coordinates": {"lat": 52.52, "long": 13.405}}
    event = from_customer(message={"mid": "m_l", "attachments": [{"type": "location", "payload": payload}]})
    message = only(parse_body(messaging_body(event)))
    assert message.location.model_dump(include={"latitude", "longitude", "name"}) == {
        "latitude": 52.52,
        "longitude": 13.405,
        "name": "Pinned",
    }


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (from_customer(message_edit={"mid": "m_1", "text": "fixed"}), "'message_edit' events are not handled"),
        (from_customer(optin={"type": "notification_messages", "payload": "x"}), "'optin' events are not handled"),
        (from_customer(referral={"ref": "ad", "source": "ADS"}), "'referral' events are not handled"),
        (from_customer(pass_thread_control={"new_owner_app_id": "1"}), "'pass_thread_control' events are not handled"),
        (from_customer(), "no event in the item"),
        (from_customer(message={"text": "no mid"}), "message without mid"),
        (from_customer(message="text"), "message is not an object"),
        (from_customer(postback=[1]), "postback is not an object"),
        (from_customer(reaction={"emoji": "x"}), "reaction without the reacted message's mid"),
        (from_customer(read={}), "read receipt without mids or watermark"),
        (from_customer(delivery="x"), "delivery is not an object"),
        ({"sender": {"user_ref": "guest-1"}, "recipient": {"id": PAGE_ID}, "message": {"mid": "m_1"}}, "user_ref"),
        ({"recipient": {"id": PAGE_ID}, "message": {"mid": "m_1", "text": "x"}}, "event without sender.id"),
        ("not an event", "not an object"),
    ],
)
def test_unknown_or_unusable_events_are_kept_raw_with_a_reason(event, reason):
    parsed = parse_body(messaging_body(event))
    assert parsed.events == [] and parsed.ignored == []
    [kept] = parsed.unhandled
    assert kept.reason.startswith("entry[0].messaging[0]: ") and reason in kept.reason
    assert kept.raw == event


def test_an_unsent_message_is_ignored_not_kept():
    parsed = parse_body(messaging_body(from_customer(message={"mid": "m_1", "is_deleted": True})))
    assert parsed.events == [] and parsed.unhandled == []
    assert parsed.ignored == ["entry[0].messaging[0]: the customer deleted an earlier message (is_deleted), not a contact"]


def test_one_bad_event_never_drops_the_others_and_each_is_located():
    good = from_customer(message={"mid": "m_1", "text": "hello"})
    body = messaging_body("junk", good, from_customer(optin={}), from_customer(read={"watermark": 5}))
    parsed = parse_body(body)
    assert [e.kind for e in parsed.events] == ["message", "status"]
    assert unhandled(parsed) == [
        "entry[0].messaging[0]: not an object",
        "entry[0].messaging[2]: 'optin' events are not handled",
    ]


def test_entry_shapes_that_are_not_messaging_are_acknowledged_and_kept_raw():
    standby = [from_customer(message={"mid": "m_s", "text": "x"}), from_customer(message={"mid": "m_t", "text": "y"})]
    body = {
        "object": "page",
        "entry": [
            {"id": PAGE_ID, "time": 1, "changes": [{"field": "feed", "value": {"item": "comment"}}]},
            {"id": PAGE_ID, "standby": standby},
            {"id": PAGE_ID, "messaging": {"not": "a list"}},
            {"id": PAGE_ID},
            "junk",
            {"id": PAGE_ID, "standby": {"not": "a list"}},
        ],
    }
    parsed = parse_body(json.dumps(body).encode())
    assert parsed.events == [] and parsed.ignored == []
    assert unhandled(parsed) == [
        "entry[0].changes[0]: field 'feed' is not handled",
        "entry[1].standby[0]: an event of a conversation another app controls",
        "entry[1].standby[1]: an event of a conversation another app controls",
        "entry[2].messaging: not a list",
        "entry[3]: no messaging events",
        "entry[4]: not an object",
        "entry[5].standby[0]: an event of a conversation another app controls",
    ]
    # Each standby event on its own: the customer's words are kept, one item each.
    assert [e.raw for e in parsed.unhandled[1:3]] == standby


def test_without_entry_id_the_recipient_is_the_account():
    body = {"object": "page", "entry": [{"messaging": [from_customer(message={"mid": "m_1", "text": "x"})]}]}
    message = only(parse_body(json.dumps(body).encode()))
    assert message.account == PAGE_ID and message.sender.handles[0].scope == PAGE_ID
    no_account = {"object": "page", "entry": [{"messaging": [{"sender": {"id": PSID}, "message": {"mid": "m_1"}}]}]}
    assert unhandled(parse_body(json.dumps(no_account).encode())) == [
        "entry[0].messaging[0]: no page or account id (entry.id, recipient.id)"
    ]


def test_delivery_without_mids_uses_the_watermark_and_repeated_mids_count_once():
    watermark = only(parse_body(messaging_body(from_customer(delivery={"watermark": 1767225600000}))))
    assert watermark.provider_message_id == f"watermark:{PAGE_ID}:{PSID}:1767225600000"
    assert watermark.status == "delivered"
    repeated = parse_body(messaging_body(from_customer(delivery={"mids": ["m_1", "m_1", 5, ""], "watermark": 1})))
    assert [e.provider_message_id for e in repeated.events] == ["m_1"]


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (1767225600123, datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=timezone.utc)),
        ("1767225600123", datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=timezone.utc)),
        # The App Dashboard's test payloads send seconds as strings.
        ("1767225600", datetime(2026, 1, 1, tzinfo=timezone.utc)),
        (999_999_999_999_999, None),
        ("soon", None),
        (True, None),
        (-5, None),
        (1.5, None),
    ],
)
def test_messaging_timestamps(timestamp, expected):
    message = only(parse_body(messaging_body(from_customer(timestamp=timestamp, message={"mid": "m_t", "text": "x"}))))
    assert message.sent_at == expected


def test_lone_surrogate_in_messenger_text_becomes_a_replacement_character():
    body = messaging_body(from_customer(message={"mid": "m_1", "text": "PLACEHOLDER"}))
    body = body.replace(b"PLACEHOLDER", b"a \\udc00 b")
    message = only(parse_body(body))
    assert message.text == "a \ufffd b"
    assert InboundMessage.model_validate_json(message.model_dump_json()) == message


# --- simulated requests ------------------------------------------------------------------------

CUSTOMER = SimulatedCustomer(
    name="Jana Schmidt", phone="+4917612345678", email="jana@example.com", text="Grüße, wo ist mein Paket?"
)


def test_simulated_request_is_a_signed_whatsapp_text_from_the_customer():
    meta_adapter = adapter(app_secrets=[SECRET, OLD_SECRET])
    simulated = meta_adapter.simulated_request(CUSTOMER)
    assert simulated.path == "/webhooks/meta"
    assert b"Gr\\u00fc\\u00dfe" in simulated.body  # escaped like Meta's own bytes
    assert simulated.headers["X-Hub-Signature-256"] == meta.compute_signature(SECRET, simulated.body)
    req = request(simulated.body, simulated.headers)
    meta_adapter.verify(req)
    message = only(meta_adapter.parse(req))
    assert (message.channel, message.text, message.sender.display_name) == (
        Channel.WHATSAPP,
        "Grüße, wo ist mein Paket?",
        "Jana Schmidt",
    )
    assert [(h.kind, h.value) for h in message.sender.handles] == [("whatsapp", "4917612345678")]
    assert message.account == meta_whatsapp.SIMULATED_PHONE_NUMBER_ID
    assert meta_adapter.simulated_request(CUSTOMER).body != simulated.body, "every simulated message is a new one"


def test_simulated_requests_of_twilio_and_webchat_verify_and_parse_with_their_adapters():
    # twilio.py and webchat.py gained `simulated_request` alongside this adapter's.
    from chalicelib.adapters.channels.twilio.adapter import TwilioAdapter, TwilioSettings
    from chalicelib.adapters.channels.webchat.adapter import WebchatAdapter, WebchatSettings

    twilio_adapter = TwilioAdapter(
        TwilioSettings(
            auth_tokens=["0123456789abcdef0123456789abcdef"], public_url="https://hub.example.com/webhooks/twilio"
        ),
        SecretResolver({}),
    )
    webchat_adapter = WebchatAdapter(
        WebchatSettings.model_validate({"sites": [{"id": "shop", "identity_secrets": ["shop-secret"]}]}),
        SecretResolver({}),
    )
    for channel_adapter, path, channel in (
        (twilio_adapter, "/webhooks/twilio", Channel.SMS),
        (webchat_adapter, "/webhooks/webchat", Channel.WEBCHAT),
    ):
        simulated = channel_adapter.simulated_request(CUSTOMER)
        assert simulated.path == path
        req = request(simulated.body, simulated.headers)
        channel_adapter.verify(req)
        [message] = channel_adapter.parse(req).events
        assert (message.channel, message.text) == (channel, CUSTOMER.text)
        assert ("phone", CUSTOMER.phone, True) in [(h.kind, h.value, h.verified) for h in message.sender.handles]
    unverified_site = WebchatAdapter(WebchatSettings.model_validate({"sites": [{"id": "open"}]}), SecretResolver({}))
    simulated = unverified_site.simulated_request(CUSTOMER)
    assert "user_hash" not in json.loads(simulated.body)
    [message] = unverified_site.parse(request(simulated.body, simulated.headers)).events
    assert [(h.kind, h.verified) for h in message.sender.handles][1:] == [("phone", False)]


# --- identity changes (system messages) --------------------------------------------------------


def system(kind: str, **fields) -> dict:
    """A system message as WhatsApp sends it: no contacts array, the change in `system`."""
    return {"id": "wamid.SYS1", "timestamp": "1767225600", "type": "system",
            "system": {"body": "User Sheena Nelson changed ...", "type": kind, **fields}}  # fmt: skip


def test_a_new_business_scoped_id_is_an_identity_change_never_a_contact():
    message = {**system("user_changed_user_id", user_id="US.NEW1", parent_user_id="US.ENT.2",
                        previous_user_id="US.OLD1", previous_parent_user_id="US.ENT.1"), "from_user_id": "US.NEW1"}
    change = only(parse_body(whatsapp_body({"messages": [message]})))
    assert isinstance(change, IdentityChange) and change.change == "user_changed_user_id"
    assert [(h.kind, h.value) for h in change.previous] == [("whatsapp_user", "US.OLD1")]
    assert [(h.kind, h.value) for h in change.current] == [("whatsapp_user", "US.NEW1")]
    assert (change.account, change.provider_message_id, change.dedupe_key) == (
        PHONE_NUMBER_ID, "wamid.SYS1", "identity:meta:wamid.SYS1")
    # Ordered with the messages the customer sent under the previous id.
    assert change.order_key == f"meta:{PHONE_NUMBER_ID}:whatsapp_user:/US.OLD1"
    assert change.raw["message"]["system"]["previous_parent_user_id"] == "US.ENT.1"


def test_a_new_number_brings_the_new_wa_id_and_the_new_business_scoped_id():
    message = {**system("user_changed_number", wa_id="12195555358", user_id="US.NEW1", previous_user_id="US.OLD1"),
               "from": "16505551234"}
    change = only(parse_body(whatsapp_body({"messages": [message]})))
    assert [(h.kind, h.value) for h in change.previous] == [("whatsapp_user", "US.OLD1"), ("whatsapp", "16505551234")]
    assert [(h.kind, h.value) for h in change.current] == [("whatsapp_user", "US.NEW1"), ("whatsapp", "12195555358")]


def test_a_number_change_before_business_scoped_ids_still_links_the_new_number():
    change = only(parse_body(whatsapp_body({"messages": [{**system("user_changed_number", wa_id="12195555358"),
                                                          "from": "16505551234"}]})))
    assert [(h.kind, h.value) for h in change.previous] == [("whatsapp", "16505551234")]
    assert [(h.kind, h.value) for h in change.current] == [("whatsapp", "12195555358")]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (system("customer_identity_changed", identity="abc"), "system message 'customer_identity_changed' is not handled"),
        (system("user_changed_user_id", user_id="US.NEW1"), "without both the previous and the new id"),
        ({**system("user_changed_number", previous_user_id="US.OLD1"), "from": "16505551234"}, "without both"),
        ({**system("user_changed_user_id", user_id="US.SAME", previous_user_id="US.SAME")}, "without both"),
    ],
)
def test_other_or_incomplete_system_messages_are_kept_raw(message, reason):
    parsed = parse_body(whatsapp_body({"messages": [message]}))
    assert parsed.events == []
    [kept] = parsed.unhandled
    assert reason in kept.reason and kept.raw == message
