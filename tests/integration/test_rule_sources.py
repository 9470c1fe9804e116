"""Routing rules sources against AWS: S3 and SSM through moto, AppConfig Data through botocore's
Stubber on a real client (moto does not serve AppConfig Data), so every request and response is
validated against the service model."""

from __future__ import annotations

import io
import logging
import threading

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from chalicelib.errors import TransientError
from chalicelib.routing.sources import (
    AppConfigRulesSource,
    RulesUnavailableError,
    S3RulesSource,
    SsmRulesSource,
)

RULES_V1 = "rules:\n  - name: vip\n    when: {tier: gold}\n    then: {priority: high}\n"
RULES_V2 = "rules:\n  - name: vip\n    when: {tier: platinum}\n    then: {priority: urgent}\n"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def logged():
    """Warnings of the sources module, whatever the `chalicelib` logger's handlers and level."""
    module_logger = logging.getLogger("chalicelib.routing.sources")
    handler, level = ListHandler(), module_logger.level
    module_logger.addHandler(handler)
    module_logger.setLevel(logging.WARNING)
    yield handler.messages
    module_logger.removeHandler(handler)
    module_logger.setLevel(level)


# --- S3 ------------------------------------------------------------------------------------------


@pytest.fixture
def s3(aws, calls):
    client = calls.watch(aws.client("s3"))
    client.statuses = []  # HTTP status of every GetObject: 304 means nothing was transferred
    client.meta.events.register(
        "after-call.s3.GetObject", lambda http_response, **_: client.statuses.append(http_response.status_code),
    )
    return client


@pytest.fixture
def bucket(s3, unique) -> str:
    name = unique("hub-it-rules")
    s3.create_bucket(Bucket=name)
    return name


def s3_source(s3, bucket, clock, key="routing/rules.yaml") -> S3RulesSource:
    return S3RulesSource(s3, bucket=bucket, key=key, cache_seconds=60, clock=clock)


def test_s3_first_fetch_returns_the_undecoded_text_versioned_by_etag(s3, bucket, clock, calls):
    etag = s3.put_object(Bucket=bucket, Key="routing/rules.yaml", Body=RULES_V1.encode())["ETag"]

    document = s3_source(s3, bucket, clock).current()

    assert document.text == RULES_V1
    assert document.version == etag.strip('"')
    assert document.fetched_at.tzinfo is not None
    [params] = calls.of("GetObject")
    assert (params["Bucket"], params["Key"], "IfNoneMatch" in params) == (bucket, "routing/rules.yaml", False)


def test_s3_in_a_versioned_bucket_the_version_is_the_version_id(s3, bucket, clock):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    version_id = s3.put_object(Bucket=bucket, Key="routing/rules.yaml", Body=RULES_V1.encode())["VersionId"]

    assert s3_source(s3, bucket, clock).current().version == version_id


def test_s3_a_fetched_document_is_served_from_cache_within_cache_seconds(s3, bucket, clock, calls):
    s3.put_object(Bucket=bucket, Key="routing/rules.yaml", Body=RULES_V1.encode())
    source = s3_source(s3, bucket, clock)

    first = source.current()
    for _ in range(5):
        clock.advance(11.9)
        assert source.current() is first

    assert calls.counts()["GetObject"] == 1


def test_s3_after_cache_seconds_an_unchanged_object_answers_304_and_keeps_the_document(s3, bucket, clock, calls):
    etag = s3.put_object(Bucket=bucket, Key="routing/rules.yaml", Body=RULES_V1.encode())["ETag"]
    source = s3_source(s3, bucket, clock)
    first = source.current()

    clock.advance(60)
    again = source.current()

    assert again is first
    assert calls.of("GetObject")[1]["IfNoneMatch"] == etag
    assert s3.statuses == [200, 304]


def test_s3_after_cache_seconds_a_changed_object_is_a_new_version(s3, bucket, clock, calls):
    s3.put_object(Bucket=bucket, Key="routing/rules.yaml", Body=RULES_V1.encode())
    source = s3_source(s3, bucket, clock)
    first = source.current()
    new_etag = s3.put_object(Bucket=bucket, Key="routing/rules.yaml", Body=RULES_V2.encode())["ETag"]

    clock.advance(60)
    second = source.current()
    clock.advance(60)
    third = source.current()

    assert (second.text, second.version) == (RULES_V2, new_etag.strip('"'))
    assert second.version != first.version and second.fetched_at >= first.fetched_at
    assert third is second
    assert calls.of("GetObject")[2]["IfNoneMatch"] == new_etag
    assert s3.statuses == [200, 200, 304]


