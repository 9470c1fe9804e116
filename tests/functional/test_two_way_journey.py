"""The two-way journey end to end, through HTTP on the embedded hub: a customer writes on WhatsApp,
the hub opens a ticket in the Zendesk fake, an agent answers in the ticket, the customer gets the
answer on WhatsApp, answers again by SMS, and the SMS lands as a comment on the same ticket; the
agent solves the ticket and the case closes (README, "Answering from your helpdesk")."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta

from tests.functional.two_way import (
    INBOUND_WAMID,
    WRITTEN,
    answer_whatsapp_sends,
    case_view,
    customer_writes_sms,
    customer_writes_whatsapp,
    post_callback,
    settle,
    two_way_hub,
    wait_case_event,
    wait_ticket,
    wait_whatsapp_sends,
)
from tests.support.fake_zendesk import AGENT_ID, HUB_USER_ID, FakeZendesk
from tests.support.fakes import Clock
from tests.support.receiver import Receiver

SECRET = "am91cm5leSBzaWduaW5nIHNlY3JldA=="


def zendesk_callback(body: dict, at) -> tuple[bytes, dict]:
    raw = json.dumps(body).encode()
    timestamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    signature = base64.b64encode(hmac.new(SECRET.encode(), timestamp.encode() + raw, hashlib.sha256).digest()).decode()
    return raw, {"Content-Type": "application/json", "X-Zendesk-Webhook-Signature": signature,
                 "X-Zendesk-Webhook-Signature-Timestamp": timestamp}


def test_whatsapp_to_zendesk_agent_answer_to_whatsapp_then_sms_into_the_same_ticket(tmp_path, receiver):
    clock = Clock(WRITTEN + timedelta(seconds=30))
    with Receiver() as provider, FakeZendesk() as zendesk:
        helpdesk = {"name": "helpdesk", "type": "zendesk", "base_url": zendesk.url, "upload_attachments": False,
                    "auth": {"type": "basic", "username": "hub@acme.example/token", "password": "zendesk-api-token"},
                    "callbacks": {"secrets": [SECRET], "hub_author_ids": [str(HUB_USER_ID)]}}
        with two_way_hub(tmp_path, receiver, provider, helpdesk, clock=clock) as hub:
            # 1. The customer writes on WhatsApp; the hub opens a ticket for the case.
            whatsapp = customer_writes_whatsapp(hub)
            ticket = wait_ticket(hub, whatsapp["case_id"], "helpdesk")
            assert zendesk.tickets[int(ticket)]["external_id"] == whatsapp["case_id"]

            # 2. The agent answers publicly in Zendesk; the trigger calls the hub.
            clock.advance(120)
            answer_whatsapp_sends(provider)
            zendesk.agent_comment(int(ticket), "Ihr Paket ist unterwegs und kommt morgen.")
            body, headers = zendesk_callback({
                "hub_event": "reply", "ticket_id": ticket, "external_id": whatsapp["case_id"], "status": "Pending",
                "priority": "Normal", "assignee_id": str(AGENT_ID), "assignee_name": "Alex Agent",
                "updated_at": "2026-01-01T00:02:30Z", "current_user_id": str(AGENT_ID), "current_user_role": "Agent",
            }, clock())
            assert post_callback(hub, "helpdesk", body, headers).status == 200

            # 3. The customer receives it on WhatsApp, as an answer to their message.
            [sent] = wait_whatsapp_sends(hub, provider)
            assert (sent["to"], sent["text"]["body"]) == ("16505551234", "Ihr Paket ist unterwegs und kommt morgen.")
            assert sent["context"]["message_id"] == INBOUND_WAMID

            # 4. The customer answers by SMS from the same number: same customer, same case, and the
            #    SMS is a comment on the same ticket.
            clock.advance(300)
            sms = customer_writes_sms(hub, "Danke! Kann ich es auch abholen?")
            assert (sms["customer_id"], sms["case_id"]) == (whatsapp["customer_id"], whatsapp["case_id"])
            settle(hub)
            comments = zendesk.comments(int(ticket))
            assert any("Kann ich es auch abholen?" in c["body"] and "via sms" in c["body"] for c in comments)
            assert len(zendesk.tickets) == 1

            # 5. The agent solves the ticket: the case closes and the webhook destination hears it.
            clock.advance(60)
            body, headers = zendesk_callback({
                "hub_event": "status", "ticket_id": ticket, "external_id": whatsapp["case_id"], "status": "Solved",
                "priority": "Normal", "assignee_id": str(AGENT_ID), "assignee_name": "Alex Agent",
                "updated_at": "2026-01-01T00:09:00Z", "current_user_id": str(AGENT_ID), "current_user_role": "Agent",
            }, clock())
            assert post_callback(hub, "helpdesk", body, headers).status == 200
            wait_case_event(hub, receiver, "case.closed")
            case = case_view(hub, whatsapp["case_id"])
            assert (case["status"], case["close_reason"], case["closed_by"]) == ("closed", "vendor_closed", "helpdesk")
            assert case["channels"] == ["whatsapp", "sms"]
