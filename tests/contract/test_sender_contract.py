"""The sender contract: every registered channel sender passes the same tests.

One row per way out (a provider and channel), built as the hub builds it, from the provider's
configuration section, pointed at a local scripted server (tests/support/receiver.py):
- `check` refuses text over the channel's documented limit, naming `text`; the same message with
  a short text passes (so it is the length that was refused);
- `reply_target` answers every inbound message of the provider's stored fixtures, parsed by its own
  adapter as the process worker keeps it: from the account written to, to a non-empty recipient the
  sender's own `check` accepts;
- `send` makes one provider call and classifies its failure: 429 with `Retry-After` retryable after
  that delay, 503 retryable, a plain 400 permanent;
- `default_account` is an account `sends_from` accepts, on every channel (None off the sender's own);
- the ingest path never imports a sender module (the ingest Lambda's cold start is measured).
A sender registered without a row fails `test_every_registered_sender_has_a_contract_row`. The
exact requests each provider takes are checked against Prism mocks in tests/contract/senders/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from chalicelib.adapters.channels.base import WebhookRequest
from chalicelib.adapters.channels.registry import CHANNELS
from chalicelib.adapters.channels.sending import ChannelSender, SenderRuntime, sender_class
from chalicelib.adapters.channels.ses import sns_signature as sns
from chalicelib.adapters.connectors.http import HttpClient
from chalicelib.domain.models import Channel, Customer, InboundMessage, Resolution
from chalicelib.domain.outbound import OutboundMessage
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError, SignatureError
from chalicelib.secrets import SecretResolver
from chalicelib.service.identity import normalize_sender
from chalicelib.service.process import _contact
from tests.contract.test_channel_adapter_contract import CASES
from tests.support.fixtures import FIXTURES, load
from tests.support.receiver import Answer, Receiver
from tests.support.send_fixtures import NOW, RECEIVED_AT

TELEGRAM_BOT = 7000000001
ENVIRON = {
    "WA_TOKEN": "EAAG-wa", "PAGE_TOKEN": "EAAG-page", "IG_TOKEN": "IGAA-ig", "SLACK_BOT_TOKEN": "xoxb-1111-2222-test",
    "TELEGRAM_BOT_TOKEN": f"{TELEGRAM_BOT}:AAHcontractTokenOfTheSupportBot_0123", "X_DM_TOKEN": "x-oauth2-user-token",
    "MAILGUN_KEY": "key-contract", "SENDGRID_KEY": "SG.contract",
}  # fmt: skip
#: The SNS certificate the SES fixtures are signed for, served instead of fetched.
SES_CERT = (FIXTURES / "ses" / "signing_cert.pem").read_bytes()


@dataclass(frozen=True)
class SenderRow:
    key: str
    channel: Channel
    #: The sending configuration beside the adapter row's receiving one, given the API base URL.
    outbound: Callable[[str], dict[str, Any]]
    account: str
    to: str
    #: A text just over the channel's documented limit, for the sender built from this row.
    too_long: Callable[[Any], str]
    #: False for the web chat: the hub is its own provider, there is no call to classify.
    calls_a_provider: bool = True
    adapter_options: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.key}-{self.channel.value}"


def _twilio(base: str) -> dict:
    return {"account_sid": "AC" + "a" * 32, "numbers": {"sms": ["+14155550100"], "whatsapp": ["+14155550100"]},
            "api_base_url": base}  # fmt: skip


def _meta(base: str) -> dict:
    return {
        "api_base_url": base, "instagram_api_base_url": base,
        "whatsapp": {"access_tokens": ["env:WA_TOKEN"], "numbers": {"106540352242922": {}}},
        "pages": {"1234567890": {"access_tokens": "env:PAGE_TOKEN"}},
        "instagram": {"17841400000000000": {"access_tokens": ["env:IG_TOKEN"]}},
    }  # fmt: skip


def _email(address: str, *keys: str) -> Callable[[str], dict]:
    return lambda base: {"sending_addresses": [address], **({"api_base_url": base, "api_keys": list(keys)} if keys else {})}


def chars(count: int, character: str = "x") -> Callable[[Any], str]:
    return lambda sender: character * count


def over_the_message_size(sender) -> str:
    """Email has no text limit of its own: the text must fit the provider's message size."""
    return "x" * (sender.max_text_bytes() + 1)


