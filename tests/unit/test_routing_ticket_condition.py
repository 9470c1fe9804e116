"""The `ticket:` routing condition: what a two-way destination last reported about the case's
ticket (`case.external_state`), as the rules see it."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chalicelib.domain.models import Case, Channel, Contact, ContentType, Customer, ExternalState, Party, Resolution
from chalicelib.errors import ConfigError
from chalicelib.routing.context import context_for
from tests.unit.test_routing_rules import ctx, router, rule

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
HELPDESK = {"helpdesk.state": "open", "helpdesk.status": "pending", "helpdesk.assignee": "Alex Agent",
            "helpdesk.priority": "high"}


def matches(when: str, ticket: dict) -> bool:
    return router(rule(when)).route(ctx(ticket=ticket)).trace[1].matched


@pytest.mark.parametrize(("when", "expected"), [
    ("{ticket: {destination: helpdesk, field: assignee, in: [Alex Agent, Kim]}}", True),
    ("{ticket: {destination: helpdesk, field: assignee, equals: Kim}}", False),
    ("{ticket: {destination: helpdesk, field: status, equals: pending}}", True),
    ("{ticket: {destination: helpdesk, field: state, equals: closed}}", False),
    ("{ticket: {destination: helpdesk, field: priority, exists: true}}", True),
    ("{ticket: {destination: salesforce, field: assignee, exists: true}}", False),
    ("{ticket: {destination: salesforce, field: assignee, exists: false}}", True),
])
def test_the_condition_reads_the_tickets_reported_fields(when, expected):
    assert matches(when, HELPDESK) is expected


def test_a_failed_condition_explains_itself_in_the_trace():
    decision = router(rule("{ticket: {destination: helpdesk, field: assignee, equals: Kim}}")).route(ctx(ticket=HELPDESK))
    assert decision.trace[1].reason == "ticket helpdesk.assignee is not 'Kim'"


@pytest.mark.parametrize(("when", "message"), [
    ("{ticket: {destination: helpdesk, field: owner, equals: Kim}}", "when.ticket.field: must be one of: state, status"),
    ("{ticket: {destination: helpdesk, field: assignee, gte: 3}}", "unknown test 'gte'"),
    ("{ticket: {field: assignee, equals: Kim}}", "must be {destination: <name>"),
])
def test_a_malformed_condition_names_the_field(when, message):
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("(", r"\(")):
        router(rule(when))


def test_the_context_flattens_the_cases_external_state():
    case = Case(id="case_1", customer_id="cus_1", opened_at=NOW, last_activity_at=NOW, external_state={
        "helpdesk": ExternalState(state="closed", vendor_status="solved", assignee="Alex Agent", updated_at=NOW)})
    contact = Contact(id="ct_1", provider="twilio", channel=Channel.SMS, provider_message_id="SM1", account="+1",
                      sender=Party(), received_at=NOW, content_type=ContentType.TEXT, text="hi", customer_id="cus_1",
                      case_id="case_1", resolution=Resolution(customer_id="cus_1", created_customer=False, rule="t"))
    context = context_for(contact, Customer(id="cus_1"), case, created_customer=False)
    assert context.ticket == {"helpdesk.state": "closed", "helpdesk.status": "solved", "helpdesk.assignee": "Alex Agent"}
