"""The browser harness itself: the system Chromium starts, renders a page the hub serves, and the
skip-or-fail rule holds (CI can never pass with the browser tests skipped)."""

from __future__ import annotations

import pytest

from tests.support import browser


def test_chromium_renders_a_page_served_by_the_embedded_hub(page, running):
    page.goto(running.url + "/health")
    assert '"status"' in page.content()


@pytest.mark.parametrize(
    ("environ", "outcome"),
    [
        ({"CI": "true", "HUB_REQUIRE_BROWSER": ""}, pytest.fail.Exception),
        ({"CI": "", "HUB_REQUIRE_BROWSER": "1"}, pytest.fail.Exception),
        ({"CI": "", "HUB_REQUIRE_BROWSER": ""}, pytest.skip.Exception),
    ],
)
def test_a_missing_browser_skips_locally_and_fails_in_ci(monkeypatch, environ, outcome):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HUB_CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(outcome, match="no chromium found"):
        browser.require_browser()
