"""`type: genesys` destinations' settings, their `callbacks` section included (the connector:
`connectors/genesys.py`; the callbacks: `callbacks/genesys.py`)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from chalicelib.adapters.connectors.settings.vendor import VendorSettings


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class GenesysSettings(VendorSettings):
    """`base_url` is the region's API host (`https://api.mypurecloud.ie`); `auth` is
    `oauth2_client_credentials` with `token_url: https://login.mypurecloud.ie/oauth/token` and
    `client_auth: basic`."""

    #: `open_messaging`: each contact is an inbound message of an Open Messaging integration, and
    #: Genesys threads the customer's messages into one conversation. `workitem`: each case is a
    #: workitem (task management) that later contacts update.
    mode: Literal["open_messaging", "workitem"]
    #: The Open Messaging integration's id (open_messaging mode).
    integration_id: str | None = None
    #: The worktype of created workitems (workitem mode).
    type_id: str | None = None
    #: Queue for workitems whose routing queue is not in `queues`.
    queue_id: str | None = None
    #: Hub routing queue → Genesys queue id.
    queues: dict[str, str] = Field(default_factory=dict)
    #: Hub skill → Genesys routing skill id; the contact's skills that are mapped are sent.
    skills: dict[str, str] = Field(default_factory=dict)
    #: Detected language code (`de`) → Genesys routing language id.
    languages: dict[str, str] = Field(default_factory=dict)
    #: Workbin for new workitems (else the worktype's default workbin).
    workbin_id: str | None = None

    @field_validator("integration_id", "queue_id")
    @classmethod
    def _uuid(cls, value: str | None) -> str | None:
        if value is not None and not _UUID.match(value):
            raise ValueError("must be a Genesys Cloud id (a UUID)")
        return value

    @field_validator("queues", "skills", "languages")
    @classmethod
    def _uuids(cls, value: dict[str, str]) -> dict[str, str]:
        for name, target in value.items():
            if not _UUID.match(target):
                raise ValueError(f"{name}: {target!r} is not a Genesys Cloud id (a UUID)")
        return value

    @model_validator(mode="after")
    def _mode_needs(self) -> GenesysSettings:
        if self.mode == "open_messaging" and self.integration_id is None:
            raise ValueError("integration_id is required in open_messaging mode")
        if self.mode == "workitem" and not self.type_id:
            raise ValueError("type_id is required in workitem mode")
        if self.mode == "workitem" and self.callbacks is not None:
            # Workitems reach no customer: only an Open Messaging integration's webhook answers.
            raise ValueError("callbacks: two-way sync needs mode open_messaging (workitems carry no replies)")
        for name, value in self.mapping.priority.items():
            if not isinstance(value, int):
                raise ValueError(f"mapping.priority.{name}: workitem priorities are integers")
        return self
