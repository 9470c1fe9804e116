"""infra/ and .chalice/: the template lints clean and says what the code relies on, deploy.py
deploys it under moto and wires the outputs into the Chalice config, the IAM policies name exactly
the stage's resources, and `chalice package` produces a template that lints clean.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from chalicelib.adapters.queue.base import OutgoingMessage
from chalicelib.adapters.queue.sqs import SqsQueue
from chalicelib.adapters.store.dynamodb import DynamoDbStore
from chalicelib.settings import Settings
from tests.support.cloudformation import load_template
from tests.support.infra_scripts import load_infra_script

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "stateful.yaml"
CHALICE_DIR = ROOT / ".chalice"
BIN = Path(sys.executable).parent
DEPLOYED_STAGES = ("dev", "prod")
ROLES = ("inbound", "delivery", "outbound")
#: The Chalice function consuming each queue role.
WORKERS = {"inbound": "process_inbound", "delivery": "deliver", "outbound": "send", "events": "process_events"}


deploy = load_infra_script("deploy")




@pytest.fixture(scope="module")
def template() -> dict:
    return load_template(TEMPLATE)


@pytest.fixture(scope="module")
def chalice_config() -> dict:
    return json.loads((CHALICE_DIR / "config.json").read_text())


def resources_of(template: dict, type_: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def substitute(value, stage: str, account: str = "123456789012", region: str = "eu-central-1") -> str:
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    return text.replace("${Stage}", stage).replace("${AWS::AccountId}", account).replace("${AWS::Region}", region)


def lambda_timeout(config: dict, function: str) -> int:
    return config["lambda_functions"][function]["lambda_timeout"]


# --- the template --------------------------------------------------------------------------------


def test_cfn_lint_is_clean_on_the_stateful_template():
    result = subprocess.run([str(BIN / "cfn-lint"), str(TEMPLATE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_stage_parameter_is_constrained(template):
    stage = template["Parameters"]["Stage"]
    assert stage["AllowedPattern"] == "^[a-z0-9-]+$"
    assert stage["MaxLength"] <= 20  # hub-<stage>-<account>-<region> stays within S3's 63 characters


def test_every_resource_name_contains_the_stage(template):
    names = [
        props.get("TableName") or props.get("QueueName") or props.get("BucketName")
        for props in (r["Properties"] for r in template["Resources"].values())
        if {"TableName", "QueueName", "BucketName"} & set(props)
    ]
    assert len(names) == 13
    assert all("${Stage}" in name["Fn::Sub"] for name in names)
    assert len({substitute(n, "dev") for n in names} & {substitute(n, "qa") for n in names}) == 0


def test_the_table_has_keys_ttl_pitr_and_encryption(template):
    [table] = resources_of(template, "AWS::DynamoDB::Table").values()
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert {(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]} == {("pk", "HASH"), ("sk", "RANGE")}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")
    # Besides the primary key, only the sparse KEYS_ONLY segment indexes, as many as `SegmentIndexes`
    # (CloudFormation adds one per update: infra/deploy.py steps the parameter).
    both, rest = props["GlobalSecondaryIndexes"]["Fn::If"][1:]
    one, none = rest["Fn::If"][1:]
    assert none == {"Ref": "AWS::NoValue"} and one == both[:1]
    for slot, index in enumerate(both, start=1):
        assert index["IndexName"] == f"segment{slot}"
        assert [(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]] == [(f"seg{slot}", "HASH"), ("pk", "RANGE")]
        assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert template["Parameters"]["SegmentIndexes"]["AllowedValues"] == [0, 1, 2]


def test_queues_are_fifo_with_dead_letters_and_timeouts_six_times_their_worker(template, chalice_config):
    queues = {substitute(q["Properties"]["QueueName"], "dev"): q["Properties"]
              for q in resources_of(template, "AWS::SQS::Queue").values()}
    assert set(queues) == {"hub-dev-inbound.fifo", "hub-dev-inbound-dlq.fifo",
                           "hub-dev-delivery.fifo", "hub-dev-delivery-dlq.fifo",
                           "hub-dev-outbound.fifo", "hub-dev-outbound-dlq.fifo",
                           "hub-dev-events.fifo", "hub-dev-events-dlq.fifo",
                           "hub-dev-ses-inbound", "hub-dev-ses-inbound-dlq", "hub-dev-timers-dlq"}
    for name, props in queues.items():
        # S3 can only notify standard queues, and Scheduler's dead letters cannot be FIFO; every
        # worker queue of the hub's own is FIFO.
        assert props.get("FifoQueue", False) is (not name.startswith(("hub-dev-ses-inbound", "hub-dev-timers")))
        assert props["MessageRetentionPeriod"] == 14 * 24 * 3600
        assert props["SqsManagedSseEnabled"] is True
    logical_names = {r["Properties"]["QueueName"]["Fn::Sub"]: k for k, r in template["Resources"].items()
                     if r["Type"] == "AWS::SQS::Queue"}
    for role, max_receives in (("inbound", 17), ("delivery", 11), ("outbound", 11), ("events", 11)):
        name = Settings(stage="dev").queue_name(role)  # what app.py subscribes to
        props = queues[name]
        assert props["VisibilityTimeout"] >= 6 * lambda_timeout(chalice_config, WORKERS[role])
        assert props["RedrivePolicy"]["maxReceiveCount"] == max_receives
        dead_letter = logical_names[f"hub-${{Stage}}-{role}-dlq.fifo"]
        assert props["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [dead_letter, "Arn"]}


@pytest.mark.parametrize("stage", DEPLOYED_STAGES)
@pytest.mark.parametrize("role", ["inbound", "delivery", "outbound", "ses-inbound"])
def test_sqs_never_takes_a_message_before_the_hub_gives_up_on_it(stage, role, template):
    """The deliver and send workers dead-letter a job or message themselves at
    `delivery.max_receives`, and the process
    worker's receive number `processing.max_receives` delivers what it has: SQS's redrive must
    come later, by the receives a batch can leave untried and those no handler sees (the
    arithmetic is in tests/integration/test_receive_budget.py and infra/stateful.yaml)."""
    from tests.integration.test_receive_budget import required_receive_count

    logical = {"inbound": "InboundQueue", "delivery": "DeliveryQueue", "outbound": "OutboundQueue",
               "ses-inbound": "SesInboundQueue"}[role]
    props = template["Resources"][logical]["Properties"]
    assert props["RedrivePolicy"]["maxReceiveCount"] >= required_receive_count(stage, role)


def test_the_bucket_is_private_encrypted_and_expires_queue_bodies(template):
    [bucket] = resources_of(template, "AWS::S3::Bucket").values()
    props = bucket["Properties"]
    assert substitute(props["BucketName"], "dev") == "hub-dev-123456789012-eu-central-1"
    assert all(props["PublicAccessBlockConfiguration"].values()) and len(props["PublicAccessBlockConfiguration"]) == 4
    [rule] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    [expiry] = [r for r in props["LifecycleConfiguration"]["Rules"] if r.get("Prefix") == "queue/"]
    assert expiry["Status"] == "Enabled"
    [media] = [r for r in props["LifecycleConfiguration"]["Rules"] if r.get("Prefix") == "media/"]
    assert (media["Status"], media["ExpirationInDays"]) == ("Enabled", {"Ref": "MediaRetentionDays"})
    retention = template["Parameters"]["MediaRetentionDays"]
    # A link (at most 7 days) must never outlive its file.
    assert (retention["Default"], retention["MinValue"]) == (30, 8)
    assert bucket["DeletionPolicy"] == "Retain"


def test_claim_checked_bodies_outlive_their_message_through_a_dlq_redrive(template):
    """A claim-checked body (`queue/`) must be there for as long as its message may be handled:
    in its queue, then in the FIFO DLQ (which starts its retention again when a message moves
    in), redriven to its queue (a redrive restarts it too), and back in the DLQ once more."""
    days = 24 * 3600
    [bucket] = resources_of(template, "AWS::S3::Bucket").values()
    [expiry] = [r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"] if r.get("Prefix") == "queue/"]
    for name in ("InboundQueue", "DeliveryQueue", "OutboundQueue", "EventsQueue"):
        queue = template["Resources"][name]["Properties"]
        [dead_letter, _] = queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"]
        dlq_days = template["Resources"][dead_letter]["Properties"]["MessageRetentionPeriod"] / days
        longest_stay = 2 * (queue["MessageRetentionPeriod"] / days + dlq_days)
        assert expiry["ExpirationInDays"] >= longest_stay


def test_outputs_cover_what_deploy_and_operators_need(template):
    assert set(template["Outputs"]) >= set(deploy.OUTPUT_VARIABLES) | {
        "TableArn", "InboundQueueArn", "DeliveryQueueArn", "InboundDeadLetterQueueUrl",
        "DeliveryDeadLetterQueueUrl", "InboundDeadLetterQueueArn", "DeliveryDeadLetterQueueArn", "BucketArn",
        "OutboundQueueArn", "OutboundDeadLetterQueueArn", "EventsQueueArn", "EventsDeadLetterQueueArn",
        "TimersGroupName", "TimersRoleArn", "TimersFunctionArn", "TimersDeadLetterQueueArn",
    }
    assert set(deploy.OUTPUT_VARIABLES.values()) == {
        "HUB_TABLE", "HUB_INBOUND_QUEUE_URL", "HUB_DELIVERY_QUEUE_URL", "HUB_DELIVERY_DLQ_URL", "HUB_BUCKET",
        "HUB_OUTBOUND_QUEUE_URL", "HUB_OUTBOUND_DLQ_URL", "HUB_SES_INBOUND_QUEUE_URL",
        "HUB_EVENTS_QUEUE_URL", "HUB_EVENTS_DLQ_URL",
        "HUB_TIMERS_GROUP", "HUB_TIMERS_ROLE_ARN", "HUB_TIMERS_FUNCTION_ARN", "HUB_TIMERS_DLQ_ARN",
    }
    # Every variable deploy.py writes is one the hub reads: its settings, or a provider's pull entry's.
    from chalicelib.adapters.channels.registry import PULL_ENTRIES

    settings = Settings.from_environ({"HUB_RUNTIME": "aws", **{v: f"value-of-{v}" for v in deploy.OUTPUT_VARIABLES.values()}})
    pulled = {settings.queue_url(entry.environment_variable) for _, entry in PULL_ENTRIES.values()}
    assert {settings.table_name, settings.inbound_queue_url, settings.delivery_queue_url, settings.delivery_dlq_url,
            settings.outbound_queue_url, settings.outbound_dlq_url, settings.events_queue_url, settings.events_dlq_url,
            settings.timers_group, settings.timers_role_arn, settings.timers_function_arn, settings.timers_dlq_arn,
            settings.bucket, *pulled} == {f"value-of-{v}" for v in deploy.OUTPUT_VARIABLES.values()}


def test_the_scheduler_may_fire_only_the_stage_s_timers_function_and_its_dead_letters(template):
    """Scheduler assumes the timers role for this account only; the role invokes the stage's
    timers function (the name Chalice gives it) and writes the timers' dead letters, nothing else."""
    role = template["Resources"]["TimersSchedulerRole"]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    [policy] = role["Policies"]
    invoke, dead_letters = policy["PolicyDocument"]["Statement"]
    assert invoke["Action"] == "lambda:InvokeFunction"
    assert substitute(invoke["Resource"], "dev").endswith(":function:omnichannel-hub-dev-timers")
    assert dead_letters == {"Effect": "Allow", "Action": "sqs:SendMessage",
                            "Resource": {"Fn::GetAtt": ["TimersDeadLetterQueue", "Arn"]}}
    assert substitute(template["Resources"]["TimersScheduleGroup"]["Properties"]["Name"], "dev") == "hub-dev"
    assert substitute(template["Outputs"]["TimersFunctionArn"]["Value"], "dev") == substitute(invoke["Resource"], "dev")
    # The group and the role are what the workers' policies name.
    for function in ("process_inbound", "process_events"):
        policy = policy_of("dev", function)
        assert _allows(policy, "scheduler:CreateSchedule", "arn:aws:scheduler:eu-central-1:123456789012:schedule/hub-dev/c-sla-1")
        assert not _allows(policy, "scheduler:CreateSchedule", "arn:aws:scheduler:eu-central-1:123456789012:schedule/hub-prod/c")
        assert _allows(policy, "iam:PassRole", "arn:aws:iam::123456789012:role/hub-dev-timers-scheduler")


