"""Write `infra/monitoring.yaml`: one stage's CloudWatch dashboard and alarms, as a CloudFormation template.

    python infra/monitoring.py            # write the template
    python infra/monitoring.py --check    # exit 1 if the committed template differs (the tests run this)

The template is generated rather than written by hand because it repeats itself along three lists
that live elsewhere and must not drift from it: the functions Chalice deploys (`app.py`, the pull
entries of `chalicelib/adapters/channels/registry.py`), the queues `infra/stateful.yaml` creates,
and the metrics the hub emits (`chalicelib/observability.py`'s namespace, the `incr` calls of
`chalicelib/`). `HUB_METRICS` below names each metric with its dimensions; a unit test derives
the same list from the code and holds them equal, so no widget waits for a metric nobody emits
and no emitted metric is missing from the dashboard.

`infra/deploy.py --stage <stage> --monitoring` deploys it as the stack `hub-<stage>-monitoring`
(after `chalice deploy`: the alarms watch the functions by name). What each widget shows and what
to do when an alarm fires: docs/deploy.md, "Dashboards and alarms".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the hub's names are read from its code
    sys.path.insert(0, str(ROOT))

from chalicelib.observability import DEPLOYMENT_DIMENSION, NAMESPACE, SERVICE

TEMPLATE = ROOT / "infra" / "monitoring.yaml"
APP_NAME = "omnichannel-hub"
#: Chalice's name for the REST API's function; its Lambda function is `<app>-<stage>`, every other
#: function's `<app>-<stage>-<function>`.
API = "api_handler"
#: The functions `app.py` declares (the pull entries' workers are added from the registry).
APP_FUNCTIONS = ("process_inbound", "deliver", "send", "process_events", "eventbridge_events", "timers")
#: Dashboard and alarm period for the hub's counters and Lambda's metrics, in seconds.
PERIOD = 300


def functions() -> list[str]:
    """Every function Chalice deploys, by its Chalice name."""
    from chalicelib.adapters.channels.registry import PULL_ENTRIES

    return [API, *APP_FUNCTIONS, *(entry.function_name for _, entry in PULL_ENTRIES.values())]


def lambda_name(function: str) -> str:
    """The function's Lambda name, with `${Stage}` for `Fn::Sub`."""
    return f"{APP_NAME}-${{Stage}}" if function == API else f"{APP_NAME}-${{Stage}}-{function}"


class WorkQueue(NamedTuple):
    """A queue a function consumes, its dead-letter queue, and how old its oldest message may get
    (seconds) before someone should look: each default leaves room for the retries the queue's
    visibility timeout and receive budget allow in normal operation (infra/stateful.yaml)."""

    key: str
    name: str
    dead_letters: str
    consumer: str
    max_age_seconds: int


APP_QUEUES = (
    # Processing is a few store calls: ten minutes means the worker is failing or throttled.
    WorkQueue("Inbound", "inbound.fifo", "inbound-dlq.fifo", "process_inbound", 600),
    # A destination that is down keeps its deliveries retrying for up to 8 × 360 s.
    WorkQueue("Delivery", "delivery.fifo", "delivery-dlq.fifo", "deliver", 1800),
    # Customers wait for these: a provider outage shows here first.
    WorkQueue("Outbound", "outbound.fifo", "outbound-dlq.fifo", "send", 900),
    # A broadcast to a large segment legitimately queues its members for a while.
    WorkQueue("Events", "events.fifo", "events-dlq.fifo", "process_events", 1800),
)
#: How old a pull entry's oldest announcement may get: one message a worker reads from where the
#: provider left it (SES: mail in S3) takes seconds, so fifteen minutes means it is failing.
PULL_QUEUE_MAX_AGE_SECONDS = 900


def pull_queues() -> tuple[WorkQueue, ...]:
    """The queues of the providers' queue-fed ways in (`PULL_ENTRIES`), named as
    infra/stateful.yaml creates them: `hub-<stage>-<name>` and `<name>-dlq`."""
    from chalicelib.adapters.channels.registry import PULL_ENTRIES

    suffix = {True: ".fifo", False: ""}
    return tuple(WorkQueue("".join(part.title() for part in name.split("-")), name + suffix[entry.fifo],
                           f"{name}-dlq{suffix[entry.fifo]}", entry.function_name, PULL_QUEUE_MAX_AGE_SECONDS)
                 for name, (_, entry) in PULL_ENTRIES.items())


