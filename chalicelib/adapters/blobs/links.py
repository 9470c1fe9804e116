"""Hub links: URLs to stored media that point at the hub's own route, `GET <base>/v1/<key>`.

A link carries its expiry and an HMAC-SHA256 over the key and that expiry, made with a secret
only the hub holds, so it is its own credential and lives exactly as long as it says. That is
what an S3 presigned URL cannot promise on Lambda: it dies with the role session that signed
it, hours before the 7 days it may ask for. So on AWS, when `media.public_url` is set, links
are hub links too, and the route answers each one with a redirect to a fresh presigned URL
(`BlobStore.direct_url`), valid for minutes; the bytes never pass through Lambda.
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
from chalicelib.errors import ConfigError

#: The only key prefix the hub serves over HTTP; raw payloads and queue bodies stay private.
LINKED_PREFIX = "media/"
#: A generated link secret: 32 random bytes, hex, in a file only the hub's user can read.
_SECRET_BYTES = 32

SecretsSource = Iterable[str | bytes] | Callable[[], Iterable[str | bytes]]


class HubLinks:
    """Signs hub links. The first secret signs; all of them verify (`link_signature_valid`), so
    a new secret can be added before the old one is removed."""

    def __init__(self, base_url: str, link_secrets: SecretsSource, *, clock: Callable[[], float] = time.time) -> None:
        self._base_url = base_url.rstrip("/")
        #: A callable is resolved on the first link, so a store that only ever holds queue
        #: bodies never reads (or generates) the secret.
        self._source = link_secrets
        self._secrets: list[bytes] | None = None
        self._clock = clock

    def url(self, key: str, ttl_seconds: int) -> str:
        """Raises `ValueError` for a key outside `media/`, `ConfigError` without a secret."""
        if not key.startswith(LINKED_PREFIX) or ".." in key.split("/"):
            raise ValueError(f"only {LINKED_PREFIX} keys can be linked")
        if self._secrets is None:
            source = self._source
            self._secrets = [_as_bytes(s) for s in (source() if callable(source) else source)]
        if not self._base_url or not self._secrets:
            raise ConfigError("hub links need a base URL and a link secret")
        expires = int(self._clock()) + ttl_seconds
        signature = link_signature(self._secrets[0], key, expires)
        return f"{self._base_url}/v1/{quote(key, safe='/')}?expires={expires}&signature={signature}"


class HubLinkedBlobStore(BlobStore):
    """Another store's blobs, linked through the hub: `presigned_url` makes hub links, while
    `direct_url` stays the inner store's own (the redirect target)."""

    def __init__(self, inner: BlobStore, links: HubLinks) -> None:
        self._inner = inner
        self._links = links

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        self._inner.put(key, data, content_type=content_type)

    def get(self, key: str) -> bytes:
        return self._inner.get(key)

    def delete(self, key: str) -> None:
        self._inner.delete(key)

    def direct_url(self, key: str, ttl_seconds: int) -> str | None:
        return self._inner.direct_url(key, ttl_seconds)

    def _presigned_url(self, key: str, ttl_seconds: int) -> str:
        return self._links.url(key, ttl_seconds)


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
