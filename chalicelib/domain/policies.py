"""The policies the domain decides by: identity resolution, survivorship, cases, customer limits.

Pure models: the hub configuration (`hubconfig.py`) holds them under `identity:`,
`survivorship:`, `cases:` and `customers:`, and validates them with the rest of the file at load,
so a bad value stops start-up with its exact path. The domain functions take them as arguments.
"""

# No `from __future__ import annotations`: pydantic would compile and evaluate each field's
# annotation string when a model class is created (about 0.15 ms a model at every cold start).

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.domain.defaults import empty_list
from chalicelib.domain.identifiers import IdentifierKind
from chalicelib.domain.regions import PHONE_REGIONS


class Strict(BaseModel):
    """A configuration model: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


#: Addresses that belong to nobody in particular; operators extend or replace the list.
DEFAULT_BLOCKED = [
    "email:noreply@*", "email:no-reply@*", "email:donotreply@*", "email:do-not-reply@*",
    "email:mailer-daemon@*", "email:postmaster@*",
]


#: A wildcard phone pattern as stored numbers read: `+`, digits, shell wildcards and sets.
_PHONE_PATTERN = re.compile(r"[+*?\[][0-9*?\[\]!-]*")


def _phone_region(value: str) -> str:
    """`value` as the region code phonenumbers reads national numbers by (`de` → `DE`)."""
    region = value.strip().upper()
    if region not in PHONE_REGIONS:
        hint = " (the United Kingdom is GB)" if region == "UK" else ""
        raise ValueError(f"{value[:10]!r} is not a region phonenumbers knows; use an ISO 3166 alpha-2 code "
                         f"such as DE or US{hint}")
    return region


class IdentityPolicy(Strict):
    """Which identifiers may tie a contact to a customer (Segment's identity resolution, in rules)."""

    #: Region for phone numbers written without a country code (ISO 3166 alpha-2), per hub...
    default_region: str | None = None
    #: ...and per channel account, keyed `provider:account` (the number, page or site the
    #: customer wrote to, as in `Contact.account`): `{"twilio:+4930123456": "DE"}`.
    account_regions: dict[str, str] = Field(default_factory=dict)
    #: Kinds that may link a contact to an existing customer, highest priority first: when a
    #: contact's identifiers point to different customers, the first kind's owner wins.
    link_kinds: list[IdentifierKind] = Field(default_factory=lambda: [
        IdentifierKind.EXTERNAL, IdentifierKind.EMAIL, IdentifierKind.PHONE, IdentifierKind.WHATSAPP_USER,
        IdentifierKind.WEBCHAT, IdentifierKind.MESSENGER, IdentifierKind.INSTAGRAM, IdentifierKind.TELEGRAM,
        IdentifierKind.SLACK, IdentifierKind.X,
    ])
    #: At most this many values of a kind per customer; further ones stay on the contact only.
    max_per_kind: dict[IdentifierKind, int] = Field(default_factory=lambda: {
        IdentifierKind.EXTERNAL: 1, IdentifierKind.EMAIL: 5, IdentifierKind.PHONE: 5,
    })
    #: Identifier patterns (shell-style, on `kind:value`) that never link anything: shared family
    #: or office numbers, no-reply addresses. Setting the list replaces the defaults. Exact
    #: entries are normalized like identifiers, national numbers with `default_region`.
    blocked: list[str] = Field(default_factory=lambda: list(DEFAULT_BLOCKED))
    #: Whether unverified claims (an email typed into a web chat without `user_hash`) may link.
    trust_unverified: bool = False
    #: Email continuity: mail whose From address nobody proved still joins the customer that
    #: earlier unproved mail from the same address created (helpdesks treat From as the
    #: requester), but never a customer who proved the address, and never merges anyone.
    email_continuity: bool = True
    #: Whether a contact whose verified identifiers belong to two customers merges them (the
    #: oldest customer survives; `POST /v1/customers/{id}/unmerge` reverses it).
    auto_merge: bool = True
    #: Kinds a person holds one true value of: two customers holding different values of one of
    #: these kinds are never merged, automatically or through the API.
    merge_protection: list[IdentifierKind] = Field(default_factory=lambda: [IdentifierKind.EXTERNAL])

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        return _phone_region(value) if value is not None else None

    @field_validator("account_regions")
    @classmethod
    def _account_regions(cls, value: dict[str, str]) -> dict[str, str]:
        for account in value:
            if ":" not in account:
                raise ValueError(f"key {account[:40]!r} must be provider:account, e.g. twilio:+4930123456")
        regions = {}
        for account, region in value.items():
            try:
                regions[account] = _phone_region(region)
            except ValueError as exc:
                raise ValueError(f"{account}: {exc}") from None
        return regions

    @field_validator("max_per_kind")
    @classmethod
    def _limits(cls, value: dict[IdentifierKind, int]) -> dict[IdentifierKind, int]:
        for kind, limit in value.items():
            if limit < 1:
                raise ValueError(f"{kind.value}: {limit} would keep no {kind.value} at all; "
                                 "leave the kind out of link_kinds instead of allowing none")
        return value

    @model_validator(mode="after")
    def _normalized_blocked(self) -> "IdentityPolicy":
        """Exact entries are normalized like identifiers (`phone:0162 1234 5678` with region DE
        → `phone:+4916212345678`), so they match what the hub stores; wildcard entries get an
        IDNA-encoded email domain. After the fields, because a national number needs the region."""
        self.blocked = [self._normalized_pattern(index, pattern) for index, pattern in enumerate(self.blocked)]
        return self

    def _normalized_pattern(self, index: int, pattern: str) -> str:
        from chalicelib.config_sections import fail_at
        from chalicelib.domain.identifiers import Identifier
        from chalicelib.errors import InvalidIdentifierError

        if not any(ch in pattern for ch in "*?["):
            try:
                return Identifier.parse(pattern, default_region=self.default_region).key
            except InvalidIdentifierError as exc:
                national = pattern.partition(":")[0].strip().lower() == "phone" and not self.default_region
                hint = " (or set identity.default_region for national numbers)" if national else ""
                raise fail_at("IdentityPolicy", ("blocked", index), f"{exc.message}{hint}") from None
        kind, _, rest = pattern.partition(":")
        kind = kind.strip().lower()
        if kind not in {k.value for k in IdentifierKind} and not any(ch in kind for ch in "*?["):
            raise fail_at("IdentityPolicy", ("blocked", index), f"{kind[:40]!r} is not an identifier kind "
                          f"({', '.join(k.value for k in IdentifierKind)})")
        if kind == "phone" and not _PHONE_PATTERN.fullmatch(rest):
            # Stored numbers are E.164 (`phone:+4930...`): `+49 30 *` or `0049*` would match none.
            raise fail_at("IdentityPolicy", ("blocked", index), "a phone pattern is written in E.164 form, "
                          "`+` and digits with wildcards (phone:+4930123*), no spaces or national prefix")
        local, at, domain = rest.rpartition("@")
        if kind == "email" and at and not domain.isascii():
            try:
                domain = ".".join(
                    label if any(ch in label for ch in "*?[") else label.encode("idna").decode()
                    for label in domain.split(".")
                )
            except UnicodeError:
                raise fail_at("IdentityPolicy", ("blocked", index),
                              f"{domain[:80]!r} is not a domain name IDNA can encode") from None
            pattern = f"{kind}:{local}@{domain}"
        return pattern

    def region_for(self, provider: str, account: str) -> str | None:
        return self.account_regions.get(f"{provider}:{account}", self.default_region)


class SurvivorshipRule(Strict):
    """How one attribute's surviving value is chosen among its sources' observations."""

    rule: Literal["most_recent", "source_priority"] = "most_recent"
    #: For source_priority: highest first; sources not listed rank below all listed ones (and
    #: among themselves by recency).
    sources: list[str] = Field(default_factory=empty_list)


class SurvivorshipPolicy(Strict):
    default: SurvivorshipRule = Field(default_factory=SurvivorshipRule)
    #: Per attribute (name, language, preferred_channel, tier, or any custom attribute).
    attributes: dict[str, SurvivorshipRule] = Field(default_factory=lambda: {
        # What a person or a CRM typed beats a profile name a messaging app reports.
        "name": SurvivorshipRule(rule="source_priority", sources=["api", "webchat"]),
    })

    def rule_for(self, attribute: str) -> SurvivorshipRule:
        return self.attributes.get(attribute, self.default)


class CasePolicy(Strict):
    #: A contact joins the customer's open case when the case was active this recently...
    window_hours: float = Field(default=72, gt=0)
    #: ...and an open case with no activity for this long is closed (on its next read or contact).
    auto_close_after_hours: float = Field(default=168, gt=0)
    #: Two-way destinations whose ticket decides when the case closes: solved there, the case
    #: closes, whatever the others say. Empty: the case closes once every two-way destination
    #: that has a ticket for it has closed its ticket.
    close_on: list[str] = Field(default_factory=empty_list)

    @model_validator(mode="after")
    def _window_within_auto_close(self) -> "CasePolicy":
        if self.window_hours > self.auto_close_after_hours:
            raise ValueError("window_hours must not exceed auto_close_after_hours (a case would be joined after it closed)")
        return self


#: Attribute and source names: lower-case, dotted for namespaces (custom.contract_id).
ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_.]{0,63}")


