"""WhatsApp Cloud API media: https://developers.facebook.com/docs/whatsapp/cloud-api/reference/media"""

from __future__ import annotations

import re
import time
from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.adapters.channels.meta.settings import graph_version
from chalicelib.adapters.media.base import (
    FetchedMedia,
    FetchLimits,
    HostPolicy,
    MediaRejectedError,
    MediaSource,
    Reason,
    api_base_url,
)
from chalicelib.adapters.media.http import is_transient, transient_for
from chalicelib.domain.models import Attachment, Channel, Contact
from chalicelib.errors import SecretResolutionError
from chalicelib.secrets import Secret

#: Media ids are numeric today; anything that could change the lookup's path is refused.
_MEDIA_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
#: Graph error codes that mean "throttled", answered with a 400 or 403 rather than a 429
#: (https://developers.facebook.com/docs/graph-api/overview/rate-limiting).
_THROTTLED = frozenset({4, 17, 32, 613, 80007, 130429, 131048, 131056})
#: Graph's "invalid or expired access token": try the next configured token.
_BAD_TOKEN = 190


class WhatsAppMediaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: System-user access tokens with `whatsapp_business_messaging`; the first that Graph
    #: accepts is used, so a new token can be added before the old one is revoked.
    access_token: list[Secret] = Field(min_length=1)
    graph_version: str = "v24.0"
    graph_url: str = "https://graph.facebook.com"
    #: Hosts the lookup's download URL may point to (a leading dot: the domain and its
    #: subdomains). Meta documents lookaside.fbsbx.com; CDN hosts have been seen too.
    download_hosts: list[str] = Field(default_factory=lambda: [".fbsbx.com", ".fbcdn.net", ".facebook.com", ".whatsapp.net"])

    @field_validator("access_token", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("graph_version")
    @classmethod
    def _version(cls, value: str) -> str:
        return graph_version(value)

    @field_validator("graph_url")
    @classmethod
    def _base(cls, value: str) -> str:
        return api_base_url(value, example="https://graph.facebook.com")


class WhatsAppCloudSource(MediaSource[WhatsAppMediaSettings]):
    """A media id → Graph lookup (URL, type, size) → the bytes, both with the bearer token."""

    key: ClassVar[str] = "meta"
    provider: ClassVar[str] = "meta"
    docs_url: ClassVar[str] = "https://developers.facebook.com/docs/whatsapp/cloud-api/reference/media"
    settings_field: ClassVar[str] = "whatsapp"
    Settings: ClassVar[type[BaseModel]] = WhatsAppMediaSettings
    # Messenger and Instagram attachments are plain CDN URLs, not media ids.
    channels = frozenset({Channel.WHATSAPP})

    def reference(self, attachment: Attachment) -> str | None:
        return attachment.provider_media_id

    def fetch(self, contact: Contact, attachment: Attachment, limits: FetchLimits) -> FetchedMedia:
        settings = self.settings
        if settings is None:
            raise MediaRejectedError(Reason.NOT_CONFIGURED, "media.whatsapp.access_token is not configured")
        media_id = attachment.provider_media_id or ""
        if not _MEDIA_ID.fullmatch(media_id):
            raise MediaRejectedError(Reason.BAD_REFERENCE, "the WhatsApp media id is malformed")
        deadline = time.monotonic() + limits.timeout_seconds
        token, meta = self._lookup(settings, media_id, limits)
        url = meta.get("url")
        if not isinstance(url, str) or not url:
            raise MediaRejectedError(Reason.BAD_RESPONSE, "the Graph media lookup returned no url")
        policy = HostPolicy.of(settings.download_hosts, base_url=settings.graph_url)
        if not policy.allows(url):
            raise MediaRejectedError(Reason.HOST_NOT_ALLOWED, "the Graph media URL points to a host not in media.whatsapp.download_hosts")
        mime_type = meta.get("mime_type") if isinstance(meta.get("mime_type"), str) else None
        limits.check_declared(mime_type, _size(meta.get("file_size")))
        response = self.http.download(
            url, headers={"Authorization": f"Bearer {token}"}, max_bytes=limits.max_bytes, deadline=deadline
        )
        if response.ok:
            return FetchedMedia(response.body, declared_type=mime_type or response.headers.get("content-type"),
                                host=response.host)
        if is_transient(response.status):
            raise transient_for(response, "WhatsApp media download")
        raise MediaRejectedError(
            Reason.NOT_FOUND if response.status in (404, 410) else Reason.PROVIDER_REJECTED,
            f"WhatsApp media download: {response.host} answered {response.status}",
        )

    def _lookup(self, settings: WhatsAppMediaSettings, media_id: str, limits: FetchLimits) -> tuple[str, dict]:
        url = f"{settings.graph_url}/{settings.graph_version}/{quote(media_id, safe='')}"
        rejected = None
        for reference in settings.access_token:
            try:
                token = self.secrets.get(reference)
            except SecretResolutionError as exc:
                raise MediaRejectedError(Reason.CREDENTIALS_UNAVAILABLE, exc.message) from None
            response = self.http.get_json(url, headers={"Authorization": f"Bearer {token}"},
                                          timeout=limits.timeout_seconds)
            body = response.json()
            if response.ok:
                if not isinstance(body, dict):
                    raise MediaRejectedError(Reason.BAD_RESPONSE, "the Graph media lookup did not answer JSON")
                return token, body
            code = _graph_code(body)
            if is_transient(response.status) or code in _THROTTLED:
                raise transient_for(response, "WhatsApp media lookup")
            if response.status in (401, 403) or code == _BAD_TOKEN:
                # Expired, revoked, or a token of another business: the next one may do.
                rejected = MediaRejectedError(Reason.UNAUTHORIZED, "Graph refused every configured access token")
                continue
            if response.status in (400, 404):
                # An unknown or expired media id (Meta keeps media for 30 days).
                raise MediaRejectedError(Reason.NOT_FOUND, f"Graph does not know the media id (HTTP {response.status})")
            raise MediaRejectedError(Reason.PROVIDER_REJECTED, f"the Graph media lookup answered {response.status}")
        assert rejected is not None
        raise rejected


def _graph_code(body: Any) -> int | None:
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, int) else None


def _size(value: Any) -> int | None:
    # Graph sends file_size as a number or as a string of digits.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None

