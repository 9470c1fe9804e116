"""What event rules can see about one business event and one customer, gathered once.

An event rule reads the event (its type and any path into it) and the customer (the golden
record, consent, the open case, recent contacts), so the context is routing's context with the
event on top: every customer condition of the routing language works unchanged, and the event
conditions (`routing/event_conditions.py`) read the fields added here.

The same context, without a customer, decides a broadcast event's first phase: which rules
fan out to which segments (`EventEngine.broadcast_plan`), from the event alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from chalicelib.domain.models import Priority
from chalicelib.routing.context import RoutingContext, _ticket_fields

#: The event's fields rules may name (`event: {path: ...}`, template placeholders, selectors).
EVENT_ROOTS = ("type", "id", "source", "occurred_at", "data")

#: `open_case` argument default: read the open case from the customer record.
_FROM_CUSTOMER: Any = object()


class EventContext(RoutingContext):
    """Routing's context plus the event. Added fields:

    * `event_type`: the event's type (`parcel.delayed`).
    * `event`: the normalized event: `type`, `id`, `source`, `occurred_at` (ISO text) and `data`.
    * `paths`: dotted path → resolved value, filled as conditions ask (one lookup per path).
    * `consent`: the customer's consent ledger (`domain/consent.py`).
    * `open_case`: the customer's open case summary, None without one; `case_topic`,
      `case_tags` and `case_queue` are read from it once.
    * `selected_by`: the rules whose segment chose this customer (a broadcast's fan-out); empty
      for an event addressed to the customer.
    * `rule`: the rule being evaluated (`selected: true` asks whether its segment chose the customer).
    """

    __slots__ = ("event_type", "event", "paths", "consent", "open_case", "case_topic", "case_tags", "case_queue",
                 "selected_by", "rule")

    def __init__(self, *, event: dict[str, Any], attributes: dict[str, Any], now: datetime,
                 recent: list[datetime] | None = None, consent: Mapping[str, Any] | None = None,
                 open_case: Any = None, selected_by: Iterable[str] = (), provider: str = "",
                 tags: list[str] | None = None) -> None:
        super().__init__(
            channel="event", provider=provider, account="", text="", subject="", content_type="text",
            attachments=0, language=None, intents=frozenset(), urgent=False, attributes=attributes,
            new_customer=False, now=now, recent=[] if recent is None else recent,
            case_opened_at=open_case.opened_at if open_case is not None else None,
            ticket=_ticket_fields(open_case),
            priority=getattr(open_case, "priority", None) or Priority.NORMAL, tags=tags,
        )
        self.event_type = str(event.get("type", ""))
        self.event = event
        self.paths = {}
        self.consent = {} if consent is None else consent
        self.open_case = open_case
        self.case_topic = getattr(open_case, "topic", None)
        self.case_tags = frozenset(getattr(open_case, "tags", None) or ())
        self.case_queue = getattr(open_case, "queue", None)
        self.selected_by = frozenset(selected_by)
        self.rule = ""


def normalized_event(event: Any) -> dict[str, Any]:
    """The event as rules see it: `type`, `id`, `source`, `occurred_at` (ISO 8601 text) and `data`,
    from a `BusinessEvent`/`EventIn` model or a mapping with those keys."""
    fields = event.model_dump(mode="json") if hasattr(event, "model_dump") else dict(event)
    occurred = fields.get("occurred_at")
    if isinstance(occurred, datetime):
        occurred = occurred.isoformat()
    data = fields.get("data")
    return {"type": fields.get("type", ""), "id": fields.get("id", ""), "source": fields.get("source", ""),
            "occurred_at": occurred, "data": data if isinstance(data, dict) else {}}


def event_context_for(event: Any, customer: Any | None, *, now: datetime, selected_by: Iterable[str] = (),
                      open_case: Any = _FROM_CUSTOMER) -> EventContext:
    """The context of one event for one customer (None: a broadcast's first phase, before any
    customer is known). `open_case` overrides the customer's summary, e.g. with None when the
    case has already expired (`service/cases.effective`). The customer's `tags` attribute seeds
    the context's tags, so `tagged: vip` tests the customer's tags and those earlier rules added."""
    normalized = normalized_event(event)
    if customer is None:
        return EventContext(event=normalized, attributes={}, now=now, selected_by=selected_by,
                            provider=normalized["source"], open_case=None if open_case is _FROM_CUSTOMER else open_case)
    attributes = {name: value.value for name, value in customer.attributes.items()}
    tags = attributes.get("tags")
    return EventContext(
        event=normalized, attributes=attributes, now=now, recent=[at for at, _ in customer.activity.recent],
        consent=customer.consent, open_case=customer.open_case if open_case is _FROM_CUSTOMER else open_case,
        selected_by=selected_by, provider=normalized["source"],
        tags=[str(tag) for tag in tags] if isinstance(tags, list) else [],
    )
