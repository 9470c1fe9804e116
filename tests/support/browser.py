"""Debian's Chromium driven by Playwright for Python, for the pages the hub serves.

Playwright cannot download its own browser on the machines this project is built on, so the tests
launch the system's `chromium` (Debian package `chromium`, installed by `make test` where it can).
Without it the browser tests skip locally with the reason, and fail under `CI=true` or
`HUB_REQUIRE_BROWSER=1` (set by .ci/run): CI can never pass with the browser silently skipped.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REQUIRE_ENV = "HUB_REQUIRE_BROWSER"
#: Where the tests look for the browser: `HUB_CHROMIUM` first, then the Debian package's names.
CANDIDATES = ("chromium", "chromium-browser")
#: Chromium with its background services off: this machine's network is closed, and each of them
#: would otherwise retry connections for the whole test. No sandbox: CI runs as root.
LAUNCH_ARGS = (
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
)
#: Screenshots for a reviewer: `build/screenshots/<test area>/<name>.png`.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


def chromium_path() -> str | None:
    explicit = os.environ.get("HUB_CHROMIUM", "").strip()
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def required() -> bool:
    """True in CI (`CI=true`) or with `HUB_REQUIRE_BROWSER=1`."""
    return any(os.environ.get(name, "").strip().lower() in {"1", "true", "yes"} for name in ("CI", REQUIRE_ENV))


def unavailable_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (make test installs requirements-dev.txt)"
    if chromium_path() is None:
        return ("no chromium found (install Debian's package: apt-get install chromium, "
                "or point HUB_CHROMIUM at a Chromium binary)")
    return None


def require_browser() -> None:
    """Skip locally; fail in CI, so a CI run can never pass with the browser tests skipped."""
    reason = unavailable_reason()
    if reason is None:
        return
    if required():
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason}")


def screenshot(page, area: str, name: str) -> Path:
    """Write the page's screenshot where a reviewer finds it, and return the path."""
    path = SCREENSHOTS / area / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path
