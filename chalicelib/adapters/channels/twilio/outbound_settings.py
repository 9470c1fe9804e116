"""The outbound part of `channels.twilio`: credentials, sending numbers and Content templates.

Kept beside the inbound settings so one section configures both directions; every field is
optional, so a hub that only listens keeps its configuration unchanged.
https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource
"""

# No `from __future__ import annotations`: pydantic would compile and evaluate each field's
# annotation string when a model class is created (about 0.15 ms a model at every cold start).

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.adapters.media.base import api_base_url
from chalicelib.domain.defaults import empty_list
from chalicelib.secrets import Secret

E164 = re.compile(r"\+[1-9][0-9]{1,14}")
ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
API_KEY_SID = re.compile(r"SK[0-9a-fA-F]{32}")
MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
#: ISO 639-1, optionally with a region (`pt_BR`), as Twilio's Content API names languages.
LANGUAGE = re.compile(r"[a-z]{2,3}(?:[_-][A-Za-z]{2,4})?")


def _sid(value: str | None, pattern: re.Pattern[str], what: str) -> str | None:
    if value is not None and not pattern.fullmatch(value):
        raise ValueError(f"must be {what}")
    return value


class TwilioTemplate(BaseModel):
    """One Content API template the hub may send (`ContentSid` + `ContentVariables`).

    A Twilio Content resource has a single language, so a template offered in several languages
    has one SID per language (`content_sids`); `content_sid` + `languages` is the shorthand for
    a template whose one SID serves the listed languages.
    https://www.twilio.com/docs/content/content-api-resources
    """

    model_config = ConfigDict(extra="forbid")

    content_sid: str | None = None
    languages: list[str] = Field(default_factory=empty_list)
    content_sids: dict[str, str] = Field(default_factory=dict)
    #: How many positional variables ({{1}}, {{2}}…) the template's text has.
    parameters: int = Field(default=0, ge=0, le=100)

    @model_validator(mode="after")
    def _one_form(self) -> "TwilioTemplate":
        if (self.content_sid is None) == (not self.content_sids):
            raise ValueError("give either content_sid with languages, or content_sids by language")
        if self.content_sid is not None:
            _sid(self.content_sid, CONTENT_SID, "a Content SID (HX followed by 32 hex digits)")
            if not self.languages:
                raise ValueError("languages: list the languages content_sid is written in")
        elif self.languages:
            raise ValueError("languages: with content_sids the languages are its keys")
        for language, sid in self.content_sids.items():
            _sid(sid, CONTENT_SID, f"a Content SID for {language!r} (HX followed by 32 hex digits)")
        for language in self.language_codes:
            if not LANGUAGE.fullmatch(language):
                raise ValueError(f"{language!r} is not a language code such as de or pt_BR")
        return self

    @property
    def language_codes(self) -> list[str]:
        return list(self.content_sids) if self.content_sids else list(self.languages)

    def sid_for(self, language: str) -> str | None:
        if self.content_sids:
            return self.content_sids.get(language)
        return self.content_sid if language in self.languages else None


class FallbackTemplate(BaseModel):
    """The template sent on WhatsApp instead of free text once the 24-hour window has closed."""

    model_config = ConfigDict(extra="forbid")

    name: str
    language: str
    #: Fixed values for its variables (the case's details are not known when it is configured).
    parameters: list[str] = Field(default_factory=empty_list)


class TwilioNumbers(BaseModel):
    """The numbers the hub sends from, per channel, in E.164; the first is the default sender."""

    model_config = ConfigDict(extra="forbid")

    sms: list[str] = Field(default_factory=empty_list)
    whatsapp: list[str] = Field(default_factory=empty_list)

    @field_validator("sms", "whatsapp")
    @classmethod
    def _e164(cls, values: list[str]) -> list[str]:
        for value in values:
            if not E164.fullmatch(value):
                raise ValueError(f"{value[:20]!r} is not an E.164 number such as +14155550100 (no whatsapp: prefix)")
        return values


class TwilioApiKey(BaseModel):
    """An API key (Twilio's recommended credential for the REST API): its SID and its secret."""

    model_config = ConfigDict(extra="forbid")

    sid: str
    secret: Secret

    @field_validator("sid")
    @classmethod
    def _key_sid(cls, value: str) -> str:
        return _sid(value, API_KEY_SID, "an API key SID (SK followed by 32 hex digits)") or value


class TwilioOutboundSettings(BaseModel):
    """Mixed into `TwilioSettings`: what the sender needs besides the inbound fields.

    Never validated itself (only `TwilioSettings` is), so its own validator is not built at
    import (`defer_build`, which `TwilioSettings` inherits: it is built by its first validation,
    when the configuration is loaded)."""

    model_config = ConfigDict(defer_build=True)

    #: The account messages are created in (the `{AccountSid}` of the Messages URL).
    account_sid: str | None = None
    #: Authenticate with API keys (recommended by Twilio) instead of the Auth Token. A rotation
    #: list: on a 401 the next key is tried, so a new key can be added before the old one is revoked.
    api_credentials: list[TwilioApiKey] = Field(default_factory=empty_list)
    #: Send through a Messaging Service (sender pool, Advanced Opt-Out, sticky sender).
    messaging_service_sid: str | None = None
    numbers: TwilioNumbers = Field(default_factory=TwilioNumbers)
    #: Whether the SMS numbers can send MMS (US and Canada): attachments on SMS are refused without it.
    mms: bool = False
    #: Refuse SMS texts longer than this many segments (each is billed); None: only Twilio's limit.
    sms_max_segments: int | None = Field(default=None, ge=1, le=100)
    templates: dict[str, TwilioTemplate] = Field(default_factory=dict)
    whatsapp_fallback_template: FallbackTemplate | None = None
    #: For Twilio's regional edges (`https://api.dublin.ie1.twilio.com`) and for tests.
    api_base_url: str = "https://api.twilio.com"

    @field_validator("account_sid")
    @classmethod
    def _account_sid(cls, value: str | None) -> str | None:
        return _sid(value, ACCOUNT_SID, "an Account SID (AC followed by 32 hex digits)")

    @field_validator("messaging_service_sid")
    @classmethod
    def _messaging_service_sid(cls, value: str | None) -> str | None:
        return _sid(value, MESSAGING_SERVICE_SID, "a Messaging Service SID (MG followed by 32 hex digits)")

    @field_validator("api_base_url")
    @classmethod
    def _api_base_url(cls, value: str) -> str:
        return api_base_url(value, example="https://api.twilio.com")

    @model_validator(mode="after")
    def _consistent(self) -> "TwilioOutboundSettings":
        if self.api_credentials and not self.account_sid:
            raise ValueError("api_credentials need account_sid (the account the messages are created in)")
        fallback = self.whatsapp_fallback_template
        if fallback is not None:
            template = self.templates.get(fallback.name)
            if template is None:
                raise ValueError(f"whatsapp_fallback_template: {fallback.name!r} is not in templates")
            if template.sid_for(fallback.language) is None:
                raise ValueError(f"whatsapp_fallback_template: {fallback.name!r} has no {fallback.language!r} version")
            if len(fallback.parameters) != template.parameters:
                raise ValueError(
                    f"whatsapp_fallback_template: {fallback.name!r} takes {template.parameters} parameters, "
                    f"{len(fallback.parameters)} given"
                )
        return self