def test_s3_a_failure_after_a_good_fetch_keeps_serving_it_and_retries_once_per_cache_period(
    s3, bucket, clock, calls, logged,
):
    s3.put_object(Bucket=bucket, Key="routing/rules.yaml", Body=RULES_V1.encode())
    source = s3_source(s3, bucket, clock)
    first = source.current()
    s3.delete_object(Bucket=bucket, Key="routing/rules.yaml")

    clock.advance(60)
    assert source.current() is first
    clock.advance(59)
    assert source.current() is first
    assert calls.counts()["GetObject"] == 2  # no retry before cache_seconds have passed

    s3.put_object(Bucket=bucket, Key="routing/rules.yaml", Body=RULES_V2.encode())
    clock.advance(1)
    assert source.current().text == RULES_V2
    assert logged == [
        f"routing rules: s3://{bucket}/routing/rules.yaml could not be read (NoSuchKey); keeping version {first.version}",
    ]


def test_s3_with_nothing_fetched_a_failure_raises_naming_the_object(s3, bucket, clock, calls, logged):
    source = s3_source(s3, bucket, clock, key="routing/missing.yaml")

    with pytest.raises(RulesUnavailableError) as caught:
        source.current()
    clock.advance(30)
    with pytest.raises(RulesUnavailableError):
        source.current()

    assert isinstance(caught.value, TransientError) and caught.value.http_status == 503
    assert f"s3://{bucket}/routing/missing.yaml" in caught.value.message
    assert "NoSuchKey" in caught.value.message
    assert caught.value.detail == {"source": f"s3://{bucket}/routing/missing.yaml"}
    assert calls.counts()["GetObject"] == 1
    assert len(logged) == 1 and "no document yet" in logged[0]


def test_s3_a_missing_bucket_is_a_failure_like_any_other(s3, unique, clock):
    source = s3_source(s3, unique("hub-it-nobucket"), clock)

    with pytest.raises(RulesUnavailableError, match="NoSuchBucket"):
        source.current()


def test_s3_a_document_that_is_not_utf8_is_refused_and_the_last_good_one_stays(s3, bucket, clock, logged):
    s3.put_object(Bucket=bucket, Key="routing/rules.yaml", Body=RULES_V1.encode())
    source = s3_source(s3, bucket, clock)
    first = source.current()
    s3.put_object(Bucket=bucket, Key="routing/rules.yaml", Body=b"\xff\xfe rules")

    clock.advance(60)

    assert source.current() is first
    assert "document is not UTF-8" in logged[0]


# --- SSM -----------------------------------------------------------------------------------------

SECRET_MARKER = "webhook-token-5f1c"
SECURE_RULES = RULES_V1 + f"# {SECRET_MARKER}\n"


@pytest.fixture
def ssm(aws, calls):
    return calls.watch(aws.client("ssm"))


@pytest.fixture
def parameter(ssm, unique) -> str:
    name = f"/hub/dev/routing/{unique('rules')}"
    ssm.put_parameter(Name=name, Value=SECURE_RULES, Type="SecureString")
    return name


def test_ssm_a_securestring_is_fetched_decrypted_and_versioned(ssm, parameter, clock, calls):
    document = SsmRulesSource(ssm, parameter=parameter, cache_seconds=60, clock=clock).current()

    assert (document.text, document.version) == (SECURE_RULES, "1")
    assert calls.of("GetParameter") == [{"Name": parameter, "WithDecryption": True}]


def test_ssm_cached_within_cache_seconds_then_unchanged_then_changed(ssm, parameter, clock, calls):
    source = SsmRulesSource(ssm, parameter=parameter, cache_seconds=30, clock=clock)
    first = source.current()

    clock.advance(29)
    assert source.current() is first
    assert calls.counts()["GetParameter"] == 1

    clock.advance(1)
    assert source.current() is first  # same Version: the same document object

    ssm.put_parameter(Name=parameter, Value=RULES_V2, Type="SecureString", Overwrite=True)
    clock.advance(30)
    changed = source.current()

    assert (changed.text, changed.version) == (RULES_V2, "2")
    assert calls.counts()["GetParameter"] == 3


