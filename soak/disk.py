"""What the hub's data directory holds, for the soak's growth-per-contact figure: the files (the
SQLite databases, their write-ahead logs, the outbox), and inside each database the bytes per
table and index (SQLite's `dbstat`), with the pages a database keeps free after rows were deleted
(the drained queue's).

Measured twice: while the hub runs (what an operator's disk holds at peak: the WAL files keep the
size of their largest stretch between checkpoints) and after a clean stop (SQLite checkpoints
the WAL into the database and removes it on the last close), which is the lasting growth.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class DatabaseUse:
    bytes: int = 0
    free_bytes: int = 0
    #: table or index → bytes of its pages, largest first.
    objects: dict[str, int] = field(default_factory=dict)
    #: Bytes of those pages left unused (rows that do not fill their pages), per table or index.
    unused: dict[str, int] = field(default_factory=dict)


@dataclass
class DataDirUse:
    total: int = 0
    #: file name → bytes
    files: dict[str, int] = field(default_factory=dict)
    databases: dict[str, DatabaseUse] = field(default_factory=dict)

    @property
    def wal_bytes(self) -> int:
        return sum(size for name, size in self.files.items() if name.endswith("-wal"))

    def lines(self, contacts: int) -> list[str]:
        per = max(contacts, 1)
        lines = ["  files: " + ", ".join(f"{name} {size / 1024:.0f} kB" for name, size in self.files.items())]
        for name, use in self.databases.items():
            top = list(use.objects.items())[:5]
            lines.append(f"  {name}: {use.bytes / per:.0f} B/contact, of which free pages {use.free_bytes / per:.0f}; "
                         + ", ".join(f"{table} {size / per:.0f} ({use.unused.get(table, 0) * 100 // max(size, 1)} % "
                                     f"unused)" for table, size in top))
        return lines


def measure(data_dir: Path, *, tables: bool = True) -> DataDirUse:
    use = DataDirUse()
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        size = path.stat().st_size
        use.files[str(path.relative_to(data_dir))] = size
        use.total += size
    if tables:
        for path in sorted(data_dir.glob("*.db")):
            use.databases[path.name] = _database(path)
    return use


def _database(path: Path) -> DatabaseUse:
    """Read-only: the hub may still be running (WAL mode lets a reader in)."""
    use = DatabaseUse()
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return use
    try:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        use.bytes = page_size * db.execute("PRAGMA page_count").fetchone()[0]
        use.free_bytes = page_size * db.execute("PRAGMA freelist_count").fetchone()[0]
        rows = db.execute("SELECT name, SUM(pgsize), SUM(unused) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
        use.objects = {name: size for name, size, _ in rows}
        use.unused = {name: unused for name, _, unused in rows}
    except sqlite3.Error:
        pass  # an SQLite without dbstat: the file sizes still say where the bytes are
    finally:
        db.close()
    return use
