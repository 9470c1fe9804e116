"""The monitoring stack (infra/monitoring.yaml) as AWS takes it: cfn-lint, a deployment under moto
through `infra/deploy.py --monitoring`, and every alarm as CloudWatch's PutMetricAlarm receives it
(moto's CloudFormation skips AWS::CloudWatch::Alarm, so each alarm's properties are resolved here
and sent to moto's CloudWatch, which botocore validates against the API's model first)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from tests.support.cloudformation import load_template
from tests.support.infra_scripts import load_infra_script

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MONITORING = ROOT / "infra" / "monitoring.yaml"
STATEFUL = ROOT / "infra" / "stateful.yaml"
REGION = "eu-central-1"
ACCOUNT = "123456789012"

deploy = load_infra_script("deploy")


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template(MONITORING)


def test_cfn_lint_is_clean_on_the_monitoring_template():
    result = subprocess.run([str(BIN / "cfn-lint"), str(MONITORING)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the alarms as PutMetricAlarm takes them -----------------------------------------------------

def resolve(value, parameters: dict, conditions: dict, resources: dict):
    """`value` with Ref, Fn::Sub and Fn::If resolved as CloudFormation would (None: AWS::NoValue)."""
    if isinstance(value, list):
        return [v for v in (resolve(item, parameters, conditions, resources) for item in value) if v is not None]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        name = value["Ref"]
        return None if name == "AWS::NoValue" else parameters.get(name, resources.get(name))
    if set(value) == {"Fn::Sub"}:
        text = value["Fn::Sub"]
        for name, replacement in {**parameters, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}.items():
            text = text.replace("${" + name + "}", str(replacement))
        assert "${" not in text.replace("${!", ""), text
        return text.replace("${!", "${")  # Fn::Sub's literal: the dashboard's dynamic labels
    if set(value) == {"Fn::If"}:
        condition, when, otherwise = value["Fn::If"]
        return resolve(when if conditions[condition] else otherwise, parameters, conditions, resources)
    return {k: v for k, v in ((k, resolve(v, parameters, conditions, resources)) for k, v in value.items())
            if v is not None}


def put_alarms(template: dict, cloudwatch, *, topic_arn: str = "", email: str = "") -> list[str]:
    parameters = {name: p.get("Default") for name, p in template["Parameters"].items()}
    parameters.update({"Stage": "prod", "AlarmTopicArn": topic_arn, "AlarmEmail": email})
    conditions = {"HasAlarmTopicArn": bool(topic_arn), "CreatesAlarmTopic": not topic_arn and bool(email)}
    conditions["HasAlarmActions"] = conditions["HasAlarmTopicArn"] or conditions["CreatesAlarmTopic"]
    created_topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:hub-prod-alarms"
    names = []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        properties = resolve(resource["Properties"], parameters, conditions, {"AlarmTopic": created_topic})
        cloudwatch.put_metric_alarm(**properties)  # botocore refuses any property PutMetricAlarm does not take
        names.append(properties["AlarmName"])
    return names


@pytest.mark.parametrize(("topic_arn", "email", "actions"), [
    ("", "", []),
    ("", "ops@example.com", [f"arn:aws:sns:{REGION}:{ACCOUNT}:hub-prod-alarms"]),
    (f"arn:aws:sns:{REGION}:{ACCOUNT}:oncall", "", [f"arn:aws:sns:{REGION}:{ACCOUNT}:oncall"]),
])
def test_every_alarm_is_a_valid_put_metric_alarm_with_its_actions(template, topic_arn, email, actions):
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name=REGION)
        names = put_alarms(template, cloudwatch, topic_arn=topic_arn, email=email)
        described = {a["AlarmName"]: a for a in cloudwatch.describe_alarms(MaxRecords=100)["MetricAlarms"]}
    assert sorted(described) == sorted(names) and len(names) == len(set(names))
    for alarm in described.values():
        assert alarm["AlarmActions"] == actions and alarm["OKActions"] == actions, alarm["AlarmName"]
        assert alarm["TreatMissingData"] == "notBreaching"
    assert described["hub-prod-delivery-dlq-messages"]["Threshold"] == 0
    assert described["hub-prod-delivery-oldest-message"]["Threshold"] == 1800
    assert described["hub-prod-delivery-oldest-message"]["Dimensions"] == [
        {"Name": "QueueName", "Value": "hub-prod-delivery.fifo"}]
    assert described["hub-prod-api-handler-errors"]["Dimensions"] == [
        {"Name": "FunctionName", "Value": "omnichannel-hub-prod"}]
    assert described["hub-prod-deliver-throttles"]["Dimensions"] == [
        {"Name": "FunctionName", "Value": "omnichannel-hub-prod-deliver"}]


def test_the_dashboard_body_is_a_valid_put_dashboard(template):
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    text = resolve(body, {"Stage": "prod"}, {}, {})
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name=REGION)
        assert cloudwatch.put_dashboard(DashboardName="hub-prod", DashboardBody=text)["DashboardValidationMessages"] == []
        assert json.loads(cloudwatch.get_dashboard(DashboardName="hub-prod")["DashboardBody"]) == json.loads(text)


# --- deploy.py --monitoring ----------------------------------------------------------------------

@pytest.mark.slow
# moto skips what it does not model (the alarms among them): cfn-lint and the PutMetricAlarm test above check those.
@pytest.mark.filterwarnings("ignore:Tried to parse AWS:UserWarning")
def test_deploy_creates_the_monitoring_stack_after_the_stage_and_keeps_settings_on_update(tmp_path, capsys):
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        config = tmp_path / "config.json"
        assert deploy.main(["--stage", "dev", "--config", str(config), "--monitoring"], session=session) == 1
        assert "stack hub-dev does not exist: deploy the stage first" in capsys.readouterr().err

        assert deploy.main(["--stage", "dev", "--config", str(config)], session=session) == 0
        written = config.read_text()
        assert deploy.main(["--stage", "dev", "--config", str(config), "--monitoring", "--alarm-email", "ops@example.com",
                            "--alarm-setting", "DeliveryOldestMessageSeconds=3600"], session=session) == 0
        out = capsys.readouterr()
        assert f"DashboardUrl = https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}" \
               "#dashboards:name=hub-dev" in out.out
        assert "ops@example.com receives a subscription confirmation" in out.err
        assert config.read_text() == written  # the monitoring deploy leaves the Chalice config alone

        cloudformation = session.client("cloudformation")
        stack = cloudformation.describe_stacks(StackName="hub-dev-monitoring")["Stacks"][0]
        parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
        assert parameters["AlarmEmail"] == "ops@example.com" and parameters["AlarmTopicArn"] == ""
        assert parameters["DeliveryOldestMessageSeconds"] == "3600"
        assert {"Key": "stage", "Value": "dev"} in stack["Tags"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        assert outputs["AlarmTopicArn"] == f"arn:aws:sns:{REGION}:{ACCOUNT}:hub-dev-alarms"
        topics = [t["TopicArn"] for t in session.client("sns").list_topics()["Topics"]]
        assert outputs["AlarmTopicArn"] in topics
        cloudwatch = session.client("cloudwatch")
        body = json.loads(cloudwatch.get_dashboard(DashboardName="hub-dev")["DashboardBody"])
        lines = [line for w in body["widgets"] for line in w["properties"].get("metrics", [])]
        assert ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "hub-dev-delivery-dlq.fifo"] in lines
        # The template went through the stage's bucket and was removed again.
        bucket = f"hub-dev-{ACCOUNT}-{REGION}"
        assert session.client("s3").list_objects_v2(Bucket=bucket, Prefix="deploy/")["KeyCount"] == 0

        # An update that names one setting keeps the others as deployed.
        assert deploy.main(["--stage", "dev", "--config", str(config), "--monitoring",
                            "--alarm-setting", "LambdaErrorsPerPeriod=10"], session=session) == 0
        stack = cloudformation.describe_stacks(StackName="hub-dev-monitoring")["Stacks"][0]
        parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
        assert parameters["LambdaErrorsPerPeriod"] == "10"
        assert parameters["DeliveryOldestMessageSeconds"] == "3600"
        assert parameters["AlarmEmail"] == "ops@example.com"


def test_an_update_sends_given_settings_and_keeps_the_rest(capsys):
    template_body = MONITORING.read_text()
    declared = deploy.template_parameters(template_body)
    cloudformation = boto3.client("cloudformation", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    s3 = boto3.client("s3", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stateful = {"StackName": "hub-dev", "CreationTime": "2026-01-01T00:00:00Z", "StackStatus": "UPDATE_COMPLETE",
                "Outputs": [{"OutputKey": "BucketName", "OutputValue": "hub-dev-bucket"}]}
    monitoring = {"StackName": "hub-dev-monitoring", "CreationTime": "2026-01-01T00:00:00Z",
                  "StackStatus": "CREATE_COMPLETE",
                  "Parameters": [{"ParameterKey": key, "ParameterValue": "1"} for key in declared if key != "Stage"]
                  + [{"ParameterKey": "Retired", "ParameterValue": "1"}]}
    expected = [{"ParameterKey": "Stage", "ParameterValue": "dev"},
                {"ParameterKey": "LambdaErrorsPerPeriod", "ParameterValue": "10"}]
    # Overridden before (1 is no default): kept. At its default (DeadLettersPerPeriod 0): the default.
    monitoring["Parameters"][[p["ParameterKey"] for p in monitoring["Parameters"]].index("DeadLettersPerPeriod")] = \
        {"ParameterKey": "DeadLettersPerPeriod", "ParameterValue": "0"}
    expected += [{"ParameterKey": key, "UsePreviousValue": True}
                 for key in declared if key not in ("Stage", "LambdaErrorsPerPeriod", "DeadLettersPerPeriod")]
    assert all(str(declared[p["ParameterKey"]].get("Default")) != "1" for p in expected[2:])
    with Stubber(cloudformation) as cfn, Stubber(s3) as bucket:
        cfn.add_response("describe_stacks", {"Stacks": [stateful]}, {"StackName": "hub-dev"})
        cfn.add_response("describe_stacks", {"Stacks": [stateful]}, {"StackName": "hub-dev"})
        cfn.add_response("describe_stacks", {"Stacks": [monitoring]}, {"StackName": "hub-dev-monitoring"})
        bucket.add_response("put_object", {}, {"Bucket": "hub-dev-bucket", "Key": ANY,
                                                "Body": template_body.encode(), "ContentType": "text/yaml"})
        cfn.add_client_error("update_stack", "ValidationError", "No updates are to be performed.", expected_params={
            "StackName": "hub-dev-monitoring", "Parameters": expected,
            "TemplateURL": ANY, "Tags": ANY})
        bucket.add_response("delete_object", {}, {"Bucket": "hub-dev-bucket", "Key": ANY})
        cfn.add_response("describe_stacks", {"Stacks": [{**monitoring, "Outputs": [
            {"OutputKey": "DashboardName", "OutputValue": "hub-dev"}]}]}, {"StackName": "hub-dev-monitoring"})
        outputs = deploy.deploy_monitoring(cloudformation, s3, "dev", template_body,
                                           parameters={"LambdaErrorsPerPeriod": "10"})
        cfn.assert_no_pending_responses()
        bucket.assert_no_pending_responses()
    assert outputs == {"DashboardName": "hub-dev"}
    assert "stack hub-dev-monitoring is up to date" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--alarm-email", "ops@example.com"], "need --monitoring"),
    (["--alarm-setting", "LambdaErrorsPerPeriod=1"], "need --monitoring"),
    (["--monitoring", "--alarm-setting", "LambdaErrors=1"], "--alarm-setting LambdaErrors: no such setting; the settings are"),
    (["--monitoring", "--alarm-setting", "LambdaErrorsPerPeriod"], "expected NAME=VALUE"),
    (["--monitoring", "--alarm-setting", "LambdaErrorsPerPeriod=many"], "LambdaErrorsPerPeriod must be a number, not 'many'"),
    (["--monitoring", "--alarm-setting", "LambdaErrorsPerPeriod=-1"], "LambdaErrorsPerPeriod must be at least 0, not -1"),
    (["--monitoring", "--alarm-setting", "AlarmEmail=x@example.com"], "no such setting"),
    (["--monitoring", "--alarm-email", "ops"], "AlarmEmail 'ops': empty, or an email address"),
    (["--monitoring", "--alarm-topic-arn", "oncall"], "AlarmTopicArn 'oncall': empty, or an SNS topic ARN"),
    (["--monitoring", "--alarm-email", "ops@example.com", "--alarm-topic-arn", "arn:aws:sns:x"], "not allowed with"),
])
def test_deploy_refuses_bad_monitoring_options_before_touching_aws(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        deploy.main(["--stage", "dev", *argv], session=object())  # a session would fail on first use
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_no_alarm_actions_clears_both_targets():
    given = deploy.monitoring_parameters(MONITORING.read_text(), [], no_actions=True)
    assert given == {"AlarmEmail": "", "AlarmTopicArn": ""}
    given = deploy.monitoring_parameters(MONITORING.read_text(), [], email="ops@example.com")
    assert given == {"AlarmEmail": "ops@example.com", "AlarmTopicArn": ""}  # an email replaces a topic given before
