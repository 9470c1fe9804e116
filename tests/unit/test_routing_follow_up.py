"""Routing `then: {follow_up_hours: 48}`: the decision asks for a follow-up timer on the case, the
trace says so, a later rule replaces an earlier one's hours, and bad values name their rule."""

from __future__ import annotations

import pytest

from chalicelib.domain.models import RoutingDecision
from chalicelib.errors import ConfigError
from chalicelib.hubconfig import parse_config
from chalicelib.routing.setup import RouterFactory
from tests.support.routing import routing_context

BASE = """
destinations: [{name: outbox, type: outbox}]
routing:
  default: {queue: general}
"""


def router(rules: str):
    return RouterFactory(parse_config(BASE + "  rules:\n" + rules)).inline


def test_a_matching_rule_sets_the_follow_up_and_says_so_in_the_trace():
    decision = router("""
    - name: billing-follow-up
      when: {channel: sms}
      then: {queue: billing, follow_up_hours: 48}
""").route(routing_context(channel="sms"))
    assert decision.follow_up_hours == 48
    assert [(t.rule, t.matched, t.reason) for t in decision.trace[1:]] == [
        ("billing-follow-up", True, "queue billing; follow up in 48 h")]


def test_no_matching_rule_means_no_follow_up():
    decision = router("""
    - name: billing-follow-up
      when: {channel: email}
      then: {follow_up_hours: 48}
""").route(routing_context(channel="sms"))
    assert decision.follow_up_hours is None


def test_the_last_matching_rule_decides_the_hours():
    decision = router("""
    - {name: first, then: {follow_up_hours: 48}}
    - {name: second, when: {channel: sms}, then: {follow_up_hours: 4.5}}
    - {name: third, when: {channel: email}, then: {follow_up_hours: 1}}
""").route(routing_context(channel="sms"))
    assert decision.follow_up_hours == 4.5


def test_the_follow_up_survives_a_round_trip_of_the_decision():
    decision = router("    - {name: always, then: {follow_up_hours: 24}}\n").route(routing_context())
    assert RoutingDecision.model_validate_json(decision.model_dump_json()).follow_up_hours == 24


@pytest.mark.parametrize("hours", [0, -1, "soon"])
def test_a_bad_value_names_the_rule_and_field(hours):
    with pytest.raises(ConfigError, match=r"routing\.rules\[0\]\.then\.follow_up_hours"):
        router(f"    - {{name: r, then: {{follow_up_hours: {hours}}}}}\n")
