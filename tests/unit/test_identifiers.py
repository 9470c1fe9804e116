from __future__ import annotations

import subprocess
import sys
import unicodedata
from pathlib import Path
from urllib.parse import quote

import phonenumbers
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from chalicelib.domain.identifiers import (
    SCOPED_KINDS,
    Identifier,
    IdentifierKind,
    normalize,
    normalize_email,
    normalize_phone,
)
from chalicelib.errors import InvalidIdentifierError

ROOT = Path(__file__).resolve().parents[2]


# --- phone numbers: tables ---------------------------------------------------------------------


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
        # the national trunk prefix written in parentheses after the country code
        ("+49 (0)151 2345 6789", None, "+4915123456789"),
        ("+49 (0)151 2345 6789", "US", "+4915123456789"),
        ("+44 (0)20 7946 0958", None, "+442079460958"),
        # 00 as the international prefix, with and without a default region
        ("0049 151 23456789", None, "+4915123456789"),
        ("0049 151 23456789", "DE", "+4915123456789"),
        ("0049 151 23456789", "US", "+4915123456789"),
        ("0049 30 1234", "US", "+49301234"),  # 10 digits: also a possible (invalid) US number
        ("004915123456789", "GB", "+4915123456789"),
        ("0011 49 151 23456789", "AU", "+4915123456789"),  # the region's own prefix still works
        # national numbers read with the channel account's region
        ("030 123456", "DE", "+4930123456"),
        ("07400 123456", "GB", "+447400123456"),
        ("06 12 34 56 78", "fr", "+33612345678"),
        ("02 1234 5678", "IT", "+390212345678"),  # Italy keeps the leading zero
        # extensions are dropped
        ("+1-415-555-0101 ext. 12", None, "+14155550101"),
        ("+1 415 555 0101 x12", None, "+14155550101"),
        ("tel:+1-415-555-0101;ext=12", None, "+14155550101"),
        # URI prefixes, any case, with their parameters
        ("TEL:+14155550101", None, "+14155550101"),
        ("sms:+14155550101", None, "+14155550101"),
        ("sms:+14155550101?body=Hello%20there", None, "+14155550101"),
        ("whatsapp: +49 151 23456789", "US", "+4915123456789"),
        ("WhatsApp:+4915123456789", None, "+4915123456789"),
        ("whatsapp:4915123456789", "DE", "+4915123456789"),  # a WhatsApp address is international
        # Unicode digits, spaces, dashes and invisible marks
        ("+49\u00a0151\u00a023456789", None, "+4915123456789"),
        ("+49\u2009151\u2009234\u202f56789", None, "+4915123456789"),
        ("\u200e+49 151 23456789\u200f", None, "+4915123456789"),
        ("+49\u2011151\u201323456789", None, "+4915123456789"),
        ("\uff0b\uff14\uff19 \uff11\uff15\uff11 \uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19", None, "+4915123456789"),
        ("+\u0664\u0669\u0661\u0665\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669", None, "+4915123456789"),
        ("\u0966\u0967\u096b\u0967 \u0968\u0969\u096a\u096b\u096c\u096d\u096e\u096f", "DE", "+4915123456789"),
        ("\u00a0 +49 151 23456789 \t", None, "+4915123456789"),
        # the wa_id and 00 rules read Unicode digits and see through invisible characters
        ("\u0664\u0669\u0661\u0665\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669", None, "+4915123456789"),
        ("\u0660\u0660\u0664\u0669 151 23456789", None, "+4915123456789"),
        ("\ufeff4915123456789", None, "+4915123456789"),  # a BOM from a CSV export
    ],
)
def test_phone_numbers_become_e164(raw, region, expected):
    assert normalize_phone(raw, region) == expected
    assert normalize("phone", raw, default_region=region).value == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("hello", "not a number"),
        ("+1", "not a number"),
        ("1", "not a number"),
        ("12", "dialable only locally"),
        ("+49 1", "too short"),
        ("++49", "not a number"),
        ("+999 1234567", "invalid country code"),
        ("+49 151\n23456789", "control characters"),
        ("+49 151\x0023456789", "control characters"),
        ("+1 415 555 01012", "too long"),
        ("+1 555 0101", "dialable only locally"),
        ("+44 20", "possible phone number for its country: too short"),
        ("sms:?body=hi", "empty"),
    ],
)
def test_unusable_phone_numbers_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidIdentifierError, match=reason):
        normalize("phone", raw, default_region="DE")


