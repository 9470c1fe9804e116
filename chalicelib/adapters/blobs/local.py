"""Blob store on a local directory, for the embedded runtime.

Links to blobs (`presigned_url`) are hub links (`links.py`): the embedded hub serves the bytes
itself through `GET /v1/media/...`. Only `media/` keys get links: nothing else is served.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from chalicelib.adapters.blobs.base import BlobStore
from chalicelib.adapters.blobs.links import HubLinks, SecretsSource
from chalicelib.errors import ConfigError, NotFoundError, TransientError


class LocalBlobStore(BlobStore):
    def __init__(
        self,
        root: str,
        *,
        link_base_url: str | None = None,
        link_secrets: SecretsSource = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._root = Path(root).resolve()
        self._links = HubLinks(link_base_url, link_secrets, clock=clock) if link_base_url else None

    def _path(self, key: str) -> Path:
        path = (self._root / key).resolve()
        if self._root not in path.parents:
            raise NotFoundError("blob key escapes the blob directory")
        return path

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a reader never sees a half-written blob.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise TransientError(f"blob directory not writable: {exc.strerror}") from None

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"no blob {key}") from None
        except OSError as exc:
            raise TransientError(f"blob directory not readable: {exc.strerror}") from None

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise TransientError(f"blob directory not writable: {exc.strerror}") from None

    def _presigned_url(self, key: str, ttl_seconds: int) -> str:
        if self._links is None:
            raise ConfigError("local blob links need link_base_url and a link secret")
        return self._links.url(key, ttl_seconds)
