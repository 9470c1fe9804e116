"""Meta sender against Prism mocks: the WhatsApp Cloud API `POST /{Version}/{Phone-Number-ID}/messages`
of Meta's own OpenAPI file (facebook/openapi, business-messaging-api_v23.0.yaml) and the hand-written
Messenger/Instagram Send API spec. Every request the sender builds must pass the spec with no
`sl-violations`; the negative controls show each mock refuses a malformed request and that the
sender turns that refusal into a permanent error."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlsplit

import pytest

from chalicelib.adapters.channels.meta import graph
from chalicelib.adapters.channels.meta.core import MetaSettings
from chalicelib.adapters.channels.meta.sender import MetaSender
from chalicelib.adapters.channels.sending import SenderRuntime
from chalicelib.adapters.connectors.http import HttpClient
from chalicelib.domain.models import Channel, ReplyContext
from chalicelib.domain.outbound import OutboundAttachment, OutboundMessage, TemplateMessage
from chalicelib.errors import PermanentDeliveryError
from chalicelib.secrets import SecretResolver

WHATSAPP = "meta-whatsapp/business-messaging-api_v23.0.yaml"
MESSENGER = "meta-messenger/messenger-instagram-send.handwritten.openapi.yaml"
pytestmark = pytest.mark.prism_specs(WHATSAPP, MESSENGER)

NUMBER, PAGE, IG, IG_PAGE = "106540352242922", "1234567890", "17841400000000000", "1098765432"
WA_ID, PSID, IGSID = "16505551234", "6789012345678901", "5566778899001122"
ENVIRON = {"WA_TOKEN": "EAAG-wa-test", "PAGE_TOKEN": "EAAG-page-test", "IG_TOKEN": "IGAA-ig-test"}
AT = datetime(2026, 1, 1, tzinfo=timezone.utc)
PDF = OutboundAttachment(url="https://files.example.com/invoices/rechnung-1042.pdf", content_type="application/pdf")


class RecordingHttp(HttpClient):
    """The real client, keeping each exchange so tests see Prism's `sl-violations`."""

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[tuple[str, int, str | None]] = []

    def request(self, method, url, **kwargs):
        response = super().request(method, url, **kwargs)
        self.exchanges.append((urlsplit(url).path, response.status, response.headers.get("sl-violations")))
        return response

    @property
    def violations(self) -> list[str]:
        return [v for *_, v in self.exchanges if v]


def sender(whatsapp_url: str, messenger_url: str, http: HttpClient, **overrides) -> MetaSender:
    settings = MetaSettings.model_validate({
        "app_secrets": ["test_meta_app_secret"], "verify_tokens": ["test_meta_verify_token"],
        "api_base_url": whatsapp_url, "instagram_api_base_url": messenger_url,
        "templates": {"case_update": {"languages": ["de"], "parameters": 2}},
        "whatsapp": {"access_tokens": ["env:WA_TOKEN"], "numbers": {NUMBER: {}}},
        "pages": {PAGE: {"access_tokens": ["env:PAGE_TOKEN"], "human_agent": True, "reply_to": True}},
        "instagram": {IG: {"access_tokens": ["env:IG_TOKEN"]}},
        **overrides,
    })
    return MetaSender(settings, SecretResolver(ENVIRON), SenderRuntime(http=http, aws_client=lambda n: None, clock=lambda: AT))


def message(channel: Channel = Channel.WHATSAPP, **fields) -> OutboundMessage:
    account, to = {Channel.WHATSAPP: (NUMBER, WA_ID), Channel.MESSENGER: (PAGE, PSID),
                   Channel.INSTAGRAM: (IG, IGSID)}[channel]
    return OutboundMessage(**{"id": "ct_out_1", "customer_id": "cus_1", "case_id": "case_1", "channel": channel,
                              "provider": "meta", "account": account, "to": to, "text": "Hallo Jana, es ist behoben.",
                              "origin": "api:test", "queued_at": AT, **fields})


@pytest.fixture
def mocks(prism):
    return prism(WHATSAPP).url, prism(MESSENGER).url


WHATSAPP_SENDS = {
    "text": {},
    "text-with-link-replying": {"text": "Status: https://status.example.com",
                                "reply": ReplyContext(provider_message_id="wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQUVC")},
    "template": {"text": None, "template": TemplateMessage(name="case_update", language="de", parameters=["Jana", "4711"])},
    "document": {"text": "Ihre Rechnung", "attachments": [PDF]},
    "image": {"text": None, "attachments": [OutboundAttachment(url="https://files.example.com/p.jpg", content_type="image/jpeg")]},
    "audio": {"text": None, "attachments": [OutboundAttachment(url="https://files.example.com/v.ogg", content_type="audio/ogg")]},
}