#: Every queue a function consumes.
QUEUES = APP_QUEUES + pull_queues()
#: Dead-letter queues no worker consumes from: EventBridge Scheduler's, for timers it could not deliver.
OTHER_DEAD_LETTER_QUEUES = (("Timers", "timers-dlq"),)


def queue_name(suffix: str) -> str:
    return f"hub-${{Stage}}-{suffix}"


def dead_letter_queues() -> list[tuple[str, str]]:
    """(key, queue name suffix) of every dead-letter queue of the stage."""
    return [(queue.key, queue.dead_letters) for queue in QUEUES] + list(OTHER_DEAD_LETTER_QUEUES)


# --- the hub's metrics -----------------------------------------------------------------------------

#: A dimension whose value is only known at run time (a provider, destination, reason or queue):
#: the dashboard finds every value with a SEARCH expression.
ANY = None


class HubMetric(NamedTuple):
    """One metric the hub emits (`Counters.incr(name, **dimensions)`), every one a Count with the
    dimensions `service` and `deployment` (the stage, which every widget and alarm filters on, so
    two stages in one account and region stay apart). `dimensions` maps each of the metric's own
    dimensions to its fixed value or `ANY`."""

    name: str
    dimensions: tuple[tuple[str, str | None], ...]

    @property
    def fixed(self) -> bool:  # every dimension's value known: a metric line, not a SEARCH
        return all(value is not ANY for _, value in self.dimensions)


def _metrics(dimensions: dict[str, str | None], *names: str) -> list[HubMetric]:
    return [HubMetric(name, tuple(sorted(dimensions.items()))) for name in names]


#: Every metric the hub emits, grouped as the dashboard shows them: (widget title, metrics).
HUB_WIDGETS: list[tuple[str, list[HubMetric]]] = [
    ("Webhooks received per provider", _metrics({"provider": ANY}, "WebhooksReceived")),
    ("Webhooks rejected per provider and reason", _metrics({"provider": ANY, "reason": ANY}, "WebhooksRejected")),
    ("Webhook events enqueued, ignored, unhandled per provider",
     _metrics({"provider": ANY}, "EventsEnqueued", "EventsIgnored", "EventsUnhandled")),
    ("Destination callbacks per destination",
     _metrics({"destination": ANY}, "CallbacksReceived", "CallbackItemsEnqueued", "CallbackItemsIgnored",
              "CallbackItemsUnhandled")
     + _metrics({"destination": ANY, "reason": ANY}, "CallbacksRejected")),
    ("Contacts processed",
     _metrics({"stage": "process"}, "ContactsCreated", "StatusesRecorded", "UnhandledRecorded", "IdentitiesChanged",
              "IdentityChangesUnmatched", "CallbackItemsProcessed", "DuplicatesDropped")),
    ("Deliveries queued per destination", _metrics({"destination": ANY}, "DeliveriesQueued")),
    ("Deliveries per destination: delivered, not applicable",
     _metrics({"destination": ANY}, "Delivered", "DeliveriesNotApplicable")
     + _metrics({"stage": "deliver"}, "DuplicatesDropped")),
    ("Deliveries per destination: dead, dropped for erasure",
     _metrics({"destination": ANY}, "DeliveriesDead", "DeliveriesDroppedForErasure")),
    ("Sends to customers per provider: sent",
     _metrics({"provider": ANY}, "MessagesSent") + _metrics({"stage": "send"}, "DuplicatesDropped")),
    ("Sends to customers per provider: failed, dead, dropped for erasure",
     _metrics({"provider": ANY}, "MessagesFailed", "MessagesDead", "MessagesDroppedForErasure")),
    ("Agent replies and ticket states per destination",
     _metrics({"destination": ANY}, "AgentRepliesSent", "AgentRepliesIgnored", "AgentRepliesUnmatched",
              "CasesClosedByVendor", "CasesReopenedByVendor", "TicketStatesUnmatched")
     + _metrics({"destination": ANY, "reason": ANY}, "AgentRepliesRefused")),
    ("Business events, broadcasts and timers",
     _metrics({"stage": "events"}, "EventsQueued", "EventsRejected", "EventsProcessed", "EventsCustomerUnmatched",
              "FanoutPages", "SegmentMembersProcessed", "TimersFired", "TimersStale", "NotificationsDeferred",
              "DuplicatesDropped")),
    ("Rules refused, queue bodies lost",
     _metrics({}, "RoutingRulesRejected", "EventRulesRejected") + _metrics({"queue": ANY}, "QueueBodiesLost")),
]


