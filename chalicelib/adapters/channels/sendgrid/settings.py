"""`channels.sendgrid`: the section's model, apart from the adapter.

The hub types every configured provider's section at start-up, so this module imports pydantic
and shared settings helpers only: a webhook function serving another provider pays nothing for
this one's parser (`adapter.py` imports the settings from here).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.adapters.channels.email.outbound import OutboundEmailSettings
from chalicelib.adapters.channels.mailgun.settings import own_address_list
from chalicelib.adapters.channels.sendgrid.signature import load_public_key
from chalicelib.adapters.media.base import api_base_url
from chalicelib.secrets import Secret


class BasicAuthCredential(BaseModel):
    """`https://<username>:<password>@hub.example.com/webhooks/sendgrid` in the Parse setting."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=128, pattern=r"^[^:\s]+$")
    password: Secret


class SendgridSettings(OutboundEmailSettings):
    model_config = ConfigDict(extra="forbid")

    #: Credentials SendGrid sends as HTTP basic auth (put them in the URL at SendGrid); any one
    #: of them is accepted, so a new pair can be added before the URL at SendGrid changes.
    basic_auth: list[BasicAuthCredential] = Field(default_factory=list)
    #: Secret path segments: the URL at SendGrid is `/webhooks/sendgrid/<token>`.
    path_tokens: list[Secret] = Field(default_factory=list)
    #: Public keys (base64 DER or PEM, P-256) of the security policy attached to the Parse
    #: setting; when set, every request must carry a valid ECDSA signature from one of them.
    signature_public_keys: list[str] = Field(default_factory=list)
    #: How old a signed timestamp may be. SendGrid retries for up to 3 days and it is not
    #: documented whether a retry is signed afresh, so the default accepts its whole retry
    #: horizon; a replay can only repeat a message the Message-ID dedupe already holds.
    signature_max_age_seconds: int = Field(default=3 * 24 * 3600 + 3600, ge=60, le=7 * 24 * 3600)
    #: Our own mailboxes or `@domains`: mail from them is an echo or a loop, never a case.
    own_addresses: list[str] = Field(default_factory=list)
    #: Sending: the API host (`https://api.eu.sendgrid.com` for EU regional subusers).
    api_base_url: str = "https://api.sendgrid.com"
    #: Sending: API keys (Mail Send permission), the current one first; while rotating, a key
    #: SendGrid refuses (401: nothing was sent) is followed by the next.
    api_keys: list[Secret] = Field(default_factory=list)
    #: Statuses: the signed Event Webhook's verification keys (base64 DER or PEM, P-256), for
    #: `/webhooks/sendgrid/events`; unsigned events are refused, so without a key none is taken.
    event_webhook_public_keys: list[str] = Field(default_factory=list)
    #: How old a signed event timestamp may be: SendGrid retries failed POSTs for 24 hours.
    event_max_age_seconds: int = Field(default=25 * 3600, ge=60, le=3 * 24 * 3600)

    @field_validator("api_base_url")
    @classmethod
    def _api_base(cls, value: str) -> str:
        return api_base_url(value, example="https://api.eu.sendgrid.com")

    @field_validator("own_addresses")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        return own_address_list(values)

    @field_validator("signature_public_keys", "event_webhook_public_keys")
    @classmethod
    def _keys(cls, values: list[str]) -> list[str]:
        for value in values:
            load_public_key(value)
        return values

    @model_validator(mode="after")
    def _secured(self) -> SendgridSettings:
        # Inbound Parse posts unauthenticated by default; the URL's credentials are the floor. A
        # section that only sends needs none: Parse posts are then refused (`receives_mail`).
        if not self.basic_auth and not self.path_tokens and not self.api_keys:
            raise ValueError("configure basic_auth or path_tokens (or both): Inbound Parse is otherwise unauthenticated")
        return self

    @property
    def receives_mail(self) -> bool:
        return bool(self.basic_auth or self.path_tokens)
