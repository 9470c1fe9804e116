"""`GET /v1/media/{contact_id}/{name}`: attachments the embedded hub downloaded, behind signed,
expiring links (on AWS, destinations get S3 presigned URLs instead).

No API key: the link's signature is the credential, as with an S3 presigned URL, so a
destination can fetch what it was sent. Files are always served as downloads, never rendered.
"""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.api.http import translate_errors
from chalicelib.bootstrap import get_hub

media = Blueprint(__name__)


@media.route("/v1/media/{contact_id}/{name}", methods=["GET"])
@translate_errors(media)
def get_media(contact_id: str, name: str) -> Response:
    from chalicelib.service.media import link_secrets, serve_local_media

    hub = get_hub()
    query = media.current_request.query_params or {}
    body, content_type = serve_local_media(
        hub.blobs, f"media/{contact_id}/{name}", query.get("expires"), query.get("signature"),
        link_secrets(hub.media_settings, hub.secrets, hub.data_dir), hub.clock(),
    )
    return Response(body=body, status_code=200, headers={
        "Content-Type": content_type, "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "private, max-age=300",
    })
