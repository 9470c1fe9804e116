"""AWS adapters against moto, with every botocore call counted (PERFORMANCE T1).

`calls` records each API call made through the clients it watches: the operation name from the
`before-call` event (once per call that reaches the wire stage; retries are not counted twice) and
the caller's parameters from `before-parameter-build`.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

REGION = "us-east-1"


class CallLog:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.params: list[tuple[str, dict]] = []

    def watch(self, client):
        client.meta.events.register("before-parameter-build", self._record_params)
        client.meta.events.register("before-call", self._record_call)
        return client

    def _record_params(self, model, params, **_) -> None:
        self.params.append((model.name, dict(params)))

    def _record_call(self, model, **_) -> None:
        self.names.append(model.name)

    def clear(self) -> None:
        self.names.clear()
        self.params.clear()

    def counts(self) -> Counter:
        return Counter(self.names)

    def of(self, operation: str) -> list[dict]:
        """The wire-level parameters of every `operation` call, in order."""
        return [p for name, p in self.params if name == operation]


@pytest.fixture(scope="module")
def aws() -> Iterator[boto3.Session]:
    with mock_aws():
        yield boto3.Session(region_name=REGION)


@pytest.fixture
def calls() -> CallLog:
    return CallLog()


@pytest.fixture
def unique():
    """`unique("hub-it")` → a resource name no other test uses."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:12]}"
