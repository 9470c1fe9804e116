"""Rules of the layout (STYLE.md) that a test can keep true."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE_PACKAGES = ("domain", "routing", "service")
FORBIDDEN = ("chalice", "boto3", "botocore", "urllib3", "requests", "chalicelib.adapters.store.dynamodb",
             "chalicelib.adapters.queue.sqs", "chalicelib.api", "chalicelib.bootstrap")


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", PURE_PACKAGES)
def test_the_core_never_imports_frameworks_sdks_or_http_clients(package):
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "chalicelib" / package).rglob("*.py")
        for name in imports_of(path)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
    }
    assert not offenders


def test_every_channel_and_connector_module_is_registered():
    from chalicelib.adapters.channels.registry import CHANNELS
    from chalicelib.adapters.connectors.registry import CONNECTORS

    # Shared modules, not providers: JSON body loading, email parsing and mapping (Mailgun, SendGrid,
    # SES), form bodies, SNS signatures and the SES-in-S3 reader (used by the ses_inbound worker).
    infrastructure = {"__init__", "base", "registry", "http", "auth", "mapping", "vendor", "aws_clients",
                      "json_body", "email_mime", "email_html", "email_quotes", "email_inbound", "form_body",
                      "sns_signature", "ses_s3"}
    for folder, registry in (("channels", CHANNELS), ("connectors", CONNECTORS)):
        modules = {p.stem for p in (ROOT / "chalicelib" / "adapters" / folder).glob("*.py")} - infrastructure
        registered = {cls.__module__.rsplit(".", 1)[1] for cls in registry.values()}
        assert modules == registered, f"unregistered {folder}: {modules - registered}"


def test_duplicate_registry_keys_fail_fast():
    from chalicelib.adapters.channels.twilio import TwilioAdapter
    from chalicelib.adapters.registry import register

    with pytest.raises(RuntimeError, match="twilio"):
        register(TwilioAdapter, TwilioAdapter)


def test_only_settings_reads_the_environment():
    readers = {
        str(path.relative_to(ROOT))
        for path in [*(ROOT / "chalicelib").rglob("*.py"), ROOT / "app.py"]
        if "os.environ" in path.read_text() or "getenv(" in path.read_text()
    }
    assert readers == {"chalicelib/settings.py"}
