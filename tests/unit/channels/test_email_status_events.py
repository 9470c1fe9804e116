"""Statuses of mail the hub sent, from each email provider's reports: Mailgun's event webhooks
(`/webhooks/mailgun/events`), SendGrid's signed Event Webhook (`/webhooks/sendgrid/events`) and
SES's event publishing / identity notifications. Fixtures are the exact bodies (sources in
tests/fixtures/mailgun/events/SOURCES.md and tests/fixtures/sendgrid/events/event_webhook.json)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from chalicelib.adapters.channels.base import AdapterServices, WebhookRequest
from chalicelib.adapters.channels.mailgun.adapter import MailgunAdapter, MailgunSettings, NotAcceptableError, ReplayedTokenError
from chalicelib.adapters.channels.sendgrid.adapter import SendgridAdapter, SendgridSettings
from chalicelib.adapters.channels.ses.adapter import SesAdapter, SesSettings
from chalicelib.domain.models import Channel, StatusEvent
from chalicelib.domain.outbound import outbound_status
from chalicelib.errors import SignatureError
from chalicelib.secrets import SecretResolver
from chalicelib.signing.replay import MemoryReplayGuard

FIXTURES = Path(__file__).parents[2] / "fixtures"
MAILGUN_KEY = "test-mailgun-webhook-signing-key"
AT = datetime(2026, 1, 1, 0, 5, tzinfo=timezone.utc)


def post(body: bytes, hook: str, headers: dict[str, str] | None = None, at: datetime = AT) -> WebhookRequest:
    return WebhookRequest(method="POST", hook=hook, headers={"content-type": "application/json", **(headers or {})},
                          query={}, body=body, received_at=at)


# --- Mailgun -------------------------------------------------------------------------------------------


def mailgun(**settings) -> MailgunAdapter:
    values = {"webhook_signing_keys": [MAILGUN_KEY], **settings}
    return MailgunAdapter(MailgunSettings.model_validate(values), SecretResolver({}),
                          AdapterServices(replay_guard=MemoryReplayGuard()))


def mailgun_event(name: str) -> StatusEvent:
    body = (FIXTURES / "mailgun" / "events" / f"{name}.json").read_bytes()
    adapter = mailgun()
    request = post(body, "events")
    adapter.verify(request)
    [event] = adapter.parse(request).events
    return event


@pytest.mark.parametrize(
    "name, status, code, opted_out, message_id",
    [
        ("delivered", "delivered", None, False, "msg_01JD0000000000000000000001@mg.acme.example"),
        ("failed_permanent", "failed", "bounce", False, "msg_01JD0000000000000000000002@mg.acme.example"),
        ("failed_temporary", "sending", "generic", False, "msg_01JD0000000000000000000003@mg.acme.example"),
        ("complained", "failed", "complaint", True, "msg_01JD0000000000000000000004@mg.acme.example"),
        ("unsubscribed", "failed", "unsubscribed", True, "msg_01JD0000000000000000000005@mg.acme.example"),
        ("opened", "read", None, False, "msg_01JD0000000000000000000001@mg.acme.example"),
    ],
)
def test_mailgun_events_become_statuses(name, status, code, opted_out, message_id):
    event = mailgun_event(name)
    assert (event.provider, event.channel, event.provider_message_id) == ("mailgun", Channel.EMAIL, message_id)
    assert (event.status, event.error_code, event.opted_out) == (status, code, opted_out)
    assert event.occurred_at is not None and event.occurred_at.year == 2026
    assert "ip" not in event.raw and "client-info" not in event.raw, "the opener's device is not kept"


def test_mailgun_permanent_failure_keeps_the_smtp_reason():
    event = mailgun_event("failed_permanent")
    assert event.recipient == "invalid@customer.example"
    assert event.error_message.startswith("5.1.1 The email account that you tried to reach does not exist")
    assert outbound_status(event.status) is not None
    assert outbound_status(mailgun_event("failed_temporary").status) is None, "Mailgun still retries"


def test_mailgun_event_with_a_wrong_key_or_no_signature_is_refused():
    body = (FIXTURES / "mailgun" / "events" / "delivered.json").read_bytes()
    with pytest.raises(SignatureError):
        mailgun(webhook_signing_keys=["another-key"]).verify(post(body, "events"))
    with pytest.raises(NotAcceptableError):
        mailgun().verify(post(b'{"event-data": {"event": "delivered"}}', "events"))
    with pytest.raises(NotAcceptableError):
        mailgun().verify(post(b"not json", "events"))


def test_mailgun_event_outside_the_window_is_refused():
    body = (FIXTURES / "mailgun" / "events" / "delivered.json").read_bytes()
    with pytest.raises(SignatureError):
        mailgun().verify(post(body, "events", at=datetime(2026, 1, 2, tzinfo=timezone.utc)))


def test_a_mailgun_token_carries_one_event_only():
    adapter = mailgun()
    body = json.loads((FIXTURES / "mailgun" / "events" / "delivered.json").read_bytes())
    first = json.dumps(body).encode()
    adapter.parse(post(first, "events"))
    adapter.parse(post(first, "events"))  # Mailgun's retry of the same event passes
    body["event-data"]["event"] = "complained"
    with pytest.raises(ReplayedTokenError):
        adapter.parse(post(json.dumps(body).encode(), "events"))


def test_unknown_mailgun_events_are_kept_raw():
    data = {"event": "list_member_uploaded", "timestamp": 1767225600.0}
    token = "u" * 50
    signature = hmac.new(MAILGUN_KEY.encode(), f"1767225600{token}".encode(), hashlib.sha256).hexdigest()
    body = json.dumps({"signature": {"timestamp": "1767225600", "token": token, "signature": signature},
                       "event-data": data}).encode()
    parsed = mailgun().parse(post(body, "events"))
    assert parsed.events == [] and "not a delivery status" in parsed.unhandled[0].reason


# --- SendGrid -------------------------------------------------------------------------------------------


def sendgrid(**settings) -> SendgridAdapter:
    values = {"api_keys": ["SG.test"], "event_webhook_public_keys": [(FIXTURES / "sendgrid" / "public_key.txt").read_text().strip()],
              **settings}
    return SendgridAdapter(SendgridSettings.model_validate(values), SecretResolver({}))


def sendgrid_request(body: bytes | None = None, **header_changes) -> WebhookRequest:
    meta = json.loads((FIXTURES / "sendgrid" / "events" / "event_webhook.json").read_text())
    stored = (FIXTURES / "sendgrid" / "events" / "event_webhook.body").read_bytes()
    headers = {**meta["headers"], **header_changes}
    return post(stored if body is None else body, meta["hook"], headers)


def test_sendgrid_event_webhook_becomes_statuses_matched_by_the_hub_id():
    adapter = sendgrid()
    request = sendgrid_request()
    adapter.verify(request)
    parsed = adapter.parse(request)
    rows = [(e.provider_message_id, e.status, e.error_code, e.opted_out) for e in parsed.events]
    assert rows == [
        ("msg_01JD0000000000000000000011", "sent", None, False),
        ("msg_01JD0000000000000000000011", "delivered", None, False),
        ("msg_01JD0000000000000000000011", "read", None, False),
        ("msg_01JD0000000000000000000012", "failed", "bounce", False),
        # A dropped event's sg_message_id has no X-Message-Id prefix: the custom arg matches it.
        ("msg_01JD0000000000000000000013", "failed", "dropped", True),
        ("msg_01JD0000000000000000000011", "failed", "complaint", True),
        ("msg_01JD0000000000000000000011", "failed", "unsubscribed", True),
    ]
    bounce = parsed.events[3]
    assert bounce.error_message == "550 5.1.1 The email account that you tried to reach does not exist."
    assert bounce.recipient == "invalid@customer.example"
    assert bounce.occurred_at == datetime.fromtimestamp(1767225603, tz=timezone.utc)
    assert "useragent" not in parsed.events[2].raw
    [kept] = parsed.unhandled
    assert "group_resubscribe" in kept.reason


def test_sendgrid_events_without_our_arg_fall_back_to_sendgrids_id():
    from chalicelib.adapters.channels.sendgrid.events import status_event

    event = status_event("sendgrid", {"event": "delivered", "sg_message_id": "wrfRRvF7Q0GgwUo2CvDmEA.filter0425p1mdw1.0",
                                      "email": "a@b.example", "timestamp": 1767225600}, AT)
    assert event.provider_message_id == "wrfRRvF7Q0GgwUo2CvDmEA"


@pytest.mark.parametrize(
    "changes",
    [
        {"x-twilio-email-event-webhook-signature": "MEUCIQ" + "A" * 90},
        {"x-twilio-email-event-webhook-timestamp": "1767225611"},
    ],
)
def test_sendgrid_events_with_a_bad_signature_are_refused(changes):
    with pytest.raises(SignatureError):
        sendgrid().verify(sendgrid_request(**changes))


def test_sendgrid_events_need_a_configured_key_and_a_fresh_timestamp():
    with pytest.raises(SignatureError, match="event_webhook_public_keys"):
        sendgrid(event_webhook_public_keys=[]).verify(sendgrid_request())
    late = WebhookRequest(**{**sendgrid_request().__dict__, "received_at": datetime(2026, 1, 3, tzinfo=timezone.utc)})
    with pytest.raises(SignatureError):
        sendgrid().verify(late)


def test_a_sending_only_sendgrid_section_refuses_inbound_parse_posts():
    adapter = sendgrid()
    request = post(b"--x--", None, {"content-type": "multipart/form-data; boundary=x"})
    with pytest.raises(SignatureError, match="Inbound Parse is not configured"):
        adapter.verify(request)
    with pytest.raises(ValueError, match="basic_auth or path_tokens"):
        SendgridSettings.model_validate({})


# --- SES -------------------------------------------------------------------------------------------------
# Shapes from AWS's "Examples of event data that Amazon SES publishes to Amazon SNS"
# (https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-examples.html),
# trimmed to the fields the hub reads, and identity notifications
# (https://docs.aws.amazon.com/ses/latest/dg/notification-examples.html).

MAIL = {"timestamp": "2026-01-01T00:00:00.000Z", "source": "support@acme.example", "messageId": "0100018c-sent-by-us",
        "destination": ["ana@customer.example"], "tags": {"hub_message_id": ["msg_1"]}}


def ses_status(notification: dict) -> StatusEvent:
    body = json.dumps({"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
                       "Message": json.dumps({**notification, "mail": MAIL})}).encode()
    adapter = SesAdapter(SesSettings(topic_arns=["arn:aws:sns:us-east-1:123456789012:ses-events"]), SecretResolver({}))
    [event] = adapter.parse(post(body, None, {"content-type": "text/plain"})).events
    return event


@pytest.mark.parametrize(
    "notification, status, code, reason, opted_out",
    [
        ({"eventType": "Send", "send": {}}, "sent", None, None, False),
        ({"eventType": "Delivery", "delivery": {"timestamp": "2026-01-01T00:00:02.000Z", "recipients": ["ana@customer.example"],
          "smtpResponse": "250 2.6.0 Message received"}}, "delivered", None, None, False),
        ({"eventType": "Bounce", "bounce": {"bounceType": "Permanent", "bounceSubType": "OnAccountSuppressionList",
          "bouncedRecipients": [{"emailAddress": "ana@customer.example", "action": "failed", "status": "5.1.1",
          "diagnosticCode": "Amazon SES did not send the message to this address because it is on the suppression list for your account."}],
          "timestamp": "2026-01-01T00:00:02.000Z"}}, "failed", "Permanent/OnAccountSuppressionList",
         "Amazon SES did not send the message to this address because it is on the suppression list for your account.", False),
        ({"notificationType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": "ana@customer.example"}],
          "timestamp": "2026-01-01T00:00:02.000Z", "feedbackId": "0100018c-feedback", "complaintFeedbackType": "abuse"}},
         "failed", "complaint", "abuse", True),
        ({"eventType": "Reject", "reject": {"reason": "Bad content"}}, "failed", "rejected", "Bad content", False),
        ({"eventType": "Rendering Failure", "failure": {"errorMessage": "Attribute 'name' is not present",
          "templateName": "t"}}, "failed", "rendering_failure", "Attribute 'name' is not present", False),
        ({"eventType": "DeliveryDelay", "deliveryDelay": {"timestamp": "2026-01-01T00:00:02.000Z", "delayType": "TransientCommunicationFailure",
          "delayedRecipients": [{"emailAddress": "ana@customer.example", "status": "4.4.1",
          "diagnosticCode": "smtp; 421 4.4.0 Unable to lookup DNS for customer.example"}]}},
         "sending", "TransientCommunicationFailure", "smtp; 421 4.4.0 Unable to lookup DNS for customer.example", False),
        ({"eventType": "Open", "open": {"ipAddress": "192.0.2.1", "timestamp": "2026-01-01T00:00:02.000Z", "userAgent": "Mozilla"}},
         "read", None, None, False),
    ],
)  # fmt: skip
def test_ses_feedback_in_the_hub_vocabulary(notification, status, code, reason, opted_out, monkeypatch):
    monkeypatch.setattr(SesAdapter, "verify", lambda self, request: None)
    event = ses_status(notification)
    assert (event.provider_message_id, event.status, event.error_code, event.error_message, event.opted_out) == (
        "0100018c-sent-by-us", status, code, reason, opted_out)
    assert event.recipient == "ana@customer.example"
    assert event.occurred_at is not None
