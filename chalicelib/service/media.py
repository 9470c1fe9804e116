"""Media localization: copy a contact's attachments out of the provider into the hub's blob store,
and replace each provider URL (short-lived, or behind the provider's credentials) with a link any
destination can open.

Runs in the process worker only; the webhook path never downloads. Per attachment:
source fetch (`adapters/media/`, chosen by the contact's provider) → size and type checks (the
provider's declared type and the file's own magic bytes) → `media/<contact id>/<index>-<name>` in
the blob store → a presigned S3 URL on AWS, a hub-signed `/v1/media/...` URL locally.

A permanent problem (unknown media, too large, a type not allowed) never fails the contact: the
attachment keeps its provider reference and the reason goes into `enrichment["media"]`. A
transient one (timeout, 5xx, throttling, the blob store down) raises, so the queue retries the
message. Nothing here logs a URL: Telegram's carry the bot token.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from chalicelib.adapters.blobs.base import BlobStore
from chalicelib.adapters.blobs.links import link_signature_valid, load_or_create_link_secret
from chalicelib.adapters.media.base import FetchedMedia, FetchLimits, MediaRejectedError, MediaSource, Reason
from chalicelib.domain.models import Attachment, Contact, utcnow
from chalicelib.errors import ConfigError, ForbiddenError, NotFoundError, TransientError
from chalicelib.secrets import SecretResolver
from chalicelib.service.media_settings import (  # noqa: F401 (re-exported)
    DEFAULT_ALLOWED_TYPES,
    DEFAULT_MAX_BYTES,
    OFFICE_TYPES,
    TYPE_ALIASES,
    MediaSettings,
)
from chalicelib.service.media_types import EXTENSIONS, MEDIA_BINARY_TYPES, TYPE_OF_EXTENSION  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from chalicelib.adapters.media.http import MediaHttp

logger = logging.getLogger(__name__)

#: Where the embedded runtime keeps its generated link secret (under the data directory, never
#: under the blob directory, which the media route serves from).
LINK_SECRET_FILE = "media-link.key"

#: Types that run script in a browser: a wildcard never admits them; only an exact entry does.
ACTIVE_CONTENT = frozenset({
    "image/svg+xml", "text/html", "application/xhtml+xml", "text/xml", "application/xml",
    "text/javascript", "application/javascript",
})
#: Stands for "the provider did not say".
_GENERIC = frozenset({"application/octet-stream", "binary/octet-stream", "application/unknown"})

#: A sniffed type → the declared types the same bytes may honestly be (after aliases).
_COMPATIBLE: dict[str, frozenset[str]] = {
    "image/jpeg": frozenset({"image/jpeg"}),
    "image/png": frozenset({"image/png"}),
    "image/gif": frozenset({"image/gif"}),
    "image/webp": frozenset({"image/webp"}),
    "image/heic": frozenset({"image/heic", "image/heic-sequence", "image/heif-sequence"}),
    "image/avif": frozenset({"image/avif"}),
    "application/pdf": frozenset({"application/pdf"}),
    "audio/ogg": frozenset({"audio/ogg", "audio/opus", "video/ogg", "application/ogg"}),
    "audio/amr": frozenset({"audio/amr"}),
    "audio/wav": frozenset({"audio/wav"}),
    "audio/mpeg": frozenset({"audio/mpeg"}),
    "audio/aac": frozenset({"audio/aac", "audio/mp4"}),
    "audio/mp4": frozenset({"audio/mp4", "audio/aac", "video/mp4"}),
    "video/mp4": frozenset({"video/mp4", "audio/mp4", "video/quicktime", "video/3gpp", "video/x-m4v"}),
    "video/3gpp": frozenset({"video/3gpp", "audio/3gpp", "video/3gpp2", "audio/3gpp2", "video/mp4", "audio/mp4"}),
    "video/quicktime": frozenset({"video/quicktime", "video/mp4"}),
    "video/webm": frozenset({"video/webm", "audio/webm", "video/x-matroska", "audio/x-matroska"}),
    "video/x-msvideo": frozenset({"video/x-msvideo"}),
    "application/zip": frozenset({
        "application/zip", "application/epub+zip",
        *(t for t in OFFICE_TYPES if "openxmlformats" in t or "opendocument" in t),
    }),
    "application/x-ole-storage": frozenset({
        "application/x-ole-storage", "application/msword", "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint", "application/vnd.ms-outlook",
    }),
    "image/svg+xml": frozenset({"image/svg+xml"}),
    "text/html": frozenset({"text/html", "application/xhtml+xml"}),
    "application/xml": frozenset({"application/xml", "text/xml"}),
    "application/x-msdownload": frozenset(),
    "application/x-executable": frozenset(),
    "application/x-mach-binary": frozenset(),
}
#: Declared types whose files always carry magic bytes `sniff` knows: bytes without them are
#: not what the provider said. Audio and video are left out (too many containers to be sure).
_MUST_SNIFF = frozenset({
    "image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf",
    *_COMPATIBLE["application/zip"], *_COMPATIBLE["application/x-ole-storage"],
}) - {"application/zip"}

_MAX_STEM = 80
_MEDIA_KEY = re.compile(r"media/[A-Za-z0-9_-]{1,64}/[0-9]{1,4}-[A-Za-z0-9._-]{1,100}")
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Attachments already handled by this localizer (the processor decides a contact again when
#: a concurrent worker wins its commit): not downloaded twice.
_MEMO_SIZE = 256


# --- types -----------------------------------------------------------------------------------------


def normalize_type(value: str | None) -> str | None:
    """`Audio/OGG; codecs=opus` → `audio/ogg`; aliases to one name; None for no or a generic type."""
    if not value:
        return None
    base = value.split(";", 1)[0].strip().lower()
    base = TYPE_ALIASES.get(base, base)
    return None if not base or base in _GENERIC or "/" not in base else base


def sniff(data: bytes) -> str | None:
    """The type the file's first bytes say it is, for the formats customers send; None when the
    bytes say nothing (plain text, an unusual container)."""
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF":
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}.get(head[8:12])
    # PDF readers accept the header anywhere in the first kilobyte.
    if b"%PDF-" in data[:1024]:
        return "application/pdf"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"#!AMR"):
        return "audio/amr"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    if head[4:8] == b"ftyp":
        return _iso_media(head[8:12])
    if head.startswith(b"ID3"):
        return "audio/mpeg"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "audio/aac"  # ADTS
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "audio/mpeg"  # an MPEG audio frame without an ID3 tag
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "application/x-ole-storage"
    if head.startswith(b"MZ"):
        return "application/x-msdownload"
    if head.startswith(b"\x7fELF"):
        return "application/x-executable"
    if head[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xca\xfe\xba\xbe"):
        return "application/x-mach-binary"
    return _markup(data[:1024])


def _iso_media(brand: bytes) -> str:
    if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
        return "image/heic"
    if brand in (b"avif", b"avis"):
        return "image/avif"
    if brand in (b"M4A ", b"M4B ", b"M4P "):
        return "audio/mp4"
    if brand.startswith(b"3g"):
        return "video/3gpp"
    if brand == b"qt  ":
        return "video/quicktime"
    return "video/mp4"


def _markup(head: bytes) -> str | None:
    text = head.lstrip(b"\xef\xbb\xbf").lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<iframe")):
        return "text/html"
    if text.startswith(b"<svg") or (text.startswith((b"<?xml", b"<!doctype svg")) and b"<svg" in text):
        return "image/svg+xml"
    if text.startswith(b"<?xml"):
        return "application/xml"
    return None


def type_allowed(content_type: str, allowed: Iterable[str]) -> bool:
    for pattern in allowed:
        if pattern == content_type:
            return True
        if pattern.endswith("/*") and content_type not in ACTIVE_CONTENT:
            family = pattern[:-1]
            if pattern == "*/*" or content_type.startswith(family):
                return True
    return False


def decide_type(declared: str | None, data: bytes, allowed: Iterable[str], filename: str | None = None) -> str:
    """The type to store the file as: the declared one when the bytes agree, else what the bytes
    are. Raises `MediaRejectedError` (type_mismatch, type_not_allowed).

    Without a declared type (or a generic one, as many mail clients send), the file name's
    extension stands in for it, but only where the bytes agree: a Word or Excel file sniffs as
    a zip or OLE container, and `report.docx` says which one it is."""
    sniffed = sniff(data)
    declared = normalize_type(declared) or (_type_of_name(filename) if sniffed is not None else None)
    if sniffed is None:
        if declared in _MUST_SNIFF:
            raise MediaRejectedError(Reason.TYPE_MISMATCH, f"the file is not the {declared} the provider declared")
        if declared is not None and declared.startswith("text/") and b"\x00" in data[:8192]:
            raise MediaRejectedError(Reason.TYPE_MISMATCH, f"the file is binary, not the {declared} the provider declared")
        final = declared or "application/octet-stream"
    elif declared is not None and declared in _COMPATIBLE.get(sniffed, frozenset()):
        final = declared
    else:
        # The bytes win over the label: a JPEG declared as PNG is stored as a JPEG, and an HTML
        # page declared as an image is HTML (and refused below).
        final = sniffed
    if not type_allowed(final, allowed):
        raise MediaRejectedError(Reason.TYPE_NOT_ALLOWED, f"{final} is not in media.allowed_types")
    return final


def _type_of_name(filename: str | None) -> str | None:
    _, dot, ext = (filename or "").rpartition(".")
    return TYPE_OF_EXTENSION.get(ext.lower()) if dot else None


# --- names and keys --------------------------------------------------------------------------------


def safe_filename(name: str | None, content_type: str) -> str:
    """A file name safe in a blob key and a URL path, ending in the extension of the type the
    file is stored as (`invoice.pdf.exe` stored as a PDF becomes `invoice.pdf.exe.pdf`), so the
    local media route can never serve it as something else."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base)
    base = re.sub(r"\.{2,}", ".", base).strip("._-")
    stem, dot, ext = base.rpartition(".")
    if not dot or len(ext) > 10:
        stem, ext = base, ""
    expected = EXTENSIONS.get(content_type)
    if expected is not None:
        if TYPE_OF_EXTENSION.get(ext.lower()) != content_type:
            stem, ext = base, expected
    elif ext.lower() in TYPE_OF_EXTENSION or not ext:
        # A type without a known extension is served as application/octet-stream; an extension
        # that names another type must not survive.
        stem, ext = base, "bin"
    stem = stem[:_MAX_STEM].strip("._-") or "attachment"
    return f"{stem}.{ext.lower()}"


