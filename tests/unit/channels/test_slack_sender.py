"""Slack sender: reply targets from the stored Events API fixtures, check(), the chat.postMessage
request, and Slack's answers (exact bytes, tests/fixtures/slack/send/) mapped to outcomes and errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chalicelib.adapters.channels.slack.adapter import SlackAdapter, SlackSettings
from chalicelib.adapters.channels.slack.sender import MAX_TEXT, SlackSender, compose_text, outcome
from chalicelib.adapters.channels.sending import sender_class
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.models import Channel, OutboundStatus, ReplyContext
from chalicelib.domain.outbound import OutboundAttachment
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError
from chalicelib.secrets import SecretResolver
from tests.contract.channels.slack import CASE
from tests.support.send_fixtures import ScriptedHttp, answer, contact_from, outbound, sender

TEAM = "T0HUB0001"
TOKEN = "xoxb-1111-2222-current"
OLD_TOKEN = "xoxb-1111-2222-previous"
ENV = {"SLACK_BOT_TOKEN": TOKEN, "SLACK_OLD_BOT_TOKEN": OLD_TOKEN}


def settings(**overrides) -> dict:
    return {**CASE.settings, "bot_tokens": {TEAM: ["env:SLACK_BOT_TOKEN"]}, **overrides}


def slack(*answers, **overrides) -> tuple[SlackSender, ScriptedHttp]:
    http = ScriptedHttp(*answers)
    return sender(SlackSender, SlackSettings, settings(**overrides), http, ENV), http


def contact(fixture: str):
    adapter = SlackAdapter(SlackSettings.model_validate(CASE.settings), SecretResolver({}))
    return contact_from(adapter, "slack", fixture)


def reply(**fields):
    defaults = {"account": TEAM, "to": "D0HUB0001", "text": "Your parcel left the depot."}
    return outbound(channel="slack", provider="slack", **{**defaults, **fields})


# --- wiring and configuration ----------------------------------------------------------------------


def test_the_adapter_names_this_sender_and_a_receive_only_configuration_stays_valid():
    assert sender_class(SlackAdapter.sender) is SlackSender
    assert SlackSettings.model_validate(CASE.settings).bot_tokens == {}


def test_one_token_needs_no_list_and_team_ids_are_checked():
    parsed = SlackSettings.model_validate(settings(bot_tokens={TEAM: "env:SLACK_BOT_TOKEN"}))
    assert [t.get_secret_value() for t in parsed.bot_tokens[TEAM]] == ["env:SLACK_BOT_TOKEN"]
    with pytest.raises(ValidationError, match="Slack team ids"):
        SlackSettings.model_validate(settings(bot_tokens={"acme": ["env:SLACK_BOT_TOKEN"]}))
    with pytest.raises(ValidationError, match="empty token list"):
        SlackSettings.model_validate(settings(bot_tokens={TEAM: []}))
    with pytest.raises(ValidationError, match="scheme and host"):
        SlackSettings.model_validate(settings(api_base_url="slack.com/api"))


def test_accounts_are_the_workspaces_with_a_token():
    sender_, _ = slack()
    assert sender_.default_account(Channel.SLACK) == TEAM
    assert sender_.sends_from(Channel.SLACK, TEAM)
    assert not sender_.sends_from(Channel.SLACK, "T0CUSTOMR")
    assert sender_.default_account(Channel.SMS) is None


def test_a_slack_user_of_our_workspace_is_a_recipient_and_others_are_not():
    sender_, _ = slack()
    ours = Identifier.parse(f"slack:{TEAM}/U0CUST001")
    theirs = Identifier.parse("slack:T0CUSTOMR/U0EXT0042")
    assert sender_.recipient_for(Channel.SLACK, [theirs, ours]) == "U0CUST001"
    assert sender_.recipient_for(Channel.SLACK, [theirs, Identifier.parse("phone:+4915123456789")]) is None


# --- reply targets from what the parser keeps ------------------------------------------------------


def test_a_direct_message_is_answered_in_its_channel_threaded_on_itself():
    target = SlackSender.reply_target(contact("dm_text"))

    assert (target.channel, target.provider, target.account, target.to) == (Channel.SLACK, "slack", TEAM, "D0HUB0001")
    assert target.reply == ReplyContext(thread="1767225599.000100")
    assert target.at.isoformat() == "2025-12-31T23:59:59.000100+00:00"  # the ts, not the arrival


def test_a_thread_reply_is_answered_in_the_thread_of_its_parent_not_of_itself():
    target = SlackSender.reply_target(contact("shared_channel_thread"))

    assert target.to == "C0SHARED1"
    assert target.reply.thread == "1767225500.000100"


def test_a_contact_without_channel_metadata_falls_back_to_its_provider_message_id():
    stored = contact("file_share")
    bare = stored.model_copy(update={"metadata": {}})
    assert SlackSender.reply_target(bare).to == "D0HUB0001"
    assert SlackSender.reply_target(bare).reply.thread == "1767225605.000200"
    assert SlackSender.reply_target(bare.model_copy(update={"provider_message_id": "garbled"})) is None


# --- check -----------------------------------------------------------------------------------------


def test_text_up_to_slacks_limit_passes_and_one_more_character_is_refused():
    sender_, _ = slack()
    assert sender_.check(reply(text="a" * MAX_TEXT)) == []
    [problem] = sender_.check(reply(text="a" * (MAX_TEXT + 1)))
    assert problem.field == "text" and "40000" in problem.message


def test_escaping_and_attachment_links_count_toward_the_limit():
    sender_, _ = slack()
    # Each & becomes &amp;: 8,000 of them are 40,000 characters as Slack receives them.
    assert sender_.check(reply(text="&" * 8_000)) == []
    assert [p.field for p in sender_.check(reply(text="&" * 8_001))] == ["text"]
    link = OutboundAttachment(url="https://files.example.com/r.pdf")
    assert [p.field for p in sender_.check(reply(text="a" * MAX_TEXT, attachments=[link]))] == ["text"]


def test_templates_empty_messages_names_and_non_http_attachments_are_refused_by_field():
    sender_, _ = slack()
    assert sender_.check(reply(to="U0CUST001")) == []
    assert [p.field for p in sender_.check(reply(to="#support"))] == ["to"]
    template = {"name": "case_update", "language": "de"}
    assert [p.field for p in sender_.check(reply(template=template))] == ["template"]
    assert [p.field for p in sender_.check(reply(text=None))] == ["text"]
    files = [OutboundAttachment(url="https://files.example.com/a.pdf"), OutboundAttachment(url="ftp://files.example.com/b")]
    assert [p.field for p in sender_.check(reply(attachments=files))] == ["attachments[1].url"]
    assert sender_.check(reply(text=None, attachments=files[:1])) == []


# --- the request -----------------------------------------------------------------------------------


def test_the_reply_is_one_post_in_the_thread_with_the_workspaces_bot_token():
    sender_, http = slack(answer("slack", "ok"))

    result = sender_.send(reply(reply=ReplyContext(thread="1767225599.000100")))

    [sent] = http.sent
    assert (sent.method, sent.url) == ("POST", "https://slack.com/api/chat.postMessage")
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["Content-Type"] == "application/json; charset=utf-8"
    assert sent.json() == {"channel": "D0HUB0001", "text": "Your parcel left the depot.", "thread_ts": "1767225599.000100"}
    assert result.provider_message_id == "C1H9RESGL:1503435956.000247"
    assert result.status is OutboundStatus.SENT
    assert result.metadata == {"channel": "C1H9RESGL", "ts": "1503435956.000247"}


def test_a_new_message_has_no_thread_and_broadcast_is_sent_only_with_a_thread():
    sender_, http = slack(answer("slack", "ok"), answer("slack", "ok"), reply_broadcast=True)
    sender_.send(reply())
    sender_.send(reply(reply=ReplyContext(thread="1767225500.000100")))
    assert "thread_ts" not in http.sent[0].json() and "reply_broadcast" not in http.sent[0].json()
    assert http.sent[1].json()["reply_broadcast"] is True


def test_text_is_escaped_and_attachments_become_links_on_their_own_lines():
    files = [OutboundAttachment(url="https://files.example.com/a?x=1&y=2", filename="Rechnung <März>.pdf"),
             OutboundAttachment(url="https://files.example.com/b|c")]  # fmt: skip
    assert compose_text("Tom & Jerry <3", files) == (
        "Tom &amp; Jerry &lt;3\n"
        "<https://files.example.com/a?x=1&amp;y=2|Rechnung &lt;März&gt;.pdf>\n"
        "<https://files.example.com/b%7Cc>"
    )


def test_a_workspace_without_a_token_fails_permanently_without_a_call():
    sender_, http = slack()
    with pytest.raises(PermanentDeliveryError) as caught:
        sender_.send(reply(account="T0CUSTOMR"))
    assert caught.value.provider_code == "no_token" and http.sent == []


def test_a_refused_token_is_followed_by_the_next_of_the_rotation_list():
    rotating = {TEAM: ["env:SLACK_OLD_BOT_TOKEN", "env:SLACK_BOT_TOKEN"]}
    sender_, http = slack(answer("slack", "invalid_auth"), answer("slack", "ok"), bot_tokens=rotating)

    assert sender_.send(reply()).provider_message_id == "C1H9RESGL:1503435956.000247"
    assert [s.headers["Authorization"] for s in http.sent] == [f"Bearer {OLD_TOKEN}", f"Bearer {TOKEN}"]


def test_when_every_token_is_refused_the_failure_is_permanent_with_slacks_code():
    sender_, http = slack(answer("slack", "invalid_auth"))
    with pytest.raises(PermanentDeliveryError) as caught:
        sender_.send(reply())
    assert caught.value.provider_code == "invalid_auth" and len(http.sent) == 1
    assert TOKEN not in caught.value.message


def test_a_missing_token_secret_is_a_retry_not_a_failure():
    http = ScriptedHttp()
    sender_ = sender(SlackSender, SlackSettings, settings(), http, {})
    with pytest.raises(RetryableDeliveryError, match="token unavailable"):
        sender_.send(reply())


# --- Slack's answers -------------------------------------------------------------------------------


def test_rate_limited_is_retryable_after_slacks_retry_after():
    with pytest.raises(RetryableDeliveryError) as caught:
        outcome(answer("slack", "ratelimited"))
    assert caught.value.retry_after == 30.0


@pytest.mark.parametrize("name", ["channel_not_found", "not_in_channel", "is_archived", "msg_too_long"])
def test_slacks_refusals_with_http_200_are_permanent_with_the_error_as_provider_code(name):
    with pytest.raises(PermanentDeliveryError) as caught:
        outcome(answer("slack", name))
    assert not isinstance(caught.value, RetryableDeliveryError)
    assert caught.value.provider_code == name


def test_slacks_own_trouble_is_retryable():
    with pytest.raises(RetryableDeliveryError):
        outcome(answer("slack", "internal_error"))


def test_a_5xx_without_a_json_body_is_retryable_and_other_garbage_is_permanent():
    from chalicelib.adapters.connectors.http import HttpResponse

    with pytest.raises(RetryableDeliveryError):
        outcome(HttpResponse(503, {}, b"<html>Service Unavailable</html>"))
    with pytest.raises(PermanentDeliveryError) as caught:
        outcome(HttpResponse(404, {}, b"not found"))
    assert caught.value.provider_code == "http_404"
    with pytest.raises(PermanentDeliveryError, match="without a channel and ts"):
        outcome(HttpResponse(200, {}, b'{"ok":true}'))
