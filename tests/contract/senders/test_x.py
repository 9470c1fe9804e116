"""The X sender against a Prism mock of X's DM-send operations
(tests/contract/specs/x/x-dm-send.derived.openapi.json), and negative controls."""

from __future__ import annotations

import json

import pytest

from chalicelib.adapters.channels.x.adapter import XSettings
from chalicelib.adapters.channels.x.sender import XSender
from chalicelib.domain.outbound import OutboundAttachment
from tests.contract.channels.x import CASE
from tests.support.prism import violations
from tests.support.send_fixtures import RecordingHttp, outbound, sender

SPEC = "x/x-dm-send.derived.openapi.json"
US = "3001969357"
CUSTOMER = "1221334455667788"
ENV = {"X_DM_TOKEN": "x-oauth2-user-token"}

pytestmark = pytest.mark.prism_specs(SPEC)


def x(url: str, http: RecordingHttp) -> XSender:
    settings = {**CASE.settings, "dm_access_tokens": {US: "env:X_DM_TOKEN"}, "api_base_url": url}
    return sender(XSender, XSettings, settings, http, ENV)


def dm(**fields):
    defaults = {"account": US, "to": CUSTOMER, "text": "Your refund was processed today. 🙂"}
    return outbound(channel="x", provider="x", **{**defaults, **fields})


def test_a_dm_to_the_participant_is_a_request_x_accepts(prism):
    http = RecordingHttp()
    link = OutboundAttachment(url="https://files.example.com/refund.pdf")

    result = x(prism(SPEC).url, http).send(dm(attachments=[link]))

    assert http.calls == [("POST", f"/2/dm_conversations/with/{CUSTOMER}/messages", 201)]
    assert http.violations == []
    # The spec has no example: Prism answers with a value of the schema's type.
    assert isinstance(result.provider_message_id, str) and result.provider_message_id


def test_negative_control_the_mock_refuses_unknown_fields_a_handle_and_a_missing_token(prism):
    http = RecordingHttp()
    base = prism(SPEC).url + "/2/dm_conversations/with"
    headers = {"Authorization": "Bearer x-oauth2-user-token", "Content-Type": "application/json"}

    unknown = http.request("POST", f"{base}/{CUSTOMER}/messages", headers=headers,
                           body=json.dumps({"text": "Hi", "reply_to": "1950000000000000001"}).encode())
    handle = http.request("POST", f"{base}/anasouza/messages", headers=headers, body=json.dumps({"text": "Hi"}).encode())
    anonymous = http.request("POST", f"{base}/{CUSTOMER}/messages", headers={"Content-Type": "application/json"},
                             body=json.dumps({"text": "Hi"}).encode())

    assert unknown.status == 422 and "reply_to" in unknown.text(4000) + json.dumps(violations(unknown.headers))
    assert handle.status == 422
    assert anonymous.status == 401
