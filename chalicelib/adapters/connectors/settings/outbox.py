"""`type: outbox` destinations' settings (the connector: `connectors/outbox.py`)."""

from pydantic import BaseModel, ConfigDict


class OutboxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Relative paths are inside the hub's data directory.
    path: str = "outbox.jsonl"
    include_raw: bool = False
    #: Also send `case.opened`, `case.closed` and `case.reopened` (docs/two-way.md, "Case events"),
    #: and the case timer events (`case.sla_breached`, `case.follow_up_due`, `case.auto_closed`).
    case_events: bool = True
