"""`hubctl simulate`: one customer writes by SMS, then WhatsApp, then web chat, correctly signed.

It signs with the secrets of the hub configuration the running hub uses, exactly as Twilio, Meta
and our chat widget's backend would, then shows the one customer and one case the hub made of it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import quote, urlencode

from chalicelib.adapters.channels import meta, twilio, webchat
from chalicelib.hubconfig import load_config
from chalicelib.secrets import SecretResolver
from chalicelib.settings import Settings

CUSTOMER_NAME = "Jana Schmidt"
OUR_NUMBER = "+14155550100"


def run_journey(*, base_url: str, config_path: str | None, api_key: str, phone: str) -> int:
    settings = Settings.from_environ()
    config = load_config(config_path or settings.config_path)
    secrets = SecretResolver(settings.environ)
    base_url = base_url.rstrip("/")
    steps = [
        ("SMS via Twilio", _twilio_sms(config, secrets, base_url, phone)),
        ("WhatsApp via Meta", _whatsapp(config, secrets, base_url, phone)),
        ("web chat, verified phone", _webchat(config, secrets, base_url, phone)),
    ]
    for label, (path, body, headers) in steps:
        status, answer = _send("POST", base_url + path, body, headers)
        print(f"  {label:<26} POST {path:<22} → {status} {answer[:60].decode(errors='replace')!r}")
        if status >= 300:
            print("The hub refused the request; is it running with this configuration?")
            return 1
        time.sleep(0.3)  # keep the three messages in arrival order across providers
    return _show_result(base_url, api_key, phone)


def _twilio_sms(config, secrets, base_url, phone):
    settings = _channel(config, "twilio")
    params = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": phone,
        "To": OUR_NUMBER,
        "Body": "Hallo, meine Bestellung #1042 ist noch nicht angekommen.",
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }
    signature = twilio.compute_signature(settings.public_url, params, secrets.get(settings.auth_tokens[0]))
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
    return "/webhooks/twilio", urlencode(params).encode(), headers


def _whatsapp(config, secrets, base_url, phone):
    settings = _channel(config, "meta")
    wa_id = phone.lstrip("+")
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": OUR_NUMBER.lstrip("+"), "phone_number_id": "106540352242922"},
                    "contacts": [{"profile": {"name": CUSTOMER_NAME}, "wa_id": wa_id}],
                    "messages": [{
                        "from": wa_id, "id": "wamid." + uuid.uuid4().hex, "timestamp": str(int(time.time())),
                        "type": "text", "text": {"body": "Hier ist die Sendungsnummer: 00340434161094042557"},
                    }],
                },
            }],
        }],
    }
    # Meta sends compact JSON with non-ASCII escaped, and signs exactly those bytes.
    body = json.dumps(payload, separators=(",", ":")).encode()
    signature = meta.compute_signature(secrets.get(settings.app_secrets[0]), body)
    return "/webhooks/meta", body, {"Content-Type": "application/json", "X-Hub-Signature-256": signature}


def _webchat(config, secrets, base_url, phone):
    site = _channel(config, "webchat").sites[0]
    payload = {
        "site_id": site.id,
        "visitor_id": "visitor-" + uuid.uuid4().hex[:12],
        "message_id": str(uuid.uuid4()),
        "text": "Können Sie mir bitte sagen, wann das Paket kommt? Ich schreibe jetzt hier im Chat.",
        "identity": {"phone": phone, "name": CUSTOMER_NAME},
        # Computed by the site's backend with the site's identity secret (docs/channels/webchat.md).
        "user_hash": webchat.user_hash(secrets.get(site.identity_secrets[0]), phone),
    }
    return "/webhooks/webchat", json.dumps(payload).encode(), {"Content-Type": "application/json"}


def send_one(*, base_url: str, config_path: str | None, channel: str, phone: str, email: str, text: str) -> int:
    """`hubctl simulate --channel <key>`: one message through one provider's endpoint, signed as
    the provider signs (each adapter's `simulated_request`)."""
    from chalicelib.adapters.channels.base import SimulatedCustomer
    from chalicelib.adapters.channels.registry import CHANNELS

    settings = Settings.from_environ()
    config = load_config(config_path or settings.config_path)
    secrets = SecretResolver(settings.environ)
    if channel not in CHANNELS or channel not in config.channels:
        enabled = ", ".join(sorted(k for k in config.channels if k in CHANNELS)) or "none"
        raise SystemExit(f"channel {channel!r} is not enabled in the hub configuration (enabled: {enabled})")
    adapter = CHANNELS[channel](config.channels[channel], secrets)
    request = adapter.simulated_request(SimulatedCustomer(name=CUSTOMER_NAME, phone=phone, email=email, text=text))
    if request is None:
        raise SystemExit(f"{channel} cannot be simulated with this configuration")
    status, answer = _send("POST", base_url.rstrip("/") + request.path, request.body, request.headers)
    print(f"  {channel:<10} POST {request.path:<24} → {status} {answer[:60].decode(errors='replace')!r}")
    return 0 if status < 300 else 1


def _show_result(base_url: str, api_key: str, phone: str) -> int:
    auth = {"Authorization": f"Bearer {api_key}"}
    deadline = time.monotonic() + 20
    customer, contacts = None, []
    while time.monotonic() < deadline:
        status, body = _send("GET", f"{base_url}/v1/customers?identifier={quote('phone:' + phone)}", None, auth)
        if status == 200 and json.loads(body)["data"]:
            customer = json.loads(body)["data"][0]
            _, page = _send("GET", f"{base_url}/v1/customers/{customer['id']}/contacts", None, auth)
            contacts = [_send("GET", f"{base_url}/v1/contacts/{c['id']}", None, auth)[1]
                        for c in json.loads(page).get("data", [])]
            contacts = [json.loads(c) for c in contacts]
            if len(contacts) >= 3 and all(d["status"] == "delivered" for c in contacts for d in c["deliveries"]):
                break
        time.sleep(0.25)
    if customer is None:
        print("No customer appeared; check the hub's log output.")
        return 1
    print(f"\nOne customer: {customer['id']}  ({customer['attributes'].get('name', {}).get('value', 'no name')})")
    print(f"One open case: {customer['open_case']['id']} with {customer['open_case']['contact_count']} contacts")
    for contact in reversed(contacts):
        deliveries = ", ".join(f"{d['destination']}={d['status']}" for d in contact["deliveries"])
        print(f"  {contact['received_at'][:19]}  {contact['channel']:<9} {contact['text'][:48]!r}  [{deliveries}]")
    print(f"\nSee it yourself:\n  curl -H 'Authorization: Bearer {api_key}' {base_url}/v1/customers/{customer['id']}")
    print("  tail -n 3 data/outbox.jsonl    (what the outbox destination received)")
    return 0


def _channel(config, key: str):
    settings = config.channels.get(key)
    if settings is None:
        raise SystemExit(f"the hub configuration has no {key} channel; simulate needs twilio, meta and webchat")
    return settings


def _send(method: str, url: str, body: bytes | None, headers: dict) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except urllib.error.URLError as error:
        raise SystemExit(f"cannot reach the hub at {url}: {error.reason}. Start it with `make run`.") from None