def test_a_national_number_without_a_region_is_refused_not_guessed():
    with pytest.raises(InvalidIdentifierError, match="invalid country code"):
        normalize_phone("(415) 555-0101")
    with pytest.raises(InvalidIdentifierError, match="invalid country code"):
        normalize_phone("0151 23456789")


def test_whatsapp_is_a_phone_and_the_string_form_is_kind_colon_value():
    identifier = normalize("whatsapp", "16505551234", default_region="DE")

    assert identifier.kind is IdentifierKind.PHONE
    assert str(identifier) == "phone:+16505551234"
    assert str(normalize("whatsapp", "4915123456789", default_region="DE")) == "phone:+4915123456789"
    # kind phone with a region reads the same digits as a national number: wa_ids need kind whatsapp
    assert str(normalize("phone", "015123456789", default_region="DE")) == "phone:+4915123456789"
    assert str(normalize("WhatsApp", "4915123456789", default_region="US")) == "phone:+4915123456789"
    assert str(Identifier.parse("whatsapp:4915123456789", default_region="US")) == "phone:+4915123456789"


def test_phone_error_messages_never_contain_the_number():
    with pytest.raises(InvalidIdentifierError) as caught:
        normalize("phone", "+1 415 555 01012")
    assert "415" not in caught.value.message
    assert "phone" in caught.value.message


def test_importing_identifiers_loads_neither_phonenumbers_nor_the_idna_codec():
    probe = (
        "import sys, chalicelib.domain.identifiers;"
        "print(sorted(m for m in ('phonenumbers', 'encodings.idna', 'stringprep') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- phone numbers: properties -----------------------------------------------------------------

REGIONS = ["DE", "US", "GB", "FR", "IT", "CH", "BR", "IN", "JP", "AU", "NG", "MX", "AR", "SG"]
#: Regions that dial abroad with 00, plus US (011) whose national reading of 00… is impossible.
IDD_00 = [None, "DE", "GB", "FR", "IT", "CH", "IN", "US"]
TYPES = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]
SEPARATORS = [" ", "-", ".", "", "/", "  ", "\u00a0", "\u2009", "\u202f", "\u2013"]
DIGIT_ZEROS = {"ascii": "0", "fullwidth": "\uff10", "arabic-indic": "\u0660", "devanagari": "\u0966"}


@st.composite
def valid_numbers(draw):
    """A valid number of a region: the region's example with its last digits redrawn."""
    region = draw(st.sampled_from(REGIONS))
    example = phonenumbers.example_number_for_type(region, draw(st.sampled_from(TYPES)))
    nsn = phonenumbers.national_significant_number(example)
    width = draw(st.integers(1, 4))
    tail = draw(st.text("0123456789", min_size=width, max_size=width))
    number = phonenumbers.parse(f"+{example.country_code}{nsn[:-width]}{tail}")
    assume(phonenumbers.is_valid_number(number))
    return region, number


def _respell(text: str, draw) -> str:
    """Random separators between the groups and a random digit script."""
    zero = DIGIT_ZEROS[draw(st.sampled_from(sorted(DIGIT_ZEROS)))]
    out = []
    for char in text:
        if char in " -":
            out.append(draw(st.sampled_from(SEPARATORS)))
        elif char.isdigit():
            out.append(chr(ord(zero) + int(char)))
        else:
            out.append(char)
    return "".join(out)


