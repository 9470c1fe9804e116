"""infra/connect-callbacks.yaml (the optional Amazon Connect callback stack) says what the hub's
Connect callback side relies on: the API_KEY header it verifies, a POST of the untransformed event
to the callback URL, the same event pattern `hubctl callbacks setup` prints, and a role that may
invoke exactly this API destination. cfn-lint runs on it in tests/integration/test_connect_callbacks_setup.py."""

from __future__ import annotations

from pathlib import Path

import re

import pytest

from chalicelib.adapters.callbacks.amazon_connect import SECRET_HEADER
from tests.unit.callbacks.test_amazon_connect import INSTANCE_ARN, side
from tests.support.cloudformation import load_template

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "connect-callbacks.yaml"




@pytest.fixture(scope="module")
def template() -> dict:
    return load_template(TEMPLATE)


def one(template: dict, type_: str) -> tuple[str, dict]:
    [(name, resource)] = [(k, v) for k, v in template["Resources"].items() if v["Type"] == type_]
    return name, resource["Properties"]


def substituted(value, **parameters) -> object:
    """`{"Ref": P}` → the parameter's value, recursively: the pattern as deployed."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return parameters[value["Ref"]]
        return {k: substituted(v, **parameters) for k, v in value.items()}
    if isinstance(value, list):
        return [substituted(v, **parameters) for v in value]
    return value


def test_the_template_has_exactly_the_four_resources(template):
    assert sorted(r["Type"] for r in template["Resources"].values()) == [
        "AWS::Events::ApiDestination", "AWS::Events::Connection", "AWS::Events::Rule", "AWS::IAM::Role"]


def test_the_parameters_constrain_what_the_operator_passes(template):
    parameters = template["Parameters"]
    assert set(parameters) == {"Destination", "CallbackUrl", "InstanceArn", "CallbackSecret",
                               "InvocationRateLimitPerSecond"}
    assert parameters["CallbackSecret"]["NoEcho"] is True
    assert parameters["CallbackUrl"]["AllowedPattern"].startswith("^https://")
    assert re.match(parameters["InstanceArn"]["AllowedPattern"], INSTANCE_ARN)
    assert not re.match(parameters["InstanceArn"]["AllowedPattern"], "a1b2c3d4-5678-90ab-cdef-111111111111")


def test_the_connection_sends_the_secret_in_the_header_the_hub_verifies(template):
    _, connection = one(template, "AWS::Events::Connection")
    assert connection["AuthorizationType"] == "API_KEY"
    assert connection["AuthParameters"]["ApiKeyAuthParameters"] == {
        "ApiKeyName": SECRET_HEADER, "ApiKeyValue": {"Ref": "CallbackSecret"}}


def test_the_api_destination_posts_to_the_callback_url_through_the_connection(template):
    connection, _ = one(template, "AWS::Events::Connection")
    _, destination = one(template, "AWS::Events::ApiDestination")
    assert destination["HttpMethod"] == "POST"
    assert destination["InvocationEndpoint"] == {"Ref": "CallbackUrl"}
    assert destination["ConnectionArn"] == {"Fn::GetAtt": [connection, "Arn"]}


def test_the_rule_matches_what_hubctl_prints_and_posts_the_event_untransformed(template):
    api_destination, _ = one(template, "AWS::Events::ApiDestination")
    role, _ = one(template, "AWS::IAM::Role")
    _, rule = one(template, "AWS::Events::Rule")
    assert substituted(rule["EventPattern"], InstanceArn=INSTANCE_ARN) == side().event_pattern()
    assert rule["State"] == "ENABLED" and rule["EventBusName"] == "default"
    [target] = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [api_destination, "Arn"]}
    assert target["RoleArn"] == {"Fn::GetAtt": [role, "Arn"]}
    assert not {"Input", "InputPath", "InputTransformer"} & set(target)


def test_the_role_may_only_invoke_this_api_destination(template):
    api_destination, _ = one(template, "AWS::Events::ApiDestination")
    _, role = one(template, "AWS::IAM::Role")
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"
    [policy] = role["Policies"]
    assert policy["PolicyDocument"]["Statement"] == [{
        "Effect": "Allow", "Action": "events:InvokeApiDestination",
        "Resource": {"Fn::GetAtt": [api_destination, "Arn"]}}]


def test_every_name_derives_from_the_destination(template):
    names = [r["Properties"]["Name"] for r in template["Resources"].values() if "Name" in r["Properties"]]
    assert len(names) == 3 and all(name == {"Fn::Sub": "hub-${Destination}"} for name in names)
