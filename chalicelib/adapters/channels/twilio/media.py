"""Twilio media (MediaUrl{N}): https://www.twilio.com/docs/messaging/api/media-resource"""

from __future__ import annotations

import base64
import re
import time
from typing import ClassVar
from urllib.parse import urljoin

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.adapters.media.base import FetchedMedia, FetchLimits, HostPolicy, MediaRejectedError, MediaSource, Reason
from chalicelib.adapters.media.http import MediaResponse, is_transient, transient_for
from chalicelib.domain.models import Attachment, Contact
from chalicelib.errors import SecretResolutionError
from chalicelib.secrets import Secret


class TwilioMediaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Needed only when the account enforces HTTP auth on media URLs; without them the
    #: (then public) URL is fetched as is. An API key SID (`SK…`) and its secret work too.
    account_sid: str | None = None
    auth_token: Secret | None = None
    #: Where MediaUrl may point; credentials are sent only there.
    api_hosts: list[str] = Field(default_factory=lambda: ["api.twilio.com"])
    #: Where Twilio may redirect the download to (a leading dot: the domain and its subdomains);
    #: credentials are never sent there.
    media_hosts: list[str] = Field(default_factory=lambda: [".twilio.com", ".twiliocdn.com", ".amazonaws.com"])
    #: Only for a local fake or a sandbox: lets `http://` URLs on the listed hosts through.
    allow_http: bool = False

    @field_validator("account_sid")
    @classmethod
    def _sid(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"(AC|SK)[0-9a-fA-F]{32}", value):
            raise ValueError("must be an Account SID (AC…) or an API key SID (SK…)")
        return value

    @model_validator(mode="after")
    def _both_or_neither(self) -> TwilioMediaSettings:
        if (self.account_sid is None) != (self.auth_token is None):
            raise ValueError("account_sid and auth_token go together")
        return self


class TwilioMediaSource(MediaSource[TwilioMediaSettings]):
    """MediaUrl on api.twilio.com (HTTP Basic when configured) → at most one redirect to
    Twilio's media storage, followed without credentials."""

    key: ClassVar[str] = "twilio"
    provider: ClassVar[str] = "twilio"
    docs_url: ClassVar[str] = "https://www.twilio.com/docs/messaging/api/media-resource"
    settings_field: ClassVar[str] = "twilio"
    Settings: ClassVar[type[BaseModel]] = TwilioMediaSettings

    def reference(self, attachment: Attachment) -> str | None:
        return attachment.url

    def fetch(self, contact: Contact, attachment: Attachment, limits: FetchLimits) -> FetchedMedia:
        settings = self.settings or TwilioMediaSettings()
        schemes = ("https", "http") if settings.allow_http else ("https",)
        api = HostPolicy(tuple(h.lower() for h in settings.api_hosts), schemes)
        media = HostPolicy(tuple(h.lower() for h in settings.media_hosts), schemes)
        url = attachment.url or ""
        if not api.allows(url):
            raise MediaRejectedError(Reason.HOST_NOT_ALLOWED, "the Twilio MediaUrl is not on a host in media.twilio.api_hosts")
        limits.check_declared(attachment.content_type, attachment.size)
        deadline = time.monotonic() + limits.timeout_seconds
        response = self.http.download(url, headers=self._auth(settings), max_bytes=limits.max_bytes, deadline=deadline)
        if response.is_redirect:
            target = urljoin(url, response.headers.get("location", ""))
            # Twilio answers 302/307 to a short-lived signed URL on its media storage. That URL
            # carries its own authorization, so our credentials stay with api.twilio.com.
            if not media.allows(target):
                raise MediaRejectedError(Reason.REDIRECT_REFUSED, "Twilio redirected the download to a host not in media.twilio.media_hosts")
            response = self.http.download(target, max_bytes=limits.max_bytes, deadline=deadline)
            if response.is_redirect:
                raise MediaRejectedError(Reason.REDIRECT_REFUSED, "the Twilio media download redirected more than once")
        return self._result(response, attachment)

    def _auth(self, settings: TwilioMediaSettings) -> dict[str, str]:
        if settings.account_sid is None or settings.auth_token is None:
            return {}
        try:
            token = self.secrets.get(settings.auth_token)
        except SecretResolutionError as exc:
            raise MediaRejectedError(Reason.CREDENTIALS_UNAVAILABLE, exc.message) from None
        basic = base64.b64encode(f"{settings.account_sid}:{token}".encode()).decode()
        return {"Authorization": f"Basic {basic}"}

    def _result(self, response: MediaResponse, attachment: Attachment) -> FetchedMedia:
        if response.ok:
            return FetchedMedia(
                response.body, declared_type=attachment.content_type or response.headers.get("content-type"),
                host=response.host,
            )
        if is_transient(response.status):
            raise transient_for(response, "Twilio media download")
        reasons: dict[int, str] = {401: Reason.UNAUTHORIZED, 403: Reason.UNAUTHORIZED, 404: Reason.NOT_FOUND,
                                   410: Reason.NOT_FOUND}
        raise MediaRejectedError(
            reasons.get(response.status, Reason.PROVIDER_REJECTED),
            f"Twilio media download: {response.host} answered {response.status}",
        )