@st.composite
def written_numbers(draw):
    """(written form, region to read it with, E.164) for a valid number."""
    region, number = draw(valid_numbers())
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    other = draw(st.sampled_from([None, *REGIONS]))
    style = draw(st.sampled_from(["e164", "international", "national", "rfc3966", "idd00", "prefixed"]))
    if style == "e164":
        written, read_with = e164, other
    elif style == "international":
        written = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        written, read_with = _respell(written, draw), other
    elif style == "national":
        written = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        written, read_with = _respell(written, draw), region
    elif style == "rfc3966":
        written = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.RFC3966)
        written, read_with = written + draw(st.sampled_from(["", ";ext=12"])), other
    elif style == "idd00":
        written = "00" + e164[1:]
        read_with = draw(st.sampled_from(IDD_00))
    else:
        prefix = draw(st.sampled_from(["tel:", "TEL:", "sms:", "whatsapp:"]))
        written = prefix + phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        read_with = other
    if style not in ("rfc3966", "prefixed") and draw(st.booleans()):
        written += draw(st.sampled_from([" ext. 123", " x 7", " ext 4711"]))
    pad = st.sampled_from(["", " ", "\t", "\u00a0", "\n"])
    return draw(pad) + written + draw(pad), read_with, e164


@given(written_numbers())
def test_every_written_form_of_a_valid_number_normalizes_to_its_e164(case):
    written, region, e164 = case
    assert normalize_phone(written, region) == e164


@given(valid_numbers(), st.sampled_from([None, *REGIONS]))
def test_phone_normalization_is_idempotent_and_wa_ids_ignore_the_region(drawn, region):
    _, number = drawn
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    assert normalize_phone(e164, region) == e164
    assert normalize_phone(normalize_phone(e164), region) == e164
    assert normalize("whatsapp", e164[1:], default_region=region).value == e164
    assert normalize("phone", e164[1:]).value == e164


@given(st.from_regex(r"\+49 ?1[5-7][0-9] ?[0-9]{7,8}", fullmatch=True))
def test_any_spelling_of_a_german_mobile_number_normalizes_to_one_value(number):
    compact = number.replace(" ", "")
    assert normalize_phone(number) == normalize_phone(compact) == normalize_phone("00" + compact[1:], "DE")


# --- email addresses: tables -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Jane@Example.COM ", "jane@example.com"),
        ("Jane Doe <jane.doe+support@example.co.uk>", "jane.doe+support@example.co.uk"),
        ('"Doe, Jane" <JANE@EXAMPLE.COM>', "jane@example.com"),
        ('"Doe <Jane>" <jane@example.com>', "jane@example.com"),
        ("<jane@example.com>", "jane@example.com"),
        ("< jane@example.com >", "jane@example.com"),
        ("jane@example.com (Jane Doe)", "jane@example.com"),
        ("Jane\r\n <jane@example.com>", "jane@example.com"),
        ("\u00a0\tjane@example.com\n", "jane@example.com"),
        # mailto: URIs (RFC 6068), alone or in angle brackets
        ("mailto:jane@example.com", "jane@example.com"),
        ("MAILTO:Jane@Example.com?subject=Order%2012", "jane@example.com"),
        ("mailto:jane%2Bsupport@example.com", "jane+support@example.com"),
        ("<mailto:jane@example.com>", "jane@example.com"),
        # the root's trailing dot
        ("jane@example.com.", "jane@example.com"),
        # internationalized domains: one value, the IDNA ASCII form
        ("jane@bücher.de", "jane@xn--bcher-kva.de"),
        ("JANE@BÜCHER.DE", "jane@xn--bcher-kva.de"),
        ("jane@xn--bcher-kva.de", "jane@xn--bcher-kva.de"),
        ("jane@XN--BCHER-KVA.DE", "jane@xn--bcher-kva.de"),
        ("jane@bu\u0308cher.de", "jane@xn--bcher-kva.de"),  # decomposed ü
        ("jane@bücher。de", "jane@xn--bcher-kva.de"),  # ideographic full stop
        ("Jane <jane@пример.рф>", "jane@xn--e1afmkfd.xn--p1ai"),
        ("jane@ＥＸＡＭＰＬＥ.com", "jane@example.com"),  # fullwidth letters
        ("jane@straße.de", "jane@strasse.de"),  # IDNA 2003 folds ß (documented)
        # internationalized local parts (RFC 6531): NFC, lower-cased
        ("Jörg@Example.com", "jörg@example.com"),
        ("Jo\u0308rg@example.com", "jörg@example.com"),
        ("ÉLODIE@example.fr", "élodie@example.fr"),
    ],
)
def test_emails_are_normalized_to_one_spelling(raw, expected):
    assert normalize_email(raw) == expected
    assert normalize("email", raw).value == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("jane", "local-part@domain"),
        ("jane@", "local-part@domain"),
        ("@example.com", "local-part@domain"),
        ("<>", "empty"),
        ("jane@localhost", "needs a dot"),
        ("jane@example", "needs a dot"),
        ("a b@example.com", "invalid character"),
        ("jane @example.com", "invalid character"),
        ("jane@exa mple.com", "invalid domain"),
        ("jane\u00a0doe@example.com", "invalid character"),
        ('"john doe"@example.com', "invalid character"),
        ("jane@@example.com", "invalid character"),
        ("jane,john@example.com", "invalid character"),
        ("jane@example.com, john@example.com", "invalid"),
        ("jane@exa\x00mple.com", "control characters"),
        ("ja\tne@example.com", "control characters"),
        ("ja\u200bne@example.com", "control characters"),
        ("jane@example.com\u202e", "control characters"),
        ("jane..doe@example.com", "misplaced dot"),
        (".jane@example.com", "misplaced dot"),
        ("jane.@example.com", "misplaced dot"),
        ("jane@example..com", "consecutive dots"),
        ("jane@.example.com", "consecutive dots"),
        ("jane@example.com..", "consecutive dots"),
        ("jane@-example.com", "invalid domain"),
        ("jane@exa_mple.com", "invalid domain"),
        ("jane@[192.0.2.1]", "invalid domain"),
        ("jane@192.0.2.1", "IP address"),
        ("jane@xn--zz.de", "internationalized domain"),
        ("jane@" + "a" * 64 + ".com", "invalid domain"),
        ("j" * 245 + "@example.com", "longer than 254"),
    ],
)
def test_non_emails_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidIdentifierError, match=reason):
        normalize_email(raw)


