"""A record the store refuses for good (over the item size limit) in the pipeline: it is told
apart from a transient failure, leaves nothing half-written, and is not retried as if the store
were merely busy (the queue's receive limit then moves the message to its dead-letter queue)."""

from __future__ import annotations

import logging

from chalicelib.adapters.blobs.local import LocalBlobStore
from chalicelib.adapters.queue.base import ReceivedMessage
from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.identity_rules import IdentityRules
from chalicelib.errors import ItemTooLargeError, TransientError
from chalicelib.service.batch import run_batch
from chalicelib.service.identity import IdentifierCache
from chalicelib.service.process import Processor
from tests.support.fakes import Clock, MemoryQueue
from tests.unit.test_process import CONFIG, message


def test_a_contact_too_large_to_store_fails_for_good_and_leaves_nothing_behind(tmp_path, caplog):
    store = SqliteStore(str(tmp_path / "hub.db"))
    blobs = LocalBlobStore(str(tmp_path / "blobs"))
    processor = Processor(
        store=store, delivery_queue=MemoryQueue(blobs=blobs), config=CONFIG, cache=IdentifierCache(),
        default_region=lambda provider, account: "DE", clock=Clock(), blobs=blobs, rules=IdentityRules(CONFIG.identity),
    )
    long_mail = message("SM-long")
    long_mail.text = "x" * (450 * 1024)

    def handle(received: ReceivedMessage):
        return processor.process(long_mail)

    with caplog.at_level(logging.WARNING):
        outcome = run_batch([ReceivedMessage("m1", "body", "r1", 1, "group")], handle)

    # Back to the queue on its own schedule (not the short "busy" delay), until the queue's
    # receive limit hands it to the dead-letter queue; the log names the permanent error.
    assert outcome.retry == {"r1": None}
    assert "item_too_large" in caplog.text
    # Nothing was committed: the message is not done, and a retry starts clean.
    assert store.begin(long_mail.dedupe_key, now=Clock()()).done is False
    [customer_id] = store.find_customer_ids([Identifier.parse("phone:+4915123456789")]).values()
    assert store.list_contacts(customer_id, limit=5).items == []


def test_the_permanent_error_is_not_a_transient_one():
    assert not issubclass(ItemTooLargeError, TransientError)
    assert ItemTooLargeError("x").http_status == 413 and ItemTooLargeError.code == "item_too_large"