ROWS = [
    # Twilio: "Body … can be up to 1,600 characters", on SMS and WhatsApp alike.
    SenderRow("twilio", Channel.SMS, _twilio, "+14155550100", "+14155550101", chars(1601)),
    SenderRow("twilio", Channel.WHATSAPP, _twilio, "whatsapp:+14155550100", "whatsapp:+14155550101", chars(1601)),
    # WhatsApp text "Maximum 4096 characters"; Messenger "less than 2000"; Instagram 1000 bytes.
    SenderRow("meta", Channel.WHATSAPP, _meta, "106540352242922", "16505551234", chars(4097)),
    SenderRow("meta", Channel.MESSENGER, _meta, "1234567890", "6789012345678901", chars(2000)),
    SenderRow("meta", Channel.INSTAGRAM, _meta, "17841400000000000", "5566778899001122", chars(501, "ü")),
    SenderRow("slack", Channel.SLACK, lambda base: {"bot_tokens": {"T0HUB0001": "env:SLACK_BOT_TOKEN"}, "api_base_url": base},
              "T0HUB0001", "D0HUB0001", chars(40_001)),
    SenderRow("telegram", Channel.TELEGRAM, lambda base: {"bot_tokens": ["env:TELEGRAM_BOT_TOKEN"], "api_base_url": base},
              str(TELEGRAM_BOT), "123456789", chars(4097)),
    SenderRow("x", Channel.X, lambda base: {"dm_access_tokens": {"3001969357": "env:X_DM_TOKEN"}, "api_base_url": base},
              "3001969357", "1221334455667788", chars(10_001)),
    SenderRow("mailgun", Channel.EMAIL, _email("support@mg.acme.example", "env:MAILGUN_KEY"),
              "support@mg.acme.example", "ana@customer.example", over_the_message_size),
    SenderRow("sendgrid", Channel.EMAIL, _email("support@parse.acme.example", "env:SENDGRID_KEY"),
              "support@parse.acme.example", "ana@customer.example", over_the_message_size),
    SenderRow("ses", Channel.EMAIL, _email("support@inbound.acme.example"), "support@inbound.acme.example",
              "ana@customer.example", over_the_message_size,
              adapter_options={"fetch": lambda url: sns.HttpResponse(200, SES_CERT)}),
    SenderRow("webchat", Channel.WEBCHAT, lambda base: {}, "shop", "v_01JH0000000000000000000001", chars(10_001),
              calls_a_provider=False),
]
SENDERS = sorted(key for key, adapter in CHANNELS.items() if adapter.sender)
#: One row per provider for what does not depend on the channel.
PROVIDER_ROWS = {row.key: row for row in reversed(ROWS)}


def settings_of(row: SenderRow, base: str = "https://api.example.test") -> dict:
    return {**CASES[row.key].settings, **row.outbound(base)}


def build(row: SenderRow, base: str = "https://api.example.test", *, runtime: SenderRuntime | None = None,
          receiving_only: bool = False) -> ChannelSender:
    adapter = CHANNELS[row.key]
    values = CASES[row.key].settings if receiving_only else settings_of(row, base)
    runtime = runtime or SenderRuntime(http=HttpClient(), aws_client=_no_aws, clock=lambda: NOW)
    return sender_class(adapter.sender)(adapter.Settings.model_validate(values), SecretResolver(ENVIRON), runtime)


def message(row: SenderRow, **fields: Any) -> OutboundMessage:
    values = {"id": "ct_01JCONTRACT00000000000001", "customer_id": "cus_1", "case_id": "case_1", "channel": row.channel,
              "provider": row.key, "account": row.account, "to": row.to, "text": "Hallo Jana, die Störung ist behoben.",
              "origin": "api:contract", "queued_at": NOW, **fields}  # fmt: skip
    return OutboundMessage.model_validate(values)


def _no_aws(service: str):
    raise AssertionError(f"only SES asks for an AWS client, not for {service}")


@pytest.fixture(params=ROWS, ids=[row.id for row in ROWS])
def row(request) -> SenderRow:
    return request.param


@pytest.fixture(params=SENDERS)
def provider(request) -> SenderRow:
    return PROVIDER_ROWS[request.param]


def test_every_registered_sender_has_a_contract_row():
    assert set(SENDERS) == {row.key for row in ROWS}
    for key in SENDERS:
        channels = sender_class(CHANNELS[key].sender).channels
        covered = {row.channel for row in ROWS if row.key == key}
        # Twilio's MMS is SMS with media: the send API has no separate MMS channel.
        assert channels - covered <= {Channel.MMS}, f"{key} sends on {sorted(channels - covered)} without a row"


# --- check ------------------------------------------------------------------------------------------


def test_check_refuses_oversized_text_naming_text(row):
    sender = build(row)

    assert sender.check(message(row)) == []
    problems = sender.check(message(row, text=row.too_long(sender)))

    assert [p.field for p in problems] == ["text"], problems


# --- reply targets ------------------------------------------------------------------------------------


def inbound_contacts(row: SenderRow):
    """Every inbound message of the provider's stored fixtures, verified and parsed by its adapter
    with the contract row's settings, kept as the process worker keeps it (`_contact`). Fixtures
    made to fail verification (forged, foreign certificates) are left out."""
    adapter_cls = CHANNELS[row.key]
    adapter = adapter_cls(adapter_cls.Settings.model_validate(CASES[row.key].settings), SecretResolver({}),
                          **row.adapter_options)
    for meta in sorted((FIXTURES / row.key).glob("*.json")):
        if not meta.with_suffix(".body").exists():
            continue
        stored = load(row.key, meta.stem)
        request = WebhookRequest(method="POST", hook=stored.hook, headers=dict(stored.headers), query={},
                                 body=stored.body, received_at=RECEIVED_AT)  # fmt: skip
        try:
            adapter.verify(request)
        except SignatureError:
            continue
        for event in adapter.parse(request).events:
            if isinstance(event, InboundMessage):
                party = normalize_sender(event.sender.handles, event.sender.display_name, default_region=None).party
                resolution = Resolution(customer_id="cus_1", created_customer=True, rule="contract")
                yield meta.stem, _contact(event, party, Customer(id="cus_1"), "case_1", resolution)


