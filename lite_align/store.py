"""The run directory: a manifest and append-only samples, resumable.

Layout (format ``lite_align.run/1``)::

    RUN_DIR/
      manifest.json          settings, models (path, size, sha256), seeds, versions, timings
      samples/<cond>.jsonl   one JSON object per finished sample (data.Sample.to_json)
      aux/<name>.jsonl       intermediate texts the study needs (teacher's static answers, summaries)
      prompts.jsonl          the prompt set (the paper's instance format)
      results.json           computed metrics, so reports re-render without regenerating
      .lock                  locked (``fcntl.flock``) by the process writing the run; holds its pid

One process writes a run directory at a time: :class:`RunLock` takes an exclusive lock for as long
as the store is open, and a second run on the same directory is refused, naming the holder's pid.
Every sample is appended, flushed and fsync'ed before the next is reported done. A half-written
last line (a killed process) is cut off when the file is opened again, so appends continue on a
clean line and every complete line stays byte-identical. Reopening a run with different settings
is refused, naming the first setting that differs.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from .data import Sample
from .errors import RunDirError
from .jsonio import loads as json_loads

FORMAT = "lite_align.run/1"
MANIFEST = "manifest.json"
LOCK = ".lock"


def _atomic_write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, ensure_ascii=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, exc) from None


def _write_error(path: Path, exc: OSError) -> RunDirError:
    if exc.errno == errno.ENOSPC:
        return RunDirError(
            f"disk full while writing {path}; finished samples are kept: "
            "free space and rerun the same command to resume"
        )
    return RunDirError(f"cannot write {path}: {exc.strerror}; choose another --out directory")


def settings_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return f"{key}: {old.get(key)!r} in the existing run, {new.get(key)!r} now"
    return None


def repair_tail(path: Path) -> int:
    """Cut a half-written last line (no trailing newline, or not valid JSON) off a JSONL file.
    Returns the number of bytes removed."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        data = fh.read()
        end = len(data)
        if data.endswith(b"\n"):
            last_start = data.rfind(b"\n", 0, end - 1) + 1
            try:
                json_loads(data[last_start:end])
                return 0
            except ValueError:
                keep = last_start
        else:
            keep = data.rfind(b"\n") + 1
        fh.truncate(keep)
        return end - keep


def _create_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot create run directory {path}: {exc.strerror}; choose another --out") from None
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise RunDirError(f"run directory {path} is not writable; choose another --out")


@runtime_checkable
class SupportsJson(Protocol):
    """A typed record that writes itself as JSON (``results.Results``)."""

    def to_json(self) -> dict[str, Any]: ...


