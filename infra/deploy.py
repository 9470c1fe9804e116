"""Deploy the hub's stateful resources for one stage and point the Chalice stage at them.

    python infra/deploy.py --stage dev [--region eu-central-1]
    chalice deploy --stage dev

Creates or updates the CloudFormation stack `hub-<stage>` from `infra/stateful.yaml`, waits for it,
then writes its outputs into `.chalice/config.json` → stages.<stage>.environment_variables
(HUB_TABLE, HUB_INBOUND_QUEUE_URL, HUB_DELIVERY_QUEUE_URL, HUB_DELIVERY_DLQ_URL,
HUB_OUTBOUND_QUEUE_URL, HUB_OUTBOUND_DLQ_URL, HUB_BUCKET, HUB_SES_INBOUND_QUEUE_URL), keeping
everything else in the file as it was. Running it again without a template change changes nothing.

With `--monitoring` (after `chalice deploy`), it deploys the stage's dashboard and alarms instead:
the stack `hub-<stage>-monitoring` from `infra/monitoring.yaml`, notifying an SNS topic
(`--alarm-topic-arn`) or an email address (`--alarm-email`, which creates the topic), with any
threshold overridden (`--alarm-setting NAME=VALUE`). Settings not given keep what they were set to before.

The table's segment indexes (`--segment-indexes`, default 2: one per `customers.indexed_attributes`
entry) are added or removed one per stack update, because CloudFormation changes at most one
global secondary index of a table per update: going from 0 to 2 runs two updates.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "stateful.yaml"
CHALICE_CONFIG = ROOT / ".chalice" / "config.json"
MONITORING_TEMPLATE = ROOT / "infra" / "monitoring.yaml"
#: The monitoring parameters `--alarm-email`, `--alarm-topic-arn` and `--no-alarm-actions` set.
ALARM_TARGETS = ("AlarmEmail", "AlarmTopicArn")

#: Stack output → the environment variable chalicelib/settings.py reads.
OUTPUT_VARIABLES = {
    "TableName": "HUB_TABLE",
    "InboundQueueUrl": "HUB_INBOUND_QUEUE_URL",
    "DeliveryQueueUrl": "HUB_DELIVERY_QUEUE_URL",
    # The deliver worker dead-letters a job itself once it gives up (service/deliver.py).
    "DeliveryDeadLetterQueueUrl": "HUB_DELIVERY_DLQ_URL",
    # The send API and auto-replies queue messages; the send worker consumes them and, like the
    # deliver worker, dead-letters a message itself once it gives up (service/send_worker.py).
    "OutboundQueueUrl": "HUB_OUTBOUND_QUEUE_URL",
    "OutboundDeadLetterQueueUrl": "HUB_OUTBOUND_DLQ_URL",
    # Business events: the API, the EventBridge function and the timers enqueue; process_events
    # consumes (and enqueues broadcast pages and members on the same queue).
    "EventsQueueUrl": "HUB_EVENTS_QUEUE_URL",
    "EventsDeadLetterQueueUrl": "HUB_EVENTS_DLQ_URL",
    # Case timers: the schedule group, the role Scheduler assumes, the function it invokes and the
    # queue of timers it could not deliver (adapters/timers/scheduler.py).
    "TimersGroupName": "HUB_TIMERS_GROUP",
    "TimersRoleArn": "HUB_TIMERS_ROLE_ARN",
    "TimersFunctionArn": "HUB_TIMERS_FUNCTION_ARN",
    "TimersDeadLetterQueueArn": "HUB_TIMERS_DLQ_ARN",
    "BucketName": "HUB_BUCKET",
    # The ses_inbound worker deletes each notification it finished (partial batches).
    "SesInboundQueueUrl": "HUB_SES_INBOUND_QUEUE_URL",
}
_STAGE = re.compile(r"[a-z0-9-]{1,20}")
_NO_UPDATES = "No updates are to be performed"
#: A stack in one of these states cannot be updated; it must be deleted (its data is retained).
_DEAD_STATES = {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED"}


class DeployError(Exception):
    pass


def stack_name(stage: str) -> str:
    return f"hub-{stage}"


def deploy_stack(
    cloudformation: Any, stage: str, template_body: str, *, wait_delay: int = 5, media_retention_days: int = 30,
    segment_indexes: int = 2,
) -> dict[str, str]:
    """Create or update the stage's stack, wait until it settles, and return its outputs. An
    update that changes the number of segment indexes runs once per index added or removed."""
    if segment_indexes not in (0, 1, 2):
        raise DeployError(f"segment indexes must be 0, 1 or 2, not {segment_indexes}")
    name = stack_name(stage)

    def params(indexes: int) -> dict:
        return {
            "StackName": name,
            "TemplateBody": template_body,
            "Parameters": [
                {"ParameterKey": "Stage", "ParameterValue": stage},
                {"ParameterKey": "MediaRetentionDays", "ParameterValue": str(media_retention_days)},
                {"ParameterKey": "SegmentIndexes", "ParameterValue": str(indexes)},
            ],
            "Tags": [{"Key": "project", "Value": "omnichannel-hub"}, {"Key": "stage", "Value": stage}],
            # The timers' scheduler role has a name of its own (hub-<stage>-timers-scheduler), which the
            # policies' iam:PassRole names.
            "Capabilities": ["CAPABILITY_NAMED_IAM"],
        }

    waiter_config = {"Delay": wait_delay, "MaxAttempts": 720 // max(1, wait_delay) + 1}
    stack = _stack(cloudformation, name)
    status = stack["StackStatus"] if stack is not None else None
    if status in _DEAD_STATES:
        raise DeployError(
            f"stack {name} is {status}; delete it (`aws cloudformation delete-stack --stack-name {name}`; "
            "the table and bucket are retained) and run this again"
        )
    if status is None:
        # A new table may have both indexes at once.
        print(f"creating stack {name}…", file=sys.stderr)
        cloudformation.create_stack(**params(segment_indexes), EnableTerminationProtection=(stage == "prod"))
        cloudformation.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig=waiter_config)
        return stack_outputs(cloudformation, name)
    for indexes in index_steps(_deployed_indexes(stack), segment_indexes):
        print(f"updating stack {name} ({status}, {indexes} segment indexes)…", file=sys.stderr)
        update_stack(cloudformation, name, params(indexes), waiter_config)
    return stack_outputs(cloudformation, name)


def update_stack(cloudformation: Any, name: str, params: Mapping[str, Any], waiter_config: Mapping[str, int]) -> None:
    """Update the stack and wait for it; CloudFormation's "no updates" answer is an up-to-date stack."""
    try:
        cloudformation.update_stack(**params)
    except ClientError as exc:
        if _NO_UPDATES not in str(exc):
            raise
        print(f"stack {name} is up to date", file=sys.stderr)
    else:
        cloudformation.get_waiter("stack_update_complete").wait(StackName=name, WaiterConfig=waiter_config)


