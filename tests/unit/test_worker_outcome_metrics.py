"""The deliver and send workers count each message's outcome once, per destination and per channel
provider (the dashboard's "deliveries per destination" and "sends per provider"), with the
destination and provider the services read from the message: no second parse in the worker."""

from __future__ import annotations

import pytest

from chalicelib.adapters.queue.base import ReceivedMessage
from chalicelib.api.workers import Workers
from chalicelib.observability import Counters
from tests.support.fakes import MemoryQueue


class _Service:
    """Answers each body's outcome and target as `deliver_body` / `send_body` do."""

    def __init__(self, answers: dict[str, tuple[str, str]]) -> None:
        self.answers = answers

    def deliver_body(self, body: str, *, receive_count: int) -> tuple[str, str]:
        return self.answers[body]

    send_body = deliver_body


def _workers(service: _Service, counters: Counters) -> Workers:
    return Workers(
        inbound_queue=lambda: MemoryQueue("inbound"), delivery_queue=lambda: MemoryQueue("delivery"),
        outbound_queue=lambda: MemoryQueue("outbound"), processor=lambda: None, deliverer=lambda: service,
        send_worker=lambda: service, ingestion=lambda: None, pull_queue=lambda name: None,
        adapters=lambda key: None, pull_entries={}, counters=counters, clock=lambda: None,
    )


def _message(body: str) -> ReceivedMessage:
    return ReceivedMessage(message_id=f"m-{body}", body=body, receipt="r", receive_count=1)


def test_deliveries_are_counted_once_per_message_by_outcome_and_destination():
    counters = Counters(emit_emf=False)
    workers = _workers(_Service({
        "a": ("delivered", "crm"), "b": ("delivered", "crm"), "c": ("dead", "helpdesk"),
        "d": ("not_applicable", "helpdesk"), "e": ("erased", "crm"), "f": ("already_delivered", "crm"),
    }), counters)

    assert [workers.deliver(_message(body)) for body in "abcdef"] == [
        "delivered", "delivered", "dead", "not_applicable", "erased", "already_delivered"]
    assert counters.snapshot() == {
        "Delivered[destination=crm]": 2.0,
        "DeliveriesDead[destination=helpdesk]": 1.0,
        "DeliveriesNotApplicable[destination=helpdesk]": 1.0,
        "DeliveriesDroppedForErasure[destination=crm]": 1.0,
        "DuplicatesDropped[stage=deliver]": 1.0,
    }


def test_sends_are_counted_once_per_message_by_outcome_and_provider():
    counters = Counters(emit_emf=False)
    workers = _workers(_Service({
        "a": ("sent", "twilio"), "b": ("sent", "meta"), "c": ("failed", "meta"), "d": ("dead", "twilio"),
        "e": ("erased", "ses"), "f": ("already_sent", "twilio"),
    }), counters)

    assert [workers.send(_message(body)) for body in "abcdef"] == [
        "sent", "sent", "failed", "dead", "erased", "already_sent"]
    assert counters.snapshot() == {
        "MessagesSent[provider=twilio]": 1.0, "MessagesSent[provider=meta]": 1.0,
        "MessagesFailed[provider=meta]": 1.0, "MessagesDead[provider=twilio]": 1.0,
        "MessagesDroppedForErasure[provider=ses]": 1.0, "DuplicatesDropped[stage=send]": 1.0,
    }


@pytest.mark.parametrize(("method", "outcome"), [("deliver", "already_delivered"), ("send", "already_sent")])
def test_a_message_handled_before_counts_as_a_duplicate_of_its_step(method, outcome):
    """A released claim-checked body (the acknowledgement was lost) is a duplicate without a
    body to read a destination or provider from: counted by step like every step's duplicates."""

    class Released(MemoryQueue):
        def resolve_body(self, body: str) -> str | None:
            return None

    counters = Counters(emit_emf=False)
    service = _Service({})
    workers = Workers(
        inbound_queue=lambda: MemoryQueue("inbound"), delivery_queue=lambda: Released("delivery"),
        outbound_queue=lambda: Released("outbound"), processor=lambda: None, deliverer=lambda: service,
        send_worker=lambda: service, ingestion=lambda: None, pull_queue=lambda name: None,
        adapters=lambda key: None, pull_entries={}, counters=counters, clock=lambda: None,
    )

    assert getattr(workers, method)(_message("gone")) == outcome
    assert counters.snapshot() == {f"DuplicatesDropped[stage={method}]": 1.0}