# --- deploy.py under moto ------------------------------------------------------------------------


@pytest.fixture
def chalice_copy(tmp_path) -> Path:
    path = tmp_path / "config.json"
    shutil.copy(CHALICE_DIR / "config.json", path)
    return path


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning")  # moto skips it; cfn-lint checks it
def test_deploy_creates_two_coexisting_stages_and_wires_the_chalice_config(chalice_copy, capsys):
    if importlib.util.find_spec("openapi_spec_validator") is None:
        pytest.fail("moto's CloudFormation needs the moto[cloudformation] extra in requirements-dev.txt")
    original = json.loads(chalice_copy.read_text())
    with mock_aws():
        session = boto3.Session(region_name="eu-central-1")
        for stage in DEPLOYED_STAGES:
            retention = ["--media-retention-days", "45"] if stage == "prod" else []
            assert deploy.main(["--stage", stage, "--config", str(chalice_copy), *retention], session=session) == 0
        config = json.loads(chalice_copy.read_text())

        # Everything else in the file is untouched.
        for stage in DEPLOYED_STAGES:
            env = config["stages"][stage]["environment_variables"]
            assert {k: v for k, v in env.items() if k not in deploy.OUTPUT_VARIABLES.values()} == \
                original["stages"][stage]["environment_variables"]
        assert {k: v for k, v in config.items() if k != "stages"} == {k: v for k, v in original.items() if k != "stages"}
        assert config["stages"]["local"] == original["stages"]["local"]

        dev = config["stages"]["dev"]["environment_variables"]
        prod = config["stages"]["prod"]["environment_variables"]
        assert dev["HUB_TABLE"] == "hub-dev" and prod["HUB_TABLE"] == "hub-prod"
        assert dev["HUB_BUCKET"] == "hub-dev-123456789012-eu-central-1"
        assert dev["HUB_INBOUND_QUEUE_URL"].endswith("/" + Settings(stage="dev").queue_name("inbound"))
        assert prod["HUB_DELIVERY_QUEUE_URL"].endswith("/" + Settings(stage="prod").queue_name("delivery"))
        assert prod["HUB_DELIVERY_DLQ_URL"].endswith("/hub-prod-delivery-dlq.fifo")
        assert dev["HUB_OUTBOUND_QUEUE_URL"].endswith("/" + Settings(stage="dev").queue_name("outbound"))
        assert prod["HUB_OUTBOUND_DLQ_URL"].endswith("/hub-prod-outbound-dlq.fifo")

        sqs = session.client("sqs")
        attributes = sqs.get_queue_attributes(QueueUrl=dev["HUB_INBOUND_QUEUE_URL"], AttributeNames=["All"])
        attributes = attributes["Attributes"]
        assert attributes["FifoQueue"] == "true"
        assert attributes["VisibilityTimeout"] == "180"
        assert json.loads(attributes["RedrivePolicy"]) == {
            "deadLetterTargetArn": "arn:aws:sqs:eu-central-1:123456789012:hub-dev-inbound-dlq.fifo",
            "maxReceiveCount": 17,
        }
        outbound = sqs.get_queue_attributes(QueueUrl=dev["HUB_OUTBOUND_QUEUE_URL"], AttributeNames=["All"])["Attributes"]
        assert (outbound["FifoQueue"], outbound["VisibilityTimeout"]) == ("true", "360")
        assert json.loads(outbound["RedrivePolicy"]) == {
            "deadLetterTargetArn": "arn:aws:sqs:eu-central-1:123456789012:hub-dev-outbound-dlq.fifo",
            "maxReceiveCount": 11,
        }
        cloudformation = session.client("cloudformation")
        stacks = {s["StackName"]: s for s in cloudformation.describe_stacks()["Stacks"]}
        assert {"hub-dev", "hub-prod"} <= set(stacks)
        assert stacks["hub-prod"]["EnableTerminationProtection"] is True
        assert stacks["hub-dev"]["EnableTerminationProtection"] is False
        assert {"Key": "stage", "Value": "prod"} in stacks["hub-prod"]["Tags"]
        parameters = {name: {p["ParameterKey"]: p["ParameterValue"] for p in stacks[name]["Parameters"]}
                      for name in ("hub-dev", "hub-prod")}
        assert parameters["hub-dev"]["MediaRetentionDays"] == "30"
        assert parameters["hub-prod"]["MediaRetentionDays"] == "45"
        assert parameters["hub-dev"]["SegmentIndexes"] == "2"  # a new table gets both at once

        # The adapters work against what was deployed, through the names the config now holds.
        store = DynamoDbStore(dev["HUB_TABLE"], session.client("dynamodb"))
        from datetime import datetime, timedelta, timezone

        now = datetime.now(timezone.utc)
        assert store.begin("k", now=now).done is False
        assert store.remember("k", expires_at=now + timedelta(days=7), now=now) is None
        queue = SqsQueue(sqs, dev["HUB_INBOUND_QUEUE_URL"])
        queue.send([OutgoingMessage(body="hello", group="g", dedupe_id="1")])
        assert [m.body for m in queue.receive()] == ["hello"]

        # Deploying again changes nothing. (moto compares Number parameters as numbers with the
        # strings sent, so it updates where CloudFormation answers "No updates are to be
        # performed": that answer is the Stubber test below.)
        assert deploy.main(["--stage", "dev", "--config", str(chalice_copy)], session=session) == 0
        assert json.loads(chalice_copy.read_text()) == config


