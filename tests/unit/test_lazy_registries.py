"""The registries name their classes and import them on first use (issue 14, cold start): their
static tables must say what the classes say, and a start-up must load only what it uses."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.adapters.channels.registry import CHANNELS, PULL_ENTRIES
from chalicelib.adapters.connectors.registry import CONNECTORS
from chalicelib.adapters.lazy import LazyRegistry
from chalicelib.adapters.media.registry import MEDIA_SOURCE_FIELDS, MEDIA_SOURCE_PROVIDERS, MEDIA_SOURCES

ROOT = Path(__file__).resolve().parents[2]


def test_every_registered_class_loads_under_its_key():
    for registry in (CHANNELS, CONNECTORS, MEDIA_SOURCES):
        assert {key: registry[key].key for key in registry} == {key: key for key in registry}


def test_the_pull_entries_are_the_adapters_own():
    declared = {entry.name: (key, entry) for key, adapter in CHANNELS.items() for entry in adapter.pull_entries}
    assert PULL_ENTRIES == declared


def test_the_media_table_is_the_adapters_media_sources_in_their_order():
    declared = [_import(path) for adapter in CHANNELS.values() for path in adapter.media_sources]
    assert [source.key for source in declared] == list(MEDIA_SOURCES)
    assert {s.key: s.provider for s in declared} == MEDIA_SOURCE_PROVIDERS
    assert {s.settings_field: s.key for s in declared} == MEDIA_SOURCE_FIELDS
    assert all(MEDIA_SOURCES[s.key] is s for s in declared)


def test_a_class_registered_under_another_key_is_refused():
    registry = LazyRegistry("channel adapter", {"sms": "chalicelib.adapters.channels.twilio.adapter:TwilioAdapter"})
    assert "sms" in registry and len(registry) == 1
    with pytest.raises(RuntimeError, match="registered as 'sms' but its key is 'twilio'"):
        registry["sms"]
    with pytest.raises(KeyError):
        registry["nope"]
    assert registry.get("nope") is None


PROBE = """
import json, sys
import app
from chalicelib.bootstrap import get_hub
hub = get_hub()
hub.config
hub.adapter("meta")
from chalicelib.adapters.channels.registry import CHANNELS
from chalicelib.adapters.connectors.registry import CONNECTOR_SETTINGS, CONNECTORS
from chalicelib.adapters.media.registry import MEDIA_SOURCES
print(json.dumps({"channels": CHANNELS.loaded(), "connectors": CONNECTORS.loaded(), "media": MEDIA_SOURCES.loaded(),
                  "connector_settings": CONNECTOR_SETTINGS.loaded(),
                  "modules": sorted(m for m in sys.modules if m.startswith("chalicelib.adapters.channels."))}))
"""


def test_a_webhook_function_loads_only_the_configured_providers_and_connectors(tmp_path):
    config = tmp_path / "hub.yaml"
    config.write_text("channels:\n  meta:\n    app_secrets: [s]\n    verify_tokens: [v]\n"
                      "destinations:\n  - name: outbox\n    type: outbox\n    path: outbox.jsonl\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_CONFIG=str(config), HUB_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    completed = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=120, check=True)
    loaded = json.loads(completed.stdout.splitlines()[-1])

    # The destination is typed by its settings alone: the webhook function never delivers.
    assert loaded["channels"] == ["meta"] and loaded["connectors"] == [] and loaded["media"] == []
    assert loaded["connector_settings"] == ["outbox"]
    assert not [m for m in loaded["modules"] if m.split(".")[3] not in ("base", "registry", "json_body", "meta")]


def _import(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def test_every_provider_page_is_a_handler_of_a_known_provider_under_its_own_path():
    from importlib import import_module

    from chalicelib.adapters.channels.registry import CHANNELS, PAGES

    assert PAGES, "the web chat widget's pages are registered"
    for path, (provider, target, _announce) in PAGES.items():
        assert provider in CHANNELS and path.startswith(f"/{provider}/"), path
        module, _, attribute = target.partition(":")
        assert module.startswith(f"chalicelib.adapters.channels.{provider}."), target
        assert callable(getattr(import_module(module), attribute)), target


def test_every_providers_api_contract_describes_only_its_own_paths():
    from importlib import import_module

    from chalicelib.adapters.channels.registry import API_CONTRACTS, CHANNELS

    assert API_CONTRACTS, "the web chat's widget API is described"
    for provider, target in API_CONTRACTS.items():
        assert provider in CHANNELS and target.startswith(f"chalicelib.adapters.channels.{provider}."), target
        module, _, name = target.partition(":")
        paths = {op.path for op in getattr(import_module(module), name)()}
        assert paths and all(p.startswith((f"/{provider}/", f"/webhooks/{provider}")) for p in paths), paths
