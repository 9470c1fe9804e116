"""SES replaces the hub's Message-ID with its own, and the customer's reply names SES's in
In-Reply-To: the send worker stores the id SES answered as one more thread key of the case, in
the same write as the send's outcome, so that reply threads into the case as the hub's own id does.

Against the real SES sender (its `SendEmail` answered by botocore's Stubber) and the SQLite store.
"""

from __future__ import annotations

from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import ANY, Stubber

from chalicelib.adapters.channels.email.outbound import thread_key
from chalicelib.adapters.channels.sending import SenderRuntime
from chalicelib.adapters.channels.ses.adapter import SesSettings
from chalicelib.adapters.channels.ses.sender import SesSender
from chalicelib.adapters.connectors.http import HttpClient
from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.domain.models import Channel
from chalicelib.domain.outbound import OutboundMessage
from chalicelib.hubconfig import DeliverySettings
from chalicelib.secrets import SecretResolver
from chalicelib.service.messages import EMAIL_THREAD_PREFIX, outbound_contact
from chalicelib.service.send_worker import SendResult, SendWorker
from tests.support.fakes import MemoryQueue

AT = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)
OURS = "<msg_01JD0000000000000000000001@acme.example>"
SES_ID = "0102019a8b7c6d5e-1f2a3b4c-5d6e-7f80-9a1b-2c3d4e5f6a7b-000000"


@pytest.fixture
def ses():
    client = boto3.client("sesv2", region_name="eu-west-1", aws_access_key_id="test", aws_secret_access_key="test")
    with Stubber(client) as stubber:
        yield client, stubber


def message() -> OutboundMessage:
    return OutboundMessage(
        id="ct_01JD0000000000000000000001", customer_id="cus_1", case_id="case_1", channel=Channel.EMAIL,
        provider="ses", account="support@acme.example", to="jana@kunde.example", text="Die Störung ist behoben.",
        message_id=OURS, origin="api:test", queued_at=AT,
    )


def test_the_id_ses_gave_the_mail_leads_the_customers_reply_to_the_case(ses):
    client, stubber = ses
    stubber.add_response("send_email", {"MessageId": SES_ID}, {
        "FromEmailAddress": "support@acme.example", "Destination": {"ToAddresses": ["jana@kunde.example"]},
        "Content": ANY, "EmailTags": ANY,
    })
    store = SqliteStore(":memory:")
    queued = message()
    # What the send API writes: the contact, and the hub's own Message-ID as a thread key.
    store.commit_outbound(outbound_contact(queued, AT), thread_keys=[EMAIL_THREAD_PREFIX + OURS.strip("<>")])
    sender = SesSender(SesSettings.model_validate({"sending_addresses": ["support@acme.example"]}), SecretResolver({}),
                       SenderRuntime(http=HttpClient(), aws_client=lambda name: client, clock=lambda: AT))
    worker = SendWorker(store=store, senders=lambda provider: sender, dead_letters=MemoryQueue(),
                        settings=DeliverySettings(), clock=lambda: AT)

    assert worker.send(queued, receive_count=1) == SendResult.SENT

    ses_key = f"email:{SES_ID}@eu-west-1.amazonses.com"
    ours_key = f"email:{OURS.strip('<>')}"
    assert store.find_threads([ses_key, ours_key]) == {ses_key: "case_1", ours_key: "case_1"}
    assert store.get_contact(queued.id).metadata["message_id"] == f"<{SES_ID}@eu-west-1.amazonses.com>"


def test_thread_keys_take_the_inbound_form():
    from chalicelib.adapters.channels.email.mime import (
        THREAD_KEY_PREFIX,
        thread_keys_for,
    )

    assert thread_key(" <abc@x.example> ") == "email:abc@x.example" == thread_keys_for("abc@x.example")[0]
    assert THREAD_KEY_PREFIX == EMAIL_THREAD_PREFIX == "email:"
