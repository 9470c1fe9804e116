"""The SendGrid sender against a Prism mock of SendGrid's verbatim Mail Send spec
(tests/contract/specs/sendgrid/tsg_mail_v3.json): the JSON body (personalizations with the hub's
custom arg, from, subject, text and HTML content, base64 attachments, threading headers), bearer
auth, error handling, and a negative control showing the mock refuses a malformed request."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest

from chalicelib.adapters.channels.sendgrid.adapter import SendgridSettings
from chalicelib.adapters.channels.sendgrid.sender import SendgridSender
from chalicelib.adapters.channels.sending import SenderRuntime
from chalicelib.domain.models import Channel, ReplyContext
from chalicelib.domain.outbound import OutboundAttachment, OutboundMessage
from chalicelib.errors import PermanentDeliveryError
from tests.contract.senders.test_mailgun import RecordingHttp
from chalicelib.secrets import SecretResolver
from tests.support.origin import Origin, Reply
from tests.support.prism import call

SPEC = "sendgrid/tsg_mail_v3.json"
AT = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
OURS = "<msg_01JD0000000000000000000001@acme.example>"
pytestmark = pytest.mark.prism_specs(SPEC)


def sender(base_url: str, http, downloader=None, **settings) -> SendgridSender:
    values = {"api_base_url": base_url, "api_keys": ["SG.current"], "sending_addresses": ["support@acme.example"],
              "from_name": "Acme Support", **settings}
    extra = {"downloader": downloader} if downloader else {}
    runtime = SenderRuntime(http=http, aws_client=lambda name: None, clock=lambda: AT, extra=extra)
    return SendgridSender(SendgridSettings.model_validate(values), SecretResolver({}), runtime)


def message(**changes) -> OutboundMessage:
    return OutboundMessage(**{
        "id": "msg_01JD0000000000000000000001", "customer_id": "cus_1", "case_id": "case_1", "channel": Channel.EMAIL,
        "provider": "sendgrid", "account": "support@acme.example", "to": "ana@customer.example", "text": "Erledigt.",
        "html": "<p>Erledigt.</p>",
        "reply": ReplyContext(in_reply_to="<CAF=a1b2c3@mail.customer.example>", subject="AW: Order #1042"),
        "message_id": OURS, "origin": "routing:ack", "queued_at": AT, **changes,
    })


def test_send_posts_mail_send_with_threading_headers_and_our_custom_arg(prism):
    server = prism(SPEC)
    http = RecordingHttp()
    outcome = sender(server.url, http).send(message())
    [exchange] = http.exchanges
    assert exchange["status"] == 202 and exchange["violations"] is None
    assert exchange["url"] == f"{server.url}/v3/mail/send"
    assert exchange["headers"]["Authorization"] == "Bearer SG.current"
    body = json.loads(exchange["body"])
    assert body["personalizations"] == [{"to": [{"email": "ana@customer.example"}],
                                         "custom_args": {"hub_outbound_id": "msg_01JD0000000000000000000001"}}]
    assert body["from"] == {"email": "support@acme.example", "name": "Acme Support"}
    assert body["subject"] == "Re: Order #1042"
    assert body["content"] == [{"type": "text/plain", "value": "Erledigt.\n"}, {"type": "text/html", "value": "<p>Erledigt.</p>"}]
    assert body["headers"] == {
        "Message-ID": OURS, "In-Reply-To": "<CAF=a1b2c3@mail.customer.example>",
        "References": f"<CAF=a1b2c3@mail.customer.example> {OURS}", "Auto-Submitted": "auto-replied",
    }
    assert "attachments" not in body
    # Statuses are matched by the custom arg: the hub's id is the provider id.
    assert outcome.provider_message_id == "msg_01JD0000000000000000000001"
    assert outcome.metadata["message_id"] == OURS


def test_attachments_go_as_base64(prism):
    with Origin() as origin:
        origin.routes["/files/rechnung.pdf"] = Reply(200, b"%PDF-1.4 \x00\xff", {"Content-Type": "application/pdf"})
        http = RecordingHttp()
        downloader = origin.downloader(resolve=lambda host: ["93.184.215.14"])
        sender(prism(SPEC).url, http, downloader).send(
            message(attachments=[OutboundAttachment(url="https://files.example.com/files/rechnung.pdf")]))
    assert http.exchanges[0]["violations"] is None
    [attachment] = json.loads(http.exchanges[0]["body"])["attachments"]
    assert attachment == {"content": base64.b64encode(b"%PDF-1.4 \x00\xff").decode(), "type": "application/pdf",
                          "filename": "rechnung.pdf", "disposition": "attachment"}


def test_a_refusal_is_permanent_with_sendgrids_error(prism):
    with pytest.raises(PermanentDeliveryError) as caught:
        sender(prism(SPEC).url, RecordingHttp(prefer="code=400")).send(message())
    assert caught.value.provider_code == "400"


def test_negative_control_the_mock_refuses_a_malformed_request(prism):
    server = prism(SPEC)
    no_from = call("POST", f"{server.url}/v3/mail/send", bearer="SG.current",
                   json_body={"personalizations": [{"to": [{"email": "ana@customer.example"}]}], "subject": "x",
                              "content": [{"type": "text/plain", "value": "x"}]})
    assert no_from.status == 400 and no_from.violations
    bad_address = call("POST", f"{server.url}/v3/mail/send", bearer="SG.current",
                       json_body={"personalizations": [{"to": [{"email": "not-an-address"}]}],
                                  "from": {"email": "support@acme.example"}, "content": [{"type": "text/plain", "value": "x"}]})
    assert bad_address.status == 400
    assert call("POST", f"{server.url}/v3/mail/send", json_body={}).status == 401
