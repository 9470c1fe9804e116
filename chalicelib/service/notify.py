"""Proactive messages: an event rule's `notify` decides whether, when and on which channel a
customer hears about an event, then sends through `MessageService` like any other message.

The guards run in a fixed order, and the first one that blocks decides (nothing is sent):

1. **suppression**: the customer's open case is about the same topic (they told us about the
   outage; we do not tell them about it), for the purposes `events.suppress_when_open_case` names;
2. **frequency cap**: the customer already got `count` messages of this purpose within
   `per_hours` (`events.frequency_caps`, counted from `Customer.outreach`);
3. **quiet hours**: the rule's calendar (or `events.quiet_hours`' for the purposes it lists) is
   closed now: a timer fires at its next opening and all guards run again then (consent and the
   open case may have changed);
4. **channels**, in the rule's order: each try goes through `MessageService.send`, which enforces
   consent, reachability and the service windows. A refusal writes nothing, so the next channel is
   tried with the same message id; the id derives from (event, customer, rule), so a redelivered
   event finds the message already recorded and sends nothing twice.

The notifier reads nothing and writes nothing itself: the sent message is committed by
`MessageService`, the deferral goes to the timer port, and what the event's own commit must
record (the outreach time, the decision) comes back in `NotifyOutcome`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import ValidationError

from chalicelib.domain.consent import Purpose
from chalicelib.domain.ids import digest_id, stable_id
from chalicelib.domain.models import Case, CaseStatus, Channel, Customer, ReplyTarget
from chalicelib.domain.outbound import TemplateMessage
from chalicelib.errors import ConfigError, SendRefusedError, UnsendableMessageError

if TYPE_CHECKING:
    from chalicelib.routing.calendar import Calendar
    from chalicelib.service.messages import MessageService

NotifyStatus = Literal["sent", "suppressed", "capped", "deferred", "consent_refused", "unreachable"]

#: `channels` entries that name a rule instead of a channel.
PREFERRED = "preferred"
REPLY = "reply"


# --- what the notifier is given ------------------------------------------------------------------------


class NotifyInstruction(Protocol):
    """A rule's `then.notify` (`routing.event_specs.NotifySpec`): only what the notifier reads."""

    @property
    def template(self) -> str: ...

    @property
    def channels(self) -> Sequence[str]: ...

    @property
    def purpose(self) -> Purpose: ...

    @property
    def topic(self) -> str | None: ...

    @property
    def quiet_hours(self) -> bool | str: ...

    @property
    def frequency_cap(self) -> bool: ...


class EventRef(Protocol):
    """The event a message is about (`domain.business_events.BusinessEvent`)."""

    @property
    def id(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def received_at(self) -> datetime: ...


@dataclass(frozen=True)
class RenderedMessage:
    """An event template rendered for one customer and language: the free text (None when the
    template has none for the language), the email subject, and the WhatsApp template that goes
    instead of the text outside the 24 h window (parameters already filled in)."""

    text: str | None
    subject: str | None = None
    whatsapp: TemplateMessage | None = None


class TemplateRendering(Protocol):
    """Renders `events.templates[template]` for `event` in `language` on `channel`: a template may
    have a text of its own per channel (`routing.event_templates`)."""

    def __call__(self, template: str, *, language: str, event: EventRef, customer: Customer,
                 channel: str) -> RenderedMessage: ...


@dataclass(frozen=True)
class OpenCase:
    """The customer's open case as notify sees it: the case messages are filed on, and what
    suppression compares the rule's topic with (`CaseSummary.topic` and `.tags`). The caller passes
    the case as `cases.effective()` sees it, so one closed by inactivity suppresses nothing."""

    case: Case
    topic: str | None = None
    tags: frozenset[str] = frozenset()

    @property
    def is_open(self) -> bool:
        return self.case.status == CaseStatus.OPEN

    def about(self, topic: str) -> bool:
        return self.topic == topic or topic in self.tags


@dataclass(frozen=True)
class FrequencyCap:
    """At most `count` messages of a purpose per customer within `per_hours`."""

    count: int
    per_hours: float

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"frequency cap count must be at least 1, not {self.count}")
        if self.per_hours <= 0:
            raise ValueError(f"frequency cap per_hours must be positive, not {self.per_hours}")

    def recent(self, sent: Sequence[datetime], now: datetime) -> list[datetime]:
        """The times in `sent` that still count against the cap at `now`, oldest first."""
        since = now - timedelta(hours=self.per_hours)
        return sorted(at for at in sent if at > since)