def index_steps(deployed: int, wanted: int) -> list[int]:
    """The `SegmentIndexes` value of each update from `deployed` to `wanted` indexes, one index
    more or less per update (at least one update, which applies any other template change)."""
    step = 1 if wanted >= deployed else -1
    return list(range(deployed + step, wanted + step, step)) or [wanted]


def _deployed_indexes(stack: dict) -> int:
    """The stack's `SegmentIndexes`; 0 for a stack deployed before the parameter existed."""
    for parameter in stack.get("Parameters") or []:
        if parameter.get("ParameterKey") == "SegmentIndexes":
            return int(parameter.get("ParameterValue") or 0)
    return 0


def stack_outputs(cloudformation: Any, name: str) -> dict[str, str]:
    stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _stack(cloudformation: Any, name: str) -> dict | None:
    """The stack as described, None when there is none to update."""
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    status = stacks[0]["StackStatus"] if stacks else None
    # A stack deleted earlier is gone for our purposes; REVIEW_IN_PROGRESS has no resources yet.
    return None if status in (None, "DELETE_COMPLETE", "REVIEW_IN_PROGRESS") else stacks[0]


def monitoring_stack_name(stage: str) -> str:
    return f"hub-{stage}-monitoring"


def template_parameters(template_body: str) -> dict[str, dict]:
    """The template's parameters (the monitoring template is generated in long form: plain YAML)."""
    import yaml

    return (yaml.safe_load(template_body) or {}).get("Parameters") or {}


def monitoring_parameters(template_body: str, settings: Sequence[str], *, email: str | None = None,
                          topic_arn: str | None = None, no_actions: bool = False) -> dict[str, str]:
    """The parameters given on the command line, checked against the template's own constraints
    (a mistyped name or a bad value is refused here, before anything is uploaded or changed)."""
    declared = template_parameters(template_body)
    tunable = sorted(name for name in declared if name not in ("Stage", *ALARM_TARGETS))
    given: dict[str, str] = {}
    for setting in settings:
        name, sep, value = setting.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise DeployError(f"--alarm-setting {setting!r}: expected NAME=VALUE")
        if name not in tunable:
            raise DeployError(f"--alarm-setting {name}: no such setting; the settings are {', '.join(tunable)}")
        given[name] = value
    if no_actions:
        given.update({target: "" for target in ALARM_TARGETS})
    if email is not None:
        given.update({"AlarmEmail": email, "AlarmTopicArn": ""})
    if topic_arn is not None:
        given["AlarmTopicArn"] = topic_arn
    for name, value in given.items():
        _check_parameter(name, value, declared[name])
    return given


