"""Rules of the layout (STYLE.md) that a test can keep true."""

from __future__ import annotations

import ast
import re
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


def test_every_channel_package_and_connector_module_is_registered():
    from chalicelib.adapters.channels.registry import CHANNELS
    from chalicelib.adapters.connectors.registry import CONNECTORS

    channels = ROOT / "chalicelib" / "adapters" / "channels"
    # A provider is a package; `email` is shared email parsing for the email providers.
    packages = {p.name for p in channels.iterdir() if (p / "__init__.py").is_file()} - {"email"}
    assert packages == {cls.__module__.split(".")[3] for cls in CHANNELS.values()}, "unregistered channel packages"
    # No provider module may sit loose beside the packages.
    assert {p.stem for p in channels.glob("*.py")} == {"__init__", "base", "registry", "json_body", "sending"}

    infrastructure = {"__init__", "base", "registry", "http", "auth", "mapping", "vendor", "aws_clients", "echo"}
    modules = {p.stem for p in (ROOT / "chalicelib" / "adapters" / "connectors").glob("*.py")} - infrastructure
    assert modules == {cls.__module__.rsplit(".", 1)[1] for cls in CONNECTORS.values()}, "unregistered connectors"


def test_every_callback_module_is_named_by_its_connector():
    """A vendor's callback side is one module beside the port, named by the connector of the same
    vendor (`Connector.callbacks`), and the class it names exists and implements the port."""
    from importlib import import_module

    from chalicelib.adapters.callbacks.base import VendorCallbacks
    from chalicelib.adapters.connectors.registry import CONNECTORS

    folder = ROOT / "chalicelib" / "adapters" / "callbacks"
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__", "base"}
    named = {cls.key: cls.callbacks for cls in CONNECTORS.values() if cls.callbacks}
    assert modules == {path.partition(":")[0].rsplit(".", 1)[1] for path in named.values()}, "unnamed callback modules"
    for key, path in named.items():
        module, _, name = path.partition(":")
        assert module.rsplit(".", 1)[1] == CONNECTORS[key].__module__.rsplit(".", 1)[1], f"{key} names another vendor"
        side = getattr(import_module(module), name)
        assert issubclass(side, VendorCallbacks) and not getattr(side, "__abstractmethods__", None), key


def test_duplicate_registry_keys_fail_fast():
    from chalicelib.adapters.channels.twilio.adapter import TwilioAdapter
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


def _code_words(path: Path) -> set[str]:
    """The string literals (docstrings excluded) and identifier parts of a module: what would
    branch on a provider, as opposed to comments and docstrings that explain one."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    words: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.update(w.lower() for w in re.findall(r"[A-Za-z0-9]+", node.value))
        elif isinstance(node, ast.Name):
            words.update(node.id.lower().split("_"))
        elif isinstance(node, ast.Attribute):
            words.update(node.attr.lower().split("_"))
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            words.update(node.name.lower().split("_"))
    return words


def test_no_provider_is_named_in_the_code_that_wires_serves_and_ingests():
    """A provider is its own package: the app, the composition root, the settings, the HTTP edge,
    the workers and the ingest service never name one (SES's S3 delivery is a generic pull entry)."""
    from chalicelib.adapters.channels.registry import CHANNELS

    core = [ROOT / "app.py", ROOT / "chalicelib" / "bootstrap.py", ROOT / "chalicelib" / "settings.py",
            ROOT / "chalicelib" / "service" / "ingest.py",
            *(ROOT / "chalicelib" / "api").glob("*.py")]
    providers = {key for key in CHANNELS if len(key) > 1}  # `x` is too common a word to search for
    offenders = {f"{path.relative_to(ROOT)}: {word}" for path in core for word in _code_words(path) & providers}
    assert not offenders


def test_the_ingest_path_loads_no_public_key_cryptography_or_dns():
    """`cryptography`, dkimpy and dnspython load only where a signature or DKIM check needs them:
    never when the app and the configuration load (the webhook Lambda's cold start)."""
    import subprocess
    import sys

    code = (
        "import sys, app\n"
        "from chalicelib.bootstrap import Hub\n"
        "from chalicelib.settings import DEFAULT_CONFIG, Settings\n"
        "hub = Hub(Settings(config_path=str(DEFAULT_CONFIG)))\n"
        "hub.config; [hub.adapter(key) for key in hub.config.channels]\n"
        "print(sorted(m for m in ('cryptography', 'dkim', 'dns', 'waitress') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
