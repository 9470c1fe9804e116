"""`Notifier`: the guards in their order (open case on the topic, frequency cap, quiet hours), the
channel fallback through the real `MessageService` (consent, the WhatsApp window and its template,
reachability), `preferred`, the stable message id, and dry runs; on an in-memory SQLite store, the
memory queue and a stand-in sender that keeps what it is asked to check."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.adapters.channels.sending import ChannelSender, Problem
from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.models import (
    AttributeValue,
    Case,
    CaseStatus,
    Channel,
    Customer,
    ReplyTarget,
)
from chalicelib.domain.outbound import OutboundMessage, SendOutcome, TemplateMessage
from chalicelib.errors import ConfigError, SendRefusedError
from chalicelib.routing.calendar import Calendar, CalendarSettings
from chalicelib.service.consent_updates import consent_allows
from chalicelib.service.messages import MessageService
from chalicelib.service.notify import (
    Deferral,
    FrequencyCap,
    Notifier,
    NotifyPolicy,
    OpenCase,
    RenderedMessage,
    notify_message_id,
)
from chalicelib.service.send_request import Addressee, SendRequest
from tests.support.fakes import MemoryQueue

# A Wednesday, 10:00 in Berlin.
NOW = datetime(2026, 3, 4, 9, 0, tzinfo=timezone.utc)
PHONE = "+4915123456789"
EMAIL = "jana@example.com"
ACCOUNTS = {Channel.SMS: "+493011111", Channel.WHATSAPP: "493011111", Channel.EMAIL: "hub@example.com"}
WA_TEMPLATE = TemplateMessage(name="parcel_update", language="de", parameters=["4711"])


class Sender(ChannelSender):
    """Sends SMS, WhatsApp and email from one account each to the customer's phone and address;
    knows the WhatsApp templates `templates` names. Never asked to send: the tests stop at the queue."""

    key = "fake"
    channels = frozenset(ACCOUNTS)
    docs_url = "https://example.invalid/sender"

    def __init__(self, templates: frozenset[str] = frozenset({"parcel_update"})) -> None:
        self.templates = templates

    @classmethod
    def reply_target(cls, contact):  # pragma: no cover - inbound is not part of these tests
        return None

    def recipient_for(self, channel, identifiers):
        kind = "email" if channel == Channel.EMAIL else "phone"
        return next((i.value for i in identifiers if i.kind == kind), None)

    def default_account(self, channel):
        return ACCOUNTS.get(channel)

    def check(self, message: OutboundMessage) -> list[Problem]:
        if message.template is not None and message.template.name not in self.templates:
            return [Problem("template.name", f"{message.template.name} is not an approved template")]
        return []

    def send(self, message: OutboundMessage) -> SendOutcome:  # pragma: no cover
        raise AssertionError("the send worker is not part of these tests")


@dataclass(frozen=True)
class Spec:
    """A rule's `notify` (the shape of `routing.event_specs.NotifySpec`)."""

    template: str = "parcel_late"
    channels: tuple[str, ...] = ("whatsapp", "sms", "email")
    purpose: str = "service"
    topic: str | None = None
    quiet_hours: bool | str = True
    frequency_cap: bool = True


@dataclass(frozen=True)
class Event:
    id: str = "evt-1"
    type: str = "parcel.late"
    received_at: datetime = NOW - timedelta(minutes=1)


TEXTS = {"de": "Ihr Paket 4711 kommt später.", "en": "Your parcel 4711 is late."}


@dataclass
class Templates:
    """Renders `parcel_late` per language; `text=False` renders no text (a WhatsApp-only template)."""

    text: bool = True
    whatsapp: TemplateMessage | None = field(default_factory=lambda: WA_TEMPLATE)
    asked: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, template, *, language, event, customer, channel) -> RenderedMessage:
        self.asked.append((template, language))
        return RenderedMessage(text=TEXTS[language] if self.text else None, subject="Ihr Paket",
                               whatsapp=self.whatsapp)


