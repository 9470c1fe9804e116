"""AWS calls of a returning customer's message on a fresh worker (cold identifier cache), on a warm
one, and of a duplicate, under moto (PERFORMANCE.md A2 and A3, `bench aws_calls`).

A warm worker knows the customer's id from its identifier cache and reads the profile together
with the message's done marker (one BatchGetItem). A fresh one must first find which customer owns
the sender's identifiers, reading the done marker in that same BatchGetItem, and only then can read
that customer (GetItem): two reads, the second keyed by the answer of the first. That is the one
call the cold path adds. A duplicate stops at the first read. No call takes a lease: the commit's
done marker is conditional instead. This test pins every call so the budget cannot grow unnoticed.
"""

from __future__ import annotations

from collections import Counter

from chalicelib.bootstrap import Hub
from chalicelib.service.process import Outcome
from tests.integration.test_aws_pipeline import AwsCalls, aws, sqs_event, twilio_sms  # noqa: F401 - `aws` is a fixture


def test_a_returning_customer_costs_four_calls_on_a_fresh_worker_three_on_a_warm_one_and_a_duplicate_one(aws):  # noqa: F811
    client, hub, sqs, urls, _, _ = aws
    for sid in ("SM" + "1" * 32, "SM" + "2" * 32, "SM" + "3" * 32):
        body, headers = twilio_sms(sid)
        assert client.http.post("/webhooks/twilio", headers=headers, body=body).status_code == 200
    first, second, third = sqs_event(sqs, urls["inbound"], 3)["Records"]
    hub.processor.process_body(first["body"])  # the customer now exists

    # A fresh worker on the same clients; the fixture's hub stays in charge afterwards.
    fresh = Hub(hub.settings, aws_client=hub._aws_client_factory)
    calls = AwsCalls({hub._aws_client_factory(name) for name in ("dynamodb", "sqs", "s3")})
    cold_result = fresh.processor.process_body(second["body"])
    cold = calls.take()
    warm_result = fresh.processor.process_body(third["body"])
    warm = calls.take()
    duplicate_result = fresh.processor.process_body(third["body"])
    duplicate = calls.take()
    cold_duplicate_result = Hub(hub.settings, aws_client=hub._aws_client_factory).processor.process_body(second["body"])
    cold_duplicate = calls.take()

    assert cold_result.customer_id == warm_result.customer_id
    # The owners of the sender's identifiers with the done marker, the customer, the delivery job,
    # the commit (with the conditional done marker).
    assert cold == Counter({"BatchGetItem": 1, "GetItem": 1, "SendMessageBatch": 1, "TransactWriteItems": 1})
    # The customer with the done marker, the delivery job, the commit.
    assert warm == Counter({"BatchGetItem": 1, "SendMessageBatch": 1, "TransactWriteItems": 1})
    assert duplicate_result.outcome == cold_duplicate_result.outcome == Outcome.DUPLICATE
    assert duplicate == cold_duplicate == Counter({"BatchGetItem": 1})
