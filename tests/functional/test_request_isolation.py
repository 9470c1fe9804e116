"""Concurrent clients against the embedded hub: no request sees another's headers, body or key.

The embedded runtime serves many requests at once (Lambda serves one per container), so these
tests are what stands between a threaded server and the request-isolation defect: a request that
read another's body acknowledged a webhook whose own message was never enqueued, and an API call
with a wrong key was answered with another caller's customer.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import sys
import threading
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.functional.conftest import API_KEY, RunningHub, start_hub
from tests.functional.test_ingest_edges import meta_request, twilio_request

pytestmark = pytest.mark.slow

CLIENTS = 16


class _Client(threading.local):
    """One keep-alive connection per client thread, as a provider's HTTP client would hold."""

    def connection(self, url: str) -> http.client.HTTPConnection:
        if getattr(self, "conn", None) is None:
            parts = urllib.parse.urlsplit(url)
            self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        return self.conn

    def request(self, url: str, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes]:
        for attempt in (1, 2):
            conn = self.connection(url)
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.HTTPException):
                # A kept-alive connection the server closed: reconnect once (never for a reset
                # during a fresh connection, which the test counts as a failure).
                conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


@pytest.fixture
def busy(tmp_path, receiver):
    # Threads switch far more often than the default 5 ms, so interleavings that are rare in
    # production (and were seen there) happen in every run of these tests.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    runtime = start_hub(tmp_path, receiver, workers=2).start()
    try:
        yield RunningHub(runtime, receiver, tmp_path / "data")
    finally:
        runtime.stop()
        sys.setswitchinterval(interval)


def _sms(index: int) -> tuple[str, bytes, dict]:
    return twilio_request({
        "MessageSid": f"SM{index:032x}", "AccountSid": "AC" + "0" * 32,
        "From": f"+1650555{index % 500:04d}", "To": "+15005550006", "Body": f"message {index}",
        "NumMedia": "0",
    })


def test_many_concurrent_distinct_webhooks_each_become_exactly_one_contact(busy):
    total = 1200
    client = _Client()

    def send(index: int) -> int:
        path, body, headers = _sms(index)
        status, _ = client.request(busy.url, "POST", path, body, headers)
        return status

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = Counter(pool.map(send, range(total)))

    assert statuses == {200: total}
    busy.wait_for(busy.settled, timeout=180, message="every accepted webhook processed and delivered")
    delivered = Counter(entry["data"]["contact"]["provider_message_id"] for entry in busy.outbox() if entry.get("type") == "contact.created")
    assert len(delivered) == total, f"{total - len(delivered)} acknowledged webhooks never became contacts"
    assert set(delivered.values()) == {1}
    assert busy.hub.counters.total("ContactsCreated", stage="process") == total


def test_concurrent_webhooks_of_different_providers_and_types_are_never_mixed_up(busy):
    """Form-encoded Twilio, JSON Meta and JSON web chat at once: each is judged on its own
    content type, signature and body (a mix-up answered 401 or 415 to valid webhooks)."""
    client = _Client()

    def send(index: int) -> int:
        kind = index % 3
        if kind == 0:
            path, body, headers = _sms(10_000 + index)
        elif kind == 1:
            payload = {"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550000000", "phone_number_id": "PNID"},
                "contacts": [{"profile": {"name": "Kim"}, "wa_id": f"1650777{index:04d}"}],
                "messages": [{"from": f"1650777{index:04d}", "id": f"wamid.{index:020d}", "timestamp": "1700000000",
                              "type": "text", "text": {"body": f"whatsapp {index}"}}],
            }}]}]}
            body, headers = meta_request(json.dumps(payload).encode())
            path = "/webhooks/meta"
        else:
            payload = {"site_id": "acme", "visitor_id": f"visitor-{index}", "message_id": f"chat-{index}",
                       "text": f"chat {index}"}
            path, body = "/webhooks/webchat", json.dumps(payload).encode()
            headers = {"Content-Type": "application/json"}
        status, _ = client.request(busy.url, "POST", path, body, headers)
        return status

    total = 600
    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = Counter(pool.map(send, range(total)))

    assert set(statuses) <= {200, 202}, statuses
    assert sum(statuses.values()) == total
    busy.wait_for(busy.settled, timeout=120, message="all processed")
    assert len({entry["data"]["contact"]["id"] for entry in busy.outbox() if entry.get("type") == "contact.created"}) == total


def test_concurrent_api_calls_with_mixed_keys_and_identifiers_never_cross(busy):
    for index, sender in enumerate(("+16505550101", "+16505550102")):
        path, body, headers = twilio_request({
            "MessageSid": f"SM{index + 1:032d}", "AccountSid": "AC" + "0" * 32, "From": sender,
            "To": "+15005550006", "Body": "hello", "NumMedia": "0",
        })
        assert busy.post(path, body, headers).status == 200
    busy.wait_for(busy.settled, timeout=20, message="both customers created")
    owners = {}
    for sender in ("+16505550101", "+16505550102"):
        found = busy.api("/v1/customers?identifier=" + urllib.parse.quote(f"phone:{sender}")).json()["data"]
        owners[sender] = found[0]["id"]
    assert len(set(owners.values())) == 2

    client = _Client()
    wrong = "wrong-" + hashlib.sha256(b"x").hexdigest()[:20]

    def ask(index: int) -> tuple[str, bool, int, str | None]:
        sender = ("+16505550101", "+16505550102")[index % 2]
        valid = index % 3 != 0
        status, body = client.request(
            busy.url, "GET", "/v1/customers?identifier=" + urllib.parse.quote(f"phone:{sender}"), None,
            {"Authorization": f"Bearer {API_KEY if valid else wrong}"},
        )
        data = json.loads(body)
        found = data["data"][0]["id"] if status == 200 and data.get("data") else None
        return sender, valid, status, found

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(ask, range(2400)))

    wrong_answers = [a for a in answers if (a[2] != 200 if a[1] else a[2] != 401)]
    crossed = [a for a in answers if a[2] == 200 and a[3] != owners[a[0]]]
    assert not wrong_answers, f"{len(wrong_answers)} answers had the wrong status, e.g. {wrong_answers[:3]}"
    assert not crossed, f"{len(crossed)} answers named another customer"


def test_64_concurrent_fresh_connections_are_all_served(busy):
    """A burst of new connections (no keep-alive) must not overflow the listen backlog."""
    barrier = threading.Barrier(64)

    def one(index: int) -> int:
        parts = urllib.parse.urlsplit(busy.url)
        barrier.wait()
        statuses = []
        for round_ in range(5):
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            try:
                conn.request("GET", "/health")
                statuses.append(conn.getresponse().status)
            finally:
                conn.close()
        return max(statuses)

    with ThreadPoolExecutor(64) as pool:
        statuses = Counter(pool.map(one, range(64)))
    assert statuses == {200: 64}
