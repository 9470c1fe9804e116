"""Media localization: the three sources against a scripted HTTP server, limits, type checks,
redirect safety, secrets kept out of logs and errors, transient vs permanent, and local links."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from chalicelib.adapters.blobs.base import BlobStore, LazyBlobStore
from chalicelib.adapters.blobs.links import HubLinkedBlobStore, HubLinks, link_signature, load_or_create_link_secret
from chalicelib.adapters.blobs.local import LocalBlobStore
from chalicelib.adapters.media.base import HostPolicy, Reason
from chalicelib.adapters.media.http import MediaHttp
from chalicelib.domain.models import Attachment, Channel, Contact, ContentType, Party, Resolution
from chalicelib.errors import ConfigError, ForbiddenError, NotFoundError, RetryLaterError, TransientError
from chalicelib.secrets import SecretResolver
from chalicelib.service.media import (
    MediaLocalizer,
    MediaSettings,
    content_type_for_key,
    decide_type,
    safe_filename,
    MediaAnswer,
    open_media_link,
    sniff,
    type_allowed,
)

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000
LINK_SECRET = "local-link-secret-0123456789abcdef0123456789"
BOT_TOKEN = "123456789:AAHsecretBOTtoken_value-xyz"
WA_TOKEN = "EAAGsecretWhatsAppToken"
TWILIO_SID = "AC" + "a" * 32
TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"1 0 obj <<>> endobj\n" * 20
OGG = b"OggS\x00\x02" + b"\x00" * 100
HTML = b"<!DOCTYPE html><html><script>alert(1)</script></html>"


# --- a scripted provider -------------------------------------------------------------------------


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Send no Content-Length and close the connection after the body (a streamed answer).
    stream: bool = False
    #: Seconds to wait before answering, and between streamed chunks.
    delay: float = 0.0
    #: Bytes per streamed chunk.
    chunk: int = 32 * 1024


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


class FakeProvider:
    """A real HTTP server on 127.0.0.1 that plays Graph, Twilio or Telegram: answers by path
    (query ignored) and records every request."""

    def __init__(self) -> None:
        #: Path → the answer, or a list of answers given in turn (the last one repeats).
        self.routes: dict[str, Answer | list[Answer]] = {}
        self.seen: list[Seen] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - stdlib name
                parts = urlsplit(self.path)
                provider.seen.append(Seen(parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()}))
                answer = provider.routes.get(parts.path, Answer(404, b'{"error": "no route"}'))
                if isinstance(answer, list):
                    answer = answer.pop(0) if len(answer) > 1 else answer[0]
                try:
                    if answer.delay and not answer.stream:
                        time.sleep(answer.delay)
                    self.send_response(answer.status)
                    for key, value in answer.headers.items():
                        self.send_header(key, value)
                    if answer.stream:
                        self.send_header("Connection", "close")
                        self.end_headers()
                        for start in range(0, len(answer.body), answer.chunk):
                            self.wfile.write(answer.body[start:start + answer.chunk])
                            self.wfile.flush()
                            time.sleep(answer.delay)
                    else:
                        if "content-length" not in {k.lower() for k in answer.headers}:
                            self.send_header("Content-Length", str(len(answer.body)))
                        self.end_headers()
                        self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading: what a size limit does

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]

    def __enter__(self) -> FakeProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def server():
    with FakeProvider() as provider:
        yield provider


@pytest.fixture
def other_server():
    with FakeProvider() as provider:
        yield provider


# --- helpers -------------------------------------------------------------------------------------


def contact(provider: str, channel: Channel, *attachments: Attachment, contact_id: str = "ct_01JMEDIA0000000000000000AB") -> Contact:
    return Contact(
        id=contact_id, provider=provider, channel=channel, provider_message_id="m1", account="acct",
        sender=Party(), received_at=datetime.fromtimestamp(NOW, timezone.utc), content_type=ContentType.MEDIA,
        attachments=list(attachments), customer_id="cus_1", case_id="cas_1",
        resolution=Resolution(customer_id="cus_1", created_customer=True, rule="new_customer"),
    )


def blob_store(tmp_path, **kwargs) -> LocalBlobStore:
    options = {"link_base_url": "http://hub.test", "link_secrets": [LINK_SECRET], "clock": lambda: NOW} | kwargs
    return LocalBlobStore(str(tmp_path / "blobs"), **options)


def localizer(blobs: BlobStore, http: MediaHttp | None = None, **settings) -> MediaLocalizer:
    return MediaLocalizer(
        MediaSettings.model_validate(settings), blobs, SecretResolver({}),
        http=http or MediaHttp(read_timeout=2.0),
        clock=lambda: datetime.fromtimestamp(NOW, timezone.utc),
    )


def whatsapp(server: FakeProvider, **extra) -> dict:
    return {"whatsapp": {"access_token": [WA_TOKEN], "graph_url": server.base, **extra}}


def twilio(**extra) -> dict:
    return {"twilio": {"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN, "api_hosts": ["127.0.0.1"],
                       "media_hosts": ["localhost"], "allow_http": True, **extra}}


def telegram(server: FakeProvider) -> dict:
    return {"telegram": {"bot_token": BOT_TOKEN, "api_url": server.base}}


def graph_media(server: FakeProvider, media_id: str, data: bytes, mime: str = "image/jpeg", **download) -> None:
    server.routes[f"/v24.0/{media_id}"] = Answer(200, json.dumps({
        "messaging_product": "whatsapp", "url": f"{server.base}/lookaside/{media_id}", "mime_type": mime,
        "sha256": "x", "file_size": str(len(data)), "id": media_id,
    }).encode(), {"Content-Type": "application/json"})
    server.routes[f"/lookaside/{media_id}"] = Answer(200, data, {"Content-Type": mime}, **download)


def report(result: Contact) -> list[dict]:
    return result.enrichment["media"]["attachments"]


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# --- WhatsApp Cloud API --------------------------------------------------------------------------


def test_whatsapp_media_id_is_looked_up_downloaded_stored_and_linked(server, tmp_path):
    graph_media(server, "1003383421387256", JPEG)
    blobs = blob_store(tmp_path)
    original = Attachment(provider_media_id="1003383421387256", content_type="image/jpeg", caption="Broken seal",
                          url="https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1003383421387256")

    result = localizer(blobs, **whatsapp(server)).localize(contact("meta", Channel.WHATSAPP, original))

    [attachment] = result.attachments
    key = "media/ct_01JMEDIA0000000000000000AB/0-attachment.jpg"
    assert blobs.get(key) == JPEG
    assert attachment.url.startswith(f"http://hub.test/v1/{key}?expires={NOW + 604800}&signature=")
    assert (attachment.provider_media_id, attachment.caption) == ("1003383421387256", "Broken seal")
    assert (attachment.content_type, attachment.size) == ("image/jpeg", len(JPEG))
    assert server.paths() == ["/v24.0/1003383421387256", "/lookaside/1003383421387256"]
    assert [s.headers["authorization"] for s in server.seen] == [f"Bearer {WA_TOKEN}"] * 2
    assert all("user-agent" in s.headers for s in server.seen)
    [entry] = report(result)
    assert entry["status"] == "stored" and entry["key"] == key and entry["size"] == len(JPEG)
    assert entry["link_expires_at"] == "2027-01-22T08:00:00Z"


def test_whatsapp_tries_the_next_access_token_when_graph_refuses_one(server, tmp_path):
    graph_media(server, "42", PDF, mime="application/pdf")
    server.routes["/v24.0/42"] = [
        Answer(401, b'{"error": {"code": 190, "message": "Error validating access token"}}'),
        server.routes["/v24.0/42"],
    ]
    settings = whatsapp(server)
    settings["whatsapp"]["access_token"] = ["EAAGrevoked", WA_TOKEN]

    result = localizer(blob_store(tmp_path), **settings).localize(
        contact("meta", Channel.WHATSAPP, Attachment(provider_media_id="42", filename="invoice-1042.pdf"))
    )

    assert report(result)[0]["status"] == "stored"
    assert result.attachments[0].url.startswith("http://hub.test/v1/media/ct_01JMEDIA0000000000000000AB/0-invoice-1042.pdf?")
    assert [s.headers["authorization"] for s in server.seen] == ["Bearer EAAGrevoked", f"Bearer {WA_TOKEN}", f"Bearer {WA_TOKEN}"]


def test_whatsapp_download_url_on_a_host_not_allowed_is_refused_without_calling_it(server, other_server, tmp_path):
    server.routes["/v24.0/7"] = Answer(200, json.dumps({"url": f"http://localhost:{other_server.port}/steal",
                                                         "mime_type": "image/jpeg"}).encode())
    original = Attachment(provider_media_id="7", content_type="image/jpeg")

    result = localizer(blob_store(tmp_path), **whatsapp(server)).localize(contact("meta", Channel.WHATSAPP, original))

    assert result.attachments == [original]
    assert report(result)[0]["reason"] == Reason.HOST_NOT_ALLOWED
    assert other_server.seen == []


@pytest.mark.parametrize("status, body, reason", [
    (400, b'{"error": {"code": 100, "message": "Unsupported get request"}}', Reason.NOT_FOUND),
    (404, b"{}", Reason.NOT_FOUND),
    (403, b'{"error": {"code": 10, "message": "Permission denied"}}', Reason.UNAUTHORIZED),
    (200, b"not json", Reason.BAD_RESPONSE),
    (200, b'{"mime_type": "image/jpeg"}', Reason.BAD_RESPONSE),
])
def test_whatsapp_permanent_lookup_failures_are_reported_and_the_contact_goes_on(server, tmp_path, status, body, reason):
    server.routes["/v24.0/9"] = Answer(status, body)
    original = Attachment(provider_media_id="9", content_type="image/jpeg", url="https://lookaside.fbsbx.com/x")

    result = localizer(blob_store(tmp_path), **whatsapp(server)).localize(contact("meta", Channel.WHATSAPP, original))

    assert result.attachments == [original]
    [entry] = report(result)
    assert (entry["status"], entry["reason"]) == ("rejected", reason)
    assert WA_TOKEN not in json.dumps(entry)


@pytest.mark.parametrize("answer", [
    Answer(500, b"{}"),
    Answer(503, b"{}"),
    # Graph throttles with a 400 and an error code.
    Answer(400, b'{"error": {"code": 80007, "message": "rate limit"}}'),
])
def test_whatsapp_transient_lookup_failures_raise_so_the_queue_retries(server, tmp_path, answer):
    server.routes["/v24.0/9"] = answer
    media = localizer(blob_store(tmp_path), **whatsapp(server))
    item = contact("meta", Channel.WHATSAPP, Attachment(provider_media_id="9", content_type="image/jpeg"))

    with pytest.raises(TransientError) as raised:
        media.localize(item)

    assert WA_TOKEN not in str(raised.value)
    deferred = media.localize(item, retry_transient=False)
    assert report(deferred)[0]["status"] == "deferred"
    assert deferred.attachments == item.attachments


def test_a_retry_after_on_429_becomes_the_queue_delay(server, tmp_path):
    server.routes["/v24.0/9"] = Answer(429, b"{}", {"Retry-After": "30"})

    with pytest.raises(RetryLaterError) as raised:
        localizer(blob_store(tmp_path), **whatsapp(server)).localize(
            contact("meta", Channel.WHATSAPP, Attachment(provider_media_id="9", content_type="image/jpeg"))
        )

    assert raised.value.delay_seconds == 30


def test_messenger_attachments_on_the_same_provider_are_left_alone(server, tmp_path):
    original = Attachment(url="https://scontent.xx.fbcdn.net/v/t1.15752-9/example.jpg")

    result = localizer(blob_store(tmp_path), **whatsapp(server)).localize(contact("meta", Channel.MESSENGER, original))

    assert result.attachments == [original] and "media" not in result.enrichment
    assert server.seen == []


# --- Messenger and Instagram: files on Meta's CDN ---------------------------------------------------


def meta_cdn(server: FakeProvider) -> dict:
    return {"meta_cdn": {"download_hosts": ["127.0.0.1"], "allow_http": True}}


def test_a_messenger_image_is_fetched_through_the_cdn_redirect_and_stored(server, tmp_path):
    server.routes["/lookaside/ig_messaging_cdn/"] = Answer(302, b"", {"Location": f"{server.base}/cdn/photo.jpg"})
    server.routes["/cdn/photo.jpg"] = Answer(200, JPEG, {"Content-Type": "image/jpeg"})
    image = Attachment(url=f"{server.base}/lookaside/ig_messaging_cdn/?asset_id=1&signature=s", kind="image")

    result = localizer(blob_store(tmp_path), **meta_cdn(server)).localize(contact("meta", Channel.MESSENGER, image))

    [entry] = report(result)
    assert (entry["source"], entry["status"], entry["content_type"]) == ("meta_cdn", "stored", "image/jpeg")
    assert result.attachments[0].url.startswith("http://hub.test/v1/media/") and result.attachments[0].kind == "image"
    assert [seen.path for seen in server.seen] == ["/lookaside/ig_messaging_cdn/", "/cdn/photo.jpg"]
    assert all("authorization" not in seen.headers for seen in server.seen), "the CDN needs no credential"


@pytest.mark.parametrize("kind", ["share", "ig_reel", "reel", "template", None])
def test_a_shared_post_or_reel_is_a_link_not_a_file_and_is_left_alone(server, tmp_path, kind):
    link = Attachment(url=f"{server.base}/p/xyz", kind=kind)

    result = localizer(blob_store(tmp_path), **meta_cdn(server)).localize(contact("meta", Channel.MESSENGER, link))

    assert result.attachments == [link] and "media" not in result.enrichment and server.seen == []


@pytest.mark.parametrize("kind", ["image", "video", "story_mention"])
def test_instagram_media_keeps_metas_cdn_url_as_metas_terms_ask(server, tmp_path, kind):
    image = Attachment(url=f"{server.base}/lookaside/ig_messaging_cdn/?asset_id=1", kind=kind)

    result = localizer(blob_store(tmp_path), **meta_cdn(server)).localize(contact("meta", Channel.INSTAGRAM, image))

    assert result.attachments == [image] and "media" not in result.enrichment and server.seen == []


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        ([Answer(403, b"URL signature expired")], Reason.NOT_FOUND),
        ([Answer(302, b"", {"Location": "https://attacker.example/x.jpg"})], Reason.HOST_NOT_ALLOWED),
        ([Answer(302, b"", {"Location": "/cdn/a"})] * 3 + [Answer(200, JPEG)], Reason.REDIRECT_REFUSED),
    ],
)
def test_meta_cdn_downloads_that_cannot_succeed_are_reported(server, tmp_path, answers, reason):
    server.routes["/cdn/a"] = answers
    image = Attachment(url=f"{server.base}/cdn/a", kind="file")

    result = localizer(blob_store(tmp_path), **meta_cdn(server)).localize(contact("meta", Channel.MESSENGER, image))

    assert report(result)[0]["reason"] == reason and result.attachments == [image]


def test_a_cdn_url_on_a_host_not_allowed_is_never_fetched(server, tmp_path):
    image = Attachment(url=f"{server.base}/cdn/a", kind="image")

    result = localizer(blob_store(tmp_path)).localize(contact("meta", Channel.MESSENGER, image))

    assert report(result)[0]["reason"] == Reason.HOST_NOT_ALLOWED and server.seen == []


# --- Slack files: the bot token ---------------------------------------------------------------------


def slack(server: FakeProvider, *tokens: str) -> dict:
    return {"slack": {"bot_token": list(tokens or ["xoxb-one"]), "api_url": server.base, "download_hosts": ["127.0.0.1"]}}


def test_a_slack_file_is_fetched_with_the_bot_token_and_stored(server, tmp_path):
    server.routes["/files-pri/T0-F0ABC/invoice.pdf"] = Answer(200, PDF, {"Content-Type": "application/pdf"})
    file = Attachment(url=f"{server.base}/files-pri/T0-F0ABC/invoice.pdf", provider_media_id="F0ABC",
                      content_type="application/pdf", filename="invoice.pdf", size=len(PDF))

    result = localizer(blob_store(tmp_path), **slack(server)).localize(contact("slack", Channel.SLACK, file))

    assert (report(result)[0]["source"], report(result)[0]["status"]) == ("slack", "stored")
    assert [seen.headers.get("authorization") for seen in server.seen] == ["Bearer xoxb-one"]


def test_a_token_that_gets_slacks_sign_in_page_is_not_taken_for_the_file(server, tmp_path):
    """A token without access to the file gets Slack's HTML sign-in page with a 200: the next
    token is tried, and the page is never stored as the customer's file."""
    server.routes["/files-pri/T0-F0ABC/invoice.pdf"] = [
        Answer(200, b"<!DOCTYPE html><html>Sign in to Slack</html>", {"Content-Type": "text/html; charset=utf-8"}),
        Answer(200, PDF, {"Content-Type": "application/pdf"}),
    ]
    file = Attachment(url=f"{server.base}/files-pri/T0-F0ABC/invoice.pdf", content_type="application/pdf")

    result = localizer(blob_store(tmp_path), **slack(server, "xoxb-other-workspace", "xoxb-ours")).localize(
        contact("slack", Channel.SLACK, file))

    assert report(result)[0]["status"] == "stored" and report(result)[0]["content_type"] == "application/pdf"
    assert [s.headers["authorization"] for s in server.seen] == ["Bearer xoxb-other-workspace", "Bearer xoxb-ours"]


