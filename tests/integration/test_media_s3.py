"""Media on S3 under moto: presigned GET URLs (SigV4, bounded lifetime, no API call), and a
WhatsApp attachment that ends up encrypted in the bucket behind a link that serves it.

moto does not check presigned signatures or expiry: that S3 accepts these URLs is checked here
only as far as their shape (SigV4 query auth, `X-Amz-Expires`); see docs/media.md.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.credentials
import botocore.session
import pytest
import requests

from chalicelib.adapters.blobs.base import LazyBlobStore
from chalicelib.adapters.blobs.s3 import S3BlobStore
from chalicelib.adapters.media.http import MediaHttp
from chalicelib.domain.models import Attachment, Channel, Contact, ContentType, Party, Resolution
from chalicelib.errors import TransientError
from chalicelib.secrets import SecretResolver
from chalicelib.service.media import MediaLocalizer, MediaSettings

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 16


@pytest.fixture
def bucket(aws, unique):
    client = aws.client("s3")
    name = unique("hub-media")
    client.create_bucket(Bucket=name)
    yield name
    for obj in client.list_objects_v2(Bucket=name).get("Contents", []):
        client.delete_object(Bucket=name, Key=obj["Key"])
    client.delete_bucket(Bucket=name)


@pytest.fixture
def s3(aws, calls):
    return calls.watch(aws.client("s3"))


def link_params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_a_presigned_url_is_sigv4_names_the_object_and_serves_it(s3, bucket):
    blobs = S3BlobStore(s3, bucket, prefix="hub/")
    blobs.put("media/ct_1/0-photo.jpg", JPEG, content_type="image/jpeg")

    url = blobs.presigned_url("media/ct_1/0-photo.jpg", 3600)

    params = link_params(url)
    # botocore would presign with SigV2 in us-east-1, which buckets made since 2020 refuse.
    assert params["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and params["X-Amz-Expires"] == "3600"
    assert "AWSAccessKeyId" not in params
    assert urlsplit(url).path.endswith("/hub/media/ct_1/0-photo.jpg")
    assert bucket in url
    response = requests.get(url, timeout=5)
    assert (response.status_code, response.content) == (200, JPEG)
    assert response.headers["content-type"] == "image/jpeg"


def test_presigning_is_local_no_s3_call_is_made(s3, bucket, calls):
    blobs = S3BlobStore(s3, bucket)
    calls.clear()

    blobs.presigned_url("media/ct_1/0-a.pdf", 60)
    blobs.presigned_url("media/ct_1/1-b.pdf", 60)

    assert calls.names == []


def test_links_live_at_most_seven_days(s3, bucket):
    blobs = LazyBlobStore(lambda: S3BlobStore(s3, bucket))

    assert link_params(blobs.presigned_url("media/ct_1/0-a.pdf", 604800))["X-Amz-Expires"] == "604800"
    with pytest.raises(ValueError):
        blobs.presigned_url("media/ct_1/0-a.pdf", 604801)


def test_presigning_without_credentials_is_transient(aws, bucket):
    session = botocore.session.get_session()
    session.register_component("credential_provider", botocore.credentials.CredentialResolver([]))
    anonymous = boto3.Session(botocore_session=session, region_name=aws.region_name).client("s3")

    with pytest.raises(TransientError, match="NoCredentialsError"):
        S3BlobStore(anonymous, bucket).presigned_url("media/ct_1/0-a.pdf", 60)


def test_other_operations_of_the_shared_client_keep_working(s3, bucket):
    blobs = S3BlobStore(s3, bucket)
    blobs.presigned_url("media/ct_1/0-a.pdf", 60)

    blobs.put("raw/ct_1.json", b"{}", content_type="application/json")
    assert blobs.get("raw/ct_1.json") == b"{}"


class FakeGraph:
    """Graph's media lookup and the download it points to, on 127.0.0.1."""

    def __init__(self, data: bytes) -> None:
        self.seen: list[tuple[str, str]] = []
        graph = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - stdlib name
                graph.seen.append((self.path, self.headers.get("Authorization", "")))
                if self.path == "/v24.0/1003383421387256":
                    body = json.dumps({"url": f"{graph.base}/file/1003383421387256", "mime_type": "image/jpeg",
                                       "file_size": len(data), "id": "1003383421387256"}).encode()
                elif self.path == "/file/1003383421387256":
                    body = data
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeGraph:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_a_whatsapp_image_is_stored_encrypted_and_linked(s3, bucket):
    contact = Contact(
        id="ct_01JMEDIA0000000000000000AB", provider="meta", channel=Channel.WHATSAPP, provider_message_id="wamid.1",
        account="106540352242922", sender=Party(), received_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
        content_type=ContentType.MEDIA, customer_id="cus_1", case_id="cas_1",
        resolution=Resolution(customer_id="cus_1", created_customer=True, rule="new_customer"),
        attachments=[Attachment(provider_media_id="1003383421387256", content_type="image/jpeg", caption="Broken seal")],
    )
    with FakeGraph(JPEG) as graph:
        settings = MediaSettings.model_validate({"whatsapp": {"access_token": "EAAGtoken", "graph_url": graph.base}})
        localizer = MediaLocalizer(settings, S3BlobStore(s3, bucket), SecretResolver({}), http=MediaHttp())

        result = localizer.localize(contact)

    key = "media/ct_01JMEDIA0000000000000000AB/0-attachment.jpg"
    head = s3.head_object(Bucket=bucket, Key=key)
    assert (head["ContentType"], head["ServerSideEncryption"], head["ContentLength"]) == ("image/jpeg", "AES256", len(JPEG))
    [attachment] = result.attachments
    assert link_params(attachment.url)["X-Amz-Expires"] == "604800"
    assert requests.get(attachment.url, timeout=5).content == JPEG
    assert result.enrichment["media"]["attachments"][0]["key"] == key
    assert [auth for _, auth in graph.seen] == ["Bearer EAAGtoken"] * 2


