"""`GET /v1/media/{contact_id}/{name}`: the hub links that attachments downloaded into the blob
store are given.

No API key: the link's signature is the credential, as with an S3 presigned URL, so a
destination can fetch what it was sent. The embedded hub serves the bytes, always as a
download, never rendered. On AWS the answer is a redirect to a presigned S3 URL made for this
request, so the link outlives the credentials of any Lambda session, and large files never pass
through Lambda (docs/media.md).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from typing import TYPE_CHECKING

from chalice import Blueprint, Response

from chalicelib.api.http import HttpRequest, answer

if TYPE_CHECKING:
    from chalicelib.adapters.blobs.base import BlobStore

media = Blueprint(__name__)


class MediaEndpoint:
    """Serves hub media links, given the blob store and the link secrets (read on first use)."""

    def __init__(self, blobs: BlobStore, link_secrets: Callable[[], list[str]], clock: Callable[[], datetime]) -> None:
        self._blobs = blobs
        self._link_secrets = link_secrets
        self._clock = clock

    def get(self, request: HttpRequest, contact_id: str, name: str) -> Response:
        return answer(request, lambda: self._open(request, contact_id, name))

    def _open(self, request: HttpRequest, contact_id: str, name: str) -> Response:
        from chalicelib.service.media import open_media_link

        opened = open_media_link(self._blobs, f"media/{contact_id}/{name}", request.query.get("expires"),
                                 request.query.get("signature"), self._link_secrets(), self._clock())
        if opened.redirect is not None:
            return Response(body="", status_code=307, headers={"Location": opened.redirect, "Cache-Control": "no-store"})
        return Response(body=opened.body, status_code=200, headers={
            "Content-Type": opened.content_type, "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "private, max-age=300",
        })


@media.route("/v1/media/{contact_id}/{name}", methods=["GET"])
def get_media(contact_id: str, name: str) -> Response:
    from chalicelib.bootstrap import get_hub

    return get_hub().media_endpoint.get(HttpRequest.of(media.current_request), contact_id, name)