def test_a_slack_connect_file_known_by_id_only_is_looked_up_with_files_info(server, tmp_path):
    server.routes["/api/files.info"] = Answer(200, json.dumps({"ok": True, "file": {
        "id": "F0SHARED", "mimetype": "image/png", "url_private": f"{server.base}/files-pri/T9-F0SHARED/shot.png"}}).encode(),
        {"Content-Type": "application/json"})
    server.routes["/files-pri/T9-F0SHARED/shot.png"] = Answer(200, PNG, {"Content-Type": "image/png"})

    result = localizer(blob_store(tmp_path), **slack(server)).localize(
        contact("slack", Channel.SLACK, Attachment(provider_media_id="F0SHARED")))

    assert report(result)[0]["status"] == "stored" and report(result)[0]["content_type"] == "image/png"
    assert server.seen[0].query == {"file": ["F0SHARED"]}


def test_slack_rate_limiting_is_transient_and_a_token_never_follows_a_redirect_elsewhere(server, other_server, tmp_path):
    server.routes["/api/files.info"] = Answer(429, b'{"ok": false, "error": "ratelimited"}', {"Retry-After": "7"})
    with pytest.raises(RetryLaterError):
        localizer(blob_store(tmp_path), **slack(server)).localize(
            contact("slack", Channel.SLACK, Attachment(provider_media_id="F0SHARED")))

    other_server.routes["/cdn/x.png"] = Answer(200, PNG, {"Content-Type": "image/png"})
    server.routes["/files-pri/T0-F1/x.png"] = Answer(302, b"", {"Location": f"http://localhost:{other_server.port}/cdn/x.png"})
    settings = slack(server)
    settings["slack"]["download_hosts"] = ["127.0.0.1", "localhost"]
    result = localizer(blob_store(tmp_path), **settings).localize(
        contact("slack", Channel.SLACK, Attachment(url=f"{server.base}/files-pri/T0-F1/x.png", content_type="image/png")))

    assert report(result)[0]["status"] == "stored"
    assert "authorization" not in other_server.seen[0].headers


