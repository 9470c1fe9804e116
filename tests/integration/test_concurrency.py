"""Real concurrency against both stores: racing workers must end with one customer, one case and
every contact counted (SQLite on disk with threads; DynamoDB under moto with threads)."""

from __future__ import annotations

import threading
import traceback
from collections import Counter
from datetime import datetime, timezone

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.blobs.local import LocalBlobStore
from chalicelib.adapters.store.dynamodb import DynamoDbStore
from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.identity_rules import IdentityRules
from chalicelib.domain.models import Channel, DeliveryJob, Handle, InboundMessage, Sender
from chalicelib.errors import ConcurrentUpdateError
from chalicelib.hubconfig import parse_config
from chalicelib.service.identity import IdentifierCache
from chalicelib.service.process import Outcome, Processor
from tests.support.aws import AtomicRequests, create_table
from tests.support.fakes import MemoryQueue

WORKERS = 8
CONFIG = parse_config("destinations: [{name: outbox, type: outbox}]")


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield SqliteStore(str(tmp_path / "hub.db"))
        return
    with mock_aws():
        client = boto3.Session(region_name="eu-central-1").client("dynamodb")
        create_table(client, "hub-race")
        yield DynamoDbStore("hub-race", AtomicRequests(client))


def processor(store, tmp_path) -> Processor:
    """One worker: its own identifier cache, like a separate Lambda container."""
    return Processor(
        store=store, delivery_queue=MemoryQueue(), config=CONFIG, cache=IdentifierCache(),
        default_region=lambda provider, account: None, clock=lambda: datetime.now(timezone.utc),
        blobs=LocalBlobStore(str(tmp_path / "blobs")), rules=IdentityRules(CONFIG.identity),
    )


def message(index: int, handles: list[Handle]) -> InboundMessage:
    return InboundMessage(
        provider="twilio", channel=Channel.SMS, provider_message_id=f"SM-race-{index}", account="+14155550100",
        sender=Sender(handles=handles), text=f"message {index}",
    )


def race(store, tmp_path, messages: list[InboundMessage]) -> list:
    """Process every message at once, one thread each; a lost commit is redelivered, as the queue
    would, until it lands."""
    barrier = threading.Barrier(len(messages))
    results, errors = [None] * len(messages), []

    def work(index: int) -> None:
        worker = processor(store, tmp_path)
        barrier.wait()
        try:
            for _ in range(20):
                try:
                    results[index] = worker.process(messages[index])
                    return
                except ConcurrentUpdateError:
                    continue
        except Exception as exc:  # surfaced below with the thread's index
            errors.append((index, "".join(traceback.format_exception(exc))))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(messages))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert all(r is not None for r in results), "every message must land"
    return results


def test_racing_first_contacts_of_one_new_person_make_one_customer_and_one_case(store, tmp_path):
    phone = [Handle(kind="phone", value="+4915123456789")]

    results = race(store, tmp_path, [message(i, phone) for i in range(WORKERS)])

    assert {r.outcome for r in results} == {Outcome.CONTACT_CREATED}
    customers = {r.customer_id for r in results}
    assert len(customers) == 1
    [customer_id] = customers
    assert store.find_customer_ids([Identifier.parse("phone:+4915123456789")]) == {"phone:+4915123456789": customer_id}
    assert len({r.case_id for r in results}) == 1
    case = store.get_case(results[0].case_id)
    assert case.contact_count == WORKERS, "no concurrent update may be lost"
    customer = store.get_customer(customer_id)
    assert customer.open_case.contact_count == WORKERS
    assert customer.version == WORKERS
    assert len(store.list_contacts(customer_id, limit=100).items) == WORKERS


def test_racing_contacts_through_different_identifiers_of_one_customer_lose_no_update(store, tmp_path):
    both = [Handle(kind="whatsapp_user", value="US.1234"), Handle(kind="whatsapp", value="16505551234")]
    [first] = race(store, tmp_path, [message(100, both)])
    handles = [[Handle(kind="whatsapp_user", value="US.1234")], [Handle(kind="phone", value="+16505551234")]]

    results = race(store, tmp_path, [message(200 + i, handles[i % 2]) for i in range(WORKERS)])

    assert {r.customer_id for r in results} == {first.customer_id}
    assert Counter(r.case_id for r in results) == Counter({first.case_id: WORKERS})
    assert store.get_case(first.case_id).contact_count == WORKERS + 1


def test_racing_contacts_that_tie_the_same_two_customers_merge_them_once(store, tmp_path):
    phone = [Handle(kind="phone", value="+16505550100")]
    email = [Handle(kind="email", value="ada@example.com")]
    [older] = race(store, tmp_path, [message(300, phone)])
    [younger] = race(store, tmp_path, [message(301, email)])

    results = race(store, tmp_path, [message(400 + i, phone + email) for i in range(WORKERS)])

    assert {r.customer_id for r in results} == {older.customer_id}
    survivor = store.get_customer(older.customer_id)
    assert [m.other_customer_id for m in survivor.merges] == [younger.customer_id], "exactly one merge"
    assert store.get_customer(younger.customer_id).merged_into == older.customer_id
    assert store.find_customer_ids([Identifier.parse("email:ada@example.com")]) == {
        "email:ada@example.com": older.customer_id
    }
    # Every contact is counted once in the case that continued.
    # (the younger customer's case was active last, so it continued: its first contact plus the race)
    assert store.get_case(results[0].case_id).contact_count == WORKERS + 1
    assert results[0].case_id == younger.case_id
    assert len({r.case_id for r in results}) == 1


def test_one_message_handed_to_two_workers_at_once_makes_one_contact_and_the_other_a_duplicate(store, tmp_path):
    """No lease keeps a second worker from a message: should the queue ever hand it out twice at
    once, both attempts decide from the same reads and queue the same delivery ids, the
    conditional done marker lets one commit, and the other decides again and finds it done."""
    phone = [Handle(kind="phone", value="+4915122223333")]
    [first] = race(store, tmp_path, [message(500, phone)])
    queued = message(501, phone)
    workers = [processor(store, tmp_path) for _ in range(2)]
    both_decided = threading.Barrier(2)
    commit_contact = store.commit_contact

    def commit_once_both_decided(commit):
        both_decided.wait(timeout=30)
        commit_contact(commit)

    store.commit_contact = commit_once_both_decided
    results, errors = [None, None], []

    def work(index: int) -> None:
        try:
            results[index] = workers[index].process(queued)
        except Exception as exc:  # surfaced below with the thread's index
            errors.append((index, "".join(traceback.format_exception(exc))))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        store.commit_contact = commit_contact

    assert not errors, errors
    assert sorted(r.outcome for r in results) == sorted([Outcome.CONTACT_CREATED, Outcome.DUPLICATE])
    [created] = [r for r in results if r.outcome == Outcome.CONTACT_CREATED]
    contacts = store.list_contacts(first.customer_id, limit=10).items
    assert [c.id for c in contacts] == [created.contact_id, first.contact_id]
    assert store.get_case(first.case_id).contact_count == 2, "the loser's update never landed"
    jobs = [m.body for worker in workers for m in worker.delivery_queue.sent]
    assert {DeliveryJob.model_validate_json(body).delivery_id for body in jobs} == {
        DeliveryJob.model_validate_json(jobs[0]).delivery_id}, "both attempts queued the same delivery id"
