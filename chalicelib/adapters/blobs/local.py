"""Blob store on a local directory, for the embedded runtime."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from chalicelib.adapters.blobs.base import BlobStore
from chalicelib.errors import NotFoundError, TransientError


class LocalBlobStore(BlobStore):
    def __init__(self, root: str) -> None:
        self._root = Path(root).resolve()

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