def test_ssm_a_failure_after_a_good_fetch_keeps_it_and_never_logs_the_value(ssm, parameter, clock, logged):
    source = SsmRulesSource(ssm, parameter=parameter, cache_seconds=60, clock=clock)
    first = source.current()
    ssm.delete_parameter(Name=parameter)

    clock.advance(60)

    assert source.current() is first
    assert logged == [
        f"routing rules: SSM parameter {parameter} could not be read (ParameterNotFound); keeping version 1",
    ]
    assert SECRET_MARKER not in " ".join(logged)


def test_ssm_with_nothing_fetched_a_failure_raises_naming_the_parameter(ssm, clock):
    source = SsmRulesSource(ssm, parameter="/hub/dev/routing/absent", cache_seconds=60, clock=clock)

    with pytest.raises(RulesUnavailableError) as caught:
        source.current()

    assert "SSM parameter /hub/dev/routing/absent" in caught.value.message
    assert "ParameterNotFound" in caught.value.message


# --- AppConfig Data (Stubber) --------------------------------------------------------------------


@pytest.fixture
def appconfig(calls):
    client = boto3.client(
        "appconfigdata", region_name="eu-central-1", aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    calls.watch(client)
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def operations(calls) -> list[str]:
    """Every call made, in order. Stubber answers in `before-call`, ahead of the call log's own
    `before-call` hook, so calls are counted at parameter building, which always runs."""
    return [name for name, _ in calls.params]


def session(stubber: Stubber, token: str, *, poll: int = 30) -> None:
    stubber.add_response(
        "start_configuration_session",
        {"InitialConfigurationToken": token},
        {"ApplicationIdentifier": "hub", "EnvironmentIdentifier": "dev", "ConfigurationProfileIdentifier": "routing",
         "RequiredMinimumPollIntervalInSeconds": poll},
    )


def latest(stubber: Stubber, token: str, next_token: str, body: bytes, *, label: str | None = None,
           interval: int = 30) -> None:
    response = {
        "NextPollConfigurationToken": next_token,
        "NextPollIntervalInSeconds": interval,
        "ContentType": "application/x-yaml",
        "Configuration": StreamingBody(io.BytesIO(body), len(body)),
    }
    if label:
        response["VersionLabel"] = label
    stubber.add_response("get_latest_configuration", response, {"ConfigurationToken": token})


def appconfig_source(client, clock, cache_seconds: int = 30) -> AppConfigRulesSource:
    return AppConfigRulesSource(client, application="hub", environment="dev", profile="routing",
                                cache_seconds=cache_seconds, clock=clock)


def test_appconfig_session_first_configuration_unchanged_body_and_token_chaining(appconfig, clock, calls):
    client, stubber = appconfig
    session(stubber, "token-0")
    latest(stubber, "token-0", "token-1", RULES_V1.encode(), label="v1")
    latest(stubber, "token-1", "token-2", b"")
    latest(stubber, "token-2", "token-3", RULES_V2.encode(), label="v2")
    latest(stubber, "token-3", "token-4", b"")
    source = appconfig_source(client, clock)

    first = source.current()
    clock.advance(29)
    assert source.current() is first
    clock.advance(1)
    assert source.current() is first  # empty Configuration: unchanged since the last poll
    clock.advance(30)
    second = source.current()
    clock.advance(30)

    assert (first.text, first.version) == (RULES_V1, "v1")
    assert (second.text, second.version) == (RULES_V2, "v2")
    assert source.current() is second
    assert operations(calls) == ["StartConfigurationSession"] + ["GetLatestConfiguration"] * 4


def test_appconfig_never_polls_sooner_than_the_service_asks(appconfig, clock, calls):
    client, stubber = appconfig
    session(stubber, "token-0", poll=15)  # cache_seconds 5 is below AppConfig's minimum of 15
    latest(stubber, "token-0", "token-1", RULES_V1.encode(), label="v1", interval=120)
    latest(stubber, "token-1", "token-2", b"", interval=120)
    source = appconfig_source(client, clock, cache_seconds=5)

    first = source.current()
    clock.advance(119)
    assert source.current() is first
    assert operations(calls).count("GetLatestConfiguration") == 1
    clock.advance(1)
    assert source.current() is first
    assert operations(calls).count("GetLatestConfiguration") == 2


def test_appconfig_without_a_version_label_the_version_is_a_content_hash(appconfig, clock):
    client, stubber = appconfig
    session(stubber, "token-0")
    latest(stubber, "token-0", "token-1", RULES_V1.encode())

    version = appconfig_source(client, clock).current().version

    assert version.startswith("sha256:") and len(version) == len("sha256:") + 16


def test_appconfig_a_failed_poll_keeps_the_document_and_starts_a_new_session(appconfig, clock, calls, logged):
    client, stubber = appconfig
    session(stubber, "token-0")
    latest(stubber, "token-0", "token-1", RULES_V1.encode())
    stubber.add_client_error("get_latest_configuration", service_error_code="BadRequestException",
                             service_message="expired token", http_status_code=400,
                             expected_params={"ConfigurationToken": "token-1"})
    session(stubber, "token-10")
    latest(stubber, "token-10", "token-11", RULES_V1.encode())  # a new session sends the whole document
    source = appconfig_source(client, clock)
    first = source.current()

    clock.advance(30)
    assert source.current() is first
    clock.advance(30)
    assert source.current() is first  # same content: the same document, nothing to recompile

    assert operations(calls) == ["StartConfigurationSession", "GetLatestConfiguration", "GetLatestConfiguration",
                                 "StartConfigurationSession", "GetLatestConfiguration"]
    assert logged == [
        f"routing rules: AppConfig hub/dev/routing could not be read (BadRequestException); keeping version {first.version}",
    ]


def test_appconfig_with_nothing_fetched_a_failure_raises_naming_application_environment_profile(appconfig, clock):
    client, stubber = appconfig
    stubber.add_client_error("start_configuration_session", service_error_code="ResourceNotFoundException",
                             http_status_code=404)

    with pytest.raises(RulesUnavailableError) as caught:
        appconfig_source(client, clock).current()

    assert "AppConfig hub/dev/routing" in caught.value.message
    assert "ResourceNotFoundException" in caught.value.message


def test_appconfig_an_empty_first_configuration_is_no_document(appconfig, clock):
    client, stubber = appconfig
    session(stubber, "token-0")
    latest(stubber, "token-0", "token-1", b"")

    with pytest.raises(RulesUnavailableError, match="empty configuration"):
        appconfig_source(client, clock).current()


# --- concurrency and bugs (a fake client) --------------------------------------------------------


class SlowSsm:
    """A fake SSM client whose GetParameter blocks until released, to hold a fetch in flight."""

    def __init__(self) -> None:
        self.calls = 0
        self.version = 1
        self.entered = threading.Event()
        self.release = threading.Event()

    def get_parameter(self, *, Name: str, WithDecryption: bool) -> dict:  # noqa: N803 (boto3's names)
        self.calls += 1
        self.entered.set()
        assert self.release.wait(5), "the test never released the fetch"
        return {"Parameter": {"Name": Name, "Value": f"rules v{self.version}", "Version": self.version}}


def test_concurrent_first_reads_fetch_once_and_all_get_the_document(clock):
    client = SlowSsm()
    source = SsmRulesSource(client, parameter="/hub/dev/routing", cache_seconds=60, clock=clock)
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(source.current())) for _ in range(8)]

    for thread in threads:
        thread.start()
    assert client.entered.wait(5)
    client.release.set()
    for thread in threads:
        thread.join(5)

    assert client.calls == 1
    assert len(results) == 8 and len({id(document) for document in results}) == 1


def test_while_one_thread_refreshes_the_others_get_the_current_document_without_waiting(clock):
    client = SlowSsm()
    client.release.set()
    source = SsmRulesSource(client, parameter="/hub/dev/routing", cache_seconds=60, clock=clock)
    first = source.current()
    client.release.clear()
    client.entered.clear()
    client.version = 2
    clock.advance(60)
    refreshed: list = []
    refresher = threading.Thread(target=lambda: refreshed.append(source.current()))

    refresher.start()
    assert client.entered.wait(5)
    served_meanwhile = source.current()  # would block (and fail the fake's wait) if it queued
    client.release.set()
    refresher.join(5)

    assert served_meanwhile is first
    assert refreshed[0].version == "2"
    assert source.current() is refreshed[0]
    assert client.calls == 2


def test_an_error_that_is_not_from_aws_is_a_bug_and_propagates(clock):
    class BrokenSsm:
        def get_parameter(self, **_):
            return {"Parameter": {"Value": "rules"}}  # no Version: a programming error, not an outage

    source = SsmRulesSource(BrokenSsm(), parameter="/hub/dev/routing", cache_seconds=60, clock=clock)

    with pytest.raises(KeyError):
        source.current()
