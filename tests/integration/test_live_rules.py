"""Rules updated on AWS without a redeploy: the router follows an S3 rules document (moto), keeps
the rules in force when a new version does not compile, and routes by the configuration file's
rules while the source has never been readable."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from chalicelib.hubconfig import parse_config
from chalicelib.routing.setup import LiveRouter, RouterFactory
from chalicelib.routing.sources import rules_source
from tests.support.routing import routing_context as ctx

BUCKET, KEY = "hub-dev-123456789012-eu-central-1", "routing/rules.yaml"
CONFIG = parse_config(f"""
destinations: [{{name: outbox, type: outbox}}]
routing:
  source: {{type: s3, bucket: {BUCKET}, key: {KEY}, cache_seconds: 30}}
  rules:
    - {{name: inline-rule, then: {{queue: from-the-file}}}}
""")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.Session(region_name="eu-central-1").client("s3")
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        yield client


def live(s3, clock, rejected):
    factory = RouterFactory(CONFIG)
    source = rules_source(CONFIG.routing.source, lambda service: s3, clock=clock)
    return LiveRouter(factory, source, describe=f"s3://{BUCKET}/{KEY}", on_rejected=rejected.append)


def test_the_router_follows_the_rules_document_and_survives_a_bad_version(s3):
    clock, rejected = Clock(), []
    router = live(s3, clock, rejected)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"rules:\n  - {name: v1, then: {queue: first}}\n")

    first = router.current().route(ctx())
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"- {name: v2, then: {queue: second}}\n")
    cached = router.current().route(ctx())
    clock.now += 31
    second = router.current().route(ctx())
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"- {name: v3, when: {chanel: sms}, then: {queue: third}}\n")
    clock.now += 31
    after_bad = router.current().route(ctx())

    assert (first.queue, cached.queue, second.queue, after_bad.queue) == ("first", "first", "second", "second")
    assert first.rules_version != second.rules_version
    assert [t.rule for t in second.trace] == ["default", "v2"]
    assert len(rejected) == 1 and "unknown condition 'chanel'" in rejected[0]
    assert f"s3://{BUCKET}/{KEY} rules[0] (v3).when" in rejected[0]


def test_until_the_source_is_readable_the_configuration_files_rules_route(s3):
    clock, rejected = Clock(), []
    router = live(s3, clock, rejected)  # no object yet

    decision = router.current().route(ctx())

    assert (decision.queue, decision.rules_version) == ("from-the-file", "inline")


def test_a_rules_file_beside_the_configuration_is_read_on_first_use_and_followed(tmp_path):
    from chalicelib.hubconfig import load_config

    (tmp_path / "hub.yaml").write_text(
        "destinations: [{name: outbox, type: outbox}]\n"
        "routing:\n  source: {type: file, path: rules.yaml, cache_seconds: 5}\n"
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text("- {name: first, then: {queue: one}}\n")
    config = load_config(tmp_path / "hub.yaml")
    clock, rejected = Clock(), []
    source = rules_source(config.routing.source, lambda service: None, clock=clock,
                          base_dir=tmp_path)
    router = LiveRouter(RouterFactory(config), source, describe=source.describe, on_rejected=rejected.append)

    first = router.current().route(ctx())
    rules.write_text("- {name: second, then: {queue: two}}\n")
    clock.now += 6
    second = router.current().route(ctx())
    rules.unlink()
    clock.now += 6
    missing = router.current().route(ctx())

    assert (first.queue, second.queue, missing.queue) == ("one", "two", "two")
    assert second.rules_version.startswith("sha256:") and rejected == []
