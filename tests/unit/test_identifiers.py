from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain.identifiers import Identifier, IdentifierKind, normalize, normalize_email, normalize_phone
from chalicelib.errors import InvalidIdentifierError


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+49 151 23456789", None, "+4915123456789"),
        ("0151 23456789", "DE", "+4915123456789"),
        ("(415) 555-0101", "US", "+14155550101"),
        ("whatsapp:+14155550100", None, "+14155550100"),
        ("5511987654321", None, "+5511987654321"),  # WhatsApp wa_id: country code, no plus
        ("tel:+44 20 7946 0958", None, "+442079460958"),
        ("+1.415.555.0101", None, "+14155550101"),
    ],
)
def test_phone_numbers_become_e164(raw, region, expected):
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize("raw", ["", "hello", "+1", "12", "++49", "+999 1234567"])
def test_unusable_phone_numbers_are_rejected_with_a_reason(raw):
    with pytest.raises(InvalidIdentifierError):
        normalize("phone", raw, default_region="DE")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Jane@Example.COM ", "jane@example.com"),
        ("Jane Doe <jane.doe+support@example.co.uk>", "jane.doe+support@example.co.uk"),
        ('"Doe, Jane" <JANE@EXAMPLE.COM>', "jane@example.com"),
    ],
)
def test_emails_are_trimmed_and_lower_cased(raw, expected):
    assert normalize_email(raw) == expected


@pytest.mark.parametrize("raw", ["jane", "jane@", "@example.com", "jane@localhost", "a b@example.com"])
def test_non_emails_are_rejected(raw):
    with pytest.raises(InvalidIdentifierError):
        normalize_email(raw)


def test_whatsapp_is_a_phone_and_the_string_form_is_kind_colon_value():
    identifier = normalize("whatsapp", "16505551234", default_region="DE")

    assert identifier.kind is IdentifierKind.PHONE
    assert str(identifier) == "phone:+16505551234"
    assert str(normalize("whatsapp", "4915123456789", default_region="DE")) == "phone:+4915123456789"


def test_channel_scoped_ids_carry_their_scope_and_round_trip():
    identifier = Identifier.parse("messenger:1234567890/6789012345678901")

    assert (identifier.kind, identifier.scope, identifier.value) == (IdentifierKind.MESSENGER, "1234567890", "6789012345678901")
    assert Identifier.parse(identifier.key) == identifier
    with pytest.raises(InvalidIdentifierError, match="scoped"):
        Identifier.parse("slack:U123")
    with pytest.raises(InvalidIdentifierError, match="unknown identifier kind"):
        Identifier.parse("fax:+4930123456")
    with pytest.raises(InvalidIdentifierError, match="kind:value"):
        Identifier.parse("+4930123456")


@given(st.from_regex(r"\+49 ?1[5-7][0-9] ?[0-9]{7,8}", fullmatch=True))
def test_any_spelling_of_a_german_mobile_number_normalizes_to_one_value(number):
    compact = number.replace(" ", "")
    assert normalize_phone(number) == normalize_phone(compact) == normalize_phone("00" + compact[1:], "DE")


@given(
    st.from_regex(r"[a-z0-9._+-]{1,20}", fullmatch=True),
    st.from_regex(r"[a-z0-9-]{1,15}\.(com|de|org)", fullmatch=True),
    st.sampled_from(["", " ", "\t"]),
)
def test_email_normalization_is_idempotent_and_case_insensitive(local, domain, pad):
    address = f"{local}@{domain}"
    normalized = normalize_email(pad + address.upper() + pad)
    assert normalized == address.lower()
    assert normalize_email(normalized) == normalized
