"""Route a contact. Pure: no I/O, so it is cheap, testable and explainable.

The spine routes every contact by the configured default route. The routing capability adds
ordered rules in front of it; the default route stays the fallback that always exists.
"""

from __future__ import annotations

from chalicelib.domain.models import Case, Contact, Customer, RoutingDecision, RuleTrace
from chalicelib.hubconfig import HubConfig


def route(contact: Contact, customer: Customer, case: Case, config: HubConfig) -> RoutingDecision:
    default = config.routing.default
    return RoutingDecision(
        priority=default.priority,
        queue=default.queue,
        destinations=config.default_destinations(),
        trace=[RuleTrace(rule="default", matched=True, reason="default route (no rule matched before it)")],
    )
