"""One HTTP client for every connector: pooled connections, mandatory timeouts, no redirects,
and one place that turns vendor answers into retryable or permanent errors.

urllib3 is already in the Lambda package (botocore depends on it), so this costs no dependency.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass

from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError

#: Statuses worth retrying: throttling and server-side trouble.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: How much of a vendor's error body is kept in the delivery log.
MAX_REASON_CHARS = 500


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def text(self, limit: int = MAX_REASON_CHARS) -> str:
        return self.body[:limit].decode("utf-8", errors="replace")


class HttpClient:
    def __init__(self, *, connect_timeout: float = 3.05, read_timeout: float = 10.0, pool_size: int = 10) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._pool_size = pool_size
        self._pool = None

    def _manager(self):
        if self._pool is None:
            import urllib3

            self._pool = urllib3.PoolManager(maxsize=self._pool_size, retries=False)
        return self._pool

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> HttpResponse:
        """Send one request. Transport failures raise `RetryableDeliveryError`; any HTTP status
        is returned, for the caller to classify with `raise_for_status`."""
        import urllib3

        read = timeout if timeout is not None else self._read_timeout
        try:
            response = self._manager().request(
                method,
                url,
                body=body,
                headers=dict(headers or {}),
                timeout=urllib3.Timeout(connect=min(self._connect_timeout, read), read=read),
                redirect=False,
                retries=False,
                preload_content=True,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise RetryableDeliveryError(f"{method} {_host(url)} failed: {type(exc).__name__}") from None
        return HttpResponse(
            status=response.status,
            headers={k.lower(): v for k, v in response.headers.items()},
            body=response.data or b"",
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.clear()


def raise_for_status(response: HttpResponse, *, vendor: str) -> None:
    """Classify a non-2xx answer: retryable (408/425/429/5xx, honouring Retry-After) or permanent
    (any other status, with the vendor's own message kept as the reason)."""
    if response.ok:
        return
    reason = f"{vendor} answered {response.status}: {response.text()}".strip()
    if response.status in RETRYABLE_STATUSES or response.status >= 500:
        raise RetryableDeliveryError(reason, retry_after=retry_after_seconds(response.headers))
    if 300 <= response.status < 400:
        raise PermanentDeliveryError(f"{vendor} answered a redirect ({response.status}), which is not followed")
    raise PermanentDeliveryError(reason)


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds (delta or HTTP date), else common rate-limit reset headers."""
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return None
        return max(0.0, when - (now if now is not None else time.time()))
    reset = headers.get("x-ratelimit-reset") or headers.get("ratelimit-reset")
    if reset and reset.strip().isdigit():
        seconds = float(reset)
        # Some vendors send an epoch timestamp, others a delta; a delta is never this large.
        current = now if now is not None else time.time()
        return max(0.0, seconds - current) if seconds > 1_000_000_000 else seconds
    return None


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or "destination"
