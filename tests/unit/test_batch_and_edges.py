"""Batch failure isolation, HTTP classification, webhook signing, outbox, redaction."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import time_machine
from standardwebhooks import Webhook

from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.adapters.connectors.http import HttpResponse, raise_for_status, retry_after_seconds
from chalicelib.adapters.connectors.outbox import OutboxConnector, OutboxSettings
from chalicelib.adapters.connectors.webhook import WebhookConnector, WebhookSettings, sign
from chalicelib.adapters.queue.base import ReceivedMessage
from chalicelib.errors import ConcurrentUpdateError, PermanentDeliveryError, RetryableDeliveryError, RetryLaterError
from chalicelib.observability import redact
from chalicelib.secrets import SecretResolver
from chalicelib.service.batch import BUSY_RETRY_SECONDS, run_batch, settle
from tests.support.fakes import MemoryQueue
from tests.unit.test_deliver import job


def received(message_id: str, group: str | None = None) -> ReceivedMessage:
    return ReceivedMessage(message_id, message_id, f"r{message_id}", 1, group)


def test_one_failure_never_makes_its_batch_mates_redo_their_work():
    def handle(message):
        if message.message_id == "2":
            raise RuntimeError("poison")
        if message.message_id == "4":
            raise RetryLaterError("later", delay_seconds=120)
        if message.message_id == "5":
            raise ConcurrentUpdateError("busy")
        return "ok"

    outcome = run_batch([received(str(i)) for i in range(1, 7)], handle)
    queue = MemoryQueue()
    settle(queue, outcome)

    assert outcome.finished == ["r1", "r3", "r6"]
    assert outcome.retry == {"r2": None, "r4": 120, "r5": BUSY_RETRY_SECONDS}
    assert queue.deleted == ["r1", "r3", "r6"]
    assert queue.delayed == {"r4": 120, "r5": BUSY_RETRY_SECONDS}


def test_later_messages_of_a_failed_group_wait_for_it():
    handled = []

    def handle(message):
        handled.append(message.message_id)
        if message.message_id == "a1":
            raise RuntimeError("fails")

    outcome = run_batch([received("a1", "A"), received("b1", "B"), received("a2", "A")], handle)

    assert handled == ["a1", "b1"]
    assert outcome.finished == ["rb1"]
    assert set(outcome.retry) == {"ra1", "ra2"}


def test_no_message_starts_when_the_invocation_could_time_out_during_it():
    clock = iter([60.0, 30.0, 9.0, 8.0])
    handled = []

    outcome = run_batch(
        [received(str(i)) for i in range(4)], lambda m: handled.append(m.message_id),
        seconds_left=lambda: next(clock), reserve_seconds=10,
    )

    assert handled == ["0", "1"]
    assert outcome.finished == ["r0", "r1"]
    # Never tried: visible again at once, not after the visibility timeout.
    assert outcome.retry == {"r2": 0, "r3": 0}
    assert outcome.unattempted == ["r2", "r3"]


def test_messages_left_untried_are_visible_again_at_once_while_a_failed_message_keeps_its_delay():
    """An untried message must not sit out the visibility timeout (360 s for deliveries) holding a
    receive it never used; a failed one keeps the queue's default or the delay it asked for. A
    later message of a failed group may be visible: SQS FIFO (and the local queue) hand out no
    message of a group while an earlier one is in flight, so it still waits for the failed one."""
    clock = iter([60.0, 5.0, 5.0])

    def handle(message):
        if message.message_id == "a1":
            raise RuntimeError("fails")

    messages = [received("a1", "A"), received("a2", "A"), received("b1", "B"), received("c1", "C")]
    outcome = run_batch(messages, handle, seconds_left=lambda: next(clock, 5.0), reserve_seconds=10)
    queue = MemoryQueue()
    settle(queue, outcome)

    assert outcome.retry == {"ra1": None, "ra2": 0, "rb1": 0, "rc1": 0}
    assert outcome.unattempted == ["ra2", "rb1", "rc1"]
    assert queue.delayed == {"ra2": 0, "rb1": 0, "rc1": 0}


@pytest.mark.parametrize(
    ("status", "headers", "error", "retry_after"),
    [
        (429, {"retry-after": "30"}, RetryableDeliveryError, 30.0),
        (503, {}, RetryableDeliveryError, None),
        (500, {"x-ratelimit-reset": "12"}, RetryableDeliveryError, 12.0),
        (400, {}, PermanentDeliveryError, None),
        (404, {}, PermanentDeliveryError, None),
        (301, {"location": "https://elsewhere"}, PermanentDeliveryError, None),
    ],
)
def test_vendor_answers_are_classified_by_retry_semantics(status, headers, error, retry_after):
    response = HttpResponse(status, headers, b'{"error":"vendor says no"}')

    with pytest.raises(error) as raised:
        raise_for_status(response, vendor="acme")

    assert getattr(raised.value, "retry_after", None) == retry_after
    if error is PermanentDeliveryError and status == 400:
        assert raised.value.message == 'acme answered 400: {"error":"vendor says no"}'


def test_retry_after_accepts_http_dates_and_epoch_resets():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()

    assert retry_after_seconds({"retry-after": "Thu, 01 Jan 2026 00:01:00 GMT"}, now=now) == 60.0
    assert retry_after_seconds({"x-ratelimit-reset": str(int(now) + 90)}, now=now) == 90.0
    assert retry_after_seconds({"retry-after": "soon"}, now=now) is None
    assert retry_after_seconds({}, now=now) is None


def test_signature_matches_the_standard_webhooks_known_answer():
    signature = sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                     b'{"test": 2432232314}')

    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


class RecordingHttp:
    def __init__(self, status=200):
        self.status = status
        self.calls = []

    def request(self, method, url, *, headers=None, body=None, timeout=None):
        self.calls.append((method, url, headers, body, timeout))
        return HttpResponse(self.status, {}, b"")

    def close(self):
        pass


def webhook_connector(http, secrets):
    settings = WebhookSettings(url="https://crm.example.com/hooks", secrets=secrets)
    return WebhookConnector("crm", settings, SecretResolver({}), ConnectorRuntime(data_dir="/nonexistent", http=http))


def test_webhook_deliveries_verify_with_the_reference_library_under_key_rotation():
    old, new = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    http = RecordingHttp()

    with time_machine.travel(1767225600, tick=False):
        webhook_connector(http, [old, new]).deliver(job())
        _, url, headers, body, timeout = http.calls[0]
        for secret in (old, new):
            payload = Webhook(secret).verify(body, headers)
            assert payload["type"] == "contact.created"

    assert (url, timeout) == ("https://crm.example.com/hooks", 15.0)
    assert headers["webhook-id"] == "dlv_1" and headers["webhook-timestamp"] == "1767225600"
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert "raw" not in json.loads(body)["data"]["contact"]


def test_webhook_410_disables_rather_than_retries():
    with pytest.raises(PermanentDeliveryError, match="410 Gone"):
        webhook_connector(RecordingHttp(410), ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]).deliver(job())


@pytest.mark.parametrize("url", ["http://crm.example.com/hooks", "ftp://x", "https:///nohost"])
def test_webhook_urls_must_be_https_except_loopback(url):
    with pytest.raises(ValueError):
        WebhookSettings(url=url, secrets=["whsec_AAAA"])
    assert WebhookSettings(url="http://127.0.0.1:9/hooks", secrets=["whsec_AAAA"])


def test_outbox_writes_each_delivery_once_even_across_restarts(tmp_path):
    def connector():
        return OutboxConnector("outbox", OutboxSettings(), SecretResolver({}), ConnectorRuntime(data_dir=str(tmp_path)))

    connector().deliver(job())
    connector().deliver(job())

    lines = (tmp_path / "outbox.jsonl").read_text().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["delivery_id"] == "dlv_1"


def test_redaction_masks_emails_and_phone_numbers_but_not_ids():
    text = "from +49 151 23456789 and jane.doe@example.com about ct_01J3ZK8Q9 at 2026-01-01"

    cleaned = redact(text)

    assert "23456789" not in cleaned and "jane.doe" not in cleaned
    assert "ct_01J3ZK8Q9" in cleaned


def test_the_process_worker_hands_the_lambdas_time_left_to_the_processor():
    """Built with fakes, without a hub: the worker is what the composition root wires."""
    from types import SimpleNamespace

    from chalicelib.api.workers import Workers
    from chalicelib.observability import Counters
    from chalicelib.service.process import ProcessResult

    given: list[float | None] = []

    class Processor:
        def process_body(self, body, *, receive_count=1, seconds_left=None):
            given.append(seconds_left() if seconds_left else None)
            return ProcessResult("duplicate")

    queue = MemoryQueue("inbound")
    workers = Workers(
        inbound_queue=lambda: queue, delivery_queue=lambda: MemoryQueue("delivery"), processor=Processor,
        deliverer=lambda: None, ingestion=lambda: None, pull_queue=lambda name: None, adapters=lambda key: None,
        pull_entries={}, counters=Counters(emit_emf=False), clock=lambda: None,
    )
    record = SimpleNamespace(body="{}", receipt_handle="r1",
                             to_dict=lambda: {"messageId": "m1", "attributes": {"ApproximateReceiveCount": "1"}})
    context = SimpleNamespace(get_remaining_time_in_millis=lambda: 21_500)
    workers.consume("inbound", _Event([record], context))

    assert given == [21.5]


class _Event(list):
    """Chalice's SQSEvent: iterable records, and the Lambda context."""

    def __init__(self, records, context) -> None:
        super().__init__(records)
        self.context = context