@dataclass(frozen=True)
class NotifyPolicy:
    """The `events:` settings the guards apply (`EventSettings.quiet_hours`, `.frequency_caps`,
    `.suppress_when_open_case`) and `routing.default_language`, as plain values."""

    frequency_caps: Mapping[str, FrequencyCap] = field(default_factory=dict)
    #: The calendar quiet hours follow when a rule says `quiet_hours: true`, for these purposes.
    quiet_hours_calendar: str | None = None
    quiet_hours_purposes: frozenset[str] = frozenset()
    suppress_purposes: frozenset[str] = frozenset()
    default_language: str = "en"

    def calendar_for(self, spec: NotifyInstruction) -> str | None:
        """The calendar whose closed hours hold the message back, None when none does."""
        if isinstance(spec.quiet_hours, str):
            return spec.quiet_hours
        if spec.quiet_hours and spec.purpose in self.quiet_hours_purposes:
            return self.quiet_hours_calendar
        return None

    def outreach_after(self, sent: Sequence[datetime], purpose: str, at: datetime) -> list[datetime]:
        """`Customer.outreach[purpose]` once a message sent `at` is recorded: only the times
        that still count against the purpose's cap, at most `count` of them, so the customer
        record stays bounded. Empty for a purpose without a cap (nothing needs counting)."""
        cap = self.frequency_caps.get(purpose)
        if cap is None:
            return []
        return cap.recent([*sent, at], at)[-cap.count:]


@dataclass(frozen=True)
class Deferral:
    """A message held back by quiet hours: notify runs again for (event, customer, rule) at
    `due_at`. The wiring turns it into the `DeferredNotify` timer (`TimerPort.arm`)."""

    event: EventRef
    customer_id: str
    rule: str
    due_at: datetime

    @property
    def timer_name(self) -> str:
        """Stable per message and due time, so arming it twice arms one timer (≤ 64 characters
        of `[0-9a-zA-Z-_.]`, as EventBridge Scheduler names must be)."""
        due = self.due_at.astimezone(timezone.utc)
        return digest_id("notify", f"{self.event.id}:{self.customer_id}:{self.rule}:{due:%Y%m%dT%H%M%SZ}")


# --- what it answers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One channel of the rule's list: sent (with the message id and provider), refused by
    `MessageService` (its code), or skipped before trying (`no_preferred_channel`,
    `no_conversation`, `no_template_text`)."""

    channel: str
    outcome: Literal["sent", "refused", "skipped"]
    reason: str | None = None
    message_id: str | None = None
    provider: str | None = None
    #: The template that went instead of free text (outside a service window).
    template: str | None = None

    def view(self) -> dict:
        if self.outcome == "sent":
            view = {"channel": self.channel, "sent": self.message_id, "provider": self.provider}
            return view | ({"template": self.template} if self.template else {})
        return {"channel": self.channel, self.outcome: self.reason}


@dataclass(frozen=True)
class NotifyOutcome:
    """What one notify did, for the event contact (`metadata.actions`, the trace) and its commit.

    When `outreach_at` is set the event's commit appends it to `customer.outreach[purpose]`
    (`NotifyPolicy.outreach_after` trims it)."""

    status: NotifyStatus
    rule: str
    template: str
    purpose: Purpose
    attempts: tuple[Attempt, ...] = ()
    #: Why a guard blocked: `open_case_same_topic`, `frequency_cap`, `quiet_hours`, `calendar_never_opens`.
    reason: str | None = None
    detail: str | None = None
    due_at: datetime | None = None
    message_id: str | None = None
    channel: str | None = None
    outreach_at: datetime | None = None
    dry_run: bool = False

    @property
    def trace(self) -> str:
        """One line: `notify parcel_late → sms (whatsapp: outside_service_window)`."""
        head = f"notify {self.template}"
        misses = ", ".join(f"{a.channel}: {a.reason}" for a in self.attempts if a.outcome != "sent")
        if self.status == "sent":
            sent = next(a for a in self.attempts if a.outcome == "sent")
            line = f"{head} → {sent.channel}" + (f" [template {sent.template}]" if sent.template else "")
            return line + (f" ({misses})" if misses else "")
        if self.status == "deferred" and self.due_at is not None:
            return f"{head}: deferred until {_iso(self.due_at)} ({self.detail})"
        if self.status in ("consent_refused", "unreachable"):
            return f"{head}: {self.status} ({misses or 'no channel to try'})"
        return f"{head}: {self.status} ({self.detail or self.reason})"

    def view(self) -> dict:
        """The event contact's `metadata.actions` entry."""
        view: dict = {"action": "notify", "rule": self.rule, "template": self.template, "purpose": self.purpose,
                      "outcome": self.status, "attempts": [a.view() for a in self.attempts]}
        if self.reason is not None:
            view["reason"] = self.reason
        if self.due_at is not None:
            view["due_at"] = _iso(self.due_at)
        if self.message_id is not None:
            view["message_id"] = self.message_id
        if self.dry_run:
            view["dry_run"] = True
        return view


