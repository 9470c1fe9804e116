"""The Telegram sender against a Prism mock of the hand-written Bot API contract
(tests/contract/specs/telegram/telegram-bot-sendMessage.handwritten.openapi.yaml: sendMessage,
sendPhoto, sendDocument with JSON bodies and `reply_parameters`), its error answers through
`Prefer: code=…`, and negative controls."""

from __future__ import annotations

import json

import pytest

from chalicelib.adapters.channels.telegram.adapter import TelegramSettings
from chalicelib.adapters.channels.telegram.sender import TelegramSender
from chalicelib.domain.models import ReplyContext
from chalicelib.domain.outbound import OutboundAttachment
from chalicelib.errors import RecipientOptedOutError, RetryableDeliveryError
from tests.contract.channels.telegram import BOT_ID, CASE
from tests.support.prism import violations
from tests.support.send_fixtures import RecordingHttp, outbound, sender

SPEC = "telegram/telegram-bot-sendMessage.handwritten.openapi.yaml"
TOKEN = f"{BOT_ID}:AAHcurrentTokenOfTheSupportBot_0123456789"
ENV = {"TELEGRAM_BOT_TOKEN": TOKEN}

pytestmark = pytest.mark.prism_specs(SPEC)


def telegram(url: str, http: RecordingHttp, **overrides) -> TelegramSender:
    settings = {**CASE.settings, "bot_tokens": ["env:TELEGRAM_BOT_TOKEN"], "api_base_url": url, **overrides}
    return sender(TelegramSender, TelegramSettings, settings, http, ENV)


def reply(**fields):
    defaults = {"account": str(BOT_ID), "to": "123456789", "text": "Olá Ana, your order ships today.",
                "reply": ReplyContext(provider_message_id="4711")}  # fmt: skip
    return outbound(channel="telegram", provider="telegram", **{**defaults, **fields})


def test_a_reply_is_a_send_message_telegram_accepts(prism):
    http = RecordingHttp()

    result = telegram(prism(SPEC).url, http, link_previews=False).send(reply())

    assert http.calls == [("POST", f"/bot{TOKEN}/sendMessage", 200)]
    assert http.violations == []
    assert result.provider_message_id == "123456789:42"  # the spec's example Message


@pytest.mark.parametrize(("attachment", "method"), [
    (OutboundAttachment(url="https://files.example.com/receipt.jpg"), "sendPhoto"),
    (OutboundAttachment(url="https://files.example.com/invoice-1042.pdf"), "sendDocument"),
])  # fmt: skip
def test_an_attachment_by_url_with_a_caption_is_accepted(prism, attachment, method):
    http = RecordingHttp()

    result = telegram(prism(SPEC).url, http).send(reply(to="-1001234567890", attachments=[attachment],
                                                        reply=ReplyContext(provider_message_id="4713", thread="77")))

    assert (http.calls, http.violations) == ([("POST", f"/bot{TOKEN}/{method}", 200)], [])
    assert result.provider_message_id == "123456789:43"


def test_the_spec_403_is_the_user_blocking_the_bot(prism):
    http = RecordingHttp(Prefer="code=403")
    with pytest.raises(RecipientOptedOutError):
        telegram(prism(SPEC).url, http).send(reply())
    assert http.violations == []


def test_the_spec_429_is_retryable_after_its_retry_after(prism):
    http = RecordingHttp(Prefer="code=429")
    with pytest.raises(RetryableDeliveryError) as caught:
        telegram(prism(SPEC).url, http).send(reply())
    assert caught.value.retry_after == 5.0


def test_negative_control_the_mock_refuses_the_deprecated_reply_field_and_a_long_caption(prism):
    http = RecordingHttp()
    base = f"{prism(SPEC).url}/bot{TOKEN}"
    headers = {"Content-Type": "application/json"}

    old_reply = http.request("POST", f"{base}/sendMessage", headers=headers,
                             body=json.dumps({"chat_id": 123456789, "text": "Hi", "reply_to_message_id": 4711}).encode())
    long_caption = http.request("POST", f"{base}/sendPhoto", headers=headers, body=json.dumps(
        {"chat_id": 123456789, "photo": "https://files.example.com/r.jpg", "caption": "a" * 1025}).encode())

    assert old_reply.status == 400
    assert any("reply_to_message_id" in v["message"] for v in violations(old_reply.headers)), violations(old_reply.headers)
    assert long_caption.status == 400 and violations(long_caption.headers)
