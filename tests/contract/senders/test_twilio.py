"""The Twilio sender against a Prism mock of Twilio's own OpenAPI file (twilio_api_v2010.json,
CreateMessage `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`): every request shape the
sender makes passes the spec, and negative controls show the mock refuses malformed ones.

Prism decodes a form field typed `array` only when the spec spells out its encoding: the verbatim
file leaves `MediaUrl` to the OpenAPI default (`style: form, explode: true`, i.e. the field
repeated, as Twilio takes it), and Prism then refuses every MediaUrl, one or two
(`test_the_verbatim_spec_cannot_take_a_repeated_media_url_under_prism`). `messages_spec` therefore
writes a test-time copy that states that default and changes nothing else.

The spec cannot see inside `ContentVariables` (a JSON string) or know which sender may send what;
the unit tests (tests/unit/channels/test_twilio_sender.py) cover those.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from urllib.parse import parse_qsl

import pytest

from chalicelib.adapters.channels.sending import SenderRuntime
from chalicelib.adapters.channels.twilio.adapter import TwilioSettings
from chalicelib.adapters.channels.twilio.sender import TwilioSender
from chalicelib.adapters.connectors.http import HttpClient, HttpResponse
from chalicelib.domain.models import Channel
from chalicelib.domain.outbound import OutboundAttachment, OutboundMessage, TemplateMessage
from chalicelib.errors import PermanentDeliveryError
from chalicelib.secrets import SecretResolver
from tests.support.prism import vendor_specs_dir, violations

SPEC = "twilio/twilio_api_v2010.json"
ACCOUNT_SID = "AC" + "a" * 32
SERVICE_SID = "MG" + "b" * 32
CONTENT_SID = "HX" + "d" * 32
NUMBER = "+14155550100"
CUSTOMER = "+14155550101"
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)
#: The `sid` of the spec's 201 example, which Prism answers with.
EXAMPLE_SID = "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

MESSAGES = "/2010-04-01/Accounts/{AccountSid}/Messages.json"


@pytest.fixture(scope="module")
def messages_spec(tmp_path_factory) -> str:
    """The verbatim spec with CreateMessage's `MediaUrl` encoding stated (its OpenAPI default)."""
    spec = json.loads((vendor_specs_dir() / SPEC).read_text())
    form = spec["paths"][MESSAGES]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
    assert "encoding" not in form, "the spec now states an encoding: use it verbatim"
    form["encoding"] = {"MediaUrl": {"style": "form", "explode": True}}
    path = tmp_path_factory.mktemp("twilio-spec") / "twilio_api_v2010.messages-encoding.json"
    path.write_text(json.dumps(spec))
    return str(path)


class RecordingHttp(HttpClient):
    """The shared HTTP client, keeping each answer so tests can read Prism's `sl-violations`."""

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[tuple[bytes, HttpResponse]] = []

    def request(self, method, url, *, headers=None, body=None, timeout=None) -> HttpResponse:
        response = super().request(method, url, headers=headers, body=body, timeout=timeout)
        self.exchanges.append((body or b"", response))
        return response


def build(base_url: str, **overrides) -> tuple[TwilioSender, RecordingHttp]:
    settings = TwilioSettings.model_validate({
        "auth_tokens": ["env:TWILIO_AUTH_TOKEN"],
        "public_url": "https://hub.example.com/webhooks/twilio",
        "account_sid": ACCOUNT_SID,
        "numbers": {"sms": [NUMBER], "whatsapp": [NUMBER]},
        "mms": True,
        "templates": {"case_update": {"content_sid": CONTENT_SID, "languages": ["de"], "parameters": 2}},
        "api_base_url": base_url,
        **overrides,
    })
    http = RecordingHttp()
    runtime = SenderRuntime(http=http, aws_client=lambda name: None, clock=lambda: NOW)
    return TwilioSender(settings, SecretResolver({"TWILIO_AUTH_TOKEN": "test-auth-token"}), runtime), http


def message(channel: Channel = Channel.SMS, **fields) -> OutboundMessage:
    prefix = "whatsapp:" if channel is Channel.WHATSAPP else ""
    return OutboundMessage(**{
        "id": "ct_01JEOUT0000000000000000001", "customer_id": "cus_1", "case_id": "case_1", "channel": channel,
        "provider": "twilio", "account": prefix + NUMBER, "to": prefix + CUSTOMER,
        "text": "Hallo Jana, die Störung ist behoben. 👍", "origin": "api:test", "queued_at": NOW, **fields,
    })


def refusals(response: HttpResponse) -> str:
    """Prism's reasons for a 422 it generated (its `validation` list), as text."""
    assert response.status == 422, response.text()
    return json.dumps(json.loads(response.body).get("validation", []))


def sent_cleanly(http: RecordingHttp) -> dict[str, list[str]]:
    """The one request the send made, after asserting Prism found nothing wrong with it."""
    [(body, response)] = http.exchanges
    assert response.status == 201, response.text()
    assert violations(response.headers) == []
    form: dict[str, list[str]] = {}
    for name, value in parse_qsl(body.decode(), keep_blank_values=True):
        form.setdefault(name, []).append(value)
    return form


