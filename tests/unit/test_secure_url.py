"""Every URL setting of the destinations (`url`, `base_url`, callbacks' `public_url`, Twilio
Flex's `conversations_url` and `taskrouter_url`) follows one rule: https with a host, or http on
this machine only. Two of them used to check a prefix, which let `http://localhost.attacker.example`
through."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chalicelib.adapters.connectors.settings.callbacks import CallbackSettings
from chalicelib.adapters.connectors.settings.urls import secure_url


@pytest.mark.parametrize("url", ["https://hub.example.com/callbacks/crm", "http://localhost:8000/x",
                                 "http://127.0.0.1:9/x", "http://[::1]:8000/x"])
def test_https_or_plain_http_on_this_machine_is_accepted(url):
    assert secure_url(url) == url


@pytest.mark.parametrize("url", ["http://hub.example.com/x", "http://localhost.attacker.example/x",
                                 "http://127.0.0.1.attacker.example/x", "ftp://hub.example.com/x", "https:///x",
                                 "hub.example.com"])
def test_anything_else_is_refused(url):
    with pytest.raises(ValueError, match="https:// URL"):
        secure_url(url)


def test_the_callbacks_public_url_follows_the_rule():
    with pytest.raises(ValidationError, match="public_url"):
        CallbackSettings.model_validate({"secrets": ["env:X"], "public_url": "http://localhost.attacker.example/cb"})