def calendar(hours: dict | None = None) -> Calendar:
    return Calendar(CalendarSettings(timezone="Europe/Berlin",
                                     hours={"mon-fri": ["08:00-18:00"]} if hours is None else hours))


POLICY = NotifyPolicy(
    frequency_caps={"marketing": FrequencyCap(count=2, per_hours=168), "service": FrequencyCap(count=6, per_hours=24)},
    quiet_hours_calendar="office", quiet_hours_purposes=frozenset({"marketing"}),
    suppress_purposes=frozenset({"service", "marketing"}), default_language="en",
)


class World:
    def __init__(self, *, policy: NotifyPolicy = POLICY, templates: Templates | None = None,
                 sender: Sender | None = None) -> None:
        self.store = SqliteStore(":memory:")
        self.queue = MemoryQueue("outbound")
        self.sender = sender or Sender()
        self.now = NOW
        self.messages = MessageService(
            store=self.store, outbound_queue=lambda: self.queue,
            senders=lambda provider: self.sender if provider == "fake" else None,
            providers_for=lambda channel: ["fake"], default_region="DE", clock=lambda: self.now,
            consent_allows=consent_allows,
        )
        self.templates = templates or Templates()
        self.armed: list[Deferral] = []
        self.notifier = Notifier(messages=lambda: self.messages, render=self.templates,
                                 calendars={"office": calendar(), "never": calendar({})}, policy=policy,
                                 arm_deferred=self.armed.append)

    def notify(self, spec=None, customer=None, case=None, *, outreach=None, dry_run=False, rule="parcel-late",
               event=None):
        customer = customer or make_customer()
        case = case if case is not None else OpenCase(open_case())
        return self.notifier.notify(spec or Spec(), event or Event(), customer, case, rule=rule, now=self.now,
                                    outreach=outreach or {}, dry_run=dry_run)

    def queued(self) -> list[OutboundMessage]:
        return [OutboundMessage.model_validate_json(m.body) for m in self.queue.sent]


def attribute(value) -> AttributeValue:
    return AttributeValue(value=value, source="test", updated_at=NOW - timedelta(days=30))


def whatsapp_conversation(hours_ago: float) -> dict[str, ReplyTarget]:
    target = ReplyTarget(contact_id="ct_in", case_id="case_1", channel=Channel.WHATSAPP, provider="fake",
                         account=ACCOUNTS[Channel.WHATSAPP], to=PHONE, at=NOW - timedelta(hours=hours_ago))
    return {target.key: target}


def make_customer(*, consent=None, attributes=None, reply_targets=None) -> Customer:
    return Customer.model_validate({
        "id": "cus_1",
        "identifiers": [Identifier.parse(f"phone:{PHONE}"), Identifier.parse(f"email:{EMAIL}")],
        "consent": consent or {}, "attributes": attributes or {}, "reply_targets": reply_targets or {},
    })


def open_case(**fields) -> Case:
    return Case(**{"id": "case_1", "customer_id": "cus_1", "opened_at": NOW - timedelta(hours=2),
                   "last_activity_at": NOW - timedelta(hours=1), **fields})


def opted_out(*channels: str) -> dict:
    entry = {"state": "opted_out", "source": "keyword:STOP", "at": (NOW - timedelta(days=1)).isoformat()}
    return {channel: {"service": entry, "marketing": entry} for channel in channels}


def opted_in_to_marketing(*channels: str) -> dict:
    entry = {"state": "opted_in", "source": "api:crm", "at": (NOW - timedelta(days=1)).isoformat()}
    return {channel: {"marketing": entry} for channel in channels}


# --- channels ----------------------------------------------------------------------------------------------


