"""A consistent copy of a live SQLite database, with SQLite's online backup API."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def backup_sqlite(source: Path, target: Path) -> int:
    """Copy `source` to `target` while other connections may be writing. Returns the number
    of pages copied. The copy is written beside `target` and renamed, so it is whole or absent."""
    if not source.is_file():
        raise FileNotFoundError(f"no database at {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(partial)
    try:
        src.backup(dst, pages=1024)
        pages = int(dst.execute("PRAGMA page_count").fetchone()[0])
        # A backup is one file: no WAL beside it.
        dst.execute("PRAGMA journal_mode=DELETE")
        check = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"the copy failed its integrity check: {check}")
    finally:
        dst.close()
        src.close()
    partial.replace(target)
    return pages
