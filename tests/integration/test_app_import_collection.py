"""`import app` builds the app with the cyclic garbage collector paused and hands it back on,
with what the import made frozen out of later collections (app.py says why). A fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import gc, json
import app
print(json.dumps({"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}))
"""


def test_import_app_leaves_the_collector_on_and_the_startup_objects_frozen(tmp_path):
    env = {**os.environ, "HUB_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=True, timeout=120)
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state["enabled"] is True
    assert state["frozen"] > 20_000, "the import's objects were not frozen"
