"""`auth:` of a vendor destination: API tokens, basic auth, bearer tokens, OAuth2 client
credentials (how they are used: `connectors/auth.py`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.secrets import Secret

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApiTokenAuth(_Strict):
    """A token in a header: `{type: api_token, header: X-Api-Key, token: env:VENDOR_TOKEN}`;
    `prefix` is written before it (`Token token=`)."""

    type: Literal["api_token"] = "api_token"
    header: str = "Authorization"
    prefix: str = ""
    token: Secret


class BearerAuth(_Strict):
    type: Literal["bearer"] = "bearer"
    token: Secret


class BasicAuth(_Strict):
    """HTTP basic: Zendesk's `user@example.com/token` and the API token, Jira's email and API
    token, Freshdesk's API key and `X`."""

    type: Literal["basic"] = "basic"
    username: str
    password: Secret


class OAuth2ClientCredentials(_Strict):
    """OAuth2 client credentials (RFC 6749 §4.4): Salesforce, Genesys Cloud, HubSpot apps."""

    type: Literal["oauth2_client_credentials"] = "oauth2_client_credentials"
    token_url: str
    client_id: str
    client_secret: Secret
    scope: str | None = None
    #: `body` (client id and secret in the form, Salesforce) or `basic` (Authorization header,
    #: Genesys Cloud).
    client_auth: Literal["body", "basic"] = "body"


AuthSettings = ApiTokenAuth | BearerAuth | BasicAuth | OAuth2ClientCredentials
AUTH_FIELD = Field(discriminator="type")
