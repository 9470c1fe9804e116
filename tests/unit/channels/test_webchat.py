"""Web chat adapter: site, origin and identity proof in verify(); strict body validation in parse()."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from chalicelib.adapters.channels.webchat import adapter as webchat
from chalicelib.adapters.channels.base import ParsedWebhook, WebhookRequest
from chalicelib.adapters.channels.webchat.adapter import WebchatAdapter, WebchatSettings
from chalicelib.domain.models import Channel, ContentType
from chalicelib.errors import ForbiddenError, MalformedPayloadError, MethodNotAllowedError, SignatureError
from chalicelib.secrets import SecretResolver

SECRET = "test_webchat_identity_secret"
NEW_SECRET = "next_webchat_identity_secret"
ORIGIN = "https://shop.example.com"
AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
SITE = {"id": "shop", "identity_secrets": [SECRET], "allowed_origins": [ORIGIN]}


def adapter(*sites: dict) -> WebchatAdapter:
    settings = WebchatSettings.model_validate({"sites": list(sites) or [SITE]})
    return WebchatAdapter(settings, SecretResolver({}))


def request(payload: dict | bytes, origin: str | None = ORIGIN) -> WebhookRequest:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"content-type": "application/json", **({"origin": origin} if origin is not None else {})}
    return WebhookRequest(method="POST", hook=None, headers=headers, query={}, body=body, received_at=AT)


def payload(**fields) -> dict:
    base = {"site_id": "shop", "visitor_id": "v1", "message_id": "m1", "text": "hello"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def accept(req: WebhookRequest, chat: WebchatAdapter | None = None) -> ParsedWebhook:
    chat = chat or adapter()
    chat.verify(req)
    return chat.parse(req)


def only(parsed: ParsedWebhook):
    assert parsed.ignored == []
    assert len(parsed.events) == 1
    return parsed.events[0]


def handles(message) -> list[tuple]:
    return [(h.kind, h.scope, h.value, h.verified) for h in message.sender.handles]


# --- the signing helper ------------------------------------------------------------------------


def test_user_hash_known_answer():
    # Computed with `openssl dgst -sha256 -hmac`, not with this code.
    assert webchat.user_hash(SECRET, "cust-1042") == "c1c2c1990417c8d49a6371778492331ec15e29788e5897e9546ea4f3e74c01f8"


def test_user_hash_is_hex_hmac_sha256_of_utf8():
    value = "jöhn@example.com"
    expected = hmac.new(SECRET.encode(), value.encode("utf-8"), hashlib.sha256).hexdigest()
    assert webchat.user_hash(SECRET, value) == expected


@pytest.mark.parametrize(
    ("identity", "claim"),
    [
        ({"external_id": "c1", "email": "a@b.c", "phone": "+1"}, ("external_id", "c1")),
        ({"email": "a@b.c", "phone": "+1"}, ("email", "a@b.c")),
        ({"phone": "+1", "name": "N"}, ("phone", "+1")),
        ({"external_id": "  ", "email": "a@b.c"}, ("email", "a@b.c")),
        ({"name": "only a name"}, None),
        (None, None),
        ("not a mapping", None),
    ],
)
def test_signed_claim_precedence(identity, claim):
    assert webchat.signed_claim(identity) == claim


# --- the stored fixtures -----------------------------------------------------------------------


def test_anonymous_visitor(load):
    fx = load("webchat", "anonymous_text")
    message = only(accept(fx.request()))
    assert (message.provider, message.channel, message.content_type) == ("webchat", Channel.WEBCHAT, ContentType.TEXT)
    assert handles(message) == [("webchat", "shop", "v_01JH0000000000000000000001", True)]
    assert message.text == "Hallo, wo bleibt meine Bestellung? Grüße"
    assert message.sent_at == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert message.account == "shop"
    assert message.provider_message_id == "shop/v_01JH0000000000000000000001/m_01JH0000000000000000000001"
    assert message.metadata == {
        "client_message_id": "m_01JH0000000000000000000001",
        "identity_verified": False,
        "origin": ORIGIN,
    }
    assert message.conversation_key == "webchat:shop:v_01JH0000000000000000000001"
    assert message.order_key == "webchat:shop:webchat:shop/v_01JH0000000000000000000001"
    assert message.raw == json.loads(fx.body)


def test_verified_external_id_and_unverified_other_claims(load):
    fx = load("webchat", "verified_identity")
    message = only(accept(fx.request()))
    visitor = "v_01JH0000000000000000000002"
    assert handles(message) == [
        ("webchat", "shop", visitor, True),
        ("external", None, "cust-1042", True),
        ("email", None, "Jane.Doe@Example.com", False),
        ("phone", None, "+4915123456789", False),
    ]
    assert message.sender.display_name == "Jane Doe"
    assert message.metadata["identity_verified"] is True
    assert "user_hash" not in message.raw
    assert message.raw["identity"]["external_id"] == "cust-1042"


def test_verified_email_when_there_is_no_external_id(load):
    message = only(accept(load("webchat", "verified_email").request()))
    assert handles(message)[1:] == [("email", None, "jane@example.com", True)]


def test_claims_without_user_hash_are_never_verified(load):
    message = only(accept(load("webchat", "unverified_claims").request()))
    assert handles(message)[1:] == [("external", None, "cust-1", False), ("email", None, "ceo@example.com", False)]
    assert message.metadata["identity_verified"] is False


def test_attachment_only(load):
    message = only(accept(load("webchat", "attachment_only").request()))
    assert message.content_type is ContentType.MEDIA
    assert message.text is None
    [attachment] = message.attachments
    assert attachment.model_dump(exclude_none=True) == {
        "url": "https://uploads.example.com/a/photo.jpg",
        "content_type": "image/jpeg",
        "filename": "photo.jpg",
        "size": 48213,
    }


def test_forged_user_hash_is_401(load):
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(load("webchat", "forged_user_hash").request())


def test_parse_alone_never_trusts_a_forged_user_hash(load):
    # Defence in depth: if a caller skipped verify(), the claim still stays unverified.
    message = only(adapter().parse(load("webchat", "forged_user_hash").request()))
    assert handles(message)[1:] == [("external", None, "cust-1042", False)]
    assert message.metadata["identity_verified"] is False


# --- identity verification ---------------------------------------------------------------------


@pytest.mark.parametrize("signing_secret", [SECRET, NEW_SECRET])
def test_rotated_identity_secrets_both_verify(signing_secret):
    chat = adapter({**SITE, "identity_secrets": [NEW_SECRET, SECRET]})
    body = payload(identity={"external_id": "c-9"}, user_hash=webchat.user_hash(signing_secret, "c-9"))
    assert handles(only(accept(request(body), chat)))[1] == ("external", None, "c-9", True)


def test_upper_case_user_hash_is_accepted():
    body = payload(identity={"external_id": "c-9"}, user_hash=webchat.user_hash(SECRET, "c-9").upper())
    assert only(accept(request(body))).metadata["identity_verified"] is True


def test_user_hash_of_a_lower_precedence_claim_is_refused():
    # external_id is present, so it is the signed value; a hash of the email proves nothing.
    identity = {"external_id": "c-9", "email": "a@example.com"}
    body = payload(identity=identity, user_hash=webchat.user_hash(SECRET, "a@example.com"))
    with pytest.raises(SignatureError):
        adapter().verify(request(body))


def test_changing_the_signed_claim_is_refused():
    body = payload(identity={"external_id": "c-9"}, user_hash=webchat.user_hash(SECRET, "c-9"))
    body["identity"]["external_id"] = "c-10"
    with pytest.raises(SignatureError):
        adapter().verify(request(body))


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"user_hash": "ab" * 32}, "no external_id, email or phone"),
        ({"user_hash": "ab" * 32, "identity": {"name": "N"}}, "no external_id, email or phone"),
        ({"user_hash": "xyz", "identity": {"external_id": "c"}}, "64 hex"),
        ({"user_hash": 12, "identity": {"external_id": "c"}}, "64 hex"),
    ],
)
def test_unusable_user_hash_is_401(fields, reason):
    with pytest.raises(SignatureError, match=reason):
        adapter().verify(request(payload(**fields)))


def test_user_hash_for_a_site_without_identity_secrets_is_401():
    chat = adapter({"id": "shop"})
    body = payload(identity={"external_id": "c-9"}, user_hash=webchat.user_hash(SECRET, "c-9"))
    with pytest.raises(SignatureError, match="no identity_secrets"):
        chat.verify(request(body))
    chat.verify(request(payload(identity={"external_id": "c-9"})))


def test_lone_surrogate_in_the_signed_claim_is_refused_not_crashed():
    body = json.dumps(payload(identity={"external_id": "PLACEHOLDER"}, user_hash="ab" * 32)).replace(
        "PLACEHOLDER", "\\ud800"
    )
    with pytest.raises(SignatureError):
        adapter().verify(request(body.encode()))


# --- site and origin ---------------------------------------------------------------------------


@pytest.mark.parametrize("site_id", ["other", None, 5])
def test_unknown_or_missing_site_is_401(site_id):
    body = payload()
    body["site_id"] = site_id
    if site_id is None:
        del body["site_id"]
    with pytest.raises(SignatureError, match="site_id"):
        adapter().verify(request(body))


def test_parse_alone_refuses_an_unknown_site():
    # verify() answers 401 first; parse must still never turn an unconfigured site into a message.
    with pytest.raises(MalformedPayloadError, match="unknown site_id"):
        adapter().parse(request(payload(site_id="other")))


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "https://shop.example.com.evil.example", "http://shop.example.com"]
)
def test_origin_not_allowed_is_403(origin):
    with pytest.raises(ForbiddenError, match="allowed_origins"):
        adapter().verify(request(payload(), origin=origin))


@pytest.mark.parametrize("origin", [ORIGIN, "https://SHOP.example.com", "https://shop.example.com:443", None])
def test_allowed_or_absent_origin_passes(origin):
    adapter().verify(request(payload(), origin=origin))


def _own_page_request(origin: str, host: str = "127.0.0.1:8000") -> WebhookRequest:
    req = request(payload(), origin=origin)
    return WebhookRequest(method="POST", hook=None, headers={**req.headers, "host": host}, query={},
                          body=req.body, received_at=AT)


def test_the_embedded_hub_lets_its_own_demo_page_past_the_origin_list_and_nothing_else():
    from chalicelib.adapters.channels.base import AdapterServices

    settings = WebchatSettings.model_validate({"sites": [SITE]})
    embedded = WebchatAdapter(settings, SecretResolver({}), AdapterServices(trusts_own_origin=True))
    deployed = WebchatAdapter(settings, SecretResolver({}), AdapterServices())

    embedded.verify(_own_page_request("http://127.0.0.1:8000"))
    with pytest.raises(ForbiddenError, match="allowed_origins"):
        deployed.verify(_own_page_request("http://127.0.0.1:8000"))
    for origin, host in [("http://evil.example", "127.0.0.1:8000"), ("https://127.0.0.1:8000", "127.0.0.1:8000"),
                         ("http://127.0.0.1:8001", "127.0.0.1:8000"), ("null", "127.0.0.1:8000"),
                         # DNS rebinding: a name of the attacker's resolved to this machine.
                         ("http://evil.example:8000", "evil.example:8000"), ("garbage", "garbage")]:
        with pytest.raises(ForbiddenError, match="allowed_origins"):
            embedded.verify(_own_page_request(origin, host))


def test_sites_are_separate():
    chat = adapter(SITE, {"id": "blog"})
    chat.verify(request(payload(site_id="blog"), origin="https://anything.example"))
    blog = only(chat.parse(request(payload(site_id="blog"))))
    assert handles(blog)[0] == ("webchat", "blog", "v1", True)
    with pytest.raises(ForbiddenError):
        chat.verify(request(payload(site_id="shop"), origin="https://anything.example"))


# --- body validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"nickname": "x"}, "nickname: Extra inputs are not permitted"),
        ({"identity": {"external_id": "c", "nickname": "x"}}, "identity.nickname: Extra inputs"),
        ({"attachments": [{"url": "https://a.example/x", "bytes": "..."}]}, "attachments.0.bytes: Extra inputs"),
        ({"text": "x" * 10_001}, "text:"),
        ({"visitor_id": "v" * 129}, "visitor_id:"),
        ({"message_id": "a/b"}, "message_id:"),
        ({"visitor_id": ""}, "visitor_id:"),
        ({"message_id": None}, "message_id: Field required"),
        ({"text": None}, "text or at least one attachment"),
        ({"text": "   \n"}, "text or at least one attachment"),
        ({"attachments": [{"url": "javascript:alert(1)"}]}, "attachments.0.url"),
        ({"attachments": [{"url": "https://a.example/x", "size": -1}]}, "attachments.0.size"),
        ({"attachments": [{"url": "https://a.example/x"}] * 11}, "attachments:"),
        ({"identity": {"external_id": "c" * 129}}, "identity.external_id"),
        ({"sent_at": "yesterday"}, "sent_at"),
        ({"user_hash": "ab" * 31}, "user_hash"),
    ],
)
def test_invalid_bodies_are_400_naming_the_field(fields, named):
    with pytest.raises(MalformedPayloadError, match=named.replace(".", r"\.")) as raised:
        adapter({"id": "shop"}).parse(request(payload(**fields)))
    assert "x" * 50 not in raised.value.message


def test_400_does_not_echo_personal_data():
    with pytest.raises(MalformedPayloadError) as raised:
        adapter().parse(request(payload(identity={"email": "secret.person@example.com", "age": 40})))
    assert "secret.person" not in str(raised.value)


def test_limits_are_inclusive():
    message = only(adapter().parse(request(payload(text="x" * 10_000, visitor_id="v" * 128))))
    assert len(message.text) == 10_000


@pytest.mark.parametrize("body", [b"", b"not json", b"\xff\xfe", b"[1,2]", b"null", b'"text"'])
def test_a_body_that_is_not_an_object_passes_verify_and_is_400(body):
    chat = adapter()
    chat.verify(request(body))
    with pytest.raises(MalformedPayloadError):
        chat.parse(request(body))


def test_blank_identity_fields_are_absent():
    message = only(accept(request(payload(identity={"external_id": "", "email": " ", "name": ""}))))
    assert handles(message) == [("webchat", "shop", "v1", True)]
    assert message.sender.display_name is None


def test_naive_sent_at_is_utc_and_aware_is_kept():
    assert only(accept(request(payload(sent_at="2026-01-01T10:00:00")))).sent_at == datetime(
        2026, 1, 1, 10, tzinfo=timezone.utc
    )
    aware = only(accept(request(payload(sent_at="2026-01-01T10:00:00+02:00")))).sent_at
    assert aware == datetime(2026, 1, 1, 8, tzinfo=timezone.utc)


def test_same_client_message_id_from_two_visitors_is_two_messages():
    first = only(accept(request(payload(visitor_id="v1", message_id="1"))))
    second = only(accept(request(payload(visitor_id="v2", message_id="1"))))
    assert first.dedupe_key != second.dedupe_key
    retry = only(accept(request(payload(visitor_id="v1", message_id="1", text="hello again"))))
    assert retry.dedupe_key == first.dedupe_key


# --- ack, handshake, settings ------------------------------------------------------------------


def test_ack_is_202_json_with_the_client_message_id(load):
    chat = adapter()
    response = chat.ack(accept(load("webchat", "anonymous_text").request(), chat))
    assert (response.status, response.content_type) == (202, "application/json")
    assert json.loads(response.body) == {"status": "accepted", "message_id": "m_01JH0000000000000000000001"}
    assert json.loads(chat.ack(ParsedWebhook()).body) == {"status": "accepted"}


def test_get_is_405():
    with pytest.raises(MethodNotAllowedError):
        adapter().handshake(request(b"", origin=None))


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"sites": []}, "sites"),
        ({"sites": [{"id": "a"}, {"id": "a"}]}, "duplicate site id a"),
        ({"sites": [{"id": "a/b"}]}, "sites.0.id"),
        ({"sites": [{"id": "a", "allowed_origins": ["https://a.example/page"]}]}, "not an origin"),
        ({"sites": [{"id": "a", "identity_secrets": [""]}]}, "identity_secrets"),
        ({"sites": [{"id": "a", "secret": "x"}]}, "secret"),
        ({"sites": [{"id": "a"}], "extra": 1}, "extra"),
    ],
)
def test_settings_are_validated_and_name_the_key(settings, named):
    with pytest.raises(ValidationError, match=named):
        WebchatSettings.model_validate(settings)


def test_allowed_origins_are_normalized():
    site = WebchatSettings.model_validate(
        {"sites": [{"id": "a", "allowed_origins": ["HTTPS://Shop.Example.com/", "http://localhost:3000"]}]}
    ).sites[0]
    assert site.allowed_origins == ["https://shop.example.com", "http://localhost:3000"]


def test_settings_repr_hides_identity_secrets():
    settings = WebchatSettings.model_validate({"sites": [SITE]})
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert SECRET not in text


def test_identity_secrets_resolve_lazily_only_for_the_addressed_site(counting_resolver):
    # The other site's reference is unresolvable: touching it would raise.
    resolver = counting_resolver({"WEBCHAT_SECRET": SECRET})
    chat = WebchatAdapter(
        WebchatSettings.model_validate({"sites": [
            {"id": "shop", "identity_secrets": ["env:WEBCHAT_SECRET"]},
            {"id": "other", "identity_secrets": ["env:NOT_SET_ANYWHERE"]},
        ]}),
        resolver,
    )
    chat.verify(request(payload()))
    assert resolver.calls == 0  # anonymous messages never need the secret
    body = payload(identity={"external_id": "c"}, user_hash=webchat.user_hash(SECRET, "c"))
    accept(request(body), chat)
    per_request = resolver.calls
    accept(request(body), chat)
    assert per_request >= 1
    assert resolver.calls == 2 * per_request  # resolved on each use: the resolver owns caching
