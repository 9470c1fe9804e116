"""infra/policies.py: what each function's policy holds for a configuration using every feature
that needs AWS permissions, and the configurations it refuses because no policy could serve them."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from chalicelib.hubconfig import parse_config
from tests.support.infra_scripts import load_infra_script

ROOT = Path(__file__).resolve().parents[2]


policies = load_infra_script("policies")

EVERYTHING = """
channels:
  twilio:
    auth_tokens: ["ssm:/hub/dev/twilio/auth-token"]
    public_url: https://hub-dev.example.com/webhooks/twilio
  meta:
    app_secrets: ["ssm:/hub/dev/meta/app-secret"]
    verify_tokens: ["ssm:/hub/dev/meta/verify-token"]
destinations:
  - name: crm
    type: webhook
    url: https://crm.example.com/hub-events
    secrets: ["secretsmanager:hub/dev/crm/signing-secret"]
  - name: zendesk
    type: zendesk
    base_url: https://acme.zendesk.com
    auth: {type: basic, username: bot@acme.example/token, password: "ssm:/hub/dev/zendesk/api-token"}
  - name: connect
    type: amazon_connect
    instance_id: arn:aws:connect:eu-west-2:123456789012:instance/11111111-2222-3333-4444-555555555555
    contact_flow_id: 66666666-7777-8888-9999-000000000000
  - name: bus
    type: eventbridge
    event_bus_name: hub-dev-events
enrichment:
  comprehend: {enabled: true, sentiment: true, language: false}
media:
  public_url: https://hub-dev.example.com/api
  link_secret: ["ssm:/hub/dev/media/link-secret"]
  twilio: {account_sid: AC00000000000000000000000000000000, auth_token: "ssm:/hub/dev/media/twilio-token"}
routing:
  source: {type: appconfig, application: ab12cd3, environment: ef45gh6, profile: ij78kl9}