def test_the_254_octet_limit_counts_the_normalized_address():
    local = "j" * (254 - len("@example.com"))
    assert normalize_email(f"Jane <{local.upper()}@Example.COM>") == f"{local}@example.com"
    with pytest.raises(InvalidIdentifierError, match="254"):
        normalize_email(f"{local[1:]}é@example.com")  # 254 characters, but é is two octets


def test_email_error_messages_never_contain_the_address():
    with pytest.raises(InvalidIdentifierError) as caught:
        normalize_email("jane.doe@localhost")
    assert "jane" not in caught.value.message and "localhost" not in caught.value.message


# --- email addresses: properties ---------------------------------------------------------------

ATEXT = "abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~"
#: Lower-case letters whose upper case is one character and folds back (no ß). No sigma: Σ lower-cases
#: to ς at the end of a word, and σ there is a misspelling, so `aσ` and `AΣ` are not one spelling.
LETTERS = "".join(
    c for c in "äöüéèêàâçñøåæœîïôûÿ" "абвгдежзийклмнопрстуфхцчшщъыьэюя" "αβγδεζηθικλμνξοπρτυφχψω"
    if len(c.upper()) == 1 and c.upper().lower() == c
)
DOMAIN_TEXT = "abcdefghijklmnopqrstuvwxyz0123456789" + LETTERS


def _joined(alphabet: str, sep: str, max_atoms: int, max_size: int):
    atom = st.text(alphabet, min_size=1, max_size=max_size)
    return st.lists(atom, min_size=1, max_size=max_atoms).map(sep.join)


local_parts = _joined(ATEXT + LETTERS, ".", 3, 12)
labels = _joined(DOMAIN_TEXT, "-", 2, 10)
top_levels = st.sampled_from(["com", "de", "co.uk", "рф", "ελ"])
domains = st.tuples(st.lists(labels, min_size=1, max_size=2), top_levels).map(lambda p: ".".join([*p[0], p[1]]))
display_names = st.text("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,'-" + LETTERS, max_size=20)
paddings = st.sampled_from(["", " ", "\t", "\u00a0", " \n"])


def _random_case(text: str, draw) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips))


