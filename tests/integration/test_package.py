"""infra/package.py (`make package`): the deployment zip carries a `.pyc` for every `.py`, the hub's
and its dependencies', compiled for the Lambda runtime's minor version as unchecked-hash pycs, and
the build refuses to compile for another version than the runtime it targets."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.infra_scripts import load_infra_script

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

#: Bytecode magic numbers (the first two bytes, little-endian, then b"\r\n") of the final releases,
#: from CPython's Lib/importlib/_bootstrap_external.py; written out so the test does not take the
#: build's interpreter's word for it.
MAGIC = {(3, 10): 3439, (3, 11): 3495, (3, 12): 3531, (3, 13): 3571}
#: PEP 552 flags word: bit 0 hash-based, bit 1 check_source. Unchecked-hash is 0b01.
UNCHECKED_HASH = 0b01


package = load_infra_script("package")

#: A pyc the working tree holds when the package is built (see `built`), named as the build names
#: its own.
STALE_PYC = f"settings.{sys.implementation.cache_tag}.pyc"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """`infra/package.py --stage dev` on a copy of the project (Chalice's package cache,
    .chalice/deployments/, stays out of the working tree)."""
    project = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "app.py", project)
    shutil.copy(ROOT / "requirements.txt", project)
    shutil.copytree(ROOT / "chalicelib", project / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    # What running the hub or its tests leaves in a working tree: the build must not ship it.
    (project / "chalicelib" / "__pycache__").mkdir()
    (project / "chalicelib" / "__pycache__" / STALE_PYC).write_bytes(b"stale bytecode of the working tree")
    (project / ".chalice").mkdir()
    for path in (ROOT / ".chalice").glob("*.json"):
        shutil.copy(path, project / ".chalice")
    out = tmp_path_factory.mktemp("package")
    env = {**os.environ, "AWS_DEFAULT_REGION": "eu-central-1", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing"}
    env.pop("AWS_PROFILE", None)
    result = subprocess.run(
        [sys.executable, str(ROOT / "infra" / "package.py"), "--project", str(project), "--stage", "dev", str(out)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def _pyc_name(source: str, tag: str) -> str:
    directory, _, filename = source.rpartition("/")
    return f"{directory + '/' if directory else ''}__pycache__/{filename[:-3]}.{tag}.pyc"


@pytest.mark.slow
def test_every_module_of_the_package_has_unchecked_hash_bytecode_for_the_runtime(built):
    [runtime] = package.template_runtimes(built / "sam.json")
    major, minor = map(int, runtime.removeprefix("python").split("."))
    tag = f"cpython-{major}{minor}"
    with zipfile.ZipFile(built / "deployment.zip") as archive:
        names = set(archive.namelist())
        sources = sorted(n for n in names if n.endswith(".py"))
        pycs = {n: archive.read(n) for n in names if n.endswith(".pyc")}
        source_hashes = {n: importlib.util.source_hash(archive.read(n)) for n in sources}

    assert {"app.py", "chalicelib/bootstrap.py", "pydantic/main.py", "yaml/__init__.py", "chalice/app.py"} <= set(sources)
    assert len(sources) > 1000  # the dependencies' modules, not only the hub's
    assert [s for s in sources if _pyc_name(s, tag) not in pycs] == []
    assert len(pycs) == len(sources)  # nothing else: no stale or foreign-version bytecode
    magic = MAGIC[(major, minor)].to_bytes(2, "little") + b"\r\n"
    for source in sources:
        header = pycs[_pyc_name(source, tag)][:16]
        assert header[:4] == magic, source
        assert int.from_bytes(header[4:8], "little") == UNCHECKED_HASH, source
        # the hash is the source's: the bytecode is of this very file
        assert header[8:16] == source_hashes[source], source


@pytest.mark.slow
def test_the_packaged_bytecode_is_what_the_importer_uses(built, tmp_path):
    """Extracted with a date no source could match (as on Lambda, whatever the mtimes), on a
    read-only-like run (no bytecode written), the hub's modules load from their .pyc."""
    with zipfile.ZipFile(built / "deployment.zip") as archive:
        archive.extractall(tmp_path)
    for path in tmp_path.rglob("*.py"):
        os.utime(path, (2_000_000_000, 2_000_000_000))
    probe = (
        "import importlib.machinery as m, sys\n"
        "calls = []\n"
        "original = m.SourceFileLoader.source_to_code\n"
        "m.SourceFileLoader.source_to_code = lambda self, data, path, **kw: calls.append(path) or original(self, data, path, **kw)\n"
        "import chalicelib.bootstrap, pydantic.main, yaml\n"
        "print(len([c for c in calls if c.startswith(sys.argv[1])]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPYCACHEPREFIX", None)
    result = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"  # nothing of the package compiled from source


