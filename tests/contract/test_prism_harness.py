"""The Prism harness works, and every vendor spec the hub mocks rejects a known-bad request.

A spec whose schema Prism cannot compile accepts everything silently (specs/README.md pitfall 1), so each
spec gets a happy path and a negative control. Connector contract tests take the same `prism`
fixture: `server = prism("zendesk/…yaml")`, then point the connector's base URL at `server.url`.
"""

from __future__ import annotations

import email.message
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.prism import (
    PrismError,
    PrismRegistry,
    PrismServer,
    PrismStartError,
    Reply,
    call,
    declared_specs,
    require_prism,
    skip_or_fail,
    vendor_specs_dir,
    violations,
)

TWILIO_API = "twilio/twilio_api_v2010.json"
TWILIO_TASKROUTER = "twilio/twilio_taskrouter_v1.json"
TWILIO_FLEX = "twilio/twilio_flex_v1.json"
SLACK = "slack/chat.postMessage.derived.openapi3.json"
WHATSAPP = "meta-whatsapp/business-messaging-api_v23.0.yaml"
JSM = "jira-service-management/jsm-requests.derived.json"
ZENDESK = "zendesk/zendesk-support-tickets.handwritten.openapi.yaml"
HUBSPOT = "hubspot/hubspot-crm-hub-subset.handwritten.openapi.yaml"
TELEGRAM = "telegram/telegram-bot-sendMessage.handwritten.openapi.yaml"
FRESHDESK = "freshdesk/freshdesk-tickets.handwritten.openapi.yaml"
SALESFORCE = "salesforce/salesforce-rest-case-contact.handwritten.openapi.yaml"
GENESYS = "genesys/genesys-cloud-workitems-openmessaging.handwritten.openapi.yaml"
# Outbound channel sends (no hub code calls them yet): proven to load and to refuse a bad request.
SENDGRID = "sendgrid/tsg_mail_v3.json"
MAILGUN = "mailgun/mailgun-messages.derived.openapi.yaml"
X_DM = "x/x-dm-send.derived.openapi.json"
MESSENGER = "meta-messenger/messenger-instagram-send.handwritten.openapi.yaml"

ACCOUNT_SID = "AC" + "0" * 32
TWILIO_AUTH = {"basic_auth": (ACCOUNT_SID, "auth-token")}


@dataclass(frozen=True)
class Case:
    """One operation: a request the spec accepts, and one it must reject for `reason`."""

    spec: str
    path: str
    auth: dict[str, Any]
    valid: dict[str, Any]
    invalid: dict[str, Any]
    ok: int
    rejected: int  # 422 from Prism itself, or the spec's own 4xx (then reasons sit in `sl-violations`)
    reason: str
    headers: dict[str, str] = field(default_factory=dict)