def hub_metrics() -> list[HubMetric]:
    return [metric for _, metrics in HUB_WIDGETS for metric in metrics]


#: The dimensions every document of the hub carries besides a metric's own: this stage's series only.
STAGE_DIMENSIONS = ((DEPLOYMENT_DIMENSION, "${Stage}"), ("service", SERVICE))


def _dimension_list(metric: HubMetric) -> list[str]:
    pairs = [*metric.dimensions, *STAGE_DIMENSIONS]
    return [item for name, value in pairs for item in (name, value)]


def _schema_dimensions(metric: HubMetric) -> list[str]:
    return sorted([name for name, _ in [*metric.dimensions, *STAGE_DIMENSIONS]])


def _search(metric: HubMetric, statistic: str = "Sum") -> str:
    """A SEARCH of every series of `metric` of this stage, one line per run-time dimension value."""
    schema = ",".join([NAMESPACE, *_schema_dimensions(metric)])
    fixed = "".join(f' {name}=\"{value}\"' for name, value in [*STAGE_DIMENSIONS, *metric.dimensions]
                    if value is not ANY)
    return f"SEARCH('{{{schema}}} MetricName=\"{metric.name}\"{fixed}', '{statistic}', {PERIOD})"


def _search_label(metric: HubMetric) -> str:
    """The line's label: the metric and its run-time dimension values (`${!...}` is Fn::Sub's
    escape for the dashboard's own `${PROP(...)}` dynamic label)."""
    return " ".join([metric.name, *(f"${{!PROP('Dim.{name}')}}" for name, value in metric.dimensions
                                    if value is ANY)])


# --- the dashboard ---------------------------------------------------------------------------------

WIDTH, HEIGHT = 8, 6


def _graph(title: str, metrics: list, *, stat: str = "Sum", period: int = PERIOD, left_label: str = "") -> dict:
    properties: dict = {"title": title, "view": "timeSeries", "stacked": False, "region": "${AWS::Region}",
                        "stat": stat, "period": period, "metrics": metrics}
    if left_label:
        properties["yAxis"] = {"left": {"label": left_label, "showUnits": False, "min": 0}}
    return {"type": "metric", "width": WIDTH, "height": HEIGHT, "properties": properties}


def _text(markdown: str, height: int = 2) -> dict:
    return {"type": "text", "width": 24, "height": height, "properties": {"markdown": markdown}}


def _hub_widget(title: str, metrics: list[HubMetric]) -> dict:
    lines: list = []
    for number, metric in enumerate(metrics):
        if metric.fixed:
            lines.append([NAMESPACE, metric.name, *_dimension_list(metric), {"label": metric.name}])
        else:
            lines.append([{"expression": _search(metric), "id": f"s{number}", "label": _search_label(metric)}])
    return _graph(title, lines, left_label="count per 5 min")


def _queue_lines(metric: str, suffixes: list[str]) -> list:
    return [["AWS/SQS", metric, "QueueName", queue_name(suffix)] for suffix in suffixes]


def _lambda_lines(metric: str, *, stat: str | None = None) -> list:
    extra = [{"stat": stat}] if stat else []
    return [["AWS/Lambda", metric, "FunctionName", lambda_name(function), *extra] for function in functions()]


