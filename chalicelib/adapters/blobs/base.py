"""The blob-store port: raw payloads too large for a queue message, and (later) media.

S3 on AWS, a local directory in the embedded runtime.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable


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
