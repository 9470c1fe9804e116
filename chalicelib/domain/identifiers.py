"""Customer identifiers and their normalization.

An identifier is what links a message to a customer, so two spellings of the same phone number
or email address must become one value. The string form `kind:value` (with `kind:scope/value`
for channel-scoped ids) is what the API speaks and what the store keys on.

Normalization is strict where a loose reading could merge two people (a phone number without a
country, an address that is not one) and lenient about spelling (separators, case, display
names, Unicode forms), because a false merge is worse than a missed link. Error messages name the
kind and the reason, never the value (it is personal data).
"""

import re
import unicodedata
from enum import StrEnum
from functools import lru_cache

from pydantic import BaseModel, ConfigDict

from chalicelib.errors import InvalidIdentifierError


class IdentifierKind(StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    #: WhatsApp's business-scoped user id (BSUID), sent since 2026 beside or instead of `wa_id`.
    WHATSAPP_USER = "whatsapp_user"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    TELEGRAM = "telegram"
    SLACK = "slack"
    #: An X (Twitter) user id: numeric and global (the same for every app), unlike Messenger's
    #: page-scoped ids, so it needs no scope.
    X = "x"
    WEBCHAT = "webchat"
    EXTERNAL = "external"


#: Kinds whose value is only unique inside a scope (the Messenger page, the Slack team, the site).
SCOPED_KINDS = frozenset(
    {IdentifierKind.MESSENGER, IdentifierKind.INSTAGRAM, IdentifierKind.SLACK, IdentifierKind.WEBCHAT}
)

#: Input spellings that are really another kind: a WhatsApp number (`wa_id`) is a phone number.
_ALIASES = {
    "whatsapp": IdentifierKind.PHONE, "sms": IdentifierKind.PHONE, "tel": IdentifierKind.PHONE,
    "mailto": IdentifierKind.EMAIL,
}

#: Opaque ids (channel ids, CRM numbers) and scopes: longer ones are garbage, not identifiers,
#: and would bloat every store key they are part of.
MAX_ID_LENGTH = 256
#: RFC 5321's limit on a forward path (256 octets) minus the angle brackets.
MAX_EMAIL_LENGTH = 254


class Identifier(BaseModel):
    """A normalized identifier. Build it with `normalize()` or `Identifier.parse()`."""

    model_config = ConfigDict(frozen=True)

    kind: IdentifierKind
    value: str
    scope: str | None = None

    @property
    def key(self) -> str:
        if self.scope is not None:
            return f"{self.kind.value}:{self.scope}/{self.value}"
        return f"{self.kind.value}:{self.value}"

    def __str__(self) -> str:
        return self.key

    @classmethod
    def parse(cls, text: str, *, default_region: str | None = None) -> "Identifier":
        """Parse and normalize the API form `kind:value` or `kind:scope/value`.
        Raises `InvalidIdentifierError`."""
        kind, sep, rest = text.partition(":")
        if not sep or not rest:
            raise InvalidIdentifierError(
                "identifier must look like kind:value, e.g. phone:+4915123456789",
                detail={"identifier": _mask(text)},
            )
        kind = kind.strip().lower()
        resolved = resolve_kind(kind)
        scope = None
        if resolved in SCOPED_KINDS:
            scope, slash, rest = rest.partition("/")
            if not slash or not scope or not rest:
                raise InvalidIdentifierError(
                    f"{resolved.value} identifiers are scoped: use {resolved.value}:<scope>/<id>"
                )
        return normalize(kind, rest, scope=scope, default_region=default_region)


def normalize(
    kind: str | IdentifierKind,
    value: str,
    *,
    scope: str | None = None,
    default_region: str | None = None,
) -> Identifier:
    """Normalize one raw identifier. Raises `InvalidIdentifierError` naming the kind.

    `default_region` (the channel account's country) only reads national phone numbers; kind
    `whatsapp` (a `wa_id`) is always international. `scope` is required for `SCOPED_KINDS`,
    ignored for phone numbers, emails, Telegram and X ids (global by nature), and kept as a `scope/`
    prefix of the value for the other kinds, so the key still round-trips through `Identifier.parse`.
    """
    spelled = str(kind).strip().lower()
    resolved = resolve_kind(spelled)
    raw = (value or "").strip()
    if not raw:
        raise InvalidIdentifierError(f"empty {resolved.value} identifier")
    if resolved is IdentifierKind.PHONE:
        # A WhatsApp id (`wa_id`) is always international, even without its `+`: a default region
        # must not turn 4915123456789 into a German national number.
        international = spelled == "whatsapp"
        return Identifier(kind=resolved, value=normalize_phone(raw, None if international else default_region))
    if resolved is IdentifierKind.EMAIL:
        return Identifier(kind=resolved, value=normalize_email(raw))
    text = _opaque(raw, resolved, "id")
    if resolved is IdentifierKind.TELEGRAM:
        # Telegram user ids are integers, the same for every bot (https://core.telegram.org/bots/api#user);
        # anything else is a username, which its owner can change and someone else can take.
        if not re.fullmatch(r"[0-9]{1,20}", text):
            raise InvalidIdentifierError("telegram ids are numeric (the user id, not the @username)")
        return Identifier(kind=resolved, value=str(int(text)))
    if resolved is IdentifierKind.X:
        # X user ids are 64-bit integers (https://docs.x.com/fundamentals/x-ids); the
        # @handle is not an id: its owner can change it and someone else can take it.
        if not re.fullmatch(r"[0-9]{1,20}", text):
            raise InvalidIdentifierError("x ids are numeric (the user id, not the @handle)")
        return Identifier(kind=resolved, value=str(int(text)))
    scope = _opaque(scope.strip(), resolved, "scope") if scope else ""
    if resolved in SCOPED_KINDS:
        if not scope:
            raise InvalidIdentifierError(f"{resolved.value} identifiers need a scope (page, team or site)")
        if "/" in scope:
            raise InvalidIdentifierError(f"a {resolved.value} scope cannot contain '/'")
        return Identifier(kind=resolved, value=text, scope=scope)
    if scope:
        text = f"{scope}/{text}"
        if len(text) > MAX_ID_LENGTH:
            raise InvalidIdentifierError(f"{resolved.value} id longer than {MAX_ID_LENGTH} characters")
    return Identifier(kind=resolved, value=text)


# --- phone numbers -----------------------------------------------------------------------------

_PHONE_PREFIXES = ("whatsapp:", "tel:", "sms:")


def normalize_phone(raw: str, default_region: str | None = None) -> str:
    """E.164 form of a phone number. Raises `InvalidIdentifierError` with the reason.

    Accepts every written format phonenumbers reads (spaces, dashes, dots, slashes, parentheses,
    `+49 (0)151…`), Unicode digits and spaces, `tel:`/`sms:`/`whatsapp:` prefixes and RFC 3966
    parameters. Without a default region, a bare digit string is read as international (country
    code first, `+` missing: a `wa_id`) and `00` as the international prefix. A `whatsapp:` address
    is always international. An extension (`ext. 12`, `;ext=12`) is dropped: messaging channels
    never carry one, so only the switchboard number can link a contact (a shared switchboard
    belongs in `identity.blocked`).
    """
    text = _phone_text(raw)
    international = False
    for prefix in _PHONE_PREFIXES:
        if text.lower().startswith(prefix):
            international = international or prefix == "whatsapp:"
            text = text[len(prefix):].strip()
    # `sms:+1...?body=hi` (RFC 5724): the query is the message, not the number.
    text = text.partition("?")[0].strip()
    if not text:
        raise InvalidIdentifierError("empty phone identifier")
    region = default_region.upper() if default_region and not international else None
    if region is None and not text.startswith("+"):
        # No country code starts with 0, so 00… is never a wa_id.
        if text.startswith("00"):
            text = "+" + text[2:]
        elif re.fullmatch(r"[0-9]+", text):
            text = "+" + text
    if region is None or not text.startswith("00"):
        return _e164(text, region)
    return _national_or_international(text, region)


def _national_or_international(text: str, region: str) -> str:
    """`0049 151…` read with default region US: phonenumbers only knows the region's own
    international prefix (011), but 00 is the prefix almost everywhere (ITU-T E.164 recommends it)
    and customers write it whatever the channel's country. The region's reading wins unless it is
    impossible, or merely possible while the international reading is a valid number."""
    try:
        national = _e164(text, region)
    except InvalidIdentifierError:
        return _e164("+" + text[2:], None)
    if _is_valid(national):
        return national
    try:
        international = _e164("+" + text[2:], None)
    except InvalidIdentifierError:
        return national
    return international if _is_valid(international) else national


def _phone_text(raw: str) -> str:
    """ASCII digits: numbers copied from documents carry Arabic-Indic or fullwidth digits, NBSP or
    thin spaces (which phonenumbers does not read), a BOM or bidi marks. The wa_id and `00` rules
    below look at the digits, so they must be ASCII before phonenumbers sees them."""
    out = []
    for char in raw.strip():
        if char.isascii():
            out.append(char)
            continue
        category = unicodedata.category(char)
        if category == "Nd":
            out.append(str(unicodedata.decimal(char)))
        elif category == "Zs":
            out.append(" ")
        elif category == "Cf":
            continue
        else:
            out.append(unicodedata.normalize("NFKC", char))
    text = "".join(out).strip()
    if _has_control(text):
        raise InvalidIdentifierError("phone identifier contains control characters")
    return text


#: phonenumbers' NumberParseException error types, in words.
_PARSE_ERRORS = {
    0: "invalid country code (add +<country> or configure a default region)",
    1: "not a number",
    2: "too short after the international prefix",
    3: "too short",
    4: "too long",
}

#: phonenumbers' ValidationResult values, in words.
_POSSIBILITY = {
    1: "invalid country code",
    2: "too short",
    3: "too long",
    4: "dialable only locally (add the area code)",
    5: "invalid length",
}


@lru_cache(maxsize=4096)
def _e164(text: str, region: str | None) -> str:
    # Imported here: phonenumbers loads its metadata lazily and must not cost cold-start time on
    # the ingest path, which never normalizes.
    import phonenumbers

    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        reason = _PARSE_ERRORS.get(exc.error_type, "unparsable")
        raise InvalidIdentifierError(f"not a phone number: {reason}") from None
    # "Possible" (right length for the country), not "valid": validity depends on the metadata's
    # knowledge of number ranges, and rejecting a real customer's new range would lose the link.
    # Local-only numbers (dialable only within an area) cannot identify anyone across channels.
    result = phonenumbers.is_possible_number_with_reason(number)
    if result != phonenumbers.ValidationResult.IS_POSSIBLE:
        reason = _POSSIBILITY.get(result, "impossible")
        raise InvalidIdentifierError(f"not a possible phone number for its country: {reason}")
    return _brazilian_mobile_ninth_digit(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _brazilian_mobile_ninth_digit(e164: str) -> str:
    """Brazil's mobiles have 9 digits since 2016, but WhatsApp ids of older accounts still omit
    the leading 9 (`55 51 8922 3053`). Eight-digit subscriber numbers starting 6-9 are always
    such mobiles (landlines start 2-5), so the canonical form has the 9: SMS and WhatsApp agree."""
    national = e164[3:]
    if e164.startswith("+55") and len(national) == 10 and national[2] in "6789":
        return f"+55{national[:2]}9{national[2:]}"
    return e164


@lru_cache(maxsize=1024)
def _is_valid(e164: str) -> bool:
    import phonenumbers

    return phonenumbers.is_valid_number(phonenumbers.parse(e164))


# --- email addresses ---------------------------------------------------------------------------

#: RFC 5322 `atext`: what a dot-atom local part may contain besides dots (and, per RFC 6531,
#: non-ASCII characters). Quoted local parts (`"john doe"@…`) are refused: no provider hands them
#: to customers, and their quoting rules make equal addresses hard to recognize.
_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")
#: Label separators IDNA accepts (RFC 3490 3.1): full stop and its ideographic/fullwidth forms.
_LABEL_DOTS = re.compile("[.\u3002\uff0e\uff61]")
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def normalize_email(raw: str) -> str:
    """One spelling per mailbox. Raises `InvalidIdentifierError`.

    Accepts `Jane Doe <jane@example.com>`, `<…>`, `jane@example.com (Jane)` and `mailto:` forms.

    The domain is stored in its IDNA ASCII form (`xn--bcher-kva.de`), not the Unicode one: it is
    what DNS and SMTP use and what every CRM and helpdesk accepts, so it can be handed to any
    connector unchanged; `bücher.de`, `BÜCHER.DE` and `xn--bcher-kva.de` all map to it; and it is
    one exact byte string, while Unicode spellings of one domain vary (composed or not, fullwidth,
    case). The stdlib codec (IDNA 2003) applies nameprep (NFKC, case folding), so `ß` in a domain
    folds to `ss`. Blocked patterns on email domains must therefore use the ASCII form.

    The local part is NFC-normalized and lower-cased. RFC 5321 lets it be case-sensitive, but
    every real provider treats it case-insensitively, and splitting one customer in two on `Jane@`
    vs `jane@` costs more here than merging two mailboxes that differ only in case (which no
    provider hands out). Provider-specific rewrites (Gmail dots, `+tags`) are not applied: they
    would merge addresses other providers keep apart.
    """
    address = _email_address(raw.strip())
    if not address:
        raise InvalidIdentifierError("not an email address: empty")
    if _has_control(address, formatting=True):
        raise InvalidIdentifierError("not an email address: control characters")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise InvalidIdentifierError("not an email address: needs local-part@domain")
    local = unicodedata.normalize("NFC", local.lower())
    _check_local_part(local)
    normalized = f"{local}@{_ascii_domain(domain)}"
    if len(normalized.encode("utf-8")) > MAX_EMAIL_LENGTH:
        raise InvalidIdentifierError(f"not an email address: longer than {MAX_EMAIL_LENGTH} octets")
    return normalized


def _email_address(text: str) -> str:
    """The address inside display-name, comment and `mailto:` forms."""
    if text.endswith(")") and "(" in text:
        text = text[: text.rindex("(")].rstrip()
    if text.endswith(">") and "<" in text:
        text = text[text.rindex("<") + 1 : -1].strip()
    if text[:7].lower() == "mailto:":
        from urllib.parse import unquote

        # RFC 6068: the address is percent-encoded and `?` starts the header fields.
        text = unquote(text[7:].partition("?")[0]).strip()
    return text


def _check_local_part(local: str) -> None:
    for char in local:
        if char.isascii():
            if char != "." and char not in _ATEXT:
                raise InvalidIdentifierError("not an email address: invalid character in the local part")
        elif unicodedata.category(char)[0] in "CZ":
            raise InvalidIdentifierError("not an email address: invalid character in the local part")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise InvalidIdentifierError("not an email address: misplaced dot in the local part")


def _ascii_domain(domain: str) -> str:
    import encodings.idna  # stdlib, but it pulls in stringprep: only when an email is normalized

    labels = _LABEL_DOTS.split(domain)
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()  # the root's trailing dot: `example.com.` is `example.com`
    if len(labels) < 2:
        raise InvalidIdentifierError("not an email address: the domain needs a dot")
    if not all(labels):
        raise InvalidIdentifierError("not an email address: empty label (consecutive dots) in the domain")
    ascii_labels = []
    for label in labels:
        label = label.lower()
        try:
            if not label.isascii():
                label = encodings.idna.ToASCII(label).decode("ascii")
            elif label.startswith("xn--"):
                # Decode and re-encode: validates the punycode and gives one spelling of it.
                label = encodings.idna.ToASCII(encodings.idna.ToUnicode(label)).decode("ascii")
        except UnicodeError:
            raise InvalidIdentifierError("not an email address: invalid internationalized domain") from None
        if not _LDH_LABEL.fullmatch(label):
            raise InvalidIdentifierError("not an email address: invalid domain")
        ascii_labels.append(label)
    if ascii_labels[-1].isdigit():
        raise InvalidIdentifierError("not an email address: the domain is an IP address")
    return ".".join(ascii_labels)


# --- shared ------------------------------------------------------------------------------------


def _opaque(text: str, kind: IdentifierKind, what: str) -> str:
    """A provider's or CRM's id: exact (case matters), NFC, no control characters, bounded."""
    text = unicodedata.normalize("NFC", text)
    if _has_control(text, formatting=True):
        raise InvalidIdentifierError(f"{kind.value} {what} contains control characters")
    if len(text) > MAX_ID_LENGTH:
        raise InvalidIdentifierError(f"{kind.value} {what} longer than {MAX_ID_LENGTH} characters")
    return text


def _has_control(text: str, *, formatting: bool = False) -> bool:
    """Control characters (Cc), and with `formatting` invisible ones (Cf: zero-width, bidi marks)
    that would make two identical-looking ids differ."""
    categories = ("Cc", "Cf") if formatting else ("Cc",)
    return any(unicodedata.category(char) in categories for char in text)


def resolve_kind(kind: str) -> IdentifierKind:
    """The kind a spelling stands for (`whatsapp`, `tel` → phone). Raises `InvalidIdentifierError`."""
    kind = kind.strip().lower()
    if kind in _ALIASES:
        return _ALIASES[kind]
    try:
        return IdentifierKind(kind)
    except ValueError:
        allowed = ", ".join(k.value for k in IdentifierKind)
        raise InvalidIdentifierError(f"unknown identifier kind {kind!r}; expected one of {allowed}") from None


def _mask(text: str) -> str:
    return text[:3] + "…" if len(text) > 3 else "…"
