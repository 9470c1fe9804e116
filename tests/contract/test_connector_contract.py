"""The connector contract: every vendor connector passes the same tests.

Against a scripted HTTP server (tests/support/receiver.py) standing in for the vendor:
- settings: unknown keys and missing required fields are refused, naming the field;
- errors: 5xx and timeouts are retryable, 429 honours `Retry-After`, other 4xx are permanent with
  the vendor's message kept;
- threading: a first delivery of a case returns the vendor object as `case_ref`; a follow-up of
  the case appends to that object (its reference appears in the request) and returns it again.
Vendor-specific behaviour (the exact requests, against Prism mocks of the vendor's OpenAPI
spec) is in each vendor's own module under tests/contract/connectors/.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.adapters.connectors.registry import CONNECTORS
from chalicelib.domain.models import ExternalRef
from chalicelib.errors import PermanentDeliveryError, RetryableDeliveryError
from chalicelib.secrets import SecretResolver
from tests.support.connector_setup import ConnectorSetup
from tests.support.fakes import sample_job
from tests.support.receiver import Answer, Receiver

_FOLDER = Path(__file__).parent / "connectors"


def _setups() -> list[ConnectorSetup]:
    setups = []
    for module in pkgutil.iter_modules([str(_FOLDER)]):
        loaded = importlib.import_module(f"tests.contract.connectors.{module.name}")
        if hasattr(loaded, "SETUP"):
            setups.append(loaded.SETUP)
    return setups


SETUPS = _setups()


@pytest.fixture(params=SETUPS, ids=[s.key for s in SETUPS])
def setup(request) -> ConnectorSetup:
    return request.param


@pytest.fixture
def vendor():
    with Receiver() as server:
        yield server


def build(setup: ConnectorSetup, base_url: str, tmp_path):
    cls = CONNECTORS[setup.key]
    settings = cls.Settings.model_validate(setup.settings(base_url))
    return cls(f"{setup.key}-test", settings, SecretResolver(setup.environ), ConnectorRuntime(data_dir=str(tmp_path)))


def root(url: str) -> str:
    return url.rsplit("/hooks", 1)[0]


def test_every_vendor_connector_joins_the_contract_suite():
    generic = {"webhook", "outbox"}
    assert {s.key for s in SETUPS} >= set(CONNECTORS) - generic - {"amazon_connect", "eventbridge"}


def test_settings_refuse_unknown_keys_and_name_missing_fields(setup, vendor):
    cls = CONNECTORS[setup.key]
    good = setup.settings(root(vendor.url))

    with pytest.raises(ValidationError) as unknown:
        cls.Settings.model_validate({**good, "no_such_setting": 1})
    with pytest.raises(ValidationError) as missing:
        cls.Settings.model_validate({k: v for k, v in good.items() if k != "base_url"})

    assert "no_such_setting" in str(unknown.value)
    assert "base_url" in str(missing.value)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retryable(setup, vendor, tmp_path, status):
    vendor.default = Answer(status, b'{"error": "down"}')
    connector = build(setup, root(vendor.url), tmp_path)

    with pytest.raises(RetryableDeliveryError):
        connector.deliver(sample_job(destination=connector.name))


def test_rate_limits_are_retryable_after_the_vendors_delay(setup, vendor, tmp_path):
    vendor.default = Answer(429, b'{"error": "slow down"}', {"Retry-After": "7"})
    connector = build(setup, root(vendor.url), tmp_path)

    with pytest.raises(RetryableDeliveryError) as raised:
        connector.deliver(sample_job(destination=connector.name))

    assert raised.value.retry_after == 7


def test_other_client_errors_are_permanent_and_keep_the_vendors_message(setup, vendor, tmp_path):
    vendor.default = Answer(422, b'{"error": "RecordInvalid: requester email is invalid"}')
    connector = build(setup, root(vendor.url), tmp_path)

    with pytest.raises(PermanentDeliveryError) as raised:
        connector.deliver(sample_job(destination=connector.name))

    assert "requester email is invalid" in raised.value.message


def test_an_unreachable_vendor_is_retryable(setup, tmp_path):
    connector = build(setup, "http://127.0.0.1:9", tmp_path)  # the discard port: nothing listens

    with pytest.raises(RetryableDeliveryError):
        connector.deliver(sample_job(destination=connector.name))


def test_a_case_threads_into_one_vendor_object(setup, vendor, tmp_path):
    cls = CONNECTORS[setup.key]
    if not cls.threads_cases:
        pytest.skip(f"{setup.key} does not thread cases")
    vendor.default = Answer(201, json.dumps(setup.created_body).encode(), {"content-type": "application/json"})
    connector = build(setup, root(vendor.url), tmp_path)
    first_job = sample_job(destination=connector.name)

    first = connector.deliver(first_job)
    vendor.requests.clear()
    follow_up = sample_job(destination=connector.name, contact_id="ct_2", case=first_job.case.model_copy(update={
        "external_refs": {connector.name: ExternalRef(destination=connector.name, ref=first.case_ref)},
    }))
    second = connector.deliver(follow_up)

    assert first.case_ref == setup.created_ref
    assert second.case_ref == first.case_ref
    assert any(first.case_ref in request.path or first.case_ref.encode() in request.body for request in vendor.requests)