@pytest.mark.parametrize("fields", WHATSAPP_SENDS.values(), ids=WHATSAPP_SENDS.keys())
def test_whatsapp_sends_pass_the_cloud_api_spec(mocks, fields):
    http = RecordingHttp()
    meta = sender(*mocks, http)
    assert meta.check(message(**fields)) == []
    outcome = meta.send(message(**fields))
    assert http.violations == []
    assert http.exchanges[0][:2] == (f"/v23.0/{NUMBER}/messages", 200)
    # The spec's first example answer.
    assert outcome.provider_message_id.startswith("wamid.") and outcome.status == "sent"


MESSAGING_SENDS = {
    "messenger-response": (Channel.MESSENGER, {}, f"/v23.0/{PAGE}/messages"),
    "messenger-human-agent": (Channel.MESSENGER, {"tag": "HUMAN_AGENT"}, f"/v23.0/{PAGE}/messages"),
    "messenger-reply-to": (Channel.MESSENGER, {"reply": ReplyContext(provider_message_id="m_AbCdEf")}, f"/v23.0/{PAGE}/messages"),
    "messenger-file": (Channel.MESSENGER, {"text": None, "attachments": [PDF]}, f"/v23.0/{PAGE}/messages"),
    "instagram-login": (Channel.INSTAGRAM, {}, f"/v23.0/{IG}/messages"),
}


@pytest.mark.parametrize("channel, fields, path", MESSAGING_SENDS.values(), ids=MESSAGING_SENDS.keys())
def test_messenger_and_instagram_sends_pass_the_send_api_spec(mocks, channel, fields, path):
    http = RecordingHttp()
    # Messenger on the Messenger mock too: one Prism serves both hosts' paths.
    meta = sender(mocks[1], mocks[1], http)
    outcome = meta.send(message(channel, **fields))
    assert http.violations == [] and http.exchanges[0][:2] == (path, 200)
    assert outcome.provider_message_id.startswith("m_")


def test_instagram_through_its_linked_page_uses_the_page_endpoint(mocks):
    http = RecordingHttp()
    meta = sender(mocks[1], mocks[1], http, instagram={IG: {"access_tokens": ["env:IG_TOKEN"], "page_id": IG_PAGE}})
    meta.send(message(Channel.INSTAGRAM, text=None, attachments=[
        OutboundAttachment(url="https://files.example.com/p.png", content_type="image/png")]))
    assert http.violations == [] and http.exchanges[0][:2] == (f"/v23.0/{IG_PAGE}/messages", 200)


# --- negative controls ----------------------------------------------------------------------------


def test_negative_control_whatsapp_mock_refuses_a_message_without_to(mocks):
    http = RecordingHttp()
    body = {"messaging_product": "whatsapp", "recipient_type": "individual", "type": "text", "text": {"body": "Hi"}}
    with pytest.raises(PermanentDeliveryError, match="422"):
        graph.post(http, f"{mocks[0]}/v23.0/{NUMBER}/messages", body, ["EAAG-wa-test"], vendor="WhatsApp Cloud API")
    assert http.exchanges[0][1] == 422


def test_negative_control_whatsapp_mock_refuses_a_template_language_without_policy(mocks):
    """Why the sender adds `policy: deterministic`: the v23 spec requires it beside `code`."""
    http = RecordingHttp()
    body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": WA_ID, "type": "template",
            "template": {"name": "case_update", "language": {"code": "de"}}}
    with pytest.raises(PermanentDeliveryError):
        graph.post(http, f"{mocks[0]}/v23.0/{NUMBER}/messages", body, ["EAAG-wa-test"], vendor="WhatsApp Cloud API")
    assert http.exchanges[0][1] == 422


def test_negative_control_send_api_mock_refuses_a_message_tag_without_tag(mocks):
    http = RecordingHttp()
    body = {"recipient": {"id": PSID}, "messaging_type": "MESSAGE_TAG", "message": {"text": "Hi"}}
    with pytest.raises(PermanentDeliveryError):
        graph.post(http, f"{mocks[1]}/v23.0/{PAGE}/messages", body, ["EAAG-page-test"], vendor="Messenger Send API")
    assert http.exchanges[0][1] == 400 and any("tag" in v for v in http.violations)


def test_negative_control_send_api_mock_refuses_text_beside_an_attachment(mocks):
    """Why `check` asks for text and an attachment as two messages."""
    http = RecordingHttp()
    body = {"recipient": {"id": PSID}, "messaging_type": "RESPONSE",
            "message": {"text": "Hi", "attachment": {"type": "file", "payload": {"url": PDF.url}}}}
    with pytest.raises(PermanentDeliveryError):
        graph.post(http, f"{mocks[1]}/v23.0/{PAGE}/messages", body, ["EAAG-page-test"], vendor="Messenger Send API")
    assert http.exchanges[0][1] in (400, 422)
