"""AWS resources for tests under moto, shaped as infra/stateful.yaml creates them."""

from __future__ import annotations


def create_table(client, name: str, *, segment_indexes: int = 2) -> None:
    """The hub's single table: string `pk`/`sk`, on demand, TTL on `expires_at`, and the sparse
    KEYS_ONLY segment indexes `segment1`/`segment2` (HASH `segN`, RANGE `pk`), the first
    `segment_indexes` of them as `SegmentIndexes` deploys them."""
    indexes = [
        {"IndexName": f"segment{slot}",
         "KeySchema": [{"AttributeName": f"seg{slot}", "KeyType": "HASH"}, {"AttributeName": "pk", "KeyType": "RANGE"}],
         "Projection": {"ProjectionType": "KEYS_ONLY"}}
        for slot in range(1, segment_indexes + 1)
    ]
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            *({"AttributeName": f"seg{slot}", "AttributeType": "S"} for slot in range(1, segment_indexes + 1)),
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        **({"GlobalSecondaryIndexes": indexes} if indexes else {}),
    )
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})


class AtomicRequests:
    """A client whose requests run one at a time, as each request does on real DynamoDB.

    moto mutates its tables without a lock (TransactWriteItems deep-copies a table another
    thread is writing, a conditional put checks and writes in two steps). Serialising each
    request restores per-request atomicity; threads still interleave freely *between*
    requests, which is where read-modify-write races live."""

    def __init__(self, client) -> None:
        import threading

        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name):
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def atomic(*args, **kwargs):
            with self._lock:
                return attribute(*args, **kwargs)

        return atomic
