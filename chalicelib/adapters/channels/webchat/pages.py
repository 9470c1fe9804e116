"""`GET /webchat/widget.js` (public, cacheable) and `GET /webchat/demo.html` (embedded runtime only).

The widget is the web chat provider's client, so its pages live in the provider's package; the
channel registry's `PAGES` names them and `chalicelib/api/pages.py` routes them, importing this
module on a page's first request, so the app's import and the webhook path pay nothing for it.
The script needs no CORS headers: a `<script>` tag loads it cross-origin without them.
"""

from __future__ import annotations

from chalice import Response

from chalicelib.api.http import HttpRequest, answer


def widget_script(request: HttpRequest) -> Response:
    from chalicelib.adapters.channels.webchat.widget import SCRIPT_CACHE_CONTROL, script

    def serve() -> Response:
        asset = script()
        headers = {"Cache-Control": SCRIPT_CACHE_CONTROL, "ETag": asset.etag,
                   "X-Content-Type-Options": "nosniff"}
        if asset.not_modified(request.header("if-none-match")):
            return Response(body="", status_code=304, headers=headers)
        return Response(body=asset.body, status_code=200, headers={"Content-Type": asset.content_type, **headers})

    return answer(request, serve)


def demo_page(request: HttpRequest) -> Response:
    from chalicelib.bootstrap import get_hub
    from chalicelib.errors import NotFoundError

    def serve() -> Response:
        hub = get_hub()
        # A demo is for trying the hub on one's own machine; a deployed hub serves no pages of a site.
        if hub.settings.on_aws:
            raise NotFoundError("the web chat demo page is served by the embedded hub only")
        from chalicelib.adapters.channels.webchat.widget import DEMO_CACHE_CONTROL, demo_page
        from chalicelib.settings import is_loopback_host

        host = request.header("host")
        # The embedded hub serves plain HTTP: the address the browser used is the script's base.
        # Signing a claim is what the site's backend does: only for this machine's own browser
        # (a hub on loopback, asked under a loopback name: not a rebound DNS name).
        may_sign = hub.settings.listens_on_loopback and is_loopback_host(host)
        body = demo_page(hub, dict(request.query), f"http://{host}" if host else "", may_sign=may_sign)
        return Response(body=body, status_code=200, headers={
            "Content-Type": "text/html; charset=utf-8", "Cache-Control": DEMO_CACHE_CONTROL,
            "X-Content-Type-Options": "nosniff"})

    return answer(request, serve)