def test_whatsapp_inside_the_window_sends_the_rendered_text_with_the_stable_id():
    world = World()
    outcome = world.notify(customer=make_customer(reply_targets=whatsapp_conversation(hours_ago=3)))

    assert (outcome.status, outcome.channel) == ("sent", "whatsapp")
    assert outcome.message_id == notify_message_id(Event(), "cus_1", "parcel-late")
    [message] = world.queued()
    assert (message.id, message.channel, message.text, message.template) == (
        outcome.message_id, Channel.WHATSAPP, TEXTS["en"], None)
    assert (message.origin, message.purpose, message.case_id) == ("event:parcel-late", "service", "case_1")
    contact = world.store.get_contact(outcome.message_id)
    assert contact is not None and contact.case_id == "case_1"
    assert outcome.trace == "notify parcel_late → whatsapp"
    assert outcome.outreach_at == NOW


def test_whatsapp_outside_the_window_sends_the_templates_whatsapp_template_instead_of_the_text():
    world = World()
    outcome = world.notify(customer=make_customer(reply_targets=whatsapp_conversation(hours_ago=30)))

    assert (outcome.status, outcome.channel) == ("sent", "whatsapp")
    [message] = world.queued()
    assert (message.template, message.text) == (WA_TEMPLATE, None)
    assert outcome.trace == "notify parcel_late → whatsapp [template parcel_update]"
    assert outcome.view()["attempts"] == [{"channel": "whatsapp", "sent": outcome.message_id, "provider": "fake",
                                           "template": "parcel_update"}]


def test_whatsapp_outside_the_window_without_a_template_falls_back_to_sms():
    world = World(templates=Templates(whatsapp=None))
    outcome = world.notify(customer=make_customer(reply_targets=whatsapp_conversation(hours_ago=30)))

    assert (outcome.status, outcome.channel) == ("sent", "sms")
    [message] = world.queued()
    assert (message.channel, message.to, message.text) == (Channel.SMS, PHONE, TEXTS["en"])
    assert outcome.trace == "notify parcel_late → sms (whatsapp: outside_service_window)"
    assert [a.view() for a in outcome.attempts][0] == {"channel": "whatsapp", "refused": "outside_service_window"}


def test_a_template_the_provider_does_not_know_is_refused_and_the_next_channel_tried():
    world = World(sender=Sender(templates=frozenset()))
    outcome = world.notify(customer=make_customer(reply_targets=whatsapp_conversation(hours_ago=30)))

    assert outcome.channel == "sms"
    assert outcome.trace == "notify parcel_late → sms (whatsapp: invalid_message)"


def test_a_consent_refusal_on_sms_falls_back_to_email():
    world = World()
    outcome = world.notify(Spec(channels=("sms", "email")), make_customer(consent=opted_out("sms")))

    assert (outcome.status, outcome.channel) == ("sent", "email")
    [message] = world.queued()
    assert (message.to, message.subject, message.text) == (EMAIL, "Ihr Paket", TEXTS["en"])
    assert outcome.trace == "notify parcel_late → email (sms: consent_refused)"


def test_marketing_goes_only_where_the_customer_opted_in():
    world = World()
    outcome = world.notify(Spec(channels=("sms", "email"), purpose="marketing", quiet_hours=False),
                           make_customer(consent=opted_in_to_marketing("email")))

    assert (outcome.status, outcome.channel, outcome.purpose) == ("sent", "email", "marketing")
    assert world.queued()[0].purpose == "marketing"


def test_consent_refused_everywhere_is_consent_refused_and_anything_else_unreachable():
    world = World()
    refused = world.notify(Spec(channels=("sms", "email")), make_customer(consent=opted_out("sms", "email")))
    assert refused.status == "consent_refused"
    assert refused.trace == "notify parcel_late: consent_refused (sms: consent_refused, email: consent_refused)"

    # WhatsApp: never written there and no template; SMS: opted out.
    world = World(templates=Templates(whatsapp=None))
    mixed = world.notify(Spec(channels=("whatsapp", "sms")), make_customer(consent=opted_out("sms")))
    assert mixed.status == "unreachable"
    assert [(a.channel, a.reason) for a in mixed.attempts] == [("whatsapp", "template_required"),
                                                                ("sms", "consent_refused")]
    assert world.queued() == [] and world.store.get_contact(mixed.message_id or "") is None
    assert mixed.outreach_at is None


