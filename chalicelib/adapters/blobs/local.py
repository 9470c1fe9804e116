"""Blob store on a local directory, for the embedded runtime.

Links to blobs (`presigned_url`) point at the hub itself: `<base>/v1/<key>?expires=&signature=`,
an HMAC-SHA256 over the key and the expiry with a per-hub secret, checked by
`chalicelib.service.media.serve_local_media`. Only `media/` keys get links: nothing else is
served.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import quote

from chalicelib.adapters.blobs.base import BlobStore
from chalicelib.errors import ConfigError, NotFoundError, TransientError

#: The only key prefix the hub serves over HTTP; raw payloads and queue bodies stay private.
LINKED_PREFIX = "media/"
#: A generated link secret: 32 random bytes, hex, in a file only the hub's user can read.
_SECRET_BYTES = 32


class LocalBlobStore(BlobStore):
    def __init__(
        self,
        root: str,
        *,
        link_base_url: str | None = None,
        link_secrets: Iterable[str | bytes] | Callable[[], Iterable[str | bytes]] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._root = Path(root).resolve()
        self._link_base_url = link_base_url.rstrip("/") if link_base_url else None
        #: The first secret signs. A callable is resolved on the first link, so a store that
        #: only ever holds queue bodies never reads (or generates) the secret.
        self._link_secrets_source = link_secrets
        self._link_secrets: list[bytes] | None = None
        self._clock = clock

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
        if not key.startswith(LINKED_PREFIX) or ".." in key.split("/"):
            raise ValueError(f"only {LINKED_PREFIX} keys can be linked")
        if self._link_secrets is None:
            source = self._link_secrets_source
            self._link_secrets = [_as_bytes(s) for s in (source() if callable(source) else source)]
        if not self._link_base_url or not self._link_secrets:
            raise ConfigError("local blob links need link_base_url and a link secret")
        expires = int(self._clock()) + ttl_seconds
        signature = link_signature(self._link_secrets[0], key, expires)
        return f"{self._link_base_url}/v1/{quote(key, safe='/')}?expires={expires}&signature={signature}"


def link_signature(secret: str | bytes, key: str, expires: int) -> str:
    """base64url (unpadded) HMAC-SHA256 of `GET\\n<key>\\n<expires>`."""
    message = f"GET\n{key}\n{int(expires)}".encode()
    digest = hmac.new(_as_bytes(secret), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def link_signature_valid(secrets_: Iterable[str | bytes], key: str, expires: int, signature: str) -> bool:
    """Whether `signature` was made by any of `secrets_` (constant-time per secret)."""
    presented = signature.encode()
    valid = False
    for secret in secrets_:
        # Compare against every secret, so the time taken does not reveal which one matched.
        valid |= hmac.compare_digest(link_signature(secret, key, expires).encode(), presented)
    return valid


def load_or_create_link_secret(path: str | Path) -> str:
    """The embedded hub's link secret when the configuration names none: random, created once
    (mode 0600) and kept, so links survive restarts. Keep it outside the blob directory.
    Raises `ConfigError` when the file is unreadable or too short to be a secret."""
    path = Path(path)
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written whole under a temporary name, then linked into place: a concurrent
            # process either wins the link or reads the complete file.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # mode 0600
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_hex(_SECRET_BYTES))
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        except OSError as exc:
            raise ConfigError(f"cannot create the media link secret {path}: {exc.strerror}") from None
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the media link secret {path}: {exc.strerror}") from None
    if len(value) < _SECRET_BYTES:
        raise ConfigError(f"the media link secret {path} is shorter than {_SECRET_BYTES} characters")
    return value


def _as_bytes(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret
