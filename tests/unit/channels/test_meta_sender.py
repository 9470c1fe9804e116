"""Meta sender: reply targets from the stored Meta inbound fixtures, the configuration, `check`
(limits, attachments, templates, tags), the request bodies, and the Graph error mapping with the
exact error bodies of tests/fixtures/meta/outbound/graph_errors.json (each names its source)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from chalicelib.adapters.channels.base import WebhookRequest
from chalicelib.adapters.channels.meta.adapter import MetaAdapter
from chalicelib.adapters.channels.meta.core import MetaSettings
from chalicelib.adapters.channels.meta.graph import retry_after
from chalicelib.adapters.channels.meta.sender import MetaSender
from chalicelib.adapters.channels.sending import ExtendedWindow, SenderRuntime, sender_class
from chalicelib.adapters.connectors.http import HttpClient, HttpResponse
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.models import Channel, Contact, InboundMessage, ReplyContext, Resolution
from chalicelib.domain.outbound import OutboundAttachment, OutboundMessage, TemplateMessage
from chalicelib.errors import (
    OutsideServiceWindowError,
    PermanentDeliveryError,
    RecipientOptedOutError,
    RetryableDeliveryError,
)
from chalicelib.secrets import SecretResolver
from chalicelib.service.identity import normalize_sender
from tests.support.fixtures import load

NUMBER = "106540352242922"
PAGE = "1234567890"
IG = "17841400000000000"
IG_PAGE = "1098765432"
WA_ID = "16505551234"
PSID = "6789012345678901"
IGSID = "5566778899001122"
AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
ENVIRON = {"WA_TOKEN": "EAAG-wa-new", "WA_OLD": "EAAG-wa-old", "PAGE_TOKEN": "EAAG-page", "IG_TOKEN": "IGAA-ig"}
ERRORS = {e["name"]: e for e in json.loads(
    (Path(__file__).parents[2] / "fixtures" / "meta" / "outbound" / "graph_errors.json").read_text())["errors"]}
WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBJCOTY3NDc0NDFDRUI3NTA0Q0UA"


def settings(**overrides) -> dict:
    return {
        "app_secrets": ["test_meta_app_secret"], "verify_tokens": ["test_meta_verify_token"],
        "api_base_url": "https://graph.example.test",
        "templates": {"case_update": {"languages": ["de", "en_US"], "parameters": 1},
                      "hello": {"languages": ["en_US"]}},
        "whatsapp": {"access_tokens": ["env:WA_TOKEN", "env:WA_OLD"],
                     "numbers": {NUMBER: {"fallback_template": {"name": "hello", "language": "en_US"}}}},
        "pages": {PAGE: {"access_tokens": "env:PAGE_TOKEN", "human_agent": True}},
        "instagram": {IG: {"access_tokens": ["env:IG_TOKEN"], "page_id": IG_PAGE}},
        **overrides,
    }


class ScriptedHttp(HttpClient):
    """Answers each request with the next scripted response and keeps what was sent."""

    def __init__(self, *answers: tuple[int, object] | tuple[int, object, dict]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[dict] = []

    def request(self, method, url, *, headers=None, body=None, timeout=None):
        self.sent.append({"method": method, "url": url, "headers": dict(headers or {}), "json": json.loads(body)})
        status, answer, *extra = self.answers.pop(0)
        raw = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        return HttpResponse(status=status, headers=extra[0] if extra else {}, body=raw)


def sender(http: HttpClient | None = None, **overrides) -> MetaSender:
    parsed = MetaSettings.model_validate(settings(**overrides))
    runtime = SenderRuntime(http=http or ScriptedHttp(), aws_client=lambda name: None, clock=lambda: AT)
    return MetaSender(parsed, SecretResolver(ENVIRON), runtime)


def outbound(channel: Channel = Channel.WHATSAPP, **fields) -> OutboundMessage:
    account, to = {Channel.WHATSAPP: (NUMBER, WA_ID), Channel.MESSENGER: (PAGE, PSID),
                   Channel.INSTAGRAM: (IG, IGSID)}[channel]
    values = {"id": "ct_out_1", "customer_id": "cus_1", "case_id": "case_1", "channel": channel, "provider": "meta",
              "account": account, "to": to, "text": "Hallo Jana, die Störung ist behoben.", "origin": "api:test",
              "queued_at": AT, **fields}
    return OutboundMessage(**values)


def problems(message: OutboundMessage, **overrides) -> dict[str, str]:
    return {p.field: p.message for p in sender(**overrides).check(message)}


# --- reply targets, from the inbound fixtures ---------------------------------------------------


def parsed(name: str) -> list:
    """The stored request through the real adapter: signature checked, then parsed."""
    fixture = load("meta", name)
    request = WebhookRequest(method="POST", hook=None, headers=dict(fixture.headers), query={}, body=fixture.body,
                             received_at=AT)
    adapter = MetaAdapter(MetaAdapter.Settings.model_validate(settings()), SecretResolver(ENVIRON))
    adapter.verify(request)
    return adapter.parse(request).events


def contact_from(name: str) -> Contact:
    """A fixture's message made a contact the way the process worker makes it."""
    message = next(e for e in parsed(name) if isinstance(e, InboundMessage))
    party = normalize_sender(message.sender.handles, message.sender.display_name, default_region=None).party
    return Contact(
        id="ct_in_1", provider=message.provider, channel=message.channel, provider_message_id=message.provider_message_id,
        account=message.account, sender=party, sent_at=message.sent_at, received_at=message.received_at,
        content_type=message.content_type, text=message.text, metadata=message.metadata, raw=message.raw,
        customer_id="cus_1", case_id="case_1", resolution=Resolution(customer_id="cus_1", created_customer=True, rule="t"),
    )


@pytest.mark.parametrize("name", ["whatsapp_text", "whatsapp_image", "whatsapp_interactive_button_reply"])
def test_a_whatsapp_reply_goes_to_the_wa_id_from_the_number_written_to_quoting_the_message(name):
    contact = contact_from(name)
    target = MetaSender.reply_target(contact)
    assert (target.channel, target.provider, target.account, target.to) == (Channel.WHATSAPP, "meta", NUMBER, WA_ID)
    assert target.reply == ReplyContext(provider_message_id=contact.provider_message_id)
    assert target.at == datetime(2026, 1, 1, tzinfo=timezone.utc)  # the provider's timestamp, not arrival
    assert (target.contact_id, target.case_id) == ("ct_in_1", "case_1")


def test_a_whatsapp_reply_target_survives_an_offloaded_raw_payload():
    contact = contact_from("whatsapp_text").model_copy(update={"raw": {"$blob": "raw/ct_in_1.json"}})
    assert MetaSender.reply_target(contact).to == WA_ID


def test_a_username_user_without_a_number_is_answered_by_bsuid():
    contact = contact_from("whatsapp_bsuid_only")
    assert MetaSender.reply_target(contact).to == "BR.1502576394655843"


@pytest.mark.parametrize("name, channel, account, to", [
    ("messenger_text", Channel.MESSENGER, PAGE, PSID),
    ("instagram_text", Channel.INSTAGRAM, IG, IGSID),
])
def test_messenger_and_instagram_replies_go_to_the_scoped_id_from_the_account_written_to(name, channel, account, to):
    contact = contact_from(name)
    target = MetaSender.reply_target(contact)
    assert (target.channel, target.account, target.to) == (channel, account, to)
    assert target.reply.provider_message_id == contact.provider_message_id
    assert target.at == contact.sent_at and target.at != contact.received_at


def test_no_reply_target_without_a_recipient():
    contact = contact_from("messenger_text")
    stranger = contact.model_copy(update={"sender": contact.sender.model_copy(update={"identifiers": []})})
    assert MetaSender.reply_target(stranger) is None


def test_the_adapter_names_its_sender_by_path():
    assert sender_class(MetaAdapter.sender) is MetaSender


# --- configuration ------------------------------------------------------------------------------


