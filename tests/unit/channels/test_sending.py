"""The helpers every sender shares (chalicelib/adapters/channels/sending.py): the rotation loop,
secret resolution, reading a provider's JSON answer."""

from __future__ import annotations

import pytest

from chalicelib.adapters.channels.sending import (
    CredentialRefusedError,
    first_accepted,
    is_http_url,
    json_object,
    resolved_secrets,
)
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError
from chalicelib.secrets import SecretResolver


def test_the_next_credential_is_tried_only_after_the_provider_refused_the_one_before():
    tried = []

    def attempt(token):
        tried.append(token)
        if token == "old":
            raise CredentialRefusedError("401 from the provider", provider_code="401")
        return f"sent with {token}"

    assert first_accepted(["old", "new", "newer"], attempt, none_configured="none") == "sent with new"
    assert tried == ["old", "new"]


def test_any_other_failure_ends_the_rotation_so_a_message_is_never_sent_twice():
    tried = []

    def attempt(token):
        tried.append(token)
        raise RetryableDeliveryError("503")

    with pytest.raises(RetryableDeliveryError):
        first_accepted(["a", "b"], attempt, none_configured="none")
    assert tried == ["a"]


def test_every_credential_refused_is_a_plain_permanent_failure_with_the_last_refusal():
    def attempt(token):
        raise CredentialRefusedError(f"{token} revoked", provider_code=f"code-{token}", detail={"token": token})

    with pytest.raises(PermanentDeliveryError) as caught:
        first_accepted(["a", "b"], attempt, none_configured="none")

    # Not a CredentialRefusedError: an outer rotation must not take it for its own credential's fault.
    assert type(caught.value) is PermanentDeliveryError
    assert (caught.value.message, caught.value.provider_code, caught.value.detail) == ("b revoked", "code-b", {"token": "b"})


def test_no_credential_at_all_is_permanent_and_calls_nothing():
    with pytest.raises(PermanentDeliveryError) as caught:
        first_accepted([], lambda token: pytest.fail("called"), none_configured="channels.x: no token")
    assert (caught.value.message, caught.value.provider_code) == ("channels.x: no token", "no_token")


def test_secrets_that_cannot_be_read_now_make_the_send_retryable_and_one_readable_is_enough():
    resolver = SecretResolver({"GOOD": "token-1"})

    assert resolved_secrets(resolver, ["env:MISSING", "env:GOOD"], what="Slack bot token") == ["token-1"]
    assert resolved_secrets(resolver, [], what="Slack bot token") == []
    with pytest.raises(RetryableDeliveryError, match="Slack bot token unavailable") as caught:
        resolved_secrets(resolver, ["env:MISSING"], what="Slack bot token")
    assert "token-1" not in caught.value.message


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"ok": true}', {"ok": True}),
    (b"[1, 2]", {}),
    (b"<html>502 Bad Gateway</html>", {}),
    (b"", {}),
    (b'"text"', {}),
])
def test_a_providers_answer_is_read_as_a_json_object_or_nothing(body, expected):
    assert json_object(body) == expected


@pytest.mark.parametrize(("url", "expected"), [
    ("https://files.example.com/a.pdf", True), ("HTTP://files.example.com/a", True), ("http://", False),
    ("ftp://files.example.com/a", False), ("file:///etc/passwd", False), ("files.example.com", False),
])
def test_only_http_urls_with_a_host_are_fetchable(url, expected):
    assert is_http_url(url) is expected
