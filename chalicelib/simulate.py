"""`hubctl simulate`: one customer writes by SMS, then WhatsApp, then web chat, correctly signed,
and is answered.

It signs with the secrets of the hub configuration the running hub uses, exactly as Twilio, Meta
and our chat widget's backend would, then shows the one customer and one case the hub made of it.
Then the round trip: an agent answers through `POST /v1/messages` (`channel: reply`, so on the
web chat the customer wrote on last), and the simulated widget fetches its replies, the routing
rules' automatic one and the agent's, through `GET /webhooks/webchat/messages` with the visitor
token the hub handed it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from urllib.parse import quote

from chalicelib.adapters.channels.base import SimulatedCustomer, SimulatedRequest
from chalicelib.hubconfig import load_config
from chalicelib.secrets import SecretResolver
from chalicelib.settings import Settings

CUSTOMER_NAME = "Jana Schmidt"


#: The journey: (channel key, label, what the customer writes there).
JOURNEY = (
    ("twilio", "SMS via Twilio", "Hallo, meine Bestellung #1042 ist noch nicht angekommen."),
    ("meta", "WhatsApp via Meta", "Hier ist die Sendungsnummer: 00340434161094042557"),
    ("webchat", "web chat, verified phone",
     "Können Sie mir bitte sagen, wann das Paket kommt? Ich schreibe jetzt hier im Chat."),
)


#: What the simulated agent answers through the API.
AGENT_REPLY = "Hallo Jana, Ihr Paket ist unterwegs und kommt morgen zwischen 10 und 14 Uhr."


def run_journey(*, base_url: str, config_path: str | None, api_key: str, phone: str) -> int:
    base_url = base_url.rstrip("/")
    widget = None
    for key, label, text in JOURNEY:
        request = _signed_request(config_path, key, SimulatedCustomer(
            name=CUSTOMER_NAME, phone=phone, email="jana.schmidt@example.com", text=text))
        status, answer = _send("POST", base_url + request.path, request.body, request.headers)
        print(f"  {label:<26} POST {request.path:<22} → {status} {answer[:60].decode(errors='replace')!r}")
        if status >= 300:
            print("The hub refused the request; is it running with this configuration?")
            return 1
        if key == "webchat":
            widget = _widget(request, answer)
        time.sleep(0.3)  # keep the three messages in arrival order across providers
    customer_id = _show_result(base_url, api_key, phone)
    if customer_id is None:
        return 1
    return _answer(base_url, api_key, customer_id, widget)


def _widget(request: SimulatedRequest, answer: bytes) -> dict | None:
    """What the chat widget keeps after posting: its site, visitor and the hub's visitor token."""
    body, ack = json.loads(request.body), json.loads(answer or b"{}")
    if "visitor_token" not in ack:
        return None
    return {"site_id": body["site_id"], "visitor_id": body["visitor_id"], "token": ack["visitor_token"]}


def _answer(base_url: str, api_key: str, customer_id: str, widget: dict | None) -> int:
    """The agent's reply through the API, and what the widget fetches."""
    print("\nAn agent answers through the API (channel: reply):")
    body = json.dumps({"to": {"customer_id": customer_id}, "channel": "reply", "text": AGENT_REPLY}).encode()
    status, answer = _send("POST", f"{base_url}/v1/messages", body,
                           {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
    print(f"  POST /v1/messages → {status} {answer[:160].decode(errors='replace')}")
    if status >= 300:
        return 1
    message_id = json.loads(answer)["data"]["id"]
    if widget is None:
        print("The web chat gave no visitor token; the widget cannot fetch replies.")
        return 1
    path = f"/webhooks/webchat/messages?site_id={quote(widget['site_id'])}&visitor_id={quote(widget['visitor_id'])}"
    deadline, replies = time.monotonic() + 20, []
    while time.monotonic() < deadline:
        status, page = _send("GET", base_url + path, None, {"Authorization": f"Bearer {widget['token']}"})
        replies = json.loads(page).get("data", []) if status == 200 else []
        if any(reply["id"] == message_id for reply in replies):
            break
        time.sleep(0.25)
    print(f"\nThe chat widget fetches its replies: GET {path[:60]}… (Bearer <visitor_token>)")
    for reply in replies:
        who = "agent" if reply["id"] == message_id else "automatic"
        print(f"  {reply['sent_at'][:19]}  {who:<9} {reply['text'][:90]!r}")
    _, contact = _send("GET", f"{base_url}/v1/contacts/{message_id}", None, {"Authorization": f"Bearer {api_key}"})
    history = " → ".join(change["status"] for change in json.loads(contact).get("status_history", []))
    print(f"\nThe agent's message is contact {message_id} on the case: {history}")
    return 0 if any(reply["id"] == message_id for reply in replies) else 1


def _signed_request(config_path: str | None, key: str, customer: SimulatedCustomer) -> SimulatedRequest:
    """The request `key`'s provider would send for `customer`, signed with this hub's secrets."""
    from chalicelib.adapters.channels.registry import CHANNELS

    settings = Settings.from_environ()
    config = load_config(config_path or settings.config_path)
    if key not in CHANNELS or key not in config.channels:
        enabled = ", ".join(sorted(k for k in config.channels if k in CHANNELS)) or "none"
        raise SystemExit(f"channel {key!r} is not enabled in the hub configuration (enabled: {enabled})")
    request = CHANNELS[key](config.channels[key], SecretResolver(settings.environ)).simulated_request(customer)
    if request is None:
        raise SystemExit(f"{key} cannot be simulated with this configuration")
    return request


def send_one(*, base_url: str, config_path: str | None, channel: str, phone: str, email: str, text: str) -> int:
    """`hubctl simulate --channel <key>`: one message through one provider's endpoint, signed as
    the provider signs (each adapter's `simulated_request`)."""
    request = _signed_request(config_path, channel, SimulatedCustomer(name=CUSTOMER_NAME, phone=phone, email=email,
                                                                      text=text))
    status, answer = _send("POST", base_url.rstrip("/") + request.path, request.body, request.headers)
    print(f"  {channel:<10} POST {request.path:<24} → {status} {answer[:60].decode(errors='replace')!r}")
    return 0 if status < 300 else 1


def _show_result(base_url: str, api_key: str, phone: str) -> str | None:
    """Print the customer and their inbound contacts; the customer's id (None when none appeared)."""
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
            contacts = [c for c in contacts if c.get("direction", "inbound") == "inbound"]
            if len(contacts) >= 3 and all(d["status"] == "delivered" for c in contacts for d in c["deliveries"]):
                break
        time.sleep(0.25)
    if customer is None:
        print("No customer appeared; check the hub's log output.")
        return None
    print(f"\nOne customer: {customer['id']}  ({customer['attributes'].get('name', {}).get('value', 'no name')})")
    print(f"One open case: {customer['open_case']['id']} with {customer['open_case']['contact_count']} contacts")
    for contact in reversed(contacts):
        deliveries = ", ".join(f"{d['destination']}={d['status']}" for d in contact["deliveries"])
        print(f"  {contact['received_at'][:19]}  {contact['channel']:<9} {contact['text'][:48]!r}  [{deliveries}]")
    print(f"\nSee it yourself:\n  curl -H 'Authorization: Bearer {api_key}' {base_url}/v1/customers/{customer['id']}")
    print("  tail -n 3 data/outbox.jsonl    (what the outbox destination received)")
    return customer["id"]


def _send(method: str, url: str, body: bytes | None, headers: dict) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except urllib.error.URLError as error:
        raise SystemExit(f"cannot reach the hub at {url}: {error.reason}. Start it with `make run`.") from None
