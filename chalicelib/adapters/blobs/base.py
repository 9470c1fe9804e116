"""The blob-store port: raw payloads too large for a queue message, and media attachments.

S3 on AWS, a local directory in the embedded runtime.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable

from chalicelib.errors import ConfigError

#: The longest a link may live: S3 refuses SigV4 presigned URLs valid for more than 7 days.
MAX_LINK_SECONDS = 7 * 24 * 3600


class BlobStore(ABC):
    @abstractmethod
    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Store `data` under `key`, overwriting. Raises `TransientError` when unavailable."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Raises `NotFoundError` for an unknown key, `TransientError` when unavailable."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; a missing key is not an error."""

    def presigned_url(self, key: str, ttl_seconds: int) -> str:
        """A URL that lets whoever holds it GET the blob, without credentials, for `ttl_seconds`
        (1 s to 7 days): how vendors and agents open a customer's attachment.

        Making the link checks nothing about the key (S3 presigning is a local computation).
        Raises `ValueError` for a ttl outside the range, `ConfigError` when this store cannot
        make links, and `TransientError` when its credentials are unavailable.
        """
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or not 1 <= ttl_seconds <= MAX_LINK_SECONDS:
            raise ValueError(f"ttl_seconds must be an integer from 1 to {MAX_LINK_SECONDS}")
        return self._presigned_url(key, ttl_seconds)

    def _presigned_url(self, key: str, ttl_seconds: int) -> str:
        # Not abstract, so stores written before links existed (test fakes) still construct.
        raise ConfigError(f"{type(self).__name__} cannot make links to its blobs")

    def direct_url(self, key: str, ttl_seconds: int) -> str | None:
        """A URL the blob's own storage serves it from (S3's presigned URL), which the hub's
        media route redirects to; None when the hub must serve the bytes itself. Raises
        `TransientError` when the store's credentials are unavailable."""
        return None


class LazyBlobStore(BlobStore):
    """Builds the real store on first use: queues hold a blob store for rare oversized bodies,
    and creating an S3 client up front would cost every cold start ~20 ms for nothing."""

    def __init__(self, build: Callable[[], BlobStore]) -> None:
        self._build = build
        self._store: BlobStore | None = None
        self._lock = threading.Lock()

    def _target(self) -> BlobStore:
        with self._lock:
            if self._store is None:
                self._store = self._build()
            return self._store

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        self._target().put(key, data, content_type=content_type)

    def get(self, key: str) -> bytes:
        return self._target().get(key)

    def delete(self, key: str) -> None:
        self._target().delete(key)

    def presigned_url(self, key: str, ttl_seconds: int) -> str:
        return self._target().presigned_url(key, ttl_seconds)

    def direct_url(self, key: str, ttl_seconds: int) -> str | None:
        return self._target().direct_url(key, ttl_seconds)