# --- the runtime check ---------------------------------------------------------------------------


def _fake_chalice_output(out: Path, runtime: str) -> None:
    out.mkdir()
    (out / "sam.json").write_text(json.dumps({"Resources": {
        "APIHandler": {"Type": "AWS::Serverless::Function", "Properties": {"Runtime": runtime}},
        "Deliver": {"Type": "AWS::Serverless::Function", "Properties": {"Runtime": runtime}},
    }}))
    with zipfile.ZipFile(out / "deployment.zip", "w") as archive:
        archive.writestr("app.py", "import chalicelib\n")
        archive.writestr("chalicelib/__init__.py", "")


def test_bytecode_is_added_for_the_runtime_of_this_interpreter(tmp_path):
    out = tmp_path / "out"
    _fake_chalice_output(out, package.interpreter_runtime())
    assert package.add_bytecode(out) == 2
    tag = sys.implementation.cache_tag
    with zipfile.ZipFile(out / "deployment.zip") as archive:
        assert {f"__pycache__/app.{tag}.pyc", f"chalicelib/__pycache__/__init__.{tag}.pyc"} <= set(archive.namelist())


def test_a_template_for_another_python_is_refused_and_the_zip_left_alone(tmp_path):
    other = (3, sys.version_info[1] + 1)
    out = tmp_path / "out"
    _fake_chalice_output(out, f"python{other[0]}.{other[1]}")
    before = (out / "deployment.zip").read_bytes()
    with pytest.raises(package.PackageError, match=rf"targets python{other[0]}\.{other[1]} but this is Python"):
        package.add_bytecode(out)
    assert (out / "deployment.zip").read_bytes() == before


def test_functions_on_mixed_runtimes_are_refused(tmp_path):
    with pytest.raises(package.PackageError):
        package.check_runtime({package.interpreter_runtime(), "python3.10"})


def test_the_build_refuses_before_running_chalice_when_the_stage_targets_another_python(
        tmp_path, monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(package, "chalice_runtime", lambda project, stage: "python3.99")
    monkeypatch.setattr(package, "run_chalice", lambda *args: ran.append(args))
    assert package.main(["--stage", "dev", str(tmp_path / "out")]) == 2
    assert ran == []
    err = capsys.readouterr().err
    assert "refused" in err and "python3.99" in err and f"Python {sys.version_info[0]}.{sys.version_info[1]}" in err


def test_chalice_targets_the_runtime_of_the_interpreter_it_runs_on():
    """Why compiling with the running interpreter is right: Chalice derives the runtime from it."""
    assert package.chalice_runtime(ROOT, "dev") == package.interpreter_runtime()


def _zip_budget() -> int:
    """MAX_ZIP_BYTES of test_infra.py, the Lambda zip's one budget."""
    import ast

    tree = ast.parse((ROOT / "tests" / "integration" / "test_infra.py").read_text())
    [value] = [node.value for node in tree.body if isinstance(node, ast.Assign)
               and any(getattr(t, "id", None) == "MAX_ZIP_BYTES" for t in node.targets)]
    return eval(compile(ast.Expression(value), "MAX_ZIP_BYTES", "eval"), {})  # noqa: S307 (our own constant)


#: The budget of what `make package` ships: chalice's zip (within `MAX_ZIP_BYTES` of test_infra.py)
#: plus the bytecode of every module, 4.46 MB zipped: 17,101,917 bytes on 2026-12-07. The bytecode
#: is worth its size: init with it takes 0.54-0.58x the time without (bench pyc), far more than the
#: few tens of milliseconds Lambda spends fetching 4.5 MB more. Even the 299 modules cold starts
#: import alone would be 1.49 MB, so bytecode for everything keeps the package simple.
MAX_PACKAGE_BYTES = 17 * 1024 * 1024 + 512 * 1024


@pytest.mark.slow
def test_the_working_tree_bytecode_is_replaced_by_the_package_s_own(built):
    """A pyc the working tree holds under the very name the build writes is shipped once, the
    build's own (unchecked-hash), never the tree's."""
    name = f"chalicelib/__pycache__/{STALE_PYC}"
    with zipfile.ZipFile(built / "deployment.zip") as archive:
        assert archive.namelist().count(name) == 1
        shipped = archive.read(name)
    assert shipped != b"stale bytecode of the working tree"
    assert int.from_bytes(shipped[4:8], "little") == UNCHECKED_HASH


@pytest.mark.slow
def test_the_package_with_bytecode_stays_within_its_budget(built):
    assert (built / "deployment.zip").stat().st_size <= MAX_PACKAGE_BYTES
    assert MAX_PACKAGE_BYTES - _zip_budget() <= 5 * 1024 * 1024 + 512 * 1024, "the bytecode's share stays bounded"