def test_a_receive_only_configuration_stays_valid_and_sends_from_nowhere():
    meta = MetaSender(MetaSettings.model_validate({"app_secrets": ["s"], "verify_tokens": ["t"]}), SecretResolver({}),
                      SenderRuntime(http=ScriptedHttp(), aws_client=lambda n: None, clock=lambda: AT))
    assert meta.default_account(Channel.WHATSAPP) is None and not meta.sends_from(Channel.WHATSAPP, NUMBER)
    assert meta.check(outbound())[0].field == "channel"


@pytest.mark.parametrize("override, field", [
    ({"api_base_url": "graph.facebook.com"}, "api_base_url"),
    ({"graph_version": "23"}, "graph_version"),
    ({"pages": {"my-page": {"access_tokens": ["env:X"]}}}, "pages"),
    ({"whatsapp": {"access_tokens": ["env:X"], "numbers": {NUMBER: {}}, "default_number": "1"}}, "default_number"),
    ({"whatsapp": {"access_tokens": ["env:X"], "numbers": {NUMBER: {"fallback_template": {"name": "nope", "language": "de"}}}}},
     "fallback_template.name"),
    ({"whatsapp": {"access_tokens": ["env:X"], "numbers": {NUMBER: {}},
                   "fallback_template": {"name": "case_update", "language": "de"}}}, "fallback_template.parameters"),
])
def test_bad_configuration_names_the_field(override, field):
    with pytest.raises(ValidationError) as raised:
        MetaSettings.model_validate(settings(**override))
    assert field in str(raised.value)


def test_accounts_windows_and_fallback_templates_come_from_the_configuration():
    meta = sender()
    assert meta.default_account(Channel.WHATSAPP) == NUMBER
    assert meta.default_account(Channel.MESSENGER) == PAGE and meta.default_account(Channel.INSTAGRAM) == IG
    assert meta.sends_from(Channel.INSTAGRAM, IG) and not meta.sends_from(Channel.INSTAGRAM, IG_PAGE)
    assert meta.fallback_template(Channel.WHATSAPP, NUMBER) == TemplateMessage(name="hello", language="en_US")
    assert meta.fallback_template(Channel.MESSENGER, PAGE) is None
    assert meta.extended_window(Channel.MESSENGER) == ExtendedWindow(hours=168, tag="HUMAN_AGENT")
    assert meta.extended_window(Channel.MESSENGER, PAGE).hours == 168
    # Off by default: Instagram's account does not enable it, WhatsApp has no tags.
    assert meta.extended_window(Channel.INSTAGRAM) is None and meta.extended_window(Channel.WHATSAPP) is None
    assert meta.extended_window(Channel.MESSENGER, "999") is None


def test_whatsapp_recipients_come_from_a_phone_number_without_plus():
    meta = sender()
    ids = [Identifier.parse("email:jana@example.com"), Identifier.parse("phone:+4915123456789")]
    assert meta.recipient_for(Channel.WHATSAPP, ids) == "4915123456789"
    assert meta.recipient_for(Channel.WHATSAPP, ids[:1]) is None
    assert meta.recipient_for(Channel.MESSENGER, [Identifier.parse(f"messenger:{PAGE}/{PSID}")]) is None


# --- check ----------------------------------------------------------------------------------------


def test_a_plain_reply_passes_on_every_channel():
    for channel in (Channel.WHATSAPP, Channel.MESSENGER, Channel.INSTAGRAM):
        assert problems(outbound(channel)) == {}


@pytest.mark.parametrize("channel, limit", [(Channel.WHATSAPP, 4096), (Channel.MESSENGER, 1999)])
def test_text_limits_in_characters(channel, limit):
    assert problems(outbound(channel, text="ä" * limit)) == {}
    assert "at most" in problems(outbound(channel, text="ä" * (limit + 1)))["text"]


def test_instagram_counts_utf8_bytes():
    assert problems(outbound(Channel.INSTAGRAM, text="a" * 1000)) == {}
    assert "1002 bytes" in problems(outbound(Channel.INSTAGRAM, text="ä" * 501))["text"]


