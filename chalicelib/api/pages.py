"""The channel providers' own public pages (`registry.PAGES`: the web chat widget's script and
demo), routed without naming a provider. Each page's handler lives in its provider's package and
is imported on the page's first request: registering the routes costs the app's import nothing
beyond this module."""

from __future__ import annotations

import re
from importlib import import_module

from chalice import Blueprint, Response

from chalicelib.adapters.channels.registry import PAGES
from chalicelib.api.http import HttpRequest

pages = Blueprint(__name__)


def _route(path: str, target: str) -> None:
    module, _, attribute = target.partition(":")

    def serve() -> Response:
        handler = getattr(import_module(module), attribute)
        return handler(HttpRequest.of(pages.current_request))

    # Chalice names a route's view after its function: one name per page, from its unique path.
    serve.__name__ = serve.__qualname__ = "page_" + re.sub(r"\W", "_", path.strip("/"))
    pages.route(path, methods=["GET"])(serve)


for _path, _page in PAGES.items():
    _route(_path, _page.handler)