def test_deploying_an_unchanged_stack_reports_it_up_to_date(tmp_path, capsys):
    client = boto3.client("cloudformation", region_name="eu-central-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    outputs = [{"OutputKey": key, "OutputValue": f"value-of-{key}"} for key in deploy.OUTPUT_VARIABLES]
    stack = {"StackName": "hub-dev", "CreationTime": "2026-01-01T00:00:00Z"}
    deployed = [{"ParameterKey": "SegmentIndexes", "ParameterValue": "2"}]
    with Stubber(client) as stub:
        stub.add_response("describe_stacks", {"Stacks": [{**stack, "StackStatus": "UPDATE_COMPLETE", "Parameters": deployed}]})
        stub.add_client_error("update_stack", "ValidationError", "No updates are to be performed.", expected_params={
            "StackName": "hub-dev", "TemplateBody": "template", "Tags": ANY, "Capabilities": ["CAPABILITY_NAMED_IAM"],
            "Parameters": [{"ParameterKey": "Stage", "ParameterValue": "dev"},
                           {"ParameterKey": "MediaRetentionDays", "ParameterValue": "30"},
                           {"ParameterKey": "SegmentIndexes", "ParameterValue": "2"}],
        })
        stub.add_response("describe_stacks", {"Stacks": [{**stack, "StackStatus": "UPDATE_COMPLETE", "Outputs": outputs}]})
        assert deploy.deploy_stack(client, "dev", "template")["BucketName"] == "value-of-BucketName"
        stub.assert_no_pending_responses()
    assert "stack hub-dev is up to date" in capsys.readouterr().err


def test_deploy_refuses_a_stack_that_failed_to_create(tmp_path, capsys):
    client = boto3.client("cloudformation", region_name="eu-central-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_response("describe_stacks", {"Stacks": [{
            "StackName": "hub-dev", "StackStatus": "ROLLBACK_COMPLETE", "CreationTime": "2026-01-01T00:00:00Z",
        }]})
        session = type("S", (), {"region_name": "eu-central-1", "client": lambda self, name: client})()
        config = tmp_path / "config.json"
        assert deploy.main(["--stage", "dev", "--config", str(config)], session=session) == 1
        stub.assert_no_pending_responses()
    assert "ROLLBACK_COMPLETE" in capsys.readouterr().err
    assert not config.exists()