def test_a_rendering_too_long_for_any_message_is_refused_not_raised():
    class Long(Templates):
        def __call__(self, template, *, language, event, customer, channel) -> RenderedMessage:
            return RenderedMessage(text="x" * 40_001)

    world = World(templates=Long())
    outcome = world.notify(Spec(channels=("sms", "email")))

    assert outcome.status == "unreachable"
    assert outcome.trace == "notify parcel_late: unreachable (sms: invalid_message, email: invalid_message)"


def test_only_email_carries_the_subject():
    world = World()
    world.notify(Spec(channels=("sms",)))
    world.notify(Spec(channels=("email",)), event=Event(id="evt-2"))

    assert [(m.channel, m.subject) for m in world.queued()] == [(Channel.SMS, None), (Channel.EMAIL, "Ihr Paket")]


def test_a_customer_no_channel_reaches_is_unreachable():
    world = World()
    customer = Customer(id="cus_2")
    outcome = world.notify(Spec(channels=("sms", "email")), customer, OpenCase(open_case(customer_id="cus_2")))

    assert outcome.status == "unreachable"
    assert [a.reason for a in outcome.attempts] == ["no_reachable_channel", "no_reachable_channel"]


# --- preferred and reply --------------------------------------------------------------------------------------


def test_preferred_is_the_customers_preferred_channel_and_is_not_tried_twice():
    world = World()
    customer = make_customer(attributes={"preferred_channel": attribute("sms")}, consent=opted_out("sms"))
    outcome = world.notify(Spec(channels=("preferred", "sms", "email")), customer)

    assert outcome.channel == "email"
    assert [(a.channel, a.outcome) for a in outcome.attempts] == [("sms", "refused"), ("email", "sent")]


def test_preferred_comes_first_when_set_and_is_skipped_when_missing_or_no_channel():
    spec = Spec(channels=("preferred", "sms"))
    assert World().notify(spec, make_customer(attributes={"preferred_channel": attribute("email")})).channel == "email"

    for attributes in ({}, {"preferred_channel": attribute("carrier pigeon")}):
        outcome = World().notify(spec, make_customer(attributes=attributes))
        assert outcome.channel == "sms"
        assert outcome.trace == "notify parcel_late → sms (preferred: no_preferred_channel)"


def test_reply_is_the_latest_conversations_channel():
    world = World()
    outcome = world.notify(Spec(channels=("reply", "email")),
                           make_customer(reply_targets=whatsapp_conversation(hours_ago=1)))
    assert outcome.channel == "whatsapp"

    skipped = World().notify(Spec(channels=("reply", "email")), make_customer())
    assert (skipped.channel, skipped.attempts[0].reason) == ("email", "no_conversation")


def test_a_channel_with_no_text_is_skipped_and_whatsapp_sends_the_template_alone():
    world = World(templates=Templates(text=False))
    outcome = world.notify(Spec(channels=("sms", "whatsapp")),
                           make_customer(reply_targets=whatsapp_conversation(hours_ago=1)))

    assert outcome.channel == "whatsapp"
    assert outcome.attempts[0].view() == {"channel": "sms", "skipped": "no_template_text"}
    assert world.queued()[0].template == WA_TEMPLATE


def test_the_text_is_rendered_in_the_customers_language_else_the_default():
    world = World()
    world.notify(Spec(channels=("sms",)), make_customer(attributes={"language": attribute("de")}))
    world.notify(Spec(channels=("sms",)), make_customer(), event=Event(id="evt-2"))

    assert world.templates.asked == [("parcel_late", "de"), ("parcel_late", "en")]
    assert [m.text for m in world.queued()] == [TEXTS["de"], TEXTS["en"]]


