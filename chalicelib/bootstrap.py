"""The composition root: builds the store, queues, adapters, connectors and services, lazily.

Nothing is built at import, and each piece is built on first use and then reused for warm
invocations, so the ingest Lambda never pays for the worker's dependencies and vice versa.
Tests build a `Hub` from their own `Settings` (or inject fakes) and install it with `use_hub`.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from pathlib import Path

from chalicelib.adapters.blobs.base import BlobStore, LazyBlobStore
from chalicelib.adapters.channels.base import ChannelAdapter
from chalicelib.adapters.connectors.base import Connector, ConnectorRuntime
from chalicelib.adapters.queue.base import Queue
from chalicelib.adapters.store.base import Store
from chalicelib.domain.models import utcnow
from chalicelib.errors import ConfigError
from chalicelib.hubconfig import HubConfig, load_config
from chalicelib.observability import Counters, configure_logging, get_tracer
from chalicelib.secrets import SecretResolver
from chalicelib.settings import Settings

#: Local queues: visibility must exceed the worker's longest run (deliveries retry inline).
LOCAL_INBOUND_VISIBILITY = 60
LOCAL_DELIVERY_VISIBILITY = 120
LOCAL_INBOUND_MAX_RECEIVES = 5


class Hub:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        config: HubConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        aws_client: Callable[[str], object] | None = None,
    ) -> None:
        self.settings = settings or Settings.from_environ()
        self.clock = clock
        self._config = config
        self._aws_client_factory = aws_client
        self._lock = threading.RLock()
        self._adapters: dict[str, ChannelAdapter] = {}
        self._aws_clients: dict[str, object] = {}
        self._connectors: dict[str, Connector] = {}
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

    @cached_property
    def config(self) -> HubConfig:
        if self._config is not None:
            return self._config
        return load_config(self.settings.config_path, allow_inline_secrets=not self.settings.on_aws)

    @cached_property
    def secrets(self) -> SecretResolver:
        return SecretResolver(self.settings.environ, allow_inline=not self.settings.on_aws)

    @cached_property
    def counters(self) -> Counters:
        return Counters(emit_emf=self.settings.on_aws)

    def api_key_name(self, presented: str) -> str | None:
        """The name of the configured API key matching `presented`, compared in constant time."""
        digest = hashlib.sha256(presented.encode()).hexdigest()
        name = None
        for key in self.config.api_keys:
            if hmac.compare_digest(digest, key.sha256):
                name = key.name
        return name

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

    @cached_property
    def data_dir(self) -> Path:
        path = Path(self.settings.data_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @cached_property
    def blobs(self) -> BlobStore:
        return LazyBlobStore(self._build_blobs)

    def _build_blobs(self) -> BlobStore:
        from chalicelib.adapters.blobs.links import HubLinks

        # Media links are hub links (GET /v1/media/...) wherever the hub knows its public URL,
        # signed with a secret read (or, embedded, generated) on the first link only.
        def secrets():
            from chalicelib.service.media import link_secrets

            return link_secrets(self.media_settings, self.secrets, self.data_dir, generate=not self.settings.on_aws)

        if self.settings.on_aws:
            from chalicelib.adapters.blobs.s3 import S3BlobStore

            store = S3BlobStore(self.aws_client("s3"), self._required("bucket", "HUB_BUCKET"))
            public = self.media_settings.public_url
            if public is None:
                # Links are then S3 presigned URLs, which end with the signing role's session.
                return store
            from chalicelib.adapters.blobs.links import HubLinkedBlobStore

            return HubLinkedBlobStore(store, HubLinks(public, secrets))
        from chalicelib.adapters.blobs.local import LocalBlobStore

        public = self.media_settings.public_url or f"http://{self.settings.host}:{self.settings.port}"
        return LocalBlobStore(str(self.data_dir / "blobs"), link_base_url=public, link_secrets=secrets)

    @cached_property
    def store(self) -> Store:
        if self.settings.on_aws:
            from chalicelib.adapters.store.dynamodb import DynamoDbStore

            return DynamoDbStore(self._required("table_name", "HUB_TABLE"), self.aws_client("dynamodb"))
        from chalicelib.adapters.store.sqlite import SqliteStore

        return SqliteStore(str(self.data_dir / "hub.db"))

    @cached_property
    def inbound_queue(self) -> Queue:
        return self._queue("inbound", "inbound_queue_url", "HUB_INBOUND_QUEUE_URL",
                           LOCAL_INBOUND_VISIBILITY, self.config.processing.max_receives)

    @cached_property
    def delivery_queue(self) -> Queue:
        return self._queue("delivery", "delivery_queue_url", "HUB_DELIVERY_QUEUE_URL",
                           LOCAL_DELIVERY_VISIBILITY, self.config.delivery.max_receives)

    @cached_property
    def delivery_dead_letters(self) -> Queue:
        return self._queue("delivery-dlq", "delivery_dlq_url", "HUB_DELIVERY_DLQ_URL", LOCAL_DELIVERY_VISIBILITY, 0)

    @cached_property
    def ses_inbound_queue(self) -> Queue:
        """Where S3 announces mail SES stored (AWS only): the worker deletes what it finished."""
        return self._queue("ses-inbound", "ses_inbound_queue_url", "HUB_SES_INBOUND_QUEUE_URL",
                           LOCAL_INBOUND_VISIBILITY, LOCAL_INBOUND_MAX_RECEIVES)

    def _queue(self, name: str, attribute: str, variable: str, visibility: int, max_receives: int) -> Queue:
        if self.settings.on_aws:
            from chalicelib.adapters.queue.sqs import SqsQueue

            return SqsQueue(self.aws_client("sqs"), self._required(attribute, variable), blobs=self.blobs)
        from chalicelib.adapters.queue.local import LocalQueue

        return LocalQueue(
            str(self.data_dir / "queue.db"),
            name,
            visibility_timeout=visibility,
            max_receives=max_receives or 1_000_000,
            dead_letter=f"{name}-dlq" if max_receives else None,
            blobs=self.blobs,
        )

    def _required(self, attribute: str, variable: str) -> str:
        value = getattr(self.settings, attribute)
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
                self._adapters[key] = CHANNELS[key](settings, self.secrets)
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

    def customer_event_destinations(self) -> list[str]:
        """Destinations whose connectors take customer events (merged, unmerged, erased)."""
        return [
            d.name for d in self.config.destinations
            if (connector := self.connector(d.name)) is not None and connector.supports_customer_events
        ]

    @cached_property
    def connector_runtime(self) -> ConnectorRuntime:
        return ConnectorRuntime(data_dir=str(self.data_dir), aws_client=self.aws_client)

    @cached_property
    def identity_rules(self):
        from chalicelib.domain.identity_rules import IdentityRules

        return IdentityRules(self.config.identity)

    def default_region(self, provider: str, account: str) -> str | None:
        return self.config.identity.region_for(provider, account)

    # --- routing and enrichment ------------------------------------------------------------------

    @cached_property
    def router_factory(self):
        """Compiles the inline rules (and validates the routing section) on first use."""
        from chalicelib.routing.setup import RouterFactory

        return RouterFactory(self.config)

    @cached_property
    def rules_source(self):
        """Where the rules in force come from: the configuration file, a rules file, S3, SSM or AppConfig."""
        from chalicelib.routing.sources import rules_source

        return rules_source(self.router_factory.extras.source, self.aws_client,
                            base_dir=Path(self.settings.config_path).parent)

    @cached_property
    def live_router(self):
        """The router in force, following the rules' source when it is not the configuration file."""
        from chalicelib.routing.setup import LiveRouter

        return LiveRouter(self.router_factory, self.rules_source,
                          describe=getattr(self.rules_source, "describe", "routing.rules"),
                          on_rejected=lambda reason: self.counters.incr("RoutingRulesRejected"))

    @cached_property
    def media_settings(self):
        from chalicelib.service.media import media_settings

        return media_settings(self.config.media, deployed=self.settings.on_aws)

    @cached_property
    def media(self):
        """Downloads attachments whose links expire or need credentials into the blob store."""
        from chalicelib.adapters.media.http import MediaHttp
        from chalicelib.service.media import MediaLocalizer

        return MediaLocalizer(self.media_settings, self.blobs, self.secrets, http=MediaHttp(self.connector_runtime.http),
                              clock=self.clock)

    @cached_property
    def enricher(self):
        from chalicelib.enrichment.settings import build_enricher

        return build_enricher(self.config.enrichment, self.aws_client)

    # --- services --------------------------------------------------------------------------------

    @cached_property
    def processor(self):
        from chalicelib.service.identity import IdentifierCache
        from chalicelib.service.process import Processor

        return Processor(
            store=self.store, delivery_queue=self.delivery_queue, config=self.config,
            cache=IdentifierCache(), default_region=self.default_region, clock=self.clock, blobs=self.blobs,
            rules=self.identity_rules, event_destinations=self.customer_event_destinations,
            router=lambda: self.live_router.current(), enricher=lambda: self.enricher, media=lambda: self.media,
        )

    @cached_property
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

    def close(self) -> None:
        for connector in self._connectors.values():
            connector.close()
        self.connector_runtime.http.close()


_hub: Hub | None = None
_hub_lock = threading.Lock()


def get_hub() -> Hub:
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