def test_deploy_rejects_a_bad_stage_name():
    with pytest.raises(SystemExit):
        deploy.main(["--stage", "Dev_1", "--region", "eu-central-1"])


@pytest.mark.parametrize("days", ["7", "3651", "thirty"])
def test_deploy_rejects_a_media_retention_shorter_than_a_link_or_not_a_number(days, capsys):
    with pytest.raises(SystemExit):
        deploy.main(["--stage", "dev", "--region", "eu-central-1", "--media-retention-days", days])
    assert "--media-retention-days" in capsys.readouterr().err


def test_write_chalice_environment_refuses_incomplete_outputs(tmp_path):
    with pytest.raises(deploy.DeployError, match="HUB_BUCKET|BucketName"):
        deploy.write_chalice_environment(tmp_path / "c.json", "dev", {"TableName": "hub-dev"})


def test_write_chalice_environment_names_a_new_stage_in_hub_stage(tmp_path):
    """A stage config.json does not declare yet runs as that stage (queue names, the metrics'
    `deployment` dimension), not as the default `local`."""
    outputs = {key: f"value-of-{key}" for key in deploy.OUTPUT_VARIABLES}
    config = deploy.write_chalice_environment(tmp_path / "c.json", "staging", outputs)
    environment = config["stages"]["staging"]["environment_variables"]
    assert environment["HUB_STAGE"] == "staging" and environment["HUB_TABLE"] == "value-of-TableName"
    assert json.loads((tmp_path / "c.json").read_text()) == config


