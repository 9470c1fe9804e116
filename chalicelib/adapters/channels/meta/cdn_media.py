"""Messenger attachments, on Meta's CDN: https://developers.facebook.com/documentation/business-messaging/messenger-platform/webhooks/webhook-events/messages

The webhook carries a signed URL (`scontent*.fbcdn.net`, or `lookaside.fbsbx.com`, which
redirects to the CDN), not an id, and the signature expires within days: an agent opening the
ticket later would find nothing unless the hub kept the file. No credential is needed.

Instagram is deliberately not served: Meta's terms for `instagram_manage_messages` ask that
Instagram media be shown from its CDN URL, and story media must never be stored
(https://developers.facebook.com/docs/messenger-platform/instagram/features/story-mention), so
Instagram attachments keep the URL Meta sent.
"""

from __future__ import annotations

import time
from typing import ClassVar
from urllib.parse import urljoin

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.adapters.media.base import FetchedMedia, FetchLimits, HostPolicy, MediaRejectedError, MediaSource, Reason
from chalicelib.adapters.media.http import is_transient, transient_for
from chalicelib.domain.models import Attachment, Channel, Contact

#: Attachment types that are files. A `share`, `ig_reel`, `reel` or `template` points at a
#: post or a page, not a file: its link is kept as sent.
FILE_KINDS = frozenset({"image", "video", "audio", "file", "animated_image"})
#: lookaside.fbsbx.com answers with a redirect to the CDN host that serves the file.
MAX_REDIRECTS = 2


class MetaCdnMediaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Hosts attachment URLs and their redirects may point to (a leading dot: the domain and its
    #: subdomains). Any other URL in a payload is never fetched.
    download_hosts: list[str] = Field(
        default_factory=lambda: [".fbcdn.net", ".fbsbx.com", ".cdninstagram.com", ".facebook.com"]
    )
    #: Only for a local fake or a sandbox: lets `http://` URLs on the listed hosts through.
    allow_http: bool = False


class MetaCdnSource(MediaSource[MetaCdnMediaSettings]):
    """A Messenger attachment URL → the file, following Meta's CDN redirects."""

    key: ClassVar[str] = "meta_cdn"
    provider: ClassVar[str] = "meta"
    docs_url: ClassVar[str] = (
        "https://developers.facebook.com/documentation/business-messaging/messenger-platform/webhooks/webhook-events/messages"
    )
    settings_field: ClassVar[str] = "meta_cdn"
    Settings: ClassVar[type[BaseModel]] = MetaCdnMediaSettings
    channels = frozenset({Channel.MESSENGER})

    def reference(self, attachment: Attachment) -> str | None:
        return attachment.url if attachment.kind in FILE_KINDS else None

    def fetch(self, contact: Contact, attachment: Attachment, limits: FetchLimits) -> FetchedMedia:
        settings = self.settings or MetaCdnMediaSettings()
        schemes = ("https", "http") if settings.allow_http else ("https",)
        policy = HostPolicy(tuple(h.lower() for h in settings.download_hosts), schemes)
        url = attachment.url or ""
        deadline = time.monotonic() + limits.timeout_seconds
        for _ in range(MAX_REDIRECTS + 1):
            if not policy.allows(url):
                raise MediaRejectedError(Reason.HOST_NOT_ALLOWED, "the attachment URL is not on a host in media.meta_cdn.download_hosts")
            response = self.http.download(url, max_bytes=limits.max_bytes, deadline=deadline)
            if not response.is_redirect:
                break
            url = urljoin(url, response.headers.get("location", ""))
        else:
            raise MediaRejectedError(Reason.REDIRECT_REFUSED, f"the download redirected more than {MAX_REDIRECTS} times")
        if response.ok:
            return FetchedMedia(response.body, declared_type=response.headers.get("content-type"), host=response.host)
        if is_transient(response.status):
            raise transient_for(response, "Meta CDN download")
        # An expired signature answers 403 ("URL signature expired"), a removed file 404.
        raise MediaRejectedError(
            Reason.NOT_FOUND if response.status in (403, 404, 410) else Reason.PROVIDER_REJECTED,
            f"Meta CDN download: {response.host} answered {response.status}",
        )
