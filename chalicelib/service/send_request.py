"""`POST /v1/messages`'s body, validated: every problem names its field, and nothing else is read.

Only the shape is checked here (one addressee, a known channel, public http(s) attachment links,
sizes no channel takes); whether the message may and can be sent is `MessageService`'s decision.
"""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.domain.models import Channel
from chalicelib.domain.outbound import OutboundAttachment, Purpose, TemplateMessage

#: No channel takes more (X: 10,000; Slack: 40,000 is checked by its sender); a body this big
#: is refused before any lookup.
MAX_TEXT_CHARS = 40_000
MAX_HTML_CHARS = 500_000
MAX_ATTACHMENTS = 10
MAX_IDEMPOTENCY_KEY_CHARS = 255
#: `channel` values that name a rule instead of a channel.
ChannelChoice = Literal[
    "reply", "preferred", "sms", "whatsapp", "email", "webchat", "messenger", "instagram", "telegram", "slack", "x",
]


class Addressee(BaseModel):
    """Exactly one of: the case (answer on its conversation), the customer, or an identifier."""

    model_config = ConfigDict(extra="forbid")

    case_id: str | None = Field(default=None, min_length=1, max_length=64)
    customer_id: str | None = Field(default=None, min_length=1, max_length=64)
    #: `kind:value` as identifiers are written (`phone:+4915123456789`, `email:jana@example.com`).
    identifier: str | None = Field(default=None, min_length=3, max_length=512)

    @model_validator(mode="after")
    def _exactly_one(self) -> Addressee:
        given = [name for name in ("case_id", "customer_id", "identifier") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of case_id, customer_id, identifier")
        return self


class SendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    to: Addressee
    channel: ChannelChoice = "reply"
    provider: str | None = Field(default=None, min_length=1, max_length=64)
    account: str | None = Field(default=None, min_length=1, max_length=256)
    text: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT_CHARS)
    html: str | None = Field(default=None, min_length=1, max_length=MAX_HTML_CHARS)
    subject: str | None = Field(default=None, min_length=1, max_length=998)
    attachments: list[OutboundAttachment] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)
    template: TemplateMessage | None = None
    purpose: Purpose = "service"
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=MAX_IDEMPOTENCY_KEY_CHARS)

    @field_validator("attachments")
    @classmethod
    def _public_links(cls, attachments: list[OutboundAttachment]) -> list[OutboundAttachment]:
        for index, attachment in enumerate(attachments):
            problem = link_problem(attachment.url)
            if problem is not None:
                raise ValueError(f"attachments[{index}].url {problem}")
        return attachments

    @model_validator(mode="after")
    def _has_content(self) -> SendRequest:
        if self.text is None and self.html is None and self.template is None and not self.attachments:
            raise ValueError("give text, html, a template or attachments")
        if (self.provider is not None or self.account is not None) and self.channel in ("reply", "preferred"):
            raise ValueError("provider and account go with an explicit channel, not with reply or preferred")
        return self

    @property
    def explicit_channel(self) -> Channel | None:
        return None if self.channel in ("reply", "preferred") else Channel(self.channel)


def link_problem(url: str) -> str | None:
    """Why a link cannot be handed to a provider: not http(s), no host, credentials in it, or a
    literal private address. (Names resolving to private addresses are refused by the downloader
    of the senders that fetch; providers fetching themselves cannot reach them anyway.)"""
    if len(url) > 2048:
        return "is longer than 2048 characters"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "must be an http(s) URL"
    host = parts.hostname
    if not host:
        return "has no host"
    if parts.username or parts.password:
        return "must not carry credentials"
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return "points to a private host"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    from chalicelib.adapters.downloads import is_public_address

    return None if is_public_address(str(address)) else "points to a private address"