# --- .chalice/config.json and the IAM policies ---------------------------------------------------


def test_chalice_config_declares_stages_functions_and_environment(chalice_config):
    assert (chalice_config["app_name"], chalice_config["version"]) == ("omnichannel-hub", "2.0")
    assert set(chalice_config["stages"]) == {"local", "dev", "prod"}
    assert chalice_config["lambda_memory_size"] >= 256
    assert chalice_config["autogen_policy"] is False
    assert lambda_timeout(chalice_config, "api_handler") <= 5
    assert (lambda_timeout(chalice_config, "process_inbound"), lambda_timeout(chalice_config, "deliver"),
            lambda_timeout(chalice_config, "send"), lambda_timeout(chalice_config, "process_events"),
            lambda_timeout(chalice_config, "eventbridge_events"), lambda_timeout(chalice_config, "timers")) == (
        30, 60, 60, 60, 10, 10)
    common = chalice_config["environment_variables"]
    assert common["HUB_RUNTIME"] == "aws" and common["HUB_TRACING"] == "false"
    assert common["POWERTOOLS_SERVICE_NAME"] == "omnichannel-hub"
    assert common["POWERTOOLS_METRICS_NAMESPACE"] == "OmnichannelHub"
    # no pydantic plugin: discovery reads every installed distribution's entry points (docs/deploy.md)
    assert common["PYDANTIC_DISABLE_PLUGINS"] == "__all__"
    for stage, settings in chalice_config["stages"].items():
        env = settings["environment_variables"]
        assert env["HUB_STAGE"] == stage
        assert env["HUB_CONFIG"] == f"chalicelib/conf/{stage}.yaml"
    assert chalice_config["stages"]["local"]["environment_variables"]["HUB_RUNTIME"] == "embedded"
    assert (CHALICE_DIR / chalice_config["stages"]["local"]["iam_policy_file"]).is_file()


#: What no function but deliver may do: read destinations' credentials, start Connect tasks, put events.
DESTINATION_ACTIONS = {"secretsmanager:GetSecretValue", "connect:StartTaskContact", "events:PutEvents"}
#: What no function but send may do: send through a channel provider that AWS is (SES).
CHANNEL_PROVIDER_ACTIONS = {"ses:SendEmail", "ses:SendRawEmail"}
VENDOR_ACTIONS = DESTINATION_ACTIONS | CHANNEL_PROVIDER_ACTIONS


def functions() -> list[str]:
    """Every Lambda function app.py registers: the REST API's, one per queue handler, and the
    plain functions other AWS services invoke (the EventBridge bus rule's)."""
    from app import app

    return ["api_handler", *(source.name for source in app.event_sources),
            *(function.name for function in app.pure_lambda_functions)]


def policy_file(config: dict, stage: str, function: str) -> str:
    """The policy Chalice gives `function` in `stage`: its own, else the stage's."""
    stage_config = config["stages"][stage]
    own = stage_config.get("lambda_functions", {}).get(function, {}).get("iam_policy_file")
    return own or stage_config.get("iam_policy_file") or f"policy-{stage}.json"


def policy_of(stage: str, function: str) -> dict:
    config = json.loads((CHALICE_DIR / "config.json").read_text())
    return json.loads((CHALICE_DIR / policy_file(config, stage, function)).read_text())


def _resources(statement: dict) -> list[str]:
    value = statement["Resource"]
    return value if isinstance(value, list) else [value]


