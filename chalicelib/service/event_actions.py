"""What a business event's matching rules do to one customer: computed in memory, committed once.

`EventActions.apply` runs the actions of every matching rule (in rule order) over the customer and
their open case and answers `EventEffects`: the customer and the cases to write, the timeline
entry's case, text and parking, the messages to queue for destinations and the timers to arm.
The event processor (`service/events.py`) queues and arms those *before* it commits, with ids
derived from what caused them, so a retried event repeats nothing (as `Processor` does for
contacts): a timer armed for a commit that then failed finds another due time and is stale, a
delivery or case announcement queued twice has one id.

Per rule the actions act in a fixed order, so a rule reads as it is written:

1. `open_case` (updates the open case, or opens one) and `priority` / `escalate` / `queue` on it;
2. `add_to_case`: the event joins the open case's timeline;
3. `tag_customer`, `set_attribute` (refused, and recorded, past `customers` limits);
4. `notify` (through `service/notify.Notifier`, every guard; the customer's open case *before*
   this event decides suppression, so a rule that opens a case about the outage still tells the
   customer about it);
5. `forward` and `park` (the event contact goes to destinations, or to the exception queue);
6. `close_case`;
7. `follow_up_hours` (a follow-up timer on the open case).

Every action's outcome is one entry of the event contact's `metadata.actions`; nothing is raised
for what a rule cannot do (no open case to add to, an attribute over the limit).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chalicelib.domain.ids import delivery_id, digest_id
from chalicelib.domain.models import Case, CaseStatus, Customer, Priority
from chalicelib.errors import SendRefusedError, UnsendableMessageError
from chalicelib.routing.actions import raised_by
from chalicelib.service.cases import close, effective, summarize

if TYPE_CHECKING:
    from chalicelib.adapters.queue.base import OutgoingMessage
    from chalicelib.adapters.timers.base import Timer
    from chalicelib.domain.business_events import BusinessEvent
    from chalicelib.domain.models import Contact
    from chalicelib.domain.policies import CasePolicy, CustomerLimits, SurvivorshipPolicy
    from chalicelib.routing.event_rules import EventDecision
    from chalicelib.routing.event_specs import EventActionSpec
    from chalicelib.routing.event_templates import EventTemplates
    from chalicelib.routing.settings import SlaSettings
    from chalicelib.service.notify import Notifier, NotifyPolicy, RenderedMessage

logger = logging.getLogger(__name__)

_RAISED = {steps: raised_by(steps) for steps in (1, 2, 3)}
#: The case fields the customer's open-case summary holds (`CaseSummary`).
_SUMMARY_FIELDS = frozenset({"id", "opened_at", "last_activity_at", "contact_count", "channels", "external_state",
                             "queue", "priority", "tags", "topic", "due"})


@dataclass
class EventEffects:
    """What one event's actions change for one customer, before anything is written."""

    customer: Customer
    #: Whether the customer record must be written (open case, tags, attributes, outreach).
    customer_changed: bool = False
    #: Cases opened, changed or closed, by id (written with the event).
    cases: dict[str, Case] = field(default_factory=dict)
    #: The customer's open case as the actions left it (None: no open case).
    open_case: Case | None = None
    #: The case the event contact is filed on ("" when none of the actions filed it).
    case_id: str = ""
    #: `metadata.actions` of the event contact, in order.
    outcomes: list[dict] = field(default_factory=list)
    #: Case announcements for destinations (queued before the commit).
    announcements: list[OutgoingMessage] = field(default_factory=list)
    #: Case timers to arm before the commit.
    timers: list[Timer] = field(default_factory=list)
    #: Destinations the event contact is forwarded to (a parked event goes to none until released).
    destinations: list[str] = field(default_factory=list)
    parked: str | None = None
    #: The event contact's text: the first forward template's rendering.
    text: str | None = None
    #: A notification waits for the quiet hours to end.
    deferred: bool = False
    load_case: Callable[[str], Case | None] | None = None

    def stored(self, case: Case) -> Case:
        """`case` as stored, the first time an action changes it (later changes build on the
        copy in `cases`); the summary-built case when nothing can be read."""
        if case.id in self.cases:
            return self.cases[case.id]
        if self.load_case is None:
            return case
        found = self.load_case(case.id)
        if found is None or found.status != CaseStatus.OPEN:
            return case
        # The summary on the customer is what this event decided on; the stored case adds the rest.
        return found.model_copy(update={name: getattr(case, name) for name in type(case).model_fields
                                        if name in _SUMMARY_FIELDS})

    def case_changed(self, case: Case) -> None:
        self.cases[case.id] = case
        if case.status == CaseStatus.OPEN:
            self.open_case = case


