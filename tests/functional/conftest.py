"""The whole hub in embedded mode, on an ephemeral port, driven through HTTP like a provider would."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from chalicelib.local.runtime import EmbeddedRuntime
from chalicelib.settings import Settings
from tests.support.receiver import Receiver

API_KEY = "test-api-key"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"
META_SECRET = "test_meta_app_secret"
WEBCHAT_SECRET = "acme-identity-secret"

CONFIG = """
identity:
  default_region: US
channels:
  twilio:
    auth_tokens: ["{twilio}"]
    public_url: https://hub.example.com/webhooks/twilio
  meta:
    app_secrets: ["{meta}"]
    verify_tokens: ["meta-verify-token"]
  webchat:
    sites:
      - id: acme
        identity_secrets: ["{webchat}"]
destinations:
  - name: outbox
    type: outbox
    path: outbox.jsonl
    case_events: false
  - name: crm
    type: webhook
    url: {receiver}
    secrets: ["{whsec}"]
    timeout_seconds: 5
    case_events: false
delivery:
  attempts_per_invocation: 3
  max_inline_wait_seconds: 2
  max_receives: {max_receives}
processing:
  max_body_bytes: 65536
# Tests reach no provider: media downloads are switched on where a test serves them.
media: {{enabled: false}}
api_keys:
  - name: tests
    sha256: {key_hash}
    scopes: [customers:read, customers:write, customers:erase, operations, messages:send]
"""


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class RunningHub:
    def __init__(self, runtime: EmbeddedRuntime, receiver: Receiver, data_dir: Path) -> None:
        self.runtime = runtime
        self.hub = runtime.hub
        self.receiver = receiver
        self.data_dir = data_dir
        self.url = runtime.url

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> HttpResult:
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return HttpResult(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
        except urllib.error.HTTPError as error:
            return HttpResult(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())

    def post(self, path: str, body: bytes, headers: dict) -> HttpResult:
        return self.request("POST", path, body, headers)

    def api(self, path: str, key: str | None = API_KEY) -> HttpResult:
        return self.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})

    def outbox(self) -> list[dict]:
        path = self.data_dir / "outbox.jsonl"
        if not path.exists():
            return []
        # Only whole lines: a reader may see the start of a line the outbox is still writing.
        complete = path.read_text().rpartition("\n")[0]
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def wait_for(self, predicate, timeout: float = 10.0, message: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {message}")

    def settled(self) -> bool:
        """True when both queues are empty: everything was processed and delivered."""
        return self.hub.inbound_queue.depth() == 0 and self.hub.delivery_queue.depth() == 0


def make_config(path: Path, receiver_url: str, *, max_receives: int = 3, extra: dict | None = None) -> Path:
    """The test configuration; `extra` is merged into it key by key (`outbound_config` adds the
    providers' sending settings this way)."""
    text = CONFIG.format(
        twilio=TWILIO_TOKEN, meta=META_SECRET, webchat=WEBCHAT_SECRET, receiver=receiver_url,
        whsec=WEBHOOK_SECRET, key_hash=hashlib.sha256(API_KEY.encode()).hexdigest(), max_receives=max_receives,
    )
    if extra:
        import yaml

        text = yaml.safe_dump(merged(yaml.safe_load(text), extra), sort_keys=False)
    path.write_text(text)
    return path


def merged(base: dict, extra: dict) -> dict:
    """`base` with `extra` merged in: mappings recursively, everything else replaced."""
    result = dict(base)
    for key, value in extra.items():
        result[key] = merged(result[key], value) if isinstance(value, dict) and isinstance(result.get(key), dict) else value
    return result


# --- outbound: every provider sends to a local fake ------------------------------------------------

TWILIO_ACCOUNT = "AC" + "a" * 32
TWILIO_NUMBER = "+14155550100"
TWILIO_TEMPLATE_SID = "HX" + "c" * 32
#: The WhatsApp Cloud API phone number id of tests/fixtures/meta/whatsapp_*.
WHATSAPP_NUMBER_ID = "106540352242922"
META_TOKEN = "test-meta-system-user-token"


def outbound_config(provider_url: str, **sections: dict) -> dict:
    """Sending settings for Twilio and Meta's WhatsApp with `api_base_url` at `provider_url` (a
    `Receiver` playing the provider), merged under `channels`; `sections` add or extend other
    providers' sections (`slack={...}`)."""
    base = provider_url.split("/hooks", 1)[0]
    channels = {
        "twilio": {
            "account_sid": TWILIO_ACCOUNT, "api_base_url": base,
            "numbers": {"sms": [TWILIO_NUMBER], "whatsapp": [TWILIO_NUMBER]},
            "templates": {"welcome": {"content_sid": TWILIO_TEMPLATE_SID, "languages": ["en"]}},
        },
        "meta": {
            "api_base_url": base,
            "templates": {"case_update": {"languages": ["de"], "parameters": 1}, "reopen_conversation": {"languages": ["de"]}},
            "whatsapp": {"access_tokens": [META_TOKEN], "numbers": {WHATSAPP_NUMBER_ID: {}}},
        },
    }
    return {"channels": merged(channels, sections)}


def start_hub(tmp_path: Path, receiver: Receiver, *, workers: int = 1, max_receives: int = 3,
              txt_resolver=None, extra: dict | None = None, clock=None) -> EmbeddedRuntime:
    """The hub on an ephemeral port. DNS (DKIM keys, DMARC records) is `txt_resolver`, by default
    one that knows no name: tests never reach the internet."""
    from chalicelib.adapters.email_auth import FakeTxtResolver
    from chalicelib.bootstrap import Hub

    config = make_config(tmp_path / "hub.yaml", receiver.url, max_receives=max_receives, extra=extra)
    settings = Settings(
        config_path=str(config), data_dir=str(tmp_path / "data"), port=0, local_workers=workers
    )
    hub = Hub(settings, txt_resolver=txt_resolver or FakeTxtResolver(), **({"clock": clock} if clock else {}))
    return EmbeddedRuntime(hub=hub, port=0)


@pytest.fixture
def receiver():
    with Receiver() as server:
        yield server


@pytest.fixture
def running(tmp_path, receiver):
    runtime = start_hub(tmp_path, receiver).start()
    try:
        yield RunningHub(runtime, receiver, tmp_path / "data")
    finally:
        runtime.stop()
