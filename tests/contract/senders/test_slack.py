"""The Slack sender against a Prism mock of chat.postMessage
(tests/contract/specs/slack/chat.postMessage.derived.openapi3.json), and a negative control.

The spec's server is `https://slack.com/api` and its path `/chat.postMessage`; Prism drops the
`/api` base path (specs README, pitfall 3), while the sender joins `/api/chat.postMessage` onto its
`api_base_url` (a host, as for every provider). `api_spec` therefore serves the same operation at
`/api/chat.postMessage`, the path Slack really answers on; nothing else changes.
"""

from __future__ import annotations

import copy
import json

import pytest

from chalicelib.adapters.channels.slack.adapter import SlackSettings
from chalicelib.adapters.channels.slack.sender import SlackSender
from chalicelib.domain.models import ReplyContext
from chalicelib.domain.outbound import OutboundAttachment
from tests.contract.channels.slack import CASE
from tests.support.prism import vendor_specs_dir, violations
from tests.support.send_fixtures import RecordingHttp, outbound, sender

SPEC = "slack/chat.postMessage.derived.openapi3.json"
TEAM = "T0HUB0001"
ENV = {"SLACK_BOT_TOKEN": "xoxb-1111-2222-test"}

pytestmark = pytest.mark.prism_specs(SPEC)


@pytest.fixture(scope="module")
def api_spec(tmp_path_factory) -> str:
    spec = json.loads((vendor_specs_dir() / SPEC).read_text())
    spec["paths"] = {"/api" + path: copy.deepcopy(item) for path, item in spec["paths"].items()}
    path = tmp_path_factory.mktemp("slack-spec") / "chat.postMessage.api-path.openapi3.json"
    path.write_text(json.dumps(spec))
    return str(path)


def slack(url: str, http: RecordingHttp, **overrides) -> SlackSender:
    settings = {**CASE.settings, "bot_tokens": {TEAM: "env:SLACK_BOT_TOKEN"}, "api_base_url": url, **overrides}
    return sender(SlackSender, SlackSettings, settings, http, ENV)


def reply(**fields):
    defaults = {"account": TEAM, "to": "C0SHARED1", "text": "Die Lieferung kommt morgen & ist versichert."}
    return outbound(channel="slack", provider="slack", **{**defaults, **fields})


def test_a_threaded_reply_is_a_request_slack_accepts(prism, api_spec):
    http = RecordingHttp()

    result = slack(prism(api_spec).url, http, reply_broadcast=True).send(
        reply(reply=ReplyContext(thread="1767225500.000100")))

    assert http.calls == [("POST", "/api/chat.postMessage", 200)]
    assert http.violations == []
    # The spec's example answer.
    assert result.provider_message_id == "C1H9RESGL:1503435956.000247"


def test_attachments_as_links_and_no_text_are_accepted(prism, api_spec):
    http = RecordingHttp()
    files = [OutboundAttachment(url="https://files.example.com/rechnung.pdf", filename="rechnung.pdf")]

    slack(prism(api_spec).url, http).send(reply(text=None, attachments=files))

    assert (http.calls, http.violations) == ([("POST", "/api/chat.postMessage", 200)], [])


def test_negative_control_the_mock_refuses_a_post_without_text_and_a_call_without_a_token(prism, api_spec):
    http = RecordingHttp()
    url = prism(api_spec).url + "/api/chat.postMessage"
    headers = {"Authorization": "Bearer xoxb-1111-2222-test", "Content-Type": "application/json"}

    textless = http.request("POST", url, headers=headers, body=json.dumps({"channel": "C0SHARED1"}).encode())
    anonymous = http.request("POST", url, headers={"Content-Type": "application/json"},
                             body=json.dumps({"channel": "C0SHARED1", "text": "Hi"}).encode())

    # The spec's own error answers; Prism's reasons are in `sl-violations` (specs README, pitfall 8).
    assert textless.status == 422
    assert any("anyOf" in v["message"] for v in violations(textless.headers)), violations(textless.headers)
    assert anonymous.status == 401
