"""`media:` in the hub configuration: limits, allowed types and links for downloaded attachments.

Every function types the configuration at start-up; only the process worker downloads media
(`media.py`, which imports these settings back), so the webhook function loads no blob store,
sniffer or HTTP client for them.
"""

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.domain.defaults import empty_list
from chalicelib.adapters.blobs.base import MAX_LINK_SECONDS
from chalicelib.secrets import Secret

DEFAULT_MAX_BYTES = 16 * 1024 * 1024

OFFICE_TYPES = (
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
)
DEFAULT_ALLOWED_TYPES = (
    "image/*", "audio/*", "video/*", "application/pdf", *OFFICE_TYPES, "text/plain",
    # WhatsApp contact cards, as Twilio passes them on.
    "text/vcard",
)

#: Other names of the same types, as providers send them.
TYPE_ALIASES = {
    "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png",
    "image/heif": "image/heic", "audio/mp3": "audio/mpeg", "audio/mpeg3": "audio/mpeg",
    "audio/x-mpeg-3": "audio/mpeg", "audio/x-wav": "audio/wav", "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav", "audio/x-m4a": "audio/mp4", "audio/m4a": "audio/mp4",
    "audio/x-aac": "audio/aac", "audio/aacp": "audio/aac", "audio/amr-nb": "audio/amr",
    "application/x-pdf": "application/pdf", "text/x-vcard": "text/vcard", "video/avi": "video/x-msvideo",
    "application/x-zip-compressed": "application/zip",
}

TYPE_PATTERN = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/(\*|[a-z0-9][a-z0-9!#$&^_.+-]{0,126})")


class MediaSettings(BaseModel):
    """`media:` in the hub configuration."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: Larger files are not downloaded (Content-Length) or stop downloading (actual bytes).
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1024, le=100 * 1024 * 1024)
    #: `type/subtype` or `type/*`. A wildcard never admits active content (SVG, HTML): list
    #: such a type exactly to allow it.
    allowed_types: list[str] = Field(default_factory=lambda: list(DEFAULT_ALLOWED_TYPES))
    #: How long a link stays valid. S3 presigned URLs live 7 days at most (and no longer than
    #: the credentials that signed them).
    link_ttl_seconds: int = Field(default=MAX_LINK_SECONDS, ge=60, le=MAX_LINK_SECONDS)
    #: Seconds one attachment may take to fetch, lookups and one redirect included.
    timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    #: Embedded runtime: signs `/v1/media/...` links (the first signs, all verify, so a new
    #: secret can be added before the old one is removed). When empty, a random secret is
    #: generated once and kept in the data directory (`media-link.key`). Unused on AWS.
    link_secret: list[Secret] = Field(default_factory=empty_list)
    #: Embedded runtime: the hub's address as destinations reach it, for `/v1/media/...` links;
    #: default `http://<HUB_HOST>:<HUB_PORT>`.
    public_url: str | None = None
    #: Each media source's own section, by its `settings_field` (`media.whatsapp`, `media.twilio`,
    #: ...), typed by the source's settings model. The sources come from the channel providers
    #: (`adapters/media/registry.py`), so a new provider's section needs no change here. A source
    #: without a section gets None and uses its defaults where it can work without credentials.
    sources: dict[str, BaseModel] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="wrap")
    @classmethod
    def _source_sections(cls, data: Any, handler):
        if not isinstance(data, dict):
            return handler(data)
        from chalicelib.adapters.media.registry import MEDIA_SOURCE_FIELDS, MEDIA_SOURCES
        from chalicelib.config_sections import problem, typed_sections, validate_together

        present = {k: v for k, v in data.items() if k in MEDIA_SOURCE_FIELDS and v is not None}
        # Only the sources with a section are imported; each section is still typed here, at load.
        models = {field: MEDIA_SOURCES[MEDIA_SOURCE_FIELDS[field]].Settings for field in present}
        rest = {key: value for key, value in data.items() if key not in MEDIA_SOURCE_FIELDS and key != "sources"}
        sources, errors = typed_sections(present, models)
        if "sources" in data:  # the typed field's name, not a key of the file: it would be dropped
            known = ", ".join(f"media.{name}" for name in sorted(MEDIA_SOURCE_FIELDS))
            errors.append(problem(("sources",), f"not a media setting; each source has its own section ({known})"))
        return validate_together(handler, {**rest, "sources": sources}, errors, cls.__name__)

    def source(self, settings_field: str) -> BaseModel | None:
        """The section of the media source whose `settings_field` this is; None when absent."""
        return self.sources.get(settings_field)

    @field_validator("link_secret", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("allowed_types")
    @classmethod
    def _types(cls, values: list[str]) -> list[str]:
        normalized = []
        for index, value in enumerate(values):
            value = value.strip().lower()
            if not TYPE_PATTERN.fullmatch(value):
                raise ValueError(f"entry {index}: {value[:60]!r} is not type/subtype or type/*")
            normalized.append(TYPE_ALIASES.get(value, value))
        return normalized

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^/?#]+(/[^?#]*)?", value):
            raise ValueError("must be an http(s) URL such as https://hub.example.com")
        return value.rstrip("/") if value else value
