"""`type: twilio_flex` destinations' settings, their `callbacks` section included (the connector:
`connectors/twilio_flex.py`; the callbacks: `callbacks/twilio_flex.py`)."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from chalicelib.adapters.connectors.settings.auth import BasicAuth
from chalicelib.adapters.connectors.settings.callbacks import CallbackSettings
from chalicelib.adapters.connectors.settings.urls import secure_url
from chalicelib.adapters.connectors.settings.vendor import VendorSettings


CONVERSATIONS_URL = "https://conversations.twilio.com"
_SERVICE = re.compile(r"^IS[0-9a-fA-F]{32}$")


class TwilioFlexCallbackSettings(CallbackSettings):
    """`destinations[].callbacks` of a Flex destination. `secrets` are the account's Auth Tokens
    (primary, and the secondary during a rotation): Twilio signs with the Auth Token, never with
    an API key's secret."""

    #: Required: Twilio signs the exact URL it calls, so the hub must know it.
    public_url: str  # type: ignore[assignment]
    #: The Conversations author the hub writes its notes as; its messages are the hub's own.
    hub_author: str = Field(default="hub", min_length=1, max_length=256)
    #: The Flex Conversation Service (`IS…`): needed by `hubctl callbacks setup --create`, and for
    #: the participant look-ups when it is not the account's default Conversation Service.
    chat_service_sid: str | None = None
    #: The Conversations API (tests point it at a fake).
    conversations_url: str = CONVERSATIONS_URL

    @field_validator("public_url")
    @classmethod
    def _exact_url(cls, value: str) -> str:
        from chalicelib.adapters.channels.twilio.settings import normalize_public_url

        # The base class checks the scheme; Twilio signs the URL without `#fragment` or `user:pass@`.
        return normalize_public_url(value)

    @field_validator("chat_service_sid")
    @classmethod
    def _service(cls, value: str | None) -> str | None:
        if value is not None and not _SERVICE.match(value):
            raise ValueError("must be a Conversation Service SID (IS followed by 32 hex digits)")
        return value

    @field_validator("conversations_url")
    @classmethod
    def _api(cls, value: str) -> str:
        return secure_url(value).rstrip("/")


TASKROUTER_URL = "https://taskrouter.twilio.com"
FLEX_URL = "https://flex-api.twilio.com"
#: TaskRouter priorities run 0 to 2^31-1; higher is served first. Default task priority is 0.
MAX_PRIORITY = 2**31 - 1
#: "Can be up to a maximum of 2 weeks (1,209,600 seconds)".
MAX_TASK_TIMEOUT = 1_209_600
InteractionChannel = Literal["sms", "whatsapp", "web", "chat", "email", "messenger", "gbm"]
_WS = re.compile(r"^WS[0-9a-fA-F]{32}$")
_WW = re.compile(r"^WW[0-9a-fA-F]{32}$")


class TwilioFlexSettings(VendorSettings):
    #: `https://taskrouter.twilio.com` (taskrouter mode) or `https://flex-api.twilio.com`
    #: (interaction mode); tests point it at a Prism mock. `auth` is basic: the Account SID (or
    #: an API key SID) and the Auth Token (or the key's secret).
    base_url: str
    mode: Literal["taskrouter", "interaction"] = "taskrouter"
    workspace_sid: str
    #: Optional when the workspace has a single workflow.
    workflow_sid: str | None = None
    #: The task channel's unique name (`default`, `chat`, `sms`, …) or its TC… sid.
    task_channel: str = "default"
    #: Seconds the task may wait for assignment (TaskRouter's default is 24 hours).
    task_timeout: int | None = Field(default=None, ge=1, le=MAX_TASK_TIMEOUT)
    #: Interaction mode: the media channel type; default from the contact's channel ("chat" for
    #: channels Flex has no type for).
    channel_type: InteractionChannel | None = None
    #: Interaction mode, sms/whatsapp: the business's Twilio number; default the number the
    #: customer wrote to.
    proxy_address: str | None = None
    #: Interaction mode, email: the contact center's address and name.
    email_from: str | None = None
    email_from_name: str | None = None
    #: The TaskRouter API for the duplicate check in interaction mode.
    taskrouter_url: str = TASKROUTER_URL
    #: Two-way sync: Conversations and TaskRouter callbacks (`callbacks/twilio_flex.py`).
    callbacks: TwilioFlexCallbackSettings | None = None

    @field_validator("workspace_sid")
    @classmethod
    def _workspace(cls, value: str) -> str:
        if not _WS.match(value):
            raise ValueError("must be a Workspace SID (WS followed by 32 hex digits)")
        return value

    @field_validator("workflow_sid")
    @classmethod
    def _workflow(cls, value: str | None) -> str | None:
        if value is not None and not _WW.match(value):
            raise ValueError("must be a Workflow SID (WW followed by 32 hex digits)")
        return value

    @field_validator("taskrouter_url")
    @classmethod
    def _taskrouter_url(cls, value: str) -> str:
        return secure_url(value).rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> TwilioFlexSettings:
        if not isinstance(self.auth, BasicAuth):
            raise ValueError("auth: Twilio takes basic auth (Account SID or API key SID, and the token or secret)")
        expected = TASKROUTER_URL if self.mode == "taskrouter" else FLEX_URL
        host = urlsplit(self.base_url).hostname or ""
        if host.endswith("twilio.com") and self.base_url != expected:
            raise ValueError(f"base_url: {self.mode} mode calls {expected}")
        for name, value in self.mapping.priority.items():
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_PRIORITY:
                raise ValueError(f"mapping.priority.{name}: TaskRouter priorities are integers 0-{MAX_PRIORITY}")
        if self.mode == "interaction" and self.channel_type == "email" and not self.email_from:
            raise ValueError("email_from is required for email interactions")
        return self