def test_slack_files_without_a_token_are_reported_as_not_configured(tmp_path):
    result = localizer(blob_store(tmp_path)).localize(
        contact("slack", Channel.SLACK, Attachment(url="https://files.slack.com/files-pri/T0-F1/a.pdf")))

    assert report(result)[0]["reason"] == Reason.NOT_CONFIGURED


def test_whatsapp_without_a_token_is_reported_as_not_configured(tmp_path):
    result = localizer(blob_store(tmp_path)).localize(
        contact("meta", Channel.WHATSAPP, Attachment(provider_media_id="9", content_type="image/jpeg"))
    )

    assert report(result)[0]["reason"] == Reason.NOT_CONFIGURED


def test_a_malformed_media_id_never_reaches_graph(server, tmp_path):
    result = localizer(blob_store(tmp_path), **whatsapp(server)).localize(
        contact("meta", Channel.WHATSAPP, Attachment(provider_media_id="../me/accounts", content_type="image/jpeg"))
    )

    assert report(result)[0]["reason"] == Reason.BAD_REFERENCE and server.seen == []


# --- Twilio --------------------------------------------------------------------------------------


def twilio_media(server: FakeProvider, redirect_to: str | None = None) -> str:
    path = f"/2010-04-01/Accounts/{TWILIO_SID}/Messages/MM2/Media/ME3"
    if redirect_to is None:
        server.routes[path] = Answer(200, JPEG, {"Content-Type": "image/jpeg"})
    else:
        server.routes[path] = Answer(307, b"", {"Location": redirect_to})
    return f"{server.base}{path}"


def test_twilio_follows_one_redirect_to_its_media_host_without_credentials(server, tmp_path):
    media_url = twilio_media(server, redirect_to=f"http://localhost:{server.port}/store/ME3?X-Amz-Signature=abc")
    server.routes["/store/ME3"] = Answer(200, JPEG, {"Content-Type": "image/jpeg"})
    blobs = blob_store(tmp_path)

    result = localizer(blobs, **twilio()).localize(
        contact("twilio", Channel.WHATSAPP, Attachment(url=media_url, content_type="image/jpeg"))
    )

    assert report(result)[0]["status"] == "stored"
    assert blobs.get("media/ct_01JMEDIA0000000000000000AB/0-attachment.jpg") == JPEG
    first, second = server.seen
    assert first.headers["authorization"].startswith("Basic ")
    assert "authorization" not in second.headers
    assert second.query == {"X-Amz-Signature": ["abc"]}


def test_twilio_without_credentials_fetches_the_public_url_as_is(server, tmp_path):
    media_url = twilio_media(server)
    settings = {"twilio": {"api_hosts": ["127.0.0.1"], "allow_http": True}}

    result = localizer(blob_store(tmp_path), **settings).localize(
        contact("twilio", Channel.MMS, Attachment(url=media_url, content_type="image/jpeg"))
    )

    assert report(result)[0]["status"] == "stored"
    assert "authorization" not in server.seen[0].headers


def test_twilio_redirect_to_a_host_not_allowed_is_refused(server, other_server, tmp_path):
    media_url = twilio_media(server, redirect_to=f"{other_server.base}/elsewhere")

    result = localizer(blob_store(tmp_path), **twilio()).localize(
        contact("twilio", Channel.MMS, Attachment(url=media_url, content_type="image/jpeg"))
    )

    assert report(result)[0]["reason"] == Reason.REDIRECT_REFUSED
    assert other_server.seen == []
    assert result.attachments[0].url == media_url


def test_twilio_follows_at_most_one_redirect(server, tmp_path):
    media_url = twilio_media(server, redirect_to=f"http://localhost:{server.port}/hop")
    server.routes["/hop"] = Answer(302, b"", {"Location": f"http://localhost:{server.port}/hop2"})

    result = localizer(blob_store(tmp_path), **twilio()).localize(
        contact("twilio", Channel.MMS, Attachment(url=media_url, content_type="image/jpeg"))
    )

    assert report(result)[0]["reason"] == Reason.REDIRECT_REFUSED
    assert "/hop2" not in server.paths()


