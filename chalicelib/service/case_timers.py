"""Case timers: when a case's SLA, follow-up and auto-close fall due, and how a due timer gets
from the timer backend onto the events queue.

Timers are armed *before* the commit that records their due times on the case: a timer armed for
a commit that then failed is harmless (it finds a different due time on the case and is stale),
a commit whose timer was never armed would be lost. Firing is at least once (a Scheduler retry, a
pump that crashed between enqueue and delete); the fired event's id
(`timer_event_id`) makes the processing act once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError

from chalicelib.adapters.queue.base import OutgoingMessage, Queue
from chalicelib.adapters.timers.base import Timer, TimerPort
from chalicelib.domain.ids import group_id
from chalicelib.domain.models import Priority
from chalicelib.errors import MalformedPayloadError

if TYPE_CHECKING:
    from chalicelib.adapters.timers.local import LocalTimers
    from chalicelib.domain.policies import CasePolicy
    from chalicelib.domain.stored import CaseSummary
    from chalicelib.routing.settings import SlaSettings

logger = logging.getLogger(__name__)

CaseTimer = Literal["sla", "follow_up", "auto_close"]
CASE_TIMERS: tuple[CaseTimer, ...] = ("sla", "follow_up", "auto_close")

#: How many due timers the pump moves per batch (one queue send of ≤10 SQS-sized batches each).
PUMP_BATCH = 100
#: Batches per `run_once`, so one call drains a backlog without running unbounded.
PUMP_MAX_BATCHES = 10

_UNSAFE = re.compile(r"[^0-9a-zA-Z_.-]")
_MAX_NAME = 64


def due_times(
    case: CaseSummary,
    *,
    sla: SlaSettings,
    policy: CasePolicy,
    now: datetime,
    priority: Priority | None = None,
    follow_up_hours: float | None = None,
) -> dict[CaseTimer, datetime]:
    """The case's due times: the SLA counts from when it opened (by its `priority`, normal when it
    has none, as the `sla_breached` condition does), auto-close from its last activity, and a
    follow-up, when asked for, from `now`."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if follow_up_hours is not None and follow_up_hours <= 0:
        raise ValueError(f"follow_up_hours must be positive, not {follow_up_hours}")
    due: dict[CaseTimer, datetime] = {
        "sla": case.opened_at + timedelta(hours=sla.hours_for(priority or Priority.NORMAL)),
        "auto_close": case.last_activity_at + timedelta(hours=policy.auto_close_after_hours),
    }
    if follow_up_hours is not None:
        due["follow_up"] = now + timedelta(hours=follow_up_hours)
    return {name: _utc(at) for name, at in due.items()}


def timer_event_id(case_id: str, timer: str, due: datetime) -> str:
    """The id of the event a fired timer becomes: one per case, timer and due time, so firing
    twice acts once and a re-armed timer (a new due time) acts again."""
    return f"timer:{case_id}:{timer}:{_utc(due):%Y%m%dT%H%M%SZ}"


def schedule_name(case_id: str, timer: str, due: datetime) -> str:
    """The timer's name (and Scheduler schedule name): `<case>-<timer>-<epoch seconds>`, within
    Scheduler's 64 characters of `[0-9a-zA-Z-_.]`. An id with other characters is replaced by
    `_`, and a name that would be too long keeps a digest of the case id, so it stays unique."""
    suffix = f"-{timer}-{int(_utc(due).timestamp())}"
    case_part = _UNSAFE.sub("_", case_id)
    if case_part != case_id or len(case_part) + len(suffix) > _MAX_NAME:
        digest = hashlib.sha256(case_id.encode()).hexdigest()
        case_part = f"{case_part[:max(0, _MAX_NAME - len(suffix) - 25)]}_{digest[:24]}"
    return case_part + suffix


def timer_fired_payload(case_id: str, customer_id: str, timer: CaseTimer, due_at: datetime) -> str:
    """The `TimerFired` work item (`domain/business_events.py`, `kind: timer`) as queue JSON."""
    if timer not in CASE_TIMERS:
        raise ValueError(f"timer must be one of {', '.join(CASE_TIMERS)}, not {timer!r}")
    if not case_id or not customer_id:
        raise ValueError("a case timer needs the case id and the customer id")
    return json.dumps({"kind": "timer", "case_id": case_id, "customer_id": customer_id, "timer": timer,
                       "due_at": _iso(due_at)}, separators=(",", ":"))


def case_timers(case_id: str, customer_id: str, due: Mapping[CaseTimer, datetime]) -> list[Timer]:
    """The timers to arm for the case's due times (what `TimerPort.arm` takes)."""
    return [Timer(name=schedule_name(case_id, timer, at), due_at=at,
                  payload=timer_fired_payload(case_id, customer_id, timer, at))
            for timer, at in due.items()]


def cancel_case_timers(timers: Callable[[], TimerPort] | None, case: CaseSummary, *,
                       keep: Collection[str] = ()) -> None:
    """Best effort: cancel the timers of a case that closed (its `due` times, but those named in
    `keep`). Never raises: a timer left armed finds the case closed and is a stale no-op, so a
    timer backend that is down must not fail the close."""
    if timers is None:
        return
    names = [schedule_name(case.id, timer, at) for timer, at in case.due.items() if timer not in keep]
    if not names:
        return
    try:
        timers().cancel(names)
    except Exception:  # noqa: BLE001 - any failure only leaves stale timers behind
        logger.warning("case %s closed, but its timers %s were not cancelled (they will fire stale)",
                       case.id, ", ".join(names), exc_info=True)


