"""The contract every registered channel adapter passes.

One table row per registry key: a correctly signed sample, how to sign any body, how to tamper
with it and how to strip its credential. A new adapter without a row fails
`test_every_registered_adapter_has_a_contract_case`, so nobody can register one untested.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, get_args
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr, ValidationError

from chalicelib.adapters.channels.meta import adapter as meta
from chalicelib.adapters.channels.twilio import adapter as twilio
from chalicelib.adapters.channels.webchat import adapter as webchat
from chalicelib.adapters.channels.base import ChannelAdapter, ParsedWebhook, WebhookRequest
from chalicelib.adapters.channels.registry import CHANNELS
from chalicelib.domain.models import IdentityChange, InboundMessage, StatusEvent, UnhandledEvent
from chalicelib.errors import ForbiddenError, MalformedPayloadError, RequestRejectedError, SignatureError
from chalicelib.hubconfig import _is_secret_field
from chalicelib.secrets import SecretResolver
from tests.support.channel_contract import (  # noqa: F401 (shared with tests/contract/channels/)
    JSON,
    LEAF,
    TEXT,
    WORDS,
    Case,
    fixture,
    known_objects,
    mostly,
    without,
)

AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
KEYS = sorted(CHANNELS)


# --- Twilio ------------------------------------------------------------------------------------

TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"
TWILIO_URL = "https://hub.example.com/webhooks/twilio/messaging"
TWILIO_NAMES = [
    "MessageSid", "From", "To", "Body", "NumMedia", "MediaUrl0", "MediaContentType0", "MediaUrl10",
    "Latitude", "Longitude", "Address", "Label", "ButtonPayload", "ButtonText", "ProfileName",
    "MessageStatus", "SmsStatus", "EventType", "ErrorCode", "ChannelPrefix", "MessageType",
    "OriginalRepliedMessageSid", "ReferralCtwaClid", "ReferralNumMedia", "Forwarded",
]  # fmt: skip
TWILIO_VALUES = ["", "0", "3", "12345", "-91", "45.5", "nan", "whatsapp:+14155550101", "messenger:1", "+14155550100",
                 "read", "READ", "delivered", "true", "SM1", "MM1"]  # fmt: skip
TWILIO_REQUIRED = [("MessageSid", "SMfuzz"), ("From", "+14155550101"), ("To", "+14155550100")]
twilio_payloads = st.tuples(
    mostly(st.just(True), st.just(False)),
    st.lists(
        st.tuples(
            st.sampled_from(TWILIO_NAMES) | st.text(max_size=10), st.sampled_from(TWILIO_VALUES) | st.text(max_size=30)
        ),
        max_size=12,
    ),
).map(lambda t: urlencode((TWILIO_REQUIRED if t[0] else []) + t[1]).encode())


def twilio_sign(body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": twilio.compute_signature(TWILIO_URL, twilio.signed_params(body), TWILIO_TOKEN),
    }


# --- Meta --------------------------------------------------------------------------------------

META_SECRET = "test_meta_app_secret"
META_TYPES = ["text", "image", "video", "audio", "document", "sticker", "location", "interactive", "button",
              "reaction", "contacts", "order", "system", "unsupported", "brand_new"]  # fmt: skip
META_KEYS = ["id", "body", "mime_type", "caption", "filename", "url", "voice", "latitude", "longitude", "name",
             "address", "type", "button_reply", "list_reply", "nfm_reply", "title", "description", "payload",
             "text", "message_id", "emoji", "response_json", "from", "forwarded"]  # fmt: skip
_meta_known = known_objects(META_KEYS)
_coordinate = st.floats(allow_nan=False) | st.integers(-200, 200) | TEXT
#: Each type's object mostly as Meta documents it, sometimes any JSON using Meta's key names.
_meta_bodies = {
    "text": st.fixed_dictionaries({"body": TEXT}),
    "image": st.fixed_dictionaries(
        {"id": TEXT}, optional={"mime_type": TEXT, "caption": TEXT, "url": TEXT, "sha256": TEXT}
    ),
    "video": st.fixed_dictionaries({"id": TEXT}, optional={"mime_type": TEXT, "caption": TEXT}),
    "audio": st.fixed_dictionaries({"id": TEXT}, optional={"mime_type": TEXT, "voice": st.booleans() | LEAF}),
    "document": st.fixed_dictionaries({"id": TEXT}, optional={"filename": TEXT, "mime_type": TEXT, "caption": TEXT}),
    "sticker": st.fixed_dictionaries({"id": TEXT}, optional={"mime_type": TEXT, "animated": st.booleans()}),
    "location": st.fixed_dictionaries(
        {"latitude": _coordinate, "longitude": _coordinate}, optional={"name": TEXT, "address": TEXT, "url": TEXT}
    ),
    "interactive": st.fixed_dictionaries(
        {"type": st.sampled_from(["button_reply", "list_reply", "nfm_reply", "new_reply"])},
        optional={
            "button_reply": st.fixed_dictionaries({"id": TEXT, "title": TEXT}),
            "list_reply": st.fixed_dictionaries({"id": TEXT, "title": TEXT}, optional={"description": TEXT}),
            "nfm_reply": st.fixed_dictionaries({}, optional={"body": TEXT, "response_json": TEXT, "name": TEXT}),
        },
    ),
    "button": st.fixed_dictionaries({}, optional={"payload": TEXT, "text": TEXT}),
    "reaction": st.fixed_dictionaries({"message_id": TEXT}, optional={"emoji": TEXT}),
}


@st.composite
def _meta_message(draw) -> dict:
    kind = draw(st.sampled_from(META_TYPES))
    message = draw(
        st.fixed_dictionaries(
            {
                "id": mostly(st.sampled_from(["wamid.A", "wamid.B", "wamid.C"])),
                "type": mostly(st.just(kind)),
                "timestamp": mostly(st.sampled_from(["1767225600", "1767225601"])),
            },
            optional={
                "from": mostly(st.sampled_from(["16505551234", "", "US.1"])),
                "from_user_id": mostly(st.just("US.13491208655302741918")),
                "context": mostly(
                    st.fixed_dictionaries({"id": TEXT}, optional={"forwarded": st.booleans()}), _meta_known
                ),
                "referral": _meta_known,
            },
        )
    )
    message[kind] = draw(mostly(_meta_bodies.get(kind, _meta_known), _meta_known))
    return message


_meta_status = st.fixed_dictionaries(
    {
        "id": mostly(st.just("wamid.OUT")),
        "status": mostly(st.sampled_from(["sent", "delivered", "read", "failed", "played", "new"])),
    },
    optional={
        "timestamp": mostly(st.just("1767225600")),
        "recipient_id": mostly(st.just("16505551234")),
        "recipient_user_id": LEAF,
        "errors": st.lists(st.fixed_dictionaries({}, optional={"code": LEAF, "title": LEAF}) | JSON, max_size=2),
    },
)
_meta_contact = st.fixed_dictionaries(
    {},
    optional={
        "wa_id": mostly(st.sampled_from(["16505551234", ""])),
        "user_id": mostly(st.just("US.13491208655302741918")),
        "profile": mostly(st.fixed_dictionaries({}, optional={"name": TEXT, "username": TEXT}), JSON),
    },
)
_meta_value = st.fixed_dictionaries(
    {"metadata": mostly(st.fixed_dictionaries({"phone_number_id": mostly(st.just("106540352242922"))}), JSON)},
    optional={
        "contacts": mostly(st.lists(mostly(_meta_contact, JSON), max_size=2), JSON),
        "messages": mostly(st.lists(mostly(_meta_message(), JSON), max_size=3), JSON),
        "statuses": mostly(st.lists(mostly(_meta_status, JSON), max_size=2), JSON),
        "errors": st.lists(JSON, max_size=2),
    },
)
_meta_change = st.fixed_dictionaries(
    {
        "field": mostly(st.just("messages"), st.sampled_from(["account_update", "flows"]) | LEAF),
        "value": mostly(_meta_value, JSON),
    }
)
_meta_whatsapp_payloads = st.fixed_dictionaries(
    {
        "object": mostly(st.just("whatsapp_business_account"), st.sampled_from(["page", "instagram", "user"]) | LEAF),
        "entry": mostly(
            st.lists(
                mostly(
                    st.fixed_dictionaries({"id": TEXT, "changes": st.lists(mostly(_meta_change, JSON), max_size=3)}),
                    JSON,
                ),
                max_size=3,
            ),
            JSON,
        ),
    }
).map(lambda body: json.dumps(body).encode())


# Messenger and Instagram: entry[].messaging[] events (object page / instagram).
META_MESSAGING_KEYS = ["mid", "text", "attachments", "type", "payload", "url", "title", "quick_reply", "reply_to",
                       "story", "id", "is_echo", "is_deleted", "is_unsupported", "referral", "watermark", "mids",
                       "emoji", "reaction", "action", "coordinates", "lat", "long", "sticker_id"]  # fmt: skip
_meta_messaging_known = known_objects(META_MESSAGING_KEYS)
_meta_account = st.sampled_from(["1234567890", "17841400000000000"])
_meta_attachment = st.fixed_dictionaries(
    {"type": mostly(st.sampled_from(["image", "video", "audio", "file", "fallback", "story_mention", "location"]))},
    optional={
        "payload": mostly(
            st.fixed_dictionaries(
                {},
                optional={
                    "url": TEXT,
                    "title": TEXT,
                    "sticker_id": LEAF,
                    "coordinates": mostly(st.fixed_dictionaries({"lat": _coordinate, "long": _coordinate}), JSON),
                },
            ),
            JSON,
        )
    },
)
_meta_messaging_kinds = {
    "message": st.fixed_dictionaries(
        {"mid": mostly(st.sampled_from(["m_1", "m_2", "aWdf_1"]))},
        optional={
            "text": mostly(TEXT),
            "attachments": mostly(st.lists(mostly(_meta_attachment, JSON), max_size=3), JSON),
            "quick_reply": mostly(st.fixed_dictionaries({"payload": TEXT | LEAF})),
            "reply_to": mostly(
                st.fixed_dictionaries(
                    {}, optional={"mid": TEXT, "story": mostly(st.fixed_dictionaries({"id": LEAF, "url": LEAF}), JSON)}
                )
            ),
            "is_echo": mostly(st.booleans()),
            "is_deleted": st.booleans(),
            "is_unsupported": st.booleans(),
            "referral": _meta_messaging_known,
        },
    ),
    "postback": st.fixed_dictionaries(
        {}, optional={"mid": mostly(TEXT), "title": mostly(TEXT), "payload": LEAF, "referral": _meta_messaging_known}
    ),
    "reaction": st.fixed_dictionaries(
        {"mid": mostly(TEXT)},
        optional={"action": mostly(st.sampled_from(["react", "unreact"])), "emoji": TEXT, "reaction": TEXT},
    ),
    "read": st.fixed_dictionaries({}, optional={"watermark": mostly(st.integers(0, 2**60)), "mid": TEXT}),
    "delivery": st.fixed_dictionaries(
        {}, optional={"mids": mostly(st.lists(mostly(TEXT), max_size=3)), "watermark": mostly(st.integers(0, 2**60))}
    ),
    "message_edit": _meta_messaging_known,
    "optin": _meta_messaging_known,
}


@st.composite
def _meta_messaging_event(draw) -> dict:
    kind = draw(st.sampled_from(sorted(_meta_messaging_kinds)))
    event = draw(
        st.fixed_dictionaries(
            {
                "sender": mostly(
                    st.fixed_dictionaries({"id": mostly(st.sampled_from(["6789012345678901", "1234567890"]))}),
                    st.fixed_dictionaries({"user_ref": TEXT}) | JSON,
                )
            },
            optional={
                "recipient": mostly(st.fixed_dictionaries({"id": _meta_account})),
                "timestamp": mostly(st.integers(0, 2**53), LEAF),
            },
        )
    )
    event[kind] = draw(mostly(_meta_messaging_kinds[kind], _meta_messaging_known))
    return event


_meta_messaging_payloads = st.fixed_dictionaries(
    {
        "object": mostly(st.sampled_from(["page", "instagram"])),
        "entry": mostly(
            st.lists(
                mostly(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "id": mostly(_meta_account),
                            "time": LEAF,
                            "messaging": mostly(st.lists(mostly(_meta_messaging_event(), JSON), max_size=3), JSON),
                            "standby": st.lists(JSON, max_size=1),
                            "changes": st.lists(JSON, max_size=1),
                        },
                    ),
                    JSON,
                ),
                max_size=3,
            ),
            JSON,
        ),
    }
).map(lambda body: json.dumps(body).encode())
#: Both shapes share the endpoint: WhatsApp's changes[] and Messenger/Instagram's messaging[].
meta_payloads = st.one_of(_meta_whatsapp_payloads, _meta_messaging_payloads)


def meta_sign(body: bytes) -> dict[str, str]:
    return {"content-type": "application/json", "x-hub-signature-256": meta.compute_signature(META_SECRET, body)}


# --- Web chat ----------------------------------------------------------------------------------

WEBCHAT_SECRET = "test_webchat_identity_secret"
WEBCHAT_ORIGIN = "https://shop.example.com"


@st.composite
def webchat_payloads(draw) -> bytes:
    identity = draw(
        mostly(
            st.fixed_dictionaries(
                {},
                optional={
                    "external_id": mostly(
                        st.sampled_from(["cust-1", "cust-2"]) | WORDS, st.sampled_from(["", "c" * 129]) | TEXT
                    ),
                    "email": mostly(st.just("a@example.com") | WORDS, TEXT),
                    "phone": mostly(st.just("+14155550101"), TEXT),
                    "name": mostly(WORDS, TEXT),
                },
            ),
            st.fixed_dictionaries({"nickname": TEXT}) | JSON,
        )
    )
    body = draw(
        st.fixed_dictionaries(
            {
                "site_id": mostly(st.just("shop"), st.just("other") | LEAF),
                "visitor_id": mostly(
                    st.sampled_from(["v1", "v-2", "v.3:x"]), st.sampled_from(["a/b", "v" * 129]) | LEAF
                ),
                "message_id": mostly(st.sampled_from(["m1", "01JH0000000000000000000001"]), st.just("") | LEAF),
                "text": mostly(WORDS, st.sampled_from([" ", "x" * 10_001]) | TEXT | LEAF),
            },
            optional={
                "sent_at": mostly(st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00"]), TEXT | LEAF),
                "attachments": mostly(
                    st.lists(
                        mostly(
                            st.fixed_dictionaries(
                                {"url": mostly(st.just("https://a.example/x"), st.just("javascript:x") | LEAF)},
                                optional={"content_type": TEXT, "filename": TEXT, "size": st.integers(-1, 10**6)},
                            ),
                            JSON,
                        ),
                        max_size=2,
                    ),
                    JSON,
                ),
                "identity": st.just(identity),
            },
        )
    )
    claim = webchat.signed_claim(identity)
    choice = draw(st.sampled_from(["signed", "signed", "none", "forged"]))
    if choice == "signed" and claim:
        try:
            body["user_hash"] = webchat.user_hash(WEBCHAT_SECRET, claim[1])
        except UnicodeEncodeError:  # a lone surrogate: no backend could sign it either
            pass
    elif choice == "forged":
        body["user_hash"] = draw(st.sampled_from(["ab" * 32, "xyz"]) | LEAF)
    return json.dumps(body).encode()


def webchat_strip(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    # The site id selects the keys a request is checked with; without it nothing can be proved.
    data = json.loads(body)
    del data["site_id"]
    return json.dumps(data).encode(), headers


# --- the table ---------------------------------------------------------------------------------

_twilio_body, _twilio_headers = fixture("twilio", "sms_text")
_meta_body, _meta_headers = fixture("meta", "whatsapp_text")
_webchat_body, _webchat_headers = fixture("webchat", "verified_identity")

CASES: dict[str, Case] = {
    "twilio": Case(
        settings={"auth_tokens": [TWILIO_TOKEN], "public_url": "https://hub.example.com/webhooks/twilio"},
        secret_values=(TWILIO_TOKEN,),
        hook="messaging",
        sample=_twilio_body,
        sample_headers=_twilio_headers,
        sign=twilio_sign,
        tamper=lambda body: body.replace(b"Where+is", b"Where+was"),
        strip=lambda body, headers: (body, without(headers, "x-twilio-signature")),
        body_signed=True,
        payloads=twilio_payloads,
        unknown=urlencode({"MessageSid": "SMnew", "From": "rcs:+14155550101", "To": "+14155550100", "Body": "hi"}).encode(),
    ),
    "meta": Case(
        settings={"app_secrets": [META_SECRET], "verify_tokens": ["contract_verify_token"]},
        secret_values=(META_SECRET, "contract_verify_token"),
        hook=None,
        sample=_meta_body,
        sample_headers=_meta_headers,
        sign=meta_sign,
        tamper=lambda body: body.replace(b"Sheena", b"Sheenb"),
        strip=lambda body, headers: (body, without(headers, "x-hub-signature-256")),
        body_signed=True,
        payloads=meta_payloads,
        unknown=json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
            {"field": "brand_new_field", "value": {"something": "new"}}]}]}).encode(),
    ),
    "webchat": Case(
        settings={"sites": [{"id": "shop", "identity_secrets": [WEBCHAT_SECRET], "allowed_origins": [WEBCHAT_ORIGIN]}]},
        secret_values=(WEBCHAT_SECRET,),
        hook=None,
        sample=_webchat_body,
        sample_headers=_webchat_headers,
        sign=lambda body: {"content-type": "application/json", "origin": WEBCHAT_ORIGIN},
        tamper=lambda body: body.replace(b'"cust-1042"', b'"cust-1043"'),
        strip=webchat_strip,
        body_signed=False,
        payloads=webchat_payloads(),
    ),
}


def _provider_cases() -> dict[str, Case]:
    """Rows from tests/contract/channels/<key>.py (`CASE`), keyed by module name."""
    import importlib
    import pkgutil
    from pathlib import Path

    folder = Path(__file__).parent / "channels"
    found = {}
    for module in pkgutil.iter_modules([str(folder)]):
        loaded = importlib.import_module(f"tests.contract.channels.{module.name}")
        if hasattr(loaded, "CASE"):
            found[getattr(loaded, "KEY", module.name)] = loaded.CASE
    return found


CASES.update(_provider_cases())


def case_for(key: str) -> Case:
    case = CASES.get(key)
    if case is None:
        pytest.fail(f"channel adapter {key!r} is registered but has no row in CASES")
    return case


def adapter_for(key: str) -> ChannelAdapter:
    cls = CHANNELS[key]
    return cls(cls.Settings.model_validate(case_for(key).settings), SecretResolver({}))


def make(key: str, body: bytes, headers: dict[str, str]) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        hook=case_for(key).hook,
        headers={k.lower(): v for k, v in headers.items()},
        query={},
        body=body,
        received_at=AT,
    )


def signed(key: str, body: bytes) -> WebhookRequest:
    return make(key, body, case_for(key).sign(body))


def assert_well_formed(key: str, parsed: ParsedWebhook) -> None:
    """What the ingest route relies on: typed events that survive the queue, string reasons."""
    assert isinstance(parsed, ParsedWebhook)
    for reason in [*parsed.ignored, *(e.reason for e in parsed.unhandled)]:
        assert isinstance(reason, str) and reason
        reason.encode("utf-8")  # reasons are logged: a lone surrogate would break the log line
    for event in parsed.events:
        assert isinstance(event, (InboundMessage, StatusEvent, IdentityChange))
        assert event.provider == key
        assert event.received_at == AT
        assert event.dedupe_key.startswith((f"msg:{key}:", f"status:{key}:", f"identity:{key}:"))
        assert type(event).model_validate_json(event.model_dump_json()) == event
        if isinstance(event, InboundMessage):
            assert event.sender.handles, "a message without a sender cannot be resolved"
    for event in parsed.unhandled:
        assert isinstance(event, UnhandledEvent) and (event.provider, event.received_at) == (key, AT)
        # What the queue carries and the store keeps must survive the trip, whatever the item was.
        assert UnhandledEvent.model_validate_json(event.model_dump_json()) == event


# --- registry and header -----------------------------------------------------------------------


def test_every_registered_adapter_has_a_contract_case():
    assert set(CHANNELS) - set(CASES) == set(), "registered adapters without a contract case"
    assert set(CASES) - set(CHANNELS) == set(), "contract cases for adapters that are not registered"


@pytest.mark.parametrize("key", KEYS)
def test_header_declares_key_docs_settings_and_content_types(key):
    cls = CHANNELS[key]
    assert cls.key == key
    assert cls.docs_url.startswith("https://")
    assert issubclass(cls.Settings, BaseModel)
    assert isinstance(cls.content_types, tuple) and cls.content_types
    assert all(re.fullmatch(r"[a-z]+/[a-z0-9.+-]+", ct) for ct in cls.content_types)
    assert (cls.__module__.rsplit(".", 1)[1] == key) or key in cls.__module__


@pytest.mark.parametrize("key", KEYS)
def test_construction_resolves_no_secret(key):
    class Exploding:
        def get(self, secret):
            raise AssertionError("secret resolved at construction")

        get_all = get

    cls = CHANNELS[key]
    adapter = cls(cls.Settings.model_validate(case_for(key).settings), Exploding())
    assert 200 <= adapter.ack(ParsedWebhook()).status < 300


# --- verify, parse, ack ------------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_sample_verifies_and_parses(key):
    case, adapter = case_for(key), adapter_for(key)
    request = make(key, case.sample, case.sample_headers)
    adapter.verify(request)
    parsed = adapter.parse(request)
    assert parsed.events
    assert_well_formed(key, parsed)
    assert adapter.parse(request) == parsed, "parsing is pure: twice gives the same events"


@pytest.mark.parametrize("key", KEYS)
def test_sign_helper_reproduces_the_samples_credential(key):
    case = case_for(key)
    adapter_for(key).verify(signed(key, case.sample))


@pytest.mark.parametrize("key", KEYS)
def test_tampered_body_fails_with_signature_error(key):
    case = case_for(key)
    if case.tamper is None:
        pytest.skip(f"{key}'s credential covers no byte of the body")
    tampered = case.tamper(case.sample)
    assert tampered != case.sample
    with pytest.raises(SignatureError):
        adapter_for(key).verify(make(key, tampered, case.sample_headers))


@pytest.mark.parametrize("key", KEYS)
def test_missing_credential_fails_with_signature_error(key):
    case = case_for(key)
    body, headers = case.strip(case.sample, dict(case.sample_headers))
    with pytest.raises(SignatureError):
        adapter_for(key).verify(make(key, body, headers))


GARBAGE = [b"", b"\x00\xff\xfe garbage \x80", b"\xc3\x28", b"not a payload at all", b"[1,2,3]", b"null", b"%%%=&&=%"]


@pytest.mark.parametrize("garbage", GARBAGE, ids=repr)
@pytest.mark.parametrize("key", KEYS)
def test_correctly_signed_garbage_passes_verify_and_is_malformed(key, garbage):
    adapter = adapter_for(key)
    request = signed(key, garbage)
    adapter.verify(request)
    with pytest.raises(MalformedPayloadError):
        adapter.parse(request)


#: Providers whose requests have no event types: nothing can be "a type added later".
UNKNOWN_EXEMPT = {
    "webchat": "our own widget protocol has one request; an unknown field is a 400 its developer sees",
    "mailgun": "a route forwards one email per POST; a POST that is not one is a 406",
    "sendgrid": "Inbound Parse posts one email per request; a request that is not one is a 400",
}


@pytest.mark.parametrize("key", KEYS)
def test_an_event_type_added_later_is_acknowledged_counted_and_kept_raw(key):
    case, adapter = case_for(key), adapter_for(key)
    if case.unknown is None:
        assert key in UNKNOWN_EXEMPT, f"{key}: give its contract row an `unknown` sample"
        return
    request = signed(key, case.unknown)
    adapter.verify(request)
    parsed = adapter.parse(request)
    assert_well_formed(key, parsed)
    assert parsed.events == [] and parsed.unhandled, "an unknown event is kept, not dropped"
    assert all(event.raw not in (None, "", {}) for event in parsed.unhandled)
    assert 200 <= adapter.ack(parsed).status < 300


def test_exemptions_name_only_rows_without_an_unknown_sample():
    assert {key for key in KEYS if case_for(key).unknown is None} == set(UNKNOWN_EXEMPT)


@pytest.mark.parametrize("key", KEYS)
def test_ack_is_2xx(key):
    case, adapter = case_for(key), adapter_for(key)
    request = make(key, case.sample, case.sample_headers)
    for parsed in (adapter.parse(request), ParsedWebhook(), ParsedWebhook(ignored=["something new"])):
        response = adapter.ack(parsed)
        assert 200 <= response.status < 300
        assert isinstance(response.body, str) and response.content_type


# --- settings ----------------------------------------------------------------------------------


def nested_models(annotation: Any, seen: set | None = None) -> Iterator[type[BaseModel]]:
    seen = set() if seen is None else seen
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation not in seen:
        seen.add(annotation)
        yield annotation
        for field in annotation.model_fields.values():
            yield from nested_models(field.annotation, seen)
    for arg in get_args(annotation):
        yield from nested_models(arg, seen)


def mentions(annotation: Any, target: type) -> bool:
    return annotation is target or any(mentions(arg, target) for arg in get_args(annotation))


def secret_values_in(value: Any) -> Iterator[SecretStr]:
    if isinstance(value, SecretStr):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from secret_values_in(getattr(value, name))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from secret_values_in(item)


@pytest.mark.parametrize("key", KEYS)
def test_settings_forbid_extra_keys_at_every_level(key):
    cls = CHANNELS[key]
    with pytest.raises(ValidationError, match="unexpected_key"):
        cls.Settings.model_validate({**case_for(key).settings, "unexpected_key": 1})
    models = list(nested_models(cls.Settings))
    assert models[0] is cls.Settings
    for model in models:
        assert model.model_config.get("extra") == "forbid", f"{model.__name__} accepts unknown keys"


@pytest.mark.parametrize("key", KEYS)
def test_secret_fields_are_secretstr_and_named_as_secrets(key):
    # hubconfig refuses inline values only for fields named like secrets, so the name and the
    # type must agree: a SecretStr named otherwise could be inlined in a deployed config.
    fields = [
        (m.__name__, name, f.annotation)
        for m in nested_models(CHANNELS[key].Settings)
        for name, f in m.model_fields.items()
    ]
    secret_typed = {(model, name) for model, name, annotation in fields if mentions(annotation, SecretStr)}
    secret_named = {(model, name) for model, name, _ in fields if _is_secret_field(name)}
    assert secret_typed, "every channel has at least one secret"
    assert secret_typed == secret_named


@pytest.mark.parametrize("key", KEYS)
def test_secret_values_never_show_in_reprs_or_dumps(key):
    case = case_for(key)
    settings_ = CHANNELS[key].Settings.model_validate(case.settings)
    secrets = list(secret_values_in(settings_))
    assert len(secrets) >= len(case.secret_values)
    for secret in secrets:
        assert repr(secret) == "SecretStr('**********')"
        assert secret.get_secret_value() in case.secret_values
    for text in (repr(settings_), str(settings_), settings_.model_dump_json(), str(settings_.model_dump())):
        for value in case.secret_values:
            assert value not in text


# --- properties --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=512))
def test_random_bytes_signed_correctly_raise_only_hub_errors(key, body):
    adapter = adapter_for(key)
    request = signed(key, body)
    try:
        adapter.verify(request)
    except (SignatureError, ForbiddenError):
        assert not case_for(key).body_signed, "a correctly signed body must verify"
        return
    try:
        parsed = adapter.parse(request)
    except MalformedPayloadError:
        return
    assert_well_formed(key, parsed)


@pytest.mark.parametrize("key", [k for k in KEYS if k in CASES and CASES[k].body_signed])
@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=512))
def test_any_other_body_with_the_samples_credential_fails(key, body):
    case = case_for(key)
    if body == case.sample:
        return
    with pytest.raises(SignatureError):
        adapter_for(key).verify(make(key, body, case.sample_headers))


@pytest.mark.parametrize("key", KEYS)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_plausible_payloads_parse_or_are_malformed_never_crash(key, data):
    case, adapter = case_for(key), adapter_for(key)
    request = signed(key, data.draw(case.payloads, label="body"))
    try:
        adapter.verify(request)
    except RequestRejectedError as exc:
        assert not case.body_signed, "a correctly signed body must verify"
        assert isinstance(exc, (SignatureError, ForbiddenError))
        return
    try:
        parsed = adapter.parse(request)
    except MalformedPayloadError as exc:
        assert exc.message
        return
    assert_well_formed(key, parsed)
    assert 200 <= adapter.ack(parsed).status < 300