class RunLock:
    """An exclusive lock on a run directory: ``fcntl.flock`` on ``RUN_DIR/.lock``, held while a run
    writes there. The kernel drops the lock when the process ends, however it ends (SIGKILL, a
    crash), so a dead run never leaves a stale lock; the pid in the file only names the holder in
    the message a second run gets. Taking the lock again in the process that holds it is counted,
    not refused (the CLI takes it before planning, the store again when it opens)."""

    _held: ClassVar[dict[str, list[int]]] = {}  # real path -> [file descriptor, times taken]

    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir).expanduser()
        self._key: str | None = None

    def acquire(self) -> RunLock:
        """Create the directory if needed and lock it, or raise a one-line RunDirError."""
        if self._key is not None:
            return self
        _create_dir(self.dir)
        key = os.path.realpath(self.dir)
        held = RunLock._held.get(key)
        if held is not None:
            held[1] += 1
            self._key = key
            return self
        path = self.dir / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise RunDirError(f"cannot open {path} ({exc.strerror}); choose another --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _lock_holder(fd) if exc.errno in (errno.EAGAIN, errno.EACCES) else None
            os.close(fd)
            if holder is None and exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise RunDirError(f"cannot lock {path} ({exc.strerror}); choose another --out") from None
            raise RunDirError(
                f"{self.dir} is in use by another lite-align run ({holder}); wait for it to end, "
                "or stop it and rerun to resume, or use another --out"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise _write_error(path, exc) from None
        RunLock._held[key] = [fd, 1]
        self._key = key
        return self

    def release(self) -> None:
        if self._key is None:
            return
        held = RunLock._held[self._key]
        held[1] -= 1
        if held[1] == 0:
            del RunLock._held[self._key]
            os.close(held[0])  # closing the descriptor drops the lock
        self._key = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "pid unknown"


class RunStore:
    """A run directory opened for writing (``identity``: the settings that decide the samples),
    locked against other processes until :meth:`close`."""

    manifest: dict[str, Any]
    resumed: bool
    repaired: dict[str, int]

    def __init__(self, run_dir: str | Path, identity: Mapping[str, Any]) -> None:
        self.dir = Path(run_dir).expanduser()
        self.identity = dict(identity)
        self._handles: dict[Path, Any] = {}
        self._lock = RunLock(self.dir).acquire()
        try:
            self._open()
        except BaseException:
            self._lock.release()
            raise

    def _open(self) -> None:
        for sub in ("samples", "aux"):
            _create_dir(self.dir / sub)
        manifest_path = self.dir / MANIFEST
        self.resumed = manifest_path.exists()
        if self.resumed:
            old = read_manifest(self.dir)
            diff = settings_diff(old.get("identity", {}), self.identity)
            if diff is not None:
                raise RunDirError(
                    f"{self.dir} holds a run with different settings ({diff}); use another --out or the same settings"
                )
            self.manifest = old
        else:
            self.manifest = {"format": FORMAT, "identity": self.identity}
            self.write_manifest()
        self.repaired = {}
        for sub in ("samples", "aux"):
            for f in sorted((self.dir / sub).glob("*.jsonl")):
                cut = repair_tail(f)
                if cut:
                    self.repaired[f"{sub}/{f.name}"] = cut

    # --- paths -------------------------------------------------------------------------------
    def samples_path(self, condition: str) -> Path:
        return self.dir / "samples" / f"{condition}.jsonl"

    def aux_path(self, name: str) -> Path:
        return self.dir / "aux" / f"{name}.jsonl"

    # --- reading -----------------------------------------------------------------------------
    def load(self, path: Path) -> list[Sample]:
        if not path.exists():
            return []
        out = []
        with open(path, encoding="utf-8") as fh:
            for i, line in enumerate(fh, 1):
                try:
                    rec = json_loads(line)
                    out.append(Sample(**rec))
                except (ValueError, TypeError):
                    raise RunDirError(
                        f"{path}:{i}: malformed sample line; move the run aside and start again"
                    ) from None
        return out

    def samples(self, condition: str) -> list[Sample]:
        return self.load(self.samples_path(condition))

    def aux(self, name: str) -> list[Sample]:
        return self.load(self.aux_path(name))

    def done_keys(self, path: Path) -> set[tuple[int, int]]:
        return {(s.prompt_id, s.sample_index) for s in self.load(path)}

    # --- writing -----------------------------------------------------------------------------
    def append(self, path: Path, sample: Sample) -> None:
        """Append one sample; on return it is on disk."""
        line = json.dumps(sample.to_json(), ensure_ascii=False) + "\n"
        try:
            fh = self._handles.get(path)
            if fh is None:
                fh = self._handles[path] = open(path, "a", encoding="utf-8")
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        except OSError as exc:
            raise _write_error(path, exc) from None

    def update_manifest(self, **fields: Any) -> None:
        self.manifest.update(fields)
        self.write_manifest()

    def write_manifest(self) -> None:
        _atomic_write_json(self.dir / MANIFEST, self.manifest)

    def write_prompts(self, texts: list[str]) -> None:
        """The run's prompt set, in the paper's instance format (prompt id = line index), so a run
        directory is self-contained for reports, comparisons and bundles."""
        path = self.dir / "prompts.jsonl"
        if path.exists():
            return
        lines = "".join(
            json.dumps({"messages": [{"role": "user", "content": t}]}, ensure_ascii=False) + "\n" for t in texts
        )
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(lines, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _write_error(path, exc) from None

    def write_results(self, results: Mapping[str, Any] | SupportsJson) -> None:
        """``results.json``: the analysis's ``Results`` (or its JSON), after the format line."""
        doc = results.to_json() if isinstance(results, SupportsJson) else results
        _atomic_write_json(self.dir / "results.json", {"format": "lite_align.results/1", **doc})

    def close(self) -> None:
        for fh in self._handles.values():
            try:
                fh.close()
            except OSError:
                pass
        self._handles.clear()
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    try:
        data = json_loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        what = "a file" if Path(run_dir).is_file() else f"no {MANIFEST}"
        raise RunDirError(
            f"{run_dir} is not a lite_align run directory ({what}); give the folder a lite-align run wrote"
        ) from None
    except (ValueError, UnicodeDecodeError):
        raise RunDirError(f"{path} is not valid JSON; the run directory is damaged") from None
    except OSError as exc:
        raise RunDirError(f"cannot read {path} ({exc.strerror}); check the run directory") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RunDirError(
            f"{path}: unknown format {data.get('format') if isinstance(data, dict) else None!r}; expected {FORMAT}"
        )
    return data


def read_results(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "results.json"
    if not path.exists():
        return None
    try:
        data = json_loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise RunDirError(f"{path} is not valid JSON; rerun the analysis to rebuild it") from None
    except OSError as exc:
        raise RunDirError(f"cannot read {path} ({exc.strerror}); check the run directory") from None
    return data if isinstance(data, dict) else None