@pytest.mark.parametrize("url", [
    "https://evil.example/2010-04-01/Accounts/AC/Media/ME3",
    "https://api.twilio.com.evil.example/Media/ME3",
    "https://user:pass@api.twilio.com/Media/ME3",
    "http://api.twilio.com/Media/ME3",
    "file:///etc/passwd",
])
def test_a_media_url_off_twilios_api_host_never_gets_credentials_or_a_request(tmp_path, url):
    settings = {"twilio": {"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN}}
    result = localizer(blob_store(tmp_path), **settings).localize(
        contact("twilio", Channel.MMS, Attachment(url=url, content_type="image/jpeg"))
    )

    assert report(result)[0]["reason"] == Reason.HOST_NOT_ALLOWED


@pytest.mark.parametrize("status, reason", [(404, Reason.NOT_FOUND), (401, Reason.UNAUTHORIZED), (418, Reason.PROVIDER_REJECTED)])
def test_twilio_permanent_answers_are_reported(server, tmp_path, status, reason):
    media_url = twilio_media(server)
    server.routes[urlsplit(media_url).path] = Answer(status, b"{}")

    result = localizer(blob_store(tmp_path), **twilio()).localize(
        contact("twilio", Channel.MMS, Attachment(url=media_url, content_type="image/jpeg"))
    )

    assert report(result)[0]["reason"] == reason


def test_twilio_5xx_is_transient(server, tmp_path):
    media_url = twilio_media(server)
    server.routes[urlsplit(media_url).path] = Answer(502, b"")

    with pytest.raises(TransientError):
        localizer(blob_store(tmp_path), **twilio()).localize(
            contact("twilio", Channel.MMS, Attachment(url=media_url, content_type="image/jpeg"))
        )


# --- Telegram ------------------------------------------------------------------------------------


def telegram_file(server: FakeProvider, file_id: str, data: bytes, file_path: str = "photos/file_12.jpg") -> None:
    server.routes[f"/bot{BOT_TOKEN}/getFile"] = Answer(200, json.dumps({
        "ok": True, "result": {"file_id": file_id, "file_unique_id": "u", "file_size": len(data), "file_path": file_path},
    }).encode(), {"Content-Type": "application/json"})
    server.routes[f"/file/bot{BOT_TOKEN}/{file_path}"] = Answer(200, data, {"Content-Type": "application/octet-stream"})


def test_telegram_file_id_goes_through_get_file_and_the_token_is_never_logged(server, tmp_path, caplog):
    telegram_file(server, "AgACAgQAAxkBAAIBQWYlarge", JPEG)
    caplog.set_level(logging.DEBUG)
    blobs = blob_store(tmp_path)

    result = localizer(blobs, **telegram(server)).localize(
        contact("telegram", Channel.TELEGRAM, Attachment(provider_media_id="AgACAgQAAxkBAAIBQWYlarge", content_type="image/jpeg"))
    )

    assert server.seen[0].query == {"file_id": ["AgACAgQAAxkBAAIBQWYlarge"]}
    assert server.paths()[1] == f"/file/bot{BOT_TOKEN}/photos/file_12.jpg"
    assert blobs.get("media/ct_01JMEDIA0000000000000000AB/0-file_12.jpg") == JPEG
    assert result.attachments[0].filename == "file_12.jpg"
    # urllib3 logs each request line at DEBUG: the records exist, but with the token redacted.
    assert any("bot<redacted>" in r.getMessage() for r in caplog.records)
    assert BOT_TOKEN not in caplog.text and BOT_TOKEN.split(":")[1] not in caplog.text
    assert BOT_TOKEN not in json.dumps(result.model_dump(mode="json"))


def test_telegram_errors_and_their_tracebacks_never_carry_the_token(server, tmp_path, caplog):
    server.routes[f"/bot{BOT_TOKEN}/getFile"] = Answer(200, b"{}", delay=1.0)
    caplog.set_level(logging.DEBUG)
    media = localizer(blob_store(tmp_path), http=MediaHttp(read_timeout=0.2), **telegram(server))

    with pytest.raises(TransientError) as raised:
        media.localize(contact("telegram", Channel.TELEGRAM, Attachment(provider_media_id="BQACAgQ", content_type="application/pdf")))

    rendered = "".join(traceback.format_exception(raised.value))
    assert BOT_TOKEN not in rendered and BOT_TOKEN not in repr(raised.value)
    assert BOT_TOKEN not in caplog.text


def test_telegram_download_timeout_is_transient_and_token_free(server, tmp_path):
    telegram_file(server, "BQAC", PDF, file_path="documents/file_3.pdf")
    server.routes[f"/file/bot{BOT_TOKEN}/documents/file_3.pdf"] = Answer(200, PDF, delay=1.0)
    media = localizer(blob_store(tmp_path), http=MediaHttp(read_timeout=0.2), **telegram(server))

    with pytest.raises(TransientError) as raised:
        media.localize(contact("telegram", Channel.TELEGRAM, Attachment(provider_media_id="BQAC", content_type="application/pdf")))

    assert BOT_TOKEN not in "".join(traceback.format_exception(raised.value))


@pytest.mark.parametrize("status, body, outcome", [
    (400, {"ok": False, "error_code": 400, "description": "Bad Request: file is too big"}, Reason.TOO_LARGE),
    (400, {"ok": False, "error_code": 400, "description": "Bad Request: invalid file_id"}, Reason.NOT_FOUND),
    (401, {"ok": False, "error_code": 401, "description": "Unauthorized"}, Reason.UNAUTHORIZED),
    (200, {"ok": True, "result": {"file_id": "x", "file_path": "../../etc/passwd"}}, Reason.BAD_RESPONSE),
    (429, {"ok": False, "error_code": 429, "parameters": {"retry_after": 17}}, RetryLaterError),
    (502, {"ok": False}, TransientError),
])
def test_telegram_get_file_answers_are_classified(server, tmp_path, status, body, outcome):
    server.routes[f"/bot{BOT_TOKEN}/getFile"] = Answer(status, json.dumps(body).encode())
    media = localizer(blob_store(tmp_path), **telegram(server))
    item = contact("telegram", Channel.TELEGRAM, Attachment(provider_media_id="BQAC", content_type="application/pdf"))

    if isinstance(outcome, type):
        with pytest.raises(outcome) as raised:
            media.localize(item)
        if outcome is RetryLaterError:
            assert raised.value.delay_seconds == 17
        assert BOT_TOKEN not in str(raised.value)
    else:
        entry = report(media.localize(item))[0]
        assert entry["reason"] == outcome and BOT_TOKEN not in json.dumps(entry)
    assert len(server.seen) == 1


# --- bytes that came with the webhook (email attachments) -----------------------------------------


def test_embedded_email_attachments_are_stored_and_linked_by_their_sniffed_type(tmp_path):
    blobs = blob_store(tmp_path)
    files = (
        Attachment(content_type="application/pdf", filename="Rechnung-März.pdf", size=len(PDF)),
        # Mail clients often say octet-stream; the bytes say PNG.
        Attachment(content_type="application/octet-stream", filename="bild", size=len(PNG)),
        Attachment(content_type="text/plain", filename="no-bytes.txt", size=3),
    )

    result = localizer(blobs).localize(contact("mailgun", Channel.EMAIL, *files), embedded={0: PDF, 1: PNG})

    pdf, png, untouched = result.attachments
    assert blobs.get("media/ct_01JMEDIA0000000000000000AB/0-Rechnung-Marz.pdf") == PDF  # ASCII keys
    assert blobs.get("media/ct_01JMEDIA0000000000000000AB/1-bild.png") == PNG
    assert pdf.url.startswith("http://hub.test/v1/media/") and (pdf.filename, pdf.size) == ("Rechnung-März.pdf", len(PDF))
    assert (png.content_type, png.filename) == ("image/png", "bild")
    assert untouched == files[2]
    assert [(e["index"], e["source"], e["status"]) for e in report(result)] == [(0, "embedded", "stored"), (1, "embedded", "stored")]


def test_embedded_bytes_get_the_same_limits_and_type_checks_as_downloads(tmp_path):
    files = (
        Attachment(content_type="application/pdf", filename="big.pdf"),
        Attachment(content_type="text/html", filename="page.html"),
        Attachment(content_type="application/pdf", filename="lies.pdf"),  # HTML inside
    )

    result = localizer(blob_store(tmp_path), max_bytes=2048).localize(
        contact("sendgrid", Channel.EMAIL, *files), embedded={0: PDF + b"\0" * 4096, 1: HTML, 2: HTML}
    )

    assert [(e["status"], e["reason"]) for e in report(result)] == [
        ("rejected", Reason.TOO_LARGE), ("rejected", Reason.TYPE_NOT_ALLOWED), ("rejected", Reason.TYPE_NOT_ALLOWED),
    ]
    assert "the file has 4505 bytes" in report(result)[0]["message"]
    assert [a.url for a in result.attachments] == [None, None, None]
    assert not (tmp_path / "blobs" / "media").exists()


def test_embedded_bytes_are_ignored_when_media_is_disabled(tmp_path):
    original = contact("ses", Channel.EMAIL, Attachment(content_type="application/pdf", filename="a.pdf"))

    assert localizer(blob_store(tmp_path), enabled=False).localize(original, embedded={0: PDF}) is original
    assert not (tmp_path / "blobs").exists()


# --- where downloads may connect -----------------------------------------------------------------


def test_a_name_a_suffix_entry_admits_never_reaches_a_loopback_address(server, tmp_path):
    """`.localhost` admits the name `localhost`, which the operator never listed by name: it
    resolves to loopback, and only hosts named exactly in the settings may be internal."""
    server.routes["/cdn/photo.jpg"] = Answer(200, JPEG, {"Content-Type": "image/jpeg"})
    image = Attachment(url=f"http://localhost:{server.port}/cdn/photo.jpg", kind="image")

    result = localizer(blob_store(tmp_path), meta_cdn={"download_hosts": [".localhost"], "allow_http": True}).localize(
        contact("meta", Channel.MESSENGER, image)
    )

    assert [(e["status"], e["reason"]) for e in report(result)] == [("rejected", Reason.HOST_NOT_ALLOWED)]
    assert server.seen == []


@pytest.mark.parametrize("address", ["127.0.0.1", "169.254.169.254", "10.20.30.40", "::ffff:10.0.0.1"])
def test_a_cdn_name_that_resolves_to_an_internal_address_is_refused(tmp_path, address):
    from chalicelib.adapters.downloads import Downloader

    http = MediaHttp(downloads=Downloader(resolve=lambda host: [address]))
    image = Attachment(url="https://scontent.xx.fbcdn.net/v/photo.jpg?oh=sig", kind="image")

    result = localizer(blob_store(tmp_path), http=http).localize(contact("meta", Channel.MESSENGER, image))

    [entry] = report(result)
    assert (entry["status"], entry["reason"]) == ("rejected", Reason.HOST_NOT_ALLOWED)
    assert "scontent.xx.fbcdn.net" in entry["message"] and "oh=sig" not in entry["message"]


def test_headers_trickled_byte_by_byte_cannot_stretch_a_download_past_its_deadline(tmp_path):
    """Each byte of the status line and headers comes 20 ms after the last, so no read ever
    times out; the head alone takes 6 s. The 0.5 s deadline must stop it, not the server."""
    from tests.support.origin import Origin, Reply

    with Origin() as origin:
        path = f"/2010-04-01/Accounts/{TWILIO_SID}/Messages/MM2/Media/ME3"
        origin.routes[path] = Reply(200, JPEG, {"Content-Type": "image/jpeg", "X-Pad": "p" * 200},
                                    trickle_head=True, piece=1, pause=0.02)
        started = time.monotonic()
        with pytest.raises(TransientError, match="ran out of time"):
            localizer(blob_store(tmp_path), timeout_seconds=0.5, **twilio()).localize(
                contact("twilio", Channel.MMS, Attachment(url=f"{origin.base}{path}", content_type="image/jpeg"))
            )
        elapsed = time.monotonic() - started

    assert elapsed < 1.2, f"took {elapsed:.1f} s with a 0.5 s deadline"


# --- limits --------------------------------------------------------------------------------------


def test_a_declared_size_over_the_limit_is_refused_before_any_request(server, tmp_path):
    result = localizer(blob_store(tmp_path), max_bytes=1024, **telegram(server)).localize(
        contact("telegram", Channel.TELEGRAM, Attachment(provider_media_id="BQAC", content_type="application/pdf", size=4096))
    )

    assert report(result)[0]["reason"] == Reason.TOO_LARGE and server.seen == []


def test_a_content_length_over_the_limit_stops_the_download(server, tmp_path):
    graph_media(server, "5", JPEG + b"\x00" * 8192)
    server.routes["/v24.0/5"].body = server.routes["/v24.0/5"].body.replace(b'"file_size": "', b'"x": "')

    result = localizer(blob_store(tmp_path), max_bytes=4096, **whatsapp(server)).localize(
        contact("meta", Channel.WHATSAPP, Attachment(provider_media_id="5", content_type="image/jpeg"))
    )

    [entry] = report(result)
    assert entry["reason"] == Reason.TOO_LARGE and "announced" in entry["message"]


def test_a_streamed_body_over_the_limit_is_cut_off(server, tmp_path):
    big = JPEG + b"\x00" * (512 * 1024)
    media_url = twilio_media(server)
    server.routes[urlsplit(media_url).path] = Answer(200, big, {"Content-Type": "image/jpeg"}, stream=True)

    started = time.monotonic()
    result = localizer(blob_store(tmp_path), max_bytes=64 * 1024, **twilio()).localize(
        contact("twilio", Channel.MMS, Attachment(url=media_url, content_type="image/jpeg"))
    )

    [entry] = report(result)
    assert entry["reason"] == Reason.TOO_LARGE and "exceeds" in entry["message"]
    assert time.monotonic() - started < 5
    assert not (tmp_path / "blobs" / "media").exists()


def test_a_download_slower_than_the_timeout_is_transient(server, tmp_path):
    media_url = twilio_media(server)
    server.routes[urlsplit(media_url).path] = Answer(200, JPEG * 200, {"Content-Type": "image/jpeg"}, stream=True, delay=0.1)

    with pytest.raises(TransientError, match="ran out of time"):
        localizer(blob_store(tmp_path), timeout_seconds=0.3, **twilio()).localize(
            contact("twilio", Channel.MMS, Attachment(url=media_url, content_type="image/jpeg"))
        )


def test_a_server_trickling_bytes_cannot_stretch_a_download_past_its_deadline(server, tmp_path):
    """16 bytes every 0.1 s: each read returns at once, so only the deadline can stop it (2.6 s
    for the whole file); it must, within one read of it, not after the file or a full chunk."""
    media_url = twilio_media(server)
    server.routes[urlsplit(media_url).path] = Answer(200, JPEG[:400], {"Content-Type": "image/jpeg"}, stream=True,
                                                     delay=0.1, chunk=16)
    started = time.monotonic()
    with pytest.raises(TransientError, match="ran out of time"):
        localizer(blob_store(tmp_path), timeout_seconds=0.5, **twilio()).localize(
            contact("twilio", Channel.MMS, Attachment(url=media_url, content_type="image/jpeg"))
        )
    assert time.monotonic() - started < 1.5


def test_a_declared_type_not_allowed_is_refused_before_download(server, tmp_path):
    media_url = twilio_media(server)

    result = localizer(blob_store(tmp_path), **twilio()).localize(
        contact("twilio", Channel.MMS, Attachment(url=media_url, content_type="application/x-msdownload"))
    )

    assert report(result)[0]["reason"] == Reason.TYPE_NOT_ALLOWED and server.seen == []


@pytest.mark.parametrize("declared, data, outcome", [
    ("image/jpeg", HTML, Reason.TYPE_NOT_ALLOWED),          # HTML posing as an image
    ("image/png", JPEG, "image/jpeg"),                       # the bytes win over the label
    ("application/pdf", b"just some text" * 10, Reason.TYPE_MISMATCH),
    ("text/plain", b"hello\x00\x01binary", Reason.TYPE_MISMATCH),
    ("text/plain", "Olá, tudo bem?".encode(), "text/plain"),
    ("audio/ogg; codecs=opus", OGG, "audio/ogg"),
    (None, PNG, "image/png"),
    ("application/octet-stream", PDF, "application/pdf"),
    (None, b"opaque bytes", Reason.TYPE_NOT_ALLOWED),
    ("image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>', Reason.TYPE_NOT_ALLOWED),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", b"PK\x03\x04" + b"\x00" * 40,
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", PDF, "application/pdf"),
    ("image/jpeg", b"MZ\x90\x00" + b"\x00" * 60, Reason.TYPE_NOT_ALLOWED),
])
def test_type_decisions(declared, data, outcome):
    allowed = MediaSettings().allowed_types
    if outcome.startswith(("type_",)):
        from chalicelib.adapters.media.base import MediaRejectedError

        with pytest.raises(MediaRejectedError) as raised:
            decide_type(declared, data, allowed)
        assert raised.value.reason == outcome
    else:
        assert decide_type(declared, data, allowed) == outcome


DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest.mark.parametrize("declared, filename, data, outcome", [
    # Mail clients often send Office files as octet-stream: the name says which container it is.
    ("application/octet-stream", "Angebot.docx", b"PK\x03\x04" + b"\x00" * 40, DOCX),
    (None, "Liste.XLS", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 40, "application/vnd.ms-excel"),
    # The name never overrides the bytes, nor vouches for bytes nothing recognizes.
    ("application/octet-stream", "invoice.docx", PDF, "application/pdf"),
    ("application/octet-stream", "notes.txt", b"opaque bytes", Reason.TYPE_NOT_ALLOWED),
    ("application/octet-stream", "archive.zip", b"PK\x03\x04" + b"\x00" * 40, Reason.TYPE_NOT_ALLOWED),
])
def test_a_generic_type_takes_the_file_names_type_where_the_bytes_agree(declared, filename, data, outcome):
    from chalicelib.adapters.media.base import MediaRejectedError

    allowed = MediaSettings().allowed_types
    if outcome.startswith("type_"):
        with pytest.raises(MediaRejectedError) as raised:
            decide_type(declared, data, allowed, filename)
        assert raised.value.reason == outcome
    else:
        assert decide_type(declared, data, allowed, filename) == outcome


def test_wildcards_never_admit_active_content_but_an_exact_entry_does():
    assert type_allowed("image/webp", ["image/*"])
    assert not type_allowed("image/svg+xml", ["image/*"])
    assert not type_allowed("text/html", ["*/*"])
    assert type_allowed("image/svg+xml", ["image/*", "image/svg+xml"])
    assert not type_allowed("application/zip", MediaSettings().allowed_types)


@pytest.mark.parametrize("data, expected", [
    (JPEG, "image/jpeg"), (PNG, "image/png"), (b"GIF89a....", "image/gif"), (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio/wav"), (PDF, "application/pdf"), (b"\n\n%PDF-1.4", "application/pdf"),
    (OGG, "audio/ogg"), (b"#!AMR\n", "audio/amr"), (b"\x1a\x45\xdf\xa3\x01", "video/webm"),
    (b"\x00\x00\x00\x18ftypmp42", "video/mp4"), (b"\x00\x00\x00\x18ftypM4A ", "audio/mp4"),
    (b"\x00\x00\x00\x18ftypheic", "image/heic"), (b"\x00\x00\x00\x14ftyp3gp4", "video/3gpp"),
    (b"\x00\x00\x00\x14ftypqt  ", "video/quicktime"), (b"ID3\x04\x00", "audio/mpeg"), (b"\xff\xfb\x90\x00", "audio/mpeg"),
    (b"\xff\xf1\x50\x80", "audio/aac"), (b"PK\x03\x04", "application/zip"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"), (b"MZ\x90\x00", "application/x-msdownload"),
    (b"\x7fELF\x02", "application/x-executable"), (b"\xef\xbb\xbf  <!DOCTYPE HTML>", "text/html"),
    (b'<?xml version="1.0"?><svg/>', "image/svg+xml"), (b"<?xml version='1.0'?><a/>", "application/xml"),
    (b"plain words", None), (b"", None),
])
def test_sniff(data, expected):
    assert sniff(data) == expected


@pytest.mark.parametrize("name, content_type, expected", [
    ("invoice-1042.pdf", "application/pdf", "invoice-1042.pdf"),
    (None, "image/jpeg", "attachment.jpg"),
    ("Fotó da caixa.JPEG", "image/jpeg", "Foto_da_caixa.jpeg"),
    ("../../etc/passwd", "text/plain", "passwd.txt"),
    ("C:\\Users\\ana\\scan.png", "image/png", "scan.png"),
    ("invoice.pdf.exe", "application/pdf", "invoice.pdf.exe.pdf"),
    ("photo.png", "image/jpeg", "photo.png.jpg"),
    ("page.html", "application/zip", "page.html"),
    ("notes.txt", "application/zip", "notes.txt.bin"),
    ("....", "audio/ogg", "attachment.ogg"),
    ("a" * 300 + ".pdf", "application/pdf", "a" * 80 + ".pdf"),
    ("x." + "z" * 200, "application/zip", ("x." + "z" * 200)[:80] + ".bin"),
])
def test_safe_filename(name, content_type, expected):
    assert safe_filename(name, content_type) == expected


def test_the_local_route_serves_a_file_as_the_type_its_extension_names():
    assert content_type_for_key("media/ct_1/0-photo.png.jpg") == "image/jpeg"
    assert content_type_for_key("media/ct_1/0-page.html") == "application/octet-stream"
    assert content_type_for_key("media/ct_1/0-x.svg") == "application/octet-stream"


# --- the localizer -------------------------------------------------------------------------------


def test_several_attachments_each_get_their_own_outcome(server, tmp_path):
    graph_media(server, "1", JPEG)
    server.routes["/v24.0/2"] = Answer(404, b"{}")

    result = localizer(blob_store(tmp_path), **whatsapp(server)).localize(contact(
        "meta", Channel.WHATSAPP,
        Attachment(provider_media_id="1", content_type="image/jpeg"),
        Attachment(provider_media_id="2", content_type="image/jpeg"),
    ))

    assert [(e["index"], e["status"]) for e in report(result)] == [(0, "stored"), (1, "rejected")]
    assert result.attachments[1].url is None and result.attachments[1].provider_media_id == "2"


def test_deciding_a_contact_again_does_not_download_again(server, tmp_path):
    graph_media(server, "1", JPEG)
    media = localizer(blob_store(tmp_path), **whatsapp(server))
    item = contact("meta", Channel.WHATSAPP, Attachment(provider_media_id="1", content_type="image/jpeg"))

    first, second = media.localize(item), media.localize(item)

    assert first.attachments == second.attachments and len(server.seen) == 2


def test_existing_enrichment_is_kept(server, tmp_path):
    graph_media(server, "1", JPEG)
    item = contact("meta", Channel.WHATSAPP, Attachment(provider_media_id="1", content_type="image/jpeg"))
    item.enrichment = {"data_quality": {"rejected_identifiers": []}}

    result = localizer(blob_store(tmp_path), **whatsapp(server)).localize(item)

    assert set(result.enrichment) == {"data_quality", "media"}
    assert item.enrichment == {"data_quality": {"rejected_identifiers": []}}  # the input is not changed


@pytest.mark.parametrize("provider, channel", [("webchat", Channel.WEBCHAT), ("mailgun", Channel.EMAIL)])
def test_providers_without_a_media_source_are_untouched(tmp_path, provider, channel):
    item = contact(provider, channel, Attachment(url="https://files.example.com/a.pdf"))

    assert localizer(blob_store(tmp_path)).localize(item) is item


def test_disabled_media_changes_nothing(server, tmp_path):
    item = contact("meta", Channel.WHATSAPP, Attachment(provider_media_id="1", content_type="image/jpeg"))

    assert localizer(blob_store(tmp_path), enabled=False, **whatsapp(server)).localize(item) is item
    assert server.seen == []


def test_a_blob_store_outage_is_transient(server, tmp_path):
    graph_media(server, "1", JPEG)
    root = tmp_path / "not-a-directory"
    root.write_text("")

    with pytest.raises(TransientError):
        localizer(LocalBlobStore(str(root), link_base_url="http://hub.test", link_secrets=[LINK_SECRET]),
                  **whatsapp(server)).localize(
            contact("meta", Channel.WHATSAPP, Attachment(provider_media_id="1", content_type="image/jpeg"))
        )


def test_a_store_that_cannot_link_keeps_the_provider_url_and_says_so(server, tmp_path):
    graph_media(server, "1", JPEG)
    original = Attachment(provider_media_id="1", content_type="image/jpeg", url="https://lookaside.fbsbx.com/x")

    result = localizer(LocalBlobStore(str(tmp_path / "blobs")), **whatsapp(server)).localize(
        contact("meta", Channel.WHATSAPP, original)
    )

    [entry] = report(result)
    assert entry["status"] == "stored" and entry["linked"] is False
    assert result.attachments == [original]


# --- one deadline per message; a failing source fails one attachment --------------------------------


class SimClock:
    """Simulated seconds: a stalled download costs its timeout without anyone waiting for it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_sources(clock: SimClock, *, takes: float, outcome: str = "ok", calls: list | None = None) -> dict:
    """A source for provider `fake` whose every fetch takes `takes` simulated seconds (or its whole
    timeout when that is shorter, ending transiently), then succeeds, stalls out, or raises."""
    from pydantic import BaseModel

    from chalicelib.adapters.media.base import FetchedMedia, MediaSource

    class FakeSource(MediaSource):
        key = "fake"
        provider = "fake"
        docs_url = "https://example.com/fake"
        settings_field = "fake"
        Settings = BaseModel

        def reference(self, attachment):
            return attachment.url

        def fetch(self, contact, attachment, limits):
            if calls is not None:
                calls.append(limits.timeout_seconds)
            if outcome == "key_error":
                raise KeyError("file_path of secret-user@example.com")
            clock.now += min(takes, limits.timeout_seconds)
            if outcome == "stall" or takes > limits.timeout_seconds:
                raise TransientError("fake download ran out of time")
            return FetchedMedia(JPEG, declared_type="image/jpeg", host="files.fake.test")

    return {"fake": FakeSource}


def fake_attachments(count: int) -> list[Attachment]:
    return [Attachment(url=f"https://files.fake.test/{i}.jpg", content_type="image/jpeg") for i in range(count)]


def budget(clock: SimClock, seconds: float):
    start = clock.now
    return lambda: seconds - (clock.now - start)


def fake_localizer(tmp_path, sources: dict) -> MediaLocalizer:
    return MediaLocalizer(MediaSettings(), blob_store(tmp_path), SecretResolver({}), http=MediaHttp(), sources=sources,
                          clock=lambda: datetime.fromtimestamp(NOW, timezone.utc))


def test_ten_stalled_downloads_on_the_last_attempt_stay_within_the_messages_budget(tmp_path):
    """Each stalls until its timeout (15 s): one after another they used to take 150 s of a 30 s
    Lambda. Now the message has one budget; what it cannot start is deferred."""
    clock, calls = SimClock(), []
    media = fake_localizer(tmp_path, fake_sources(clock, takes=1000, outcome="stall", calls=calls))

    result = media.localize(contact("fake", Channel.WEBCHAT, *fake_attachments(10)), retry_transient=False,
                            seconds_left=budget(clock, 25))

    assert clock.now <= 25
    assert calls == [15, 10], "the second download gets only what is left of the budget"
    assert [(e["status"], e["reason"]) for e in report(result)] == (
        [("deferred", "transient")] * 2 + [("deferred", "deadline")] * 8
    )
    assert [a.url for a in result.attachments] == [a.url for a in fake_attachments(10)]


def test_slow_downloads_store_what_fits_the_budget_and_defer_the_rest_without_failing_the_message(tmp_path):
    clock, calls = SimClock(), []
    media = fake_localizer(tmp_path, fake_sources(clock, takes=8, calls=calls))

    result = media.localize(contact("fake", Channel.WEBCHAT, *fake_attachments(10)), seconds_left=budget(clock, 24))

    assert clock.now == 24 and len(calls) == 3
    assert [e["status"] for e in report(result)] == ["stored"] * 3 + ["deferred"] * 7
    assert {e.get("reason") for e in report(result)[3:]} == {"deadline"}


def test_a_message_with_no_time_left_for_its_first_download_is_retried_while_it_can_be(tmp_path):
    clock, calls = SimClock(), []
    media = fake_localizer(tmp_path, fake_sources(clock, takes=1, calls=calls))
    item = contact("fake", Channel.WEBCHAT, *fake_attachments(2))

    with pytest.raises(TransientError, match="no time left"):
        media.localize(item, seconds_left=lambda: 0.0)
    last = media.localize(item, retry_transient=False, seconds_left=lambda: 0.0)

    assert calls == []
    assert [(e["status"], e["reason"]) for e in report(last)] == [("deferred", "deadline")] * 2


def test_a_source_that_raises_something_unexpected_rejects_its_attachment_only(tmp_path, caplog):
    clock = SimClock()
    media = fake_localizer(tmp_path, fake_sources(clock, takes=0, outcome="key_error"))
    caplog.set_level(logging.DEBUG)

    result = media.localize(contact("fake", Channel.WEBCHAT, *fake_attachments(2)), seconds_left=budget(clock, 25))

    assert [(e["status"], e["reason"]) for e in report(result)] == [("rejected", "source_error")] * 2
    assert "KeyError" in report(result)[0]["message"] and "KeyError" in caplog.text
    assert "secret-user@example.com" not in caplog.text + json.dumps(report(result))


# --- hub links ---------------------------------------------------------------------------------


def signed(blobs: LocalBlobStore, key: str, ttl: int = 3600) -> tuple[str, str]:
    link = query(blobs.presigned_url(key, ttl))
    return link["expires"], link["signature"]


def test_a_local_link_serves_the_blob_until_it_expires(tmp_path):
    blobs = blob_store(tmp_path)
    key = "media/ct_1/0-photo.jpg"
    blobs.put(key, JPEG, content_type="image/jpeg")
    expires, signature = signed(blobs, key)

    assert open_media_link(blobs, key, expires, signature, LINK_SECRET, datetime.fromtimestamp(NOW, timezone.utc)) == MediaAnswer(
        body=JPEG, content_type="image/jpeg")
    with pytest.raises(ForbiddenError, match="expired"):
        open_media_link(blobs, key, expires, signature, LINK_SECRET, datetime.fromtimestamp(NOW + 3601, timezone.utc))


@pytest.mark.parametrize("change", ["signature", "expires", "key", "secret", "missing"])
def test_a_tampered_local_link_is_forbidden(tmp_path, change):
    blobs = blob_store(tmp_path)
    key = "media/ct_1/0-photo.jpg"
    blobs.put(key, JPEG)
    expires, signature = signed(blobs, key)
    secret = LINK_SECRET
    if change == "signature":
        signature = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    elif change == "expires":
        expires = str(int(expires) + 86400)
    elif change == "key":
        blobs.put("media/ct_1/1-other.jpg", JPEG)
        key = "media/ct_1/1-other.jpg"
    elif change == "secret":
        secret = "another-secret-another-secret-another-secret"
    else:
        signature = None

    with pytest.raises(ForbiddenError):
        open_media_link(blobs, key, expires, signature, secret, datetime.fromtimestamp(NOW, timezone.utc))


@pytest.mark.parametrize("key", ["raw/ct_1.json", "queue/inbound/x.json", "media/../raw/ct_1.json", "media/ct_1/0-a/../../b", "media/ct_1/photo.jpg"])
def test_only_media_keys_are_ever_served(tmp_path, key):
    blobs = blob_store(tmp_path)
    expires = str(NOW + 60)

    with pytest.raises(NotFoundError):
        open_media_link(blobs, key, expires, link_signature(LINK_SECRET, key, int(expires)), LINK_SECRET,
                        datetime.fromtimestamp(NOW, timezone.utc))


def test_a_validly_signed_link_to_a_deleted_blob_is_not_found(tmp_path):
    blobs = blob_store(tmp_path)
    expires, signature = signed(blobs, "media/ct_1/0-gone.jpg")

    with pytest.raises(NotFoundError):
        open_media_link(blobs, "media/ct_1/0-gone.jpg", expires, signature, LINK_SECRET, datetime.fromtimestamp(NOW, timezone.utc))


def test_link_secrets_rotate_the_first_signs_all_verify(tmp_path):
    old = blob_store(tmp_path, link_secrets=["old-secret-old-secret-old-secret-old"])
    new = blob_store(tmp_path, link_secrets=[LINK_SECRET, "old-secret-old-secret-old-secret-old"])
    old.put("media/ct_1/0-a.pdf", PDF)
    expires, signature = signed(old, "media/ct_1/0-a.pdf")

    assert open_media_link(new, "media/ct_1/0-a.pdf", expires, signature,
                           [LINK_SECRET, "old-secret-old-secret-old-secret-old"],
                           datetime.fromtimestamp(NOW, timezone.utc)) == MediaAnswer(body=PDF, content_type="application/pdf")
    assert query(new.presigned_url("media/ct_1/0-a.pdf", 60))["signature"] == link_signature(LINK_SECRET, "media/ct_1/0-a.pdf", NOW + 60)


def test_local_links_exist_only_for_media_keys_and_configured_stores(tmp_path):
    with pytest.raises(ValueError):
        blob_store(tmp_path).presigned_url("raw/ct_1.json", 60)
    with pytest.raises(ConfigError):
        LocalBlobStore(str(tmp_path)).presigned_url("media/ct_1/0-a.jpg", 60)
    with pytest.raises(ConfigError):
        LazyBlobStore(lambda: LocalBlobStore(str(tmp_path))).presigned_url("media/ct_1/0-a.jpg", 60)


def test_a_link_secret_given_as_a_callable_is_read_on_the_first_link_only(tmp_path):
    reads = []

    def secrets():
        reads.append(1)
        return [LINK_SECRET]

    blobs = blob_store(tmp_path, link_secrets=secrets)
    blobs.put("queue/inbound/x.json", b"{}")
    assert reads == []

    blobs.presigned_url("media/ct_1/0-a.jpg", 60)
    blobs.presigned_url("media/ct_1/1-b.jpg", 60)
    assert reads == [1]


class DirectStore(LocalBlobStore):
    """A store whose blobs have their own URLs, as S3's presigned ones."""

    def direct_url(self, key: str, ttl_seconds: int) -> str | None:
        return f"https://bucket.s3.example/{key}?X-Amz-Expires={ttl_seconds}"


def test_a_hub_link_to_a_store_with_direct_urls_answers_with_a_short_lived_redirect(tmp_path):
    links = HubLinks("https://hub.example.com/api", [LINK_SECRET], clock=lambda: NOW)
    blobs = HubLinkedBlobStore(DirectStore(str(tmp_path / "blobs")), links)
    key = "media/ct_1/0-photo.jpg"
    blobs.put(key, JPEG, content_type="image/jpeg")

    link = blobs.presigned_url(key, 604800)

    assert link.startswith("https://hub.example.com/api/v1/media/ct_1/0-photo.jpg?expires=")
    expires, signature = query(link)["expires"], query(link)["signature"]
    answer = open_media_link(blobs, key, expires, signature, LINK_SECRET, datetime.fromtimestamp(NOW + 600000, timezone.utc))
    # Five minutes from the request, whatever the link's own lifetime: the target is signed now.
    assert answer == MediaAnswer(redirect="https://bucket.s3.example/media/ct_1/0-photo.jpg?X-Amz-Expires=300")
    with pytest.raises(ForbiddenError, match="expired"):
        open_media_link(blobs, key, expires, signature, LINK_SECRET, datetime.fromtimestamp(NOW + 604801, timezone.utc))
    assert blobs.get(key) == JPEG and blobs.direct_url(key, 60).endswith("X-Amz-Expires=60")


def test_a_hub_linked_store_without_a_secret_cannot_link(tmp_path):
    blobs = HubLinkedBlobStore(DirectStore(str(tmp_path)), HubLinks("https://hub.example.com", lambda: []))
    with pytest.raises(ConfigError):
        blobs.presigned_url("media/ct_1/0-a.jpg", 60)
    with pytest.raises(ValueError):
        blobs.presigned_url("raw/ct_1.json", 60)


def test_a_deployed_hub_needs_a_configured_link_secret_for_hub_links(tmp_path):
    from chalicelib.hubconfig import parse_config
    from chalicelib.service.media import link_secrets

    settings = parse_config("media: {public_url: https://hub.example.com/api}").media
    assert len(link_secrets(settings, SecretResolver({}), tmp_path)[0]) == 64
    with pytest.raises(ConfigError, match="media.link_secret: required on AWS"):
        parse_config("media: {public_url: https://hub.example.com/api}", allow_inline_secrets=False)
    with pytest.raises(ConfigError, match="media.link_secret: required on AWS"):
        link_secrets(settings, SecretResolver({}), tmp_path, generate=False)
    assert parse_config("media: {public_url: https://hub.example.com/api, link_secret: env:LINK}",
                        allow_inline_secrets=False).media.link_secret
    # Without public_url, AWS links are presigned S3 URLs and need no secret.
    assert parse_config("{}", allow_inline_secrets=False).media.link_secret == []


def test_text_types_are_never_declared_binary_to_chalice():
    from chalicelib.service.media import MEDIA_BINARY_TYPES

    assert "application/pdf" in MEDIA_BINARY_TYPES and "image/jpeg" in MEDIA_BINARY_TYPES
    assert not [t for t in MEDIA_BINARY_TYPES if t.startswith("text/")]


@pytest.mark.parametrize("ttl", [0, -1, 604801, 1.5, True])
def test_link_lifetimes_are_bounded_like_s3s(tmp_path, ttl):
    with pytest.raises(ValueError):
        blob_store(tmp_path).presigned_url("media/ct_1/0-a.jpg", ttl)


def test_the_generated_link_secret_is_random_private_and_kept(tmp_path):
    path = tmp_path / "data" / "media-link.key"

    first = load_or_create_link_secret(path)

    assert len(first) == 64 and load_or_create_link_secret(path) == first
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_link_secret(tmp_path / "elsewhere.key") != first
    assert [p.name for p in path.parent.iterdir()] == ["media-link.key"]


def test_a_short_link_secret_file_is_refused(tmp_path):
    path = tmp_path / "media-link.key"
    path.write_text("short")

    with pytest.raises(ConfigError):
        load_or_create_link_secret(path)


# --- settings and registry -----------------------------------------------------------------------


def test_settings_defaults_and_validation():
    settings = MediaSettings()
    assert (settings.enabled, settings.max_bytes, settings.link_ttl_seconds) == (True, 16 * 1024 * 1024, 604800)
    assert {"image/*", "audio/*", "video/*", "application/pdf", "text/plain"} <= set(settings.allowed_types)

    from pydantic import ValidationError

    for bad in ({"surprise": 1}, {"allowed_types": ["images"]}, {"link_ttl_seconds": 604801},
                {"twilio": {"account_sid": TWILIO_SID}}, {"whatsapp": {"access_token": []}},
                {"whatsapp": {"access_token": "x", "graph_version": "24"}}, {"telegram": {}}):
        with pytest.raises(ValidationError):
            MediaSettings.model_validate(bad)
    one = MediaSettings.model_validate({"whatsapp": {"access_token": "env:WA"}, "link_secret": "env:LINK",
                                        "allowed_types": ["Image/JPG"]})
    assert len(one.source("whatsapp").access_token) == 1 and len(one.link_secret) == 1
    assert one.allowed_types == ["image/jpeg"]
    assert WA_TOKEN not in repr(MediaSettings.model_validate(whatsapp_settings := {"whatsapp": {"access_token": WA_TOKEN}}))
    assert whatsapp_settings


def test_deployed_configurations_must_reference_every_media_secret():
    from chalicelib.hubconfig import _inline_secrets

    problems = _inline_secrets({"media": {
        "link_secret": "inline", "whatsapp": {"access_token": ["inline"]}, "twilio": {"auth_token": "inline"},
        "telegram": {"bot_token": "inline"},
    }})
    assert sorted(problems) == sorted([
        "media.link_secret: inline secret; use env:, ssm: or secretsmanager:",
        "media.whatsapp.access_token[0]: inline secret; use env:, ssm: or secretsmanager:",
        "media.twilio.auth_token: inline secret; use env:, ssm: or secretsmanager:",
        "media.telegram.bot_token: inline secret; use env:, ssm: or secretsmanager:",
    ])


def test_every_media_source_is_declared_by_its_provider_and_registered():
    from chalicelib.adapters.channels.registry import CHANNELS
    from chalicelib.adapters.media.registry import MEDIA_SOURCES

    # Sources live in their provider's package; nothing provider-specific is left in media/.
    assert {p.stem for p in (ROOT / "chalicelib" / "adapters" / "media").glob("*.py")} == {
        "__init__", "base", "registry", "http"}
    assert set(MEDIA_SOURCES) == {"meta", "meta_cdn", "twilio", "telegram", "slack"}
    for cls in MEDIA_SOURCES.values():
        provider = CHANNELS[cls.provider]
        assert f"{cls.__module__}:{cls.__name__}" in provider.media_sources
        assert cls.__module__.startswith(provider.__module__.rsplit(".", 1)[0] + ".")
        assert cls.docs_url.startswith("https://")
        # Each source's section is typed by the source's own model.
        assert MediaSettings.model_validate({cls.settings_field: None}).source(cls.settings_field) is None


def test_media_settings_name_every_problem_with_its_path():
    with pytest.raises(ValidationError) as raised:
        MediaSettings.model_validate({"whatsapp": {"acces_token": "x"}, "max_bytes": "big", "unknown": 1})
    locations = {".".join(map(str, e["loc"])) for e in raised.value.errors()}
    assert locations == {"whatsapp.access_token", "whatsapp.acces_token", "max_bytes", "unknown"}


@pytest.mark.parametrize("url, allowed", [
    ("https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1", True),
    ("https://fbsbx.com/x", True),
    ("https://evilfbsbx.com/x", False),
    ("https://lookaside.fbsbx.com.evil.example/x", False),
    ("http://lookaside.fbsbx.com/x", False),
    ("https://u:p@lookaside.fbsbx.com/x", False),
    ("https://lookaside.fbsbx.com:bad/x", False),
])
def test_host_policy(url, allowed):
    assert HostPolicy((".fbsbx.com",)).allows(url) is allowed
