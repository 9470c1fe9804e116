"""The `infra/` scripts as modules for the tests: they are command-line scripts, not a package, so
each is loaded from its file."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

INFRA = Path(__file__).resolve().parents[2] / "infra"


def load_infra_script(name: str) -> ModuleType:
    """A fresh module of `infra/<name>.py` (named `hub_infra_<name>`), so no test file sees what
    another changed in its copy."""
    spec = importlib.util.spec_from_file_location(f"hub_infra_{name}", INFRA / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
