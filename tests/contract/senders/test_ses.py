"""The SES sender against botocore's own model: `Stubber` validates every `SendEmail` parameter
against the sesv2 service model (and the stubbed answer against the output shape), so a request
SES would refuse for its shape fails here. No Prism: AWS publishes no OpenAPI file."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timezone

import boto3
import pytest
from botocore.exceptions import ParamValidationError
from botocore.stub import ANY, Stubber

from chalicelib.adapters.channels.sending import SenderRuntime
from chalicelib.adapters.channels.ses.adapter import SesSettings
from chalicelib.adapters.channels.ses.sender import SesSender
from chalicelib.adapters.connectors.http import HttpClient
from chalicelib.domain.models import Channel, ReplyContext
from chalicelib.domain.outbound import OutboundMessage
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError
from chalicelib.secrets import SecretResolver

AT = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
SES_ID = "0102018c1b2c3d4e-5f6a7b8c-9d0e-1f2a-3b4c-5d6e7f8a9b0c-000000"
OURS = "<msg_01JD0000000000000000000001@acme.example>"


@pytest.fixture
def ses():
    client = boto3.client("sesv2", region_name="eu-west-1", aws_access_key_id="test", aws_secret_access_key="test")
    sent: list[dict] = []
    client.meta.events.register("provide-client-params.sesv2.SendEmail", lambda params, **_: sent.append(params))
    with Stubber(client) as stubber:
        yield client, stubber, sent
        stubber.assert_no_pending_responses()


def sender(client, **settings) -> SesSender:
    values = {"sending_addresses": ["@acme.example"], "from_name": "Acme Support", "configuration_set_name": "hub-events",
              **settings}
    runtime = SenderRuntime(http=HttpClient(), aws_client=lambda name: client, clock=lambda: AT)
    return SesSender(SesSettings.model_validate(values), SecretResolver({}), runtime)


def message(**changes) -> OutboundMessage:
    return OutboundMessage(**{
        "id": "msg_01JD0000000000000000000001", "customer_id": "cus_1", "case_id": "case_1", "channel": Channel.EMAIL,
        "provider": "ses", "account": "support@acme.example", "to": "ana@customer.example", "text": "Erledigt.",
        "reply": ReplyContext(in_reply_to="<CAF=a1b2c3@mail.customer.example>", subject="Order #1042"),
        "message_id": OURS, "origin": "api:agent", "queued_at": AT, **changes,
    })


def expected(**changes) -> dict:
    return {"FromEmailAddress": "support@acme.example", "Destination": {"ToAddresses": ["ana@customer.example"]},
            "Content": {"Raw": {"Data": ANY}}, "ConfigurationSetName": "hub-events",
            "EmailTags": [{"Name": "hub_message_id", "Value": "msg_01JD0000000000000000000001"}], **changes}


def test_send_email_with_raw_mime_and_the_configuration_set(ses):
    client, stubber, sent = ses
    stubber.add_response("send_email", {"MessageId": SES_ID}, expected())
    outcome = sender(client).send(message())
    assert outcome.provider_message_id == SES_ID
    # SES replaces our Message-ID with its own; the outcome names the one the customer sees.
    assert outcome.metadata == {"message_id": f"<{SES_ID}@eu-west-1.amazonses.com>", "hub_message_id": OURS,
                                "ses_message_id": SES_ID}
    mail = email.message_from_bytes(sent[0]["Content"]["Raw"]["Data"], policy=email.policy.default)
    assert (mail["Message-ID"], mail["In-Reply-To"], mail["Subject"]) == (OURS, "<CAF=a1b2c3@mail.customer.example>", "Re: Order #1042")
    # Our own id in References survives SES's rewrite, so the customer's reply still names it.
    assert mail["References"].split() == ["<CAF=a1b2c3@mail.customer.example>", OURS]
    assert str(mail["From"]) == "Acme Support <support@acme.example>"


def test_without_a_configuration_set_none_is_sent_and_us_east_1_ids_use_email_amazonses(ses):
    client, stubber, _ = ses
    params = expected()
    del params["ConfigurationSetName"]
    stubber.add_response("send_email", {"MessageId": SES_ID}, params)
    outcome = sender(client, configuration_set_name=None, message_id_domain="email.amazonses.com").send(message())
    assert outcome.metadata["message_id"] == f"<{SES_ID}@email.amazonses.com>"


@pytest.mark.parametrize(
    "code, status, error, provider_code",
    [
        ("TooManyRequestsException", 429, RetryableDeliveryError, None),
        ("LimitExceededException", 400, RetryableDeliveryError, None),
        ("SendingPausedException", 400, RetryableDeliveryError, None),
        ("InternalFailure", 500, RetryableDeliveryError, None),
        ("MessageRejected", 400, PermanentDeliveryError, "MessageRejected"),
        ("MailFromDomainNotVerifiedException", 400, PermanentDeliveryError, "MailFromDomainNotVerifiedException"),
        ("AccountSuspendedException", 400, PermanentDeliveryError, "AccountSuspendedException"),
        ("NotFoundException", 404, PermanentDeliveryError, "NotFoundException"),
    ],
)
def test_ses_errors_are_classified(ses, code, status, error, provider_code):
    client, stubber, _ = ses
    stubber.add_client_error("send_email", service_error_code=code, service_message="nope", http_status_code=status,
                             expected_params=expected())
    with pytest.raises(error) as caught:
        sender(client).send(message())
    assert getattr(caught.value, "provider_code", None) == provider_code
    assert code in caught.value.message
    if code == "SendingPausedException":
        assert caught.value.retry_after == 900.0


def test_negative_control_the_model_refuses_a_malformed_request():
    client = boto3.client("sesv2", region_name="eu-west-1", aws_access_key_id="test", aws_secret_access_key="test")
    stubber = Stubber(client).__enter__()
    # A queued answer, so the Stubber lets the call reach botocore's validation, which refuses it
    # before the answer is used.
    stubber.add_response("send_email", {"MessageId": SES_ID})
    with pytest.raises(ParamValidationError, match="ToAddresses"):
        client.send_email(FromEmailAddress="support@acme.example", Destination={"ToAddresses": "ana@customer.example"},
                          Content={"Raw": {"Data": b"x"}})
    stubber.add_response("send_email", {"MessageId": SES_ID})
    with pytest.raises(ParamValidationError, match="Content"):
        client.send_email(FromEmailAddress="support@acme.example", Destination={"ToAddresses": ["a@b.example"]})


def test_negative_control_the_stubbed_answer_is_checked_too(ses):
    _, stubber, _ = ses
    with pytest.raises(ParamValidationError):
        stubber.add_response("send_email", {"MessageId": 123})
