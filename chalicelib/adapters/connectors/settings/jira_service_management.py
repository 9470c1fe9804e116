"""`type: jira_service_management` destinations' settings, their `callbacks` section included (the connector:
`connectors/jira_service_management.py`; the callbacks: `callbacks/jira_service_management.py`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.adapters.connectors.settings.callbacks import CallbackSettings
from chalicelib.adapters.connectors.settings.vendor import VendorSettings


class JiraCallbackSettings(CallbackSettings):
    """`destinations[].callbacks` of a Jira Service Management destination."""

    #: Status names (as Jira shows them, any case) that close the case. Empty: a status in
    #: Jira's *Done* category closes it, any other status is open.
    closed_statuses: list[str] = Field(default_factory=list)
    #: The JQL filter of the webhook `hubctl callbacks setup --create` registers. None: the
    #: service desk's project (`project = <key>`), looked up when it is created.
    jql_filter: str | None = None
    #: The webhook's name in Jira's list.
    webhook_name: str = Field(default="omnichannel hub", min_length=1, max_length=255)

    @field_validator("closed_statuses")
    @classmethod
    def _statuses(cls, value: list[str]) -> list[str]:
        return [name.strip() for name in value if name.strip()]


class RequestFields(BaseModel):
    """Jira field ids the request's text goes to; None leaves a field out (a request type may
    hide it)."""

    model_config = ConfigDict(extra="forbid")

    summary: str | None = "summary"
    description: str | None = "description"


class JiraServiceManagementSettings(VendorSettings):
    """`base_url` is the site (`https://acme.atlassian.net`); `auth` is basic with the Atlassian
    account email and an API token."""

    service_desk_id: str
    request_type_id: str
    fields: RequestFields = Field(default_factory=RequestFields)
    #: Jira field that takes the mapped priority as `{"name": …}` (usually `priority`), if the
    #: request type shows one; left out otherwise, since JSM refuses fields a request type lacks.
    priority_field: str | None = None
    #: Jira field that takes the routing tags and `mapping.tags` as labels (usually `labels`).
    labels_field: str | None = None
    #: Raise the request on behalf of the customer (found or created as a JSM customer by email)
    #: instead of the API user. Needs a Jira administrator for creating customers.
    raise_on_behalf: bool = False
    #: Follow-up comments are internal notes by default: a public comment by the API user is an
    #: agent reply that JSM emails to the customer.
    public_comments: bool = False
    #: End the summary with the hub case id and look it up before raising a request, so a first
    #: delivery retried after a crash finds the request it already raised.
    case_id_in_summary: bool = True
    #: Append the hub's outbound messages (`message.sent`) to the case's request as public
    #: comments, written as the API user.
    outbound_messages: bool = True
    #: Two-way sync through a Jira admin webhook (`callbacks/jira_service_management.py`).
    callbacks: JiraCallbackSettings | None = None

    @field_validator("service_desk_id", "request_type_id")
    @classmethod
    def _numeric(cls, value: str) -> str:
        if not value.isdigit():
            raise ValueError("must be the numeric id (Project settings → Request types shows it in the URL)")
        return value

    @model_validator(mode="after")
    def _marker_needs_summary(self) -> JiraServiceManagementSettings:
        if self.case_id_in_summary and not self.fields.summary:
            raise ValueError("case_id_in_summary needs fields.summary")
        return self
