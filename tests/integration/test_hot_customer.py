"""One very active customer on the AWS runtime under moto: a burst of signed webhooks from one
sender goes through the app's route into one SQS FIFO message group, then several worker
invocations take turns at what the queue holds (with crashed invocations whose whole batch comes
back). The single-key hot spots (the customer item, the open case, the activity counts) must lose
no update, and the contacts must keep the provider's order on the timeline and at the destination
(docs/scaling.md §2.3, §2.4).

The issue asks for 1,000 messages; moto's cost grows with what it holds (every TransactWriteItems
deep-copies the whole table once per item, every SQS call walks the queue), so the run time grows
with the square of the burst: 150 messages take 32 s, 200 take 41 s, 250 take 62 s, 1,000 more
than the suite's 300 s timeout (1,029 s when run alone; 2-core machine, load average 5-7). BURST
is therefore 200;
`HUB_HOT_BURST=1000 pytest --timeout=3000 tests/integration/test_hot_customer.py` runs the full
burst.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from chalicelib.domain.identifiers import Identifier
from tests.integration.test_aws_pipeline import aws, queue_depth, twilio_sms  # noqa: F401  (aws is a fixture)

#: The largest burst that keeps this test under a minute on moto (see the module docstring).
BURST = int(os.environ.get("HUB_HOT_BURST", "200"))
SENDER = "+14155550177"
#: Receives per process round: the event source mapping polls with several pollers at once. On a
#: FIFO queue only one of them gets the busy group's messages until that batch is deleted. (The
#: deliver worker polls once per round: its receives would only add to moto's time.)
POLLERS = 3
#: Every CRASH_EVERY-th process invocation dies before the event source mapping deletes its batch,
#: alternately after its whole batch and halfway through it (a timeout): the whole batch becomes
#: visible again and is received again (at-least-once delivery).
CRASH_EVERY = 4


def _records(messages: list[dict]) -> list[dict]:
    return [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
             "attributes": m["Attributes"], "eventSource": "aws:sqs", "messageAttributes": {}} for m in messages]


class Worker:
    """One queue's Lambda function behind its event source mapping, a round at a time."""

    def __init__(self, client, sqs, url: str, function: str, calls, *, batch_size: int, pollers: int = 1,
                 crash_every: int | None = None) -> None:
        self.client, self.sqs, self.url, self.function, self.calls = client, sqs, url, function, calls
        self.batch_size, self.pollers = batch_size, pollers
        self.crash_every = crash_every
        self.invocations = self.crashes = 0
        self.made: Counter = Counter()

    def round(self) -> bool:
        """`pollers` receives, then their batches invoked last-received first; False when nothing came."""
        batches = []
        for _ in range(self.pollers):
            answer = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=self.batch_size,
                                              AttributeNames=["All"])
            if answer.get("Messages"):
                batches.append(_records(answer["Messages"]))
        for records in reversed(batches):
            self.invocations += 1
            crash = bool(self.crash_every) and self.invocations % self.crash_every == 0
            # Halfway through a batch (every other crash), the rest of it was never handled.
            handled = records[: max(1, len(records) // 2)] if crash and self.crashes % 2 else records
            self.calls.take()
            self.client.lambda_.invoke(self.function, {"Records": handled})
            self.made += self.calls.take()
            for record in records:
                if crash:
                    self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=record["receiptHandle"],
                                                       VisibilityTimeout=0)
                else:
                    self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=record["receiptHandle"])
            self.crashes += crash
        return bool(batches)


@pytest.mark.slow
def test_a_burst_from_one_customer_is_processed_in_order_with_no_lost_update(aws):  # noqa: F811
    client, hub, sqs, urls, receiver, calls = aws
    texts = [f"burst message {n:04d}" for n in range(BURST)]
    for n, text in enumerate(texts):
        body, headers = twilio_sms(f"SM{n:032x}", sender=SENDER, text=text)
        assert client.http.post("/webhooks/twilio", headers=headers, body=body).status_code == 200
    assert queue_depth(sqs, urls["inbound"]) == BURST

    # The batch sizes of app.py's event sources.
    process = Worker(client, sqs, urls["inbound"], "process_inbound", calls, batch_size=10, pollers=POLLERS,
                     crash_every=CRASH_EVERY)
    deliver = Worker(client, sqs, urls["delivery"], "deliver", calls, batch_size=1)
    while process.round() | deliver.round():  # both run every round: deliveries overlap processing
        pass
    assert queue_depth(sqs, urls["inbound"]) == queue_depth(sqs, urls["delivery"]) == 0
    assert process.crashes >= 2 and process.invocations > BURST // 10, \
        "batches were redone, whole and in part (a burst below ~80 has too few invocations for both)"

    contacts = list(_timeline(hub))
    assert len(contacts) == BURST, "every accepted webhook is exactly one contact"
    assert [c.text for c in sorted(contacts, key=lambda c: c.id)] == texts, "the timeline keeps the provider's order"
    [customer_id] = {c.customer_id for c in contacts}
    [case_id] = {c.case_id for c in contacts}

    customer = hub.store.get_customer(customer_id)
    case = hub.store.get_case(case_id)
    assert case.contact_count == BURST, "no update of the hot case item may be lost"
    assert customer.open_case.contact_count == BURST
    assert sum(n for day in customer.activity.daily.values() for n in day.values()) == BURST, \
        "the customer's activity counts every contact once"

    # A redone message costs its claim only: one commit and one delivery job per contact (the
    # first contact's commit is preceded by the new customer's creation).
    assert process.made["TransactWriteItems"] == BURST + 1
    assert process.made["SendMessageBatch"] == BURST

    delivered = [json.loads(r.body)["data"]["contact"] for r in receiver.requests]
    assert Counter(d["id"] for d in delivered) == Counter({c.id: 1 for c in contacts}), "every contact delivered once"
    assert [d["text"] for d in delivered] == texts, "the destination receives them in the provider's order"
    assert queue_depth(sqs, urls["inbound-dlq"]) == queue_depth(sqs, urls["delivery-dlq"]) == 0


def _timeline(hub):
    cursor = None
    while True:
        page = hub.store.list_contacts(_only_customer(hub), limit=100, cursor=cursor)
        yield from page.items
        if page.cursor is None:
            return
        cursor = page.cursor


def _only_customer(hub) -> str:
    return hub.store.find_customer_ids([Identifier.parse(f"phone:{SENDER}")])[f"phone:{SENDER}"]
