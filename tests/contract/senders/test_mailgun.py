"""The Mailgun sender against a Prism mock of Mailgun's messages spec
(tests/contract/specs/mailgun/mailgun-messages.derived.openapi.yaml, `POST /v3/{domain}/messages.mime`):
the multipart body with `to` and the MIME `message` file, Basic auth `api:<key>`, the answer's id,
429 and 400 handling, key rotation, attachments fetched through the downloader, and a negative
control showing the mock refuses a malformed request."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timezone

import pytest

from chalicelib.adapters.channels.email.form import parse_form
from chalicelib.adapters.channels.mailgun.adapter import MailgunSettings
from chalicelib.adapters.channels.mailgun.sender import MailgunSender
from chalicelib.adapters.channels.sending import SenderRuntime
from chalicelib.adapters.connectors.http import HttpClient
from chalicelib.domain.models import Channel, ReplyContext
from chalicelib.domain.outbound import OutboundAttachment, OutboundMessage
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError
from chalicelib.secrets import SecretResolver
from tests.support.origin import Origin, Reply
from tests.support.prism import call

SPEC = "mailgun/mailgun-messages.derived.openapi.yaml"
AT = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
pytestmark = pytest.mark.prism_specs(SPEC)


class RecordingHttp(HttpClient):
    """The real client, keeping each exchange (and Prism's `sl-violations`); `prefer` asks Prism
    for one of the spec's other answers."""

    def __init__(self, prefer: str | None = None) -> None:
        super().__init__()
        self.prefer = prefer
        self.exchanges: list[dict] = []

    def request(self, method, url, *, headers=None, body=None, timeout=None):
        headers = dict(headers or {})
        if self.prefer:
            headers["Prefer"] = self.prefer
        response = super().request(method, url, headers=headers, body=body, timeout=timeout)
        self.exchanges.append({"url": url, "headers": headers, "body": body, "status": response.status,
                               "violations": response.headers.get("sl-violations")})
        return response


def sender(base_url: str, http: HttpClient, downloader=None, **settings) -> MailgunSender:
    values = {"webhook_signing_keys": ["whsec"], "api_base_url": base_url, "api_keys": ["key-current"],
              "sending_addresses": ["support@mg.acme.example"], "from_name": "Acme Support", **settings}
    extra = {"downloader": downloader} if downloader else {}
    runtime = SenderRuntime(http=http, aws_client=lambda name: None, clock=lambda: AT, extra=extra)
    return MailgunSender(MailgunSettings.model_validate(values), SecretResolver({}), runtime)


def message(**changes) -> OutboundMessage:
    return OutboundMessage(**{
        "id": "msg_01JD0000000000000000000001", "customer_id": "cus_1", "case_id": "case_1", "channel": Channel.EMAIL,
        "provider": "mailgun", "account": "support@mg.acme.example", "to": "ana@customer.example", "text": "Erledigt.",
        "html": "<p>Erledigt.</p>",
        "reply": ReplyContext(in_reply_to="<CAF=a1b2c3@mail.customer.example>", references=["<root@acme.example>"],
                              subject="Order #1042"),
        "message_id": "<msg_01JD0000000000000000000001@mg.acme.example>", "origin": "api:agent", "queued_at": AT,
        **changes,
    })


def test_send_posts_our_mime_to_messages_mime(prism):
    server = prism(SPEC)
    http = RecordingHttp()
    outcome = sender(server.url, http).send(message())
    [exchange] = http.exchanges
    assert exchange["status"] == 200 and exchange["violations"] is None
    assert exchange["url"] == f"{server.url}/v3/mg.acme.example/messages.mime"
    assert exchange["headers"]["Authorization"] == "Basic YXBpOmtleS1jdXJyZW50"  # api:key-current
    # Prism answers the spec's example id; Mailgun answers the Message-ID it sends (ours).
    assert outcome.provider_message_id == "message-id"
    assert outcome.metadata["message_id"] == "<message-id>"
    form = parse_form(exchange["body"], exchange["headers"]["Content-Type"])
    assert form.names() == ["to", "message"]
    assert form.text("to") == "ana@customer.example"
    assert [(f.name, f.filename, f.content_type) for f in form.files()] == [("message", "message.mime", "message/rfc822")]
    mail = email.message_from_bytes(form.data("message"), policy=email.policy.default)
    assert mail["Message-ID"] == "<msg_01JD0000000000000000000001@mg.acme.example>"
    assert mail["In-Reply-To"] == "<CAF=a1b2c3@mail.customer.example>"
    assert mail["References"].split() == ["<root@acme.example>", "<CAF=a1b2c3@mail.customer.example>"]
    assert mail["Subject"] == "Re: Order #1042"
    assert mail.get_body(("html",)) is not None


def test_eu_region_and_a_configured_domain(prism):
    server = prism(SPEC)
    http = RecordingHttp()
    sender(server.url, http, domain="mg.eu.acme.example").send(message())
    assert http.exchanges[0]["url"].endswith("/v3/mg.eu.acme.example/messages.mime")
    assert http.exchanges[0]["violations"] is None


def test_a_refused_key_is_followed_by_the_next(prism):
    server = prism(SPEC)

    class FirstKeyRefused(RecordingHttp):
        def request(self, method, url, **kwargs):
            self.prefer = "code=401" if not self.exchanges else None
            return super().request(method, url, **kwargs)

    http = FirstKeyRefused()
    outcome = sender(server.url, http, api_keys=["key-old", "key-new"]).send(message())
    assert [e["status"] for e in http.exchanges] == [401, 200]
    assert outcome.provider_message_id == "message-id"


def test_429_is_retryable_after_mailguns_delay(prism):
    with pytest.raises(RetryableDeliveryError) as caught:
        sender(prism(SPEC).url, RecordingHttp(prefer="code=429")).send(message())
    assert caught.value.retry_after == 120.0


def test_400_is_permanent_with_mailguns_message(prism):
    with pytest.raises(PermanentDeliveryError) as caught:
        sender(prism(SPEC).url, RecordingHttp(prefer="code=400")).send(message())
    assert caught.value.provider_code == "400" and "not a valid address" in caught.value.message


def test_attachments_are_fetched_and_attached(prism):
    with Origin() as origin:
        origin.routes["/files/rechnung.pdf"] = Reply(200, b"%PDF-1.4 \x00\xff", {"Content-Type": "application/pdf"})
        http = RecordingHttp()
        downloader = origin.downloader(resolve=lambda host: ["93.184.215.14"])
        sender(prism(SPEC).url, http, downloader).send(
            message(attachments=[OutboundAttachment(url="https://files.example.com/files/rechnung.pdf")]))
    assert http.exchanges[0]["violations"] is None
    mime = parse_form(http.exchanges[0]["body"], http.exchanges[0]["headers"]["Content-Type"]).data("message")
    [attachment] = email.message_from_bytes(mime, policy=email.policy.default).iter_attachments()
    assert (attachment.get_filename(), attachment.get_content()) == ("rechnung.pdf", b"%PDF-1.4 \x00\xff")


def test_negative_control_the_mock_refuses_a_send_without_the_message_file(prism):
    server = prism(SPEC)
    reply = call("POST", f"{server.url}/v3/mg.acme.example/messages.mime", form={"to": "ana@customer.example"},
                 basic_auth=("api", "key-current"))
    assert reply.status == 400 and reply.violations
    unauthenticated = call("POST", f"{server.url}/v3/mg.acme.example/messages.mime", form={"to": "a@b.example"})
    assert unauthenticated.status == 401
