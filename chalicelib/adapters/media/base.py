"""The media-source port: fetch one attachment's bytes from the provider that holds them.

A source knows its provider's API (credentials, the id-to-URL exchange, redirects); the service
(`chalicelib/service/media.py`) does the rest once: limits, type checks, storing and linking.
Sources run in the process worker only, never on the webhook ingest path.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel

from chalicelib.domain.models import Attachment, Channel
from chalicelib.domain.values import Value
from chalicelib.errors import HubError
from chalicelib.secrets import SecretResolver

if TYPE_CHECKING:  # the workers' model: the webhook path never creates it (domain/stored.py)
    from chalicelib.domain.stored import Contact


class Reason:
    """Why an attachment was not stored (permanent: retrying cannot help)."""

    NOT_CONFIGURED = "not_configured"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"
    TYPE_NOT_ALLOWED = "type_not_allowed"
    TYPE_MISMATCH = "type_mismatch"
    HOST_NOT_ALLOWED = "host_not_allowed"
    REDIRECT_REFUSED = "redirect_refused"
    BAD_REFERENCE = "bad_reference"
    BAD_RESPONSE = "bad_response"
    PROVIDER_REJECTED = "provider_rejected"
    CREDENTIALS_UNAVAILABLE = "credentials_unavailable"


class MediaRejectedError(HubError):
    """A permanent reason this attachment cannot be stored; it keeps its provider reference and
    the reason is reported. Messages name hosts at most, never URLs, tokens or file names."""

    code = "media_rejected"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, detail={"reason": reason})
        self.reason = reason


class FetchLimits(Value):
    """What the service allows, handed to a source so it can stop early."""

    max_bytes: int
    #: Seconds one attachment may take, lookups and redirects included.
    timeout_seconds: float
    #: Checks a type and size the provider declared before any byte is downloaded; raises
    #: `MediaRejectedError`. Either argument may be None (not declared).
    check_declared: Callable[[str | None, int | None], None] = lambda content_type, size: None


class FetchedMedia(Value):
    data: bytes
    #: The most specific type the provider declared (lookup metadata, then the response header).
    declared_type: str | None = None
    #: A file name the provider gave while fetching, when the attachment had none.
    filename: str | None = None
    #: Where the bytes came from (host only), for the report.
    host: str | None = None


class HostPolicy(Value):
    """Which URLs a source may call: `https` (plus `http` only where configured for a sandbox)
    and hosts listed exactly, or by a suffix written with a leading dot (`.twilio.com`)."""

    hosts: tuple[str, ...]
    schemes: tuple[str, ...] = ("https",)

    @classmethod
    def of(cls, hosts: Iterable[str], *, base_url: str | None = None) -> HostPolicy:
        """A policy for `hosts`; an `http://` base URL (a local fake, a sandbox) also allows
        `http`, and its own host."""
        listed = [h.lower() for h in hosts]
        schemes = ["https"]
        if base_url:
            parts = urlsplit(base_url)
            if parts.scheme == "http":
                schemes.append("http")
            if parts.hostname and parts.hostname.lower() not in listed:
                listed.append(parts.hostname.lower())
        return cls(tuple(listed), tuple(schemes))

    def allows(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError:
            return False
        if parts.scheme not in self.schemes or not host or parts.username or parts.password:
            return False
        return any(host == h or (h.startswith(".") and (host.endswith(h) or host == h[1:])) for h in self.hosts)


def configured_hosts(settings: BaseModel | None) -> frozenset[str]:
    """The hosts an operator named in a source's settings: the host of every `*_url` field, and
    every entry of a `*_hosts` list written without a leading dot. Only these may resolve to
    private addresses (a local fake, a sandbox on 127.0.0.1); a name a suffix entry
    (`.twilio.com`) merely matches, or a URL a provider's payload carries, must be public."""
    if settings is None:
        return frozenset()
    named: set[str] = set()
    for field, value in settings:
        if field.endswith("_url") and isinstance(value, str):
            named.add(host_of(value).lower())
        elif field.endswith("_hosts") and isinstance(value, list | tuple):
            named.update(h.lower() for h in value if isinstance(h, str) and h and not h.startswith("."))
    return frozenset(named - {"unknown host"})


def api_base_url(value: str, *, example: str) -> str:
    """A media source's API base setting (a Graph or bot API host, overridable for proxies and
    tests): a scheme and a host, without a trailing slash, so paths join onto it alike."""
    base = value.rstrip("/")
    if not re.fullmatch(r"https?://[^/?#]+", base):
        raise ValueError(f"must be a scheme and host, such as {example}")
    return base


def host_of(url: str) -> str:
    """The host of `url`, for messages and logs (never the path: it can carry a token)."""
    try:
        return (urlsplit(url).hostname or "unknown host")[:100]
    except ValueError:
        return "unknown host"


SettingsT = TypeVar("SettingsT", bound=BaseModel)


class MediaSource(ABC, Generic[SettingsT]):
    """Base of every media source. Subclasses declare the header attributes below."""

    #: This source's name in the registry and in the media report (`source`).
    key: ClassVar[str]
    #: The provider (`Contact.provider`) whose attachments this source fetches; one provider may
    #: have several sources (Meta: WhatsApp media ids, Messenger and Instagram CDN files).
    provider: ClassVar[str]
    #: The provider's media documentation.
    docs_url: ClassVar[str]
    #: This source's section under `media:` in the hub configuration, and its model.
    settings_field: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]
    #: The provider's channels this source serves; None for all of them.
    channels: ClassVar[frozenset[Channel] | None] = None

    def __init__(self, settings: SettingsT | None, secrets: SecretResolver, http) -> None:
        self.settings = settings
        self.secrets = secrets
        #: `chalicelib.adapters.media.http.MediaHttp`, allowing private addresses for the hosts
        #: these settings name (`configured_hosts`) and for no other.
        self.http = http.allowing(configured_hosts(settings))

    def handles(self, contact: Contact, attachment: Attachment) -> bool:
        """Whether this attachment is one this source fetches (a provider reference, not a
        link someone else already made)."""
        return (self.channels is None or contact.channel in self.channels) and self.reference(attachment) is not None

    @abstractmethod
    def reference(self, attachment: Attachment) -> str | None:
        """The provider's handle for the bytes (a media id, a media URL), or None."""

    @abstractmethod
    def fetch(self, contact: Contact, attachment: Attachment, limits: FetchLimits) -> FetchedMedia:
        """Download the attachment's bytes within `limits`.

        Raises `MediaRejectedError` for a permanent problem (unknown media, refused credentials,
        too large, a redirect to a host not allowed) and `TransientError` (or `RetryLaterError`
        when the provider said when) for timeouts, connection failures, 429 and 5xx.
        """
