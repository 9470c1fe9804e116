"""`channels.mailgun`: the section's model, apart from the adapter.

The hub types every configured provider's section at start-up, so this module imports pydantic
and shared settings helpers only: a webhook function serving another provider pays nothing for
this one's parser (`adapter.py` imports the settings from here).
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, field_validator

from chalicelib.adapters.channels.email.outbound import OutboundEmailSettings
from chalicelib.adapters.media.base import api_base_url
from chalicelib.secrets import Secret

#: Mailgun retries for 8 hours (https://documentation.mailgun.com/docs/mailgun/user-manual/receive-forward-store/receive-http),
#: plus an hour for clock skew and the last attempt's own delivery.
MAILGUN_RETRY_HORIZON_SECONDS = 9 * 3600


class MailgunSettings(OutboundEmailSettings):
    model_config = ConfigDict(extra="forbid")

    #: The HTTP webhook signing key (Sending → Webhooks), not the API key; list the new one
    #: beside the old while rotating.
    webhook_signing_keys: list[Secret] = Field(min_length=1)
    #: Our own mailboxes (`support@mg.acme.example`) or whole domains (`@acme.example`): mail
    #: from them is an echo or a loop and never opens a case.
    own_addresses: list[str] = Field(default_factory=list)
    #: How far `timestamp` may be from our clock. Mailgun retries resend the first attempt's
    #: timestamp, token and signature for 8 hours (10 min … 4 h apart): a shorter window would
    #: refuse every retry after a 5xx and lose the mail. Token reuse and Message-ID dedupe keep
    #: a replay inside the window from doing anything twice.
    max_age_seconds: int = Field(default=MAILGUN_RETRY_HORIZON_SECONDS, ge=30, le=86_400)
    #: Sending: the API host, `https://api.eu.mailgun.net` for a domain in the EU region.
    api_base_url: str = "https://api.mailgun.net"
    #: Sending: API keys (Basic auth `api:<key>`), the current one first; while rotating, a key
    #: Mailgun refuses (401: nothing was sent) is followed by the next.
    api_keys: list[Secret] = Field(default_factory=list)
    #: Sending: the Mailgun domain messages go out through (`mg.acme.example`). Default: the domain
    #: of the sending mailbox.
    domain: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{3,253}$")

    @field_validator("own_addresses")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        return own_address_list(values)

    @field_validator("api_base_url")
    @classmethod
    def _api_base(cls, value: str) -> str:
        return api_base_url(value, example="https://api.eu.mailgun.net")


def own_address_list(values: list[str]) -> list[str]:
    cleaned = []
    for value in values:
        value = value.strip().lower()
        if "@" not in value or any(c.isspace() for c in value) or value.count("@") > 1:
            raise ValueError(f"{value!r} is neither an address (support@example.com) nor a domain (@example.com)")
        cleaned.append(value)
    return cleaned