class EventActions:
    """Applies event rules' actions (`EventActionSpec`) for one customer.

    `notifier` gives the `Notifier` on first use; `case_event_destinations` the destinations
    that take `case.opened` / `case.closed`."""

    def __init__(self, *, notifier: Callable[[], Notifier], templates: EventTemplates, cases: CasePolicy,
                 sla: SlaSettings, survivorship: SurvivorshipPolicy, limits: CustomerLimits,
                 notify_policy: NotifyPolicy, case_event_destinations: Callable[[], list[str]]) -> None:
        self._notifier = notifier
        self._templates = templates
        self._cases = cases
        self._sla = sla
        self._survivorship = survivorship
        self._limits = limits
        self._notify_policy = notify_policy
        self._case_event_destinations = case_event_destinations

    def apply(self, decision: EventDecision, event: BusinessEvent, customer: Customer, *, now: datetime,
              load_case: Callable[[str], Case | None] | None = None, dry_run: bool = False) -> EventEffects:
        """The effects of `decision`'s actions on `customer` at `now`. With `dry_run` notify sends
        nothing and arms nothing (`Notifier.notify(dry_run=True)`); the other actions only compute.

        `load_case` reads a stored case (`Store.get_case`): an action that changes the open case
        writes it whole (its reply target, its tickets), not just what the customer's summary
        holds; without it the summary is written."""
        before = _open_case(customer, now, self._cases)
        effects = EventEffects(customer=customer, open_case=before)
        effects.load_case = load_case
        if customer.open_case is not None and before is None:
            # Closed by inactivity since it was last written: written closed with this event.
            inactive = effective(_case_of(customer), now, self._cases)
            effects.cases[inactive.id] = inactive
            effects.customer = customer.model_copy(update={"open_case": None})
            effects.customer_changed = True
        notify_case = before
        for rule, actions in decision.actions:
            self._case_actions(rule, actions, event, effects, now)
            if actions.add_to_case is not None:
                self._add_to_case(rule, actions, effects, now)
            if actions.tag_customer:
                self._tag(rule, actions.tag_customer, effects, now)
            if actions.set_attribute:
                self._set_attributes(rule, actions.set_attribute, event, effects, now)
            if actions.notify is not None:
                self._notify(rule, actions, event, effects, notify_case, now, dry_run)
            if actions.forward is not None:
                self._forward(rule, actions, event, effects)
            if actions.park is not None:
                effects.parked = effects.parked or f"{actions.park} (rule {rule})"
                effects.outcomes.append({"action": "park", "rule": rule, "outcome": "parked", "reason": actions.park})
            if actions.close_case is not None:
                self._close(rule, actions.close_case.reason, effects, now)
            if actions.follow_up_hours is not None:
                self._follow_up(rule, actions.follow_up_hours, effects, now)
        if effects.open_case is not None:
            summary = summarize(effects.open_case)
            if effects.customer.open_case != summary:
                effects.customer = effects.customer.model_copy(update={"open_case": summary})
                effects.customer_changed = True
        return effects

    # --- cases -------------------------------------------------------------------------------------

    def _case_actions(self, rule: str, actions: EventActionSpec, event: BusinessEvent, effects: EventEffects,
                      now: datetime) -> None:
        if actions.open_case is not None:
            self._open(rule, actions, event, effects, now)
        changes: dict[str, Any] = {}
        if actions.priority is not None:
            changes["priority"] = actions.priority
        if actions.queue is not None:
            changes["queue"] = actions.queue
        if not changes and not actions.escalate:
            return
        case = effects.open_case
        if case is None:
            effects.outcomes.append({"action": "case", "rule": rule, "outcome": "no_open_case"})
            return
        priority = changes.get("priority", case.priority or Priority.NORMAL)
        if actions.escalate:
            priority = _RAISED[actions.escalate][priority]
            changes["priority"] = priority
        updated = effects.stored(case).model_copy(update=changes)
        effects.case_changed(updated)
        effects.outcomes.append({"action": "case", "rule": rule, "outcome": "updated", "case_id": case.id,
                                 "priority": updated.priority.name.lower() if updated.priority else None,
                                 "queue": updated.queue})

    def _open(self, rule: str, actions: EventActionSpec, event: BusinessEvent, effects: EventEffects,
              now: datetime) -> None:
        from chalicelib.service.case_timers import case_timers, due_times

        spec = actions.open_case
        changes: dict[str, Any] = {"tags": list(dict.fromkeys([*(effects.open_case.tags if effects.open_case else []),
                                                               *spec.tags]))}
        if spec.queue is not None:
            changes["queue"] = spec.queue
        if spec.priority is not None:
            changes["priority"] = spec.priority
        if spec.topic is not None:
            changes["topic"] = spec.topic
        current = effects.open_case
        if current is not None:
            updated = effects.stored(current).model_copy(
                update={**changes, "last_activity_at": max(current.last_activity_at, now)})
            effects.case_changed(updated)
            effects.case_id = updated.id
            effects.outcomes.append({"action": "open_case", "rule": rule, "outcome": "updated", "case_id": updated.id})
            return
        customer = effects.customer
        case = Case(
            # As `cases.attach_to_case` names a new case: from the customer state it was decided
            # on, so a retry (the commit failed) opens the same case.
            id=digest_id("case", f"{customer.id}:v{customer.version}"), customer_id=customer.id,
            opened_at=now, last_activity_at=now, contact_count=1, channels=[], **changes,
        )
        case.due = due_times(case, sla=self._sla, policy=self._cases, now=now, priority=case.priority)
        effects.timers += case_timers(case.id, customer.id, case.due)
        effects.case_changed(case)
        effects.case_id = case.id
        effects.announcements += self._announce("case.opened", case, now)
        effects.outcomes.append({"action": "open_case", "rule": rule, "outcome": "opened", "case_id": case.id})

    def _add_to_case(self, rule: str, actions: EventActionSpec, effects: EventEffects, now: datetime) -> None:
        case = effects.open_case
        outcome: dict[str, Any] = {"action": "add_to_case", "rule": rule}
        if actions.add_to_case.note:
            outcome["note"] = actions.add_to_case.note
        if case is None:
            effects.outcomes.append({**outcome, "outcome": "no_open_case"})
            return
        if effects.case_id != case.id:
            case = effects.stored(case).model_copy(update={"last_activity_at": max(case.last_activity_at, now),
                                                           "contact_count": case.contact_count + 1})
            effects.case_changed(case)
            effects.case_id = case.id
        effects.outcomes.append({**outcome, "outcome": "added", "case_id": case.id})

    def _close(self, rule: str, reason: str, effects: EventEffects, now: datetime) -> None:
        case = effects.open_case
        if case is None:
            effects.outcomes.append({"action": "close_case", "rule": rule, "outcome": "no_open_case"})
            return
        closed = close(effects.stored(case), now, reason=reason)
        effects.cases[closed.id] = closed
        effects.open_case = None
        effects.case_id = effects.case_id or closed.id
        effects.customer = effects.customer.model_copy(update={"open_case": None})
        effects.customer_changed = True
        effects.announcements += self._announce("case.closed", closed, now, reason=reason)
        effects.outcomes.append({"action": "close_case", "rule": rule, "outcome": "closed", "case_id": closed.id,
                                 "reason": reason})

    def _follow_up(self, rule: str, hours: float, effects: EventEffects, now: datetime) -> None:
        from chalicelib.service.case_timers import case_timers, due_times

        case = effects.open_case
        if case is None:
            effects.outcomes.append({"action": "follow_up", "rule": rule, "outcome": "no_open_case"})
            return
        due = due_times(case, sla=self._sla, policy=self._cases, now=now, priority=case.priority,
                        follow_up_hours=hours)["follow_up"]
        updated = effects.stored(case).model_copy(update={"due": {**case.due, "follow_up": due}})
        effects.case_changed(updated)
        effects.timers += case_timers(case.id, effects.customer.id, {"follow_up": due})
        effects.outcomes.append({"action": "follow_up", "rule": rule, "outcome": "armed", "case_id": case.id,
                                 "due_at": due.isoformat()})

    def _announce(self, event_type: str, case: Case, at: datetime, *, reason: str | None = None) -> list[OutgoingMessage]:
        from chalicelib.service.customer_events import case_event_messages

        destinations = self._case_event_destinations()
        if not destinations:
            return []
        return case_event_messages(event_type, case, occurred_at=at, destinations=destinations, reason=reason)

    # --- the customer record -----------------------------------------------------------------------

    def _tag(self, rule: str, tags: list[str], effects: EventEffects, now: datetime) -> None:
        from chalicelib.domain.golden_record import observe

        customer = effects.customer
        current = customer.attributes.get("tags")
        existing = [str(t) for t in current.value] if current is not None and isinstance(current.value, list) else []
        union = list(dict.fromkeys([*existing, *tags]))
        if union == existing:
            effects.outcomes.append({"action": "tag_customer", "rule": rule, "outcome": "unchanged", "tags": tags})
            return
        updated = observe(customer, {"tags": union}, source=f"events:{rule}", at=now, rules=self._survivorship)
        self._within_limits(rule, "tag_customer", updated, effects, {"tags": tags})

    def _set_attributes(self, rule: str, values: Mapping[str, Any], event: BusinessEvent, effects: EventEffects,
                        now: datetime) -> None:
        from chalicelib.domain.golden_record import observe

        resolved: dict[str, Any] = {}
        missing = []
        for name, value in values.items():
            filled = _event_value(value, event)
            if filled is _ABSENT:
                missing.append(name)
            else:
                resolved[name] = filled
        if missing:
            effects.outcomes.append({"action": "set_attribute", "rule": rule, "outcome": "refused",
                                     "reason": f"the event has no value for {', '.join(missing)}"})
            return
        updated = observe(effects.customer, resolved, source=f"events:{rule}", at=now, rules=self._survivorship)
        self._within_limits(rule, "set_attribute", updated, effects, {"attributes": sorted(resolved)})

    def _within_limits(self, rule: str, action: str, updated: Customer, effects: EventEffects, shown: dict) -> None:
        problem = self._limits.attributes_problem(len(updated.attributes), len(updated.model_dump_json().encode()))
        if problem is not None:
            effects.outcomes.append({"action": action, "rule": rule, "outcome": "refused", "reason": problem, **shown})
            return
        effects.customer = updated
        effects.customer_changed = True
        effects.outcomes.append({"action": action, "rule": rule, "outcome": "set", **shown})

    # --- messages and destinations -----------------------------------------------------------------

    def _notify(self, rule: str, actions: EventActionSpec, event: BusinessEvent, effects: EventEffects,
                case: Case | None, now: datetime, dry_run: bool) -> None:
        from chalicelib.service.notify import OpenCase

        spec = actions.notify
        customer = effects.customer
        open_case = OpenCase(case, topic=case.topic, tags=frozenset(case.tags)) if case is not None else None
        try:
            outcome = self._notifier().notify(spec, event, customer, open_case, rule=rule, now=now,
                                              outreach=customer.outreach, dry_run=dry_run)
        except (SendRefusedError, UnsendableMessageError) as refused:
            # A template the event cannot fill (a missing path), a message no channel can carry.
            effects.outcomes.append({"action": "notify", "rule": rule, "template": spec.template,
                                     "purpose": spec.purpose, "outcome": "unsendable", "reason": refused.code,
                                     "detail": refused.message})
            return
        entry = outcome.view()
        entry["trace"] = outcome.trace
        effects.outcomes.append(entry)
        if outcome.status == "deferred":
            effects.deferred = True
        if outcome.outreach_at is not None:
            sent = customer.outreach.get(spec.purpose, [])
            kept = self._notify_policy.outreach_after(sent, spec.purpose, outcome.outreach_at)
            outreach = {**customer.outreach}
            if kept:
                outreach[spec.purpose] = sorted(kept, reverse=True)  # newest first, as the model keeps it
            else:
                outreach.pop(spec.purpose, None)
            if outreach != customer.outreach:
                effects.customer = customer.model_copy(update={"outreach": outreach})
                effects.customer_changed = True

    def _forward(self, rule: str, actions: EventActionSpec, event: BusinessEvent, effects: EventEffects) -> None:
        spec = actions.forward
        outcome: dict[str, Any] = {"action": "forward", "rule": rule, "destinations": list(spec.destinations)}
        if spec.template is not None and effects.text is None:
            try:
                effects.text = self._templates.render(spec.template, event, attributes=_attributes(effects.customer)).text
            except UnsendableMessageError as missing:
                outcome["text"] = missing.code
        for destination in spec.destinations:
            if destination not in effects.destinations:
                effects.destinations.append(destination)
        effects.outcomes.append({**outcome, "outcome": "forwarded"})

    def forward_jobs(self, contact: Contact, customer: Customer, case: Case | None) -> list[OutgoingMessage]:
        """One `event.forwarded` delivery per destination of the event contact, unless it is
        parked (releasing it forwards it then). Without an open case the job carries a
        placeholder case (id ""): a ticket connector opens a ticket nothing threads into later,
        so pair `forward` with `open_case` when tickets should thread."""
        from chalicelib.domain.models import DeliveryJob
        from chalicelib.service.process import job_message

        routing = contact.routing
        if routing.parked is not None or not routing.destinations:
            return []
        target = case or Case(id="", customer_id=customer.id, opened_at=contact.received_at,
                              last_activity_at=contact.received_at)
        return [job_message(DeliveryJob(delivery_id=delivery_id(contact.id, destination), destination=destination,
                                        event_type="event.forwarded", contact=contact, customer=customer, case=target))
                for destination in routing.destinations]


