"""The operator console's static files through the embedded hub's HTTP server: the page and its
modules with their content types and security headers, a redirect to the page, and a JSON 404
for anything outside the folder's manifest."""

from __future__ import annotations

import pytest

from chalicelib.console.files import CONTENT_SECURITY_POLICY, STATIC


def _unfollowed(running, path: str):
    """The answer itself, not the page a redirect leads to (urllib follows redirects)."""
    import http.client
    from urllib.parse import urlsplit

    address = urlsplit(running.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Location")
    finally:
        connection.close()


def test_console_redirects_to_the_page_and_the_page_is_html_with_a_self_only_policy(running):
    redirect = _unfollowed(running, "/console")
    page = running.request("GET", "/console/")

    # Relative, so that under a stage prefix /api/console leads to /api/console/.
    assert redirect == (302, "console/")
    assert page.status == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY and "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert page.headers["cache-control"] == "no-cache" and page.headers["x-content-type-options"] == "nosniff"
    assert b'<script type="module" src="app.js">' in page.body


@pytest.mark.parametrize(("name", "content_type"), [
    ("app.js", "text/javascript; charset=utf-8"),
    ("styles.css", "text/css; charset=utf-8"),
    ("index.html", "text/html; charset=utf-8"),
])
def test_each_file_is_served_with_its_content_type(running, name, content_type):
    answer = running.request("GET", f"/console/{name}")

    assert answer.status == 200
    assert answer.headers["content-type"] == content_type
    assert answer.body == (STATIC / name).read_bytes()
    assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_every_module_the_page_imports_is_served(running):
    import re

    for path in sorted(STATIC.glob("*.js")):
        for imported in re.findall(r'from "\./([^"]+)"', path.read_text()):
            assert running.request("GET", f"/console/{imported}").status == 200, f"{path.name} imports {imported}"


def test_an_unchanged_file_answers_304_to_its_etag(running):
    first = running.request("GET", "/console/app.js")
    again = running.request("GET", "/console/app.js", headers={"If-None-Match": first.headers["etag"]})

    assert again.status == 304 and again.body == b""


@pytest.mark.parametrize("path", [
    "/console/nope.js",
    "/console/..%2F..%2Fapp.py",
    "/console/%2e%2e%2fapp.py",
    "/console/..",
    "/console/../app.py",
    "/console/static%2Fapp.js",
    "/console/api.py",
    "/console/APP.JS",
    "/console/app.js%00.css",
    "/console/a/b.js",
])
def test_anything_outside_the_manifest_is_the_json_404(running, path):
    answer = running.request("GET", path)

    assert answer.status == 404, (path, answer.status)
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == "not_found"
