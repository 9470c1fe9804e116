"""The operator console's static files: `GET /console` (the page), `GET /console/{file}`.

The console is a small script application that talks only to `/v1` with the key the operator
pastes, so its files hold no data and need no key. They are served from the folder
`chalicelib/console/static` by the app itself, the same on AWS and in the embedded runtime;
`chalicelib/console/files.py` says what may be served and with which headers.
"""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.api.http import HttpRequest, answer

console = Blueprint(__name__)


def _request() -> HttpRequest:
    return HttpRequest.of(console.current_request)


@console.route("/console", methods=["GET"])
def console_page() -> Response:
    """`/console/` is the page. API Gateway (and Chalice's local gateway) hand `/console` and
    `/console/` to this one route; the request's own path tells them apart. `/console` redirects
    with a relative location, so the page's relative links (`app.js`, `../v1/...`) also resolve
    under a stage prefix (`/api/console/`)."""
    from chalicelib.console.files import CACHE_CONTROL, FILES, INDEX

    request = _request()
    if not request.path.endswith("/"):
        return Response(body="", status_code=302, headers={"Location": "console/", "Cache-Control": CACHE_CONTROL})
    # `answer`: an unexpected failure (an unreadable file) is the hub's one error shape, logged.
    return answer(request, lambda: FILES.respond(request, INDEX))


@console.route("/console/{file}", methods=["GET"])
def console_file(file: str) -> Response:
    from chalicelib.console.files import FILES

    request = _request()
    return answer(request, lambda: FILES.respond(request, file))
