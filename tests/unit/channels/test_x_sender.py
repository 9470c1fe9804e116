"""X sender: reply targets from the stored Account Activity fixtures, check(), the v2 DM request,
and X's answers (exact bytes, tests/fixtures/x/send/) mapped to outcomes and errors."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from chalicelib.adapters.channels.sending import sender_class
from chalicelib.adapters.channels.x.adapter import XAdapter, XSettings
from chalicelib.adapters.channels.x.sender import MAX_TEXT, XSender, outcome
from chalicelib.adapters.connectors.http import HttpResponse
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.models import Channel, Party, ReplyContext
from chalicelib.domain.outbound import OutboundAttachment
from chalicelib.errors import PermanentDeliveryError, RecipientOptedOutError, RetryableDeliveryError
from chalicelib.secrets import SecretResolver
from tests.contract.channels.x import CASE
from tests.support.send_fixtures import ScriptedHttp, answer, contact_from, outbound, sender

US = "3001969357"
CUSTOMER = "1221334455667788"
TOKEN = "x-oauth2-user-token-current"
OLD_TOKEN = "x-oauth2-user-token-expired"
ENV = {"X_DM_TOKEN": TOKEN, "X_OLD_DM_TOKEN": OLD_TOKEN}
#: The rate_limited fixture's x-rate-limit-reset (1767226500) is 2026-01-01T00:15:00Z.
BEFORE_RESET = datetime(2026, 1, 1, 0, 10, 0, tzinfo=timezone.utc).timestamp()


def settings(**overrides) -> dict:
    return {**CASE.settings, "dm_access_tokens": {US: ["env:X_DM_TOKEN"]}, **overrides}


def x(*answers, **overrides) -> tuple[XSender, ScriptedHttp]:
    http = ScriptedHttp(*answers)
    return sender(XSender, XSettings, settings(**overrides), http, ENV), http


def contact(fixture: str):
    adapter = XAdapter(XSettings.model_validate(CASE.settings), SecretResolver({}))
    return contact_from(adapter, "x", fixture)


def dm(**fields):
    defaults = {"account": US, "to": CUSTOMER, "text": "Your refund was processed today."}
    return outbound(channel="x", provider="x", **{**defaults, **fields})


# --- wiring and configuration ----------------------------------------------------------------------


def test_the_adapter_names_this_sender_and_a_receive_only_configuration_stays_valid():
    assert sender_class(XAdapter.sender) is XSender
    assert XSettings.model_validate(CASE.settings).dm_access_tokens == {}


def test_tokens_belong_to_subscribed_accounts_and_yaml_integer_ids_are_read():
    parsed = XSettings.model_validate(settings(dm_access_tokens={int(US): "env:X_DM_TOKEN"}))
    assert list(parsed.dm_access_tokens) == [US]
    with pytest.raises(ValidationError, match="not one of user_ids"):
        XSettings.model_validate(settings(dm_access_tokens={"42": ["env:X_DM_TOKEN"]}))
    with pytest.raises(ValidationError, match="numeric X user ids"):
        XSettings.model_validate(settings(dm_access_tokens={"@acmesupport": ["env:X_DM_TOKEN"]}))
    with pytest.raises(ValidationError, match="empty token list"):
        XSettings.model_validate(settings(dm_access_tokens={US: []}))


def test_accounts_are_ours_with_a_token_and_any_x_id_is_a_recipient():
    sender_, _ = x()
    assert sender_.default_account(Channel.X) == US
    assert sender_.sends_from(Channel.X, US) and not sender_.sends_from(Channel.X, CUSTOMER)
    ids = [Identifier.parse("email:ana@example.com"), Identifier.parse(f"x:{CUSTOMER}")]
    assert sender_.recipient_for(Channel.X, ids) == CUSTOMER
    assert sender_.recipient_for(Channel.X, ids[:1]) is None


# --- reply targets from what the parser keeps ------------------------------------------------------


@pytest.mark.parametrize("fixture", ["dm_text", "dm_media"])
def test_a_dm_is_answered_to_its_sender_from_the_account_that_received_it(fixture):
    target = XSender.reply_target(contact(fixture))
    assert (target.channel, target.provider, target.account, target.to) == (Channel.X, "x", US, CUSTOMER)
    assert target.reply == ReplyContext()


def test_without_the_conversation_key_the_senders_x_identifier_is_used():
    stored = contact("dm_text").model_copy(update={"conversation_key": None})
    assert XSender.reply_target(stored) is None
    identified = stored.model_copy(update={"sender": Party(identifiers=[Identifier.parse(f"x:{CUSTOMER}")])})
    assert XSender.reply_target(identified).to == CUSTOMER


# --- check -----------------------------------------------------------------------------------------


def test_text_up_to_10000_characters_passes_links_included():
    sender_, _ = x()
    assert sender_.check(dm(text="a" * MAX_TEXT)) == []
    assert [p.field for p in sender_.check(dm(text="a" * (MAX_TEXT + 1)))] == ["text"]
    link = OutboundAttachment(url="https://files.example.com/refund.pdf")
    assert [p.field for p in sender_.check(dm(text="a" * MAX_TEXT, attachments=[link]))] == ["text"]


def test_recipients_templates_attachments_and_empty_messages_are_refused_by_field():
    sender_, _ = x()
    assert [p.field for p in sender_.check(dm(to="@anasouza"))] == ["to"]
    assert [p.field for p in sender_.check(dm(template={"name": "x", "language": "en"}))] == ["template"]
    assert [p.field for p in sender_.check(dm(text=None))] == ["text"]
    ftp = OutboundAttachment(url="ftp://files.example.com/a.pdf")
    assert [p.field for p in sender_.check(dm(attachments=[ftp]))] == ["attachments[0].url"]


# --- the request -----------------------------------------------------------------------------------


def test_a_dm_is_one_post_to_the_participant_with_the_accounts_token():
    sender_, http = x(answer("x", "created"))

    result = sender_.send(dm(attachments=[OutboundAttachment(url="https://files.example.com/refund.pdf")]))

    [sent] = http.sent
    assert (sent.method, sent.url) == ("POST", f"https://api.x.com/2/dm_conversations/with/{CUSTOMER}/messages")
    assert sent.headers == {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    assert sent.json() == {"text": "Your refund was processed today.\nhttps://files.example.com/refund.pdf"}
    # The id X's read receipts name (last_read_event_id): the adapter's `read` status matches it.
    assert result.provider_message_id == "1950000000000000099"
    assert result.metadata == {"dm_event_id": "1950000000000000099", "dm_conversation_id": "1221334455667788-3001969357"}


def test_an_expired_token_is_followed_by_the_next_of_the_rotation_list():
    rotating = {US: ["env:X_OLD_DM_TOKEN", "env:X_DM_TOKEN"]}
    sender_, http = x(answer("x", "unauthorized"), answer("x", "created"), dm_access_tokens=rotating)
    sender_.send(dm())
    assert [s.headers["Authorization"] for s in http.sent] == [f"Bearer {OLD_TOKEN}", f"Bearer {TOKEN}"]


def test_an_account_without_a_token_or_a_non_numeric_recipient_fails_without_a_call():
    sender_, http = x()
    with pytest.raises(PermanentDeliveryError) as caught:
        sender_.send(dm(account="42"))
    assert caught.value.provider_code == "no_token"
    with pytest.raises(PermanentDeliveryError) as caught:
        sender_.send(dm(to="../../2/tweets"))
    assert caught.value.provider_code == "bad_recipient" and http.sent == []


# --- X's answers -----------------------------------------------------------------------------------


def test_rate_limited_is_retryable_until_x_rate_limit_reset():
    with pytest.raises(RetryableDeliveryError) as caught:
        outcome(answer("x", "rate_limited"), now=BEFORE_RESET)
    assert caught.value.retry_after == 300.0


def test_every_token_refused_is_permanent_and_the_token_never_shows():
    sender_, _ = x(answer("x", "unauthorized"))
    with pytest.raises(PermanentDeliveryError) as caught:
        sender_.send(dm())
    assert caught.value.provider_code == "http_401" and TOKEN not in caught.value.message


def test_a_refused_dm_is_permanent_and_not_taken_for_an_opt_out():
    with pytest.raises(PermanentDeliveryError) as caught:
        outcome(answer("x", "forbidden"), now=BEFORE_RESET)
    assert not isinstance(caught.value, (RecipientOptedOutError, RetryableDeliveryError))
    assert caught.value.provider_code == "http_403" and "Forbidden" in caught.value.message


def test_v1_style_errors_give_their_numeric_code():
    with pytest.raises(PermanentDeliveryError) as caught:
        outcome(answer("x", "v1_refused"), now=BEFORE_RESET)
    assert caught.value.provider_code == "476" and "not verified" in caught.value.message


def test_a_problem_type_gives_its_last_segment():
    with pytest.raises(PermanentDeliveryError) as caught:
        outcome(answer("x", "invalid_request"), now=BEFORE_RESET)
    assert caught.value.provider_code == "invalid-request"
    assert "Invalid Request" in caught.value.message


def test_server_trouble_is_retryable_and_an_answer_without_an_event_id_is_permanent():
    with pytest.raises(RetryableDeliveryError) as caught:
        outcome(HttpResponse(503, {"retry-after": "7"}, b""), now=BEFORE_RESET)
    assert caught.value.retry_after == 7.0
    with pytest.raises(PermanentDeliveryError, match="without a dm_event_id"):
        outcome(HttpResponse(201, {}, b'{"data":{"dm_conversation_id":"1-2"}}'), now=BEFORE_RESET)
