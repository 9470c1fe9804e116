"""Build a stage's Lambda deployment with its bytecode: `make package STAGE=dev` (default out/).

    python infra/package.py --stage dev out/

Runs `chalice package --stage <stage> <out>` (a SAM template `sam.json` plus `deployment.zip`),
then adds to the zip a `.pyc` for every `.py` in it, the hub's and its dependencies', in the
`__pycache__/<module>.<cache tag>.pyc` layout the import system looks for. Without them each cold
start compiles every module it imports from source, and on Lambda that work is never kept: the
code directory (/var/task) is read-only.

Two choices make Lambda actually use them:

* **Unchecked-hash pycs** (PEP 552). A default (timestamp) pyc records its source's mtime and
  size, and the importer recompiles whenever the source on disk disagrees. Chalice writes every zip
  entry with the date 1980-01-01 in the builder's local time (zip dates carry no time zone), and
  what the extracted files' mtimes will be on Lambda is not ours to control, so a timestamp pyc may
  well be rejected there, which costs more than shipping none (the pyc is read, refused, then the
  source compiled). An unchecked-hash pyc is used whatever the source's mtime: the package is
  immutable, so nothing can make it stale.
* **The runtime's minor version.** Bytecode is specific to a minor version (its magic number);
  Lambda's python3.12 ignores a 3.11 pyc. Chalice picks the Lambda runtime from the interpreter it
  runs on, and this script compiles with that same interpreter; it still checks that every
  function in the template runs `python<major>.<minor>` of this interpreter and refuses otherwise.

Compiled with `-X no_debug_ranges`: the pycs then carry line numbers but no column ranges, which
only the `^^^^` markers under a traceback's source line use, and are about a fifth smaller.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Chalice writes every entry with this date; so do we (reproducible zips).
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class PackageError(Exception):
    """The deployment cannot be built as asked; the message says why."""


def interpreter_runtime(version_info=sys.version_info) -> str:
    return f"python{version_info[0]}.{version_info[1]}"


def chalice_runtime(project: Path, stage: str) -> str:
    """The Lambda runtime `chalice package` will write for this stage (Chalice derives it from
    the interpreter it runs on, not from .chalice/config.json)."""
    from chalice.config import Config

    config = json.loads((project / ".chalice" / "config.json").read_text())
    return Config(chalice_stage=stage, config_from_disk=config).lambda_python_version


def template_runtimes(sam_template: Path) -> set[str]:
    """The runtime of every function in a `chalice package` template."""
    template = json.loads(sam_template.read_text())
    globals_ = template.get("Globals", {}).get("Function", {}).get("Runtime")
    return {resource["Properties"].get("Runtime", globals_)
            for resource in template["Resources"].values()
            if resource["Type"] in ("AWS::Serverless::Function", "AWS::Lambda::Function")}


def check_runtime(runtimes: set[str], version_info=sys.version_info) -> None:
    """Raises PackageError unless every runtime is this interpreter's minor version."""
    mine = interpreter_runtime(version_info)
    if runtimes != {mine}:
        raise PackageError(
            f"the package targets {', '.join(sorted(map(str, runtimes)))} but this is Python "
            f"{version_info[0]}.{version_info[1]} ({sys.executable}): its bytecode would be ignored there. "
            f"Run `make package` with a {', '.join(sorted(map(str, runtimes)))} interpreter "
            f"(e.g. PYTHON=python3.12 make package after `make clean`).")


def run_chalice(project: Path, stage: str, out: Path) -> None:
    chalice = Path(sys.executable).parent / "chalice"
    command = [str(chalice) if chalice.exists() else "chalice", "package", "--stage", stage, str(out)]
    result = subprocess.run(command, cwd=project)
    if result.returncode != 0:
        raise PackageError(f"`{' '.join(command)}` failed with exit code {result.returncode}")


def add_bytecode(out: Path, version_info=sys.version_info) -> int:
    """Compiles every .py of `out/deployment.zip` with this interpreter and adds the pycs to the
    zip; returns how many. Refuses (PackageError) when the template's runtime is another version."""
    check_runtime(template_runtimes(out / "sam.json"), version_info)
    deployment = out / "deployment.zip"
    with tempfile.TemporaryDirectory(prefix="hub-package-") as tmp:
        tree = Path(tmp) / "task"
        with zipfile.ZipFile(deployment) as archive:
            sources = [name for name in archive.namelist() if name.endswith(".py")]
            if any("__pycache__/" in name or name.endswith(".pyc") for name in archive.namelist()):
                raise PackageError(f"{deployment} already holds bytecode: build into an empty directory")
            archive.extractall(tree, members=sources)
        # compileall rather than py_compile in-process: -X no_debug_ranges is a start-up flag.
        # -s/-p make each code object's file name the path Lambda loads it from.
        result = subprocess.run(
            [sys.executable, "-X", "no_debug_ranges", "-m", "compileall", "-q", "-j", "0",
             "--invalidation-mode", "unchecked-hash", "-s", str(tree), "-p", "/var/task", str(tree)],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise PackageError(f"compileall failed:\n{result.stdout}{result.stderr}")
        tag = sys.implementation.cache_tag
        added = 0
        with zipfile.ZipFile(deployment, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for source in sources:
                directory, _, filename = source.rpartition("/")
                name = f"{directory + '/' if directory else ''}__pycache__/{filename[:-3]}.{tag}.pyc"
                info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, (tree / name).read_bytes(), compresslevel=9)
                added += 1
    return added


def drop_working_tree_bytecode(deployment: Path) -> int:
    """Remove the `__pycache__` entries Chalice zipped from the project directory; returns how many.

    Chalice packages `chalicelib/` as it finds it, and running the hub or its tests leaves
    `__pycache__` folders there: timestamp-checked pycs of whatever the tree held then, possibly
    for another interpreter. The package's own bytecode (`add_bytecode`) replaces them."""
    with zipfile.ZipFile(deployment) as archive:
        entries = archive.infolist()
        keep = [e for e in entries if "__pycache__/" not in e.filename and not e.filename.endswith(".pyc")]
        if len(keep) == len(entries):
            return 0
        rewritten = deployment.with_suffix(".zip.tmp")
        with zipfile.ZipFile(rewritten, "w") as copy:
            for entry in keep:
                copy.writestr(entry, archive.read(entry.filename))
    rewritten.replace(deployment)
    return len(entries) - len(keep)


def build(stage: str, out: Path, project: Path = ROOT) -> int:
    target = chalice_runtime(project, stage)
    check_runtime({target})  # before spending a minute on `chalice package`
    for stale in ("sam.json", "deployment.zip"):  # a previous build's
        (out / stale).unlink(missing_ok=True)
    run_chalice(project, stage, out)
    drop_working_tree_bytecode(out / "deployment.zip")
    return add_bytecode(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--project", type=Path, default=ROOT, help="the Chalice project (default: this one)")
    parser.add_argument("out", type=Path, help="output directory: sam.json, deployment.zip (replaced)")
    args = parser.parse_args(argv)
    try:
        added = build(args.stage, args.out.resolve(), args.project.resolve())
    except PackageError as error:
        print(f"package: refused: {error}", file=sys.stderr)
        return 2
    zip_path = args.out / "deployment.zip"
    print(f"package: {zip_path} ({os.path.getsize(zip_path):,} bytes) with {added} .pyc files "
          f"for {interpreter_runtime()}; template {args.out / 'sam.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
