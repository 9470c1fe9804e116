"""The deliver step: inline retries, Retry-After, queue redelivery schedule, dead letters."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.domain.models import (
    Case,
    Channel,
    Contact,
    ContentType,
    Customer,
    DeliveryJob,
    DeliveryStatus,
    Party,
    Resolution,
)
from chalicelib.adapters.connectors.base import DeliveryResult
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError, RetryLaterError
from chalicelib.hubconfig import DeliverySettings
from chalicelib.service.deliver import REDELIVERY_SCHEDULE, DeliverOutcome, Deliverer
from chalicelib.service.breaker import CircuitBreakers
from tests.support.fakes import Clock, MemoryQueue, ScriptedConnector

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def job(destination: str = "crm") -> DeliveryJob:
    contact = Contact(
        id="ct_1", provider="twilio", channel=Channel.SMS, provider_message_id="SM1", account="+1",
        sender=Party(), received_at=NOW, content_type=ContentType.TEXT, customer_id="cus_1", case_id="case_1",
        resolution=Resolution(customer_id="cus_1", created_customer=True, rule="new_customer"),
    )
    return DeliveryJob(
        delivery_id="dlv_1", destination=destination, contact=contact, customer=Customer(id="cus_1"),
        case=Case(id="case_1", customer_id="cus_1", opened_at=NOW, last_activity_at=NOW),
    )


@pytest.fixture
def world():
    store = SqliteStore(":memory:")
    dlq = MemoryQueue("dlq")
    sleeps: list[float] = []
    connectors: dict[str, ScriptedConnector] = {}
    deliverer = Deliverer(
        store=store, connector=connectors.get, dead_letters=dlq,
        settings=DeliverySettings(attempts_per_invocation=3, max_receives=4, max_inline_wait_seconds=5),
        clock=Clock(), sleep=sleeps.append,
        # The circuit breaker has tests of its own below; here it must not interfere.
        breakers=CircuitBreakers(failure_threshold=100),
    )
    return deliverer, store, dlq, sleeps, connectors


def test_success_is_recorded_with_the_vendor_reference(world):
    deliverer, store, _, sleeps, connectors = world
    connectors["crm"] = ScriptedConnector()

    assert deliverer.deliver(job(), receive_count=1) == DeliverOutcome.DELIVERED

    record = store.get_delivery("ct_1", "crm")
    assert (record.status, record.attempts, record.external_ref) == (DeliveryStatus.DELIVERED, 1, "ref-1")
    assert sleeps == []


def test_transient_failures_are_retried_inline_with_backoff_and_retry_after(world):
    deliverer, store, _, sleeps, connectors = world
    connectors["crm"] = ScriptedConnector(
        RetryableDeliveryError("503"), RetryableDeliveryError("429", retry_after=2.0)
    )

    assert deliverer.deliver(job(), receive_count=1) == DeliverOutcome.DELIVERED

    assert store.get_delivery("ct_1", "crm").attempts == 3
    assert 0 < sleeps[0] <= 0.25 and sleeps[1] == 2.0


def test_a_long_retry_after_goes_back_to_the_queue_instead_of_holding_the_worker(world):
    deliverer, store, _, sleeps, connectors = world
    connectors["crm"] = ScriptedConnector(RetryableDeliveryError("429", retry_after=600))

    with pytest.raises(RetryLaterError) as retry:
        deliverer.deliver(job(), receive_count=1)

    assert retry.value.delay_seconds == 600
    assert sleeps == []
    record = store.get_delivery("ct_1", "crm")
    assert (record.status, record.attempts, record.last_error) == (DeliveryStatus.RETRYING, 1, "429")


def test_queue_redelivery_follows_the_schedule_and_attempts_accumulate(world):
    deliverer, store, _, _, connectors = world
    connectors["crm"] = ScriptedConnector(*[RetryableDeliveryError("down")] * 6)

    delays = []
    for receive in (1, 2):
        with pytest.raises(RetryLaterError) as retry:
            deliverer.deliver(job(), receive_count=receive)
        delays.append(retry.value.delay_seconds)

    assert delays == list(REDELIVERY_SCHEDULE[:2])
    assert store.get_delivery("ct_1", "crm").attempts == 6


def test_receives_spent_behind_an_open_circuit_do_not_lengthen_the_next_wait(world):
    """Found by the 100,000-message soak: after a 10-minute outage, jobs whose receives had all
    been spent waiting behind the open circuit failed once more and were told to wait 2 hours."""
    deliverer, _, _, _, connectors = world
    connectors["crm"] = ScriptedConnector(*[RetryableDeliveryError("down")] * 3)

    with pytest.raises(RetryLaterError) as retry:
        deliverer.deliver(job(), receive_count=3)  # its first call of the vendor: receives 1-2 waited

    assert retry.value.delay_seconds == REDELIVERY_SCHEDULE[0]


def test_the_last_receive_dead_letters_with_the_reason(world):
    deliverer, store, dlq, _, connectors = world
    connectors["crm"] = ScriptedConnector(*[RetryableDeliveryError("vendor 503")] * 3)

    assert deliverer.deliver(job(), receive_count=4) == DeliverOutcome.DEAD

    record = store.get_delivery("ct_1", "crm")
    assert record.status == DeliveryStatus.DEAD
    assert record.last_error == "gave up after 3 attempts: vendor 503"
    assert [DeliveryJob.model_validate_json(m.body).delivery_id for m in dlq.sent] == ["dlv_1"]


def test_a_permanent_rejection_is_not_retried(world):
    deliverer, store, dlq, sleeps, connectors = world
    connectors["crm"] = ScriptedConnector(PermanentDeliveryError("crm answered 422: unknown field"))

    assert deliverer.deliver(job(), receive_count=1) == DeliverOutcome.DEAD

    record = store.get_delivery("ct_1", "crm")
    assert (record.attempts, record.last_error) == (1, "crm answered 422: unknown field")
    assert len(connectors["crm"].jobs) == 1 and sleeps == [] and len(dlq.sent) == 1


def test_an_already_delivered_job_is_not_sent_again(world):
    deliverer, _, _, _, connectors = world
    connectors["crm"] = ScriptedConnector()
    deliverer.deliver(job(), receive_count=1)

    assert deliverer.deliver(job(), receive_count=2) == DeliverOutcome.ALREADY_DELIVERED
    assert len(connectors["crm"].jobs) == 1


def test_an_unconfigured_destination_is_dead_lettered(world):
    deliverer, store, dlq, _, _ = world

    assert deliverer.deliver(job("removed"), receive_count=1) == DeliverOutcome.DEAD
    assert "not configured" in store.get_delivery("ct_1", "removed").last_error


class ThreadingConnector(ScriptedConnector):
    threads_cases = True


def test_threading_connectors_see_the_cases_ticket_and_record_the_one_they_open(world):
    deliverer, store, _, _, connectors = world
    connector = ThreadingConnector(DeliveryResult("comment-1", case_ref="ticket-7"), DeliveryResult("comment-2", case_ref="ticket-7"))
    connectors["crm"] = connector
    store.create_customer(Customer(id="cus_1"))
    store.update_customer(Customer(id="cus_1", version=1), cases=(job().case,))
    first, follow_up = job(), job().model_copy(update={"delivery_id": "dlv_2"})
    follow_up = follow_up.model_copy(update={"contact": follow_up.contact.model_copy(update={"id": "ct_2"})})

    deliverer.deliver(first, receive_count=1)
    deliverer.deliver(follow_up, receive_count=1)

    assert "crm" not in connector.jobs[0].case.external_refs
    assert connector.jobs[1].case.external_refs["crm"].ref == "ticket-7"
    assert store.get_case("case_1").external_refs["crm"].ref == "ticket-7"


def test_connectors_that_do_not_thread_never_touch_case_refs(world):
    deliverer, store, _, _, connectors = world
    connectors["crm"] = ScriptedConnector(DeliveryResult("x"))
    store.create_customer(Customer(id="cus_1"))
    store.update_customer(Customer(id="cus_1", version=1), cases=(job().case,))

    deliverer.deliver(job(), receive_count=1)

    assert store.get_case("case_1").external_refs == {}


def test_a_case_ref_of_a_connector_that_does_not_thread_is_kept_for_its_callbacks(world):
    """A task per contact (Twilio Flex, Amazon Connect): the case follows its latest task, and a
    callback naming the task finds the case through the link."""
    deliverer, store, _, _, connectors = world
    connectors["crm"] = ScriptedConnector(DeliveryResult("x", case_ref="WT0001"))
    store.create_customer(Customer(id="cus_1"))
    store.update_customer(Customer(id="cus_1", version=1), cases=(job().case,))

    deliverer.deliver(job(), receive_count=1)

    assert store.get_case("case_1").external_refs["crm"].ref == "WT0001"
    assert store.find_case_by_ref("crm", "WT0001") == "case_1"


def test_jobs_of_an_erased_customer_are_dropped_without_a_trace(world):
    from chalicelib.adapters.store.base import Erasure

    deliverer, store, dlq, _, connectors = world
    connectors["crm"] = ScriptedConnector()
    store.erase_customer(Erasure(customer_id="cus_1", identifier_keys=(), contact_ids=(), case_ids=(), thread_keys=(),
                                 dedupe_keys=(), merge_ids=(), erased_at=NOW, tombstone_expires_at=NOW))

    assert deliverer.deliver(job(), receive_count=1) == DeliverOutcome.ERASED
    assert connectors["crm"].jobs == []
    assert store.get_delivery("ct_1", "crm") is None
    assert dlq.sent == []


def test_a_dead_delivery_is_kept_as_a_dead_letter_with_its_job_and_reason(world):
    deliverer, store, dlq, _, connectors = world
    connectors["crm"] = ScriptedConnector(PermanentDeliveryError("crm answered 400: email is invalid"))
    dead = job()

    assert deliverer.deliver(dead, receive_count=1) == DeliverOutcome.DEAD

    letter = store.get_dead_letter("dlv_1")
    assert (letter.destination, letter.subject_id, letter.attempts) == ("crm", "ct_1", 1)
    assert letter.reason == "crm answered 400: email is invalid"
    assert DeliveryJob.model_validate_json(letter.job) == dead
    assert len(dlq.sent) == 1


def test_an_open_circuit_makes_jobs_wait_without_calling_the_vendor_or_spending_attempts(world):
    from chalicelib.service.breaker import CircuitBreakers

    deliverer, store, _, _, connectors = world
    deliverer.breakers = CircuitBreakers(failure_threshold=2, cooldown_seconds=60)
    connectors["crm"] = ScriptedConnector(*[RetryableDeliveryError("503")] * 6)
    with pytest.raises(RetryLaterError):
        deliverer.deliver(job(), receive_count=1)  # the 2nd failure opens the circuit: no 3rd try
    calls = len(connectors["crm"].jobs)

    with pytest.raises(RetryLaterError) as waiting:
        deliverer.deliver(job(), receive_count=2)

    assert 55 <= waiting.value.delay_seconds <= 60
    assert store.get_delivery("ct_1", "crm").attempts == 2, "no attempt spent while the circuit is open"
    assert calls == 2
    assert len(connectors["crm"].jobs) == calls, "the vendor was not called"


def test_a_job_that_used_every_receive_while_the_circuit_stayed_open_becomes_a_dead_letter(world):
    from chalicelib.service.breaker import CircuitBreakers

    deliverer, store, _, _, connectors = world
    deliverer.breakers = CircuitBreakers(failure_threshold=1, cooldown_seconds=600)
    deliverer.breakers.failed("crm")
    connectors["crm"] = ScriptedConnector()

    assert deliverer.deliver(job(), receive_count=4) == DeliverOutcome.DEAD

    assert "circuit open" in store.get_dead_letter("dlv_1").reason


def test_a_dead_letter_is_filed_under_its_customer_and_kept_for_the_retention_period(world):
    from datetime import timedelta

    from chalicelib.domain.models import CustomerEvent

    deliverer, store, _, _, connectors = world
    # The scripted connector refuses the contact, and takes no customer events (a permanent error).
    connectors["crm"] = ScriptedConnector(PermanentDeliveryError("crm answered 400"))
    event = CustomerEvent(event_id="evt_1", delivery_id="dlv_evt", destination="crm", event_type="customer.erased",
                          customer_id="cus_1", occurred_at=NOW)

    assert deliverer.deliver(job(), receive_count=1) == DeliverOutcome.DEAD
    assert deliverer.deliver(event, receive_count=1) == DeliverOutcome.DEAD

    letter = store.get_dead_letter("dlv_1")
    # The job holds the message text and the customer's address: erasure must find it by customer.
    assert letter.customer_id == "cus_1"
    assert letter.expires_at == letter.dead_at + timedelta(days=deliverer.settings.dead_letter_days)
    # A customer event carries ids only, and an erasure notice must outlive the erasure it announces.
    assert store.get_dead_letter("dlv_evt").customer_id is None
    assert [kept.id for kept in store.dead_letters_of("cus_1")] == ["dlv_1"]


def test_a_dead_letter_too_large_to_keep_is_recorded_on_the_delivery_instead_of_retried(world, tmp_path):
    from chalicelib.adapters.blobs.local import LocalBlobStore

    deliverer, store, _, _, connectors = world
    # The dead-letter queue claim-checks large bodies, as on AWS.
    deliverer.dead_letters = dlq = MemoryQueue("dlq", blobs=LocalBlobStore(str(tmp_path / "blobs")))
    connectors["crm"] = ScriptedConnector(PermanentDeliveryError("crm answered 400"))
    dead = job()
    dead.contact.text = "x" * (450 * 1024)

    assert deliverer.deliver(dead, receive_count=1) == DeliverOutcome.DEAD

    assert store.get_dead_letter("dlv_1") is None
    delivery = store.get_delivery("ct_1", "crm")
    assert delivery.status == DeliveryStatus.DEAD
    assert delivery.last_error.startswith("crm answered 400")
    assert "too large" in delivery.last_error and "dead-letter queue" in delivery.last_error
    assert len(dlq.sent) == 1, "the dead-letter queue still holds the job"
