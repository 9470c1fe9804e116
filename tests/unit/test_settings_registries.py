"""The configuration is typed through settings registries that name each provider's and
connector's settings model without importing its adapter (issue 14, cold start): they must name
the very classes the adapters and connectors declare, and a settings module must stay light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.adapters.channels.registry import CHANNEL_SETTINGS, CHANNELS
from chalicelib.adapters.connectors.registry import CONNECTOR_SETTINGS, CONNECTORS

ROOT = Path(__file__).resolve().parents[2]


def test_every_channel_provider_has_its_adapters_settings():
    assert sorted(CHANNEL_SETTINGS) == sorted(CHANNELS)
    assert {key: CHANNEL_SETTINGS[key] for key in CHANNELS} == {key: CHANNELS[key].Settings for key in CHANNELS}


def test_every_connector_has_its_connectors_settings():
    assert sorted(CONNECTOR_SETTINGS) == sorted(CONNECTORS)
    assert {key: CONNECTOR_SETTINGS[key] for key in CONNECTORS} == {key: CONNECTORS[key].Settings for key in CONNECTORS}


SETTINGS_MODULES = sorted(
    {path.partition(":")[0] for path in (*CHANNEL_SETTINGS._paths.values(), *CONNECTOR_SETTINGS._paths.values())
     if ".settings" in path.partition(":")[0]}
    | {"chalicelib.routing.specs", "chalicelib.routing.lexicon_settings", "chalicelib.enrichment.settings",
       "chalicelib.service.consent_settings", "chalicelib.service.media_settings"}
)
#: What a settings module must not bring along (besides any adapter, sender or callback side): the
#: connectors' delivery machinery and the engines.
HEAVY = ("connectors.base", "connectors.auth", "connectors.vendor", "connectors.http", "routing.rules",
         "routing.conditions", "routing.lexicon", "service.consent", "service.media", "enrichment.comprehend", "enrichment.language")


@pytest.mark.parametrize("module", SETTINGS_MODULES)
def test_a_settings_module_imports_no_adapter_connector_or_engine(module):
    probe = (f"import json, sys, {module}; "
             "print(json.dumps(sorted(m for m in sys.modules if m.startswith('chalicelib'))))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert [m for m in loaded if m.rsplit(".", 1)[-1] in ("adapter", "sender")
            or m.startswith("chalicelib.adapters.callbacks")
            or any(m.endswith("." + heavy) for heavy in HEAVY)] == []
