"""The event worker: every unit of the events queue (`domain/business_events.EventWork`) acted on once.

* An **addressed event** finds its customer (by customer id, following merges, or by identifier)
  and is processed for them: the event rules decide, the actions act (`service/event_actions.py`),
  and the event becomes a contact on the customer's timeline (`direction`/`channel` `event`) that
  records the decision and every action's outcome. An event for a customer the hub does not know
  is recorded (`GET /v1/unhandled-events`, provider `events`) and counted, not retried.
* A **broadcast** (no customer) is planned from the event alone (`EventEngine.broadcast_plan`), and
  its segments' first pages are queued (`SegmentFanout.start`); each **page** queues its members
  and the next page; each **member** is processed like an addressed event, in the customer's own
  message group, with `selected_by` naming the rules whose segment chose them.
* A **deferred notify** (quiet hours ended) runs that one rule's notify again with every guard.
* A **fired case timer** goes to the handler the composition root injects (`on_timer`).

Exactly once: the done marker `event:<id>` (a member's `event:<id>:<customer>`) is read by
`Store.begin` and written with the event's commit (`Store.commit_event`, conditional), so of two
attempts one commits; side effects are queued and armed before the commit with ids derived from
the event, and a notification's message id derives from (event, customer, rule), so a retry finds
it recorded and sends nothing twice (`commit_outbound(only_new=True)`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from chalicelib.domain.business_events import (
    BusinessEvent,
    DeferredNotify,
    EventIn,
    EventMessage,
    EventWork,
    SegmentMember,
    SegmentPage,
    TimerFired,
    event_contact_id,
    event_dedupe_key,
)
from chalicelib.domain.models import (
    Channel,
    ContentType,
    Contact,
    Customer,
    Direction,
    Party,
    Resolution,
    RoutingDecision,
    RuleTrace,
)
from chalicelib.errors import ConcurrentUpdateError, ConfigError, InvalidEventError, MalformedPayloadError

if TYPE_CHECKING:
    from chalicelib.adapters.store.base import Store
    from chalicelib.adapters.timers.base import TimerPort
    from chalicelib.hubconfig import HubConfig
    from chalicelib.routing.event_rules import EventEngine
    from chalicelib.service.event_actions import EventActions, EventEffects
    from chalicelib.service.segments import SegmentFanout

logger = logging.getLogger(__name__)

#: Commit attempts of one event for one customer when another worker changed the customer meanwhile.
COMMIT_ATTEMPTS = 3
#: Merged customers followed to their survivor, at most (a merge chain longer is a data problem).
MAX_MERGE_HOPS = 8
#: Customers of each segment an explain shows.
EXPLAIN_SAMPLE = 20
#: How many identifiers of the customer the event contact names as its party (forwarding
#: connectors build a ticket's requester from them).
PARTY_IDENTIFIERS = 10

_WORK = TypeAdapter(EventWork)


class EventProcessor:
    """Acts on the events queue's work. Collaborators come lazily (`Callable[[], X]`), so building
    the processor builds no rules, queue or notifier.

    `rules` gives the event rules engine in force (`LiveEventRules.current`); `actions` applies a
    decision's actions; `fanout` queues a broadcast's pages and members; `timers` arms the case
    timers actions ask for; `delivery_queue` takes forwards and case announcements; `on_timer`
    handles a fired case timer (None: this processor cannot, and says so)."""

    def __init__(self, *, store: Store, rules: Callable[[], EventEngine], actions: Callable[[], EventActions],
                 fanout: Callable[[], SegmentFanout], timers: Callable[[], TimerPort],
                 delivery_queue: Callable[[], Any], config: HubConfig, clock: Callable[[], datetime],
                 on_timer: Callable[[TimerFired], str] | None = None) -> None:
        self._store = store
        self._rules = rules
        self._actions = actions
        self._fanout = fanout
        self._timers = timers
        self._delivery_queue = delivery_queue
        self._config = config
        self._clock = clock
        self.on_timer = on_timer

    # --- the queue ---------------------------------------------------------------------------------

    def process_body(self, body: str, *, receive_count: int) -> str:
        """Act on one events-queue message; the outcome names what happened (`event_processed`,
        `duplicate`, `fanout_page`, `member_processed`, `customer_unmatched`, `deferred`, or the
        timer handler's). Raises `MalformedPayloadError` for a body that is no `EventWork` (it
        can never succeed), and what the store, queues and timers raise when unavailable."""
        try:
            work = _WORK.validate_json(body)
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()[:5])
            raise MalformedPayloadError(f"not an events-queue message (check: {fields})") from None
        if receive_count > 1:
            logger.info("events queue: %s received %d times", work.kind, receive_count)
        match work:
            case EventMessage(event=event) if event.customer is None:
                return self._broadcast(event)
            case EventMessage(event=event):
                return self._addressed(event)
            case SegmentPage():
                self._fanout().page(work)
                return "fanout_page"
            case SegmentMember():
                outcome = self._member(work)
                return "member_processed" if outcome == "event_processed" else outcome
            case DeferredNotify():
                return self._deferred_notify(work)
            case TimerFired():
                if self.on_timer is None:
                    raise ConfigError("a case timer fired, but this event processor has no timer handler")
                return self.on_timer(work)
        raise AssertionError(f"unhandled events-queue work {work.kind}")

    def _addressed(self, event: BusinessEvent) -> str:
        assert event.customer is not None
        # The customer is read by `_process`'s first call (`Store.begin` reads the done marker
        # with the customer, and a merge is followed from there): resolving it here as well would
        # cost every event, and every duplicate, one more read.
        customer_id = event.customer.customer_id or self._identifier_owner(event)
        if customer_id is None:
            return self._unmatched(event, "no customer holds " + _addressee(event))
        return self.process_addressed(event, customer_id)

    def _member(self, member: SegmentMember) -> str:
        return self._process(member.event, member.customer_id, event_dedupe_key(member.event.id, member.customer_id),
                             frozenset(member.rules), per_customer=True)

    def process_addressed(self, event: BusinessEvent, customer_id: str, *,
                          selected_by: frozenset[str] = frozenset()) -> str:
        """Process `event` for the customer `customer_id` (a merged customer's survivor instead)
        once: `event_processed`, `duplicate` when it was processed before, or
        `customer_unmatched` when no such customer exists. For case timers' events too."""
        return self._process(event, customer_id, event_dedupe_key(event.id), selected_by)

    def _broadcast(self, event: BusinessEvent) -> str:
        now = self._clock()
        key = event_dedupe_key(event.id)
        if self._store.begin(key, now=now).done:
            return "duplicate"
        plan = self._rules().broadcast_plan(event, now=now)
        if not plan:
            logger.info("broadcast event %s (%s): no rule selects customers", event.id, event.type)
        # Pages first, then the marker: a crash in between queues the same pages again (same
        # dedupe ids), and the members' own markers make the repeat a no-op.
        self._fanout().start(event, plan)
        self._store.mark_done(key, expires_at=self._dedupe_expiry(now), now=now)
        return "event_processed"

    # --- one event for one customer ----------------------------------------------------------------

    def _process(self, event: BusinessEvent, customer_id: str, dedupe_key: str, selected_by: frozenset[str], *,
                 per_customer: bool = False) -> str:
        """`per_customer`: the done marker is the customer's share of a broadcast. The segment
        index may lag a merge: the survivor is then the one person to tell, under a marker with
        their id, so two absorbed ids reached by one broadcast send one message."""
        for attempt in range(COMMIT_ATTEMPTS):
            now = self._clock()
            start = self._store.begin(dedupe_key, now=now, customer_id=customer_id)
            if start.done:
                return "duplicate"
            customer = start.customer
            if customer is not None and customer.merged_into is not None:
                survivor = self._survivor(customer.merged_into)
                if survivor is not None and per_customer:
                    return self._process(event, survivor, event_dedupe_key(event.id, survivor), selected_by)
                customer = self._store.get_customer(survivor) if survivor is not None else None
            if customer is None:
                if per_customer:
                    logger.info("event %s: segment member %s is gone", event.id, customer_id)
                    return "customer_unmatched"
                return self._unmatched(event, f"customer {customer_id} does not exist")
            try:
                return self._decide_and_commit(event, customer, dedupe_key, selected_by, now)
            except ConcurrentUpdateError:
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _decide_and_commit(self, event: BusinessEvent, customer: Customer, dedupe_key: str,
                           selected_by: frozenset[str], now: datetime) -> str:
        from chalicelib.adapters.store.base import EventCommit
        from chalicelib.routing.event_context import event_context_for
        from chalicelib.service.event_actions import _open_case

        open_case = _open_case(customer, now, self._config.cases)
        ctx = event_context_for(event, customer, now=now, selected_by=selected_by,
                                open_case=open_case if open_case is not None else None)
        decision = self._rules().evaluate(ctx)
        actions = self._actions()
        effects = actions.apply(decision, event, customer, now=now, load_case=self._store.get_case)
        updated = effects.customer
        if effects.customer_changed:
            updated = updated.model_copy(update={"version": customer.version + 1, "updated_at": now})
        contact = self._contact(event, updated, effects, decision.trace, decision.rules_version, dedupe_key)
        # Side effects before the commit, with ids from the event (a retry repeats none of them).
        if effects.timers:
            self._timers().arm(effects.timers)
        outgoing = effects.announcements + actions.forward_jobs(contact, updated, effects.open_case)
        if outgoing:
            self._delivery_queue().send(outgoing)
        self._store.commit_event(EventCommit(
            contact=contact, customer=updated if effects.customer_changed else None, cases=tuple(effects.cases.values()),
            dedupe_key=dedupe_key, dedupe_expires_at=self._dedupe_expiry(now), committed_at=now,
        ))
        return "event_processed"

    def _contact(self, event: BusinessEvent, customer: Customer, effects: EventEffects, trace: list[RuleTrace],
                 rules_version: str, dedupe_key: str) -> Contact:
        """The event on the customer's timeline: what it was, what the rules decided, what each
        action did. `metadata.event.dedupe_key` is the done marker erasure keeps as a tombstone,
        so a late replay of the event cannot bring the customer's data back."""
        name = customer.attributes.get("name")
        proved = customer.identifiers_proved()
        return Contact(
            id=event_contact_id(event, customer.id), direction=Direction.EVENT, provider="hub", channel=Channel.EVENT,
            provider_message_id=event.id, account=event.source,
            sender=Party(identifiers=[i for i in customer.identifiers if i.key in proved][:PARTY_IDENTIFIERS],
                         display_name=str(name.value) if name is not None and name.value else None),
            sent_at=event.occurred_at, received_at=event.received_at, content_type=ContentType.TEXT,
            text=effects.text, customer_id=customer.id, case_id=effects.case_id,
            resolution=Resolution(customer_id=customer.id, created_customer=False, rule="event"),
            metadata={"event": {**event.described(), "dedupe_key": dedupe_key},
                      "rules_version": rules_version, "actions": effects.outcomes},
            routing=RoutingDecision(
                trace=[*trace, *_notify_traces(effects.outcomes)], parked=effects.parked,
                destinations=effects.destinations, rules_version=rules_version,
                **({"queue": effects.open_case.queue} if effects.open_case is not None and effects.open_case.queue
                   else {}),
                **({"priority": effects.open_case.priority}
                   if effects.open_case is not None and effects.open_case.priority is not None else {}),
            ),
            raw={"event": event.model_dump(mode="json", exclude={"source", "received_at"})},
        )

    # --- deferred notifications --------------------------------------------------------------------

    def _deferred_notify(self, work: DeferredNotify) -> str:
        """The quiet hours of `work.rule`'s notify ended: run it again with every guard (consent,
        the open case and the cap may have changed), and record the outcome on the event's
        timeline entry. Once per due time: a timer fired twice sends nothing twice."""
        from chalicelib.adapters.store.base import EventCommit
        from chalicelib.routing.event_rules import EventDecision

        key = f"{event_dedupe_key(work.event.id, work.customer_id)}:notify:{work.rule}:{work.due_at:%Y%m%dT%H%M%SZ}"
        for attempt in range(COMMIT_ATTEMPTS):
            now = self._clock()
            start = self._store.begin(key, now=now, customer_id=work.customer_id)
            if start.done:
                return "duplicate"
            customer = start.customer
            if customer is not None and customer.merged_into is not None:
                survivor = self._survivor(customer.merged_into)
                customer = self._store.get_customer(survivor) if survivor is not None else None
            if customer is None:
                return self._unmatched(work.event, f"customer {work.customer_id} of a deferred message does not exist")
            rule = next((r for r in self._rules().rules.rules if r.name == work.rule), None)
            if rule is None or rule.actions.notify is None:
                logger.warning("deferred message of event %s: rule %s no longer notifies; nothing sent",
                               work.event.id, work.rule)
                return "event_processed"
            decision = EventDecision(trace=[], actions=[(rule.name, rule.actions.model_copy(update={
                "open_case": None, "add_to_case": None, "close_case": None, "tag_customer": [], "set_attribute": {},
                "forward": None, "park": None, "priority": None, "escalate": 0, "queue": None,
                "follow_up_hours": None}))], rules_version="deferred")
            effects = self._actions().apply(decision, work.event, customer, now=now)
            contact = self._store.get_contact(event_contact_id(work.event, customer.id))
            if contact is None:
                contact = self._contact(work.event, customer, effects, [], "deferred",
                                        event_dedupe_key(work.event.id, customer.id))
            else:
                outcomes = [*contact.metadata.get("actions", []),
                            *({**entry, "deferred_from": work.due_at.isoformat()} for entry in effects.outcomes)]
                contact = contact.model_copy(update={
                    "metadata": {**contact.metadata, "actions": outcomes},
                    "routing": contact.routing.model_copy(update={
                        "trace": [*contact.routing.trace, *_notify_traces(effects.outcomes)]}),
                })
                contact.deliveries = []
            updated = effects.customer.model_copy(update={"version": customer.version + 1, "updated_at": now}) \
                if effects.customer_changed else None
            try:
                self._store.commit_event(EventCommit(
                    contact=contact, customer=updated, cases=(), dedupe_key=key,
                    dedupe_expires_at=self._dedupe_expiry(now), committed_at=now))
            except ConcurrentUpdateError:
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise
                continue
            return "deferred" if effects.deferred else "event_processed"
        raise AssertionError("unreachable")

    # --- customers ---------------------------------------------------------------------------------

    def _customer_id(self, event: EventIn) -> str | None:
        """The customer an addressed event names, a merged customer's survivor; None if unknown."""
        assert event.customer is not None
        if event.customer.customer_id is not None:
            return self._survivor(event.customer.customer_id)
        owner = self._identifier_owner(event)
        return self._survivor(owner) if owner is not None else None

    def _identifier_owner(self, event: EventIn) -> str | None:
        """The customer holding the identifier an addressed event names (maybe a merged one); None
        if nobody does."""
        assert event.customer is not None
        from chalicelib.domain.identifiers import Identifier
        from chalicelib.errors import InvalidIdentifierError

        try:
            identifier = Identifier.parse(event.customer.identifier or "",
                                          default_region=self._config.identity.default_region)
        except InvalidIdentifierError:
            return None  # checked at the API; a configuration change since may refuse it now
        return self._store.find_customer_ids([identifier]).get(identifier.key)

    def _survivor(self, customer_id: str) -> str | None:
        """`customer_id`, or the customer it was merged into (transitively); None if it does not exist."""
        seen = customer_id
        for _ in range(MAX_MERGE_HOPS):
            customer = self._store.get_customer(seen)
            if customer is None:
                return None
            if customer.merged_into is None:
                return customer.id
            seen = customer.merged_into
        logger.error("customer %s: merge chain longer than %d; treated as unknown", customer_id, MAX_MERGE_HOPS)
        return None

    def _unmatched(self, event: BusinessEvent, reason: str) -> str:
        from chalicelib.domain.models import UnhandledEvent

        now = self._clock()
        self._store.record_unhandled(
            UnhandledEvent.of("events", f"event {event.id} ({event.type}): {reason}", event.model_dump(mode="json"),
                              now),
            expires_at=now + timedelta(days=self._config.processing.unhandled_days))
        return "customer_unmatched"

    def _dedupe_expiry(self, now: datetime) -> datetime:
        return now + timedelta(days=self._config.processing.dedupe_days)

    # --- explain -----------------------------------------------------------------------------------

    def explain(self, body: dict) -> dict:
        """Which rules would match the event, and what they would do, without writing, queueing,
        arming or sending anything. `body` is `{"event": {...}, "customer": {...}?}`: the customer
        record to explain against, else the addressed event's customer read from the store; a
        broadcast without one shows its fan-out plan and a sample of each segment.

        Raises `InvalidEventError` naming the fields of an event the hub would refuse, and
        `RequestRejectedError` for a customer record that is not one."""
        from chalicelib.routing.event_context import event_context_for
        from chalicelib.service.event_actions import _open_case
        from chalicelib.service.explain import _model

        now = self._clock()
        try:
            event_in = EventIn.model_validate(body.get("event"), context={"now": now})
        except ValidationError as exc:
            fields = {"event." + ".".join(str(p) for p in e["loc"]) if e["loc"] else "event":
                      e["msg"].removeprefix("Value error, ") for e in exc.errors(include_url=False)}
            raise InvalidEventError("; ".join(f"{k}: {v}" for k, v in fields.items()), detail={"fields": fields}) from None
        event = BusinessEvent.accepted(event_in, source="explain", received_at=now)
        engine = self._rules()
        result: dict[str, Any] = {"event": event.described(), "rules_version": engine.rules.version}
        inline = body.get("customer")
        customer: Customer | None = None
        if inline is not None:
            customer = _model(Customer, {"id": "explain", **inline}, "customer")
        elif event.customer is not None:
            customer_id = self._customer_id(event)
            customer = self._store.get_customer(customer_id) if customer_id is not None else None
            if customer is None:
                result.update(trace=[RuleTrace(rule="events", matched=False,
                                               reason=f"no customer holds {_addressee(event)}").model_dump(mode="json")],
                              actions=[], would=["record the event as unhandled (customer_unmatched)"])
                return result
        if customer is None:
            return self._explain_broadcast(event, engine, now, result)
        open_case = _open_case(customer, now, self._config.cases)
        ctx = event_context_for(event, customer, now=now, open_case=open_case,
                                selected_by=_selected_by(engine, event, customer, now))
        decision = engine.evaluate(ctx)
        effects = self._actions().apply(decision, event, customer, now=now, dry_run=True)
        result.update(
            customer_id=customer.id,
            trace=[t.model_dump(mode="json") for t in [*decision.trace, *_notify_traces(effects.outcomes)]],
            actions=effects.outcomes,
            would=_would(effects),
        )
        return result

    def _explain_broadcast(self, event: BusinessEvent, engine: EventEngine, now: datetime,
                           result: dict[str, Any]) -> dict[str, Any]:
        from chalicelib.domain.segments import index_value

        plan = engine.broadcast_plan(event, now=now)
        trace = [RuleTrace(rule="events", matched=True, reason=f"broadcast {event.type} {event.id}")]
        planned = {fanout.rule for fanout in plan}
        for rule in engine.rules.rules:
            if rule.selector is None:
                trace.append(RuleTrace(rule=rule.name, matched=False, reason="no customer_selector: not broadcast"))
            elif rule.name in planned:
                fanout = next(f for f in plan if f.rule == rule.name)
                trace.append(RuleTrace(rule=rule.name, matched=True,
                                       reason=f"fan out to {fanout.attribute} in [{', '.join(fanout.values)}]"))
            else:
                trace.append(RuleTrace(rule=rule.name, matched=False, reason="the event's conditions or values fail"))
        segments = []
        for fanout in plan:
            for value in fanout.values:
                indexed = index_value(value)
                sample = self._store.segment_page(fanout.attribute, indexed, limit=EXPLAIN_SAMPLE).items \
                    if indexed is not None and fanout.attribute in self._store.indexed_attributes else []
                segments.append({"rule": fanout.rule, "attribute": fanout.attribute, "value": value,
                                 "sample": sample})
        result.update(trace=[t.model_dump(mode="json") for t in trace], actions=[], segments=segments,
                      would=[f"notify the customers of {s['attribute']} {s['value']} (rule {s['rule']})"
                             for s in segments])
        return result


def _selected_by(engine: EventEngine, event: BusinessEvent, customer: Customer, now: datetime) -> frozenset[str]:
    """For an explained broadcast with a customer record: the rules whose segment holds the customer."""
    if event.customer is not None:
        return frozenset()
    from chalicelib.routing.event_rules import selector_value

    chosen = set()
    for fanout in engine.broadcast_plan(event, now=now):
        attribute = customer.attributes.get(fanout.attribute)
        if attribute is not None and selector_value(attribute.value) in fanout.values:
            chosen.add(fanout.rule)
    return frozenset(chosen)


def _notify_traces(outcomes: list[dict]) -> list[RuleTrace]:
    """A trace line per notification: `parcel-late: notify parcel_late → sms (whatsapp: outside_service_window)`."""
    return [RuleTrace(rule=o["rule"], matched=o.get("outcome") == "sent", reason=o["trace"])
            for o in outcomes if o.get("action") == "notify" and "trace" in o]


def _would(effects: EventEffects) -> list[str]:
    lines = []
    for outcome in effects.outcomes:
        action, rule = outcome.get("action"), outcome.get("rule")
        if action == "notify":
            lines.append(f"{rule}: {outcome.get('trace', outcome.get('outcome'))}")
        else:
            lines.append(f"{rule}: {action} {outcome.get('outcome')}")
    return lines


def _addressee(event: EventIn) -> str:
    assert event.customer is not None
    return event.customer.identifier or f"customer {event.customer.customer_id}"
