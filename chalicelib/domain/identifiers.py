"""Customer identifiers and their normalization.

An identifier is what links a message to a customer, so two spellings of the same phone number
or email address must become one value. The string form `kind:value` (with `kind:scope/value`
for channel-scoped ids) is what the API speaks and what the store keys on.
"""

from __future__ import annotations

from email.utils import parseaddr
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
    WEBCHAT = "webchat"
    EXTERNAL = "external"


#: Kinds whose value is only unique inside a scope (the Messenger page, the Slack team, the site).
SCOPED_KINDS = frozenset(
    {IdentifierKind.MESSENGER, IdentifierKind.INSTAGRAM, IdentifierKind.SLACK, IdentifierKind.WEBCHAT}
)

#: Input spellings that are really another kind: a WhatsApp number (`wa_id`) is a phone number.
_ALIASES = {"whatsapp": IdentifierKind.PHONE, "sms": IdentifierKind.PHONE, "tel": IdentifierKind.PHONE}


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
    def parse(cls, text: str, *, default_region: str | None = None) -> Identifier:
        """Parse and normalize the API form `kind:value` or `kind:scope/value`."""
        kind, sep, rest = text.partition(":")
        if not sep or not rest:
            raise InvalidIdentifierError(
                "identifier must look like kind:value, e.g. phone:+4915123456789",
                detail={"identifier": _mask(text)},
            )
        resolved = _resolve_kind(kind.strip().lower())
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
    """Normalize one raw identifier. Raises `InvalidIdentifierError` naming the kind."""
    resolved = _resolve_kind(str(kind).lower())
    raw = (value or "").strip()
    if not raw:
        raise InvalidIdentifierError(f"empty {resolved.value} identifier")
    if resolved is IdentifierKind.PHONE:
        # A WhatsApp id (`wa_id`) is always international, even without its `+`: a default region
        # must not turn 4915123456789 into a German national number.
        international = str(kind).lower() == "whatsapp"
        return Identifier(kind=resolved, value=normalize_phone(raw, None if international else default_region))
    if resolved is IdentifierKind.EMAIL:
        return Identifier(kind=resolved, value=normalize_email(raw))
    if resolved in SCOPED_KINDS:
        scope = (scope or "").strip()
        if not scope:
            raise InvalidIdentifierError(f"{resolved.value} identifiers need a scope (page, team or site)")
        return Identifier(kind=resolved, value=raw, scope=scope)
    return Identifier(kind=resolved, value=raw, scope=(scope or None))


def normalize_phone(raw: str, default_region: str | None = None) -> str:
    """E.164 form of a phone number; `whatsapp:` prefixes are accepted. Without a default region,
    a bare digit string is read as international (country code first, `+` missing)."""
    text = raw.strip()
    for prefix in ("whatsapp:", "tel:", "sms:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix):].strip()
    region = default_region.upper() if default_region else None
    if region is None and not text.startswith("+") and text.isdigit():
        text = "+" + text
    return _e164(text, region)


#: phonenumbers' NumberParseException error types, in words.
_PARSE_ERRORS = {
    0: "invalid country code (add +<country> or configure a default region)",
    1: "not a number",
    2: "too short after the international prefix",
    3: "too short",
    4: "too long",
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
    if phonenumbers.is_possible_number_with_reason(number) != phonenumbers.ValidationResult.IS_POSSIBLE:
        raise InvalidIdentifierError("not a possible phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    """Trimmed, lower-cased address; `Jane Doe <jane@example.com>` forms are accepted."""
    _, address = parseaddr(raw.strip())
    address = address.strip().lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or "." not in domain or " " in address:
        raise InvalidIdentifierError("not an email address")
    return address


def _resolve_kind(kind: str) -> IdentifierKind:
    if kind in _ALIASES:
        return _ALIASES[kind]
    try:
        return IdentifierKind(kind)
    except ValueError:
        allowed = ", ".join(k.value for k in IdentifierKind)
        raise InvalidIdentifierError(f"unknown identifier kind {kind!r}; expected one of {allowed}") from None


def _mask(text: str) -> str:
    return text[:3] + "…" if len(text) > 3 else "…"