CASES = {
    "twilio-create-message": Case(
        TWILIO_API, f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", TWILIO_AUTH,
        {"form": {"To": "+15558675310", "From": "+15017122661", "Body": "Hello"}},
        {"form": {"From": "+15017122661", "Body": "Hello"}},
        201, 422, "required property 'To'",
    ),
    "twilio-taskrouter-create-task": Case(
        TWILIO_TASKROUTER, "/v1/Workspaces/WS" + "0" * 32 + "/Tasks", TWILIO_AUTH,
        {"form": {"Attributes": '{"channel":"whatsapp"}', "Timeout": "3600"}},
        {"form": {"Attributes": "{}", "Timeout": "soon"}},
        201, 422, "must be integer",
    ),
    "twilio-flex-create-interaction": Case(
        TWILIO_FLEX, "/v1/Interactions", TWILIO_AUTH,
        {"form": {"Channel": '{"type":"sms"}', "Routing": '{"type":"TaskRouter"}'}},
        {"form": {"Routing": '{"type":"TaskRouter"}'}},
        200, 422, "required property 'Channel'",
    ),
    "slack-chat-post-message": Case(
        SLACK, "/chat.postMessage", {"bearer": "xoxb-test"},
        {"json_body": {"channel": "C0123456789", "text": "Hello"}},
        {"json_body": {"channel": "C0123456789"}},  # one of text/blocks/attachments is required
        200, 422, "anyOf",
    ),
    "whatsapp-send-text": Case(
        WHATSAPP, "/v23.0/106540352242922/messages", {"bearer": "EAAG-test"},
        {"json_body": {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "15551234567",
                       "type": "text", "text": {"body": "Hello"}}},
        {"json_body": {"messaging_product": "whatsapp", "recipient_type": "individual", "type": "text",
                       "text": {"body": "Hello"}}},
        200, 422, "required property 'to'",
        # The spec's optional User-Agent must look like `name/1.2.3`: urllib's `Python-urllib/3.11` fails.
        headers={"User-Agent": "omnichannel-hub/1.0.0"},
    ),
    "jsm-create-request": Case(
        JSM, "/rest/servicedeskapi/request", {"basic_auth": ("agent@example.com", "api-token")},
        {"json_body": {"serviceDeskId": "10", "requestTypeId": "25", "requestFieldValues": {"summary": "Hello"}}},
        {"json_body": {"serviceDeskId": "10", "requestTypeId": "25", "requestFieldValue": {"summary": "Hello"}}},
        201, 400, "found 'requestFieldValue'",
    ),
    "zendesk-create-ticket": Case(
        ZENDESK, "/api/v2/tickets", {"basic_auth": ("agent@example.com/token", "api-token")},
        {"json_body": {"ticket": {"subject": "Order is late", "comment": {"body": "Hello", "public": True}}}},
        {"json_body": {"ticket": {"subject": "Order is late", "description": "Hello"}}},  # read-only field
        201, 422, "found 'description'",
    ),
    "hubspot-create-contact": Case(
        HUBSPOT, "/crm/v3/objects/contacts", {"bearer": "pat-test"},
        {"json_body": {"properties": {"email": "jane@example.com", "phone": "+15555550100"}}},
        {"json_body": {"properties": {"phone": "+15555550100"}}},  # needs email, firstname or lastname
        201, 400, "required property 'email'",
    ),
    "telegram-send-message": Case(
        TELEGRAM, "/bot123456789:AAH-test_token/sendMessage", {},
        {"json_body": {"chat_id": 123456789, "text": "Hello"}},
        {"json_body": {"chat_id": 123456789}},
        200, 400, "required property 'text'",
    ),
    "freshdesk-create-ticket": Case(
        FRESHDESK, "/api/v2/tickets", {"basic_auth": ("api-key", "X")},
        {"json_body": {"email": "jane@example.com", "subject": "Order is late", "description": "Hello",
                       "status": 2, "priority": 1, "source": 7}},
        {"json_body": {"email": "jane@example.com", "subject": "Order is late", "description": "Hello",
                       "status": "open", "priority": 1, "source": 7}},
        201, 400, "status must be integer",
    ),
    "salesforce-create-case": Case(
        SALESFORCE, "/services/data/v62.0/sobjects/Case/", {"bearer": "00D-session"},
        {"json_body": {"Subject": "Order is late", "Origin": "Web"}},
        {"json_body": {"Subjekt": "Order is late"}},
        201, 400, "found 'Subjekt'",
    ),
    "genesys-create-workitem": Case(
        GENESYS, "/api/v2/taskmanagement/workitems", {"bearer": "genesys-token"},
        {"json_body": {"name": "Follow up", "typeId": "9a3d2b1c-6f4e-4d2a-8b7c-1e2f3a4b5c6d"}},
        {"json_body": {"name": "Follow up"}},
        200, 400, "required property 'typeId'",
    ),
    "sendgrid-mail-send": Case(
        SENDGRID, "/v3/mail/send", {"bearer": "SG.test"},
        {"json_body": {"personalizations": [{"to": [{"email": "jane@example.com"}]}], "from": {"email": "hub@example.com"},
                       "subject": "Re: order", "content": [{"type": "text/plain", "value": "Hello"}]}},
        {"json_body": {"personalizations": [{"to": [{"email": "jane@example.com"}]}],
                       "subject": "Re: order", "content": [{"type": "text/plain", "value": "Hello"}]}},
        202, 400, "required property 'from'",
    ),
    "mailgun-send-message": Case(
        MAILGUN, "/v3/mg.example.com/messages", {"basic_auth": ("api", "key-test")},
        {"form": [("from", "hub@mg.example.com"), ("to", "jane@example.com"), ("to", "joe@example.com"),
                  ("subject", "Re: order"), ("text", "Hello")]},
        {"form": {"from": "hub@mg.example.com", "to": "jane@example.com", "subject": "Re: order"}},  # no body
        200, 400, "anyOf",
    ),
    "x-dm-send": Case(
        X_DM, "/2/dm_conversations/with/2244994945/messages", {"bearer": "x-user-token"},
        {"json_body": {"text": "Hello"}},
        {"json_body": {"txt": "Hello"}},
        201, 422, "found 'txt'",
    ),
    "messenger-send": Case(
        MESSENGER, "/v23.0/1234567890/messages", {"bearer": "EAAG-test"},
        {"json_body": {"recipient": {"id": "24012345678901234"}, "messaging_type": "RESPONSE",
                       "message": {"text": "Hello"}}},
        {"json_body": {"recipient": {"id": "24012345678901234"}, "messaging_type": "MESSAGE_TAG",
                       "message": {"text": "Hello"}}},  # MESSAGE_TAG needs a tag
        200, 400, "required property 'tag'",
    ),
}

