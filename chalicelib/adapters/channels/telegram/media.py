"""Telegram Bot API files: https://core.telegram.org/bots/api#getfile"""

from __future__ import annotations

import re
import time
from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, field_validator

from chalicelib.adapters.media.base import (
    FetchedMedia,
    FetchLimits,
    MediaRejectedError,
    MediaSource,
    Reason,
    api_base_url,
)
from chalicelib.adapters.media.http import MediaResponse, is_transient, transient_for
from chalicelib.domain.models import Attachment, Contact
from chalicelib.errors import RetryLaterError, SecretResolutionError
from chalicelib.secrets import Secret

#: Bot API file ids are base64url-ish; anything else is not a file id.
_FILE_ID = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: `getFile` answers paths such as `photos/file_12.jpg` or `documents/file_3.pdf`.
_FILE_PATH = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
#: Bot API `file is too big`: bots may download files of up to 20 MB.
_TOO_BIG = "file is too big"


class TelegramMediaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The bot's token (`123456:ABC…`); it is part of every Bot API URL, so those URLs are
    #: never logged or put in an error.
    bot_token: Secret
    api_url: str = "https://api.telegram.org"

    @field_validator("api_url")
    @classmethod
    def _base(cls, value: str) -> str:
        return api_base_url(value, example="https://api.telegram.org")


class TelegramMediaSource(MediaSource[TelegramMediaSettings]):
    """file_id → getFile (file_path, size) → /file/bot<token>/<file_path>."""

    key: ClassVar[str] = "telegram"
    provider: ClassVar[str] = "telegram"
    docs_url: ClassVar[str] = "https://core.telegram.org/bots/api#getfile"
    settings_field: ClassVar[str] = "telegram"
    Settings: ClassVar[type[BaseModel]] = TelegramMediaSettings

    def reference(self, attachment: Attachment) -> str | None:
        return attachment.provider_media_id

    def fetch(self, contact: Contact, attachment: Attachment, limits: FetchLimits) -> FetchedMedia:
        settings = self.settings
        if settings is None:
            raise MediaRejectedError(Reason.NOT_CONFIGURED, "media.telegram.bot_token is not configured")
        file_id = attachment.provider_media_id or ""
        if not _FILE_ID.fullmatch(file_id):
            raise MediaRejectedError(Reason.BAD_REFERENCE, "the Telegram file_id is malformed")
        try:
            token = self.secrets.get(settings.bot_token)
        except SecretResolutionError as exc:
            raise MediaRejectedError(Reason.CREDENTIALS_UNAVAILABLE, exc.message) from None
        deadline = time.monotonic() + limits.timeout_seconds
        limits.check_declared(attachment.content_type, attachment.size)
        response = self.http.get_json(
            f"{settings.api_url}/bot{token}/getFile?file_id={quote(file_id, safe='')}", timeout=limits.timeout_seconds
        )
        result = _result(response, "Telegram getFile")
        file_path = result.get("file_path")
        if not isinstance(file_path, str) or not _FILE_PATH.fullmatch(file_path) or ".." in file_path.split("/"):
            raise MediaRejectedError(Reason.BAD_RESPONSE, "Telegram getFile returned no usable file_path")
        size = result.get("file_size")
        limits.check_declared(None, size if isinstance(size, int) and not isinstance(size, bool) else None)
        download = self.http.download(
            f"{settings.api_url}/file/bot{token}/{file_path}", max_bytes=limits.max_bytes, deadline=deadline
        )
        if download.ok:
            return FetchedMedia(
                download.body,
                # Telegram serves files as application/octet-stream; the message's mime_type is better.
                declared_type=attachment.content_type or download.headers.get("content-type"),
                filename=file_path.rsplit("/", 1)[-1],
                host=download.host,
            )
        if is_transient(download.status):
            raise transient_for(download, "Telegram file download")
        raise MediaRejectedError(
            Reason.NOT_FOUND if download.status == 404 else Reason.PROVIDER_REJECTED,
            f"Telegram file download: {download.host} answered {download.status}",
        )


def _result(response: MediaResponse, what: str) -> dict[str, Any]:
    """The `result` of a Bot API answer; its errors classified (the body's `description` is
    Telegram's own text and never contains the token)."""
    body = response.json()
    if response.ok and isinstance(body, dict) and body.get("ok") is True and isinstance(body.get("result"), dict):
        return body["result"]
    description = str(body.get("description", ""))[:200] if isinstance(body, dict) else ""
    parameters = body.get("parameters") if isinstance(body, dict) else None
    retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if response.status == 429 and isinstance(retry_after, int) and 0 < retry_after <= 900:
        raise RetryLaterError(f"{what}: throttled by Telegram", delay_seconds=retry_after)
    if is_transient(response.status):
        raise transient_for(response, what)
    if _TOO_BIG in description.lower():
        raise MediaRejectedError(Reason.TOO_LARGE, f"{what}: Telegram lets bots download files of up to 20 MB")
    if response.status in (401, 403):
        raise MediaRejectedError(Reason.UNAUTHORIZED, f"{what}: Telegram refused the bot token ({response.status})")
    if response.status in (400, 404):
        raise MediaRejectedError(Reason.NOT_FOUND, f"{what}: {description or response.status}")
    raise MediaRejectedError(Reason.BAD_RESPONSE, f"{what}: unexpected answer ({response.status})")
