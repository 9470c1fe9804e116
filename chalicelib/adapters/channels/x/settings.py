"""`channels.x`: the section's model, apart from the adapter.

The hub types every configured provider's section at start-up, so this module imports pydantic
and shared settings helpers only: a webhook function serving another provider pays nothing for
this one's parser (`adapter.py` imports the settings from here).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from chalicelib.adapters.media.base import api_base_url
from chalicelib.secrets import Secret

#: X user and event ids are unsigned 64-bit integers, sent as decimal strings.
NUMERIC_ID = re.compile(r"[0-9]{1,20}")


class XSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The app's OAuth 1.0a Consumer Secret (API Key Secret), for `x-twitter-webhooks-signature`.
    #: X holds one at a time: after regenerating it, put the new one first and keep the old one
    #: until retries signed with it are over.
    consumer_secrets: list[Secret] = Field(default_factory=list)
    #: The app's OAuth 2.0 Client Secret, for `x-twitter-webhooks-signature-oauth2`.
    client_secrets: list[Secret] = Field(default_factory=list)
    #: Which secret answers the CRC: `client` (the OAuth 2.0 Client Secret; X's v2 webhook
    #: introduction) or `consumer` (the API Key Secret; X's quickstart examples). X's pages
    #: disagree and a CRC has one answer: by default `client` when client_secrets are set. POSTs
    #: verify with either list, whichever this names.
    crc_answer: Literal["client", "consumer"] | None = None
    #: Numeric ids of the accounts subscribed to this webhook. A DM *from* one of them is our own
    #: send (or one of our accounts writing to another): an echo, never a customer contact.
    user_ids: list[str] = Field(min_length=1)
    #: Optional replay window on each event's `created_timestamp`. X retries for about five minutes
    #: and replay jobs redeliver older events, so it cannot be shorter than that; off by default.
    max_skew_seconds: int | None = Field(default=None, ge=300)

    # --- outbound (sender.py): optional, so a receive-only configuration stays valid ---------
    #: OAuth 2.0 user-context access tokens (scopes `dm.write dm.read tweet.read users.read`) by
    #: the account (one of user_ids) that sends with them: `{"3001969357": ["secretsmanager:x-dm"]}`.
    #: They expire after two hours: something outside the hub refreshes them (docs/channels/x.md).
    #: A list rotates: the new token first; one X refuses (401) is followed by the next.
    dm_access_tokens: dict[str, list[Secret]] = Field(default_factory=dict)
    #: The X API host; `/2/dm_conversations/with/<id>/messages` is appended.
    api_base_url: str = "https://api.x.com"

    @field_validator("dm_access_tokens", mode="before")
    @classmethod
    def _token_lists(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        tokens = {}
        for key, listed in value.items():
            # YAML reads an unquoted id as an integer; one token needs no list.
            account = str(key).strip() if isinstance(key, (str, int)) and not isinstance(key, bool) else ""
            if not NUMERIC_ID.fullmatch(account):
                raise ValueError("keys must be numeric X user ids (the sending account's id, not its @handle)")
            tokens[str(int(account))] = [listed] if isinstance(listed, str) else listed
        return tokens

    @field_validator("api_base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        return api_base_url(value, example="https://api.x.com")

    @field_validator("user_ids", mode="before")
    @classmethod
    def _numeric_ids(cls, values: Any) -> Any:
        if not isinstance(values, list):
            return values
        normalized = []
        for value in values:
            # YAML reads an unquoted id as an integer; both spellings are the same account.
            text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
            if not NUMERIC_ID.fullmatch(text):
                raise ValueError("must be numeric X user ids (the account's id, not its @handle)")
            normalized.append(str(int(text)))
        return normalized

    @model_validator(mode="after")
    def _a_signing_secret(self) -> XSettings:
        if not self.consumer_secrets and not self.client_secrets:
            raise ValueError("configure consumer_secrets (OAuth 1.0a API Key Secret) and/or client_secrets (OAuth 2.0)")
        if self.crc_answer == "client" and not self.client_secrets:
            raise ValueError("crc_answer is client, but no client_secrets are configured")
        if self.crc_answer == "consumer" and not self.consumer_secrets:
            raise ValueError("crc_answer is consumer, but no consumer_secrets are configured")
        for account, tokens in self.dm_access_tokens.items():
            # A reply from an account whose webhook we do not hear would lose the customer's answer.
            if account not in self.user_ids:
                raise ValueError(f"dm_access_tokens: account {account[:24]!r} is not one of user_ids")
            if not tokens:
                raise ValueError(f"dm_access_tokens: account {account} has an empty token list")
        return self

    @property
    def crc_signing_secrets(self) -> list[SecretStr]:
        """The list whose first entry answers the CRC (`crc_answer`; by default the OAuth 2.0
        client secret when configured)."""
        if self.crc_answer == "consumer" or (self.crc_answer is None and not self.client_secrets):
            return self.consumer_secrets
        return self.client_secrets
