"""Every destination connector, by `type` in the hub configuration."""

from chalicelib.adapters.connectors.outbox import OutboxConnector
from chalicelib.adapters.connectors.webhook import WebhookConnector
from chalicelib.adapters.registry import register

CONNECTORS = register(WebhookConnector, OutboxConnector)
