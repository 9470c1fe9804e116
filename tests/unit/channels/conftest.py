"""Helpers for the channel adapter unit tests, handed out as fixtures.

Importing a module named `conftest` is ambiguous as soon as another test directory has one, so
nothing here is imported by the tests directly.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chalicelib.adapters.channels.base import WebhookRequest
from chalicelib.secrets import SecretResolver
from tests.support.fixtures import load as load_fixture

RECEIVED_AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)


class StoredRequest:
    """A stored provider request (`tests/fixtures/<provider>/<name>.{body,json}`), replayable with changes."""

    def __init__(self, provider: str, name: str) -> None:
        stored = load_fixture(provider, name)
        self.name = name
        self.body = stored.body
        self.hook = stored.hook
        self.url = stored.url
        self._headers = dict(stored.headers)

    @property
    def headers(self) -> dict[str, str]:
        return dict(self._headers)

    def request(
        self,
        *,
        body: bytes | None = None,
        headers: dict[str, str | None] | None = None,
        hook: str | None = "",
        method: str = "POST",
        query: dict[str, str] | None = None,
    ) -> WebhookRequest:
        """The stored request; `headers` values of None remove a header, `hook=""` keeps the stored hook."""
        merged = self.headers
        for name, value in (headers or {}).items():
            if value is None:
                merged.pop(name.lower(), None)
            else:
                merged[name.lower()] = value
        return WebhookRequest(
            method=method,
            hook=self.hook if hook == "" else hook,
            headers=merged,
            query=query or {},
            body=self.body if body is None else body,
            received_at=RECEIVED_AT,
        )


class CountingResolver:
    """A SecretResolver fake that counts resolutions, to prove secrets resolve lazily and once."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        self._inner = SecretResolver(environ or {})
        self.calls = 0

    def get(self, secret):
        self.calls += 1
        return self._inner.get(secret)

    def get_all(self, secrets):
        return [self.get(s) for s in secrets]


@pytest.fixture
def load():
    """`load(provider, name)` → a `StoredRequest`."""
    return StoredRequest


@pytest.fixture
def counting_resolver() -> type[CountingResolver]:
    return CountingResolver
