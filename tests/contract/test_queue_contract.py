"""The queue contract: LocalQueue and SqsQueue (FIFO + DLQ under moto) behave the same."""

from __future__ import annotations

import json
import time

import pytest

from chalicelib.adapters.queue.base import MAX_INLINE_BYTES, OutgoingMessage
from chalicelib.errors import QueueBodyLostError, QueueUnavailableError


def drain(queue, *, attempts: int = 30) -> list:
    """Receive and delete until the queue answers empty; the bodies in the order received."""
    bodies = []
    for _ in range(attempts):
        received = queue.receive(max_messages=10)
        if not received:
            return bodies
        bodies.extend(m.body for m in received)
        queue.delete([m.receipt for m in received])
    raise AssertionError("queue did not drain")


def test_send_receive_delete(queue_factory):
    pair = queue_factory(visibility_timeout=30)
    pair.queue.send([OutgoingMessage(body='{"n": 1}', group="ada", dedupe_id="m1")])
    [message] = pair.queue.receive(max_messages=10)
    assert message.body == '{"n": 1}'
    assert message.group == "ada"
    assert message.receive_count == 1
    assert message.message_id and message.receipt
    assert pair.queue.receive(max_messages=10) == []  # in flight
    pair.queue.delete([message.receipt])
    assert pair.queue.receive(max_messages=10) == []
    assert pair.dead_letter.receive(max_messages=10) == []


def test_a_group_is_ordered_while_other_groups_proceed(queue_factory):
    pair = queue_factory(visibility_timeout=30)
    pair.queue.send([
        OutgoingMessage(body="a1", group="A", dedupe_id="a1"),
        OutgoingMessage(body="a2", group="A", dedupe_id="a2"),
        OutgoingMessage(body="b1", group="B", dedupe_id="b1"),
    ])
    [first] = pair.queue.receive(max_messages=1)
    assert first.body == "a1"
    # a1 is in flight: a2 must not be handed out, but group B is not held up.
    second = pair.queue.receive(max_messages=10)
    assert [m.body for m in second] == ["b1"]
    assert pair.queue.receive(max_messages=10) == []
    pair.queue.delete([first.receipt, second[0].receipt])
    [third] = pair.queue.receive(max_messages=10)
    assert third.body == "a2"


def test_many_messages_of_one_group_arrive_in_send_order(queue_factory):
    pair = queue_factory(visibility_timeout=30)
    bodies = [f"m{i:02d}" for i in range(23)]  # three send batches
    pair.queue.send([OutgoingMessage(body=b, group="ada", dedupe_id=b) for b in bodies])
    assert drain(pair.queue) == bodies


def test_an_undeleted_message_comes_back_after_the_visibility_timeout(queue_factory):
    pair = queue_factory(visibility_timeout=1)
    pair.queue.send([OutgoingMessage(body="x", group="g", dedupe_id="x")])
    [first] = pair.queue.receive()
    assert pair.queue.receive() == []
    time.sleep(1.2)
    [again] = pair.queue.receive()
    assert again.message_id == first.message_id
    assert again.body == "x"
    assert again.receive_count == 2


def test_after_max_receives_the_message_is_in_the_dead_letter_queue(queue_factory):
    pair = queue_factory(visibility_timeout=30, max_receives=2)
    pair.queue.send([OutgoingMessage(body="poison", group="g", dedupe_id="p")])
    for expected_count in (1, 2):
        [message] = pair.queue.receive()
        assert message.receive_count == expected_count
        pair.queue.retry_later(message.receipt, 0)  # fail it and make it visible at once
    assert pair.queue.receive() == []
    [dead] = pair.dead_letter.receive()
    assert dead.body == "poison"
    pair.dead_letter.delete([dead.receipt])
    assert pair.dead_letter.receive() == []