def _check_parameter(name: str, value: str, declaration: Mapping[str, Any]) -> None:
    if declaration.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            raise DeployError(f"{name} must be a number, not {value!r}") from None
        if "MinValue" in declaration and number < float(declaration["MinValue"]):
            raise DeployError(f"{name} must be at least {declaration['MinValue']}, not {value}")
        if "MaxValue" in declaration and number > float(declaration["MaxValue"]):
            raise DeployError(f"{name} must be at most {declaration['MaxValue']}, not {value}")
    pattern = declaration.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise DeployError(f"{name} {value!r}: {declaration.get('ConstraintDescription', 'not allowed')}")


def deploy_monitoring(cloudformation: Any, s3: Any, stage: str, template_body: str, *,
                      parameters: Mapping[str, str] | None = None, wait_delay: int = 5) -> dict[str, str]:
    """Create or update the stage's monitoring stack and return its outputs. The template travels
    through the stage's bucket (`deploy/`, removed again once CloudFormation has read it): it is
    larger than the 51,200 bytes an inline body may have. Settings not given keep the values they
    were given before."""
    outputs = _stateful_outputs(cloudformation, stage)
    name = monitoring_stack_name(stage)
    stack = _stack(cloudformation, name)
    if stack is not None and stack["StackStatus"] in _DEAD_STATES:
        raise DeployError(f"stack {name} is {stack['StackStatus']}; delete it "
                          f"(`aws cloudformation delete-stack --stack-name {name}`) and run this again")
    declared = template_parameters(template_body)
    given = {"Stage": stage, **(parameters or {})}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise DeployError(f"the monitoring template has no parameter {', '.join(unknown)}")
    # A setting overridden before (its deployed value is not the template's default) keeps its
    # value; any other takes the template's default, so a better default reaches every stage.
    deployed = {p["ParameterKey"]: p.get("ParameterValue") for p in (stack or {}).get("Parameters") or []}
    stack_parameters = [{"ParameterKey": key, "ParameterValue": value} for key, value in given.items()]
    stack_parameters += [{"ParameterKey": key, "UsePreviousValue": True} for key in declared
                         if key not in given and key in deployed
                         and deployed[key] != str(declared[key].get("Default", ""))]
    bucket = outputs["BucketName"]
    key = f"deploy/monitoring-{hashlib.sha256(template_body.encode()).hexdigest()[:16]}.yaml"
    region = s3.meta.region_name
    s3.put_object(Bucket=bucket, Key=key, Body=template_body.encode(), ContentType="text/yaml")
    params = {
        "StackName": name,
        "TemplateURL": f"https://{bucket}.s3.{region}.amazonaws.com/{key}",
        "Parameters": stack_parameters,
        "Tags": [{"Key": "project", "Value": "omnichannel-hub"}, {"Key": "stage", "Value": stage}],
    }
    waiter_config = {"Delay": wait_delay, "MaxAttempts": 720 // max(1, wait_delay) + 1}
    try:
        if stack is None:
            print(f"creating stack {name}…", file=sys.stderr)
            cloudformation.create_stack(**params)
            cloudformation.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig=waiter_config)
        else:
            print(f"updating stack {name} ({stack['StackStatus']})…", file=sys.stderr)
            update_stack(cloudformation, name, params, waiter_config)
    finally:
        s3.delete_object(Bucket=bucket, Key=key)
    return stack_outputs(cloudformation, name)


def _stateful_outputs(cloudformation: Any, stage: str) -> dict[str, str]:
    """The stage's stateful stack outputs; the monitoring stack watches its queues and uses its bucket."""
    if _stack(cloudformation, stack_name(stage)) is None:
        raise DeployError(f"stack {stack_name(stage)} does not exist: deploy the stage first "
                          f"(python infra/deploy.py --stage {stage}, then chalice deploy)")
    outputs = stack_outputs(cloudformation, stack_name(stage))
    if "BucketName" not in outputs:
        raise DeployError(f"stack {stack_name(stage)} has no BucketName output: update it first")
    return outputs


