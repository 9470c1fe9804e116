from __future__ import annotations

import pytest
from pydantic import ValidationError

from chalicelib.routing.sources import (
    AppConfigRulesSource,
    InlineRulesSource,
    RulesSourceSettings,
    S3RulesSource,
    SsmRulesSource,
    rules_source,
)


def problems(data: dict) -> list[str]:
    """Each validation error as `location: message`, the way the hub configuration reports them."""
    with pytest.raises(ValidationError) as caught:
        RulesSourceSettings.model_validate(data)
    return [
        f"{'.'.join(str(part) for part in error['loc']) or '(source)'}: {error['msg']}"
        for error in caught.value.errors(include_url=False)
    ]


def test_the_default_is_the_inline_rules_with_a_one_minute_cache():
    settings = RulesSourceSettings()

    assert (settings.type, settings.cache_seconds) == ("inline", 60)


@pytest.mark.parametrize(
    "data",
    [
        {"type": "s3", "bucket": "hub-prod-123456789012-eu-central-1", "key": "routing/rules.yaml"},
        {"type": "ssm", "parameter": "/hub/prod/routing/rules", "cache_seconds": 5},
        {"type": "ssm", "parameter": "arn:aws:ssm:eu-central-1:123456789012:parameter/hub/prod/routing"},
        {"type": "appconfig", "application": "hub", "environment": "prod", "profile": "routing", "cache_seconds": 3600},
    ],
)
def test_each_type_accepts_its_fields(data):
    assert RulesSourceSettings.model_validate(data).type == data["type"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"type": "s3", "key": "routing/rules.yaml"}, "type s3 requires bucket"),
        ({"type": "s3", "bucket": "hub-dev-rules"}, "type s3 requires key"),
        ({"type": "s3"}, "type s3 requires bucket, key"),
        ({"type": "ssm"}, "type ssm requires parameter"),
        ({"type": "appconfig", "application": "hub", "profile": "routing"}, "type appconfig requires environment"),
        ({"type": "appconfig"}, "type appconfig requires application, environment, profile"),
    ],
)
def test_a_missing_field_is_named_for_the_chosen_type(data, expected):
    [problem] = problems(data)

    assert problem.startswith("(source): ") and problem.endswith(expected)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"type": "s3", "bucket": "hub-dev-rules", "key": "rules.yaml", "parameter": "/hub/dev/routing"},
         "parameter does not apply to type s3"),
        ({"parameter": "/hub/dev/routing"}, "parameter does not apply to type inline"),
        ({"type": "ssm", "parameter": "/hub/dev/routing", "bucket": "b-1", "key": "k"}, "bucket, key do not apply to type ssm"),
    ],
)
def test_fields_of_another_type_are_refused_so_a_wrong_type_is_noticed(data, expected):
    [problem] = problems(data)

    assert problem.endswith(expected)


@pytest.mark.parametrize(
    ("data", "location", "hint"),
    [
        ({"type": "s3", "bucket": "s3://hub-dev-rules", "key": "k"}, "bucket", "without s3://"),
        ({"type": "s3", "bucket": "Hub_Dev", "key": "k"}, "bucket", "S3 bucket name"),
        ({"type": "s3", "bucket": "hub-dev-rules", "key": "/routing/rules.yaml"}, "key", "no leading '/'"),
        ({"type": "s3", "bucket": "hub-dev-rules", "key": ""}, "key", "object key"),
        ({"type": "ssm", "parameter": "ssm:/hub/dev/routing"}, "parameter", "without the ssm: prefix"),
        ({"type": "ssm", "parameter": "/hub/dev/routing rules"}, "parameter", "SSM parameter name"),
        ({"type": "appconfig", "application": "my hub", "environment": "e", "profile": "p"}, "application", "AppConfig"),
        ({"type": "appconfig", "application": "a", "environment": "e", "profile": "p" * 129}, "profile", "1-128"),
        ({"cache_seconds": 4}, "cache_seconds", "greater than or equal to 5"),
        ({"cache_seconds": 3601}, "cache_seconds", "less than or equal to 3600"),
        ({"type": "dynamodb"}, "type", "'inline', 'file', 's3', 'ssm' or 'appconfig'"),
        ({"type": "ssm", "parameter": "/hub/dev/routing", "ttl": 5}, "ttl", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_value_names_its_field(data, location, hint):
    found = problems(data)

    assert any(p.startswith(f"{location}: ") and hint in p for p in found), found


def test_the_factory_builds_the_configured_source_with_an_injected_client():
    asked: list[str] = []

    def client_for(service: str) -> object:
        asked.append(service)
        return object()

    built = [
        rules_source(RulesSourceSettings.model_validate(data), client_for)
        for data in (
            {},
            {"type": "s3", "bucket": "hub-dev-rules", "key": "routing/rules.yaml"},
            {"type": "ssm", "parameter": "/hub/dev/routing"},
            {"type": "appconfig", "application": "hub", "environment": "dev", "profile": "routing"},
        )
    ]

    assert [type(source) for source in built] == [InlineRulesSource, S3RulesSource, SsmRulesSource, AppConfigRulesSource]
    assert asked == ["s3", "ssm", "appconfigdata"]
    assert built[0].current() is None
    assert [source.describe for source in built[1:]] == [
        "s3://hub-dev-rules/routing/rules.yaml", "SSM parameter /hub/dev/routing", "AppConfig hub/dev/routing",
    ]