def test_templates_are_validated_against_the_configured_ones():
    def template(**fields):
        return outbound(text=None, template=TemplateMessage(**{"name": "case_update", "language": "de",
                                                              "parameters": ["Jana"], **fields}))
    assert problems(template()) == {}
    assert "not configured" in problems(template(name="promo"))["template.name"]
    assert "languages" in problems(template(language="fr"))["template.language"]
    assert "takes 1" in problems(template(parameters=[]))["template.parameters"]
    assert "only its parameters" in problems(template().model_copy(update={"text": "Hi"}))["template"]
    assert "no templates" in problems(outbound(Channel.MESSENGER, text=None, template=template().template))["template"]


def test_attachment_rules():
    pdf = OutboundAttachment(url="https://files.example.com/r.pdf", content_type="application/pdf")
    voice = OutboundAttachment(url="https://files.example.com/v.ogg", content_type="audio/ogg")
    assert problems(outbound(attachments=[pdf])) == {}
    assert "one media file" in problems(outbound(attachments=[pdf, pdf]))["attachments"]
    assert "no caption" in problems(outbound(attachments=[voice]))["text"]
    assert "1024" in problems(outbound(attachments=[pdf], text="x" * 1025))["text"]
    assert "http(s)" in problems(outbound(attachments=[pdf.model_copy(update={"url": "ftp://x/r.pdf"})]))["attachments[0].url"]
    assert "separately" in problems(outbound(Channel.MESSENGER, attachments=[pdf]))["attachments"]
    assert problems(outbound(Channel.MESSENGER, text=None, attachments=[pdf])) == {}
    assert "images, video and audio" in problems(outbound(Channel.INSTAGRAM, text=None, attachments=[pdf]))[
        "attachments[0].content_type"]


def test_tags_and_accounts():
    assert problems(outbound(Channel.MESSENGER, tag="HUMAN_AGENT")) == {}
    assert "not enabled" in problems(outbound(Channel.INSTAGRAM, tag="HUMAN_AGENT"))["tag"]
    assert "only HUMAN_AGENT" in problems(outbound(Channel.MESSENGER, tag="ACCOUNT_UPDATE"))["tag"]
    assert "no message tags" in problems(outbound(tag="HUMAN_AGENT"))["tag"]
    assert "not in channels.meta.whatsapp.numbers" in problems(outbound(account="555"))["account"]
    assert "not in channels.meta.pages" in problems(outbound(Channel.MESSENGER, account="555"))["account"]
    assert "to" in problems(outbound(to="+4915123456789"))


# --- requests --------------------------------------------------------------------------------------


def accepted_whatsapp():
    return (200, {"messaging_product": "whatsapp", "contacts": [{"input": WA_ID, "wa_id": WA_ID}],
                  "messages": [{"id": WAMID}]})


def test_whatsapp_text_reply_request():
    http = ScriptedHttp(accepted_whatsapp())
    outcome = sender(http).send(outbound(text="Siehe https://status.example.com",
                                         reply=ReplyContext(provider_message_id="wamid.IN")))
    assert (outcome.provider_message_id, outcome.status, outcome.metadata) == (WAMID, "sent", {"wa_id": WA_ID})
    (call,) = http.sent
    assert call["url"] == f"https://graph.example.test/v23.0/{NUMBER}/messages"
    assert call["headers"]["Authorization"] == "Bearer EAAG-wa-new"
    assert call["json"] == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": WA_ID,
                            "context": {"message_id": "wamid.IN"}, "type": "text",
                            "text": {"preview_url": True, "body": "Siehe https://status.example.com"}}


