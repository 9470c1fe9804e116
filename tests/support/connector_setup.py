"""How a vendor connector joins the shared connector contract suite.

Each vendor's test module under `tests/contract/connectors/` defines `SETUP = ConnectorSetup(...)`;
`tests/contract/test_connector_contract.py` runs every setup through the same tests: settings
validation, error classification against a scripted HTTP server, and the threading contract.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ConnectorSetup:
    #: The connector's registry key (`type:` in the configuration).
    key: str
    #: Raw destination settings for a connector whose API lives at `base_url` (HTTP vendors).
    settings: Callable[[str], dict[str, Any]]
    #: Environment the settings' secret references (`env:NAME`) resolve from.
    environ: dict[str, str] = field(default_factory=dict)
    #: A JSON body the vendor answers a successful create with (for the scripted-server tests),
    #: e.g. `{"ticket": {"id": 35436}}`; sent for every 2xx answer.
    created_body: dict[str, Any] = field(default_factory=dict)
    #: What `DeliveryResult.case_ref` is for `created_body` (threading connectors).
    created_ref: str | None = None
