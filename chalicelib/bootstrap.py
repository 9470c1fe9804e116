"""The composition root: builds the store, queues, adapters, connectors, services and the edge's
endpoint objects, each with what it needs. It wires; it does not serve.

Nothing is built at import, and each piece is built on first use and then reused for warm
invocations, so the ingest Lambda never pays for the worker's dependencies and vice versa. Pieces
are built once per hub even when requests arrive on several threads at once (the embedded
runtime). The Chalice routes and SQS handlers reach the endpoints and workers through the one
installed hub (`get_hub`); everything below them receives its collaborators from here, so a test
builds any of them with fakes and no global. Tests build a `Hub` from their own `Settings` (or
inject fakes) and install it with `use_hub`.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from chalicelib.adapters.blobs.base import BlobStore, LazyBlobStore
from chalicelib.domain.models import utcnow
from chalicelib.errors import ConfigError
from chalicelib.hubconfig import HubConfig, load_config
from chalicelib.observability import Counters, configure_logging, get_tracer, set_correlation_id
from chalicelib.secrets import SecretResolver
from chalicelib.settings import Settings

if TYPE_CHECKING:  # each loads with the piece that needs it: the ingest path builds no store or connector
    from chalicelib.adapters.channels.base import ChannelAdapter
    from chalicelib.adapters.connectors.base import Connector, ConnectorRuntime
    from chalicelib.adapters.queue.base import Queue
    from chalicelib.adapters.store.base import Store

#: Local queues: visibility must exceed the worker's longest run (deliveries retry inline).
LOCAL_INBOUND_VISIBILITY = 60
LOCAL_DELIVERY_VISIBILITY = 120
LOCAL_PULL_MAX_RECEIVES = 5

T = TypeVar("T")


class wired(Generic[T]):  # noqa: N801 - used like @property
    """A piece of the hub, built on first use under the hub's lock and reused: two requests that
    arrive together on a cold embedded hub must not build two stores or two processors."""

    def __init__(self, build: Callable[[Any], T]) -> None:
        self._build = build
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, hub: Any, owner: type | None = None) -> T:
        if hub is None:
            return self  # type: ignore[return-value]
        with hub._lock:
            if self._name not in hub.__dict__:
                with _collection_paused():
                    hub.__dict__[self._name] = self._build(hub)
            return hub.__dict__[self._name]


@contextmanager
def _collection_paused():
    """The cyclic garbage collector off while a piece of the hub is built: what a build creates
    (configuration models, AWS clients, the modules it imports) lives as long as the hub, so a
    collection in the middle of it walks long-lived objects for nothing; most builds happen on a
    cold start's first request, where that cost is time the caller waits (app.py says the same of
    the import). Builds run under the hub's lock, one at a time."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Hub:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        config: HubConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        aws_client: Callable[[str], object] | None = None,
        txt_resolver: object | None = None,
    ) -> None:
        """`aws_client` and `txt_resolver` replace the AWS clients and the DNS resolver (tests)."""
        self.settings = settings or Settings.from_environ()
        self._txt_resolver = txt_resolver
        self.clock = clock
        self._config = config
        self._aws_client_factory = aws_client
        self._lock = threading.RLock()
        self._adapters: dict[str, ChannelAdapter] = {}
        self._aws_clients: dict[str, object] = {}
        self._connectors: dict[str, Connector] = {}
        self._senders: dict[str, Any] = {}
        self._pull_queues: dict[str, Queue] = {}
        configure_logging(self.settings)
        # Created at start-up only when tracing is on: it patches botocore so every AWS call is a
        # subsegment, and costs ~0.3 s of cold start, which is why it is opt-in.
        self.tracer = get_tracer(self.settings)

    def annotate(self, **values: str) -> None:
        """Searchable X-Ray annotations on the current trace (no-op without tracing)."""
        if self.tracer is not None:
            for key, value in values.items():
                self.tracer.put_annotation(key=key, value=value)

    # --- configuration ---------------------------------------------------------------------------

    @wired
    def config(self) -> HubConfig:
        if self._config is not None:
            return self._config
        # A deployed function types the sections it reads when it first reads them (the deploy
        # validated the whole file); the embedded runtime checks everything before it starts.
        on_aws = self.settings.on_aws
        return load_config(self.settings.config_path, allow_inline_secrets=not on_aws, defer_sections=on_aws)

    @wired
    def secrets(self) -> SecretResolver:
        return SecretResolver(self.settings.environ, allow_inline=not self.settings.on_aws)

    @wired
    def counters(self) -> Counters:
        return Counters(emit_emf=self.settings.on_aws, deployment=self.settings.stage)

    # --- infrastructure --------------------------------------------------------------------------

    def aws_client(self, service: str):
        """One client per service for the life of the container (clients are thread-safe)."""
        with self._lock:
            if service not in self._aws_clients:
                self._aws_clients[service] = self._new_aws_client(service)
            return self._aws_clients[service]

    def _new_aws_client(self, service: str):
        if self._aws_client_factory is not None:
            return self._aws_client_factory(service)
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            config=Config(
                connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3},
            ),
        )

    @wired
    def data_dir(self) -> Path:
        path = Path(self.settings.data_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @wired
    def blobs(self) -> BlobStore:
        return LazyBlobStore(self._build_blobs)

    def _build_blobs(self) -> BlobStore:
        from chalicelib.adapters.blobs.links import HubLinks

        if self.settings.on_aws:
            from chalicelib.adapters.blobs.s3 import S3BlobStore

            store = S3BlobStore(self.aws_client("s3"), self._required(self.settings.bucket, "HUB_BUCKET"))
            public = self.config.media.public_url
            if public is None:
                # Links are then S3 presigned URLs, which end with the signing role's session.
                return store
            from chalicelib.adapters.blobs.links import HubLinkedBlobStore

            return HubLinkedBlobStore(store, HubLinks(public, self.link_secrets))
        from chalicelib.adapters.blobs.local import LocalBlobStore

        public = self.config.media.public_url or f"http://{self.settings.host}:{self.settings.port}"
        return LocalBlobStore(str(self.data_dir / "blobs"), link_base_url=public, link_secrets=self.link_secrets)

    def link_secrets(self) -> list[str]:
        """The secrets media links are signed with, read (or, embedded, generated) on first use."""
        from chalicelib.service.media import link_secrets

        return link_secrets(self.config.media, self.secrets, self.data_dir, generate=not self.settings.on_aws)

    @wired
    def store(self) -> Store:
        if self.settings.on_aws:
            from chalicelib.adapters.store.dynamodb import DynamoDbStore

            return DynamoDbStore(self._required(self.settings.table_name, "HUB_TABLE"), self.aws_client("dynamodb"),
                                 indexed_attributes=self.config.customers.indexed_attributes)
        from chalicelib.adapters.store.sqlite import SqliteStore

        return SqliteStore(str(self.data_dir / "hub.db"), indexed_attributes=self.config.customers.indexed_attributes)

    @wired
    def inbound_queue(self) -> Queue:
        return self._queue("inbound", self.settings.inbound_queue_url, "HUB_INBOUND_QUEUE_URL",
                           LOCAL_INBOUND_VISIBILITY, self.config.processing.max_receives)

    @wired
    def delivery_queue(self) -> Queue:
        return self._queue("delivery", self.settings.delivery_queue_url, "HUB_DELIVERY_QUEUE_URL",
                           LOCAL_DELIVERY_VISIBILITY, self.config.delivery.max_receives)

    @wired
    def delivery_dead_letters(self) -> Queue:
        return self._queue("delivery-dlq", self.settings.delivery_dlq_url, "HUB_DELIVERY_DLQ_URL",
                           LOCAL_DELIVERY_VISIBILITY, 0)

    @wired
    def outbound_queue(self) -> Queue:
        return self._queue("outbound", self.settings.outbound_queue_url, "HUB_OUTBOUND_QUEUE_URL",
                           LOCAL_DELIVERY_VISIBILITY, self.config.delivery.max_receives)

    @wired
    def outbound_dead_letters(self) -> Queue:
        return self._queue("outbound-dlq", self.settings.outbound_dlq_url, "HUB_OUTBOUND_DLQ_URL",
                           LOCAL_DELIVERY_VISIBILITY, 0)

    @wired
    def events_queue(self) -> Queue:
        """Business events, broadcast pages and members, case timers and deferred messages."""
        return self._queue("events", self.settings.events_queue_url, "HUB_EVENTS_QUEUE_URL",
                           LOCAL_DELIVERY_VISIBILITY, self.config.delivery.max_receives)

    @wired
    def events_dead_letters(self) -> Queue:
        return self._queue("events-dlq", self.settings.events_dlq_url, "HUB_EVENTS_DLQ_URL",
                           LOCAL_DELIVERY_VISIBILITY, 0)

    @wired
    def timers(self):
        """Case timers and deferred messages: EventBridge Scheduler one-time schedules on AWS (a
        timer due sooner than Scheduler can fire goes straight onto the events queue), a SQLite
        table that `timer_pump` empties in the embedded runtime."""
        if self.settings.on_aws:
            from chalicelib.adapters.timers.scheduler import SchedulerTimers

            settings = self.settings
            return SchedulerTimers(self.aws_client("scheduler"), group=settings.timers_group,
                                   role_arn=settings.timers_role_arn, target_arn=settings.timers_function_arn,
                                   dead_letter_arn=settings.timers_dlq_arn, fire_now=self.timer_endpoint.enqueue,
                                   clock=self.clock)
        from chalicelib.adapters.timers.local import LocalTimers

        return LocalTimers(str(self.data_dir / "timers.db"))

    def case_timer_port(self) -> Callable[[], Any] | None:
        """The timers port for arming and cancelling case timers, or None when case timers are
        off: on AWS until the stack's timer outputs are set (`HUB_TIMERS_ROLE_ARN`,
        `HUB_TIMERS_FUNCTION_ARN`, `HUB_TIMERS_DLQ_ARN`), so a hub without them keeps processing
        contacts (its cases carry no due times) instead of failing every new case."""
        settings = self.settings
        if settings.on_aws and not (settings.timers_role_arn and settings.timers_function_arn
                                    and settings.timers_dlq_arn):
            return None
        return lambda: self.timers

    @wired
    def timer_endpoint(self):
        """The timers function's handler: a fired timer onto the events queue."""
        from chalicelib.service.case_timers import TimerEndpoint

        return TimerEndpoint(lambda: self.events_queue, self.clock)

    @wired
    def timer_pump(self):
        """The embedded runtime's scheduler: due timers onto the events queue."""
        from chalicelib.service.case_timers import TimerPump

        return TimerPump(self.timers, lambda: self.events_queue)

    def pull_queue(self, name: str) -> Queue:
        """The queue a provider's pull entry (`PullEntry`) reads; the worker deletes what it finished."""
        from chalicelib.adapters.channels.registry import PULL_ENTRIES

        with self._lock:
            if name not in self._pull_queues:
                _, entry = PULL_ENTRIES[name]
                self._pull_queues[name] = self._queue(
                    name, self.settings.queue_url(entry.environment_variable), entry.environment_variable,
                    LOCAL_INBOUND_VISIBILITY, LOCAL_PULL_MAX_RECEIVES,
                )
            return self._pull_queues[name]

    def _queue(self, name: str, url: str, variable: str, visibility: int, max_receives: int) -> Queue:
        if self.settings.on_aws:
            from chalicelib.adapters.queue.sqs import SqsQueue

            return SqsQueue(self.aws_client("sqs"), self._required(url, variable), blobs=self.blobs)
        from chalicelib.adapters.queue.local import LocalQueue

        return LocalQueue(
            str(self.data_dir / "queue.db"),
            name,
            visibility_timeout=visibility,
            max_receives=max_receives or 1_000_000,
            dead_letter=f"{name}-dlq" if max_receives else None,
            blobs=self.blobs,
        )

    def _required(self, value: str, variable: str) -> str:
        if not value:
            raise ConfigError(f"{variable} is not set; run `python infra/deploy.py --stage {self.settings.stage}`")
        return value

    # --- adapters and connectors -----------------------------------------------------------------

    def adapter(self, key: str) -> ChannelAdapter | None:
        """The configured adapter for a provider key; None when the provider is not enabled."""
        with self._lock:
            if key not in self._adapters:
                from chalicelib.adapters.channels.registry import CHANNELS

                settings = self.config.channels.get(key)
                if settings is None or key not in CHANNELS:
                    return None
                self._adapters[key] = CHANNELS[key](settings, self.secrets, self.adapter_services)
            return self._adapters[key]

    def connector(self, name: str) -> Connector | None:
        with self._lock:
            if name not in self._connectors:
                from chalicelib.adapters.connectors.registry import CONNECTORS

                destination = self.config.destination(name)
                if destination is None:
                    return None
                self._connectors[name] = CONNECTORS[destination.type](
                    name, destination.settings, self.secrets, self.connector_runtime
                )
            return self._connectors[name]

    def sender(self, key: str):
        """The configured provider's sender (`ChannelSender`); None when the provider is not
        configured or cannot send."""
        with self._lock:
            if key not in self._senders:
                from chalicelib.adapters.channels.registry import CHANNELS
                from chalicelib.adapters.channels.sending import sender_class

                adapter = CHANNELS.get(key)
                settings = self.config.channels.get(key)
                if adapter is None or adapter.sender is None or settings is None:
                    return None
                self._senders[key] = sender_class(adapter.sender)(settings, self.secrets, self.sender_runtime)
            return self._senders[key]

    def sending_providers(self, channel) -> list[str]:
        """Configured providers whose sender sends on `channel`, in configuration order."""
        return [key for key in self.config.channels if (sender := self.sender(key)) is not None
                and channel in sender.channels]

    @wired
    def sender_runtime(self):
        from chalicelib.adapters.channels.sending import SenderRuntime

        return SenderRuntime(http=self.connector_runtime.http, aws_client=self.aws_client, clock=self.clock,
                             visitor_outbox=self.visitor_outbox, extra={"downloader": self.downloader})

    @wired
    def downloader(self):
        """The safe downloader senders fetch attachments with (public addresses only, bounded)."""
        from chalicelib.adapters.downloads import Downloader

        return Downloader()

    @wired
    def visitor_outbox(self):
        from chalicelib.service.visitor_outbox import StoreVisitorOutbox

        return StoreVisitorOutbox(self.store)

    @wired
    def visitor_tokens(self):
        from chalicelib.service.visitor_outbox import VisitorTokens

        return VisitorTokens(self.link_secrets)

    def message_destinations(self, event_type: str) -> list[str]:
        """Destinations whose connectors take `event_type` (`message.sent`, `message.status`)."""
        return [d.name for d in self.config.destinations
                if (connector := self.connector(d.name)) is not None
                and event_type in getattr(connector, "message_events", ())]

    @wired
    def message_events(self):
        from chalicelib.service.message_events import MessageEvents

        return MessageEvents(self.store, lambda: self.delivery_queue, self.message_destinations,
                             takes_notes=lambda name: (c := self.connector(name)) is not None and c.takes_failure_notes())

    @wired
    def outbound_reports(self):
        from chalicelib.service.message_statuses import OutboundReports

        return OutboundReports(self.store, self.message_events, wants=lambda event: bool(self.message_destinations(event)),
                               opted_out=self._record_opt_out)

    def _record_opt_out(self, contact, source: str, evidence: str, purposes: tuple[str, ...]) -> None:
        from chalicelib.service.consent_updates import record_opt_out

        record_opt_out(self.store, contact, source=source, evidence=evidence, now=self.clock(), purposes=purposes)

    @wired
    def messages(self):
        from chalicelib.service.consent_updates import consent_allows
        from chalicelib.service.messages import MessageService

        return MessageService(store=self.store, outbound_queue=lambda: self.outbound_queue, senders=self.sender,
                              providers_for=self.sending_providers, default_region=self.config.identity.default_region,
                              clock=self.clock, consent_allows=consent_allows)

    @wired
    def send_worker(self):
        from chalicelib.service.breaker import CircuitBreakers
        from chalicelib.service.send_worker import SendWorker

        delivery = self.config.delivery
        return SendWorker(
            store=self.store, senders=self.sender, dead_letters=self.outbound_dead_letters, settings=delivery,
            clock=self.clock, on_sent=self.outbound_reports.sent, on_refused=self.outbound_reports.refused,
            breakers=CircuitBreakers(failure_threshold=delivery.circuit_failure_threshold,
                                     cooldown_seconds=delivery.circuit_cooldown_seconds,
                                     max_cooldown_seconds=delivery.circuit_max_cooldown_seconds),
        )

    def customer_event_destinations(self) -> list[str]:
        """Destinations whose connectors take customer events (merged, unmerged, erased)."""
        return [
            d.name for d in self.config.destinations
            if (connector := self.connector(d.name)) is not None and connector.takes_customer_event("customer.merged")
        ]

    def case_event_destinations(self) -> list[str]:
        """Destinations whose connectors take case events (opened, closed, reopened)."""
        return [
            d.name for d in self.config.destinations
            if (connector := self.connector(d.name)) is not None and connector.takes_customer_event("case.opened")
        ]

    def case_timer_destinations(self) -> list[str]:
        """Destinations whose connectors take the case timer events (SLA breached, follow-up
        due, auto-closed): those that send any event in the generic envelope."""
        return [
            d.name for d in self.config.destinations
            if (connector := self.connector(d.name)) is not None
            and connector.takes_customer_event("case.sla_breached")
        ]

    def callback_side(self, name: str):
        """The callback side (`VendorCallbacks`) of a two-way destination; None for a destination
        that is not configured, or configured without `callbacks`."""
        connector = self.connector(name)
        return connector.callback_side() if connector is not None else None

    @wired
    def agent_replies(self):
        from chalicelib.service.agent_replies import AgentReplies

        return AgentReplies(store=self.store, callbacks=self.callback_side, messages=lambda: self.messages,
                            events=lambda: self.message_events, counters=self.counters, clock=self.clock)

    def _status_reporting_destinations(self) -> list[str]:
        """Two-way destinations whose vendors report their tickets' status (and follow it)."""
        return [name for name in self.config.two_way_destinations()
                if (side := self.callback_side(name)) is not None and side.reports_status and side.settings.status]

    @wired
    def case_sync(self):
        from chalicelib.service.case_sync import CaseSync

        return CaseSync(store=self.store, callbacks=self.callback_side, policy=self.config.cases,
                        two_way=self._status_reporting_destinations, case_event_destinations=self.case_event_destinations,
                        delivery_queue=lambda: self.delivery_queue, counters=self.counters, clock=self.clock,
                        timers=self.case_timer_port())

    @wired
    def adapter_services(self):
        """What adapters borrow: Mailgun's tokens remembered in the store (every Lambda container
        sees every other's; the store is reached only when an adapter asks), and the email
        sender verifier with its DNS cache (DNS is asked only for mail that needs it)."""
        from chalicelib.adapters.channels.base import AdapterServices
        from chalicelib.signing.replay import StoreReplayGuard

        # Only email adapters verify senders: the verifier (DNS, DKIM) loads on their first use.
        verifier = _Deferred(lambda: self.sender_verifier) if self.config.email.verify_dkim else None
        return AdapterServices(replay_guard=StoreReplayGuard(lambda: self.store), sender_verifier=verifier,
                               visitor_tokens=_Deferred(lambda: self.visitor_tokens),
                               visitor_outbox=_Deferred(lambda: self.visitor_outbox),
                               trusts_own_origin=self.settings.listens_on_loopback)

    @wired
    def sender_verifier(self):
        """The DKIM/DMARC verifier with its DNS cache (`email.verify_dkim` on)."""
        settings = self.config.email
        from chalicelib.adapters.email_auth import DnspythonTxtResolver, SenderVerifier

        resolver = self._txt_resolver or DnspythonTxtResolver(
            lifetime=settings.dns_timeout_seconds, timeout=min(1.0, settings.dns_timeout_seconds),
            nameservers=settings.dns_nameservers or None)
        return SenderVerifier(resolver)

    @wired
    def connector_runtime(self) -> ConnectorRuntime:
        from chalicelib.adapters.connectors.base import ConnectorRuntime

        return ConnectorRuntime(data_dir=str(self.data_dir), aws_client=self.aws_client)

    @wired
    def identity_rules(self):
        from chalicelib.domain.identity_rules import IdentityRules

        return IdentityRules(self.config.identity)

    # --- routing and enrichment ------------------------------------------------------------------

    @wired
    def router_factory(self):
        """Compiles the inline rules on first use."""
        from chalicelib.routing.setup import RouterFactory

        return RouterFactory(self.config)

    @wired
    def rules_source(self):
        """Where the rules in force come from: the configuration file, a rules file, S3, SSM or AppConfig."""
        from chalicelib.routing.sources import rules_source

        return rules_source(self.config.routing.source, self.aws_client, base_dir=Path(self.settings.config_path).parent)

    @wired
    def live_router(self):
        """The router in force, following the rules' source when it is not the configuration file."""
        from chalicelib.routing.setup import LiveRouter

        return LiveRouter(self.router_factory, self.rules_source,
                          describe=getattr(self.rules_source, "describe", "routing.rules"),
                          on_rejected=lambda reason: self.counters.incr("RoutingRulesRejected"))

    @wired
    def event_rules_factory(self):
        """Compiles the inline event rules on first use (routing's calendars and SLA)."""
        from chalicelib.routing.event_setup import EventRulesFactory

        return EventRulesFactory(self.config)

    @wired
    def event_rules_source(self):
        """Where the event rules in force come from (`events.source`), like routing's."""
        from chalicelib.routing.event_setup import event_rules_source

        return event_rules_source(self.config, self.aws_client, base_dir=Path(self.settings.config_path).parent)

    @wired
    def live_event_rules(self):
        """The event rules in force, following their source when it is not the configuration file."""
        from chalicelib.routing.event_setup import LiveEventRules

        return LiveEventRules(self.event_rules_factory, self.event_rules_source,
                              describe=getattr(self.event_rules_source, "describe", "events.rules"),
                              on_rejected=lambda reason: self.counters.incr("EventRulesRejected"))

    @wired
    def media(self):
        """Downloads attachments whose links expire or need credentials into the blob store."""
        from chalicelib.adapters.media.http import MediaHttp
        from chalicelib.service.media import MediaLocalizer

        return MediaLocalizer(self.config.media, self.blobs, self.secrets, http=MediaHttp(self.connector_runtime.http),
                              clock=self.clock)

    @wired
    def enricher(self):
        from chalicelib.enrichment.settings import build_enricher

        return build_enricher(self.config.enrichment, self.aws_client)

    # --- services --------------------------------------------------------------------------------

    @wired
    def ingestion(self):
        from chalicelib.service.ingest import Ingestion

        return Ingestion(self.inbound_queue, self.counters, max_body_bytes=self.config.processing.max_body_bytes,
                         aws_client=self.aws_client)

    @wired
    def processor(self):
        from chalicelib.service.identity import IdentifierCache
        from chalicelib.service.process import Processor

        return Processor(
            store=self.store, delivery_queue=self.delivery_queue, config=self.config,
            cache=IdentifierCache(), default_region=self.config.identity.region_for, clock=self.clock, blobs=self.blobs,
            rules=self.identity_rules, event_destinations=self.customer_event_destinations,
            router=lambda: self.live_router.current(), enricher=lambda: self.enricher, media=lambda: self.media,
            outbound=lambda: self.outbound_reports, messages=lambda: self.messages,
            case_event_destinations=self.case_event_destinations, agent_replies=lambda: self.agent_replies,
            case_sync=lambda: self.case_sync, timers=self.case_timer_port(),
        )

    @wired
    def case_timer_handler(self):
        """Acts on fired case timers for the event processor (`on_timer`): their events run
        through the event rules (`event_processor.process_addressed`) and reach the destinations
        that take case timer events."""
        from chalicelib.service.case_timer_events import CaseTimerHandler

        return CaseTimerHandler(
            store=self.store, config=self.config, timers=lambda: self.timers,
            process_addressed=lambda event, customer_id: self.event_processor.process_addressed(event, customer_id),
            delivery_queue=lambda: self.delivery_queue, case_event_destinations=self.case_event_destinations,
            case_timer_destinations=self.case_timer_destinations, clock=self.clock,
        )

    @wired
    def deliverer(self):
        from chalicelib.service.breaker import CircuitBreakers
        from chalicelib.service.deliver import Deliverer

        return Deliverer(
            store=self.store, connector=self.connector, dead_letters=self.delivery_dead_letters,
            settings=self.config.delivery, clock=self.clock,
            breakers=CircuitBreakers(
                failure_threshold=self.config.delivery.circuit_failure_threshold,
                cooldown_seconds=self.config.delivery.circuit_cooldown_seconds,
                max_cooldown_seconds=self.config.delivery.circuit_max_cooldown_seconds,
            ),
        )

    @wired
    def customers(self):
        from chalicelib.service.customers import CustomerService

        config = self.config
        return CustomerService(
            store=self.store, blobs=self.blobs, delivery_queue=lambda: self.delivery_queue, identity=config.identity,
            identity_rules=lambda: self.identity_rules, survivorship=config.survivorship, cases=config.cases,
            limits=config.customers, event_destinations=self.customer_event_destinations, clock=self.clock,
            consent=config.consent, case_event_destinations=self.case_event_destinations,
            timers=self.case_timer_port(),
        )

    @wired
    def operations(self):
        from chalicelib.service.operations import Operations

        return Operations(store=self.store, delivery_queue=lambda: self.delivery_queue, config=self.config,
                          router=lambda: self.live_router.current(), enricher=lambda: self.enricher, clock=self.clock,
                          outbound_queue=lambda: self.outbound_queue)

    # --- the edge: what the routes and queue handlers call ---------------------------------------

    @wired
    def webhook_endpoint(self):
        from chalicelib.api.webhooks import WebhookEndpoint

        return WebhookEndpoint(self.ingestion, self.adapter, clock=self.clock, annotate=self.annotate,
                               correlate=set_correlation_id)

    @wired
    def callback_endpoint(self):
        from chalicelib.api.callbacks import CallbackEndpoint

        return CallbackEndpoint(self.ingestion, self.callback_side, clock=self.clock, annotate=self.annotate,
                                correlate=set_correlation_id)

    @wired
    def consumer_api(self):
        from chalicelib.api.auth import ApiKeys
        from chalicelib.api.consumer import ConsumerApi

        return ConsumerApi(ApiKeys(self.config.api_keys), self.customers, self.operations)

    @wired
    def messages_api(self):
        from chalicelib.api.auth import ApiKeys
        from chalicelib.api.messages import MessagesApi

        return MessagesApi(ApiKeys(self.config.api_keys), self.messages)

    @wired
    def event_intake(self):
        from datetime import timedelta

        from chalicelib.service.event_intake import EventIntake

        def is_done(dedupe_key: str, now: datetime) -> bool:
            return self.store.begin(dedupe_key, now=now).done

        def record_unhandled(event) -> None:
            self.store.record_unhandled(
                event, expires_at=self.clock() + timedelta(days=self.config.processing.unhandled_days))

        return EventIntake(lambda: self.events_queue, self.config.identity.default_region, self.clock,
                           is_done=is_done, record_unhandled=record_unhandled, counters=self.counters)

    @wired
    def notifier(self):
        """Proactive messages: the guards of an event rule's `notify`, then `messages`."""
        from chalicelib.adapters.timers.base import Timer
        from chalicelib.domain.business_events import DeferredNotify
        from chalicelib.service.event_actions import TemplateRenderer, notify_policy
        from chalicelib.service.notify import Notifier

        def arm_deferred(deferral) -> None:
            payload = DeferredNotify(event=deferral.event, customer_id=deferral.customer_id, rule=deferral.rule,
                                     due_at=deferral.due_at)
            self.timers.arm([Timer(name=deferral.timer_name, due_at=deferral.due_at,
                                   payload=payload.model_dump_json())])

        factory = self.event_rules_factory
        return Notifier(messages=lambda: self.messages, render=TemplateRenderer(factory.templates),
                        calendars=factory.calendars, policy=notify_policy(self.config), arm_deferred=arm_deferred)

    @wired
    def segment_fanout(self):
        """A broadcast's pages and members onto the events queue."""
        from chalicelib.service.segments import MAX_PAGE_SIZE, SegmentFanout

        # `events.fanout_page_size` allows more than one queue batch of members holds.
        return SegmentFanout(self.store, lambda: self.events_queue,
                             min(self.config.events.fanout_page_size, MAX_PAGE_SIZE))

    @wired
    def event_actions(self):
        from chalicelib.service.event_actions import EventActions, notify_policy

        config = self.config
        return EventActions(notifier=lambda: self.notifier, templates=self.event_rules_factory.templates,
                            cases=config.cases, sla=config.routing.sla, survivorship=config.survivorship,
                            limits=config.customers, notify_policy=notify_policy(config),
                            case_event_destinations=self.case_event_destinations)

    @wired
    def event_processor(self):
        """The events worker's logic (and explain's). A fired case timer goes to
        `case_timer_handler`, which runs its event back through this processor's rules."""
        from chalicelib.service.events import EventProcessor

        return EventProcessor(store=self.store, rules=lambda: self.live_event_rules.current(),
                              actions=lambda: self.event_actions, fanout=lambda: self.segment_fanout,
                              timers=lambda: self.timers, delivery_queue=lambda: self.delivery_queue,
                              config=self.config, clock=self.clock,
                              on_timer=lambda work: self.case_timer_handler.handle(work))

    @wired
    def events_api(self):
        from chalicelib.api.auth import ApiKeys
        from chalicelib.api.events import EventsApi

        # `event_processor` (service/events.EventProcessor) is built on the first explain only.
        return EventsApi(ApiKeys(self.config.api_keys), self.event_intake, lambda: self.event_processor)

    @wired
    def media_endpoint(self):
        from chalicelib.api.media import MediaEndpoint

        return MediaEndpoint(self.blobs, self.link_secrets, self.clock)

    @wired
    def health_endpoint(self):
        from chalicelib.api.system import HealthEndpoint

        return HealthEndpoint(self.store.ping, runtime=self.settings.runtime, stage=self.settings.stage)

    @wired
    def workers(self):
        from chalicelib.adapters.channels.registry import PULL_ENTRIES
        from chalicelib.api.workers import Workers

        return Workers(
            inbound_queue=lambda: self.inbound_queue, delivery_queue=lambda: self.delivery_queue,
            processor=lambda: self.processor, deliverer=lambda: self.deliverer, ingestion=lambda: self.ingestion,
            outbound_queue=lambda: self.outbound_queue, send_worker=lambda: self.send_worker,
            events_queue=lambda: self.events_queue, event_processor=lambda: self.event_processor,
            pull_queue=self.pull_queue, adapters=self.adapter, pull_entries=PULL_ENTRIES, counters=self.counters,
            clock=self.clock, annotate=self.annotate, correlate=set_correlation_id,
        )

    def close(self) -> None:
        for connector in self._connectors.values():
            connector.close()
        for sender in self._senders.values():
            sender.close()
        if "connector_runtime" in self.__dict__:
            self.connector_runtime.http.close()


class _Deferred:
    """A piece built on first attribute access: adapters are built for every webhook, and the
    ingest path must not build the store to hand the web chat adapter its outbox."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build

    def __getattr__(self, name: str) -> Any:
        return getattr(self._build(), name)


_hub: Hub | None = None
_hub_lock = threading.Lock()


def get_hub() -> Hub:
    """The hub this process serves with: the environment's, unless one was installed."""
    global _hub
    with _hub_lock:
        if _hub is None:
            _hub = Hub()
        return _hub


def use_hub(hub: Hub | None) -> None:
    """Install a specific hub (tests, the local runtime); None resets to the environment's."""
    global _hub
    with _hub_lock:
        _hub = hub
