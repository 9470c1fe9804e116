"""infra/monitoring.yaml, the stage's dashboard and alarms: generated from infra/monitoring.py, and
held to what the hub really emits and deploys. The metrics are derived here from the code itself
(every `Counters.incr` call under chalicelib/), so a metric added, renamed or given another
dimension fails this test until the dashboard shows it; and every hub metric the template reads is
filtered on this stage (`deployment`), so two stages in one account and region never add up. cfn-lint and the deployment under moto:
tests/integration/test_monitoring.py."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from chalicelib.observability import DEPLOYMENT_DIMENSION, NAMESPACE, SERVICE
from tests.support.cloudformation import load_template
from tests.support.infra_scripts import load_infra_script

ROOT = Path(__file__).resolve().parents[2]
monitoring = load_infra_script("monitoring")

#: What the AWS namespaces the template reads publish (SQS and Lambda's documented metrics).
AWS_METRICS = {
    "AWS/SQS": {"ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesVisible",
                "ApproximateNumberOfMessagesNotVisible"},
    "AWS/Lambda": {"Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions"},
}


# --- the metrics the code emits, read from the code ------------------------------------------------

def _constant_strings(node: ast.AST) -> list[str] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    return None


def _dict_values(node: ast.Dict) -> list[str]:
    """The string values of a module-level mapping, `**{k: "Name" for k in ...}` included."""
    values = []
    for key, value in zip(node.keys, node.values):
        if key is None and isinstance(value, ast.DictComp):
            values += _constant_strings(value.value) or []
        elif key is None and isinstance(value, ast.Dict):
            values += _dict_values(value)
        else:
            values += _constant_strings(value) or []
    return values


def _module_dicts(tree: ast.Module) -> dict[str, ast.Dict]:
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found.update({t.id: node.value for t in targets if isinstance(t, ast.Name)})
    return found


def _forwarded_names(tree: ast.Module, function: str, parameter: str) -> list[str]:
    """The constant first arguments of every call of `self.<function>(...)` in the module, for a
    helper that passes its `parameter` on to `incr`."""
    names = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == function
                and node.args):
            names += _constant_strings(node.args[0]) or pytest.fail(f"{function}() called with a computed name")
    return names


def _enclosing_functions(tree: ast.Module) -> dict[ast.AST, ast.FunctionDef]:
    parents = {}
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef):
            for node in ast.walk(function):
                parents.setdefault(node, function)
    return parents


def emitted_metrics() -> set[tuple[str, tuple]]:
    """(metric name, sorted ((dimension, constant value or None), ...)) of every `incr` call."""
    found = set()
    for path in sorted((ROOT / "chalicelib").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        dicts = _module_dicts(tree)
        enclosing = _enclosing_functions(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "incr"):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            first = node.args[0]
            names = _constant_strings(first)
            if names is None and isinstance(first, ast.Subscript) and isinstance(first.value, ast.Name):
                names = _dict_values(dicts[first.value.id])
            elif (names is None and isinstance(first, ast.Call) and isinstance(first.func, ast.Attribute)
                  and first.func.attr == "get" and isinstance(first.func.value, ast.Name)):
                names = _dict_values(dicts[first.func.value.id]) + (_constant_strings(first.args[1]) or [])
            elif names is None and isinstance(first, ast.Name):
                function = enclosing[node]
                assert first.id in [a.arg for a in function.args.args], f"{where}: metric name from {first.id}"
                names = _forwarded_names(tree, function.name, first.id)
            assert names, f"{where}: cannot tell which metric this incr emits; teach this test"
            dimensions = tuple(sorted(
                (k.arg, k.value.value if isinstance(k.value, ast.Constant) else None) for k in node.keywords))
            assert all(name for name, _ in dimensions), f"{where}: dimensions passed as **kwargs"
            found |= {(name, dimensions) for name in names}
    return found


#: The dimensions `Counters` adds to every document: no `incr` may name them itself.
DOCUMENT_DIMENSIONS = {DEPLOYMENT_DIMENSION, "service"}


def test_the_code_emits_what_this_test_can_read():
    emitted = emitted_metrics()
    # A few the dashboard and alarms rely on, read the three ways the code names them.
    assert ("WebhooksRejected", (("provider", None), ("reason", None))) in emitted  # a literal
    assert ("ContactsCreated", (("stage", "process"),)) in emitted  # a mapping's value
    assert ("Delivered", (("destination", None),)) in emitted  # per destination
    assert ("MessagesDead", (("provider", None),)) in emitted  # per channel provider
    assert ("EventsProcessed", (("stage", "events"),)) in emitted  # a mapping's .get default
    assert ("EventsRejected", (("stage", "events"),)) in emitted  # forwarded by a helper
    assert ("CallbackItemsProcessed", (("stage", "process"),)) in emitted  # a ** comprehension


def test_no_counter_names_a_dimension_every_document_carries_already():
    clashing = sorted((name, dimensions) for name, dimensions in emitted_metrics()
                      if DOCUMENT_DIMENSIONS & {dimension for dimension, _ in dimensions})
    assert clashing == [], "the deployment and service dimensions are the documents': pick another name"


def test_the_dashboard_shows_exactly_the_metrics_the_code_emits():
    catalogue = {(metric.name, metric.dimensions) for metric in monitoring.hub_metrics()}
    emitted = emitted_metrics()
    assert sorted(emitted - catalogue) == [], "emitted but not on the dashboard: add them to HUB_WIDGETS"
    assert sorted(catalogue - emitted) == [], "on the dashboard but never emitted"


# --- the committed template ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def template() -> dict:
    return load_template(monitoring.TEMPLATE)


def substitute(text: str, stage: str = "prod", region: str = "eu-central-1") -> str:
    """Fn::Sub's work: the parameters, and `${!...}` (a literal `${...}`, the dashboard's dynamic labels)."""
    return text.replace("${Stage}", stage).replace("${AWS::Region}", region).replace("${!", "${")


@pytest.fixture(scope="module")
def dashboard(template) -> dict:
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert re.findall(r"\$\{(?!Stage\}|AWS::Region\}|!PROP\('Dim\.\w+'\)\})", body) == [], \
        "a substitution neither Fn::Sub nor the dashboard's dynamic labels resolve"
    text = substitute(body)
    return json.loads(text)


def alarms_of(template: dict) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"}


def test_the_committed_template_is_what_monitoring_py_generates():
    assert monitoring.main(["--check"]) == 0, "run python infra/monitoring.py"


def test_the_dashboard_body_is_valid_json_within_the_grid(dashboard):
    assert dashboard["widgets"]
    for widget in dashboard["widgets"]:
        assert widget["type"] in ("metric", "text")
        assert 1 <= widget["width"] <= 24 and widget["height"] >= 1
        if widget["type"] == "metric":
            properties = widget["properties"]
            assert properties["region"] == "eu-central-1" and properties["title"] and properties["metrics"]


def _text(value) -> str:
    return substitute(value["Fn::Sub"] if isinstance(value, dict) else value)


def referenced_hub_metrics(dashboard: dict, template: dict, *, stage: str = "prod") -> set[tuple[str, tuple]]:
    """(name, dimension names) of every OmnichannelHub metric the dashboard and alarms read,
    each asserted to read the series of `stage` (and the hub's service) only."""
    found = set()
    for widget in dashboard["widgets"]:
        for line in widget["properties"].get("metrics", []):
            if isinstance(line[0], dict):
                search = re.fullmatch(r"SEARCH\('\{([^}]*)\} MetricName=\"(\w+)\"([^']*)', 'Sum', 300\)",
                                      line[0]["expression"])
                assert search, line[0]["expression"]
                namespace, *dimensions = search.group(1).split(",")
                if namespace == NAMESPACE:
                    found.add((search.group(2), tuple(sorted(dimensions))))
                    filters = dict(re.findall(r' (\w+)="([^"]*)"', search.group(3)))
                    assert (filters.get(DEPLOYMENT_DIMENSION), filters.get("service")) == (stage, SERVICE), line
            elif line[0] == NAMESPACE:
                pairs = dict(zip(line[2::2], line[3::2]))
                assert (pairs.get(DEPLOYMENT_DIMENSION), pairs.get("service")) == (stage, SERVICE), line
                found.add((line[1], tuple(sorted(pairs))))
    for alarm in alarms_of(template).values():
        for query in alarm.get("Metrics", []):
            if "MetricStat" in query and query["MetricStat"]["Metric"]["Namespace"] == NAMESPACE:
                metric = query["MetricStat"]["Metric"]
                pairs = {d["Name"]: _text(d["Value"]) for d in metric["Dimensions"]}
                assert (pairs.get(DEPLOYMENT_DIMENSION), pairs.get("service")) == (stage, SERVICE), metric
                found.add((metric["MetricName"], tuple(sorted(pairs))))
            elif "SCHEMA(" in _text(query.get("Expression", "")):
                expression = _text(query["Expression"])
                insights = re.fullmatch(r'SELECT SUM\((\w+)\) FROM SCHEMA\("(\w+)", ([\w, ]+)\) WHERE (.*)', expression)
                assert insights and insights.group(2) == NAMESPACE, expression
                conditions = insights.group(4).split(" AND ")
                assert f"{DEPLOYMENT_DIMENSION} = '{stage}'" in conditions, expression
                assert f"service = '{SERVICE}'" in conditions, expression
                found.add((insights.group(1), tuple(sorted(insights.group(3).split(", ")))))
    return found


def test_every_hub_metric_the_template_reads_is_one_the_code_emits_and_every_one_is_shown(dashboard, template):
    emitted = {(name, tuple(sorted([d for d, _ in dimensions] + sorted(DOCUMENT_DIMENSIONS))))
               for name, dimensions in emitted_metrics()}
    referenced = referenced_hub_metrics(dashboard, template)
    assert sorted(referenced - emitted) == [], "the template reads metrics nobody emits"
    shown = referenced_hub_metrics(dashboard, {"Resources": {}})
    assert sorted(emitted - shown) == [], "the code emits metrics the dashboard does not show"


def test_fixed_dimension_values_are_the_ones_the_code_emits(dashboard):
    emitted = emitted_metrics()
    for widget in dashboard["widgets"]:
        for line in widget["properties"].get("metrics", []):
            if line[0] == NAMESPACE:
                pairs = dict(zip(line[2::2], line[3::2]))
                assert pairs.pop("service") == SERVICE and pairs.pop(DEPLOYMENT_DIMENSION) == "prod"
                assert (line[1], tuple(sorted(pairs.items()))) in emitted, line


def test_deliveries_are_shown_per_destination_and_sends_per_provider_with_success_and_failure(dashboard):
    """Issue 16: one line per destination (provider) for each outcome, labelled by its value."""
    by_title = {w["properties"]["title"]: w["properties"]["metrics"] for w in dashboard["widgets"]
                if w["type"] == "metric"}
    wanted = {
        "Deliveries per destination: delivered, not applicable": ("destination", {"Delivered"}),
        "Deliveries per destination: dead, dropped for erasure": ("destination", {"DeliveriesDead"}),
        "Sends to customers per provider: sent": ("provider", {"MessagesSent"}),
        "Sends to customers per provider: failed, dead, dropped for erasure":
            ("provider", {"MessagesFailed", "MessagesDead"}),
    }
    for title, (dimension, metrics) in wanted.items():
        searches = {re.search(r'MetricName="(\w+)"', line[0]["expression"]).group(1): line[0]
                    for line in by_title[title] if isinstance(line[0], dict)}
        assert metrics <= set(searches), title
        for metric in metrics:
            assert f",{dimension}," in searches[metric]["expression"], searches[metric]
            assert searches[metric]["label"] == f"{metric} ${{PROP('Dim.{dimension}')}}"


def test_aws_metrics_are_ones_sqs_and_lambda_publish(dashboard, template):
    lines = [line for widget in dashboard["widgets"] for line in widget["properties"].get("metrics", [])]
    lines = [line for line in lines if isinstance(line[0], str) and line[0].startswith("AWS/")]
    lines += [[a["Namespace"], a["MetricName"]] for a in alarms_of(template).values() if "Namespace" in a]
    assert lines
    for line in lines:
        assert line[1] in AWS_METRICS[line[0]], line


# --- every queue and function --------------------------------------------------------------------

@pytest.fixture(scope="module")
def queues() -> tuple[set[str], set[str]]:
    """(work queue names, dead-letter queue names) of infra/stateful.yaml, for stage prod."""
    stateful = load_template(ROOT / "infra" / "stateful.yaml")
    sqs = {key: r["Properties"] for key, r in stateful["Resources"].items() if r["Type"] == "AWS::SQS::Queue"}
    targets = {q["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0] for q in sqs.values() if "RedrivePolicy" in q}
    names = {key: substitute(q["QueueName"]["Fn::Sub"]) for key, q in sqs.items()}
    dead = {names[key] for key in names if key in targets or names[key].removesuffix(".fifo").endswith("-dlq")}
    assert len(dead) == 6 and len(names) == 11
    return set(names.values()) - dead, dead


def queues_in(widget_title: str, dashboard: dict) -> set[str]:
    [widget] = [w for w in dashboard["widgets"] if w["properties"].get("title") == widget_title]
    return {line[3] for line in widget["properties"]["metrics"]}


def test_the_dashboard_shows_age_and_depth_of_every_queue_and_dead_letter_queue(dashboard, queues):
    work, dead = queues
    assert queues_in("Age of oldest message (work queues)", dashboard) == work
    assert queues_in("Messages waiting (visible)", dashboard) == work
    assert queues_in("Messages in flight (being processed)", dashboard) == work
    assert queues_in("Dead-letter queues: messages waiting", dashboard) == dead
    assert queues_in("Dead-letter queues: messages in flight", dashboard) == dead
    assert queues_in("Dead-letter queues: age of oldest message", dashboard) == dead


def alarmed(template: dict, metric: str) -> dict[str, dict]:
    """Dimension value → alarm properties, for the alarms on `metric`."""
    return {substitute(a["Dimensions"][0]["Value"]["Fn::Sub"]): a
            for a in alarms_of(template).values() if a.get("MetricName") == metric}


def test_every_dead_letter_queue_alarms_on_its_first_message(template, queues):
    _, dead = queues
    by_queue = alarmed(template, "ApproximateNumberOfMessagesVisible")
    assert set(by_queue) == dead
    for alarm in by_queue.values():
        assert alarm["Threshold"] == {"Ref": "DeadLetterQueueMessages"}
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["Statistic"] == "Maximum"
    assert template["Parameters"]["DeadLetterQueueMessages"]["Default"] == 0


def test_every_work_queue_alarms_on_its_oldest_message_with_a_threshold_of_its_own(template, queues):
    work, _ = queues
    by_queue = alarmed(template, "ApproximateAgeOfOldestMessage")
    assert set(by_queue) == work
    thresholds = {alarm["Threshold"]["Ref"] for alarm in by_queue.values()}
    assert len(thresholds) == len(work)
    for name in thresholds:
        assert template["Parameters"][name]["Type"] == "Number" and template["Parameters"][name]["Default"] >= 300


@pytest.fixture(scope="module")
def chalice_config() -> dict:
    return json.loads((ROOT / ".chalice" / "config.json").read_text())


def test_every_function_chalice_deploys_is_on_the_dashboard_and_alarmed(template, dashboard, chalice_config):
    app = chalice_config["app_name"]
    deployed = {f"{app}-prod" if function == "api_handler" else f"{app}-prod-{function}"
                for function in chalice_config["stages"]["prod"]["lambda_functions"]}
    assert set(monitoring.functions()) == set(chalice_config["stages"]["prod"]["lambda_functions"])
    for title in ("Invocations", "Errors", "Throttles", "Duration p50", "Duration p99", "Concurrent executions"):
        [widget] = [w for w in dashboard["widgets"] if w["properties"].get("title") == title]
        shown = {line[3] for line in widget["properties"]["metrics"] if len(line) > 3}
        assert shown == deployed, title
    stats = {w["properties"]["title"]: w["properties"]["stat"]
             for w in dashboard["widgets"] if w["properties"].get("title", "").startswith("Duration")}
    assert stats == {"Duration p50": "p50", "Duration p99": "p99"}
    for metric, threshold in (("Errors", "LambdaErrorsPerPeriod"), ("Throttles", "LambdaThrottlesPerPeriod")):
        by_function = alarmed(template, metric)
        assert set(by_function) == deployed
        assert {a["Threshold"]["Ref"] for a in by_function.values()} == {threshold}


def hub_alarm(template: dict, name: str) -> dict:
    [alarm] = [a for a in alarms_of(template).values() if a["AlarmName"]["Fn::Sub"] == f"hub-${{Stage}}-{name}"]
    return alarm


def test_dead_letters_lost_bodies_signature_and_unhandled_spikes_alarm_on_the_hub_s_counters(template):
    # Dead letters, per destination and per provider: one Metrics Insights query per alarm.
    for name, metric, threshold in (("delivery-dead-letters", "DeliveriesDead", "DeadLettersPerPeriod"),
                                    ("send-dead-letters", "MessagesDead", "DeadLettersPerPeriod"),
                                    ("queue-bodies-lost", "QueueBodiesLost", "QueueBodiesLostPerPeriod")):
        alarm = hub_alarm(template, name)
        [query] = alarm["Metrics"]
        assert f"SELECT SUM({metric}) FROM" in _text(query["Expression"])
        assert query["Period"] == 300 and query["ReturnData"] is True
        assert alarm["Threshold"] == {"Ref": threshold} and alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert template["Parameters"][threshold]["Default"] == 0  # the first one alarms
    for name, metric in (("webhook-signature-rejections", "WebhooksRejected"),
                         ("callback-signature-rejections", "CallbacksRejected")):
        [query] = hub_alarm(template, name)["Metrics"]
        expression = _text(query["Expression"])
        assert f"SUM({metric})" in expression and "reason = 'invalid_signature'" in expression
        assert query["Period"] == 300 and query["ReturnData"] is True
    from chalicelib.errors import SignatureError

    assert SignatureError.code == "invalid_signature"
    unhandled = hub_alarm(template, "unhandled-events")
    assert {q["MetricStat"]["Metric"]["MetricName"] for q in unhandled["Metrics"] if "MetricStat" in q} == \
        {"UnhandledRecorded", "EventsRejected"}
    [result] = [q for q in unhandled["Metrics"] if q.get("ReturnData")]
    assert "FILL(" in result["Expression"]  # a quiet period counts as zero, not as no data


def test_every_threshold_is_a_parameter_with_a_default_and_missing_data_is_decided(template):
    alarms = alarms_of(template)
    assert len(alarms) == 5 + 6 + 6 + 2 * len(monitoring.functions())
    for alarm in alarms.values():
        parameter = template["Parameters"][alarm["Threshold"]["Ref"]]
        assert parameter["Type"] == "Number" and parameter["MinValue"] == 0 and "Default" in parameter
        assert parameter["Description"]
        # Every alarm here watches something that publishes nothing when idle: silence is healthy.
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"]
        assert "Runbook: docs/deploy.md" in str(alarm["AlarmDescription"])
    names = [alarm["AlarmName"]["Fn::Sub"] for alarm in alarms.values()]
    assert len(set(names)) == len(names) and all(n.startswith("hub-${Stage}-") for n in names)


# --- the optional SNS topic ----------------------------------------------------------------------

def evaluate(condition, conditions: dict, parameters: dict) -> bool:
    [(function, argument)] = condition.items()
    if function == "Condition":
        return evaluate(conditions[argument], conditions, parameters)
    if function == "Fn::Equals":
        left, right = (parameters[v["Ref"]] if isinstance(v, dict) else v for v in argument)
        return left == right
    if function == "Fn::Not":
        return not evaluate(argument[0], conditions, parameters)
    if function == "Fn::And":
        return all(evaluate(c, conditions, parameters) for c in argument)
    if function == "Fn::Or":
        return any(evaluate(c, conditions, parameters) for c in argument)
    raise AssertionError(function)


@pytest.mark.parametrize(("topic_arn", "email", "creates_topic", "notifies"), [
    ("", "", False, None),
    ("", "ops@example.com", True, "AlarmTopic"),
    ("arn:aws:sns:eu-central-1:123456789012:oncall", "", False, "AlarmTopicArn"),
    ("arn:aws:sns:eu-central-1:123456789012:oncall", "ops@example.com", False, "AlarmTopicArn"),
])
def test_alarm_notifications_are_optional(template, topic_arn, email, creates_topic, notifies):
    conditions = template["Conditions"]
    parameters = {"AlarmTopicArn": topic_arn, "AlarmEmail": email}
    def holds(name: str) -> bool:
        return evaluate({"Condition": name}, conditions, parameters)

    for key in ("AlarmTopic", "AlarmEmailSubscription"):
        assert holds(template["Resources"][key]["Condition"]) is creates_topic
    for alarm in alarms_of(template).values():
        for actions in (alarm["AlarmActions"], alarm["OKActions"]):
            condition, when, otherwise = actions["Fn::If"]
            if notifies is None:
                assert not holds(condition) and otherwise == {"Ref": "AWS::NoValue"}
                continue
            assert holds(condition)
            [choice] = when
            which, arn, created = choice["Fn::If"]
            assert (arn if holds(which) else created) == {"Ref": notifies}


@pytest.mark.parametrize(("name", "good", "bad"), [
    ("AlarmTopicArn", ["", "arn:aws:sns:eu-central-1:123456789012:oncall-alarms"],
     ["oncall", "arn:aws:sqs:eu-central-1:123456789012:q", "arn:aws:sns:eu-central-1:1234:t"]),
    ("AlarmEmail", ["", "ops@example.com"], ["ops", "ops@example", "a b@example.com"]),
])
def test_the_notification_parameters_are_constrained(template, name, good, bad):
    pattern = template["Parameters"][name]["AllowedPattern"]
    assert all(re.fullmatch(pattern, value) for value in good)
    assert not any(re.fullmatch(pattern, value) for value in bad)


def test_the_template_is_plain_yaml_deploy_py_can_read(template):
    # deploy.py reads the parameters with yaml.safe_load: the generator writes long-form intrinsics.
    assert yaml.safe_load(monitoring.TEMPLATE.read_text()) == template