def notify_message_id(event: EventRef, customer_id: str, rule: str) -> str:
    """The one id of the message a rule sends a customer about an event: the same on every
    channel tried and on every redelivery, ordered by when the event arrived."""
    millis = int(event.received_at.timestamp() * 1000)
    return stable_id("ct", f"notify:{event.id}:{customer_id}:{rule}", millis=millis)


def default_topic(event_type: str) -> str:
    """A rule's topic when it names none: the event type's first segment (`parcel.late` → `parcel`)."""
    return event_type.split(".", 1)[0]


# --- the notifier ------------------------------------------------------------------------------------------


class Notifier:
    """Runs the guards and the channel fallback of a rule's `notify` for one customer."""

    def __init__(self, *, messages: Callable[[], MessageService], render: TemplateRendering,
                 calendars: Mapping[str, Calendar], policy: NotifyPolicy,
                 arm_deferred: Callable[[Deferral], None]) -> None:
        self._messages = messages
        self._render = render
        self._calendars = calendars
        self._policy = policy
        self._arm_deferred = arm_deferred

    def notify(self, spec: NotifyInstruction, event: EventRef, customer: Customer, case: OpenCase | None, *,
               rule: str, now: datetime, outreach: Mapping[str, Sequence[datetime]],
               dry_run: bool = False) -> NotifyOutcome:
        """Notify `customer` about `event` as `rule`'s `spec` says. `case` is the customer's open
        case (None when none); `outreach` is `Customer.outreach` (send times per purpose). With
        `dry_run` every guard and channel is evaluated but nothing is written, queued or armed.

        Raises `ConfigError` for a calendar or channel the configuration does not define (config
        load checks them first), and what `MessageService.send` raises other than its refusals."""
        outcome = _Outcome(rule=rule, template=spec.template, purpose=spec.purpose, dry_run=dry_run)
        blocked = (self._suppressed(spec, event, case, outcome) or self._capped(spec, outreach, now, outcome)
                   or self._deferred(spec, event, customer, rule, now, outcome))
        if blocked is not None:
            return blocked
        return self._send(spec, event, customer, case, rule=rule, now=now, outcome=outcome)

    # --- the guards: each answers the blocking outcome, or None to go on -------------------------------

    def _suppressed(self, spec: NotifyInstruction, event: EventRef, case: OpenCase | None,
                    outcome: _Outcome) -> NotifyOutcome | None:
        if spec.purpose not in self._policy.suppress_purposes or case is None or not case.is_open:
            return None
        topic = spec.topic or default_topic(event.type)
        if not case.about(topic):
            return None
        return outcome.blocked("suppressed", "open_case_same_topic", f"open case {case.case.id} is about {topic}")

    def _capped(self, spec: NotifyInstruction, outreach: Mapping[str, Sequence[datetime]], now: datetime,
                outcome: _Outcome) -> NotifyOutcome | None:
        cap = self._policy.frequency_caps.get(spec.purpose)
        if not spec.frequency_cap or cap is None:
            return None
        recent = cap.recent(outreach.get(spec.purpose, ()), now)
        if len(recent) < cap.count:
            return None
        return outcome.blocked("capped", "frequency_cap",
                               f"{len(recent)} {spec.purpose} messages within {cap.per_hours:g} h, cap {cap.count}")

    def _deferred(self, spec: NotifyInstruction, event: EventRef, customer: Customer, rule: str, now: datetime,
                  outcome: _Outcome) -> NotifyOutcome | None:
        name = self._policy.calendar_for(spec)
        if name is None:
            return None
        calendar = self._calendars.get(name)
        if calendar is None:
            raise ConfigError(f"events rule {rule}: notify quiet hours name calendar {name!r}, which "
                              f"routing.calendars does not define")
        if calendar.is_open(now):
            return None
        due = calendar.next_opening(now)
        if due is None:
            return outcome.blocked("suppressed", "calendar_never_opens",
                                   f"calendar {name} does not open within a year: nothing deferred")
        if not outcome.dry_run:
            self._arm_deferred(Deferral(event=event, customer_id=customer.id, rule=rule, due_at=due))
        return outcome.blocked("deferred", "quiet_hours", f"quiet hours, calendar {name}", due_at=due)

    # --- the channels ---------------------------------------------------------------------------------------

    def _send(self, spec: NotifyInstruction, event: EventRef, customer: Customer, case: OpenCase | None, *,
              rule: str, now: datetime, outcome: _Outcome) -> NotifyOutcome:
        from chalicelib.service.send_request import Addressee, SendRequest

        language = _language(customer, self._policy.default_language)
        message_id = notify_message_id(event, customer.id, rule)
        # A message is filed on the case passed, open or not (`MessageService` would otherwise
        # fall back to the case of the customer's latest conversation, which is older still).
        filed_on = case.case if case is not None else None
        messages = self._messages()
        tried: set[Channel] = set()
        for choice in spec.channels:
            channel, skipped = _expand(choice, customer, filed_on, rule)
            if channel is None:
                outcome.attempts.append(Attempt(choice, "skipped", skipped))
                continue
            if channel in tried:
                continue
            tried.add(channel)
            rendered = self._render(spec.template, language=language, event=event, customer=customer,
                                    channel=channel.value)
            template = rendered.whatsapp if channel == Channel.WHATSAPP else None
            if rendered.text is None and template is None:
                outcome.attempts.append(Attempt(channel.value, "skipped", "no_template_text"))
                continue
            try:
                request = SendRequest(
                    to=Addressee(customer_id=customer.id), channel=channel.value, text=rendered.text,
                    # Without text for the language, WhatsApp sends the template, in the window or not.
                    template=template if rendered.text is None else None,
                    subject=(rendered.subject or None) if channel == Channel.EMAIL else None, purpose=spec.purpose,
                )
            except ValidationError:
                # A rendering no message may carry (too long for any channel): the same refusal
                # `MessageService` gives one its channel cannot take.
                outcome.attempts.append(Attempt(channel.value, "refused", UnsendableMessageError.code))
                continue
            try:
                accepted = messages.send(request, origin=f"event:{rule}", human=False, message_id=message_id,
                                         addressee=(customer, filed_on), fallback_template=template,
                                         dry_run=outcome.dry_run)
            except (SendRefusedError, UnsendableMessageError) as refused:
                outcome.attempts.append(Attempt(channel.value, "refused", refused.code))
                continue
            contact = accepted.contact
            sent_template = contact.metadata.get("template")
            outcome.attempts.append(Attempt(
                contact.channel.value, "sent", message_id=contact.id, provider=contact.provider,
                template=sent_template["name"] if isinstance(sent_template, dict) else None,
            ))
            return outcome.sent(contact.id, contact.channel.value, now)
        return outcome.undelivered()