def test_retry_later_hides_the_message_for_the_delay(queue_factory):
    pair = queue_factory(visibility_timeout=30)
    pair.queue.send([OutgoingMessage(body="later", group="g", dedupe_id="l")])
    [message] = pair.queue.receive()
    pair.queue.retry_later(message.receipt, 1)
    assert pair.queue.receive() == []
    time.sleep(1.2)
    [again] = pair.queue.receive()
    assert again.body == "later"
    assert again.receive_count == 2


def test_the_same_dedupe_id_is_accepted_once(queue_factory):
    pair = queue_factory(visibility_timeout=30)
    pair.queue.send([OutgoingMessage(body="first", group="g", dedupe_id="msg:twilio:SM1")])
    pair.queue.send([
        OutgoingMessage(body="retry", group="g", dedupe_id="msg:twilio:SM1"),
        OutgoingMessage(body="other", group="g", dedupe_id="msg:twilio:SM2"),
    ])
    assert drain(pair.queue) == ["first", "other"]


def test_an_oversized_body_travels_through_the_blob_store_until_released(queue_factory):
    pair = queue_factory(visibility_timeout=30, with_blobs=True)
    body = json.dumps({"raw": "x" * (MAX_INLINE_BYTES + 10_000)})
    pair.queue.send([OutgoingMessage(body=body, group="g", dedupe_id="big")])
    [message] = pair.queue.receive()
    key = json.loads(message.body)["$blob"]
    assert key.startswith(f"queue/{pair.queue.name}/") and len(message.body) < 200
    assert pair.blobs.get(key) == body.encode()
    assert pair.queue.resolve_body(message.body) == body

    pair.queue.release(message.body)

    # The customer's data is gone; what is left says the message was handled.
    left = pair.blobs.get(key)
    assert len(left) < 200 and b"raw" not in left
    # A redelivery after its body was released: a message handled before.
    assert pair.queue.resolve_body(message.body) is None
    assert pair.queue.resolve_body("small body") == "small body"
    pair.queue.release("small body")  # nothing to release


def test_a_claim_checked_body_that_is_gone_is_lost_not_handled(queue_factory):
    """A copy that expired or was deleted before its message was handled is an error to report;
    taking it for a redelivery of a handled message would drop the message silently."""
    pair = queue_factory(visibility_timeout=30, with_blobs=True)
    body = json.dumps({"raw": "z" * (MAX_INLINE_BYTES + 1)})
    pair.queue.send([OutgoingMessage(body=body, group="g", dedupe_id="lost")])
    [message] = pair.queue.receive()
    key = json.loads(message.body)["$blob"]
    pair.blobs.delete(key)  # what the `queue/` lifecycle rule does to an old copy

    with pytest.raises(QueueBodyLostError) as lost:
        pair.queue.resolve_body(message.body)
    assert key in lost.value.message and lost.value.detail == {"queue": pair.queue.name, "key": key}


def test_each_oversized_send_has_its_own_blob_and_content_dedupe_still_holds(queue_factory):
    pair = queue_factory(visibility_timeout=30, with_blobs=True)
    body = json.dumps({"raw": "y" * (MAX_INLINE_BYTES + 1)})
    pair.queue.send([OutgoingMessage(body=body, group="g")])
    pair.queue.send([OutgoingMessage(body=body, group="g")])  # a resend: accepted once

    [message] = pair.queue.receive()
    assert pair.queue.receive() == []
    pair.queue.release(message.body)
    assert pair.queue.resolve_body(message.body) is None


def test_an_oversized_body_without_a_blob_store_is_refused(queue_factory):
    pair = queue_factory(visibility_timeout=30)
    with pytest.raises(QueueUnavailableError):
        pair.queue.send([OutgoingMessage(body="x" * (MAX_INLINE_BYTES + 1), group="g")])
    assert pair.queue.receive() == []


def test_a_broken_backend_raises_queue_unavailable(broken_queue):
    with pytest.raises(QueueUnavailableError):
        broken_queue.send([OutgoingMessage(body="x", group="g", dedupe_id="x")])
    with pytest.raises(QueueUnavailableError):
        broken_queue.receive()
