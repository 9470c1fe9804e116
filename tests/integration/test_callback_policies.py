"""infra/policies.py for two-way destinations (`destinations[].callbacks`): which function may read
which of their secrets. The callback secrets are the API function's (it verifies the vendor's
callbacks) and must be SSM parameters, as every secret it reads; the destination's credentials
are the deliver function's and, where agents' replies are relayed, the process function's (it
reads a reply back from the vendor and notes refused ones on the ticket). What each function
actually calls is checked under moto in test_function_policies.py."""

from __future__ import annotations

import fnmatch

import pytest

from chalicelib.hubconfig import parse_config
from tests.support.infra_scripts import load_infra_script

SECRET_ARN = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:{}-x1Y2z3"


policies = load_infra_script("policies")

TWO_WAY = """
destinations:
  - name: zendesk
    type: zendesk
    base_url: https://acme.zendesk.com
    auth: {type: basic, username: bot@acme.example/token, password: "secretsmanager:hub/dev/zendesk/api-token"}
    callbacks:
      secrets: ["ssm:/hub/dev/zendesk/webhook-secret", "ssm:/hub/dev/zendesk/webhook-secret-next"]
  - name: freshdesk
    type: freshdesk
    base_url: https://acme.freshdesk.com
    api_key: "ssm:/hub/dev/freshdesk/api-key"
    callbacks:
      secrets: ["ssm:/hub/dev/freshdesk/callback-secret"]
      replies: false
  - name: jira
    type: jira_service_management
    base_url: https://acme.atlassian.net
    service_desk_id: "1"
    request_type_id: "2"
    auth: {type: basic, username: bot@acme.example, password: "ssm:/hub/dev/jira/api-token"}
"""


def generated(text: str = TWO_WAY) -> dict[str, dict]:
    return policies.policies_for("dev", parse_config(text, allow_inline_secrets=False))


def parameter(name: str) -> str:
    return f"arn:aws:ssm:eu-central-1:123456789012:parameter{name}"


def grants(policy: dict, action: str, resource: str) -> bool:
    return any(action in s["Action"] and any(fnmatch.fnmatchcase(resource, r) for r in s["Resource"])
               for s in policy["Statement"])


def readable(policy: dict) -> set[str]:
    """The secrets of TWO_WAY this policy lets its function read."""
    names = {"/hub/dev/zendesk/webhook-secret", "/hub/dev/zendesk/webhook-secret-next",
             "/hub/dev/freshdesk/callback-secret", "/hub/dev/freshdesk/api-key", "/hub/dev/jira/api-token"}
    found = {name for name in names if grants(policy, "ssm:GetParameter", parameter(name))}
    if grants(policy, "secretsmanager:GetSecretValue", SECRET_ARN.format("hub/dev/zendesk/api-token")):
        found.add("hub/dev/zendesk/api-token")
    return found


def test_each_function_reads_exactly_the_two_way_secrets_it_uses():
    policy = generated()

    assert readable(policy["api_handler"]) == {"/hub/dev/zendesk/webhook-secret", "/hub/dev/zendesk/webhook-secret-next",
                                               "/hub/dev/freshdesk/callback-secret"}
    # Only zendesk relays replies (freshdesk has `replies: false`, jira no callbacks at all).
    assert readable(policy["process_inbound"]) == {"hub/dev/zendesk/api-token"}
    assert readable(policy["deliver"]) == {"hub/dev/zendesk/api-token", "/hub/dev/freshdesk/api-key",
                                           "/hub/dev/jira/api-token"}
    for function in ("send", "ses_inbound"):
        assert readable(policy[function]) == set()


def test_the_callback_secrets_are_a_statement_of_their_own_and_the_api_reads_no_secrets_manager():
    api = generated()["api_handler"]

    [statement] = [s for s in api["Statement"] if s["Sid"] == "CallbackSecretsParameters"]
    assert statement["Action"] == ["ssm:GetParameter"]
    assert statement["Resource"] == sorted(f"arn:aws:ssm:*:*:parameter{n}" for n in (
        "/hub/dev/freshdesk/callback-secret", "/hub/dev/zendesk/webhook-secret", "/hub/dev/zendesk/webhook-secret-next"))
    assert not any(a.startswith("secretsmanager:") for s in api["Statement"] for a in s["Action"])


def test_one_way_destinations_add_nothing_to_the_api_and_process_functions():
    one_way = generated(TWO_WAY.split("  - name: freshdesk")[0].replace(
        '    callbacks:\n      secrets: ["ssm:/hub/dev/zendesk/webhook-secret", "ssm:/hub/dev/zendesk/webhook-secret-next"]\n',
        ""))
    bare = generated("{}")

    for function in ("api_handler", "process_inbound"):
        assert one_way[function] == bare[function]


def test_the_process_function_needs_no_new_queue_or_table_grant_for_callback_items():
    process = generated()["process_inbound"]
    sids = {s["Sid"]: s for s in process["Statement"]}
    # Agents' replies go to the outbound queue, case events and failure notices to the delivery queue.
    assert sids["AutoRepliesQueue"]["Resource"] == ["arn:aws:sqs:*:*:hub-dev-outbound.fifo"]
    assert sids["DeliveriesQueue"]["Resource"] == ["arn:aws:sqs:*:*:hub-dev-delivery.fifo"]
    # The table grant has no partition condition: CASEREF#, CASE#…/REF#, CUST#, CONTACT# alike.
    assert "Condition" not in sids["Table"]
    assert {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:PutItem",
            "dynamodb:UpdateItem"} <= set(sids["Table"]["Action"])


@pytest.mark.parametrize(("callbacks", "message"), [
    ('["secretsmanager:hub/dev/zendesk/webhook-secret"]', r"destinations\[\]\.callbacks\.secrets.*SSM Parameter Store"),
    ('["ssm:/hub/prod/zendesk/webhook-secret"]', "live under /hub/dev/"),
])
def test_callback_secrets_the_api_function_could_not_read_are_refused(callbacks, message):
    text = f"""
destinations:
  - name: zendesk
    type: zendesk
    base_url: https://acme.zendesk.com
    auth: {{type: basic, username: bot@acme.example/token, password: "ssm:/hub/dev/zendesk/api-token"}}
    callbacks: {{secrets: {callbacks}}}
"""
    with pytest.raises(policies.PolicyError, match=message):
        generated(text)