pytestmark = pytest.mark.prism_specs(*sorted({case.spec for case in CASES.values()}))


def send(server: PrismServer, case: Case, body: dict[str, Any]) -> Reply:
    return call("POST", server.url + case.path, headers=case.headers, **case.auth, **body)


def reasons(reply: Reply) -> list[str]:
    """Prism's reasons: the `sl-violations` header, or the `validation` list of its own 422."""
    found = [v["message"] for v in reply.violations]
    if reply.headers.get("content-type", "").startswith("application/problem+json"):
        found += [v["message"] for v in reply.json().get("validation", [])]
    return found


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_valid_request_gets_the_spec_success_answer(prism, case):
    reply = send(prism(case.spec), case, case.valid)

    assert (reply.status, reply.violations) == (case.ok, []), reply.body[:500]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_known_bad_request_is_rejected_with_its_reason(prism, case):
    reply = send(prism(case.spec), case, case.invalid)

    assert reply.status == case.rejected, reply.body[:500]
    assert any(case.reason in r for r in reasons(reply)), reasons(reply)
    if case.rejected != 422:  # the spec's own 4xx example answers; only the header tells why
        assert reply.violations


def test_a_request_without_credentials_is_unauthorized(prism):
    case = CASES["twilio-create-message"]
    reply = call("POST", prism(TWILIO_API).url + case.path, **case.valid)

    assert reply.status == 401


def test_prefer_code_returns_the_spec_error_for_retry_paths(prism):
    case = CASES["zendesk-create-ticket"]
    server = prism(ZENDESK)
    limited = call("POST", server.url + case.path, headers={"Prefer": "code=429"}, **case.auth, **case.valid)
    absent = call("POST", server.url + case.path, headers={"Prefer": "code=418"}, **case.auth, **case.valid)

    assert (limited.status, absent.status) == (429, 404)
    assert limited.json()["error"] == "TooManyRequests"


def test_each_spec_starts_once_per_session(prism):
    assert prism(ZENDESK) is prism(ZENDESK)
    assert prism(ZENDESK).url != prism(HUBSPOT).url


# --- the harness itself --------------------------------------------------------------------------


