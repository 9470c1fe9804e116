"""The vendor specs the contract tests mock are exactly the files tests/contract/specs/README.md lists,
byte for byte: a spec cannot change, appear or vanish without its provenance row changing too."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "tests" / "contract" / "specs"
README = SPECS / "README.md"
NOT_LISTED = {"README.md", ".gitattributes"}  # the folder's own files, not specs or licences

# A provenance row: `| `vendor/file` | ... | `<sha256>` |` (the sha256 is the row's last cell).
_ROW = re.compile(r"^\|\s*`(?P<path>[^`]+)`\s*\|.*\|\s*`(?P<sha256>[0-9a-f]{64})`\s*\|\s*$")


def listed() -> dict[str, str]:
    """{path relative to the specs folder: sha256} from the README's tables."""
    rows: dict[str, str] = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        if match := _ROW.match(line):
            assert match["path"] not in rows, f"{match['path']} is listed twice in {README.relative_to(ROOT)}"
            rows[match["path"]] = match["sha256"]
    return rows


LISTED = listed()


def test_the_readme_lists_the_specs_and_their_licences():
    assert {"twilio/twilio_api_v2010.json", "twilio/LICENSE.upstream",
            "genesys/genesys-cloud-workitems-openmessaging.derived.openapi.yaml"} <= set(LISTED)


@pytest.mark.parametrize("name", sorted(LISTED))
def test_a_listed_file_is_present_with_the_recorded_sha256(name):
    path = SPECS / name

    assert path.is_file(), f"{path.relative_to(ROOT)} is listed in the specs README but missing"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == LISTED[name], (
        f"{path.relative_to(ROOT)} differs from the sha256 in the specs README: update its row (and, for a"
        " derived file, its list of changes) together with the file"
    )


def test_every_file_in_the_specs_folder_is_listed():
    present = {path.relative_to(SPECS).as_posix() for path in SPECS.rglob("*") if path.is_file()}

    assert present - NOT_LISTED - set(LISTED) == set(), "files with no provenance row in the specs README"