@st.composite
def written_addresses(draw):
    """(written form, expected value): the expected value is computed with the stdlib codec."""
    local, domain = draw(local_parts), draw(domains)
    expected = f"{local}@{domain.encode('idna').decode('ascii')}"
    spelled_domain = draw(st.sampled_from([domain, domain.encode("idna").decode("ascii")]))
    address = _random_case(f"{local}@{spelled_domain}", draw)
    if draw(st.booleans()):
        address = unicodedata.normalize("NFD", address)
    name = draw(display_names)
    template = draw(st.sampled_from(
        ["{a}", "<{a}>", "{n} <{a}>", '"{n}" <{a}>', "{a} ({n})", "mailto:{q}", "<mailto:{q}>"]
    ))
    written = template.format(a=address, n=name, q=quote(address, safe="@"))
    return draw(paddings) + written + draw(paddings), expected


@given(written_addresses())
def test_every_spelling_of_an_address_normalizes_to_one_value(case):
    written, expected = case
    assert normalize_email(written) == expected


@given(local_parts, domains)
def test_email_normalization_is_idempotent_and_unicode_and_punycode_domains_agree(local, domain):
    unicode_form = normalize_email(f"{local}@{domain}")
    punycode_form = normalize_email(f"{local}@{domain.encode('idna').decode('ascii').upper()}")
    assert unicode_form == punycode_form
    assert normalize_email(unicode_form) == unicode_form
    assert unicode_form.rpartition("@")[2].isascii()
    assert unicode_form.rpartition("@")[0] == local


@given(local_parts, domains, paddings)
def test_email_normalization_is_case_insensitive(local, domain, pad):
    address = f"{local}@{domain}"
    assert normalize_email(pad + address.upper() + pad) == normalize_email(address)


# --- channel-scoped, Telegram and external ids -------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "scope", "value", "key"),
    [
        ("messenger", "1234567890", "6789012345678901", "messenger:1234567890/6789012345678901"),
        ("instagram", "17841400000000000", "5432109876543210", "instagram:17841400000000000/5432109876543210"),
        ("slack", "T0123ABCD", "U0456EFGH", "slack:T0123ABCD/U0456EFGH"),
        ("webchat", "shop-eu", "v_8f14e45fceea167a", "webchat:shop-eu/v_8f14e45fceea167a"),
        ("webchat", " shop-eu ", " Visitor-ABC ", "webchat:shop-eu/Visitor-ABC"),  # trimmed, case kept
        ("webchat", "site", "a/b", "webchat:site/a/b"),  # the value may hold a slash, the scope not
        ("Slack", "T1", "U1", "slack:T1/U1"),
    ],
)
def test_channel_scoped_ids_keep_their_scope_and_case(kind, scope, value, key):
    identifier = normalize(kind, value, scope=scope)

    assert identifier.kind in SCOPED_KINDS
    assert identifier.key == key
    assert Identifier.parse(key) == identifier


def test_the_same_id_in_two_scopes_is_two_identifiers():
    assert normalize("slack", "U1", scope="T1") != normalize("slack", "U1", scope="T2")
    assert normalize("slack", "u1", scope="T1") != normalize("slack", "U1", scope="T1")


@pytest.mark.parametrize(
    ("kind", "scope", "value", "reason"),
    [
        ("messenger", None, "6789012345678901", "need a scope"),
        ("slack", "  ", "U1", "need a scope"),
        ("webchat", "a/b", "v1", "cannot contain '/'"),
        ("webchat", "site", "v\x001", "control characters"),
        ("webchat", "si\nte", "v1", "scope contains control characters"),
        ("slack", "T\u200b1", "U1", "scope contains control characters"),
        ("instagram", "1", "x" * 257, "longer than 256"),
        ("messenger", "p" * 257, "1", "scope longer than 256"),
        ("webchat", "site", "   ", "empty"),
    ],
)
def test_bad_channel_scoped_ids_are_rejected_with_a_reason(kind, scope, value, reason):
    with pytest.raises(InvalidIdentifierError, match=reason):
        normalize(kind, value, scope=scope)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("123456789", "123456789"), (" 123456789 ", "123456789"), ("00123", "123"), ("7" * 20, "7" * 20)],
)
def test_telegram_ids_are_numeric(raw, expected):
    identifier = normalize("telegram", raw)
    assert identifier.key == f"telegram:{expected}"
    assert normalize("telegram", raw, scope="bot1") == identifier, "telegram ids are global"
    assert Identifier.parse(identifier.key) == identifier