def _state(pid: int) -> tuple[str, int] | None:
    """(state, process group) from /proc, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[2])


def _alive(pid: int) -> bool:
    # A killed process that init has not reaped yet is a zombie ("Z"): dead for our purpose.
    state = _state(pid)
    return state is not None and state[0] != "Z"


def _group_alive(pgid: int) -> bool:
    members = (int(p) for p in os.listdir("/proc") if p.isdigit())
    return any((s := _state(pid)) is not None and s[1] == pgid and s[0] != "Z" for pid in members)


def test_server_parses_its_port_and_kills_its_whole_process_group_on_exit():
    require_prism()
    with PrismServer(vendor_specs_dir() / TELEGRAM) as server:
        pgid = server.pid
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert call("POST", server.url + "/bot1:x/sendMessage", json_body={"chat_id": 1, "text": "hi"}).status == 200
    assert not _group_alive(pgid)


def test_a_spec_prism_cannot_load_fails_fast_with_its_output(tmp_path):
    require_prism()
    spec = tmp_path / "broken.yaml"
    spec.write_text("openapi: 3.0.3\ninfo: [not, closed\n")

    with pytest.raises(PrismStartError, match="exited with code 1") as raised, PrismServer(spec):
        pass
    assert "Error parsing" in str(raised.value)


def test_a_server_that_never_listens_times_out_and_its_children_die(tmp_path):
    if shutil.which("node") is None:
        skip_or_fail("node is not on PATH")
    # A stand-in for Prism that never listens and leaves a child behind, like `npx prism`.
    fake = tmp_path / "fake-prism.js"
    fake.write_text(
        "const c = require('child_process').spawn('sleep', ['60'], {stdio: 'ignore'});\n"
        "console.log('booting, child ' + c.pid);\n"
        "setInterval(() => {}, 1000);\n"
    )
    (tmp_path / "spec.yaml").write_text("{}")
    server = PrismServer(tmp_path / "spec.yaml", entrypoint=fake, startup_timeout=2)

    with pytest.raises(PrismStartError, match="did not report its port within 2 s") as raised, server:
        pass
    assert "booting, child" in str(raised.value)
    child = int(str(raised.value).rsplit("booting, child ", 1)[1].split()[0])
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)
    assert not _group_alive(server.pid)


@pytest.mark.parametrize(
    "headers",
    [
        {"sl-violations": '[{"code":"required","message":"m"}]'},
        {"SL-Violations": '[{"code":"required","message":"m"}]'},
    ],
)
def test_violations_reads_the_header_from_any_mapping(headers):
    message = email.message.Message()
    for name, value in headers.items():
        message[name] = value

    assert violations(headers) == violations(message) == [{"code": "required", "message": "m"}]
    assert violations({"Content-Type": "application/json"}) == []


def test_an_unknown_spec_name_is_a_clear_error(tmp_path):
    registry = PrismRegistry(tmp_path)

    with pytest.raises(PrismError, match="no spec file .*nope.yaml"):
        registry("nope.yaml")
    assert not registry.has_spec("nope.yaml")


def test_a_missing_spec_fails_even_where_prism_tests_would_skip(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no node: Prism tests skip locally...
    for name in ("CI", "HUB_REQUIRE_PRISM"):
        monkeypatch.delenv(name, raising=False)
    registry = PrismRegistry()

    with pytest.raises(pytest.skip.Exception, match="node is not on PATH"):
        registry(TELEGRAM)
    with pytest.raises(PrismError, match="no spec file"):  # ...but a spec that is not there fails
        registry("telegram/missing.openapi.yaml")


def test_the_specs_are_the_committed_copies_whatever_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HUB_VENDOR_SPECS", str(tmp_path))  # the old override: ignored now

    assert vendor_specs_dir() == Path(__file__).resolve().parent / "specs"
    assert PrismRegistry().specs_dir == vendor_specs_dir()
    assert all((vendor_specs_dir() / case.spec).is_file() for case in CASES.values())


@pytest.mark.parametrize(
    ("env", "outcome"),
    [
        ({"CI": "true", "HUB_REQUIRE_PRISM": ""}, pytest.fail.Exception),
        ({"CI": "", "HUB_REQUIRE_PRISM": "1"}, pytest.fail.Exception),
        ({"CI": "", "HUB_REQUIRE_PRISM": ""}, pytest.skip.Exception),
    ],
)
def test_missing_prism_skips_locally_but_fails_in_ci(monkeypatch, env, outcome):
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(outcome, match="node is not on PATH"):
        skip_or_fail("node is not on PATH")


def test_declared_specs_come_from_the_markers_of_selected_tests(request):
    assert set(declared_specs([request.node])) == {case.spec for case in CASES.values()}