def write_chalice_environment(config_path: Path, stage: str, outputs: Mapping[str, str]) -> dict:
    """Set the stage's resource variables in the Chalice config, and HUB_STAGE (the queue names and
    the `deployment` dimension of the hub's metrics follow it: a stage first written here would
    otherwise run as `local`); every other key is left alone."""
    missing = [key for key in OUTPUT_VARIABLES if key not in outputs]
    if missing:
        raise DeployError(f"stack outputs missing: {', '.join(missing)}")
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    environment = config.setdefault("stages", {}).setdefault(stage, {}).setdefault("environment_variables", {})
    environment.update({variable: outputs[key] for key, variable in OUTPUT_VARIABLES.items()})
    environment["HUB_STAGE"] = stage
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return config


def main(argv: Sequence[str] | None = None, *, session: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True, help="stage name, e.g. dev or prod")
    parser.add_argument("--region", help="AWS region (default: the profile's or AWS_REGION)")
    parser.add_argument("--profile", help="AWS named profile")
    parser.add_argument("--template", type=Path,
                        help="the template (default: infra/stateful.yaml; infra/monitoring.yaml with --monitoring)")
    parser.add_argument("--config", type=Path, default=CHALICE_CONFIG, help="Chalice config.json to update")
    parser.add_argument("--media-retention-days", type=int, default=30,
                        help="days downloaded attachments are kept in the bucket (8-3650, default 30)")
    parser.add_argument("--segment-indexes", type=int, choices=(0, 1, 2), default=2,
                        help="the table's segment indexes, one per customers.indexed_attributes entry (default 2)")
    monitoring = parser.add_argument_group(
        "dashboards and alarms", "after `chalice deploy`: the stack hub-<stage>-monitoring (docs/deploy.md)")
    monitoring.add_argument("--monitoring", action="store_true",
                            help="deploy the stage's dashboard and alarms (infra/monitoring.yaml) instead")
    targets = monitoring.add_mutually_exclusive_group()
    targets.add_argument("--alarm-email", metavar="ADDRESS",
                         help="notify this address (creates the topic hub-<stage>-alarms; confirm the mail AWS sends)")
    targets.add_argument("--alarm-topic-arn", metavar="ARN", help="notify this existing SNS topic")
    targets.add_argument("--no-alarm-actions", action="store_true", help="alarms notify nobody (the default for a new stack; an update keeps the target set before unless told)")
    monitoring.add_argument("--alarm-setting", action="append", default=[], metavar="NAME=VALUE",
                            help="override an alarm threshold, e.g. DeliveryOldestMessageSeconds=3600 (repeatable)")
    args = parser.parse_args(argv)
    if not _STAGE.fullmatch(args.stage):
        parser.error("--stage must be 1-20 lower-case letters, digits or hyphens")
    alarm_options = args.alarm_email is not None or args.alarm_topic_arn is not None or args.no_alarm_actions \
        or args.alarm_setting
    if alarm_options and not args.monitoring:
        parser.error("--alarm-email, --alarm-topic-arn, --no-alarm-actions and --alarm-setting need --monitoring")
    if args.monitoring:
        return _main_monitoring(parser, args, session)
    if not 8 <= args.media_retention_days <= 3650:
        parser.error("--media-retention-days must be from 8 to 3650")
    if session is None:
        import boto3

        session = boto3.Session(profile_name=args.profile, region_name=args.region)
    if not session.region_name:
        parser.error("no region: pass --region or set AWS_REGION")
    try:
        outputs = deploy_stack(session.client("cloudformation"), args.stage, (args.template or TEMPLATE).read_text(),
                               media_retention_days=args.media_retention_days, segment_indexes=args.segment_indexes)
        write_chalice_environment(args.config, args.stage, outputs)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for key in sorted(outputs):
        print(f"{key} = {outputs[key]}")
    print(f"\n{args.config} updated; next: chalice deploy --stage {args.stage}", file=sys.stderr)
    return 0


def _main_monitoring(parser: argparse.ArgumentParser, args: argparse.Namespace, session: Any) -> int:
    template_body = (args.template or MONITORING_TEMPLATE).read_text()
    try:
        parameters = monitoring_parameters(template_body, args.alarm_setting, email=args.alarm_email,
                                           topic_arn=args.alarm_topic_arn, no_actions=args.no_alarm_actions)
    except DeployError as exc:
        parser.error(str(exc))
    if session is None:
        import boto3

        session = boto3.Session(profile_name=args.profile, region_name=args.region)
    if not session.region_name:
        parser.error("no region: pass --region or set AWS_REGION")
    try:
        outputs = deploy_monitoring(session.client("cloudformation"), session.client("s3"), args.stage, template_body,
                                    parameters=parameters)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for key in sorted(outputs):
        print(f"{key} = {outputs[key]}")
    if args.alarm_email:
        print(f"\n{args.alarm_email} receives a subscription confirmation from AWS: the alarms reach it once "
              "it is confirmed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
