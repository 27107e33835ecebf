"""One SQLite file as a versioned, crash-safe cache (the embedding and the judge caches).

A file written by another format or version, or one SQLite reports as damaged, is deleted and
built again; a file that is locked, read-only or on a full disk is a user problem and raises
``ConfigError`` naming the file and what to do.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import ConfigError


def is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    """A damaged or foreign file (rebuild it), as opposed to a locked, read-only or full one."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT"))


def unusable(what: str, path: Path, exc: Exception) -> ConfigError:
    return ConfigError(
        f"cannot use the {what} {path} ({exc}); free disk space, or set LITE_ALIGN_CACHE to a writable "
        "folder on a local disk"
    )


def delete_files(path: Path) -> None:
    """The database and its WAL side files."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(str(path) + suffix).unlink()


def open_versioned(
    path: Path, tables: Sequence[str], meta: Mapping[str, str], *, what: str, synchronous_normal: bool = False
) -> tuple[sqlite3.Connection, int]:
    """A connection (autocommit, WAL) to ``path`` holding ``tables`` and a ``meta`` table equal to
    ``meta``; returns it with the number of times the file had to be rebuilt (0 or 1)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise unusable(what, path, exc) from None
    for attempt in range(2):
        conn = None
        try:
            conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            if synchronous_normal:
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            for table in tables:
                conn.execute(table)
            conn.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", meta.items())
            conn.execute("COMMIT")
            if dict(conn.execute("SELECT key, value FROM meta").fetchall()) == dict(meta):
                return conn, attempt
        except sqlite3.DatabaseError as exc:
            if not is_corrupt(exc):
                raise unusable(what, path, exc) from None
        if conn is not None:
            conn.close()
        if attempt == 0:
            delete_files(path)
    raise ConfigError(f"cannot set up the {what} {path}; delete the file and run again")