def dashboard() -> dict:
    work = [queue.name for queue in QUEUES]
    dlqs = [suffix for _, suffix in dead_letter_queues()]
    widgets = [
        _text("# Omnichannel hub, stage ${Stage}\n"
              "Runbook: docs/deploy.md, \"Dashboards and alarms\". Every widget shows this stage only: the hub's "
              f"own counters (namespace `{NAMESPACE}`) by their dimension `{DEPLOYMENT_DIMENSION}` = ${{Stage}}, "
              "the SQS queues and Lambda functions by their names."),
        _text("## Traffic and outcomes", 1),
        *[_hub_widget(title, metrics) for title, metrics in HUB_WIDGETS],
        _text("## Queues (every hub queue and dead-letter queue)", 1),
        _graph("Age of oldest message (work queues)", _queue_lines("ApproximateAgeOfOldestMessage", work),
               stat="Maximum", period=60, left_label="seconds"),
        _graph("Messages waiting (visible)", _queue_lines("ApproximateNumberOfMessagesVisible", work),
               stat="Maximum", period=60, left_label="messages"),
        _graph("Messages in flight (being processed)", _queue_lines("ApproximateNumberOfMessagesNotVisible", work),
               stat="Maximum", period=60, left_label="messages"),
        _graph("Dead-letter queues: messages waiting", _queue_lines("ApproximateNumberOfMessagesVisible", dlqs),
               stat="Maximum", period=60, left_label="messages"),
        _graph("Dead-letter queues: messages in flight",
               _queue_lines("ApproximateNumberOfMessagesNotVisible", dlqs), stat="Maximum", period=60,
               left_label="messages"),
        _graph("Dead-letter queues: age of oldest message", _queue_lines("ApproximateAgeOfOldestMessage", dlqs),
               stat="Maximum", period=60, left_label="seconds"),
        _text("## Lambda functions", 1),
        _graph("Invocations", _lambda_lines("Invocations"), left_label="count per 5 min"),
        _graph("Errors", _lambda_lines("Errors"), left_label="count per 5 min"),
        _graph("Throttles", _lambda_lines("Throttles"), left_label="count per 5 min"),
        _graph("Duration p50", _lambda_lines("Duration"), stat="p50", left_label="ms"),
        _graph("Duration p99", _lambda_lines("Duration"), stat="p99", left_label="ms"),
        _graph("Concurrent executions", [*_lambda_lines("ConcurrentExecutions"),
                                         ["AWS/Lambda", "ConcurrentExecutions", {"label": "account (all functions)"}]],
               stat="Maximum", period=60, left_label="executions"),
    ]
    return {"start": "-PT6H", "periodOverride": "inherit", "widgets": widgets}


def dashboard_text() -> str:
    """The dashboard's JSON, a widget a line: readable in the template, and compact (the template
    outgrew the 51,200 bytes CloudFormation takes inline: deploy.py hands it over through S3)."""
    body = dashboard()
    widgets = ",\n".join(json.dumps(widget, separators=(",", ":")) for widget in body.pop("widgets"))
    head = json.dumps(body, separators=(",", ":"))[:-1]
    return f'{head},"widgets":[\n{widgets}\n]}}\n'


# --- the alarms ------------------------------------------------------------------------------------

#: Alarm thresholds the operator may override (`deploy.py --alarm-setting NAME=VALUE`):
#: parameter → (default, description).
THRESHOLDS: dict[str, tuple[int, str]] = {
    **{f"{queue.key}OldestMessageSeconds": (
        queue.max_age_seconds,
        (f"Alarm when the oldest message of hub-<stage>-{queue.name} (consumed by {queue.consumer}) has waited "
        "longer than this many seconds, 5 minutes in a row."))
       for queue in QUEUES},
    "DeadLetterQueueMessages": (0, "Alarm when a dead-letter queue holds more than this many messages."),
    "DeadLettersPerPeriod": (0, ("Alarm when more than this many dead letters (deliveries, or sends, the hub gave "
                                "up on) are recorded in 5 minutes.")),
    "QueueBodiesLostPerPeriod": (0, ("Alarm when more than this many queued messages lost their claim-checked body "
                                    "(the copy in the bucket) in 5 minutes.")),
    "SignatureRejectionsPerPeriod": (20, ("Alarm when more than this many webhooks (or destination callbacks) are "
                                         "rejected for a bad signature in 5 minutes.")),
    "UnhandledEventsPerPeriod": (25, ("Alarm when more than this many unhandled events (kept raw) are recorded "
                                     "in 5 minutes.")),
    "LambdaErrorsPerPeriod": (5, "Alarm when a function reports more than this many errors in 5 minutes."),
    "LambdaThrottlesPerPeriod": (0, "Alarm when a function is throttled more than this many times in 5 minutes."),
}

