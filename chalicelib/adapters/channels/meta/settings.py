"""`channels.meta`: what the configuration types, apart from the adapter.

The hub types every configured provider's section at start-up, so this module imports pydantic
and small shared helpers only: another provider's webhook function pays nothing for Meta's
parsers (`core.py` and the senders import these classes from here).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.adapters.media.base import api_base_url
from chalicelib.domain.outbound import TemplateMessage
from chalicelib.secrets import Secret

#: Graph object ids (phone number ids, Page ids, Instagram account ids) are numeric.
_GRAPH_ID = re.compile(r"[0-9]{1,32}")


def _tokens(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _graph_ids(ids: dict[str, Any], where: str) -> None:
    for key in ids:
        if not _GRAPH_ID.fullmatch(key):
            raise ValueError(f"{where}: {key[:40]!r} is not a numeric Graph id")


def graph_version(value: str) -> str:
    """A Graph API version as Meta's URLs carry it (`v23.0`); the messaging and the media
    settings both check theirs with this."""
    if not re.fullmatch(r"v[0-9]{1,3}\.[0-9]{1,2}", value):
        raise ValueError("must look like v23.0")
    return value

class WhatsAppTemplate(BaseModel):
    """One approved WhatsApp template, as `channels.meta.templates.<name>`: the languages it was
    approved in, and how many positional body parameters ({{1}}, {{2}}…) it takes."""

    model_config = ConfigDict(extra="forbid")

    languages: list[str] = Field(min_length=1)
    parameters: int = Field(default=0, ge=0, le=100)


class WhatsAppNumber(BaseModel):
    """One business phone number the hub sends from, keyed by its phone number id."""

    model_config = ConfigDict(extra="forbid")

    #: This number's own system-user tokens, when another business owns it (else `whatsapp.access_tokens`).
    access_tokens: list[Secret] | None = None
    #: Sent instead of free text outside the 24-hour window (else `whatsapp.fallback_template`).
    fallback_template: TemplateMessage | None = None

    _one_or_many = field_validator("access_tokens", mode="before")(_tokens)


class WhatsAppSending(BaseModel):
    """`channels.meta.whatsapp`: sending through the Cloud API."""

    model_config = ConfigDict(extra="forbid")

    #: System-user access tokens with `whatsapp_business_messaging`; the first Graph accepts is
    #: used, so a new token is added before the old one is revoked.
    access_tokens: list[Secret] = Field(min_length=1)
    #: Phone number ids the hub may send from (the inbound `account`), each with its options.
    numbers: dict[str, WhatsAppNumber] = Field(min_length=1)
    #: The number a message goes out from when no reply target names one (default: the only number).
    default_number: str | None = None
    fallback_template: TemplateMessage | None = None
    #: Ask WhatsApp for a link preview when the text holds a URL.
    preview_urls: bool = True

    _one_or_many = field_validator("access_tokens", mode="before")(_tokens)

    @model_validator(mode="after")
    def _known_numbers(self) -> WhatsAppSending:
        _graph_ids(self.numbers, "whatsapp.numbers")
        if self.default_number is not None and self.default_number not in self.numbers:
            raise ValueError("whatsapp.default_number must be one of whatsapp.numbers")
        return self

    def number_default(self) -> str | None:
        return self.default_number or (next(iter(self.numbers)) if len(self.numbers) == 1 else None)


class MessagingAccount(BaseModel):
    """A Facebook Page (`pages`) or an Instagram professional account (`instagram`) the hub answers from."""

    model_config = ConfigDict(extra="forbid")

    #: Page access tokens (for Instagram without `page_id`: Instagram user access tokens), rotation list.
    access_tokens: list[Secret] = Field(min_length=1)
    #: Instagram only: the linked Facebook Page whose `/messages` endpoint sends on graph.facebook.com.
    #: Without it, the Instagram API with Instagram Login is used (graph.instagram.com/<IG id>/messages).
    page_id: str | None = Field(default=None, pattern=r"^[0-9]{1,32}$")
    #: Human agents may answer up to 7 days after the customer's last message with the
    #: `HUMAN_AGENT` tag; needs Meta's Human Agent permission (App Review), so off by default.
    human_agent: bool = False
    #: Quote the customer's message (`reply_to.mid`). Listed by Meta's SDK spec, not described in
    #: the Send API pages read (docs/channels/meta.md), so off by default.
    reply_to: bool = False

    _one_or_many = field_validator("access_tokens", mode="before")(_tokens)


class MetaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: App Secret(s) from App Dashboard → App settings → Basic; the new one first while rotating.
    app_secrets: list[Secret] = Field(min_length=1)
    #: Verify token(s) typed into the webhook configuration; only the GET handshake uses them.
    verify_tokens: list[Secret] = Field(min_length=1)

    # --- outbound (all optional: a receive-only configuration stays valid) ------------------------
    #: Graph API host for WhatsApp, Messenger and Instagram-through-a-Page sends.
    api_base_url: str = "https://graph.facebook.com"
    #: Host of the Instagram API with Instagram Login (Instagram accounts without `page_id`).
    instagram_api_base_url: str = "https://graph.instagram.com"
    graph_version: str = "v23.0"
    #: Approved WhatsApp templates by name (`channels.meta.templates`).
    templates: dict[str, WhatsAppTemplate] = Field(default_factory=dict)
    whatsapp: WhatsAppSending | None = None
    #: Facebook Pages by Page id.
    pages: dict[str, MessagingAccount] = Field(default_factory=dict)
    #: Instagram professional accounts by their id (the inbound `entry.id`).
    instagram: dict[str, MessagingAccount] = Field(default_factory=dict)

    @field_validator("api_base_url", "instagram_api_base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        return api_base_url(value, example="https://graph.facebook.com")

    @field_validator("graph_version")
    @classmethod
    def _version(cls, value: str) -> str:
        return graph_version(value)

    @model_validator(mode="after")
    def _consistent(self) -> MetaSettings:
        _graph_ids(self.pages, "pages")
        _graph_ids(self.instagram, "instagram")
        if self.whatsapp is not None:
            fallbacks = [("whatsapp.fallback_template", self.whatsapp.fallback_template)]
            fallbacks += [(f"whatsapp.numbers.{n}.fallback_template", number.fallback_template)
                          for n, number in self.whatsapp.numbers.items()]
            for where, template in fallbacks:
                problem = template_problem(self.templates, template) if template else None
                if problem:
                    raise ValueError(f"{where}.{problem[0]} {problem[1]}")
        return self


def template_problem(templates: dict[str, WhatsAppTemplate], template: TemplateMessage) -> tuple[str, str] | None:
    """Why `template` does not match the configured templates, as (field, message); None when it does."""
    configured = templates.get(template.name)
    if configured is None:
        return "name", f"{template.name[:64]!r} is not configured in channels.meta.templates"
    if template.language not in configured.languages:
        return "language", f"{template.language[:16]!r} is not one of the languages of template {template.name!r}"
    if len(template.parameters) != configured.parameters:
        return "parameters", (f"has {len(template.parameters)} values; template {template.name!r} "
                              f"takes {configured.parameters}")
    return None
