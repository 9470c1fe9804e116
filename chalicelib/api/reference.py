"""`GET /v1/openapi.json` (no key: a contract holds no data): the hub's OpenAPI document.

Built on the first request and kept for the process: it depends on the code only. Nothing of
`chalicelib.api.openapi` (pydantic schema generation) loads before that request.
"""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.api.http import HttpRequest, answer

reference = Blueprint(__name__)

_document: str | None = None


def document_text(routes) -> str:
    """The rendered document for the route table `routes`, built once per process."""
    global _document
    # Two first requests at once (the embedded runtime's threads) may both build it: the same text.
    if _document is None:
        from chalicelib.api.openapi.document import build_document, render

        _document = render(build_document(routes))
    return _document


@reference.route("/v1/openapi.json", methods=["GET"])
def openapi_document() -> Response:
    request = HttpRequest.of(reference.current_request)
    # A blueprint holds the app it was registered on; its route table is the document's source.
    routes = reference.current_app.routes
    return answer(request, lambda: Response(body=document_text(routes), status_code=200,
                                            headers={"Content-Type": "application/json",
                                                     "Cache-Control": "public, max-age=300"}))