_NOT_BREACHING = "notBreaching"


def _actions() -> dict:
    topic = {"Fn::If": ["HasAlarmTopicArn", {"Ref": "AlarmTopicArn"}, {"Ref": "AlarmTopic"}]}
    actions = {"Fn::If": ["HasAlarmActions", [topic], {"Ref": "AWS::NoValue"}]}
    return {"ActionsEnabled": True, "AlarmActions": actions, "OKActions": actions}


def _alarm(name: str, description: str, threshold: str, treat_missing: str, *, evaluation_periods: int = 1,
           **how: object) -> dict:
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmName": {"Fn::Sub": f"hub-${{Stage}}-{name}"},
        "AlarmDescription": _sub(f"{description} Runbook: docs/deploy.md, Dashboards and alarms."),
        **how,
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": {"Ref": threshold},
        "EvaluationPeriods": evaluation_periods,
        "DatapointsToAlarm": evaluation_periods,
        "TreatMissingData": treat_missing,
        **_actions(),
    }}


def _sub(text: str) -> object:
    return {"Fn::Sub": text} if "${" in text else text


def _hub_stat(id_: str, metric: HubMetric) -> dict:
    dimensions = [{"Name": name, "Value": _sub(value)} for name, value in [*metric.dimensions, *STAGE_DIMENSIONS]]
    return {"Id": id_, "ReturnData": False, "MetricStat": {
        "Metric": {"Namespace": NAMESPACE, "MetricName": metric.name, "Dimensions": dimensions},
        "Period": PERIOD, "Stat": "Sum"}}


def _by_name(name: str, **dimensions: str) -> HubMetric:
    wanted = tuple(sorted(dimensions.items()))
    for metric in hub_metrics():
        if metric.name == name and tuple((k, v) for k, v in metric.dimensions) == wanted:
            return metric
    raise KeyError(f"{name} {dimensions} is not in HUB_WIDGETS")


def _insights(metric: HubMetric, condition: str = "") -> dict:
    """A Metrics Insights query summing every series of `metric` of this stage that meets
    `condition` (the values of the run-time dimensions are not known to the template), for Fn::Sub."""
    schema = ", ".join([f'"{NAMESPACE}"', *_schema_dimensions(metric)])
    where = " AND ".join([*(f"{name} = '{value}'" for name, value in [*STAGE_DIMENSIONS, *metric.dimensions]
                            if value is not ANY), *([condition] if condition else [])])
    return {"Fn::Sub": f"SELECT SUM({metric.name}) FROM SCHEMA({schema}) WHERE {where}"}


def _insights_query(label: str, metric: HubMetric, condition: str = "") -> list[dict]:
    return [{"Id": "q", "Label": label, "ReturnData": True, "Period": PERIOD,
             "Expression": _insights(metric, condition)}]


