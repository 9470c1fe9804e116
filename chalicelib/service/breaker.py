"""A circuit breaker per destination: while a vendor is down, deliveries wait in the queue.

Without it, every queued job of a failing vendor spends its own retries (and its place on the way
to the dead-letter queue) finding out what the previous one already knew. After
`failure_threshold` consecutive retryable failures the circuit opens: jobs are put back on the
queue for the remaining cool-down without calling the vendor or counting an attempt. Then one job
is let through (half open): success closes the circuit, failure opens it again for twice as long.
A vendor's `Retry-After` (rate limits) opens it for that long at once.

The state is per worker process: on Lambda each container learns an outage by itself, within
`failure_threshold` calls, which keeps the breaker free of extra storage calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _State:
    failures: int = 0
    open_until: float = 0.0
    cooldown: float = 0.0
    trial_running: bool = False


class CircuitBreakers:
    def __init__(self, *, failure_threshold: int = 5, cooldown_seconds: float = 30.0,
                 max_cooldown_seconds: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = failure_threshold
        self._cooldown = cooldown_seconds
        self._max_cooldown = max_cooldown_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}

    def wait_seconds(self, destination: str) -> float | None:
        """None when a call may go out now; else how long the destination's circuit stays open."""
        with self._lock:
            state = self._states.get(destination)
            if state is None or state.open_until == 0.0:
                return None
            remaining = state.open_until - self._clock()
            if remaining > 0:
                return remaining
            if state.trial_running:
                return min(self._cooldown, state.cooldown or self._cooldown)
            state.trial_running = True  # half open: this caller is the trial
            return None

    def succeeded(self, destination: str) -> None:
        with self._lock:
            self._states.pop(destination, None)

    def failed(self, destination: str, *, retry_after: float | None = None) -> None:
        with self._lock:
            state = self._states.setdefault(destination, _State())
            state.failures += 1
            now = self._clock()
            if retry_after is not None and retry_after > 0:
                state.open_until = max(state.open_until, now + retry_after)
                state.trial_running = False
                return
            if state.trial_running or state.failures >= self._threshold:
                state.cooldown = min(self._max_cooldown, (state.cooldown * 2) if state.cooldown else self._cooldown)
                state.open_until = now + state.cooldown
                state.trial_running = False

    def is_open(self, destination: str) -> bool:
        return self.remaining(destination) is not None

    def remaining(self, destination: str) -> float | None:
        """How long the circuit stays open (without taking the half-open trial); None if closed."""
        with self._lock:
            state = self._states.get(destination)
            if state is None:
                return None
            remaining = state.open_until - self._clock()
            return remaining if remaining > 0 else None