FiredAction = Literal["stale", "rearm", "act"]


@dataclass(frozen=True)
class FiredTimer:
    """What to do with a fired case timer; `rearm_at` is the new due time of a `rearm`."""

    action: FiredAction
    reason: str
    rearm_at: datetime | None = None


def fired_timer_action(
    *,
    timer: CaseTimer,
    due_at: datetime,
    case_open: bool,
    armed_due_at: datetime | None,
    last_activity_at: datetime | None,
    policy: CasePolicy,
    now: datetime,
) -> FiredTimer:
    """Decide on a fired case timer (design 5.5): stale unless the case is open and still holds
    this very due time (`case.due[timer]`, passed as `armed_due_at`); an auto-close whose case had
    activity since is re-armed at the new end of inactivity (one firing per inactivity window,
    instead of re-arming on every contact)."""
    if not case_open:
        return FiredTimer("stale", "the case is closed or gone")
    if armed_due_at is None or _utc(armed_due_at) != _utc(due_at):
        return FiredTimer("stale", "the case holds another due time for this timer")
    if timer == "auto_close":
        if last_activity_at is None:
            raise ValueError("an auto-close timer needs the case's last activity")
        inactive_at = _utc(last_activity_at + timedelta(hours=policy.auto_close_after_hours))
        if inactive_at > _utc(now):
            return FiredTimer("rearm", "the case had activity since the timer was armed", inactive_at)
    return FiredTimer("act", f"{timer} due")


def timer_message(timer: Timer) -> OutgoingMessage:
    """The events-queue message of a due timer: its payload, in the group of the customer it
    concerns (ordered with that customer's other events, as `event_group` orders events
    addressed by customer id), deduplicated by the timer's name."""
    try:
        payload = json.loads(timer.payload)
    except ValueError:
        raise MalformedPayloadError(f"timer {timer.name}: its payload is not JSON") from None
    customer_id = payload.get("customer_id") if isinstance(payload, dict) else None
    if not isinstance(customer_id, str) or not customer_id:
        raise MalformedPayloadError(f"timer {timer.name}: its payload names no customer_id")
    return OutgoingMessage(
        body=timer.payload,
        group=group_id(f"customer:{customer_id}"),
        dedupe_id=hashlib.sha256(f"timer:{timer.name}".encode()).hexdigest(),
    )


class TimerEndpoint:
    """The timers Lambda (EventBridge Scheduler's target): puts the fired timer's payload on the
    events queue. Raising makes Scheduler retry, then dead-letter the timer."""

    def __init__(self, events_queue: Callable[[], Queue], clock: Callable[[], datetime]) -> None:
        self._events_queue = events_queue
        self._clock = clock

    def fire(self, lambda_event: dict) -> None:
        """Raises `MalformedPayloadError` for an input that is not a `Timer`, and
        `QueueUnavailableError` when the events queue refuses it."""
        try:
            timer = Timer.model_validate(lambda_event)
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in error["loc"]) or "input" for error in exc.errors())
            raise MalformedPayloadError(f"the timer event is not a timer (check: {fields})") from None
        self.enqueue([timer])
        logger.info("timer %s fired %.0f s after its due time", timer.name,
                    (self._clock() - timer.due_at).total_seconds())

    def enqueue(self, timers: Sequence[Timer]) -> None:
        """Put due timers on the events queue now (also for timers armed too close to their due
        time to schedule)."""
        if timers:
            self._events_queue().send([timer_message(t) for t in timers])


class TimerPump:
    """Moves the embedded runtime's due timers onto the events queue: enqueue first, then
    delete, so a crash in between fires them again rather than never."""

    def __init__(self, timers: LocalTimers, events_queue: Callable[[], Queue], *, batch: int = PUMP_BATCH) -> None:
        self._timers = timers
        self._events_queue = events_queue
        self._batch = batch

    def run_once(self, now: datetime) -> int:
        """Fire every timer due at `now` (up to `PUMP_MAX_BATCHES` batches); returns how many
        were queued.
        Raises `QueueUnavailableError` / `TransientError` with the rest left armed."""
        fired = 0
        for _ in range(PUMP_MAX_BATCHES):
            due = self._timers.due(now, self._batch)
            if not due:
                break
            messages = []
            for timer in due:
                try:
                    messages.append(timer_message(timer))
                except MalformedPayloadError as exc:
                    # It can never be enqueued; kept, it would block every timer due after it.
                    logger.error("dropping timer %s: %s", timer.name, exc.message)
            if messages:
                self._events_queue().send(messages)
            self._timers.remove([t.name for t in due])
            fired += len(messages)
            if len(due) < self._batch:
                break
        return fired


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("due times must be timezone-aware")
    return at.astimezone(UTC)


def _iso(at: datetime) -> str:
    return _utc(at).isoformat().replace("+00:00", "Z")
