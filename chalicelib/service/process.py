"""Process one inbound event: dedupe → resolve customer → attach to case → route → fan out → persist.

Order of effects, chosen so a crash at any point loses nothing and duplicates nothing:
1. the first store read that resolving the customer makes anyway (the identifiers' owners on a
   cold cache, the customer on a warm one) also reads the message's done marker (`Store.begin`):
   a duplicate stops there, one store call, before anything is written;
2. resolve and route in memory (a new customer is created only after that read);
3. enqueue one delivery job per destination (ids are deterministic, so a retry re-sends the same
   jobs and the queue and the deliver worker drop the repeats);
4. `commit_contact` writes the contact, case, customer and the done marker together, the marker on
   condition that the message is not done yet.
A crash between 3 and 4 leaves no marker behind (and nothing to wait for); the redelivered
message is processed again to the same ids.

No lease guards a message while a worker processes it, because no second worker gets it meanwhile:
on AWS the inbound queue is FIFO with one message group per sender, which hands out no message of
a group while an earlier one is in flight, and its visibility timeout (180 s) exceeds the process
worker's timeout (30 s), so a message is not handed out again while an attempt can still be
running. The embedded runtime's local queue (`adapters/queue/local.py`) keeps the same property:
only a group's head is received, a received head stays the head (invisible) until it is deleted
or its visibility timeout (60 s, `LOCAL_INBOUND_VISIBILITY`) ends, and a message's media
downloads stop within `MEDIA_BUDGET_SECONDS` (25 s) of its start. Should two attempts at one
message ever overlap all the same (a worker stalled past the visibility timeout), it costs
nothing: they queue the same job ids, which the queue and the deliver worker drop as repeats,
and the conditional done marker lets exactly one of them commit. The other gets
`ConcurrentUpdateError`, decides again, and its first read finds the message done: a duplicate.
That is the same recovery as a crash between 3 and 4, with no lease write on every message.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from chalicelib.adapters.blobs.base import BlobStore
from chalicelib.adapters.queue.base import OutgoingMessage, Queue
from chalicelib.adapters.store.base import ContactCommit, IdentifierTakenError, Store
from chalicelib.domain.ids import delivery_id, group_id, stable_id
from chalicelib.domain.golden_record import INVALID_PHONE, observe, record_issue
from chalicelib.domain.identifiers import IdentifierKind
from chalicelib.domain.identity_rules import IdentityRules
from chalicelib.domain.values import Value
from chalicelib.domain.models import (
    AgentReply,
    Case,
    CaseStatusChange,
    Contact,
    Customer,
    DeliveryJob,
    IdentifierDecision,
    IdentityChange,
    InboundEvent,
    InboundMessage,
    StatusEvent,
    UnhandledEvent,
)
from chalicelib.errors import ConcurrentUpdateError, ConfigError, NotFoundError
from chalicelib.hubconfig import HubConfig
from chalicelib.domain.activity import record_contact
from chalicelib.routing.context import context_for
from chalicelib.service.cases import CasePlan, attach_to_case, summarize
from chalicelib.service.customer_events import case_event_messages, customer_event_messages
from chalicelib.service.identity import (
    AlreadyProcessed,
    IdentifierCache,
    NormalizedSender,
    Resolved,
    normalize_sender,
    resolve_customer,
)
from chalicelib.service.merge import Merges

logger = logging.getLogger(__name__)

_EVENT = TypeAdapter(InboundEvent)

#: How often one message is decided again when concurrent workers keep winning the commit.
COMMIT_ATTEMPTS = 3

#: How often one contact merges customers and resolves again (each round can join every customer
#: the contact's identifiers point to).
MERGE_ROUNDS = 3

#: Kept free of the worker's time left for what follows the media downloads of a message
#: (enrichment, routing, the fan-out and the commit).
MEDIA_RESERVE_SECONDS = 5.0
#: The most the media downloads of one message may take: without a worker limit (the embedded
#: runtime) that is their budget, and it keeps a message well inside the local queue's visibility
#: timeout (see the module's docstring).
MEDIA_BUDGET_SECONDS = 25.0

#: A contact larger than this keeps its raw provider payload in the blob store instead: a
#: DynamoDB item holds at most 400 KB, and the contact is written twice in one transaction
#: (contact and timeline entry) beside the customer and case.
MAX_INLINE_CONTACT_BYTES = 300 * 1024


class Outcome:
    CONTACT_CREATED = "contact_created"
    DUPLICATE = "duplicate"
    STATUS_RECORDED = "status_recorded"
    STATUS_DUPLICATE = "status_duplicate"
    UNHANDLED_RECORDED = "unhandled_recorded"
    UNHANDLED_DUPLICATE = "unhandled_duplicate"
    IDENTITY_CHANGED = "identity_changed"
    IDENTITY_UNMATCHED = "identity_unmatched"


class ProcessResult(Value):
    outcome: str
    contact_id: str | None = None
    customer_id: str | None = None
    case_id: str | None = None
    destinations: tuple[str, ...] = ()


class Processor:
    """A plain class, not a dataclass: its generated methods cost every worker's cold start and
    nothing uses them. Its collaborators:

    * `default_region`: default phone region for numbers without a country code, per provider
      and channel account.
    * `event_destinations`: destinations that take customer events (`customer.merged`).
    * `router`: the router in force (rules can change while the worker runs); default: the
      inline rules.
    * `enricher`: the enricher (language, intents, history); default: built from the configuration.
    * `media`: downloads attachments whose links expire or need credentials; default: none.
    * `outbound`: reports on the hub's own messages (`service/message_statuses.py`): statuses
      matched to outbound contacts, auto-replies sent; default: statuses are only recorded.
    * `messages`: sends routing's auto-replies (`service/messages.py`); default: they are only recorded.
    * `case_event_destinations`: destinations that take case events (`case.opened`,
      `case.closed`, `case.reopened`).
    * `agent_replies`, `case_sync`: two-way sync (`service/agent_replies.py`,
      `service/case_sync.py`): agents' replies from a destination's tool, and its tickets'
      status; default: such items are refused.
    * `timers`: arms the case timers (`service/case_timers.py`): SLA and auto-close when a
      contact opens or reopens a case, a follow-up when routing asks for one; default: none are
      armed and cases carry no due times.
    """

    def __init__(
        self, store: Store, delivery_queue: Queue, config: HubConfig, cache: IdentifierCache,
        default_region: Callable[[str, str], str | None], clock: Callable[[], datetime], blobs: BlobStore,
        rules: IdentityRules, event_destinations: Callable[[], list[str]] = list,
        router: Callable[[], Any] | None = None, enricher: Callable[[], Any] | None = None,
        media: Callable[[], Any] | None = None, outbound: Callable[[], Any] | None = None,
        messages: Callable[[], Any] | None = None, case_event_destinations: Callable[[], list[str]] = list,
        agent_replies: Callable[[], Any] | None = None, case_sync: Callable[[], Any] | None = None,
        timers: Callable[[], Any] | None = None,
    ) -> None:
        self.store = store
        self.delivery_queue = delivery_queue
        self.config = config
        self.cache = cache
        self.default_region = default_region
        self.clock = clock
        self.blobs = blobs
        self.rules = rules
        self.event_destinations = event_destinations
        self.router = router
        self.enricher = enricher
        self.media = media
        self.outbound = outbound
        self.messages = messages
        self.case_event_destinations = case_event_destinations
        self.agent_replies = agent_replies
        self.case_sync = case_sync
        self.timers = timers

    def process_body(
        self, body: str, *, receive_count: int = 1, seconds_left: Callable[[], float] | None = None
    ) -> ProcessResult:
        """Process one queue message body, received `receive_count` times, by a worker with
        `seconds_left` (None: no limit). Raises `pydantic.ValidationError` for a corrupt body."""
        final = receive_count >= self.config.processing.max_receives
        return self.process(_EVENT.validate_json(body), final_attempt=final, seconds_left=seconds_left)

    def process(
        self, event: InboundMessage | StatusEvent | UnhandledEvent | IdentityChange | AgentReply | CaseStatusChange, *,
        final_attempt: bool = False,
        seconds_left: Callable[[], float] | None = None,
    ) -> ProcessResult:
        """Raises `ConcurrentUpdateError` (concurrent workers kept winning the commit) and the
        store's and queue's `TransientError`s; each means: retry the message later. On the
        `final_attempt` (the queue's last receive) an attachment that still cannot be fetched is
        reported as deferred instead, so the customer's message is delivered rather than
        dead-lettered. `seconds_left` (the worker's time left) bounds the message's media downloads."""
        if isinstance(event, StatusEvent):
            return self._record_status(event)
        if isinstance(event, UnhandledEvent):
            return self._record_unhandled(event)
        if isinstance(event, IdentityChange):
            return self._change_identity(event)
        if isinstance(event, AgentReply):
            return self._relay_agent_reply(event, seconds_left)
        if isinstance(event, CaseStatusChange):
            return self._follow_ticket(event)
        return self._process_message(event, final_attempt, seconds_left)

    def _relay_agent_reply(self, reply: AgentReply, seconds_left: Callable[[], float] | None) -> ProcessResult:
        if self.agent_replies is None:
            raise ConfigError("this worker has no agent-reply service wired")
        outcome, contact_id = self.agent_replies().relay(reply, seconds_left=seconds_left)
        return ProcessResult(outcome, contact_id=contact_id)

    def _follow_ticket(self, change: CaseStatusChange) -> ProcessResult:
        if self.case_sync is None:
            raise ConfigError("this worker has no case-sync service wired")
        outcome, case_id = self.case_sync().apply(change)
        return ProcessResult(outcome, case_id=case_id)

    def _change_identity(self, change: IdentityChange) -> ProcessResult:
        """Link the `current` ids to the customer holding the `previous` ones, under the identity
        rules; a customer a message from the new ids already created is merged in, as any
        contact tying two customers would be. Idempotent: a repeat finds everything linked."""
        now = self.clock()
        region = self.default_region(change.provider, change.account)
        previous = normalize_sender(change.previous, change.display_name, default_region=region).party.identifiers
        if not previous or not self.store.find_customer_ids(previous):
            # Nobody the hub knows: the new ids make their customer when they first write.
            logger.info("identity change %s: no customer holds the previous ids", change.change)
            return ProcessResult(Outcome.IDENTITY_UNMATCHED)
        sender = normalize_sender([*change.previous, *change.current], change.display_name, default_region=region)
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                resolved, merges = self._resolve(change, sender, now)
                customer = resolved.customer
                announcements = self._merge_announcements(change, customer, merges)
                if announcements:
                    self.delivery_queue.send(announcements)
                if resolved.new_identifiers:
                    updated = customer.model_copy(update={"updated_at": now, "version": customer.version + 1})
                    self.store.update_customer(updated, new_identifiers=resolved.new_identifiers)
                return ProcessResult(Outcome.IDENTITY_CHANGED, customer_id=customer.id)
            except IdentifierTakenError as taken:
                self.cache.put(taken.identifier, taken.customer_id)
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise ConcurrentUpdateError("identifiers kept changing owner during an identity change") from None
            except ConcurrentUpdateError:
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _record_unhandled(self, event: UnhandledEvent) -> ProcessResult:
        expires_at = self.clock() + timedelta(days=self.config.processing.unhandled_days)
        fresh = self.store.record_unhandled(event, expires_at=expires_at)
        return ProcessResult(Outcome.UNHANDLED_RECORDED if fresh else Outcome.UNHANDLED_DUPLICATE)

    def _record_status(self, event: StatusEvent) -> ProcessResult:
        fresh = self.store.record_status(event, expires_at=self._dedupe_expiry(self.clock()))
        if fresh and self.outbound is not None:
            # Recorded first, matched second: the send worker links the provider's id first and
            # reads what was recorded second, so a status racing the send is seen by one of them.
            self.outbound().status_reported(event)
        return ProcessResult(Outcome.STATUS_RECORDED if fresh else Outcome.STATUS_DUPLICATE)

    def _process_message(
        self, message: InboundMessage, final_attempt: bool, seconds_left: Callable[[], float] | None = None
    ) -> ProcessResult:
        now = self.clock()
        media_seconds_left = _media_budget(seconds_left)
        # A concurrent worker may update the same customer between our read and our commit; the
        # commit then fails as a whole and we decide again from fresh reads. If it was another
        # attempt at this very message that committed, the fresh reads find it done.
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                return self._decide_and_commit(message, now, final_attempt, media_seconds_left)
            except AlreadyProcessed:
                return ProcessResult(Outcome.DUPLICATE)
            except IdentifierTakenError as taken:
                self.cache.put(taken.identifier, taken.customer_id)
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise ConcurrentUpdateError("identifiers kept changing owner during processing") from None
            except ConcurrentUpdateError:
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _decide_and_commit(
        self, message: InboundMessage, now: datetime, final_attempt: bool, media_seconds_left: Callable[[], float]
    ) -> ProcessResult:
        region = self.default_region(message.provider, message.account)
        sender = normalize_sender(message.sender.handles, message.sender.display_name, default_region=region)
        # The first read of the resolution also checks that the message is not done yet.
        resolved, merges = self._resolve(message, sender, now, dedupe_key=message.dedupe_key)
        # Case windows and observations run on the message's arrival time, not on when a worker
        # got to it: a queue backlog or a replay from the dead-letter queue must not change them.
        arrived = message.received_at
        customer = self._observe(resolved.customer, message, sender, arrived)
        customer = customer.model_copy(update={"activity": record_contact(customer.activity, message.channel, arrived)})
        thread_case, new_thread_keys = self._thread_case(message, customer)
        plan = attach_to_case(customer, message.channel, now=arrived, settings=self.config.cases, thread_case=thread_case)
        case = plan.case
        contact = _contact(message, sender.party, customer, case.id, resolved.resolution)
        contact.case_reason = plan.reason
        if sender.rejected:
            contact.enrichment["data_quality"] = {"rejected_identifiers": sender.rejected}
        if self.media is not None and contact.attachments:
            # Raises a TransientError when a provider is briefly unavailable: the message is retried.
            embedded = {content.index: content.data for content in message.attachment_content}
            contact = self.media().localize(contact, retry_transient=not final_attempt, embedded=embedded,
                                            seconds_left=media_seconds_left)
        self._offload_large_raw(contact)
        contact.enrichment = self._enricher().enrich(contact, customer, case, now=arrived)
        routing_context = context_for(contact, customer, case, created_customer=resolved.resolution.created_customer)
        contact.routing = self._router().route(routing_context)
        customer, case = self._consent_and_reply_target(contact, customer, plan)
        case, due = self._case_routing(plan, case, contact)
        if contact.routing.replies and self.messages is not None:
            # After the reply target is known; queued before the commit, with ids derived from the
            # contact, so a retry queues nothing twice.
            contact.enrichment["auto_replies"] = self.messages().auto_replies(contact, customer, case)
        customer = customer.model_copy(
            update={"open_case": summarize(case), "updated_at": now, "version": customer.version + 1}
        )
        jobs = [
            DeliveryJob(
                delivery_id=delivery_id(contact.id, destination),
                destination=destination,
                contact=contact,
                customer=customer,
                case=case,
            )
            for destination in _deliverable(contact)
        ]
        # Merge announcements go first, in the same per-customer FIFO groups as the contact, and
        # again on every retry of this message until it commits (their ids make repeats no-ops).
        outgoing = (self._merge_announcements(message, customer, merges) + self._case_announcements(plan, case, arrived)
                    + [job_message(job) for job in jobs])
        if due:
            # Before the commit that records the due times: a timer armed for a commit that then
            # fails finds other due times on the case and is stale; one never armed would be lost.
            # Names derive from the case and the due time, so a retry arms nothing twice.
            from chalicelib.service.case_timers import case_timers

            self.timers().arm(case_timers(case.id, customer.id, due))
        if outgoing:
            self.delivery_queue.send(outgoing)
        self.store.commit_contact(
            ContactCommit(
                contact=contact, case=case, customer=customer,
                dedupe_key=message.dedupe_key, dedupe_expires_at=self._dedupe_expiry(now), committed_at=now,
                new_identifiers=resolved.new_identifiers, other_cases=tuple(plan.other_cases),
                thread_keys=new_thread_keys, blocked_identifiers=resolved.learned_blocks,
            )
        )
        return ProcessResult(
            Outcome.CONTACT_CREATED, contact.id, customer.id, case.id, tuple(_deliverable(contact))
        )

    def _resolve(
        self, message: InboundMessage | IdentityChange, sender: NormalizedSender, now: datetime,
        *, dedupe_key: str | None = None,
    ) -> tuple[Resolved, list]:
        """Resolve the customer; when the contact's verified identifiers belong to several
        customers, merge them under the rules and resolve again. Returns the resolution (its
        decisions include each merge and refusal) and the merges this contact committed. With a
        `dedupe_key`, the first resolution checks it (raises `AlreadyProcessed`) before any
        write, merges included."""
        trigger = f"contact:{message.dedupe_key}"
        notes: list[IdentifierDecision] = []
        records = []
        for _ in range(MERGE_ROUNDS):
            resolved = resolve_customer(
                self.store, sender.party, rules=self.rules, source=message.provider, now=now, cache=self.cache,
                dedupe_key=dedupe_key,
            )
            dedupe_key = None  # checked
            changed = False
            for other_id, identifier in resolved.others:
                # The owner may come from this worker's cache: after the merge (or when the entry
                # is stale) the store is asked again.
                self.cache.forget(identifier.key)
                try:
                    outcome = self._merges.merge(
                        resolved.customer.id, other_id, now=now, trigger=trigger,
                        matched=(resolved.resolution.matched_identifier, identifier.key),
                    )
                except NotFoundError:  # a stale cache entry of an erased customer
                    changed = True
                    continue
                if outcome.existing:  # merged already (a stale cache entry): resolve afresh
                    changed = True
                elif outcome.record is not None:
                    changed = True
                    records.append(outcome.record)
                    notes.append(IdentifierDecision(
                        identifier=identifier.key, outcome="merged",
                        rule=f"auto_merge: {outcome.record.absorbed_id} merged into {outcome.record.survivor_id} "
                             f"(the oldest customer survives; merge {outcome.record.id})",
                    ))
                elif outcome.refusal is not None:
                    notes.append(IdentifierDecision(identifier=identifier.key, outcome="merge_refused", rule=outcome.refusal))
            if not changed:
                break
        resolved.resolution.decisions = [*notes, *resolved.resolution.decisions]
        return resolved, records

    def _case_routing(self, plan: CasePlan, case: Case, contact: Contact) -> tuple[Case, dict[str, datetime]]:
        """The case as routing left it, and the due times to arm. A contact that opens or reopens
        the case sets its queue, priority and tags and its SLA and auto-close due times; a contact
        joining an open case adds its tags and keeps the rest (the SLA counts from the opening,
        and the auto-close timer re-arms itself when it finds later activity), so it arms nothing
        and costs no timer call, unless routing asked for a follow-up."""
        decision = contact.routing
        opened = plan.reason in ("new_case", "reopened_by_thread_key")
        if opened:
            case = case.model_copy(update={"queue": decision.queue, "priority": decision.priority,
                                           "tags": list(dict.fromkeys(decision.tags))})
        else:
            case = case.model_copy(update={
                "queue": case.queue or decision.queue,
                "priority": decision.priority if case.priority is None else case.priority,
                "tags": list(dict.fromkeys([*case.tags, *decision.tags])),
            })
        if self.timers is None or not (opened or decision.follow_up_hours is not None):
            return case, {}
        from chalicelib.service.case_timers import due_times

        due = due_times(case, sla=self.config.routing.sla, policy=self.config.cases, now=contact.received_at,
                        priority=case.priority, follow_up_hours=decision.follow_up_hours)
        if not opened:
            due = {"follow_up": due["follow_up"]}
        return case.model_copy(update={"due": {**({} if opened else case.due), **due}}), due

    def _case_announcements(self, plan: CasePlan, case: Case, arrived: datetime) -> list[OutgoingMessage]:
        """`case.closed` for the cases this contact closed, then `case.opened` or `case.reopened`
        for its own, to the destinations that take case events (ahead of the contact, in the
        same per-customer groups; ids derived from the change, so a retry repeats nothing)."""
        destinations = self.case_event_destinations()
        if not destinations:
            return []
        messages = []
        for other in plan.other_cases:
            messages += case_event_messages("case.closed", other, occurred_at=other.closed_at or arrived,
                                            destinations=destinations, reason=other.close_reason)
        if plan.reason in ("new_case", "reopened_by_thread_key"):
            event_type = "case.opened" if plan.reason == "new_case" else "case.reopened"
            messages += case_event_messages(event_type, case, occurred_at=arrived, destinations=destinations)
        return messages

    @property
    def _merges(self) -> Merges:
        return Merges.of(self.store, self.config)

    def _merge_announcements(
        self, message: InboundMessage | IdentityChange, customer: Customer, records: list
    ) -> list[OutgoingMessage]:
        """`customer.merged` for the merges this message caused: those committed in this attempt,
        and those an earlier, interrupted attempt committed (found in the merge history)."""
        trigger = f"contact:{message.dedupe_key}"
        merges = {r.id: (r.survivor_id, r.absorbed_id, r.merged_at) for r in records}
        for entry in customer.merges:
            if entry.trigger == trigger and entry.role == "survivor" and entry.reverted_at is None:
                merges.setdefault(entry.merge_id, (customer.id, entry.other_customer_id, entry.merged_at))
        if not merges:
            return []
        destinations = self.event_destinations()
        return [
            outgoing
            for merge_id, (survivor_id, absorbed_id, merged_at) in merges.items()
            for outgoing in customer_event_messages(
                "customer.merged", survivor_id, occurred_at=merged_at, destinations=destinations,
                other_customer_id=absorbed_id, merge_id=merge_id,
            )
        ]

    def _router(self):
        if self.router is None:
            from chalicelib.routing.setup import RouterFactory

            inline = RouterFactory(self.config).inline
            self.router = lambda: inline
        return self.router()

    def _enricher(self):
        if self.enricher is None:
            from chalicelib.enrichment.settings import build_enricher

            built = build_enricher(self.config.enrichment, _no_aws)
            self.enricher = lambda: built
        return self.enricher()

    def _observe(self, customer: Customer, message: InboundMessage, sender: NormalizedSender, now: datetime) -> Customer:
        """What this contact tells the golden record, under the survivorship rules."""
        values = {"preferred_channel": message.channel.value}
        if sender.party.display_name:
            values["name"] = sender.party.display_name
        customer = observe(customer, values, source=message.provider, at=now, rules=self.config.survivorship)
        if IdentifierKind.PHONE in sender.rejected_kinds:
            customer = record_issue(customer, INVALID_PHONE, at=now)
        return customer

    def _consent_and_reply_target(self, contact: Contact, customer: Customer, plan: CasePlan) -> tuple[Customer, Case]:
        """What the contact states about consent (a STOP, a HELP to answer) and how to answer it,
        recorded on the customer and its cases in the contact's own commit: no extra write."""
        from chalicelib.service.consent import inbound_consent, last_inbound, remember_reply_target

        effect = inbound_consent(contact, customer, self.config.consent,
                                 default_language=self.config.routing.default_language)
        if effect is not None:
            customer = customer.model_copy(update={"consent": effect.consent})
            contact.enrichment["consent"] = effect.decision
            routing = contact.routing
            contact.routing = routing.model_copy(update={
                "tags": [*routing.tags, *([effect.tag] if effect.tag and effect.tag not in routing.tags else [])],
                "replies": [*routing.replies, *([effect.reply] if effect.reply else [])],
            })
        customer = remember_reply_target(customer, _reply_target(contact))
        # The open case and the one it supersedes are rebuilt from the customer's summary, which
        # lacks `last_inbound`: it is restored from the customer's reply targets.
        plan.other_cases = [
            c.model_copy(update={"last_inbound": last_inbound(customer, c.id, c.last_inbound)}) for c in plan.other_cases
        ]
        return customer, plan.case.model_copy(update={"last_inbound": last_inbound(customer, plan.case.id,
                                                                                    plan.case.last_inbound)})

    def _thread_case(self, message: InboundMessage, customer: Customer) -> tuple[Case | None, tuple[str, ...]]:
        """The first case, in the message's thread-key order, that belongs to this customer, and
        the thread keys nobody holds yet (the only ones the commit writes: a key is never taken
        from the case it names, so a reply-all from someone cc'd cannot steal a thread). One
        store call for messages with thread keys; one more per other case it has to look at."""
        if not message.thread_keys:
            return None, ()
        threads = self.store.find_threads(list(message.thread_keys))
        new_keys = tuple(k for k in dict.fromkeys(message.thread_keys) if k not in threads)
        ours = (customer.id, *customer.merged_from)
        for case_id in dict.fromkeys(threads[k] for k in message.thread_keys if k in threads):
            if customer.open_case is not None and customer.open_case.id == case_id:
                return Case(**customer.open_case.model_dump(), customer_id=customer.id), new_keys
            case = self.store.get_case(case_id)
            if case is not None and case.customer_id in ours:
                return case, new_keys
        return None, new_keys

    def _offload_large_raw(self, contact: Contact) -> None:
        if len(contact.model_dump_json()) <= MAX_INLINE_CONTACT_BYTES:
            return
        key = f"raw/{contact.id}.json"
        self.blobs.put(key, json.dumps(contact.raw).encode(), content_type="application/json")
        contact.raw = {"$blob": key}

    def _dedupe_expiry(self, now: datetime) -> datetime:
        return now + timedelta(days=self.config.processing.dedupe_days)


def _media_budget(worker_left: Callable[[], float] | None) -> Callable[[], float]:
    """Seconds left for one message's media downloads, one budget from now (the message's start)
    for all its commit attempts: at most `MEDIA_BUDGET_SECONDS`, and no more than the worker has left
    minus `MEDIA_RESERVE_SECONDS`."""
    ends = time.monotonic() + MEDIA_BUDGET_SECONDS
    if worker_left is None:
        return lambda: ends - time.monotonic()
    return lambda: min(ends - time.monotonic(), worker_left() - MEDIA_RESERVE_SECONDS)


def _contact(message: InboundMessage, party, customer: Customer, case_id: str, resolution) -> Contact:
    # Time-ordered by the hub's own arrival time (one clock for every channel, the order the
    # per-sender FIFO keeps), and stable for a redelivered queue message, which carries it.
    return Contact(
        id=stable_id("ct", message.dedupe_key, millis=int(message.received_at.timestamp() * 1000)),
        provider=message.provider,
        channel=message.channel,
        provider_message_id=message.provider_message_id,
        account=message.account,
        sender=party,
        sender_verified=any(handle.verified for handle in message.sender.handles),
        sent_at=message.sent_at,
        received_at=message.received_at,
        content_type=message.content_type,
        text=message.text,
        subject=message.subject,
        attachments=message.attachments,
        location=message.location,
        metadata=message.metadata,
        conversation_key=message.conversation_key,
        thread_keys=message.thread_keys,
        customer_id=customer.id,
        case_id=case_id,
        resolution=resolution,
        raw=message.raw,
    )


def _reply_target(contact: Contact):
    """How to answer `contact`, from its provider's sender (imported here, on the worker, never on
    the ingest path); None for providers that cannot send. A sender that fails to derive one is
    logged, not fatal: the customer's message matters more than the way to answer it."""
    from chalicelib.adapters.channels.registry import CHANNELS
    from chalicelib.adapters.channels.sending import sender_class

    path = getattr(CHANNELS.get(contact.provider), "sender", None)
    if not path:
        return None
    try:
        return sender_class(path).reply_target(contact)
    except Exception:
        logger.exception("the %s sender could not derive a reply target", contact.provider)
        return None


def _deliverable(contact: Contact) -> list[str]:
    """The destinations to deliver to now: none while parked for manual handling or suppressed."""
    routing = contact.routing
    return [] if routing.parked is not None or routing.suppressed is not None else routing.destinations


def _no_aws(service: str):
    raise RuntimeError(f"this processor was built without AWS clients; {service} is not available")


def job_message(job: DeliveryJob) -> OutgoingMessage:
    # One group per destination and customer: that customer's contacts reach the destination in
    # order, while other customers and destinations proceed independently.
    return OutgoingMessage(
        body=job.model_dump_json(),
        group=group_id(f"{job.destination}:{job.customer.id}"),
        dedupe_id=job.delivery_id,
    )
