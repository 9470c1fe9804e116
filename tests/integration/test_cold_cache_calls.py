"""AWS calls of a returning customer's message on a fresh worker (cold identifier cache), under
moto (PERFORMANCE.md A2, `bench aws_calls`).

A warm worker knows the customer's id from its identifier cache and reads the profile (GetItem).
A fresh one must first find which customer owns the sender's identifiers (BatchGetItem), and only
then can read that customer: two reads, the second keyed by the answer of the first. That is the
one call the cold path adds; this test pins every call so the budget cannot grow unnoticed.
"""

from __future__ import annotations

from collections import Counter

from chalicelib.bootstrap import Hub
from tests.integration.test_aws_pipeline import AwsCalls, aws, sqs_event, twilio_sms  # noqa: F401 - `aws` is a fixture


def test_a_returning_customer_on_a_fresh_worker_costs_one_identity_lookup_more_than_on_a_warm_one(aws):  # noqa: F811
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

    assert cold_result.customer_id == warm_result.customer_id
    assert warm == Counter({"PutItem": 1, "GetItem": 1, "SendMessageBatch": 1, "TransactWriteItems": 1})
    # The claim, who owns the sender's identifiers, the customer, the delivery job, the commit.
    assert cold == Counter({"PutItem": 1, "BatchGetItem": 1, "GetItem": 1, "SendMessageBatch": 1,
                            "TransactWriteItems": 1})