def alarms() -> dict[str, dict]:
    resources: dict[str, dict] = {}
    for queue in QUEUES:
        resources[f"{queue.key}OldestMessageAlarm"] = _alarm(
            f"{queue.name.removesuffix('.fifo')}-oldest-message",
            f"The oldest message of {queue_name(queue.name)} is older than the threshold: {queue.consumer} is "
            "failing, throttled or behind.",
            f"{queue.key}OldestMessageSeconds", _NOT_BREACHING, evaluation_periods=5,
            Namespace="AWS/SQS", MetricName="ApproximateAgeOfOldestMessage",
            Dimensions=[{"Name": "QueueName", "Value": {"Fn::Sub": queue_name(queue.name)}}],
            Statistic="Maximum", Period=60)
    for key, suffix in dead_letter_queues():
        resources[f"{key}DeadLetterQueueAlarm"] = _alarm(
            f"{suffix.removesuffix('.fifo')}-messages",
            f"{queue_name(suffix)} holds messages: work the hub could not finish. Inspect and replay them.",
            "DeadLetterQueueMessages", _NOT_BREACHING,
            Namespace="AWS/SQS", MetricName="ApproximateNumberOfMessagesVisible",
            Dimensions=[{"Name": "QueueName", "Value": {"Fn::Sub": queue_name(suffix)}}],
            Statistic="Maximum", Period=60)
    # One Metrics Insights query per alarm (CloudWatch takes no more): deliveries and sends apart.
    resources["DeliveryDeadLettersAlarm"] = _alarm(
        "delivery-dead-letters",
        "The hub gave up on deliveries to a destination (GET /v1/dead-letters; the dashboard names the destination).",
        "DeadLettersPerPeriod", _NOT_BREACHING,
        Metrics=_insights_query("deliveries dead", _by_name("DeliveriesDead", destination=ANY)))
    resources["SendDeadLettersAlarm"] = _alarm(
        "send-dead-letters",
        "The hub gave up on messages to customers (GET /v1/dead-letters; the dashboard names the provider).",
        "DeadLettersPerPeriod", _NOT_BREACHING,
        Metrics=_insights_query("sends dead", _by_name("MessagesDead", provider=ANY)))
    resources["WebhookSignatureRejectionsAlarm"] = _alarm(
        "webhook-signature-rejections",
        "Many webhooks were rejected for a bad signature: a rotated provider secret, or someone probing the URLs.",
        "SignatureRejectionsPerPeriod", _NOT_BREACHING,
        Metrics=_insights_query("webhooks rejected: invalid_signature",
                                _by_name("WebhooksRejected", provider=ANY, reason=ANY), "reason = 'invalid_signature'"))
    resources["CallbackSignatureRejectionsAlarm"] = _alarm(
        "callback-signature-rejections",
        "Many destination callbacks were rejected for a bad signature: a rotated callback secret, or probing.",
        "SignatureRejectionsPerPeriod", _NOT_BREACHING,
        Metrics=_insights_query("callbacks rejected: invalid_signature",
                                _by_name("CallbacksRejected", destination=ANY, reason=ANY),
                                "reason = 'invalid_signature'"))
    resources["QueueBodiesLostAlarm"] = _alarm(
        "queue-bodies-lost",
        "Queued messages lost their claim-checked body (the bucket's copy expired or was deleted before they "
        "were handled): they went to their dead-letter queue without it.",
        "QueueBodiesLostPerPeriod", _NOT_BREACHING,
        Metrics=_insights_query("queue bodies lost", _by_name("QueueBodiesLost", queue=ANY)))
    recorded, rejected = _by_name("UnhandledRecorded", stage="process"), _by_name("EventsRejected", stage="events")
    resources["UnhandledEventsAlarm"] = _alarm(
        "unhandled-events",
        "Many events were kept as unhandled (GET /v1/unhandled-events): a provider sends something new, or a mapping broke.",
        "UnhandledEventsPerPeriod", _NOT_BREACHING,
        Metrics=[_hub_stat("recorded", recorded), _hub_stat("rejected", rejected),
                 {"Id": "unhandled", "Label": "unhandled events", "ReturnData": True,
                  "Expression": "FILL(recorded, 0) + FILL(rejected, 0)"}])
    for function in functions():
        key = "".join(part.capitalize() for part in function.split("_"))
        for metric, threshold, why in (
                ("Errors", "LambdaErrorsPerPeriod", "failed invocations (the logs say why)"),
                ("Throttles", "LambdaThrottlesPerPeriod", "throttled invocations (concurrency limit reached)")):
            resources[f"{key}{metric}Alarm"] = _alarm(
                f"{function.replace('_', '-')}-{metric.lower()}",
                f"{lambda_name(function)} reports {why}.", threshold, _NOT_BREACHING,
                Namespace="AWS/Lambda", MetricName=metric,
                Dimensions=[{"Name": "FunctionName", "Value": {"Fn::Sub": lambda_name(function)}}],
                Statistic="Sum", Period=PERIOD)
    return resources


# --- the template ----------------------------------------------------------------------------------

