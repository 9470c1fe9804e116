"""Fakes for unit tests: small, real implementations instead of mocks."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

from chalicelib.adapters.connectors.base import Connector, DeliveryResult
from chalicelib.adapters.queue.base import OutgoingMessage, Queue, ReceivedMessage
from chalicelib.domain.models import DeliveryJob


class MemoryQueue(Queue):
    """Keeps sent messages in a list; honours dedupe ids like SQS FIFO within its lifetime."""

    def __init__(self, name: str = "memory", *, fail_sends: int = 0, blobs=None) -> None:
        super().__init__(name, blobs=blobs)
        self.sent: list[OutgoingMessage] = []
        #: Every batch the port handed over, as it cut them (sizes, order).
        self.batches: list[list[OutgoingMessage]] = []
        self.deleted: list[str] = []
        self.delayed: dict[str, int] = {}
        self.fail_sends = fail_sends
        self._dedupe: set[str] = set()
        self._ids = itertools.count(1)

    def _send_batch(self, messages):
        if self.fail_sends:
            self.fail_sends -= 1
            raise ConnectionError("queue down")
        self.batches.append(list(messages))
        for message in messages:
            if message.dedupe_id and message.dedupe_id in self._dedupe:
                continue
            if message.dedupe_id:
                self._dedupe.add(message.dedupe_id)
            self.sent.append(message)

    def _receive(self, max_messages, wait_seconds):
        out = [
            ReceivedMessage(str(next(self._ids)), m.body, f"r-{i}", 1, m.group)
            for i, m in enumerate(self.sent[:max_messages])
        ]
        del self.sent[:max_messages]
        return out

    def _delete_batch(self, receipts):
        self.deleted.extend(receipts)

    def _change_visibility(self, receipt, seconds):
        self.delayed[receipt] = seconds


class ScriptedConnector(Connector):
    """Raises or returns the scripted outcomes in order; records every job it was given."""

    key = "scripted"
    docs_url = "https://example.com"
    Settings = None

    def __init__(self, *outcomes) -> None:
        self.name = "scripted"
        self.outcomes = list(outcomes)
        self.jobs: list[DeliveryJob] = []

    def deliver(self, job):
        self.jobs.append(job)
        outcome = self.outcomes.pop(0) if self.outcomes else DeliveryResult("ref-1")
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class CountingStore:
    """Wraps a store and counts calls per method, to assert the pipeline's call budget."""

    def __init__(self, store) -> None:
        self._store = store
        self.calls: list[str] = []

    def __getattr__(self, name):
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def counted(*args, **kwargs):
            self.calls.append(name)
            return attribute(*args, **kwargs)

        return counted


class Clock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(timezone.utc).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def sample_job(*, destination: str = "vendor", contact_id: str = "ct_01JD0000000000000000000001", case=None,
               text: str = "Mein Internet geht seit heute nicht, bitte dringend melden") -> DeliveryJob:
    """A realistic delivery job: a known customer (email, phone, name, tier) writing on WhatsApp,
    routed high to the technical queue, in a case of its own."""
    from chalicelib.domain.identifiers import Identifier
    from chalicelib.domain.ids import delivery_id
    from chalicelib.domain.models import (
        AttributeValue,
        Case,
        Channel,
        Contact,
        ContentType,
        Customer,
        Party,
        Priority,
        Resolution,
        RoutingDecision,
    )

    at = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
    identifiers = [Identifier.parse("email:jana.schmidt@example.com"), Identifier.parse("phone:+4915123456789")]
    customer = Customer(
        id="cus_01JD0000000000000000000001", identifiers=identifiers, created_at=at, updated_at=at,
        attributes={name: AttributeValue(value=value, source="crm", updated_at=at)
                    for name, value in (("name", "Jana Schmidt"), ("tier", "gold"), ("language", "de"))},
    )
    case = case or Case(id="case_01JD0000000000000000000001", customer_id=customer.id, opened_at=at,
                        last_activity_at=at, contact_count=1, channels=[Channel.WHATSAPP])
    contact = Contact(
        id=contact_id, provider="meta", channel=Channel.WHATSAPP, provider_message_id=f"wamid.{contact_id}",
        account="+4930123456", sender=Party(identifiers=identifiers[1:], display_name="Jana Schmidt"),
        received_at=at, content_type=ContentType.TEXT, text=text, customer_id=customer.id, case_id=case.id,
        resolution=Resolution(customer_id=customer.id, created_customer=False, rule="link_kinds: phone"),
        routing=RoutingDecision(priority=Priority.HIGH, queue="technical", tags=["outage"], skills={"german": 3},
                                destinations=[destination]),
        enrichment={"language": {"code": "de", "confidence": 0.97, "source": "fasttext"},
                    "intent": {"intents": ["outage"], "urgent": True, "terms": {}}},
    )
    return DeliveryJob(delivery_id=delivery_id(contact.id, destination), destination=destination, contact=contact,
                       customer=customer, case=case)
