"""`channels.webchat`: the section's model, apart from the adapter.

The hub types every configured provider's section at start-up, so this module imports pydantic
and shared settings helpers only: a webhook function serving another provider pays nothing for
this one's parser (`adapter.py` imports the settings from here).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.secrets import Secret

#: Ids end up in identifier keys (`webchat:<site>/<visitor>`) and dedupe keys, so no `/`,
#: no spaces, nothing a widget would not generate (UUIDs, ULIDs, slugs).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_ORIGIN = re.compile(r"(?P<scheme>https?)://(?P<host>[^/?#\s:]+|\[[^\]/]+\])(?::(?P<port>[0-9]{1,5}))?")
_DEFAULT_PORTS = {"https": "443", "http": "80"}


def normalize_origin(value: str) -> str | None:
    """`scheme://host[:port]` as browsers send it: lower-case, no default port, no trailing slash."""
    match = _ORIGIN.fullmatch(value.strip().rstrip("/").lower())
    if match is None:
        return None
    port = match["port"]
    if port is None or port == _DEFAULT_PORTS[match["scheme"]]:
        return f"{match['scheme']}://{match['host']}"
    return f"{match['scheme']}://{match['host']}:{port}"


class WebchatSite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID_PATTERN)
    #: Keys the site's backend signs `user_hash` with; list the new one beside the old while rotating.
    #: Empty: the site has no identity verification and every claim stays unverified.
    identity_secrets: list[Secret] = Field(default_factory=list)
    #: Pages allowed to embed the widget; empty allows any. Enforced only when a browser sends `Origin`.
    allowed_origins: list[str] = Field(default_factory=list)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        normalized = []
        for value in values:
            origin = normalize_origin(value)
            if origin is None:
                raise ValueError(f"{value!r} is not an origin like https://shop.example.com (no path)")
            normalized.append(origin)
        return normalized


class WebchatSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sites: list[WebchatSite] = Field(min_length=1)

    @field_validator("sites")
    @classmethod
    def _unique(cls, sites: list[WebchatSite]) -> list[WebchatSite]:
        ids = [site.id for site in sites]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate site id {', '.join(duplicates)}")
        return sites