def media_key(contact_id: str, index: int, filename: str) -> str:
    owner = contact_id if _SAFE_ID.fullmatch(contact_id) else hashlib.sha256(contact_id.encode()).hexdigest()[:32]
    return f"media/{owner}/{index}-{filename}"


def content_type_for_key(key: str) -> str:
    """The type the local media route serves a stored file as (by the extension it was given)."""
    _, _, ext = key.rpartition(".")
    return TYPE_OF_EXTENSION.get(ext.lower(), "application/octet-stream")


# --- the localizer ---------------------------------------------------------------------------------


class MediaLocalizer:
    """Downloads the attachments of a contact that its provider's media source handles, stores
    them and links them. Thread-safe; build once per worker and reuse."""

    def __init__(
        self,
        settings: MediaSettings,
        blobs: BlobStore,
        secrets: SecretResolver,
        *,
        http: MediaHttp | None = None,
        sources: Mapping[str, type[MediaSource]] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.blobs = blobs
        self.secrets = secrets
        self._http = http
        self._source_classes = sources
        self._sources: dict[str, list[MediaSource]] = {}
        self._clock = clock
        self._lock = threading.Lock()
        self._memo: OrderedDict[tuple, tuple[Attachment, dict[str, Any]]] = OrderedDict()

    def localize(
        self,
        contact: Contact,
        *,
        retry_transient: bool = True,
        embedded: Mapping[int, bytes] | None = None,
        seconds_left: Callable[[], float] | None = None,
    ) -> Contact:
        """The contact with its provider-held attachments stored and linked, and a report per
        attachment in `enrichment["media"]` (`{"attachments": [{index, status, ...}]}`; status
        `stored`, `rejected` with a reason, or `deferred`). Unchanged when media is disabled
        or no attachment needs it. Safe to run twice: keys are deterministic.

        `embedded` holds the bytes of attachments that came inside the webhook (by index, from
        `InboundMessage.attachment_content`): they are stored the same way, with the same limits
        and type checks, as if a source had downloaded them.

        `seconds_left` is the whole message's budget (the worker's time left minus what follows
        the downloads): each download gets at most what is left of it, and once it is spent the
        remaining downloads are not started but `deferred` (reason `deadline`), so one slow
        provider cannot hold the worker past its timeout. Bytes that came embedded are stored
        regardless: nothing could fetch them later. None: no limit but each download's own.

        A source failing in a way it does not declare (a bug, an answer it did not expect)
        rejects its attachment (reason `source_error`), never the contact.

        Raises `TransientError` (or `RetryLaterError`) when a download or the blob store failed
        transiently, or the budget was spent before any download could start, so the queue
        retries the message; with `retry_transient=False` (the last delivery attempt) such an
        attachment is reported as `deferred` instead.
        """
        if not self.settings.enabled or not contact.attachments:
            return contact
        embedded = embedded or {}
        attachments = list(contact.attachments)
        report: list[dict[str, Any]] = []
        for index, attachment in enumerate(contact.attachments):
            data = embedded.get(index)
            source = _Embedded(data) if data is not None else self._source_for(contact, attachment)
            if source is None:
                continue
            attachments[index], entry = self._localize_one(
                contact, index, attachment, source, retry_transient,
                None if isinstance(source, _Embedded) else seconds_left,
            )
            report.append(entry)
        if not report:
            return contact
        downloads = [e for e in report if e["source"] != _Embedded.key]
        if retry_transient and downloads and all(e.get("reason") == "deadline" for e in downloads):
            # This message got no time for any download (it started late in its worker's batch):
            # a retry gets a fresh budget, where deferring would lose every copy for good.
            raise TransientError(f"no time left for the media downloads of contact {contact.id}")
        enrichment = {**contact.enrichment, "media": {"attachments": report}}
        return contact.model_copy(update={"attachments": attachments, "enrichment": enrichment})

    def _source_for(self, contact: Contact, attachment: Attachment) -> MediaSource | None:
        """The first of the contact's provider's sources that fetches this attachment."""
        for source in self._sources_of(contact.provider):
            if source.handles(contact, attachment):
                return source
        return None

    def _sources_of(self, provider: str) -> list[MediaSource]:
        with self._lock:
            if provider not in self._sources:
                classes = self._source_classes
                if classes is None:
                    from chalicelib.adapters.media.registry import MEDIA_SOURCES

                    classes = self._source_classes = MEDIA_SOURCES
                self._sources[provider] = [
                    cls(self.settings.source(cls.settings_field), self.secrets, self._media_http())
                    for cls in _classes_of(classes, provider)
                ]
            return self._sources[provider]

    def _media_http(self):
        if self._http is None:
            from chalicelib.adapters.media.http import MediaHttp

            self._http = MediaHttp()
        return self._http

    def _localize_one(
        self, contact: Contact, index: int, attachment: Attachment, source: MediaSource | _Embedded,
        retry_transient: bool, seconds_left: Callable[[], float] | None = None,
    ) -> tuple[Attachment, dict[str, Any]]:
        memo_key = (contact.id, index, source.key, source.reference(attachment))
        with self._lock:
            if memo_key in self._memo:
                return self._memo[memo_key]
        entry: dict[str, Any] = {"index": index, "source": source.key}
        timeout = self.settings.timeout_seconds
        if seconds_left is not None:
            left = seconds_left()
            if left <= 0:
                # Not memoized: a later attempt has time of its own.
                return attachment, {**entry, "status": "deferred", "reason": "deadline",
                                    "message": "the message's time for media downloads was spent"}
            timeout = min(timeout, left)
        try:
            result = self._store(contact, index, attachment, source, entry, timeout_seconds=timeout)
        except MediaRejectedError as exc:
            logger.warning("media %s[%d] from %s not stored (%s): %s", contact.id, index, source.key, exc.reason, exc.message)
            result = (attachment, {**entry, "status": "rejected", "reason": exc.reason, "message": exc.message})
        except TransientError as exc:
            logger.warning("media %s[%d] from %s failed transiently: %s", contact.id, index, source.key, exc.message)
            if retry_transient:
                raise
            # Not memoized: a later attempt may succeed.
            return attachment, {**entry, "status": "deferred", "reason": "transient", "message": exc.message}
        except Exception as exc:  # noqa: BLE001 - one source's bug must not fail the contact
            # The type only: an exception's text can quote a URL (a token) or personal data.
            logger.error("media %s[%d] from %s failed unexpectedly: %s", contact.id, index, source.key,
                         type(exc).__name__)
            message = f"the {source.key} source failed unexpectedly ({type(exc).__name__})"
            result = (attachment, {**entry, "status": "rejected", "reason": "source_error", "message": message})
        with self._lock:
            self._memo[memo_key] = result
            while len(self._memo) > _MEMO_SIZE:
                self._memo.popitem(last=False)
        return result

    def _store(
        self, contact: Contact, index: int, attachment: Attachment, source: MediaSource | _Embedded,
        entry: dict[str, Any], *, timeout_seconds: float,
    ) -> tuple[Attachment, dict[str, Any]]:
        settings = self.settings
        limits = FetchLimits(settings.max_bytes, timeout_seconds, self._check_declared)
        fetched = source.fetch(contact, attachment, limits)
        size = len(fetched.data)
        if size > settings.max_bytes:
            raise MediaRejectedError(Reason.TOO_LARGE, f"the file has {size} bytes, more than the {settings.max_bytes} allowed")
        if size == 0:
            raise MediaRejectedError(Reason.BAD_RESPONSE, f"{fetched.host or source.key} returned an empty file")
        content_type = decide_type(
            fetched.declared_type, fetched.data, settings.allowed_types, attachment.filename or fetched.filename
        )
        filename = safe_filename(attachment.filename or fetched.filename, content_type)
        key = media_key(contact.id, index, filename)
        self.blobs.put(key, fetched.data, content_type=content_type)
        entry = {
            **entry, "status": "stored", "key": key, "content_type": content_type, "size": size,
            "sha256": hashlib.sha256(fetched.data).hexdigest(),
        }
        try:
            url = self.blobs.presigned_url(key, settings.link_ttl_seconds)
        except ConfigError as exc:
            # Stored, but this runtime cannot make links (a wiring gap): keep the provider's URL.
            logger.error("media %s[%d] stored but not linked: %s", contact.id, index, exc.message)
            return attachment, {**entry, "linked": False, "message": exc.message}
        expires = self._clock() + timedelta(seconds=settings.link_ttl_seconds)
        entry["link_expires_at"] = expires.isoformat().replace("+00:00", "Z")
        logger.info("media %s[%d] from %s stored: %s, %d bytes", contact.id, index, source.key, content_type, size)
        localized = attachment.model_copy(update={
            "url": url, "content_type": content_type, "size": size,
            "filename": attachment.filename or fetched.filename,
        })
        return localized, entry

    def _check_declared(self, content_type: str | None, size: int | None) -> None:
        if size is not None and size > self.settings.max_bytes:
            raise MediaRejectedError(
                Reason.TOO_LARGE, f"the provider declared {size} bytes, more than the {self.settings.max_bytes} allowed"
            )
        declared = normalize_type(content_type)
        if declared is not None and not type_allowed(declared, self.settings.allowed_types):
            raise MediaRejectedError(Reason.TYPE_NOT_ALLOWED, f"{declared} is not in media.allowed_types")


class _Embedded:
    """The "source" of bytes that arrived with the webhook: nothing to download, but the same
    declared-type check as a download, before the service's own size and type checks."""

    key = "embedded"

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._digest = hashlib.sha256(data).hexdigest()

    def reference(self, attachment: Attachment) -> str:
        return self._digest

    def fetch(self, contact: Contact, attachment: Attachment, limits: FetchLimits) -> FetchedMedia:
        limits.check_declared(attachment.content_type, None)  # the size: checked on the bytes
        return FetchedMedia(self.data, declared_type=attachment.content_type)


# --- links -----------------------------------------------------------------------------------------


def link_secrets(
    settings: MediaSettings, secrets: SecretResolver, data_dir: str | Path, *, generate: bool = True
) -> list[str]:
    """The hub-link secrets: the configured ones, else (embedded runtime, `generate`) one made
    once and kept in `<data_dir>/media-link.key`. Raises `SecretResolutionError`, or
    `ConfigError` when none is configured and none may be generated: on AWS every Lambda
    container would make its own, and links signed in one would fail in the others."""
    if settings.link_secret:
        return secrets.get_all(settings.link_secret)
    if not generate:
        raise ConfigError("media.link_secret: required on AWS when media.public_url is set (hub links)")
    return [load_or_create_link_secret(Path(data_dir) / LINK_SECRET_FILE)]


#: A redirect target lives this long: long enough to start the download, far shorter than any
#: session credentials that signed it.
REDIRECT_SECONDS = 300


@dataclass(frozen=True)
class MediaAnswer:
    """What a valid media link gets: a redirect to where the blob is stored (S3), or the bytes."""

    redirect: str | None = None
    body: bytes = b""
    content_type: str = "application/octet-stream"


def open_media_link(
    blobs: BlobStore,
    key: str,
    expires: str | int | None,
    signature: str | None,
    secret: str | bytes | SecretStr | Iterable[str | bytes | SecretStr],
    now: datetime,
) -> MediaAnswer:
    """What a hub link (`/v1/media/<contact>/<file>`, key `media/<contact>/<file>`) leads to,
    after checking its HMAC signature (any of `secret`, for rotation) and expiry: a fresh
    presigned URL to redirect to when the blob store has one (S3), else the bytes and the type
    they are served as.

    Raises `NotFoundError` for a key outside `media/` or a blob that is gone (local store),
    `ForbiddenError` for a missing, wrong or expired signature, `TransientError` when the store
    is unavailable. Serve bytes with `X-Content-Type-Options: nosniff`.
    """
    if not isinstance(key, str) or not _MEDIA_KEY.fullmatch(key) or ".." in key:
        raise NotFoundError("no such media")
    try:
        expires_at = int(str(expires).strip())
    except ValueError:
        raise ForbiddenError("the media link is malformed") from None
    candidates = [secret] if isinstance(secret, (str, bytes, SecretStr)) else list(secret)
    plain = [s.get_secret_value() if isinstance(s, SecretStr) else s for s in candidates]
    if not signature or not plain or not link_signature_valid(plain, key, expires_at, signature):
        raise ForbiddenError("the media link's signature is not valid")
    if now.timestamp() > expires_at:
        raise ForbiddenError("the media link has expired")
    redirect = blobs.direct_url(key, REDIRECT_SECONDS)
    if redirect is not None:
        return MediaAnswer(redirect=redirect)
    return MediaAnswer(body=blobs.get(key), content_type=content_type_for_key(key))


def _classes_of(classes, provider: str) -> list:
    """The source classes that serve `provider`, in registry order; from the registry's own table
    when it has one, so only that provider's sources are imported."""
    from chalicelib.adapters.media.registry import MEDIA_SOURCE_PROVIDERS, MEDIA_SOURCES

    if classes is MEDIA_SOURCES:
        return [classes[key] for key, owner in MEDIA_SOURCE_PROVIDERS.items() if owner == provider]
    return [cls for cls in classes.values() if cls.provider == provider]