"""


def generated(text: str = EVERYTHING, stage: str = "dev") -> dict[str, dict]:
    return policies.policies_for(stage, parse_config(text, allow_inline_secrets=False))


def grants(policy: dict, action: str, resource: str) -> bool:
    return any(action in s["Action"] and any(fnmatch.fnmatchcase(resource, r) for r in s["Resource"])
               for s in policy["Statement"])


def actions(policy: dict) -> set[str]:
    return {a for s in policy["Statement"] for a in s["Action"]}


def parameter(name: str) -> str:
    return f"arn:aws:ssm:eu-central-1:123456789012:parameter{name}"


def test_each_secret_is_readable_only_by_the_functions_that_use_it():
    policy = generated()
    api, process, deliver, pull = (policy[f] for f in ("api_handler", "process_inbound", "deliver", "ses_inbound"))
    webhook_secrets = ["/hub/dev/twilio/auth-token", "/hub/dev/meta/app-secret", "/hub/dev/meta/verify-token"]
    for name in webhook_secrets:
        assert grants(api, "ssm:GetParameter", parameter(name))
        assert not any(grants(p, "ssm:GetParameter", parameter(name)) for p in (process, deliver, pull))
    # Links are signed where contacts are made and checked where they are served.
    for p in (api, process):
        assert grants(p, "ssm:GetParameter", parameter("/hub/dev/media/link-secret"))
    assert grants(process, "ssm:GetParameter", parameter("/hub/dev/media/twilio-token"))
    assert not grants(api, "ssm:GetParameter", parameter("/hub/dev/media/twilio-token"))
    # Vendor credentials: deliver only.
    assert grants(deliver, "ssm:GetParameter", parameter("/hub/dev/zendesk/api-token"))
    assert grants(deliver, "secretsmanager:GetSecretValue",
                  "arn:aws:secretsmanager:eu-central-1:123456789012:secret:hub/dev/crm/signing-secret-x1Y2z3")
    for p in (api, process, pull):
        assert not grants(p, "ssm:GetParameter", parameter("/hub/dev/zendesk/api-token"))
        assert "secretsmanager:GetSecretValue" not in actions(p)


def test_vendor_calls_are_deliver_s_and_name_the_configured_instance_and_bus():
    policy = generated()
    deliver = policy["deliver"]
    instance = "arn:aws:connect:eu-west-2:123456789012:instance/11111111-2222-3333-4444-555555555555"
    assert grants(deliver, "connect:StartTaskContact", f"{instance}/contact-flow/66666666-7777-8888-9999-000000000000")
    assert grants(deliver, "connect:StartTaskContact", f"{instance}/contact/any-earlier-contact")
    assert not grants(deliver, "connect:StartTaskContact", f"{instance}/contact-flow/another-flow")
    assert not grants(deliver, "connect:StartTaskContact",
                      "arn:aws:connect:eu-west-2:123456789012:instance/another/contact-flow/66666666-7777-8888-9999-000000000000")
    [events] = [s for s in deliver["Statement"] if "events:PutEvents" in s["Action"]]
    assert events["Resource"] == ["arn:aws:events:*:*:event-bus/hub-dev-events"]
    assert events["Condition"] == {"StringEquals": {"events:source": "omnichannel.hub"}}
    for function in ("api_handler", "process_inbound", "ses_inbound"):
        assert not actions(policy[function]) & {"connect:StartTaskContact", "events:PutEvents"}


def test_comprehend_is_the_process_worker_s_and_only_what_is_enabled():
    policy = generated()
    assert {a for a in actions(policy["process_inbound"]) if a.startswith("comprehend:")} == {"comprehend:DetectSentiment"}
    for function in ("api_handler", "deliver", "ses_inbound"):
        assert not {a for a in actions(policy[function]) if a.startswith("comprehend:")}
    assert not {a for a in actions(generated("{}")["process_inbound"]) if a.startswith("comprehend:")}


def test_the_rules_source_is_readable_where_contacts_are_routed_and_explained():
    configuration = "arn:aws:appconfig:*:*:application/ab12cd3/environment/ef45gh6/configuration/ij78kl9"
    policy = generated()
    for function in ("api_handler", "process_inbound"):
        [statement] = [s for s in policy[function]["Statement"] if s["Sid"] == "RoutingRulesAppConfig"]
        assert statement["Resource"] == [configuration]
        assert set(statement["Action"]) == {"appconfig:StartConfigurationSession", "appconfig:GetLatestConfiguration"}
    for function in ("deliver", "ses_inbound"):
        assert not {a for a in actions(policy[function]) if a.startswith("appconfig:")}
    s3 = generated("routing: {source: {type: s3, bucket: hub-dev-123456789012-eu-central-1, key: routing/rules.yaml}}")
    [rules] = [s for s in s3["api_handler"]["Statement"] if s["Sid"] == "RoutingRulesObject"]
    assert rules["Resource"] == ["arn:aws:s3:::hub-dev-123456789012-eu-central-1/routing/rules.yaml"]
    assert rules["Condition"] == policies.OWN_ACCOUNT
    ssm = generated("routing: {source: {type: ssm, parameter: /hub/dev/routing/rules}}")
    assert grants(ssm["process_inbound"], "ssm:GetParameter", parameter("/hub/dev/routing/rules"))
    # Inline rules: nothing to read.
    assert not {s["Sid"] for s in generated("{}")["api_handler"]["Statement"] if s["Sid"].startswith("RoutingRules")}


def test_business_events_reach_their_queue_and_only_the_event_worker_consumes_it():
    policy = generated()
    queue = "arn:aws:sqs:eu-central-1:123456789012:hub-dev-events.fifo"
    table = "arn:aws:dynamodb:eu-central-1:123456789012:table/hub-dev"
    # POST /v1/events, the EventBridge function and the event worker's own fan-out send to it.
    for function in ("api_handler", "eventbridge_events", "process_events"):
        assert grants(policy[function], "sqs:SendMessage", queue), function
        assert grants(policy[function], "s3:PutObject",
                      "arn:aws:s3:::hub-dev-123456789012-eu-central-1/queue/hub-dev-events.fifo/b"), function
    consumers = {f for f, p in policy.items() if grants(p, "sqs:ReceiveMessage", queue)}
    assert consumers == {"process_events"}
    events = policy["process_events"]
    for target in ("outbound", "delivery"):  # notify's messages, forwarded events and case events
        assert grants(events, "sqs:SendMessage", f"arn:aws:sqs:eu-central-1:123456789012:hub-dev-{target}.fifo")
    # A broadcast's pages are Queries on the segment indexes; nothing scans.
    assert grants(events, "dynamodb:Query", f"{table}/index/segment1")
    assert not grants(events, "dynamodb:Query", f"{table}/index/other")
    assert "dynamodb:Scan" not in actions(events)
    # The EventBridge function only enqueues, and keeps what it refuses as an unhandled item.
    bridge = policy["eventbridge_events"]
    assert actions(bridge) == {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage",
                               "s3:PutObject", "dynamodb:PutItem", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    [unhandled] = [s for s in bridge["Statement"] if s["Sid"] == "UnhandledEvents"]
    assert unhandled["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["UNHANDLED#*"]}}
    # Neither reads a secret or calls a vendor.
    for function in ("process_events", "eventbridge_events"):
        assert not {a for a in actions(policy[function])
                    if a.split(":")[0] in ("ssm", "secretsmanager", "connect", "events", "ses", "comprehend")}


def test_the_event_rules_source_is_readable_where_events_are_processed_and_explained():
    ssm = generated("events: {source: {type: ssm, parameter: /hub/dev/events/rules}}")
    for function in ("api_handler", "process_events"):
        assert grants(ssm[function], "ssm:GetParameter", parameter("/hub/dev/events/rules")), function
    for function in ("process_inbound", "deliver", "send", "eventbridge_events", "timers"):
        assert not grants(ssm[function], "ssm:GetParameter", parameter("/hub/dev/events/rules")), function
    s3 = generated("events: {source: {type: s3, bucket: hub-dev-123456789012-eu-central-1, key: events/rules.yaml}}")
    [rules] = [s for s in s3["process_events"]["Statement"] if s["Sid"] == "EventRulesObject"]
    assert rules["Resource"] == ["arn:aws:s3:::hub-dev-123456789012-eu-central-1/events/rules.yaml"]
    assert rules["Condition"] == policies.OWN_ACCOUNT
    # Routing's and the events' sources side by side: each statement keeps its own Sid.
    both = generated("routing: {source: {type: ssm, parameter: /hub/dev/routing/rules}}\n"
                     "events: {source: {type: ssm, parameter: /hub/dev/events/rules}}")
    sids = [s["Sid"] for s in both["api_handler"]["Statement"]]
    assert len(sids) == len(set(sids))
    assert {"RoutingRulesParameter", "EventRulesParameter"} <= set(sids)
    with pytest.raises(policies.PolicyError, match="events.source: IAM grants AppConfig by id"):
        generated("events: {source: {type: appconfig, application: hub-dev, environment: dev, profile: events}}")


def test_every_bucket_statement_is_pinned_to_the_deploying_account():
    for policy in generated().values():
        for statement in policy["Statement"]:
            if any(r.startswith("arn:aws:s3:") for r in statement["Resource"]):
                assert statement["Condition"] == {"StringEquals": {"aws:ResourceAccount": "${aws:PrincipalAccount}"}}


@pytest.mark.parametrize(("text", "message"), [
    ('channels: {twilio: {auth_tokens: ["secretsmanager:hub/dev/twilio"], public_url: "https://h.example.com/w"}}',
     "keep it in SSM Parameter Store"),
    ('media: {public_url: "https://h.example.com/api", link_secret: ["secretsmanager:hub/dev/link"]}',
     "keep it in SSM Parameter Store"),
    ('channels: {twilio: {auth_tokens: ["ssm:/hub/prod/twilio"], public_url: "https://h.example.com/w"}}',
     "live under /hub/dev/"),
    ('destinations: [{name: crm, type: webhook, url: "https://crm.example.com/x", secrets: ["secretsmanager:crm"]}]',
     "live under hub/dev/"),
    ("routing: {source: {type: appconfig, application: hub-dev, environment: dev, profile: routing}}",
     "IAM grants AppConfig by id"),
])
def test_what_no_policy_could_serve_is_refused(text, message):
    with pytest.raises(policies.PolicyError, match=message):
        generated(text)


def test_every_pull_entry_reads_what_the_template_announces_on_its_queue():
    import yaml

    from chalicelib.adapters.channels.registry import PULL_ENTRIES

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((ROOT / "infra" / "stateful.yaml").read_text(), Loader=Loader)
    [notification] = template["Resources"]["Bucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    announced = {rule["Value"] for rule in notification["Filter"]["S3Key"]["Rules"] if rule["Name"] == "prefix"}
    assert set(policies.PULL_ENTRY_PREFIXES) == set(PULL_ENTRIES)
    assert set(policies.PULL_ENTRY_PREFIXES.values()) == announced


def test_a_stage_s_functions_are_pointed_at_their_own_policies_and_nothing_else_changes():
    chalice = {"app_name": "omnichannel-hub", "stages": {"qa": {
        "api_gateway_stage": "api", "iam_policy_file": "policy-dev.json",
        "lambda_functions": {"deliver": {"lambda_timeout": 60}},
        "environment_variables": {"HUB_STAGE": "qa"},
    }, "local": {"iam_policy_file": "policy-local.json", "environment_variables": {"HUB_RUNTIME": "embedded"}}}}

    wired = policies.wire(chalice, "qa", ["api_handler", "deliver"])

    assert wired["stages"]["qa"] == {
        "api_gateway_stage": "api", "environment_variables": {"HUB_STAGE": "qa"},
        "lambda_functions": {"api_handler": {"iam_policy_file": "policy-qa-api_handler.json"},
                             "deliver": {"lambda_timeout": 60, "iam_policy_file": "policy-qa-deliver.json"}},
    }
    assert wired["stages"]["local"]["iam_policy_file"] == "policy-local.json"
    assert policies.deployed_stages(wired) == ["qa"]
