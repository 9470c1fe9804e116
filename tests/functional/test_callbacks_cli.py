"""`hubctl callbacks setup` through its entry point: the printed steps for a Zendesk destination,
the webhook and triggers it creates through the Zendesk API (a stateful fake), and the clear
refusals for destinations that cannot call back."""

from __future__ import annotations

import json

import pytest

from chalicelib.adapters.callbacks.zendesk import BODY_FIELDS
from chalicelib.cli import main
from tests.support.fake_zendesk import FakeZendesk

CONFIG = """
destinations:
  - name: helpdesk
    type: zendesk
    base_url: {url}
    auth: {{type: basic, username: hub@acme.example/token, password: zendesk-api-token}}
    callbacks:
      secrets: ["env:ZENDESK_WEBHOOK_SECRET"]
      public_url: https://hub.acme.example/callbacks/helpdesk
  - name: oneway
    type: zendesk
    base_url: {url}
    auth: {{type: basic, username: hub@acme.example/token, password: zendesk-api-token}}
  - name: crm
    type: webhook
    url: https://crm.acme.example/hooks
    secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
"""


@pytest.fixture
def zendesk():
    with FakeZendesk() as fake:
        yield fake


@pytest.fixture
def config(tmp_path, zendesk, monkeypatch):
    path = tmp_path / "hub.yaml"
    path.write_text(CONFIG.format(url=zendesk.url))
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path / "data"))
    return str(path)


def test_setup_prints_the_webhook_and_both_trigger_bodies(config, capsys):
    assert main(["callbacks", "setup", "helpdesk", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "Zendesk: send callbacks to https://hub.acme.example/callbacks/helpdesk" in out
    assert "Endpoint URL: https://hub.acme.example/callbacks/helpdesk" in out
    assert "Comment Is Public" in out
    assert '"hub_event": "reply"' in out and '"hub_event": "status"' in out
    assert '"ticket_id": "{{ticket.id}}"' in out
    assert "--create makes it through the Zendesk API" in out


def test_setup_create_makes_the_webhook_and_two_triggers_posting_the_hubs_body(config, zendesk, capsys):
    assert main(["callbacks", "setup", "helpdesk", "--config", config, "--create"]) == 0
    out = capsys.readouterr().out
    [(webhook_id, webhook)] = zendesk.webhooks.items()
    assert (webhook["endpoint"], webhook["http_method"], webhook["request_format"]) == (
        "https://hub.acme.example/callbacks/helpdesk", "POST", "json")
    assert webhook["subscriptions"] == ["conditional_ticket_events"]
    reply, status = zendesk.triggers
    assert {"field": "comment_is_public", "value": "true"} in reply["conditions"]["all"]
    assert {"field": "status", "operator": "changed"} in status["conditions"]["any"]
    for trigger, event in ((reply, "reply"), (status, "status")):
        [action] = trigger["actions"]
        assert action["field"] == "notification_webhook" and action["value"][0] == webhook_id
        assert json.loads(action["value"][1]) == {"hub_event": event, **BODY_FIELDS}
    assert f"signing secret (store it where destinations[helpdesk].callbacks.secrets points; shown once): " \
           f"zd-secret-{webhook_id}" in out


@pytest.mark.parametrize(("name", "message"), [
    ("oneway", "has no callbacks section"),
    ("crm", "its consumers answer through POST /v1/messages"),
    ("nowhere", "no destination named 'nowhere'"),
])
def test_setup_refuses_destinations_that_cannot_call_back(config, capsys, name, message):
    assert main(["callbacks", "setup", name, "--config", config]) == 2
    assert message in capsys.readouterr().err
