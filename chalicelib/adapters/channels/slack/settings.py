"""`channels.slack`: the section's model, apart from the adapter.

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

#: A workspace (`T…`) or Enterprise Grid organization (`E…`) id.
_TEAM_ID = re.compile(r"[TE][A-Z0-9]{2,31}")


class SlackSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: App → Basic Information → App Credentials → Signing Secret; the new one first while rotating.
    signing_secrets: list[Secret] = Field(min_length=1)
    #: Our bot user(s) (`U…`). The installing bot named in `authorizations[]` is recognised
    #: without this list; add ids here for other installs whose events reach this URL.
    bot_user_ids: list[str] = Field(default_factory=list)
    #: Our app id (`A…`): a message whose `app_id` / `bot_profile.app_id` is ours is an echo.
    app_id: str | None = None
    #: Workspaces (`T…`) whose events are accepted; empty accepts every workspace that installed
    #: the app. These are also "our" workspaces: their members in a shared channel are colleagues.
    team_ids: list[str] = Field(default_factory=list)
    #: Replay window for `X-Slack-Request-Timestamp`; Slack's own SDKs use 300 s.
    max_skew_seconds: int = Field(default=300, ge=1, le=3600)

    # --- outbound (sender.py): optional, so a receive-only configuration stays valid ---------
    #: Bot tokens (`xoxb-…`, scope `chat:write`) by the workspace that installed the app:
    #: `{"T0HUB0001": ["env:SLACK_BOT_TOKEN"]}`. The keys are the accounts the hub answers from
    #: (an inbound contact's `account` is its `team_id`). A list rotates: the new token first; one
    #: Slack refuses (`invalid_auth`, `token_revoked`…) is followed by the next.
    bot_tokens: dict[str, list[Secret]] = Field(default_factory=dict)
    #: The Web API host; `/api/chat.postMessage` is appended (a proxy or a test double may replace it).
    api_base_url: str = "https://slack.com"
    #: Also show a thread reply in the channel (`reply_broadcast`); off: replies stay in the thread.
    reply_broadcast: bool = False

    @field_validator("bot_tokens", mode="before")
    @classmethod
    def _token_lists(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        for team in value:
            if not isinstance(team, str) or not _TEAM_ID.fullmatch(team):
                raise ValueError(f"keys must be Slack team ids (T… or E…), not {str(team)[:40]!r}")
        # One token needs no list.
        return {team: [tokens] if isinstance(tokens, str) else tokens for team, tokens in value.items()}

    @field_validator("bot_tokens")
    @classmethod
    def _not_empty(cls, value: dict[str, list]) -> dict[str, list]:
        if empty := [team for team, tokens in value.items() if not tokens]:
            raise ValueError(f"workspace {empty[0]} has an empty token list")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        return api_base_url(value, example="https://slack.com")
