"""The circuit breaker per destination: open after repeated failures, half open, back off."""

from __future__ import annotations

from chalicelib.service.breaker import CircuitBreakers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_circuit_opens_after_the_threshold_and_lets_one_trial_through_after_the_cooldown():
    clock = Clock()
    breakers = CircuitBreakers(failure_threshold=3, cooldown_seconds=30, clock=clock)
    for _ in range(2):
        breakers.failed("crm")
    assert breakers.wait_seconds("crm") is None

    breakers.failed("crm")
    clock.now += 10

    assert breakers.wait_seconds("crm") == 20
    assert breakers.wait_seconds("zendesk") is None, "per destination"
    clock.now += 21
    assert breakers.wait_seconds("crm") is None  # the trial
    assert breakers.wait_seconds("crm") == 30, "only one trial at a time"


def test_a_failed_trial_doubles_the_cooldown_up_to_the_cap_and_a_success_closes_it():
    clock = Clock()
    breakers = CircuitBreakers(failure_threshold=1, cooldown_seconds=30, max_cooldown_seconds=100, clock=clock)
    waits = []
    for _ in range(4):
        breakers.failed("crm")
        waits.append(breakers.wait_seconds("crm"))
        clock.now += waits[-1]
        assert breakers.wait_seconds("crm") is None  # trial

    breakers.succeeded("crm")

    assert waits == [30, 60, 100, 100]
    assert breakers.wait_seconds("crm") is None and not breakers.is_open("crm")


def test_a_rate_limit_opens_the_circuit_for_exactly_the_vendors_delay():
    clock = Clock()
    breakers = CircuitBreakers(failure_threshold=5, clock=clock)

    breakers.failed("crm", retry_after=12)

    assert breakers.wait_seconds("crm") == 12
