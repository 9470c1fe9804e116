"""Every destination connector, by `type` in the hub configuration."""

from chalicelib.adapters.connectors.amazon_connect import AmazonConnectConnector
from chalicelib.adapters.connectors.eventbridge import EventBridgeConnector
from chalicelib.adapters.connectors.freshdesk import FreshdeskConnector
from chalicelib.adapters.connectors.genesys import GenesysConnector
from chalicelib.adapters.connectors.hubspot import HubSpotConnector
from chalicelib.adapters.connectors.jira_service_management import JiraServiceManagementConnector
from chalicelib.adapters.connectors.outbox import OutboxConnector
from chalicelib.adapters.connectors.salesforce import SalesforceConnector
from chalicelib.adapters.connectors.twilio_flex import TwilioFlexConnector
from chalicelib.adapters.connectors.webhook import WebhookConnector
from chalicelib.adapters.connectors.zendesk import ZendeskConnector
from chalicelib.adapters.registry import register

CONNECTORS = register(
    WebhookConnector, OutboxConnector, ZendeskConnector, FreshdeskConnector, JiraServiceManagementConnector,
    HubSpotConnector, SalesforceConnector, AmazonConnectConnector, GenesysConnector, TwilioFlexConnector,
    EventBridgeConnector,
)