def _actions(policy: dict) -> set[str]:
    return {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


def _iam_match(pattern: str, value: str) -> bool:
    # IAM wildcards: * any run, ? one character (fnmatch also knows [...], which no policy uses).
    return fnmatch.fnmatchcase(value, pattern)


def _allows(policy: dict, action: str, resource: str) -> bool:
    return any(action in s["Action"] and any(_iam_match(r, resource) for r in _resources(s))
               for s in policy["Statement"])


def _secret_references(section) -> list[str]:
    """Every ssm: / secretsmanager: reference in a configuration section."""
    from collections.abc import Mapping

    from pydantic import BaseModel, SecretStr

    if isinstance(section, SecretStr):
        value = section.get_secret_value()
        return [value] if value.startswith(("ssm:", "secretsmanager:")) else []
    if isinstance(section, BaseModel):
        return [r for name in type(section).model_fields for r in _secret_references(getattr(section, name))]
    if isinstance(section, Mapping):
        return [r for value in section.values() for r in _secret_references(value)]
    if isinstance(section, (list, tuple)):
        return [r for value in section for r in _secret_references(value)]
    return []


@pytest.mark.parametrize("stage", DEPLOYED_STAGES)
def test_each_function_has_a_policy_of_its_own(stage, chalice_config):
    files = {function: policy_file(chalice_config, stage, function) for function in functions()}
    assert len(set(files.values())) == len(files), "functions share a role"
    assert all((CHALICE_DIR / name).is_file() for name in files.values())
    # A function added without a policy of its own must fail to deploy, not get someone else's.
    assert "iam_policy_file" not in chalice_config["stages"][stage]
    assert not (CHALICE_DIR / f"policy-{stage}.json").exists()


@pytest.mark.parametrize("stage", DEPLOYED_STAGES)
def test_the_api_function_reads_no_vendor_secret_and_calls_no_vendor(stage):
    """The webhook and consumer API function faces the internet: it verifies webhooks with the
    channels' secrets, but must not be able to read the destinations' credentials, start Connect
    tasks, put events or call Comprehend (only the workers do)."""
    from chalicelib.hubconfig import load_config

    api = policy_of(stage, "api_handler")
    actions = _actions(api)
    assert not actions & VENDOR_ACTIONS
    assert not {a for a in actions if a.startswith("comprehend:")}
    config = load_config(ROOT / "chalicelib" / "conf" / f"{stage}.yaml")
    destination_secrets = _secret_references(config.destinations)
    assert destination_secrets, "the stage configuration has no destination secret to test with"
    for reference in destination_secrets:
        scheme, name = reference.split(":", 1)
        arn = (f"arn:aws:ssm:eu-central-1:123456789012:parameter/{name.lstrip('/')}" if scheme == "ssm"
               else f"arn:aws:secretsmanager:eu-central-1:123456789012:secret:{name}-AbC123")
        action = "ssm:GetParameter" if scheme == "ssm" else "secretsmanager:GetSecretValue"
        assert not _allows(api, action, arn), reference
        assert _allows(policy_of(stage, "deliver"), action, arn), reference
    channel_secrets = _secret_references(config.channels)
    assert channel_secrets, "the stage configuration has no channel secret to test with"
    for reference in channel_secrets:
        _, name = reference.split(":", 1)
        assert _allows(api, "ssm:GetParameter", f"arn:aws:ssm:eu-central-1:123456789012:parameter/{name.lstrip('/')}")


@pytest.mark.parametrize("stage", DEPLOYED_STAGES)
def test_only_deliver_and_send_may_call_vendors_each_its_own(stage):
    """The two outbound workers are the only ones that reach vendors, and not each other's:
    deliver calls destinations (their credentials, Connect, EventBridge), send calls channel
    providers (their credentials live in SSM like every channel secret; SES)."""
    for function in functions():
        actions = _actions(policy_of(stage, function))
        if function != "deliver":
            assert not actions & DESTINATION_ACTIONS, function
        if function != "send":
            assert not actions & CHANNEL_PROVIDER_ACTIONS, function


def test_only_send_may_send_email_when_ses_sends(tmp_path):
    """The rule above, with a configuration whose SES section sends (the stages' do not yet)."""
    from chalicelib.hubconfig import load_config
    from tests.integration.test_function_policies import policies

    config = tmp_path / "dev.yaml"
    config.write_text("channels:\n  ses: {sending_addresses: [support@acme.example]}\n")
    granted = policies.policies_for("dev", load_config(config, allow_inline_secrets=False))
    assert {function for function, policy in granted.items() if _actions(policy) & CHANNEL_PROVIDER_ACTIONS} == {"send"}
    assert {function for function, policy in granted.items() if _actions(policy) & DESTINATION_ACTIONS} <= {"deliver"}


@pytest.mark.parametrize("stage", DEPLOYED_STAGES)
def test_the_send_function_reads_no_destination_secret_and_only_its_partitions(stage):
    """The send worker reaches channel providers: a destination's credentials are none of its
    business, and its table access is limited to the partitions its messages live in."""
    from chalicelib.hubconfig import load_config

    send = policy_of(stage, "send")
    config = load_config(ROOT / "chalicelib" / "conf" / f"{stage}.yaml")
    for reference in _secret_references(config.destinations):
        scheme, name = reference.split(":", 1)
        arn = (f"arn:aws:ssm:eu-central-1:123456789012:parameter/{name.lstrip('/')}" if scheme == "ssm"
               else f"arn:aws:secretsmanager:eu-central-1:123456789012:secret:{name}-AbC123")
        assert not _allows(send, "ssm:GetParameter" if scheme == "ssm" else "secretsmanager:GetSecretValue", arn)
    reached = set()
    for statement in send["Statement"]:
        if any(r.startswith("arn:aws:dynamodb:") for r in _resources(statement)):
            reached |= set(statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"])
    # Never the identifier index, dedupe markers, merges, the exception queue... Thread keys yes:
    # the Message-ID SES gives an email becomes one, with the send's record.
    assert not {"IDENT#*", "DEDUPE#*", "MERGE#*", "PARKED", "REMEMBER#*", "*"} & reached
    assert "THREAD#*" in reached


@pytest.mark.parametrize("stage", DEPLOYED_STAGES)
def test_every_bucket_statement_is_pinned_to_the_deploying_account(stage):
    """Bucket ARNs have no account field: the name pattern hub-<stage>-????????????-* would match
    a bucket someone else created in their account. aws:ResourceAccount pins it to ours."""
    for function in functions():
        for statement in policy_of(stage, function)["Statement"]:
            if any(r.startswith("arn:aws:s3:") for r in _resources(statement)):
                assert statement.get("Condition") == {
                    "StringEquals": {"aws:ResourceAccount": "${aws:PrincipalAccount}"}
                }, (function, statement.get("Sid"))


@pytest.mark.parametrize("stage", DEPLOYED_STAGES)
def test_policies_name_only_the_stage_resources(stage, template):
    queue_names = {substitute(q["Properties"]["QueueName"], stage)
                   for q in resources_of(template, "AWS::SQS::Queue").values()}
    [bucket] = resources_of(template, "AWS::S3::Bucket").values()
    own_bucket = substitute(bucket["Properties"]["BucketName"], stage)
    other_stage_bucket = substitute(bucket["Properties"]["BucketName"], f"{stage}-2")
    for function in functions():
        policy = policy_of(stage, function)
        assert all("*" not in action for action in _actions(policy))
        assert all(s["Effect"] == "Allow" for s in policy["Statement"])
        assert not {"dynamodb:Scan", "dynamodb:DescribeTable", "dynamodb:DeleteTable"} & _actions(policy)
        log_group = "omnichannel-hub-" + stage + ("" if function == "api_handler" else f"-{function}")
        for statement in policy["Statement"]:
            for resource in _resources(statement):
                service = resource.split(":")[2] if resource != "*" else None
                if service == "dynamodb":
                    # The table, or its segment indexes (a broadcast's pages).
                    assert resource in (f"arn:aws:dynamodb:*:*:table/hub-{stage}",
                                        f"arn:aws:dynamodb:*:*:table/hub-{stage}/index/segment*"), resource
                elif service == "sqs":
                    assert resource.startswith("arn:aws:sqs:*:*:") and resource.rsplit(":", 1)[-1] in queue_names
                elif service == "s3":
                    assert _iam_match(resource.split("/", 1)[0], f"arn:aws:s3:::{own_bucket}"), resource
                    assert not _iam_match(resource.split("/", 1)[0], f"arn:aws:s3:::{other_stage_bucket}"), resource
                elif service == "ssm":
                    assert resource.startswith(f"arn:aws:ssm:*:*:parameter/hub/{stage}/"), resource
                elif service == "secretsmanager":
                    assert resource.startswith(f"arn:aws:secretsmanager:*:*:secret:hub/{stage}/"), resource
                elif service == "logs":
                    assert resource == f"arn:aws:logs:*:*:log-group:/aws/lambda/{log_group}:*"
                elif service == "ses":
                    assert resource.startswith(("arn:aws:ses:*:*:identity/", "arn:aws:ses:*:*:configuration-set/"))


@pytest.mark.parametrize("stage", DEPLOYED_STAGES)
def test_each_worker_lets_its_event_source_mapping_read_its_queue(stage):
    """Lambda's event source mapping polls with the function's own role."""
    from app import app

    for source in app.event_sources:
        queue = f"arn:aws:sqs:*:*:{source.queue.replace('-local-', f'-{stage}-')}"
        policy = policy_of(stage, source.name)
        for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                       "sqs:ChangeMessageVisibility"):
            assert any(action in s["Action"] and queue in _resources(s) for s in policy["Statement"]), (source.name, action)


def test_the_committed_policies_are_generated_from_each_stage_configuration():
    """infra/policies.py writes them from each stage's configuration (what it references) and
    the code's needs; a hand edit or a configuration change without regenerating fails here."""
    result = subprocess.run([sys.executable, str(ROOT / "infra" / "policies.py"), "--check"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


# --- chalice package -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packaged(tmp_path_factory) -> Path:
    """`chalice package --stage dev` on a copy of the project, so its package cache
    (.chalice/deployments/, one zip per code change) never accumulates in the working tree."""
    project = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "app.py", project)
    shutil.copy(ROOT / "requirements.txt", project)
    shutil.copytree(ROOT / "chalicelib", project / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    (project / ".chalice").mkdir()
    for path in CHALICE_DIR.glob("*.json"):
        shutil.copy(path, project / ".chalice")
    out = tmp_path_factory.mktemp("chalice-package")
    env = {**os.environ, "AWS_DEFAULT_REGION": "eu-central-1", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing"}
    env.pop("AWS_PROFILE", None)
    result = subprocess.run(
        [str(BIN / "chalice"), "package", "--stage", "dev", str(out)],
        cwd=project, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out / "sam.json"


@pytest.fixture(scope="module")
def packaged_findings(packaged) -> list[dict]:
    result = subprocess.run([str(BIN / "cfn-lint"), "--format", "json", str(packaged)],
                            capture_output=True, text=True, timeout=300)
    return json.loads(result.stdout or "[]")


@pytest.mark.slow
def test_chalice_package_wires_functions_to_the_infra_queues(packaged, chalice_config):
    resources = json.loads(packaged.read_text())["Resources"]
    functions = {k: v["Properties"] for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function"}
    assert {k: p["Timeout"] for k, p in functions.items()} == {
        "APIHandler": 5, "ProcessInbound": 30, "Deliver": 60, "Send": 60, "SesInbound": 30, "ProcessEvents": 60,
        "EventbridgeEvents": 10, "Timers": 10,
    }
    # Parsing a stored email of up to 40 MB takes ~10 times its size in memory.
    assert {k: p["MemorySize"] for k, p in functions.items()} == {
        "APIHandler": 256, "ProcessInbound": 256, "Deliver": 256, "Send": 256, "SesInbound": 1024,
        "ProcessEvents": 256, "EventbridgeEvents": 256, "Timers": 256,
    }
    for queue, function in (("inbound.fifo", "ProcessInbound"), ("delivery.fifo", "Deliver"),
                            ("outbound.fifo", "Send"), ("ses-inbound", "SesInbound"),
                            ("events.fifo", "ProcessEvents")):
        [event] = functions[function]["Events"].values()
        assert event["Properties"]["Queue"]["Fn::Sub"].endswith(":hub-dev-" + queue)
        assert event["Properties"]["BatchSize"] <= 10
    # One role per function, each with the function's own policy.
    roles = {k: v["Properties"] for k, v in resources.items() if v["Type"] == "AWS::IAM::Role"}
    names = {"APIHandler": "api_handler", "ProcessInbound": "process_inbound", "Deliver": "deliver",
             "Send": "send", "SesInbound": "ses_inbound", "ProcessEvents": "process_events",
             "EventbridgeEvents": "eventbridge_events", "Timers": "timers"}
    for logical, function in names.items():
        role = functions[logical]["Role"]["Fn::GetAtt"][0]
        assert roles[role]["Policies"][0]["PolicyDocument"] == policy_of("dev", function)
    assert len(roles) == len(names)



@pytest.mark.slow
def test_the_api_hands_multipart_webhooks_over_as_binary(packaged):
    """Mailgun and SendGrid attachments are bytes: API Gateway must base64 them, not text them."""
    resources = json.loads(packaged.read_text())["Resources"]
    [api] = [v["Properties"] for v in resources.values() if v["Type"] == "AWS::Serverless::Api"]
    swagger = api["DefinitionBody"]
    assert "multipart/form-data" in swagger["x-amazon-apigateway-binary-media-types"]
    assert swagger["paths"]["/webhooks/{provider}"]["post"]["consumes"] == ["*/*"]

#: The Lambda zip's budget: cold start and deploy time grow with it. 11.7 MiB on 2026-12-06: the
#: `cryptography` package (4.7 MB zipped, for the SNS and SendGrid signatures), pydantic-core,
#: the hub's code with its language model, Powertools, PyYAML, DKIM and DNS. 11.98 MiB
#: (12,558,133 bytes) on 2026-12-07 with issue 12's senders: 24 KB below the budget. 12.05 MiB
#: (12,639,410 bytes) with issue 13's two-way sync (eight vendors' callback modules, 81 KB): the
#: budget moved to 12.25 MiB. The largest piece the hub could still drop is PyYAML's C loader
#: (760 KB, `yaml/_yaml.*.so`); config loading would then use the pure-Python SafeLoader.
MAX_ZIP_BYTES = 12 * 1024 * 1024 + 256 * 1024


@pytest.mark.slow
def test_the_lambda_package_stays_lean_and_never_bundles_the_aws_sdk(packaged):
    import zipfile

    deployment = packaged.parent / "deployment.zip"
    with zipfile.ZipFile(deployment) as archive:
        top_level = {info.filename.split("/")[0] for info in archive.infolist()}

    assert deployment.stat().st_size <= MAX_ZIP_BYTES
    assert not top_level & {"botocore", "boto3", "s3transfer", "moto", "pytest"}, "Lambda provides boto3"
    assert "chalicelib" in top_level


#: cfn-lint's Lambda runtime deprecation rules (E2531/E2533 creation/update disabled, W2531 EOL).
_RUNTIME_RULES = {"E2531", "E2533", "W2531"}


@pytest.mark.slow
def test_chalice_package_output_lints_clean_apart_from_the_runtime(packaged_findings):
    assert [f for f in packaged_findings if f["Rule"]["Id"] not in _RUNTIME_RULES] == []


@pytest.mark.slow
@pytest.mark.xfail(
    sys.version_info[:2] <= (3, 11), strict=True,
    reason="Chalice packages for the interpreter it runs on; Lambda's python3.11 runtime can no longer be "
           "created (cfn-lint E2533). Run chalice from Python 3.12/3.13 (docs/deploy.md).",
)
def test_chalice_package_uses_a_creatable_lambda_runtime(packaged_findings):
    assert [f["Rule"]["Id"] for f in packaged_findings if f["Rule"]["Id"] in _RUNTIME_RULES] == []
