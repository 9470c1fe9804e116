"""`channels.twilio`: what the configuration types, apart from the adapter.

The hub types every configured provider's section at start-up, so this module imports pydantic
and the shared settings helpers only: the webhook function of another provider pays nothing for
Twilio's parser (`adapter.py` imports the settings from here).
"""

from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, field_validator

from chalicelib.domain.defaults import empty_list
from chalicelib.adapters.channels.twilio.outbound_settings import TwilioOutboundSettings
from chalicelib.secrets import Secret

_DEFAULT_PORTS = {"https": "443", "http": "80"}


class TwilioSettings(TwilioOutboundSettings):
    """`channels.twilio`: the webhook fields below, and the sender's (`TwilioOutboundSettings`)."""

    model_config = ConfigDict(extra="forbid")

    #: Primary first; add the secondary before promoting it in the Console so rotation never fails.
    auth_tokens: list[Secret] = Field(min_length=1)
    #: The exact URL configured at Twilio for `/webhooks/twilio`; a hook is appended as a path segment.
    public_url: str
    #: Public-beta SharedKey secrets, used only when a request names an algorithm in
    #: `X-Twilio-Webhooks-Signature-Settings`. The name ends in `secrets` so deployed
    #: configurations must reference them (`hubconfig._is_secret_field`).
    shared_key_secrets: list[Secret] = Field(default_factory=empty_list)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        return normalize_public_url(value)


def hook_url(public_url: str, hook: str | None) -> str:
    """`public_url` with `hook` as a path segment before any query string: the URL Twilio calls
    (and signs) for `/webhooks/twilio/<hook>`. The sender's `StatusCallback` is built with it, so
    status callbacks verify against exactly the URL they were sent to."""
    if not hook:
        return public_url
    base, sep, query = public_url.partition("?")
    return f"{base.rstrip('/')}/{hook}{sep}{query}"


def normalize_public_url(value: str) -> str:
    """Drop `#fragment` and `user:pass@`: Twilio signs the URL without either (PROVIDERS §1.3)."""
    url = value.strip().split("#", 1)[0]
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _DEFAULT_PORTS:
        raise ValueError("must be an absolute http(s) URL, exactly as configured at Twilio")
    end = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0], default=len(rest))
    authority = rest[:end].rpartition("@")[2]
    if not authority:
        raise ValueError("must include a host name")
    url = f"{scheme}://{authority}{rest[end:]}"
    try:
        urlsplit(url).port  # noqa: B018 - the property raises ValueError for a port outside 0-65535
    except ValueError:
        raise ValueError("has an invalid port") from None
    return url
