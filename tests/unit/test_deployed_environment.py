"""The deployed functions' common environment (`.chalice/config.json`) does what it claims.

`PYDANTIC_DISABLE_PLUGINS` keeps pydantic from reading every installed distribution's entry points
the first time a model is built (5-7 ms of each cold start, issue 14). A value pydantic does not
recognise as "all" would silently bring the discovery back, so the check runs pydantic itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json
from pydantic import BaseModel
from pydantic.plugin import _loader

class Probe(BaseModel):
    value: int

Probe(value=1)
print(json.dumps(_loader._plugins is None))
"""


def _discovery_skipped(extra: dict[str, str]) -> bool:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDANTIC_")}
    env.update(extra)
    completed = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.splitlines()[-1])


def test_the_deployed_environment_skips_pydantic_plugin_discovery():
    deployed = json.loads((ROOT / ".chalice" / "config.json").read_text())["environment_variables"]
    assert _discovery_skipped(deployed)
    assert not _discovery_skipped({})  # the probe can see a discovery


def test_the_startup_benchmark_starts_its_children_as_deployed(tmp_path):
    from bench.startup import _environment, deployed_variables

    env = _environment(tmp_path)
    assert deployed_variables()["PYDANTIC_DISABLE_PLUGINS"] == env["PYDANTIC_DISABLE_PLUGINS"] == "__all__"