def test_an_unknown_channel_name_is_a_configuration_error():
    with pytest.raises(ConfigError, match="parcel-late.*'pager'"):
        World().notify(Spec(channels=("pager",)))


# --- the stable id ---------------------------------------------------------------------------------------------


def test_a_redelivered_event_sends_nothing_twice():
    world = World()
    customer = make_customer(reply_targets=whatsapp_conversation(hours_ago=30))
    first = world.notify(customer=customer)
    # The customer wrote on WhatsApp in the meantime: the retry would now pick WhatsApp, but the
    # message of this event, customer and rule is already recorded (on SMS).
    world.templates.whatsapp = None
    retry = world.notify(customer=make_customer(reply_targets=whatsapp_conversation(hours_ago=0)))

    assert first.message_id == retry.message_id
    assert (first.channel, retry.channel) == ("whatsapp", "whatsapp")
    assert len(world.queue.sent) == 1
    assert len(world.store.list_contacts("cus_1", limit=10).items) == 1

    other_rule = world.notify(customer=customer, rule="parcel-late-2")
    assert other_rule.message_id != first.message_id and len(world.queue.sent) == 2


def test_a_retry_after_the_channel_changed_returns_the_message_already_sent():
    world = World(templates=Templates(whatsapp=None))
    first = world.notify(customer=make_customer(reply_targets=whatsapp_conversation(hours_ago=30)))
    assert first.channel == "sms"

    retry = world.notify(customer=make_customer(reply_targets=whatsapp_conversation(hours_ago=0)))
    assert (retry.status, retry.message_id, retry.channel) == ("sent", first.message_id, "sms")
    assert [m.channel for m in world.queued()] == [Channel.SMS]


# --- dry run ---------------------------------------------------------------------------------------------------


def test_a_dry_run_decides_like_a_send_but_writes_and_queues_nothing():
    world = World(templates=Templates(whatsapp=None))
    outcome = world.notify(customer=make_customer(reply_targets=whatsapp_conversation(hours_ago=30)), dry_run=True)

    assert (outcome.status, outcome.channel, outcome.dry_run) == ("sent", "sms", True)
    assert outcome.trace == "notify parcel_late → sms (whatsapp: outside_service_window)"
    assert world.queue.sent == [] and world.store.get_contact(outcome.message_id) is None
    assert outcome.outreach_at is None and outcome.view()["dry_run"] is True


def test_a_dry_run_in_quiet_hours_arms_no_timer():
    world = World()
    world.now = datetime(2026, 3, 4, 22, 0, tzinfo=timezone.utc)
    outcome = world.notify(Spec(purpose="marketing"), make_customer(consent=opted_in_to_marketing("sms")),
                           dry_run=True)

    assert outcome.status == "deferred" and world.armed == []


def test_a_dry_run_send_remembers_no_idempotency_key():
    world = World()
    request = SendRequest(to=Addressee(customer_id="cus_1"), channel="sms", text="Hallo", idempotency_key="k-1")
    dry = world.messages.send(request, origin="api:test", addressee=(make_customer(), open_case()), dry_run=True)
    real = world.messages.send(request, origin="api:test", addressee=(make_customer(), open_case()))

    assert not real.repeated and real.contact.id != dry.contact.id
    assert len(world.queue.sent) == 1


# --- guard 1: an open case on the topic --------------------------------------------------------------------


@pytest.mark.parametrize(("case", "spec"), [
    (OpenCase(open_case(), topic="parcel"), Spec()),
    (OpenCase(open_case(), tags=frozenset({"vip", "parcel"})), Spec()),
    (OpenCase(open_case(), topic="outage"), Spec(topic="outage")),
])
def test_an_open_case_on_the_same_topic_suppresses_the_message(case, spec):
    world = World()
    outcome = world.notify(spec, case=case)

    assert (outcome.status, outcome.reason) == ("suppressed", "open_case_same_topic")
    assert outcome.trace == f"notify parcel_late: suppressed (open case case_1 is about {spec.topic or 'parcel'})"
    assert world.queue.sent == [] and outcome.attempts == ()


