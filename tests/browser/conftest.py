"""Browser tests: the hub's pages (console, web chat widget) in Debian's Chromium through Playwright,
against the whole hub in embedded mode on an ephemeral port (tests/functional's hub)."""

from __future__ import annotations

import pytest

from tests.functional.conftest import receiver, running  # noqa: F401 (fixtures the browser tests share)
from tests.support.browser import LAUNCH_ARGS, chromium_path, require_browser


@pytest.fixture(scope="session")
def chromium():
    """One Chromium per session (a launch costs about a second); each test gets its own context."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=list(LAUNCH_ARGS))
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium):
    """A fresh browser context (its own storage) and page; console errors fail the test at teardown."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
