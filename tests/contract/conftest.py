"""Backends for the contract suites: every port implementation, behind one fixture each.

A contract test takes `store`, `queue_factory` or `blobs` and runs once per backend. The AWS
backends run under moto: one `mock_aws` per test module (PERFORMANCE T4), a fresh table, bucket or
pair of queues per test so tests stay independent and small (T3).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import boto3
import pytest

from tests.support.aws import AtomicRequests, create_table
from moto import mock_aws

from chalicelib.adapters.blobs.base import BlobStore
from chalicelib.adapters.queue.base import Queue

REGION = "us-east-1"


@pytest.fixture(scope="module")
def aws() -> Iterator[boto3.Session]:
    """One moto universe per test module, entered only when an AWS backend is requested."""
    with mock_aws():
        yield boto3.Session(region_name=REGION)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"



# --- store ---------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "dynamodb"])
def store_backend(request) -> str:
    return request.param


@pytest.fixture
def store(store_backend, request, tmp_path):
    if store_backend == "sqlite":
        from chalicelib.adapters.store.sqlite import SqliteStore

        sqlite_store = SqliteStore(str(tmp_path / "hub.db"))
        yield sqlite_store
        sqlite_store.close()
        return
    from chalicelib.adapters.store.dynamodb import DynamoDbStore

    client = request.getfixturevalue("aws").client("dynamodb")
    name = _unique("hub-test")
    create_table(client, name)
    # Contract tests race threads against the store (`remember`): moto needs the per-request lock.
    yield DynamoDbStore(name, AtomicRequests(client))
    client.delete_table(TableName=name)


@pytest.fixture
def broken_store(store_backend, request, tmp_path):
    """A store whose backend is gone: a missing table, a database whose tables were dropped."""
    if store_backend == "sqlite":
        from chalicelib.adapters.store.sqlite import SqliteStore

        path = tmp_path / "broken.db"
        broken = SqliteStore(str(path))
        _drop_tables(path)
        yield broken
        broken.close()
        return
    from chalicelib.adapters.store.dynamodb import DynamoDbStore

    yield DynamoDbStore("hub-test-missing", request.getfixturevalue("aws").client("dynamodb"))


def _drop_tables(path) -> None:
    import sqlite3

    with sqlite3.connect(path) as conn:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            if not table.startswith("sqlite_"):
                conn.execute(f"DROP TABLE {table}")


# --- blobs ---------------------------------------------------------------------------------------


def _s3_bucket(session: boto3.Session) -> tuple[object, str]:
    client = session.client("s3")
    bucket = _unique("hub-blobs")
    client.create_bucket(Bucket=bucket)
    return client, bucket


def _empty_bucket(client, bucket: str) -> None:
    for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)


@pytest.fixture(params=["local", "s3"])
def blob_backend(request) -> str:
    return request.param


@pytest.fixture
def blobs(blob_backend, request, tmp_path) -> Iterator[BlobStore]:
    if blob_backend == "local":
        from chalicelib.adapters.blobs.local import LocalBlobStore

        yield LocalBlobStore(str(tmp_path / "blobs"))
        return
    from chalicelib.adapters.blobs.s3 import S3BlobStore

    client, bucket = _s3_bucket(request.getfixturevalue("aws"))
    yield S3BlobStore(client, bucket, prefix="hub/")
    _empty_bucket(client, bucket)


@pytest.fixture
def broken_blobs(blob_backend, request, tmp_path) -> BlobStore:
    if blob_backend == "local":
        from chalicelib.adapters.blobs.local import LocalBlobStore

        # The root is a regular file: nothing can be created or read beneath it.
        root = tmp_path / "not-a-directory"
        root.write_text("")
        return LocalBlobStore(str(root))
    from chalicelib.adapters.blobs.s3 import S3BlobStore

    return S3BlobStore(request.getfixturevalue("aws").client("s3"), "hub-blobs-missing")


# --- queues --------------------------------------------------------------------------------------


@dataclass
class QueuePair:
    queue: Queue
    dead_letter: Queue
    blobs: BlobStore | None


QueueFactory = Callable[..., QueuePair]


@pytest.fixture(params=["local", "sqs"])
def queue_backend(request) -> str:
    return request.param


@pytest.fixture
def queue_factory(queue_backend, request, tmp_path) -> Iterator[QueueFactory]:
    """`queue_factory(visibility_timeout=1, max_receives=3, with_blobs=False)` → a fresh queue + DLQ.

    SQS: a FIFO queue with a FIFO dead-letter queue and a RedrivePolicy, as infra/ creates them.
    """
    cleanup: list[Callable[[], None]] = []

    def make(*, visibility_timeout: int = 1, max_receives: int = 3, with_blobs: bool = False) -> QueuePair:
        if queue_backend == "local":
            from chalicelib.adapters.blobs.local import LocalBlobStore
            from chalicelib.adapters.queue.local import LocalQueue

            db = str(tmp_path / "queue.db")
            name = _unique("q")
            local_blobs = LocalBlobStore(str(tmp_path / "blobs")) if with_blobs else None
            queue = LocalQueue(
                db, name, visibility_timeout=visibility_timeout, max_receives=max_receives,
                dead_letter=f"{name}-dlq", blobs=local_blobs,
            )
            return QueuePair(queue, LocalQueue(db, f"{name}-dlq"), local_blobs)

        from chalicelib.adapters.blobs.s3 import S3BlobStore
        from chalicelib.adapters.queue.sqs import SqsQueue

        session = request.getfixturevalue("aws")
        sqs = session.client("sqs")
        name = _unique("hub-test")
        dlq_url = sqs.create_queue(QueueName=f"{name}-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(
            QueueName=f"{name}.fifo",
            Attributes={
                "FifoQueue": "true",
                "VisibilityTimeout": str(visibility_timeout),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}),
            },
        )["QueueUrl"]
        cleanup.extend([lambda: sqs.delete_queue(QueueUrl=url), lambda: sqs.delete_queue(QueueUrl=dlq_url)])
        s3_blobs = None
        if with_blobs:
            s3, bucket = _s3_bucket(session)
            s3_blobs = S3BlobStore(s3, bucket)
            cleanup.append(lambda: _empty_bucket(s3, bucket))
        return QueuePair(SqsQueue(sqs, url, blobs=s3_blobs), SqsQueue(sqs, dlq_url), s3_blobs)

    yield make
    for step in cleanup:
        step()


@pytest.fixture
def broken_queue(queue_backend, request, tmp_path) -> Queue:
    """A queue whose backend is unusable: a nonexistent SQS queue, a local database without tables."""
    if queue_backend == "local":
        from chalicelib.adapters.queue.local import LocalQueue

        path = tmp_path / "broken-queue.db"
        queue = LocalQueue(str(path), "broken")
        _drop_tables(path)
        return queue
    from chalicelib.adapters.queue.sqs import SqsQueue

    client = request.getfixturevalue("aws").client("sqs")
    return SqsQueue(client, f"https://sqs.{REGION}.amazonaws.com/123456789012/hub-test-missing.fifo")


# --- Prism vendor mocks --------------------------------------------------------------------------
# `prism(name)` → a running PrismServer for tests/contract/specs/<name> (tests/support/prism.py). Each
# spec starts once per session; the specs named by `@pytest.mark.prism_specs(...)` on the selected
# tests boot in parallel at first use. A name with no spec file fails its test; without node or
# Prism the test skips locally and fails under CI=true (or HUB_REQUIRE_PRISM=1, which .ci/run sets).


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "prism_specs(*names): spec files (relative to tests/contract/specs/) a test mocks with Prism"
    )


@pytest.fixture(scope="session")
def prism(request):
    """The session's PrismRegistry: `prism("twilio/twilio_api_v2010.json").url`."""
    from tests.support.prism import PrismRegistry, declared_specs, unavailable_reason

    registry = PrismRegistry()
    try:
        # Boot the declared specs together; each `prism(name)` call then checks its own name (a
        # misspelt one fails only the tests that ask for it) and Prism's presence (skip or fail).
        if unavailable_reason() is None:
            registry.start(*(name for name in declared_specs(request.session.items) if registry.has_spec(name)))
        yield registry
    finally:
        registry.close()