@pytest.mark.parametrize("raw", ["@jane", "jane", "12a", "-100123", "1 2", "1.5", "\u0661\u0662", "7" * 21])
def test_telegram_usernames_and_other_non_numeric_ids_are_rejected(raw):
    with pytest.raises(InvalidIdentifierError, match="telegram ids are numeric"):
        normalize("telegram", raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" CRM-00123 ", "CRM-00123"),
        ("crm-00123", "crm-00123"),  # case preserved: CRM ids are exact
        ("Kunde 4711", "Kunde 4711"),
        ("Cafe\u0301-1", "Café-1"),  # NFC
        ("x" * 256, "x" * 256),
    ],
)
def test_external_ids_are_trimmed_and_keep_their_case(raw, expected):
    identifier = normalize("external", raw)
    assert identifier.value == expected
    assert Identifier.parse(identifier.key) == identifier


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("x" * 257, "longer than 256"), ("a\tb", "control characters"), ("a\u200db", "control characters"), ("", "empty")],
)
def test_bad_external_ids_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidIdentifierError, match=reason):
        normalize("external", raw)


def test_a_scope_on_an_unscoped_kind_stays_part_of_the_key_and_round_trips():
    identifier = normalize("external", "4711", scope="hubspot")

    assert identifier.key == "external:hubspot/4711"
    assert identifier != normalize("external", "4711", scope="zendesk")
    assert Identifier.parse(identifier.key) == identifier
    with pytest.raises(InvalidIdentifierError, match="longer than 256"):
        normalize("external", "4" * 200, scope="h" * 56)
    assert normalize("email", "jane@example.com", scope="ignored").key == "email:jane@example.com"
    assert normalize("phone", "+4915123456789", scope="ignored").key == "phone:+4915123456789"


def test_whatsapp_user_ids_are_opaque_and_exact():
    identifier = normalize("whatsapp_user", " US.13491208655302741918 ")
    assert identifier.key == "whatsapp_user:US.13491208655302741918"
    with pytest.raises(InvalidIdentifierError, match="control characters"):
        normalize("whatsapp_user", "US.1\x0b2")


# --- the API form ------------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    ("text", "region", "key"),
    [
        ("phone:+49 151 23456789", None, "phone:+4915123456789"),
        (" Phone :0151 23456789", "DE", "phone:+4915123456789"),
        ("tel:+1-415-555-0101", None, "phone:+14155550101"),
        ("sms:+14155550101", None, "phone:+14155550101"),
        ("whatsapp:4915123456789", "US", "phone:+4915123456789"),
        ("email:Jane Doe <Jane@Bücher.de>", None, "email:jane@xn--bcher-kva.de"),
        ("mailto:Jane@Example.com", None, "email:jane@example.com"),
        ("telegram:123456789", None, "telegram:123456789"),
        ("external:CRM-1", None, "external:CRM-1"),
        ("slack:T1/U1", None, "slack:T1/U1"),
    ],
)
def test_the_api_form_accepts_every_spelling_and_aliases(text, region, key):
    identifier = Identifier.parse(text, default_region=region)
    assert identifier.key == key
    assert Identifier.parse(identifier.key) == identifier


@pytest.mark.parametrize(
    ("raw", "kind", "expected"),
    [
        ("555189223053", "whatsapp", "phone:+5551989223053"),    # WhatsApp id of an old account
        ("+55 51 98922-3053", "phone", "phone:+5551989223053"),  # the same mobile as texted
        ("+55 11 3456-7890", "phone", "phone:+551134567890"),    # a landline keeps 8 digits
    ],
)
def test_brazilian_mobiles_without_their_ninth_digit_are_the_same_number(raw, kind, expected):
    assert str(normalize(kind, raw)) == expected
