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
