"""Issue 14: what shipping `.pyc` files saves at a cold start.

`infra/package.py` (`make package`) builds the dev stage's deployment on a copy of the project;
its zip is extracted twice, once whole and once without the `__pycache__/` entries, i.e. the
same code as `chalice package` alone ships. Each measurement is a fresh interpreter started in one
of the two trees, as Lambda starts in /var/task: the tree first on `sys.path`, the AWS SDK from
the environment (Lambda's runtime provides it, with its bytecode), and `PYTHONDONTWRITEBYTECODE`
because /var/task is read-only, so nothing compiled in one run helps the next. Timed as
`bench/startup.py` times I1/I2: `import app` plus what the first webhook (ingest) or the first
inbound batch (worker) builds. The two trees alternate run by run, order flipped each round;
each reports the median of RUNS runs after one discarded warm-up run, and the ratio is the median
of the per-round ratios.                                 with .pyc / without <= 0.6
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from bench.common import ROOT, Result, paired_ratio, ratio_result
from bench.startup import HUB_INGEST, HUB_WORKER, MARK, _environment, _timed

NAME = "pyc"
LIMIT = 0.6
RUNS = 9


def _package(workdir: Path) -> Path:
    """The dev stage's deployment.zip, built by infra/package.py on a copy of the project (so
    Chalice's package cache, .chalice/deployments/, stays out of the working tree)."""
    project = workdir / "project"
    project.mkdir()
    shutil.copy(ROOT / "app.py", project)
    shutil.copy(ROOT / "requirements.txt", project)
    shutil.copytree(ROOT / "chalicelib", project / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / ".chalice", project / ".chalice", ignore=shutil.ignore_patterns("deployments", "venv"))
    out = workdir / "package"
    env = {**os.environ, "AWS_DEFAULT_REGION": "eu-central-1", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing"}
    env.pop("AWS_PROFILE", None)
    completed = subprocess.run(
        [sys.executable, str(ROOT / "infra" / "package.py"), "--project", str(project), "--stage", "dev", str(out)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"infra/package.py failed:\n{completed.stdout[-2000:]}{completed.stderr[-2000:]}")
    return out / "deployment.zip"


def _extract(deployment: Path, tree: Path, bytecode: bool) -> int:
    with zipfile.ZipFile(deployment) as archive:
        members = [n for n in archive.namelist() if bytecode or "__pycache__/" not in n]
        archive.extractall(tree, members=members)
    return sum(1 for n in members if n.endswith(".pyc"))


def _child(code: str, env: dict[str, str], tree: Path) -> float:
    completed = subprocess.run([sys.executable, "-c", code], cwd=tree, env={**env, "PYTHONPATH": str(tree)},
                               capture_output=True, text=True, timeout=120)
    if completed.returncode != 0:
        raise RuntimeError(f"start-up child failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    import json

    [result] = [json.loads(line[len(MARK):]) for line in completed.stdout.splitlines() if line.startswith(MARK)]
    own = [m for m in result["modules"] if m.split(".")[0] in ("app", "chalicelib", "pydantic", "chalice")]
    assert own, "the child imported nothing from the tree"
    return result["init"]


def run() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="hub-bench-pyc-") as tmp:
        workdir = Path(tmp)
        deployment = _package(workdir)
        trees = {"with .pyc": workdir / "with", "without": workdir / "without"}
        pycs = {name: _extract(deployment, tree, name == "with .pyc") for name, tree in trees.items()}
        env = _environment(workdir)
        env.pop("PYTHONPYCACHEPREFIX")  # the importer would look there instead of in __pycache__/
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        size = deployment.stat().st_size
        results = []
        for shape, body in (("ingest", HUB_INGEST), ("worker", HUB_WORKER)):
            code = _timed(body)
            samples: dict[str, list[float]] = {name: [] for name in trees}
            for round_ in range(RUNS + 1):
                order = list(trees) if round_ % 2 else list(reversed(trees))
                for name in order:
                    seconds = _child(code, env, trees[name])
                    if round_:
                        samples[name].append(seconds)
            with_pyc, without = (statistics.median(samples[n]) for n in trees)
            results.append(ratio_result(
                f"{shape} init from the package: with .pyc vs without", with_pyc * 1e3, without * 1e3, LIMIT, "ms",
                ratio=paired_ratio(samples["with .pyc"], samples["without"]),
                note=f"ranges (ms): with {min(samples['with .pyc']) * 1e3:.0f}-{max(samples['with .pyc']) * 1e3:.0f}, "
                     f"without {min(samples['without']) * 1e3:.0f}-{max(samples['without']) * 1e3:.0f}; "
                     f"{pycs['with .pyc']} .pyc files; zip {size:,} bytes with them",
            ))
    return results
