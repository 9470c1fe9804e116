"""What an operator on call looks at first (`GET /v1/status`): queue depths, circuits open in
this process, the rules version in force, and how many contacts wait in the exception queue or
as dead letters.

Each part is read on its own: one that cannot be read (a queue this stage lacks, a rules source
that is down) is reported as unknown with the reason, never as a failed page, and never hides
the other parts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import HubError

logger = logging.getLogger(__name__)

#: How far the status counts parked contacts and dead letters (one store page each).
COUNT_LIMIT = 100


@dataclass(frozen=True)
class StatusSources:
    """Where each part of the status comes from; every callable may raise, and is read alone."""

    runtime: str
    stage: str
    #: (name, the queue's depth, or None when its adapter cannot tell) per queue, built lazily.
    queues: Iterable[tuple[str, Callable[[], int | None]]]
    #: Destination names whose delivery circuit this process may know.
    destinations: Callable[[], list[str]]
    #: Seconds a destination's circuit stays open, or None; None itself when this process runs
    #: no deliveries (on AWS the API function never does: each delivery worker has its own).
    circuit_remaining: Callable[[], Callable[[str], float | None] | None]
    routing_rules: Callable[[], tuple[str, str]]
    event_rules: Callable[[], tuple[str, str]]
    #: (how many, whether there are more) among the first `limit` parked contacts / dead letters.
    parked: Callable[[int], tuple[int, bool]]
    dead_letters: Callable[[int], tuple[int, bool]]


def status_report(sources: StatusSources) -> dict[str, Any]:
    queues = []
    for name, depth in sources.queues:
        value, error = _read(depth)
        queues.append({"name": name, "depth": value, **({"error": error} if error else {})})
    return {
        "runtime": sources.runtime,
        "stage": sources.stage,
        "queues": queues,
        "circuits": _circuits(sources),
        "rules": {"routing": _rules(sources.routing_rules), "events": _rules(sources.event_rules)},
        "exceptions": _count(sources.parked),
        "dead_letters": _count(sources.dead_letters),
    }


def _circuits(sources: StatusSources) -> dict[str, Any]:
    remaining, error = _read(sources.circuit_remaining)
    if error:
        return {"observed": False, "open": [], "error": error}
    if remaining is None:
        return {"observed": False, "open": [],
                "note": "circuits are held by each delivery worker; this process delivers nothing"}
    names, error = _read(sources.destinations)
    open_now = []
    for name in names or []:
        seconds = remaining(name)
        if seconds is not None:
            open_now.append({"destination": name, "open_for_seconds": round(seconds, 1)})
    return {"observed": True, "open": open_now, **({"error": error} if error else {})}


def _rules(read: Callable[[], tuple[str, str]]) -> dict[str, Any]:
    found, error = _read(read)
    if error:
        return {"version": None, "source": None, "error": error}
    version, source = found
    return {"version": version, "source": source}


def _count(read: Callable[[int], tuple[int, bool]]) -> dict[str, Any]:
    found, error = _read(lambda: read(COUNT_LIMIT))
    if error:
        return {"count": None, "more": False, "error": error}
    count, more = found
    return {"count": count, "more": more}


def _read(read: Callable[[], Any]) -> tuple[Any, str | None]:
    """`read()`, or (None, why not): a hub error's message, or a generic one for anything else
    (logged), so one broken part never hides the others."""
    try:
        return read(), None
    except HubError as exc:
        return None, exc.message
    except Exception:
        logger.exception("status: a part could not be read")
        return None, "could not be read (see the hub's log)"


def hub_status_sources(hub: Any) -> StatusSources:
    """The status parts of a composed hub (`bootstrap.Hub`), each read only when asked."""

    def depth(attribute: str) -> Callable[[], int | None]:
        def read() -> int | None:
            queue = getattr(hub, attribute)
            measure = getattr(queue, "depth", None)
            return measure() if callable(measure) else None

        return read

    queues = [(name, depth(attribute)) for name, attribute in (
        ("inbound", "inbound_queue"), ("delivery", "delivery_queue"), ("delivery dead letters", "delivery_dead_letters"),
        ("outbound", "outbound_queue"), ("outbound dead letters", "outbound_dead_letters"), ("events", "events_queue"),
        ("events dead letters", "events_dead_letters"),
    )]

    def circuit_remaining():
        # The deliverer this process built, if any: building one here would only show a breaker
        # that never saw a delivery. The embedded runtime delivers in this process, so before
        # its first delivery every circuit is closed; on AWS the API function never delivers.
        deliverer = hub.__dict__.get("deliverer")
        if deliverer is not None:
            return deliverer.breakers.remaining
        return None if hub.settings.on_aws else (lambda destination: None)

    def routing_rules() -> tuple[str, str]:
        return hub.live_router.current().rules.version, getattr(hub.rules_source, "describe", "routing.rules")

    def event_rules() -> tuple[str, str]:
        return hub.live_event_rules.current().rules.version, getattr(hub.event_rules_source, "describe", "events.rules")

    return StatusSources(
        runtime=hub.settings.runtime, stage=hub.settings.stage, queues=queues,
        destinations=lambda: [d.name for d in hub.config.destinations], circuit_remaining=circuit_remaining,
        routing_rules=routing_rules, event_rules=event_rules,
        parked=lambda limit: _counted(hub.store.list_parked(limit=limit)),
        dead_letters=lambda limit: _counted(hub.store.list_dead_letters(limit=limit)),
    )


def _counted(page: Any) -> tuple[int, bool]:
    return len(page.items), page.cursor is not None