class _Outcome:
    """The outcome being built: the attempts so far, and the constructors of the final value."""

    def __init__(self, *, rule: str, template: str, purpose: Purpose, dry_run: bool) -> None:
        self.rule = rule
        self.template = template
        self.purpose = purpose
        self.dry_run = dry_run
        self.attempts: list[Attempt] = []

    def blocked(self, status: NotifyStatus, reason: str, detail: str, *, due_at: datetime | None = None
                ) -> NotifyOutcome:
        return NotifyOutcome(status, self.rule, self.template, self.purpose, reason=reason, detail=detail,
                             due_at=due_at, dry_run=self.dry_run)

    def sent(self, message_id: str, channel: str, now: datetime) -> NotifyOutcome:
        return NotifyOutcome("sent", self.rule, self.template, self.purpose, tuple(self.attempts),
                             message_id=message_id, channel=channel,
                             outreach_at=None if self.dry_run else now, dry_run=self.dry_run)

    def undelivered(self) -> NotifyOutcome:
        """Every channel refused or skipped: `consent_refused` when consent was all that stopped
        the channels tried (the customer is reachable, and said no), else `unreachable`."""
        refusals = [a.reason for a in self.attempts if a.outcome == "refused"]
        status: NotifyStatus = "consent_refused" if refusals and all(
            r == "consent_refused" for r in refusals) else "unreachable"
        return NotifyOutcome(status, self.rule, self.template, self.purpose, tuple(self.attempts),
                             reason=status, dry_run=self.dry_run)


def _expand(choice: str, customer: Customer, case: Case | None, rule: str) -> tuple[Channel | None, str | None]:
    """The channel a `channels` entry names, or None with why it is skipped."""
    if choice == PREFERRED:
        preferred = customer.attributes.get("preferred_channel")
        channel = _channel(preferred.value) if preferred is not None else None
        return (channel, None) if channel is not None else (None, "no_preferred_channel")
    if choice == REPLY:
        target = _latest_conversation(customer, case)
        return (target.channel, None) if target is not None else (None, "no_conversation")
    channel = _channel(choice)
    if channel is None:
        raise ConfigError(f"events rule {rule}: notify channel {choice!r} is not a channel, preferred or reply")
    return channel, None


def _latest_conversation(customer: Customer, case: Case | None) -> ReplyTarget | None:
    if case is not None and case.last_inbound is not None:
        return case.last_inbound
    return max(customer.reply_targets.values(), key=lambda t: t.at, default=None)


def _channel(value: object) -> Channel | None:
    try:
        return Channel(str(value)) if value else None
    except ValueError:
        return None


def _language(customer: Customer, default: str) -> str:
    attribute = customer.attributes.get("language")
    value = attribute.value if attribute is not None else None
    return value if isinstance(value, str) and value else default


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
