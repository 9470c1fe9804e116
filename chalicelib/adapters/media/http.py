"""HTTP for media: bounded streaming downloads, and small JSON lookups via the shared client.

The shared client (`adapters/connectors/http.py`) reads whole bodies, which is right for vendor
APIs and wrong for a customer's 16 MB video: downloads here stream with `preload_content=False`
and stop at the limit. Neither follows redirects; a source that must (Twilio) does it itself.
Errors name the host only: a Telegram file URL carries the bot token in its path.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.adapters.connectors.http import HttpClient, retry_after_seconds
from chalicelib.adapters.media.base import MediaRejectedError, Reason, host_of
from chalicelib.errors import RetryableDeliveryError, RetryLaterError, TransientError

USER_AGENT = "omnichannel-hub/1 (media)"
#: Lookups answer a few hundred bytes of JSON; anything far larger is not what we asked for.
MAX_JSON_BYTES = 64 * 1024
#: How much of an error body is kept to classify it (Telegram's `description`, Graph's `error`).
MAX_ERROR_BYTES = 4096
CHUNK_BYTES = 64 * 1024
#: Statuses worth retrying later: throttling and server-side trouble.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: A provider's Retry-After longer than this is not honoured as such: the queue's own
#: redelivery takes over.
MAX_RETRY_DELAY = 900

#: `bot<id>:<secret>` in a Telegram URL path.
_BOT_TOKEN = re.compile(r"bot[0-9]+:[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class MediaResponse:
    status: int
    #: Header names lower-cased.
    headers: Mapping[str, str]
    #: The whole body for a 2xx (within the limit), at most `MAX_ERROR_BYTES` otherwise.
    body: bytes
    host: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def is_redirect(self) -> bool:
        return self.status in (301, 302, 303, 307, 308)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class MediaHttp:
    def __init__(
        self,
        client: HttpClient | None = None,
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        pool_size: int = 4,
    ) -> None:
        self._client = client or HttpClient(connect_timeout=connect_timeout, read_timeout=read_timeout)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._pool_size = pool_size
        self._pool = None
        self._lock = threading.Lock()
        redact_bot_tokens_in_urllib3_logs()

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
        """GET `url`, streaming, without following redirects. A 2xx body longer than
        `max_bytes` (announced or actual) raises `MediaRejectedError(too_large)` as soon as it
        is known; passing `deadline` (time.monotonic) or a transport failure raises
        `TransientError`. Non-2xx answers are returned with a capped body."""
        import urllib3

        host = host_of(url)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransientError(f"media download from {host} ran out of time")
        try:
            response = self._manager().request(
                "GET", url,
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **(headers or {})},
                timeout=urllib3.Timeout(connect=min(self._connect_timeout, remaining),
                                        read=min(self._read_timeout, remaining)),
                redirect=False, retries=False, preload_content=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            # The exception text quotes the URL (and with it a Telegram token): the type only.
            raise TransientError(f"media download from {host} failed: {type(exc).__name__}") from None
        complete = False
        try:
            status = response.status
            response_headers = {k.lower(): v for k, v in response.headers.items()}
            if not 200 <= status < 300:
                return MediaResponse(status, response_headers, _read_capped(response, MAX_ERROR_BYTES), host)
            announced = response_headers.get("content-length", "")
            if announced.strip().isdigit() and int(announced) > max_bytes:
                raise MediaRejectedError(
                    Reason.TOO_LARGE, f"{host} announced {int(announced)} bytes, more than the {max_bytes} allowed"
                )
            chunks, total = [], 0
            # read1: at most one socket read each, so a server trickling bytes cannot stretch one
            # chunk past the deadline (a whole stall is still cut by the read timeout).
            while chunk := response.read1(CHUNK_BYTES):
                total += len(chunk)
                if total > max_bytes:
                    raise MediaRejectedError(Reason.TOO_LARGE, f"the file from {host} exceeds {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise TransientError(f"media download from {host} ran out of time")
                chunks.append(chunk)
            complete = True
            return MediaResponse(status, response_headers, b"".join(chunks), host)
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(f"media download from {host} failed: {type(exc).__name__}") from None
        finally:
            if not complete:
                # Drop a half-read connection instead of draining a body we refused.
                response.close()
            response.release_conn()

    def _manager(self):
        with self._lock:
            if self._pool is None:
                import urllib3

                self._pool = urllib3.PoolManager(maxsize=self._pool_size, retries=False)
            return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.clear()


def _read_capped(response, limit: int) -> bytes:
    data = b""
    for chunk in response.stream(1024, decode_content=True):
        data += chunk
        if len(data) >= limit:
            break
    return data[:limit]


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
