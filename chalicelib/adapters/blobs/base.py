"""The blob-store port: raw payloads too large for a queue message, and (later) media.

S3 on AWS, a local directory in the embedded runtime.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


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
