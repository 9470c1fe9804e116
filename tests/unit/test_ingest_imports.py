"""The webhook function's cold start imports what a webhook needs and nothing else (issue 14, I1).

A fresh interpreter builds the AWS ingest path for one provider (the app, the hub, its
configuration, the provider's adapter, the webhook endpoint with the ingest service and the SQS
inbound queue) from a configuration that also names another provider, a destination and routing
rules, and reports what `sys.modules` holds. Every module listed below as not needed costs cold
start on every webhook; a test that fails here names the import that brought it back.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from tests.support.ingest_probe import run_after_cold_path

PROBE = """
print(json.dumps(sorted(m for m in sys.modules if m.startswith("chalicelib"))))
"""


@cache
def _ingest_modules(tmp: str) -> frozenset[str]:
    completed = run_after_cold_path(Path(tmp), PROBE)
    if completed.returncode != 0:  # not an AssertionError: the xfail checks below must not absorb it
        raise RuntimeError(f"the ingest probe failed:\n{completed.stderr[-3000:]}")
    return frozenset(json.loads(completed.stdout.splitlines()[-1]))


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> frozenset[str]:
    return _ingest_modules(str(tmp_path_factory.mktemp("ingest-imports")))


def _under(modules: frozenset[str], *packages: str) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


def test_the_served_path_is_loaded(loaded):
    """The probe really built the ingest path (otherwise the other checks prove nothing)."""
    assert {"chalicelib.adapters.channels.meta.adapter", "chalicelib.service.ingest",
            "chalicelib.adapters.queue.sqs", "chalicelib.api.webhooks"} <= loaded


def test_no_consumer_api_services_store_or_workers(loaded):
    """The /v1 blueprints import their services on their first request; the store and the
    workers' services belong to other functions."""
    assert _under(loaded, "chalicelib.adapters.store", "chalicelib.service.customers",
                  "chalicelib.service.operations", "chalicelib.service.process", "chalicelib.service.identity",
                  "chalicelib.service.deliver", "chalicelib.service.messages", "chalicelib.api.auth",
                  "chalicelib.api.workers", "chalicelib.service.event_intake",
                  "chalicelib.domain.business_events") == []


def test_no_destination_callback_sides_or_email_sender_proof(loaded):
    """Callback sides load with the first `POST /callbacks/...`, the DKIM verifier with an email
    adapter's first use."""
    assert _under(loaded, "chalicelib.adapters.callbacks", "chalicelib.adapters.email_auth") == []


def test_no_other_channel_package(loaded):
    """A deployed function types a provider's section when it first reads it: the other configured
    provider (Twilio) costs the webhook nothing, not even its settings module."""
    assert [m for m in _under(loaded, "chalicelib.adapters.channels") if m.count(".") > 3
            and m.split(".")[3] != "meta"] == []
    assert "chalicelib.adapters.channels.meta.settings" in loaded  # its own section was typed


def test_no_deferred_section_model(loaded):
    """Routing, consent, enrichment and media are typed on first read, and a webhook reads none."""
    assert _under(loaded, "chalicelib.routing.settings", "chalicelib.routing.specs",
                  "chalicelib.service.consent_settings", "chalicelib.service.media_settings",
                  "chalicelib.enrichment.settings") == []


def test_no_connector_module(loaded):
    """Destinations are typed by their settings modules (`registry.CONNECTOR_SETTINGS`)."""
    assert [m for m in _under(loaded, "chalicelib.adapters.connectors")
            if m not in ("chalicelib.adapters.connectors.registry", "chalicelib.adapters.connectors")
            and not m.startswith("chalicelib.adapters.connectors.settings")] == []


def test_the_destination_is_typed_by_its_settings_module_alone(loaded):
    """The configured destination (outbox) is typed without its connector or the connectors' base."""
    assert "chalicelib.adapters.connectors.settings.outbox" in loaded
    assert _under(loaded, "chalicelib.adapters.connectors.outbox", "chalicelib.adapters.connectors.base") == []


def test_no_routing_engine(loaded):
    """The routing compiler loads where contacts are routed."""
    assert _under(loaded, "chalicelib.routing.rules", "chalicelib.routing.conditions", "chalicelib.routing.actions",
                  "chalicelib.routing.context", "chalicelib.routing.setup", "chalicelib.routing.engine") == []


def test_no_engine_behind_a_settings_section(loaded):
    """Consent, media, lexicons and Comprehend engines load where contacts are processed."""
    assert _under(loaded, "chalicelib.service.consent", "chalicelib.service.media", "chalicelib.routing.lexicon",
                  "chalicelib.enrichment.comprehend", "chalicelib.enrichment.language") == []


def test_no_worker_side_domain_models(loaded):
    """Contacts, customers, cases and the callback items are defined in `domain/stored.py`, which
    loads on the first use of one of them (`models.__getattr__`): the webhook never creates them."""
    assert "chalicelib.domain.stored" not in loaded
    assert "chalicelib.domain.models" in loaded
