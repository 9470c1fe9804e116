"""`hubctl callbacks setup <connect destination> --create` against moto: the EventBridge connection
carrying the current secret in X-Hub-Callback-Secret, the API destination posting to the callback
URL, the role that may invoke it, and the rule with its target; a second run updates them (how a
rotated secret reaches AWS). And infra/connect-callbacks.yaml lints clean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.callbacks.amazon_connect import AmazonConnectCallbacks
from chalicelib.adapters.connectors.amazon_connect import AmazonConnectConnector, AmazonConnectSettings
from chalicelib.adapters.connectors.base import ConnectorRuntime
from chalicelib.secrets import SecretResolver
from tests.integration.conftest import CallLog

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-central-1"
INSTANCE_ARN = f"arn:aws:connect:{REGION}:123456789012:instance/a1b2c3d4-5678-90ab-cdef-111111111111"
URL = "https://hub.example.com/callbacks/connect"
SECRET, NEXT_SECRET = "connect-callback-secret-2026", "connect-callback-secret-2027"


@pytest.fixture
def aws():
    with mock_aws():
        yield {"events": boto3.client("events", region_name=REGION), "iam": boto3.client("iam", region_name=REGION)}


def callbacks_side(aws, calls: CallLog | None = None, *, secrets=(SECRET,), **callbacks) -> AmazonConnectCallbacks:
    clients = {name: calls.watch(client) if calls else client for name, client in aws.items()}
    settings = AmazonConnectSettings(
        instance_id=INSTANCE_ARN, contact_flow_id="846ec553-a005-41c0-8341-222222222222",
        callbacks={"secrets": list(secrets), "public_url": URL, **callbacks})
    runtime = ConnectorRuntime(data_dir="/x", aws_client=lambda service: clients[service])
    side = AmazonConnectConnector("connect", settings, SecretResolver({}), runtime).callback_side()
    assert isinstance(side, AmazonConnectCallbacks)
    return side


def connection_secret(events) -> dict:
    arn = events.describe_connection(Name="hub-connect")["SecretArn"]
    return json.loads(boto3.client("secretsmanager", region_name=REGION).get_secret_value(SecretId=arn)["SecretString"])


def test_create_setup_creates_the_connection_destination_role_and_rule(aws):
    calls = CallLog()
    done = callbacks_side(aws, calls).create_setup()
    counted = calls.counts()
    events, iam = aws["events"], aws["iam"]

    connection = events.describe_connection(Name="hub-connect")
    assert connection["AuthorizationType"] == "API_KEY"
    assert connection_secret(events) == {"api_key_name": "X-Hub-Callback-Secret", "api_key_value": SECRET}

    destination = events.describe_api_destination(Name="hub-connect")
    assert (destination["InvocationEndpoint"], destination["HttpMethod"]) == (URL, "POST")
    assert destination["ConnectionArn"] == connection["ConnectionArn"]
    assert destination["InvocationRateLimitPerSecond"] == 10

    rule = events.describe_rule(Name="hub-connect")
    assert json.loads(rule["EventPattern"]) == {
        "source": ["aws.connect"], "detail-type": ["Amazon Connect Contact Event"],
        "detail": {"instanceArn": [INSTANCE_ARN],
                   "eventType": ["QUEUED", "CONNECTED_TO_AGENT", "DISCONNECTED", "COMPLETED"]}}
    assert rule["State"] == "ENABLED"
    [target] = events.list_targets_by_rule(Rule="hub-connect")["Targets"]
    assert target["Arn"] == destination["ApiDestinationArn"]
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}
    assert "Input" not in target and "InputTransformer" not in target

    role = iam.get_role(RoleName="hub-connect-invoke")["Role"]
    assert target["RoleArn"] == role["Arn"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}
    policy = iam.get_role_policy(RoleName="hub-connect-invoke", PolicyName="invoke-api-destination")["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    assert policy["Statement"] == [{"Effect": "Allow", "Action": "events:InvokeApiDestination",
                                    "Resource": destination["ApiDestinationArn"]}]

    assert [line.split(" (")[0] for line in done] == [
        "connection hub-connect created", "API destination hub-connect created", "role hub-connect-invoke created",
        "rule hub-connect put", "target of hub-connect: the API destination, as role " + role["Arn"]]
    assert not any(SECRET in line for line in done)
    assert counted == {"DescribeConnection": 1, "CreateConnection": 1, "DescribeApiDestination": 1,
                              "CreateApiDestination": 1, "GetRole": 1, "CreateRole": 1, "PutRolePolicy": 1,
                              "PutRule": 1, "PutTargets": 1}


def test_running_it_again_updates_and_carries_a_rotated_secret(aws):
    callbacks_side(aws).create_setup()
    calls = CallLog()
    done = callbacks_side(aws, calls, secrets=(NEXT_SECRET, SECRET)).create_setup()
    # moto keeps the stored secret on UpdateConnection; what AWS is sent is the new first secret.
    [update] = calls.of("UpdateConnection")
    assert update["AuthParameters"] == {"ApiKeyAuthParameters": {"ApiKeyName": "X-Hub-Callback-Secret",
                                                                 "ApiKeyValue": NEXT_SECRET}}
    assert done[0].startswith("connection hub-connect updated")
    assert done[1].startswith("API destination hub-connect updated")
    assert done[2].startswith("role hub-connect-invoke kept")
    assert len(aws["events"].list_targets_by_rule(Rule="hub-connect")["Targets"]) == 1
    destination = aws["events"].describe_api_destination(Name="hub-connect")
    assert destination["ConnectionArn"] == aws["events"].describe_connection(Name="hub-connect")["ConnectionArn"]


def test_a_configured_role_and_name_are_used_as_they_are(aws):
    role_arn = "arn:aws:iam::123456789012:role/ops/connect-events"
    done = callbacks_side(aws, target_role_arn=role_arn, resource_name="connect-eu").create_setup()
    [target] = aws["events"].list_targets_by_rule(Rule="connect-eu")["Targets"]
    assert target["RoleArn"] == role_arn
    assert aws["iam"].list_roles()["Roles"] == []
    assert not any(line.startswith("role ") for line in done)


def test_the_optional_cloudformation_template_lints_clean():
    lint = Path(sys.executable).parent / "cfn-lint"
    assert lint.exists(), "cfn-lint comes with requirements-dev.txt"
    result = subprocess.run([str(lint), str(ROOT / "infra" / "connect-callbacks.yaml")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