@pytest.mark.parametrize(("case", "policy"), [
    (OpenCase(open_case(), topic="billing", tags=frozenset({"parcels"})), POLICY),
    (OpenCase(open_case(status=CaseStatus.CLOSED), topic="parcel"), POLICY),
    (OpenCase(open_case(), topic="parcel"), NotifyPolicy(suppress_purposes=frozenset({"marketing"}))),
])
def test_another_topic_a_closed_case_or_a_purpose_not_listed_is_not_suppressed(case, policy):
    assert World(policy=policy).notify(case=case).status == "sent"


# --- guard 2: the frequency cap ----------------------------------------------------------------------------


def test_the_frequency_cap_counts_the_purposes_messages_within_its_window():
    spec = Spec(purpose="marketing", quiet_hours=False)
    customer = make_customer(consent=opted_in_to_marketing("whatsapp", "sms"))
    recent = {"marketing": [NOW - timedelta(days=1), NOW - timedelta(days=6)]}

    world = World()
    capped = world.notify(spec, customer, outreach=recent)
    assert (capped.status, capped.reason) == ("capped", "frequency_cap")
    assert capped.trace == "notify parcel_late: capped (2 marketing messages within 168 h, cap 2)"
    assert world.queue.sent == []

    expired = {"marketing": [NOW - timedelta(days=1), NOW - timedelta(days=8)], "service": [NOW] * 6}
    assert World().notify(spec, customer, outreach=expired).status == "sent"
    uncapped = Spec(purpose="marketing", quiet_hours=False, frequency_cap=False)
    assert World().notify(uncapped, customer, outreach=recent).status == "sent"


def test_the_outreach_record_keeps_what_still_counts_at_most_the_cap():
    sent = [NOW - timedelta(days=9), NOW - timedelta(days=3), NOW - timedelta(days=1)]

    assert POLICY.outreach_after(sent, "marketing", NOW) == [NOW - timedelta(days=1), NOW]
    assert POLICY.outreach_after([], "service", NOW) == [NOW]
    assert NotifyPolicy().outreach_after(sent, "marketing", NOW) == []
    with pytest.raises(ValueError, match="count must be at least 1"):
        FrequencyCap(count=0, per_hours=24)


# --- guard 3: quiet hours ----------------------------------------------------------------------------------


def test_quiet_hours_defer_the_message_to_the_calendars_next_opening():
    world = World()
    world.now = datetime(2026, 3, 4, 22, 0, tzinfo=timezone.utc)  # 23:00 in Berlin
    outcome = world.notify(Spec(purpose="marketing"), make_customer(consent=opted_in_to_marketing("sms")))

    opening = datetime(2026, 3, 5, 7, 0, tzinfo=timezone.utc)  # Thursday 08:00 in Berlin
    assert (outcome.status, outcome.due_at) == ("deferred", opening)
    assert outcome.trace == "notify parcel_late: deferred until 2026-03-05T07:00:00Z (quiet hours, calendar office)"
    [deferral] = world.armed
    assert (deferral.event, deferral.customer_id, deferral.rule, deferral.due_at) == (
        Event(), "cus_1", "parcel-late", opening)
    assert deferral.timer_name == Deferral(Event(), "cus_1", "parcel-late", opening).timer_name
    assert len(deferral.timer_name) <= 64 and world.queue.sent == []

    # The timer fires at the opening: the guards run again and the message goes.
    world.now = opening
    assert world.notify(Spec(purpose="marketing"), make_customer(consent=opted_in_to_marketing("sms"))).status == "sent"


