"""Slack files: https://api.slack.com/types/file#authentication

A file a customer shares reaches the hub as `url_private`, which only answers with the bot's
token (`files:read` scope); Slack Connect files may come as an id alone
(`file_access: check_file_info`), whose URL `files.info` gives. Without the token an agent
cannot open the file at all, so the hub keeps a copy.
"""

from __future__ import annotations

import re
import time
from typing import Any, ClassVar
from urllib.parse import quote, urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.adapters.media.base import (
    FetchedMedia,
    FetchLimits,
    HostPolicy,
    MediaRejectedError,
    MediaSource,
    Reason,
    api_base_url,
)
from chalicelib.adapters.media.http import MediaResponse, is_transient, transient_for
from chalicelib.domain.models import Attachment, Contact
from chalicelib.errors import SecretResolutionError
from chalicelib.secrets import Secret

#: Slack file ids (`F0123ABC`); anything else could change the lookup's path.
_FILE_ID = re.compile(r"F[A-Z0-9]{2,40}")
#: `files.info` errors that another token (another workspace's install) may not have.
_OTHER_TOKEN = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "missing_scope",
                          "file_not_found", "no_permission"})  # fmt: skip
MAX_REDIRECTS = 2


class SlackMediaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Bot tokens (`xoxb-…`) with the `files:read` scope: one per workspace that installed the
    #: app, or the new one first while rotating. Each is tried until Slack accepts one.
    bot_token: list[Secret] = Field(min_length=1)
    api_url: str = "https://slack.com"
    #: Hosts `url_private` and its redirects may point to (a leading dot: the domain and its
    #: subdomains). The token is only ever sent to the host of `url_private` itself.
    download_hosts: list[str] = Field(default_factory=lambda: [".slack.com", ".slack-edge.com", ".slack-files.com"])

    @field_validator("bot_token", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("api_url")
    @classmethod
    def _base(cls, value: str) -> str:
        return api_base_url(value, example="https://slack.com")


class SlackFilesSource(MediaSource[SlackMediaSettings]):
    """`url_private` (or `files.info` for an id alone) → the file, with a bot token."""

    key: ClassVar[str] = "slack"
    provider: ClassVar[str] = "slack"
    docs_url: ClassVar[str] = "https://api.slack.com/types/file#authentication"
    settings_field: ClassVar[str] = "slack"
    Settings: ClassVar[type[BaseModel]] = SlackMediaSettings

    def reference(self, attachment: Attachment) -> str | None:
        return attachment.url or attachment.provider_media_id

    def fetch(self, contact: Contact, attachment: Attachment, limits: FetchLimits) -> FetchedMedia:
        settings = self.settings
        if settings is None:
            raise MediaRejectedError(Reason.NOT_CONFIGURED, "media.slack.bot_token is not configured")
        deadline = time.monotonic() + limits.timeout_seconds
        tokens = self._tokens(settings)
        url, declared = attachment.url, attachment.content_type
        if not url:
            url, declared, tokens = self._file_info(settings, attachment.provider_media_id or "", tokens, limits)
        limits.check_declared(declared, attachment.size)
        policy = HostPolicy.of(settings.download_hosts, base_url=settings.api_url)
        for token in tokens:
            response = self._download(url, token, policy, limits, deadline)
            if response.status in (401, 403) or _sign_in_page(response, declared):
                continue  # another workspace's token may be the one
            return _result(response, declared)
        raise MediaRejectedError(
            Reason.UNAUTHORIZED, "Slack refused every bot token (it needs files:read in the file's workspace)"
        )

    def _tokens(self, settings: SlackMediaSettings) -> list[str]:
        try:
            return self.secrets.get_all(settings.bot_token)
        except SecretResolutionError as exc:
            raise MediaRejectedError(Reason.CREDENTIALS_UNAVAILABLE, exc.message) from None

    def _file_info(
        self, settings: SlackMediaSettings, file_id: str, tokens: list[str], limits: FetchLimits
    ) -> tuple[str, str | None, list[str]]:
        """The URL and type `files.info` gives, and the tokens worth trying (the accepting one first)."""
        if not _FILE_ID.fullmatch(file_id):
            raise MediaRejectedError(Reason.BAD_REFERENCE, "the Slack file id is malformed")
        url = f"{settings.api_url}/api/files.info?file={quote(file_id, safe='')}"
        for index, token in enumerate(tokens):
            response = self.http.get_json(url, headers={"Authorization": f"Bearer {token}"}, timeout=limits.timeout_seconds)
            if is_transient(response.status):
                raise transient_for(response, "Slack files.info")
            body = response.json() if response.ok else None
            if not isinstance(body, dict):
                raise MediaRejectedError(Reason.BAD_RESPONSE, f"Slack files.info answered {response.status}")
            if body.get("ok") is True and isinstance(body.get("file"), dict):
                file = body["file"]
                private = file.get("url_private_download") or file.get("url_private")
                if not isinstance(private, str) or not private:
                    raise MediaRejectedError(Reason.BAD_RESPONSE, "Slack files.info gave no url_private")
                mimetype = file.get("mimetype") if isinstance(file.get("mimetype"), str) else None
                return private, mimetype, tokens[index:]
            if body.get("error") == "ratelimited":
                raise transient_for(response, "Slack files.info")
            if body.get("error") not in _OTHER_TOKEN:
                raise MediaRejectedError(Reason.PROVIDER_REJECTED, f"Slack files.info: {str(body.get('error'))[:60]}")
        raise MediaRejectedError(Reason.UNAUTHORIZED, "no configured bot token may read this Slack file")

    def _download(self, url: str, token: str, policy: HostPolicy, limits: FetchLimits, deadline: float) -> MediaResponse:
        origin = urlsplit(url).hostname
        for _ in range(MAX_REDIRECTS + 1):
            if not policy.allows(url):
                raise MediaRejectedError(Reason.HOST_NOT_ALLOWED, "the Slack file URL is not on a host in media.slack.download_hosts")
            # The token goes to the file's own host only, never to where a redirect leads.
            headers = {"Authorization": f"Bearer {token}"} if urlsplit(url).hostname == origin else {}
            response = self.http.download(url, headers=headers, max_bytes=limits.max_bytes, deadline=deadline)
            if not response.is_redirect:
                return response
            url = urljoin(url, response.headers.get("location", ""))
        raise MediaRejectedError(Reason.REDIRECT_REFUSED, f"the Slack file download redirected more than {MAX_REDIRECTS} times")


def _sign_in_page(response: MediaResponse, declared: str | None) -> bool:
    """Slack answers a token without access to the file with its HTML sign-in page and a 200."""
    served = (response.headers.get("content-type") or "").split(";")[0].strip().lower()
    return response.ok and served == "text/html" and (declared or "").lower() != "text/html"


def _result(response: MediaResponse, declared: str | None) -> FetchedMedia:
    if response.ok:
        return FetchedMedia(response.body, declared_type=declared or response.headers.get("content-type"),
                            host=response.host)
    if is_transient(response.status):
        raise transient_for(response, "Slack file download")
    raise MediaRejectedError(
        Reason.NOT_FOUND if response.status in (404, 410) else Reason.PROVIDER_REJECTED,
        f"Slack file download: {response.host} answered {response.status}",
    )