def template() -> dict:
    parameters: dict = {
        "Stage": {"Type": "String", "Description": "Stage name (dev, prod, ...). Must match the Chalice stage.",
                  "AllowedPattern": "^[a-z0-9-]+$", "MinLength": 1, "MaxLength": 20,
                  "ConstraintDescription": "lower-case letters, digits and hyphens, at most 20 characters"},
        "AlarmTopicArn": {"Type": "String", "Default": "",
                          "Description": "An existing SNS topic the alarms notify (ALARM and OK). Leave empty to "
                                         "create one for AlarmEmail, or for alarms without notifications.",
                          "AllowedPattern": "^$|^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]{1,256}$",
                          "ConstraintDescription": "empty, or an SNS topic ARN"},
        "AlarmEmail": {"Type": "String", "Default": "",
                       "Description": "An email address to notify: a topic hub-<stage>-alarms is created and the "
                                      "address subscribed (it must confirm the subscription). Ignored when "
                                      "AlarmTopicArn is set.",
                       "AllowedPattern": "^$|^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$",
                       "ConstraintDescription": "empty, or an email address"},
    }
    for name, (default, description) in THRESHOLDS.items():
        parameters[name] = {"Type": "Number", "Default": default, "MinValue": 0, "Description": description}
    resources: dict = {
        "Dashboard": {"Type": "AWS::CloudWatch::Dashboard", "Properties": {
            "DashboardName": {"Fn::Sub": "hub-${Stage}"},
            "DashboardBody": {"Fn::Sub": dashboard_text()},
        }},
        "AlarmTopic": {"Type": "AWS::SNS::Topic", "Condition": "CreatesAlarmTopic", "Properties": {
            "TopicName": {"Fn::Sub": "hub-${Stage}-alarms"},
            "DisplayName": {"Fn::Sub": "Omnichannel hub ${Stage} alarms"},
            "Tags": [{"Key": "project", "Value": APP_NAME}, {"Key": "stage", "Value": {"Ref": "Stage"}}],
        }},
        "AlarmEmailSubscription": {"Type": "AWS::SNS::Subscription", "Condition": "CreatesAlarmTopic", "Properties": {
            "TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"},
        }},
        **alarms(),
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Omnichannel hub - one stage's CloudWatch dashboard (hub-<stage>) and alarms (hub-<stage>-*), "
                       "notifying an optional SNS topic. Generated by infra/monitoring.py; deploy with "
                       "`python infra/deploy.py --stage <stage> --monitoring` after `chalice deploy`.",
        "Parameters": parameters,
        "Conditions": {
            "HasAlarmTopicArn": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]},
            "CreatesAlarmTopic": {"Fn::And": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]},
                                              {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}]},
            "HasAlarmActions": {"Fn::Or": [{"Condition": "HasAlarmTopicArn"}, {"Condition": "CreatesAlarmTopic"}]},
        },
        "Resources": resources,
        "Outputs": {
            "DashboardName": {"Value": {"Ref": "Dashboard"}},
            "DashboardUrl": {"Value": {"Fn::Sub": "https://${AWS::Region}.console.aws.amazon.com/cloudwatch/home"
                                                  "?region=${AWS::Region}#dashboards:name=hub-${Stage}"}},
            "AlarmTopicArn": {"Condition": "HasAlarmActions", "Value": {
                "Fn::If": ["HasAlarmTopicArn", {"Ref": "AlarmTopicArn"}, {"Ref": "AlarmTopic"}]}},
        },
    }


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:  # CloudFormation reads anchors, but people should not have to
        return True


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # The dashboard body reads as the JSON it is, not as one escaped line.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def render() -> str:
    header = ("# Generated by infra/monitoring.py from the hub's functions, queues and metrics: edit that file and\n"
              "# run `python infra/monitoring.py`, never this one (a test holds them equal).\n")
    return header + yaml.dump(template(), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True,
                              default_flow_style=None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed template, write nothing")
    args = parser.parse_args(argv)
    text = render()
    current = TEMPLATE.read_text() if TEMPLATE.exists() else None
    if args.check:
        if current != text:
            print(f"{TEMPLATE.relative_to(ROOT)} is not what infra/monitoring.py generates; run python infra/monitoring.py",
                  file=sys.stderr)
            return 1
        return 0
    if current != text:
        TEMPLATE.write_text(text)
        print(f"wrote {TEMPLATE.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
