"""The repository stands on its own: a fresh clone has no sibling folders, so no file may point into one.

Checks every file git tracks (plus new, not yet ignored ones), or, without git, every file outside
.git, .venv and node_modules.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIPPED_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".pytest_cache", ".hypothesis"}
# The `shared` folder beside a checkout (as a relative path from the repo), and its absolute form on
# the machine where the repo was first built. Written as a regex so this file does not match itself.
OUTSIDE = re.compile(rb"(?:\.\.|/work)/shared\b")


def repo_files() -> list[Path]:
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True, timeout=60,
        ).stdout.decode("utf-8", "surrogateescape")
        names = [name for name in listing.split("\0") if name]
    except (OSError, subprocess.SubprocessError):
        names = [
            os.path.relpath(os.path.join(folder, file), ROOT)
            for folder, dirs, files in os.walk(ROOT)
            if not dirs.__setitem__(slice(None), [d for d in dirs if d not in SKIPPED_DIRS])
            for file in files
        ]
    paths = (ROOT / name for name in names if not SKIPPED_DIRS & set(Path(name).parts))
    return [path for path in paths if path.is_file()]  # a tracked file deleted in the worktree is gone


def test_no_file_refers_to_a_folder_beside_the_repository():
    files = repo_files()
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:160].decode('utf-8', 'replace')}"
        for path in files
        for number, line in enumerate(path.read_bytes().splitlines(), 1)
        if OUTSIDE.search(line)
    ]

    assert len(files) > 100, "the file listing is implausibly short"
    assert hits == [], "files that point into the shared folder beside the repo (a clone has none):\n" + "\n".join(hits)