CASES = {
    "sms": dict(),
    "mms with media": dict(attachments=[OutboundAttachment(url="https://cdn.example.com/a.png"),
                                        OutboundAttachment(url="https://cdn.example.com/b.pdf")]),
    "whatsapp text": dict(channel=Channel.WHATSAPP),
    "whatsapp media only": dict(channel=Channel.WHATSAPP, text=None,
                                attachments=[OutboundAttachment(url="https://cdn.example.com/a.png")]),
    "whatsapp template": dict(channel=Channel.WHATSAPP,
                              template=TemplateMessage(name="case_update", language="de", parameters=["Jana", "#1042"])),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_message_shape_passes_twilios_spec(prism, messages_spec, case):
    fields = dict(CASES[case])
    channel = fields.pop("channel", Channel.SMS)
    sender, http = build(prism(messages_spec).url)
    outbound = message(channel, **fields)
    assert sender.check(outbound) == []

    outcome = sender.send(outbound)

    form = sent_cleanly(http)
    assert outcome.provider_message_id == EXAMPLE_SID
    assert form["StatusCallback"] == ["https://hub.example.com/webhooks/twilio/status"]
    assert form.get("MediaUrl", []) == [a.url for a in outbound.attachments]


def test_the_template_send_carries_content_sid_and_variables(prism, messages_spec):
    sender, http = build(prism(messages_spec).url)
    sender.send(message(Channel.WHATSAPP, template=TemplateMessage(name="case_update", language="de", parameters=["Jana", "#1042"])))
    form = sent_cleanly(http)
    assert form["ContentSid"] == [CONTENT_SID] and "Body" not in form
    assert json.loads(form["ContentVariables"][0]) == {"1": "Jana", "2": "#1042"}


def test_a_messaging_service_send_without_from_passes_the_spec(prism, messages_spec):
    sender, http = build(prism(messages_spec).url, messaging_service_sid=SERVICE_SID, numbers={})
    sender.send(message(account=SERVICE_SID))
    form = sent_cleanly(http)
    assert form["MessagingServiceSid"] == [SERVICE_SID] and "From" not in form


def test_negative_control_a_malformed_content_sid_is_refused_by_the_mock(prism, messages_spec):
    sender, http = build(prism(messages_spec).url)
    # Settings validation refuses this SID; model_copy skips it, so only the spec can catch it.
    broken = sender.settings.templates["case_update"].model_copy(update={"content_sid": "HX123"})
    sender.settings = sender.settings.model_copy(update={"templates": {"case_update": broken}})

    with pytest.raises(PermanentDeliveryError, match="422"):
        sender.send(message(Channel.WHATSAPP, template=TemplateMessage(name="case_update", language="de", parameters=["a", "b"])))

    [(_, response)] = http.exchanges
    assert '"ContentSid"' in refusals(response) and "pattern" in refusals(response)


def test_negative_control_a_request_without_to_is_refused_by_the_mock(prism, messages_spec):
    class WithoutTo(TwilioSender):
        def request_form(self, message):
            return [(k, v) for k, v in super().request_form(message) if k != "To"]

    sender, http = build(prism(messages_spec).url)
    sender.__class__ = WithoutTo

    with pytest.raises(PermanentDeliveryError, match="422"):
        sender.send(message())

    [(_, response)] = http.exchanges
    assert "required property 'To'" in refusals(response)


def test_negative_control_the_derived_spec_still_types_its_fields(prism, messages_spec):
    """Stating MediaUrl's encoding did not make the mock accept anything: a mistyped field fails."""
    class Mistyped(TwilioSender):
        def request_form(self, message):
            return [*super().request_form(message), ("SendAsMms", "perhaps")]

    sender, http = build(prism(messages_spec).url)
    sender.__class__ = Mistyped

    with pytest.raises(PermanentDeliveryError, match="422"):
        sender.send(message(attachments=[OutboundAttachment(url="https://cdn.example.com/a.png")]))
    assert "SendAsMms" in refusals(http.exchanges[0][1])


@pytest.mark.prism_specs(SPEC)
def test_the_verbatim_spec_cannot_take_a_repeated_media_url_under_prism(prism):
    """Why `messages_spec` exists; if this starts passing, test against the verbatim file."""
    sender, http = build(prism(SPEC).url)

    with pytest.raises(PermanentDeliveryError, match="422"):
        sender.send(message(attachments=[OutboundAttachment(url="https://cdn.example.com/a.png")]))
    assert "MediaUrl must be array" in refusals(http.exchanges[0][1])


@pytest.mark.prism_specs(SPEC)
def test_the_verbatim_spec_takes_a_text_message(prism):
    sender, http = build(prism(SPEC).url)
    assert sender.send(message()).provider_message_id == EXAMPLE_SID
    sent_cleanly(http)
