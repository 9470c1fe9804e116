"""Shared helpers for the channel adapter unit tests: exact-byte fixtures and request building."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
# The repository root is not on sys.path under a bare `pytest` until the shared test
# configuration adds it; this keeps these tests runnable on their own.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from chalicelib.adapters.channels.base import WebhookRequest  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
RECEIVED_AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)


class Fixture:
    """One stored request: the exact body bytes and the JSON description beside it."""

    def __init__(self, provider: str, name: str) -> None:
        self.name = name
        self.body = (FIXTURES / provider / f"{name}.body").read_bytes()
        self.meta = json.loads((FIXTURES / provider / f"{name}.json").read_text(encoding="utf-8"))

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.meta["headers"])

    def request(
        self,
        *,
        body: bytes | None = None,
        headers: dict[str, str | None] | None = None,
        hook: str | None = "",
        method: str = "POST",
        query: dict[str, str] | None = None,
    ) -> WebhookRequest:
        merged = self.headers
        for name, value in (headers or {}).items():
            if value is None:
                merged.pop(name.lower(), None)
            else:
                merged[name.lower()] = value
        return WebhookRequest(
            method=method,
            hook=self.meta.get("hook") if hook == "" else hook,
            headers=merged,
            query=query or {},
            body=self.body if body is None else body,
            received_at=RECEIVED_AT,
        )


class CountingResolver:
    """A SecretResolver fake that records how often secrets are resolved (lazy, cached)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        from chalicelib.secrets import SecretResolver

        self._inner = SecretResolver(environ or {})
        self.calls = 0

    def get(self, secret):
        self.calls += 1
        return self._inner.get(secret)

    def get_all(self, secrets):
        return [self.get(s) for s in secrets]


# Helpers are handed out as fixtures: importing a module named `conftest` is ambiguous as soon
# as another test directory has one.


@pytest.fixture
def load():
    """`load(provider, name)` → the stored request `tests/fixtures/<provider>/<name>.{body,json}`."""
    return Fixture


@pytest.fixture
def counting_resolver() -> type[CountingResolver]:
    return CountingResolver
