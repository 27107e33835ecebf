"""models.lock: what `lite-align models pull` downloaded, and the check a run makes against it.

The lock sits beside the registry file in use (``models.toml`` -> ``models.lock``, ``--registry
FILE`` -> ``models.lock`` in FILE's folder). One ``[models.NAME]`` table per pulled file:

    repo, file      where it came from on the hub
    revision        the branch, tag or commit asked for
    commit          the commit the hub resolved it to
    sha256, size    the bytes that were verified and moved into place
    path            where they went (relative to the lock's folder when inside it)
    pulled          when (UTC)

Only ``pull`` writes it (the whole file, atomically). Every run that uses a model file, by registry
name or by path, calls :func:`check_against_lock` first: a file the lock records must still have
the recorded size and sha256 (hashes are memoised by path, size and mtime, see ``sha256_file``), or
the run stops with one line saying what to do. Files the lock does not record are not checked.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import ModelFileError, RegistryError
from .gguf_check import sha256_file

LOCK_NAME = "models.lock"
LOCK_VERSION = 1
_FIELDS = ("repo", "file", "revision", "commit", "sha256", "size", "path", "pulled")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class LockEntry:
    name: str
    repo: str
    file: str
    revision: str
    commit: str
    sha256: str
    size: int
    path: str  # as written: relative to the lock's folder, or absolute
    pulled: str  # ISO 8601, UTC

    def file_path(self, lock_dir: Path) -> Path:
        p = Path(self.path).expanduser()
        return p if p.is_absolute() else lock_dir / p


def lock_path(registry_path: str | Path) -> Path:
    """The lock beside a registry file."""
    return Path(registry_path).expanduser().parent / LOCK_NAME


def read_lock(path: Path) -> dict[str, LockEntry]:
    """The entries of a lock file ({} when there is none). A damaged lock is a one-line RegistryError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"cannot read {path} ({exc}); delete it and pull the models again") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+)", str(exc))
        line = f":{m.group(1)}" if m else ""
        raise RegistryError(
            f"{path}{line}: malformed lock file; lite-align writes it, so delete it and pull the models again"
        ) from None
    if data.get("version") != LOCK_VERSION:
        version = data.get("version")
        raise RegistryError(f"{path}: lock version {version!r} is not {LOCK_VERSION}; delete it and pull again")
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise RegistryError(f"{path}: 'models' must be a table; delete the file and pull the models again")
    entries: dict[str, LockEntry] = {}
    for name, raw in models.items():
        if not isinstance(raw, dict) or set(_FIELDS) - set(raw):
            missing = ", ".join(sorted(set(_FIELDS) - set(raw))) if isinstance(raw, dict) else "every field"
            raise RegistryError(f"{path}: models.{name} lacks {missing}; delete that table and pull {name} again")
        size, sha = raw["size"], raw["sha256"]
        if not isinstance(size, int) or not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise RegistryError(f"{path}: models.{name} has a bad size or sha256; delete that table and pull again")
        strings = {k: str(raw[k]) for k in _FIELDS if k != "size"}
        entries[name] = LockEntry(name=name, size=size, **strings)
    return entries


def toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def render_lock(entries: dict[str, LockEntry]) -> str:
    lines = [
        f"# lite_align lock file, written by `lite-align models pull` (format version {LOCK_VERSION}).",
        "# Runs that use one of these files check its size and sha256 here first. Pull again to refresh",
        "# an entry; delete an entry's table to stop checking that file.",
        f"version = {LOCK_VERSION}",
    ]
    for name in sorted(entries):
        e = asdict(entries[name])
        lines += ["", f"[models.{toml_string(name)}]"]
        for key in _FIELDS:
            value = e[key]
            lines.append(f"{key} = {value}" if isinstance(value, int) else f"{key} = {toml_string(value)}")
    return "\n".join(lines) + "\n"


def record(path: Path, entry: LockEntry) -> None:
    """Add or replace ``entry`` in the lock at ``path`` (written whole to a temporary file, then renamed)."""
    entries = read_lock(path)
    entries[entry.name] = entry
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(render_lock(entries), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise RegistryError(
            f"cannot write {path} ({exc.strerror}); the file was downloaded but is not locked"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def relative_to_lock(lock: Path, file: Path) -> str:
    """How the lock writes a file's path: relative to the lock's folder when inside it."""
    try:
        return file.resolve().relative_to(lock.parent.resolve()).as_posix()
    except ValueError:
        return str(file.resolve())


def find_entry(entries: dict[str, LockEntry], lock_dir: Path, name: str | None, file: Path) -> LockEntry | None:
    """The entry for a file, found by its path, else by the registry name it was asked for by."""
    resolved = file.resolve()
    for entry in entries.values():
        if entry.file_path(lock_dir).resolve() == resolved:
            return entry
    return entries.get(name) if name else None


def mismatch(entry: LockEntry, size: int, sha256: str | None) -> str | None:
    """Why a file of ``size`` bytes and ``sha256`` (None: not computed) fails ``entry``, or None."""
    if size != entry.size:
        return f"{size} bytes, locked {entry.size}"
    if sha256 is not None and sha256 != entry.sha256:
        return f"sha256 {sha256[:12]}…, locked {entry.sha256[:12]}…"
    return None


def check_against_lock(registry_path: str | Path, name: str | None, file: Path) -> None:
    """Refuse (ModelFileError, one line) a model file whose lock entry it no longer matches."""
    lock = lock_path(registry_path)
    if not lock.is_file():
        return
    entry = find_entry(read_lock(lock), lock.parent, name, file)
    if entry is None:
        return

    size = file.stat().st_size
    why = mismatch(entry, size, None) or mismatch(entry, size, sha256_file(file))
    if why:
        raise ModelFileError(
            f"{file} does not match {lock} ({why}, from {entry.repo} at {entry.commit[:12]}): "
            f"pull it again with `lite-align models pull {entry.name}`, or delete the [models.{entry.name}] "
            f"table from {lock.name} if you replaced the file on purpose"
        )


def lock_state(registry_path: str | Path, name: str, file: Path | None, sha256: str | None) -> dict[str, Any]:
    """What ``lite-align models`` shows of an entry: when it was pulled, and whether its file
    matches the lock ("ok", "mismatch", "missing"), or None for both when the lock lacks it."""
    lock = lock_path(registry_path)
    entries = read_lock(lock)
    entry = entries.get(name) if file is None else find_entry(entries, lock.parent, name, file)
    if entry is None:
        return {"pulled": None, "locked": None}
    pulled = {"repo": entry.repo, "file": entry.file, "revision": entry.revision, "commit": entry.commit,
              "sha256": entry.sha256, "size": entry.size, "at": entry.pulled}  # fmt: skip
    if file is None or not file.is_file():
        return {"pulled": pulled, "locked": "missing"}
    bad = mismatch(entry, file.stat().st_size, sha256)
    return {"pulled": pulled, "locked": "mismatch" if bad else "ok"}


__all__ = [
    "LOCK_NAME",
    "LockEntry",
    "check_against_lock",
    "find_entry",
    "lock_path",
    "lock_state",
    "read_lock",
    "record",
    "relative_to_lock",
    "render_lock",
]