def test_on_aws_a_hub_link_redirects_to_a_fresh_presigned_url_that_serves_the_file(aws, s3, bucket, tmp_path):
    """With `media.public_url`, links are the hub's own and live their full ttl; each GET is
    answered with a presigned URL made for it, so no Lambda session's expiry can end a link."""
    from chalice.test import Client

    from chalicelib.bootstrap import Hub, use_hub
    from chalicelib.settings import Settings

    config = tmp_path / "hub.yaml"
    config.write_text("media: {public_url: 'https://hub.example.com/api', link_secret: env:MEDIA_LINK_SECRET}\n")
    settings = Settings(runtime="aws", stage="it", config_path=str(config), bucket=bucket, data_dir=str(tmp_path),
                        environ={"MEDIA_LINK_SECRET": "a-link-secret-of-at-least-32-characters"})
    hub = Hub(settings, aws_client=lambda service: {"s3": s3}[service])
    use_hub(hub)
    from app import app

    try:
        key = "media/ct_01JMEDIA0000000000000000AB/0-attachment.jpg"
        hub.blobs.put(key, JPEG, content_type="image/jpeg")
        link = urlsplit(hub.blobs.presigned_url(key, 604800))
        assert (link.scheme, link.netloc, link.path) == ("https", "hub.example.com", "/api/v1/" + key)

        with Client(app) as client:
            answer = client.http.get(link.path.removeprefix("/api") + "?" + link.query)
            forged = client.http.get(link.path.removeprefix("/api") + "?" + link.query.replace("signature=", "signature=x"))

        assert answer.status_code == 307 and answer.headers["Cache-Control"] == "no-store"
        target = answer.headers["Location"]
        assert link_params(target)["X-Amz-Expires"] == "300" and bucket in target
        assert requests.get(target, timeout=5).content == JPEG
        assert forged.status_code == 403 and "Location" not in forged.headers
    finally:
        use_hub(None)
