"""An MMS's media, which Twilio serves only with the account's credentials, is downloaded by the
process worker into the blob store, and destinations get a stable, signed hub link to it."""

from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chalicelib.local.runtime import EmbeddedRuntime
from chalicelib.settings import Settings
from tests.functional.conftest import RunningHub, make_config
from tests.functional.test_ingest_edges import twilio_request

ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "twilio-media-auth-token"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF\x00" + bytes(range(256)) * 4


class FakeTwilioMedia:
    """Serves one image, only to requests with the account's basic credentials."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                fake.requests.append(self.headers.get("authorization", ""))
                expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
                if self.headers.get("authorization") != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("content-type", "image/jpeg")
                self.send_header("content-length", str(len(JPEG)))
                self.end_headers()
                self.wfile.write(JPEG)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()


@pytest.fixture
def with_media(tmp_path, receiver):
    twilio = FakeTwilioMedia()
    config = make_config(tmp_path / "hub.yaml", receiver.url)
    config.write_text(config.read_text().replace("media: {enabled: false}", f"""media:
  twilio: {{account_sid: {ACCOUNT_SID}, auth_token: "{AUTH_TOKEN}", api_hosts: ["127.0.0.1"], allow_http: true}}
"""))
    runtime = EmbeddedRuntime(Settings(config_path=str(config), data_dir=str(tmp_path / "data"), port=0,
                                       local_workers=1), port=0)
    runtime.start()
    try:
        yield RunningHub(runtime, receiver, tmp_path / "data"), twilio
    finally:
        runtime.stop()
        twilio.close()


def test_twilio_media_is_downloaded_and_destinations_get_a_signed_hub_link(with_media):
    running, twilio = with_media
    media_url = f"{twilio.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM1/Media/ME1"
    path, data, headers = twilio_request({
        "MessageSid": "MM" + "1" * 32, "AccountSid": ACCOUNT_SID, "From": "+16505550100", "To": "+14155550100",
        "Body": "Foto vom Router", "NumMedia": "1", "MediaUrl0": media_url, "MediaContentType0": "image/jpeg",
    })
    assert running.post(path, data, headers).status == 200
    running.wait_for(lambda: running.settled() and running.outbox(), message="the contact delivered")

    [attachment] = running.outbox()[-1]["data"]["contact"]["attachments"]
    assert "/v1/media/" in attachment["url"] and "signature=" in attachment["url"]
    assert (attachment["content_type"], attachment["size"]) == ("image/jpeg", len(JPEG))
    link = attachment["url"].replace(attachment["url"].split("/v1/")[0], running.url)
    # Like curl and HTTP libraries, the client accepts any type (Chalice, like API Gateway, serves
    # binary bodies only to a request that accepts them).
    fetched = running.request("GET", link.removeprefix(running.url), headers={"Accept": "*/*"})
    forged = running.request("GET", link.removeprefix(running.url).replace("signature=", "signature=0"),
                             headers={"Accept": "*/*"})

    assert (fetched.status, fetched.body, fetched.headers["content-type"]) == (200, JPEG, "image/jpeg")
    assert fetched.headers["content-disposition"].startswith("attachment")
    assert forged.status == 403
    assert twilio.requests and all(r.startswith("Basic ") for r in twilio.requests), "credentials sent to Twilio"


def test_erasing_the_customer_deletes_the_downloaded_media(with_media):
    from tests.functional.conftest import API_KEY

    running, twilio = with_media
    media_url = f"{twilio.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM2/Media/ME2"
    path, data, headers = twilio_request({
        "MessageSid": "MM" + "2" * 32, "AccountSid": ACCOUNT_SID, "From": "+16505550111", "To": "+14155550100",
        "Body": "", "NumMedia": "1", "MediaUrl0": media_url, "MediaContentType0": "image/jpeg",
    })
    assert running.post(path, data, headers).status == 200
    running.wait_for(lambda: running.settled() and running.outbox(), message="the contact delivered")
    contact = running.outbox()[-1]["data"]["contact"]
    [stored] = list((running.data_dir / "blobs" / "media").rglob("*.jpg"))

    erased = running.request("DELETE", f"/v1/customers/{contact['customer_id']}", None,
                             {"Authorization": f"Bearer {API_KEY}"})

    assert erased.status == 200
    assert not stored.exists()
