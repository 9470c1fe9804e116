"""The operator console's files as the hub serves them: the manifest of the folder
`chalicelib/console/static`, each file's content type and ETag, and the security headers.

Only the folder's manifest is served: the files directly in it whose suffix is one of
`CONTENT_TYPES`, looked up by exact name, so no path (`..`, an encoded slash, a hidden file)
can reach anything else. Every answer carries a Content-Security-Policy that allows only the
hub's own origin: no inline script, no other host, no framing. Imported by the console's routes
on their first request, never by the app's import.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from chalice import Response

from chalicelib.api.http import HttpRequest, error_response

STATIC = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml; charset=utf-8",
}
INDEX = "index.html"
#: Only the hub's own origin: scripts, styles, and the `/v1` calls the app makes.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: Revalidated on every load (a deploy changes them at once); an unchanged file answers 304.
CACHE_CONTROL = "no-cache"


class StaticFile:
    __slots__ = ("body", "content_type", "etag")

    def __init__(self, body: str, content_type: str, etag: str) -> None:
        self.body = body
        self.content_type = content_type
        self.etag = etag


class ConsoleFiles:
    """The manifest: the folder's servable files, read once per process (they ship with the code)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._files: dict[str, StaticFile] | None = None

    def manifest(self) -> dict[str, StaticFile]:
        if self._files is None:
            files = {}
            for path in sorted(self._folder.iterdir()):
                content_type = CONTENT_TYPES.get(path.suffix)
                if content_type and path.is_file() and not path.name.startswith("."):
                    body = path.read_text(encoding="utf-8")
                    etag = '"' + hashlib.sha256(body.encode("utf-8")).hexdigest()[:32] + '"'
                    files[path.name] = StaticFile(body, content_type, etag)
            self._files = files
        return self._files

    def respond(self, request: HttpRequest, name: str) -> Response:
        found = self.manifest().get(name)
        if found is None:
            return error_response(404, "not_found", "no console file with this name", request_id=request.request_id,
                                  headers=_security_headers())
        headers = {**_security_headers(), "Cache-Control": CACHE_CONTROL, "ETag": found.etag}
        if _matches(request.header("if-none-match"), found.etag):
            return Response(body="", status_code=304, headers=headers)
        return Response(body=found.body, status_code=200, headers={**headers, "Content-Type": found.content_type})


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    return any(tag.strip().removeprefix("W/") in (etag, "*") for tag in if_none_match.split(","))


def _security_headers() -> dict[str, str]:
    return {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"}


#: The shipped console, read on first use.
FILES = ConsoleFiles(STATIC)