def test_every_inbound_message_can_be_answered_from_the_account_it_reached(provider):
    sender = build(provider)
    contacts = list(inbound_contacts(provider))
    assert contacts, f"no inbound fixture of {provider.key} parsed"

    for name, contact in contacts:
        target = type(sender).reply_target(contact)

        assert target is not None, name
        assert (target.provider, target.account) == (contact.provider, contact.account), name
        assert target.to.strip(), name
        assert (target.contact_id, target.case_id) == (contact.id, contact.case_id), name
        assert target.at == (contact.sent_at or contact.received_at), name
        assert target.channel in sender.channels, name
        assert sender.sends_from(target.channel, target.account), name
        answer = message(provider, channel=target.channel, account=target.account, to=target.to, reply=target.reply,
                         text="Danke, wir kümmern uns darum.")  # fmt: skip
        assert sender.check(answer) == [], (name, sender.check(answer))


# --- send: one call, and its failures classified -----------------------------------------------------


@pytest.fixture
def vendor():
    with Receiver() as server:
        yield server


def root(url: str) -> str:
    return url.rsplit("/hooks", 1)[0]


def sending(row: SenderRow, vendor: Receiver) -> ChannelSender:
    base = root(vendor.url)

    def aws_client(service: str):
        # SES through the same scripted server, with botocore's own retries off: a retry is the worker's.
        return boto3.client(service, region_name="eu-west-1", endpoint_url=base, aws_access_key_id="test",
                            aws_secret_access_key="test", config=Config(retries={"total_max_attempts": 1}))  # fmt: skip

    return build(row, base, runtime=SenderRuntime(http=HttpClient(), aws_client=aws_client, clock=lambda: NOW))


ERRORS = {
    "429": Answer(429, b'{"message": "slow down"}', {"Content-Type": "application/json", "Retry-After": "7"}),
    "503": Answer(503, b'{"message": "unavailable"}', {"Content-Type": "application/json"}),
    "400": Answer(400, b'{"message": "bad request"}', {"Content-Type": "application/json"}),
}


#: The web chat is its own provider: it makes no call whose answer could be classified.
CALLING_ROWS = [row for row in ROWS if row.calls_a_provider]


@pytest.mark.parametrize("answer", sorted(ERRORS))
@pytest.mark.parametrize("row", CALLING_ROWS, ids=[row.id for row in CALLING_ROWS])
def test_send_makes_one_call_and_classifies_the_providers_refusal(row, vendor, answer):
    vendor.default = ERRORS[answer]
    expected = PermanentDeliveryError if answer == "400" else RetryableDeliveryError

    with pytest.raises(expected) as raised:
        sending(row, vendor).send(message(row))

    assert len(vendor.requests) == 1
    if answer == "400":
        assert not isinstance(raised.value, RetryableDeliveryError)
    if answer == "429":
        assert raised.value.retry_after == 7


# --- accounts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("receiving_only", [False, True], ids=["sending", "receiving-only"])
def test_the_default_account_is_one_the_sender_sends_from(provider, receiving_only):
    sender = build(provider, receiving_only=receiving_only)

    for channel in Channel:
        default = sender.default_account(channel)
        if channel not in sender.channels:
            assert default is None, channel
        elif default is not None:
            assert sender.sends_from(channel, default), channel
    if not receiving_only:
        for row in ROWS:
            if row.key == provider.key:
                assert sender.sends_from(row.channel, row.account), row.id


# --- the ingest path ----------------------------------------------------------------------------------

_PROBE = """
import json, sys
import app  # what the ingest Lambda loads
loaded = set(sys.modules)
from tests.contract.test_channel_adapter_contract import CASES, adapter_for, make
before = set(sys.modules)
for key, case in CASES.items():
    adapter = adapter_for(key)
    request = make(key, case.sample, case.sample_headers)
    adapter.verify(request)
    adapter.parse(request)
print(json.dumps({"cold": sorted(loaded), "parsing": sorted(set(sys.modules) - before)}))
"""


@pytest.fixture(scope="module")
def ingest_modules() -> dict[str, set[str]]:
    """The modules a fresh interpreter holds after importing the app, and those verifying and
    parsing every adapter row's sample added."""
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    return {name: set(modules) for name, modules in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def test_the_ingest_path_never_imports_a_sender(provider, ingest_modules):
    module = CHANNELS[provider.key].sender.partition(":")[0]
    shared = {"chalicelib.adapters.channels.sending", "chalicelib.adapters.channels.email.compose"}

    for phase, modules in ingest_modules.items():
        assert module not in modules, f"{module} is imported by {phase}"
        assert not shared & modules, f"{sorted(shared & modules)} imported by {phase}"