# --- rendering for the notifier ------------------------------------------------------------------


class TemplateRenderer:
    """`EventTemplates.render` in the shape `Notifier` asks for (`service/notify.TemplateRendering`)."""

    def __init__(self, templates: EventTemplates) -> None:
        self._templates = templates

    def __call__(self, template: str, *, language: str, event: Any, customer: Customer, channel: str) -> RenderedMessage:
        from chalicelib.service.notify import RenderedMessage

        rendered = self._templates.render(template, event, language=language, channel=channel,
                                          attributes=_attributes(customer))
        return RenderedMessage(text=rendered.text or None, subject=rendered.subject, whatsapp=rendered.whatsapp)


def notify_policy(config: Any) -> NotifyPolicy:
    """`NotifyPolicy` from the configuration's `events:` (quiet hours, caps, suppression) and
    `routing.default_language`."""
    from chalicelib.service.notify import FrequencyCap, NotifyPolicy

    events = config.events
    return NotifyPolicy(
        frequency_caps={purpose: FrequencyCap(cap.count, cap.per_hours) for purpose, cap in events.frequency_caps.items()},
        quiet_hours_calendar=events.quiet_hours.calendar,
        quiet_hours_purposes=frozenset(events.quiet_hours.purposes),
        suppress_purposes=frozenset(events.suppress_when_open_case.purposes),
        default_language=config.routing.default_language or "en",
    )


# --- helpers -------------------------------------------------------------------------------------

_ABSENT: Any = object()


def _event_value(value: Any, event: BusinessEvent) -> Any:
    """A `set_attribute` value: literal, or `{data.x}` read from the event (`_ABSENT` when missing)."""
    if not (isinstance(value, str) and value.startswith("{") and value.endswith("}")):
        return value
    from chalicelib.routing.conditions import _MISSING
    from chalicelib.routing.event_conditions import resolve_path
    from chalicelib.routing.event_context import normalized_event

    found = resolve_path(normalized_event(event), tuple(value[1:-1].split(".")))
    return _ABSENT if found is _MISSING or found is None else found


def _attributes(customer: Customer) -> dict[str, Any]:
    return {name: attribute.value for name, attribute in customer.attributes.items()}


def _case_of(customer: Customer) -> Case:
    summary = customer.open_case
    assert summary is not None
    return Case(**summary.model_dump(), customer_id=customer.id)


def _open_case(customer: Customer, now: datetime, policy: CasePolicy) -> Case | None:
    """The customer's open case as readers see it (`cases.effective`): None once inactive."""
    if customer.open_case is None:
        return None
    case = effective(_case_of(customer), now, policy)
    return case if case.status == CaseStatus.OPEN else None
