"""Every destination connector, by `type` in the hub configuration, imported on first use: a
configuration loads the connectors it names (and their callback settings), nothing else."""

from chalicelib.adapters.lazy import LazyRegistry

_PACKAGE = "chalicelib.adapters.connectors"

CONNECTORS = LazyRegistry("connector", {
    "webhook": f"{_PACKAGE}.webhook:WebhookConnector",
    "outbox": f"{_PACKAGE}.outbox:OutboxConnector",
    "zendesk": f"{_PACKAGE}.zendesk:ZendeskConnector",
    "freshdesk": f"{_PACKAGE}.freshdesk:FreshdeskConnector",
    "jira_service_management": f"{_PACKAGE}.jira_service_management:JiraServiceManagementConnector",
    "hubspot": f"{_PACKAGE}.hubspot:HubSpotConnector",
    "salesforce": f"{_PACKAGE}.salesforce:SalesforceConnector",
    "amazon_connect": f"{_PACKAGE}.amazon_connect:AmazonConnectConnector",
    "genesys": f"{_PACKAGE}.genesys:GenesysConnector",
    "twilio_flex": f"{_PACKAGE}.twilio_flex:TwilioFlexConnector",
    "eventbridge": f"{_PACKAGE}.eventbridge:EventBridgeConnector",
})

#: Each connector's `Settings` (its `callbacks` section included), for typing `destinations` when
#: the configuration loads: `connectors/settings/` imports no delivery machinery, HTTP client or
#: callback side, so a function that never delivers (the webhook function) pays nothing for the
#: destinations. A test holds each entry equal to its connector's `Settings`.
CONNECTOR_SETTINGS = LazyRegistry("connector settings", {
    "webhook": f"{_PACKAGE}.settings.webhook:WebhookSettings",
    "outbox": f"{_PACKAGE}.settings.outbox:OutboxSettings",
    "zendesk": f"{_PACKAGE}.settings.zendesk:ZendeskSettings",
    "freshdesk": f"{_PACKAGE}.settings.freshdesk:FreshdeskSettings",
    "jira_service_management": f"{_PACKAGE}.settings.jira_service_management:JiraServiceManagementSettings",
    "hubspot": f"{_PACKAGE}.settings.hubspot:HubSpotSettings",
    "salesforce": f"{_PACKAGE}.settings.salesforce:SalesforceSettings",
    "amazon_connect": f"{_PACKAGE}.settings.amazon_connect:AmazonConnectSettings",
    "genesys": f"{_PACKAGE}.settings.genesys:GenesysSettings",
    "twilio_flex": f"{_PACKAGE}.settings.twilio_flex:TwilioFlexSettings",
    "eventbridge": f"{_PACKAGE}.settings.eventbridge:EventBridgeSettings",
}, keyed=False)
