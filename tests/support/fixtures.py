"""Provider fixtures: exact request bytes plus their headers, as stored in tests/fixtures/."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@dataclass(frozen=True)
class Fixture:
    provider: str
    name: str
    body: bytes
    headers: dict[str, str]
    hook: str | None
    url: str | None

    @property
    def path(self) -> str:
        return f"/webhooks/{self.provider}" + (f"/{self.hook}" if self.hook else "")


def load(provider: str, name: str) -> Fixture:
    meta = json.loads((FIXTURES / provider / f"{name}.json").read_text())
    return Fixture(
        provider=provider,
        name=name,
        body=(FIXTURES / provider / f"{name}.body").read_bytes(),
        headers={k.lower(): v for k, v in meta.get("headers", {}).items()},
        hook=meta.get("hook"),
        url=meta.get("url"),
    )
