"""The run directory: a manifest and append-only samples, resumable.

Layout (format ``lite_align.run/1``)::

    RUN_DIR/
      manifest.json          settings, models (path, size, sha256), seeds, versions, timings
      samples/<cond>.jsonl   one JSON object per finished sample (data.Sample.to_json)
      aux/<name>.jsonl       intermediate texts the study needs (teacher's static answers, summaries)
      prompts.jsonl          the prompt set (the paper's instance format)
      results.json           computed metrics, so reports re-render without regenerating

Every sample is appended, flushed and fsync'ed before the next is reported done. A half-written
last line (a killed process) is cut off when the file is opened again, so appends continue on a
clean line and every complete line stays byte-identical. Reopening a run with different settings
is refused, naming the first setting that differs.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .data import Sample
from .errors import RunDirError

FORMAT = "lite_align.run/1"
MANIFEST = "manifest.json"


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


def _settings_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
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
                json.loads(data[last_start:end])
                return 0
            except ValueError:
                keep = last_start
        else:
            keep = data.rfind(b"\n") + 1
        fh.truncate(keep)
        return end - keep


class RunStore:
    """A run directory opened for writing (``identity``: the settings that decide the samples)."""

    def __init__(self, run_dir: str | Path, identity: Mapping[str, Any]) -> None:
        self.dir = Path(run_dir).expanduser()
        self.identity = dict(identity)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "samples").mkdir(exist_ok=True)
            (self.dir / "aux").mkdir(exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"cannot create run directory {self.dir}: {exc.strerror}; choose another --out") from None
        if not os.access(self.dir, os.W_OK):
            raise RunDirError(f"run directory {self.dir} is not writable; choose another --out")
        manifest_path = self.dir / MANIFEST
        self.resumed = manifest_path.exists()
        if self.resumed:
            old = read_manifest(self.dir)
            diff = _settings_diff(old.get("identity", {}), self.identity)
            if diff is not None:
                raise RunDirError(
                    f"{self.dir} holds a run with different settings ({diff}); use another --out or the same settings"
                )
            self.manifest: dict[str, Any] = old
        else:
            self.manifest = {"format": FORMAT, "identity": self.identity}
            self.write_manifest()
        self._handles: dict[Path, Any] = {}
        self.repaired: dict[str, int] = {}
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
                    rec = json.loads(line)
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

    def write_results(self, results: Mapping[str, Any]) -> None:
        _atomic_write_json(self.dir / "results.json", {"format": "lite_align.results/1", **results})

    def close(self) -> None:
        for fh in self._handles.values():
            try:
                fh.close()
            except OSError:
                pass
        self._handles.clear()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{run_dir} is not a lite_align run directory (no {MANIFEST})") from None
    except (ValueError, UnicodeDecodeError):
        raise RunDirError(f"{path} is not valid JSON; the run directory is damaged") from None
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
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise RunDirError(f"{path} is not valid JSON; rerun the analysis to rebuild it") from None
    return data if isinstance(data, dict) else None