class CustomerLimits(Strict):
    """How much one customer record may hold. A DynamoDB item holds 400 KB, and the customer
    record carries every attribute with each source's observation of it: without a cap, one
    API client's attributes make every later write of that customer fail."""

    #: Attributes per customer (each counted once, however many sources stated it).
    max_attributes: int = Field(default=50, ge=1, le=200)
    #: Bytes of one attribute's value, as JSON.
    max_attribute_bytes: int = Field(default=4096, ge=64, le=16384)
    #: Bytes of the whole customer record, as stored (attributes, observations, identifiers...).
    #: Merges check their audit record against twice this.
    max_record_bytes: int = Field(default=128 * 1024, ge=16 * 1024, le=160 * 1024)
    #: Golden-record attributes customers can be selected by (a business event's segment, such as
    #: `postcode`): at most 2, one DynamoDB index slot each, in this order (the first uses slot 1).
    #: Reordering or renaming them needs a reindex (`hubctl customers reindex`).
    indexed_attributes: list[str] = Field(default_factory=empty_list, max_length=2)

    @field_validator("indexed_attributes")
    @classmethod
    def _indexable_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not ATTRIBUTE_NAME.fullmatch(name):
                raise ValueError(f"indexed attribute {name[:40]!r} must be lower-case letters, digits, '_' or '.'")
        if len(set(names)) != len(names):
            raise ValueError("an attribute may be indexed only once")
        return names

    def check_attributes_request(self, source: Any, values: Any) -> None:
        """What an API client may send at all. Raises `RequestRejectedError` naming the problem."""
        from chalicelib.errors import RequestRejectedError

        if not isinstance(source, str) or not ATTRIBUTE_NAME.fullmatch(source):
            raise RequestRejectedError("source must be a short lower-case name such as crm")
        if not isinstance(values, dict) or not values:
            raise RequestRejectedError('body must be {"source": "...", "attributes": {"name": value, ...}}')
        if len(values) > self.max_attributes:
            raise RequestRejectedError(f"at most {self.max_attributes} attributes per customer (customers.max_attributes)")
        for name, value in values.items():
            if not ATTRIBUTE_NAME.fullmatch(name):
                raise RequestRejectedError(f"attribute name {name[:40]!r} must be lower-case letters, digits, '_' or '.'")
            if len(json.dumps(value, ensure_ascii=False).encode("utf-8")) > self.max_attribute_bytes:
                raise RequestRejectedError(f"attribute {name} is larger than {self.max_attribute_bytes} bytes")

    def attributes_problem(self, attribute_count: int, record_bytes: int) -> str | None:
        """Why a customer record as it would be written is too large; None when it fits."""
        if attribute_count > self.max_attributes:
            return f"the customer would hold {attribute_count} attributes, more than the {self.max_attributes} allowed"
        if record_bytes > self.max_record_bytes:
            return f"the customer record would be {record_bytes} bytes, more than the {self.max_record_bytes} allowed"
        return None