def test_whatsapp_template_and_media_requests():
    http = ScriptedHttp(accepted_whatsapp(), accepted_whatsapp(), accepted_whatsapp())
    meta = sender(http)
    meta.send(outbound(text=None, template=TemplateMessage(name="case_update", language="de", parameters=["Jana"])))
    meta.send(outbound(text="Ihre Rechnung", attachments=[OutboundAttachment(
        url="https://files.example.com/a/rechnung%202026.pdf", content_type="application/pdf")]))
    meta.send(outbound(text="Foto", attachments=[OutboundAttachment(url="https://files.example.com/p.jpg")]))
    template, document, image = (call["json"] for call in http.sent)
    assert template["type"] == "template" and template["template"] == {
        "name": "case_update", "language": {"policy": "deterministic", "code": "de"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Jana"}]}]}
    assert document["document"] == {"link": "https://files.example.com/a/rechnung%202026.pdf", "caption": "Ihre Rechnung",
                                    "filename": "rechnung 2026.pdf"}
    assert image["type"] == "image" and image["image"] == {"link": "https://files.example.com/p.jpg", "caption": "Foto"}


def test_a_bsuid_is_sent_as_recipient():
    http = ScriptedHttp(accepted_whatsapp())
    sender(http).send(outbound(to="US.13491208655302741918"))
    assert http.sent[0]["json"]["recipient"] == "US.13491208655302741918" and "to" not in http.sent[0]["json"]


def test_messenger_response_human_agent_and_instagram_through_its_page():
    answer = (200, {"recipient_id": PSID, "message_id": "m_OUT1"})
    http = ScriptedHttp(answer, answer, answer)
    meta = sender(http)
    assert meta.send(outbound(Channel.MESSENGER)).provider_message_id == "m_OUT1"
    meta.send(outbound(Channel.MESSENGER, tag="HUMAN_AGENT"))
    meta.send(outbound(Channel.INSTAGRAM, text=None, attachments=[OutboundAttachment(
        url="https://files.example.com/p.png", content_type="image/png")]))
    plain, tagged, instagram = http.sent
    assert plain["url"] == f"https://graph.example.test/v23.0/{PAGE}/messages"
    assert plain["json"] == {"recipient": {"id": PSID}, "messaging_type": "RESPONSE",
                             "message": {"text": "Hallo Jana, die Störung ist behoben."}}
    assert (tagged["json"]["messaging_type"], tagged["json"]["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
    assert instagram["url"] == f"https://graph.example.test/v23.0/{IG_PAGE}/messages"
    assert instagram["headers"]["Authorization"] == "Bearer IGAA-ig"
    assert instagram["json"]["message"] == {"attachment": {"type": "image", "payload": {
        "url": "https://files.example.com/p.png", "is_reusable": False}}}


def test_instagram_login_accounts_send_on_graph_instagram_and_reply_to_is_opt_in():
    http = ScriptedHttp((200, {"message_id": "aWdfOUT"}), (200, {"message_id": "m_OUT2"}))
    meta = sender(http, instagram={IG: {"access_tokens": ["env:IG_TOKEN"]}},
                  pages={PAGE: {"access_tokens": ["env:PAGE_TOKEN"], "reply_to": True}})
    meta.send(outbound(Channel.INSTAGRAM, reply=ReplyContext(provider_message_id="aWdfIN")))
    meta.send(outbound(Channel.MESSENGER, reply=ReplyContext(provider_message_id="m_IN")))
    assert http.sent[0]["url"] == f"https://graph.instagram.com/v23.0/{IG}/messages"
    assert "reply_to" not in http.sent[0]["json"]
    assert http.sent[1]["json"]["reply_to"] == {"mid": "m_IN"}


def test_a_refused_token_is_replaced_by_the_next_of_the_rotation_list():
    http = ScriptedHttp((401, ERRORS["graph_invalid_token_190"]["body"]), accepted_whatsapp())
    assert sender(http).send(outbound()).provider_message_id == WAMID
    assert [c["headers"]["Authorization"] for c in http.sent] == ["Bearer EAAG-wa-new", "Bearer EAAG-wa-old"]


def test_every_token_refused_is_permanent():
    bad = (401, ERRORS["graph_invalid_token_190"]["body"])
    with pytest.raises(PermanentDeliveryError) as raised:
        sender(ScriptedHttp(bad, bad)).send(outbound())
    assert raised.value.provider_code == "190" and "BLBz/WZt8dN" in raised.value.message
    assert "EAAG" not in raised.value.message


def test_a_message_that_fails_check_is_never_sent():
    http = ScriptedHttp()
    with pytest.raises(PermanentDeliveryError, match="account"):
        sender(http).send(outbound(account="555"))
    assert http.sent == []


def test_an_unavailable_token_is_retryable():
    with pytest.raises(RetryableDeliveryError, match="token unavailable"):
        sender(ScriptedHttp(), whatsapp={"access_tokens": ["env:MISSING"], "numbers": {NUMBER: {}}}).send(outbound())


def test_an_accepted_send_without_an_id_is_not_retried():
    with pytest.raises(PermanentDeliveryError, match=r"messages\[0\]\.id"):
        sender(ScriptedHttp((200, {"messaging_product": "whatsapp", "messages": []}))).send(outbound())


# --- Graph errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, channel, error, code", [
    ("whatsapp_window_131047", Channel.WHATSAPP, OutsideServiceWindowError, "131047"),
    ("whatsapp_marketing_stopped_131050", Channel.WHATSAPP, RecipientOptedOutError, "131050"),
    ("whatsapp_template_missing_132001", Channel.WHATSAPP, PermanentDeliveryError, "132001"),
    ("messenger_window_10_2018278", Channel.MESSENGER, OutsideServiceWindowError, "10"),
])
def test_permanent_graph_errors(name, channel, error, code):
    fixture = ERRORS[name]
    with pytest.raises(error) as raised:
        sender(ScriptedHttp((fixture["status"], fixture["body"]))).send(outbound(channel))
    assert type(raised.value) is error and raised.value.provider_code == code
    assert raised.value.detail["fbtrace_id"] == json.loads(fixture["body"])["error"]["fbtrace_id"]


@pytest.mark.parametrize("name", ["whatsapp_throughput_130429", "whatsapp_pair_rate_131056", "whatsapp_unknown_131000",
                                  "messenger_rate_613", "messenger_unexpected_2"])
def test_throttling_and_transient_graph_errors_are_retryable(name):
    fixture = ERRORS[name]
    channel = Channel.WHATSAPP if name.startswith("whatsapp") else Channel.MESSENGER
    # Graph answers throttling with a 400: the code decides, not the status.
    for status in {fixture["status"], 400}:
        with pytest.raises(RetryableDeliveryError):
            sender(ScriptedHttp((status, fixture["body"]))).send(outbound(channel))


def test_retry_after_comes_from_the_header_or_graphs_usage_hint():
    throttled = ERRORS["whatsapp_throughput_130429"]["body"]
    with pytest.raises(RetryableDeliveryError) as raised:
        sender(ScriptedHttp((429, throttled, {"retry-after": "7"}))).send(outbound())
    assert raised.value.retry_after == 7
    usage = {"x-business-use-case-usage": json.dumps({"102290129340398": [
        {"type": "whatsapp", "call_count": 100, "total_cputime": 1, "total_time": 1, "estimated_time_to_regain_access": 2}]})}
    assert retry_after(usage) == 120
    assert retry_after({"x-business-use-case-usage": "not json"}) is None


def test_an_unreadable_error_answer_is_classified_by_status():
    with pytest.raises(RetryableDeliveryError):
        sender(ScriptedHttp((503, "<html>Service Unavailable</html>"))).send(outbound())
    with pytest.raises(PermanentDeliveryError) as raised:
        sender(ScriptedHttp((400, ""))).send(outbound())
    assert raised.value.provider_code is None


# --- statuses back --------------------------------------------------------------------------------


def test_a_131050_failed_status_means_the_recipient_opted_out():
    (status,) = parsed("outbound/whatsapp_status_failed_131050")
    assert (status.status, status.error_code, status.opted_out) == ("failed", "131050", True)
    assert status.provider_message_id == "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI2QUFCQ0RFRjAxMjM0NTY3OAA="


def test_other_failed_statuses_are_not_opt_outs():
    (status,) = parsed("whatsapp_status_failed")
    assert (status.status, status.error_code, status.error_message, status.opted_out) == (
        "failed", "131047", "Re-engagement message", False)


def test_messenger_delivery_reports_one_status_per_mid_and_reads_only_a_watermark():
    delivered = parsed("messenger_delivery")
    assert [(s.status, s.provider_message_id) for s in delivered] == [
        ("delivered", "m_Out000000000000000000000000001"), ("delivered", "m_Out000000000000000000000000002")]
    (read,) = parsed("messenger_read")
    # No mid: nothing the hub sent can be matched by id (docs/channels/meta.md).
    assert read.status == "read" and read.provider_message_id == "watermark:1234567890:6789012345678901:1767225600450"