def test_quiet_hours_apply_to_the_listed_purposes_or_the_calendar_the_rule_names():
    night = datetime(2026, 3, 4, 22, 0, tzinfo=timezone.utc)
    for spec, status in [(Spec(), "sent"), (Spec(quiet_hours="office"), "deferred"),
                         (Spec(purpose="marketing", quiet_hours=False), "sent")]:
        world = World()
        world.now = night
        outcome = world.notify(spec, make_customer(consent=opted_in_to_marketing("whatsapp", "sms")))
        assert outcome.status == status, spec


def test_a_calendar_that_never_opens_sends_nothing_and_arms_nothing():
    world = World()
    outcome = world.notify(Spec(quiet_hours="never"))
    assert (outcome.status, outcome.reason) == ("suppressed", "calendar_never_opens")
    assert world.armed == [] and world.queue.sent == []

    with pytest.raises(ConfigError, match="calendar 'nights'"):
        World().notify(Spec(quiet_hours="nights"))


def test_the_first_guard_that_blocks_decides():
    world = World()
    world.now = datetime(2026, 3, 4, 22, 0, tzinfo=timezone.utc)
    spec = Spec(purpose="marketing")
    full = {"marketing": [world.now - timedelta(hours=1)] * 2}

    assert world.notify(spec, case=OpenCase(open_case(), topic="parcel"), outreach=full).status == "suppressed"
    assert world.notify(spec, outreach=full).status == "capped"
    assert world.notify(spec).status == "deferred"
    assert len(world.armed) == 1


# --- MessageService's fallback template ----------------------------------------------------------------


def test_send_without_a_fallback_template_still_refuses_outside_the_window():
    world = World()
    request = SendRequest(to=Addressee(customer_id="cus_1"), channel="whatsapp", text="Hallo")
    customer = make_customer(reply_targets=whatsapp_conversation(hours_ago=30))

    with pytest.raises(SendRefusedError) as refused:
        world.messages.send(request, origin="api:test", addressee=(customer, open_case()))
    assert refused.value.code == "outside_service_window"
    accepted = world.messages.send(request, origin="api:test", addressee=(customer, open_case()),
                                   fallback_template=WA_TEMPLATE)
    assert (accepted.contact.text, accepted.contact.metadata["template"]["name"]) == (None, "parcel_update")


def test_each_channel_is_rendered_with_the_template_s_text_for_that_channel():
    """A template may have a short SMS text of its own (`templates.<t>.channels.sms`): the notifier
    renders for each channel it tries, so the SMS carries that text and the email the full one."""
    class PerChannel(Templates):
        def __call__(self, template, *, language, event, customer, channel) -> RenderedMessage:
            self.asked.append((template, channel))
            return RenderedMessage(text=f"{channel} text", subject="Ihr Paket")

    world = World(templates=PerChannel())
    world.notify(Spec(channels=("sms",)))
    world.notify(Spec(channels=("email",)), event=Event(id="evt-2"))

    assert [(m.channel, m.text) for m in world.queued()] == [(Channel.SMS, "sms text"), (Channel.EMAIL, "email text")]
    assert world.templates.asked == [("parcel_late", "sms"), ("parcel_late", "email")]


def test_the_event_template_renderer_passes_the_channel_to_the_templates():
    from chalicelib.hubconfig import parse_config
    from chalicelib.routing.event_templates import EventTemplates
    from chalicelib.service.event_actions import TemplateRenderer

    config = parse_config('events: {templates: {late: {text: {de: "Ihr Paket {data.id} kommt später."}, '
                          'channels: {sms: {de: "Paket {data.id}: später"}}}}}')
    render = TemplateRenderer(EventTemplates(config.events.templates, "de"))
    event = {"type": "parcel.late", "id": "e1", "source": "api", "data": {"id": "P-7"}}
    customer = Customer(id="cus_1", created_at=NOW, updated_at=NOW)

    assert render("late", language="de", event=event, customer=customer, channel="sms").text == "Paket P-7: später"
    assert render("late", language="de", event=event, customer=customer,
                  channel="email").text == "Ihr Paket P-7 kommt später."
