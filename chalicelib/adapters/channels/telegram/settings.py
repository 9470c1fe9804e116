"""`channels.telegram`: the section's model, apart from the adapter.

The hub types every configured provider's section at start-up, so this module imports pydantic
and shared settings helpers only: a webhook function serving another provider pays nothing for
this one's parser (`adapter.py` imports the settings from here).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.adapters.media.base import api_base_url
from chalicelib.secrets import Secret

_USERNAME = re.compile(r"@?([A-Za-z0-9_]{4,64})")


class TelegramSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The `secret_token`(s) given to setWebhook (1-256 of A-Z a-z 0-9 _ -); the new one first while rotating.
    secret_tokens: list[Secret] = Field(min_length=1)
    #: The bot's user id: the number before the colon in its token (`123456789:AA…`). It names our
    #: side of every conversation and scopes `update_id`, which is only unique per bot.
    bot_id: int = Field(gt=0)
    #: The bot's @username, to recognise its own messages where Telegram echoes them.
    bot_username: str | None = None

    # --- outbound (sender.py): optional, so a receive-only configuration stays valid ---------
    #: The bot's token from @BotFather (`123456789:AA…`, the number being bot_id). A list rotates:
    #: after /revoke put the new token first; one Telegram refuses (401) is followed by the next.
    bot_tokens: list[Secret] = Field(default_factory=list)
    #: The Bot API host; `/bot<token>/<method>` is appended (a local Bot API server, a test double).
    api_base_url: str = "https://api.telegram.org"
    #: Show link previews under replies that contain a URL.
    link_previews: bool = True

    @field_validator("bot_tokens", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("api_base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        return api_base_url(value, example="https://api.telegram.org")

    @field_validator("bot_username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = _USERNAME.fullmatch(value.strip())
        if match is None:
            raise ValueError("must be a Telegram username: 4-64 letters, digits or _ (the leading @ is optional)")
        return match[1].lower()
