"""`GET /v1/media/{contact_id}/{name}`: the hub links that attachments downloaded into the blob
store are given.

No API key: the link's signature is the credential, as with an S3 presigned URL, so a
destination can fetch what it was sent. The embedded hub serves the bytes, always as a
download, never rendered. On AWS the answer is a redirect to a presigned S3 URL made for this
request, so the link outlives the credentials of any Lambda session, and large files never pass
through Lambda (docs/media.md).
"""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.api.http import translate_errors
from chalicelib.bootstrap import get_hub

media = Blueprint(__name__)


@media.route("/v1/media/{contact_id}/{name}", methods=["GET"])
@translate_errors(media)
def get_media(contact_id: str, name: str) -> Response:
    from chalicelib.service.media import link_secrets, open_media_link

    hub = get_hub()
    query = media.current_request.query_params or {}
    answer = open_media_link(
        hub.blobs, f"media/{contact_id}/{name}", query.get("expires"), query.get("signature"),
        link_secrets(hub.media_settings, hub.secrets, hub.data_dir, generate=not hub.settings.on_aws), hub.clock(),
    )
    if answer.redirect is not None:
        return Response(body="", status_code=307, headers={"Location": answer.redirect, "Cache-Control": "no-store"})
    return Response(body=answer.body, status_code=200, headers={
        "Content-Type": answer.content_type, "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "private, max-age=300",
    })
