"""HTTP for media: downloads through the hub's one downloader, and small JSON lookups via the
shared client.

The shared client (`adapters/connectors/http.py`) reads whole bodies, which is right for vendor
APIs and wrong for a customer's 16 MB video or a URL a provider's payload points at: downloads go
through `adapters/downloads.py` (streamed, capped, never inflated, one deadline, at a checked
public address). Neither follows redirects; a source that must (Twilio) does it itself, and each
hop is checked again. Errors name the host only: a Telegram file URL carries the bot token.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable, Mapping

from chalicelib.adapters.connectors.http import HttpClient, retry_after_seconds
from chalicelib.adapters.downloads import Download, Downloader, DownloadRefusedError, Refusal
from chalicelib.adapters.media.base import MediaRejectedError, Reason, host_of
from chalicelib.errors import RetryableDeliveryError, RetryLaterError, TransientError

USER_AGENT = "omnichannel-hub/1 (media)"
#: Lookups answer a few hundred bytes of JSON; anything far larger is not what we asked for.
MAX_JSON_BYTES = 64 * 1024
#: How much of an error body is kept to classify it (Telegram's `description`, Graph's `error`).
MAX_ERROR_BYTES = 4096
#: Statuses worth retrying later: throttling and server-side trouble.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: A provider's Retry-After longer than this is not honoured as such: the queue's own
#: redelivery takes over.
MAX_RETRY_DELAY = 900

#: `bot<id>:<secret>` in a Telegram URL path.
_BOT_TOKEN = re.compile(r"bot[0-9]+:[A-Za-z0-9_-]+")
#: A refused download's reason, in the media report's words.
_REFUSALS = {
    Refusal.HOST_NOT_ALLOWED: Reason.HOST_NOT_ALLOWED,
    Refusal.TOO_LARGE: Reason.TOO_LARGE,
    Refusal.BAD_URL: Reason.BAD_REFERENCE,
    Refusal.ENCODED: Reason.BAD_RESPONSE,
}


#: What a media request answers (the downloader's answer type; a lookup's has no `address`).
MediaResponse = Download


class MediaHttp:
    def __init__(
        self,
        client: HttpClient | None = None,
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        downloads: Downloader | None = None,
    ) -> None:
        self._client = client or HttpClient(connect_timeout=connect_timeout, read_timeout=read_timeout)
        self._read_timeout = read_timeout
        self._downloads = downloads or Downloader(
            connect_timeout=connect_timeout, read_timeout=read_timeout, user_agent=USER_AGENT
        )
        #: Hosts whose addresses need not be public (`allowing`).
        self._allow_private: frozenset[str] = frozenset()
        redact_bot_tokens_in_urllib3_logs()

    def allowing(self, hosts: Iterable[str]) -> MediaHttp:
        """This client, sharing its clients, for a source whose settings name `hosts`: those
        may resolve to private addresses (a local fake, a sandbox); every other host must be
        public."""
        scoped = copy.copy(self)
        scoped._allow_private = frozenset(h.lower() for h in hosts)
        return scoped

    def get_json(self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float | None = None) -> MediaResponse:
        """A small JSON lookup through the shared client. Transport failures raise
        `TransientError`; any status is returned, the body capped at `MAX_JSON_BYTES`."""
        host = host_of(url)
        try:
            response = self._client.request(
                "GET", url, headers={"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})},
                timeout=min(timeout, self._read_timeout) if timeout else None,
            )
        except RetryableDeliveryError:
            raise TransientError(f"media lookup at {host} failed: connection or timeout") from None
        if len(response.body) > MAX_JSON_BYTES:
            raise MediaRejectedError(Reason.BAD_RESPONSE, f"{host} answered an oversized lookup response")
        return MediaResponse(response.status, response.headers, response.body, host)

    def download(
        self, url: str, *, headers: Mapping[str, str] | None = None, max_bytes: int, deadline: float
    ) -> MediaResponse:
        """GET `url` through the downloader, without following redirects. A refused download
        (a host that is not public, a 2xx body over `max_bytes`, announced or actual, or one sent
        compressed) raises `MediaRejectedError`; passing `deadline` (time.monotonic) or a
        transport failure raises `TransientError`. Non-2xx answers are returned with a capped
        body."""
        try:
            answer = self._downloads.get(url, headers=headers, max_bytes=max_bytes, deadline=deadline,
                                         allow_private=self._allow_private, error_bytes=MAX_ERROR_BYTES)
        except DownloadRefusedError as exc:
            raise MediaRejectedError(_REFUSALS.get(exc.reason, Reason.BAD_RESPONSE), exc.message) from None
        return answer


def transient_for(response: MediaResponse, what: str) -> TransientError:
    """The retry error for a throttled or failing provider, honouring its Retry-After."""
    delay = retry_after_seconds(response.headers)
    message = f"{what}: {response.host} answered {response.status}"
    if delay is not None and delay <= MAX_RETRY_DELAY:
        return RetryLaterError(message, delay_seconds=max(1, int(delay + 0.999)))
    return TransientError(message)


def is_transient(status: int) -> bool:
    return status in TRANSIENT_STATUSES or status >= 500


class _RedactBotTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _BOT_TOKEN.search(message):
            record.msg, record.args = _BOT_TOKEN.sub("bot<redacted>", message), ()
        return True


_FILTER = _RedactBotTokens()


def redact_bot_tokens_in_urllib3_logs() -> None:
    """urllib3 logs every request line at DEBUG (`GET /bot<token>/getFile`); with debug logging
    on, that would write a Telegram bot token to the logs. Idempotent."""
    for name in ("urllib3.connectionpool", "urllib3.connection", "urllib3.response"):
        target = logging.getLogger(name)
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
