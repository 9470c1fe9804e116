"""Sender tests: provider answers stored as exact bytes (`tests/fixtures/<provider>/send/`), a
scripted HTTP client, outbound messages, and contacts built from the stored inbound fixtures by
the provider's own adapter (so `reply_target` reads what the parser really keeps)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from chalicelib.adapters.channels.base import ChannelAdapter, WebhookRequest
from chalicelib.adapters.channels.sending import SenderRuntime
from chalicelib.adapters.connectors.http import HttpClient, HttpResponse
from chalicelib.domain.models import Contact, InboundMessage, Party, Resolution
from chalicelib.domain.outbound import OutboundMessage
from chalicelib.secrets import SecretResolver
from tests.support.fixtures import FIXTURES
from tests.support.fixtures import load as load_request

#: When the inbound fixtures were signed (their replay windows accept this arrival time).
RECEIVED_AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
#: The hub's clock while sending.
NOW = datetime(2026, 1, 1, 0, 10, 0, tzinfo=timezone.utc)


def answer(provider: str, name: str) -> HttpResponse:
    """A stored provider answer: status, headers and the exact body bytes."""
    meta = json.loads((FIXTURES / provider / "send" / f"{name}.json").read_text())
    body = (FIXTURES / provider / "send" / f"{name}.body").read_bytes()
    return HttpResponse(status=meta["status"], headers={k.lower(): v for k, v in meta["headers"].items()}, body=body)


@dataclass
class Sent:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ScriptedHttp(HttpClient):
    """Answers each request with the next scripted response (or raises it) and records it."""

    def __init__(self, *answers: HttpResponse | Exception) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[Sent] = []

    def request(self, method, url, *, headers=None, body=None, timeout=None) -> HttpResponse:
        self.sent.append(Sent(method, url, dict(headers or {}), body or b""))
        reply = self.answers.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def runtime(http: HttpClient, now: datetime = NOW) -> SenderRuntime:
    def no_aws(service: str):
        raise AssertionError(f"a chat sender asked for the AWS client {service}")

    return SenderRuntime(http=http, aws_client=no_aws, clock=lambda: now)


def sender(cls, model, settings: dict, http: HttpClient, environ: dict[str, str] | None = None):
    """A sender built as the hub builds it: from the provider's configuration section (`model`,
    the Settings its adapter reads)."""
    return cls(model.model_validate(settings), SecretResolver(environ or {}), runtime(http))


def outbound(**fields: Any) -> OutboundMessage:
    base: dict[str, Any] = {
        "id": "ct_01JOUTBOUND00000000000001", "customer_id": "cus_01", "case_id": "case_01", "origin": "api:test",
        "queued_at": NOW,
    }  # fmt: skip
    return OutboundMessage.model_validate({**base, **fields})


def contact_from(adapter: ChannelAdapter, provider: str, fixture: str, *, index: int = 0) -> Contact:
    """The contact the hub stores for a stored inbound fixture: verified and parsed by `adapter`."""
    stored = load_request(provider, fixture)
    request = WebhookRequest(method="POST", hook=stored.hook, headers=dict(stored.headers), query={},
                             body=stored.body, received_at=RECEIVED_AT)  # fmt: skip
    adapter.verify(request)
    message = adapter.parse(request).events[index]
    assert isinstance(message, InboundMessage), f"{provider}/{fixture} carries no message"
    return Contact(
        id="ct_01JINBOUND000000000000001",
        provider=message.provider,
        channel=message.channel,
        provider_message_id=message.provider_message_id,
        account=message.account,
        sender=Party(display_name=message.sender.display_name),
        sent_at=message.sent_at,
        received_at=message.received_at,
        content_type=message.content_type,
        text=message.text,
        attachments=message.attachments,
        metadata=message.metadata,
        conversation_key=message.conversation_key,
        thread_keys=message.thread_keys,
        customer_id="cus_01",
        case_id="case_01",
        resolution=Resolution(customer_id="cus_01", created_customer=True, rule="test"),
        raw=message.raw,
    )


class RecordingHttp(HttpClient):
    """The real client against a Prism mock, keeping each exchange's Prism violations; `extra`
    headers go on every request (`Prefer: code=429` asks Prism for the spec's error answer)."""

    def __init__(self, **extra: str) -> None:
        super().__init__()
        self.extra = extra
        self.exchanges: list[tuple[str, str, int, list]] = []

    def request(self, method, url, *, headers=None, body=None, timeout=None) -> HttpResponse:
        from urllib.parse import urlsplit

        from tests.support.prism import violations

        response = super().request(method, url, headers={**(headers or {}), **self.extra}, body=body, timeout=timeout)
        self.exchanges.append((method, urlsplit(url).path, response.status, violations(response.headers)))
        return response

    @property
    def calls(self) -> list[tuple[str, str, int]]:
        return [(m, p, s) for m, p, s, _ in self.exchanges]

    @property
    def violations(self) -> list:
        return [v for *_, found in self.exchanges for v in found]
