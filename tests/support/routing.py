"""A routing context with sensible defaults, for rule tests."""

from __future__ import annotations

from datetime import datetime, timezone

from chalicelib.routing.context import RoutingContext

#: Monday 2026-11-23, 10:00 in Berlin (09:00 UTC).
MONDAY_MORNING = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def routing_context(**values) -> RoutingContext:
    defaults = dict(
        channel="sms", provider="twilio", account="+4930123456", text="", subject="", content_type="text",
        attachments=0, language=None, intents=frozenset(), urgent=False, attributes={}, new_customer=False,
        now=MONDAY_MORNING, recent=[MONDAY_MORNING], case_opened_at=MONDAY_MORNING,
    )
    return RoutingContext(**{**defaults, **values})
