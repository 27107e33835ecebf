"""Classroom bundles: finished runs (and analyses of released outputs) in one checked archive,
replayed elsewhere with no generation model loaded.

    pack_bundle(["runs/a", "ConflictingQA/outputs"], "class.zip")   -> PackResult
    replay_bundle("class.zip")                                       -> Replay (every figure recomputed
                                                                        and compared with the bundled one)

The archive is a zip file (format ``lite_align.bundle/1``)::

    BUNDLE.json                    format, created, lite_align version, every file's path, size, sha256
    models.toml                    the registry the runs resolved their models with
    prompts/                       the prompt wording (system, static examples, summariser, judge)
    runs/<name>/                   manifest.json, prompts.jsonl, results.json, samples/, aux/
    released/<name>/sets/<set>/    a released samples.jsonl as it was (with its args.json)
    released/<name>/instances/     the prompt file those samples answer, when found
    released/<name>/baseline/      the sampled outputs a greedy reference is measured against
    released/<name>/analysis.json  the options of the analysis and its figures
    models/<sha>-<file>.gguf       the runs' model files (``with_models``), for rerunning them

Why zip rather than tar.gz: each entry has its own compression, so GGUF files (already packed
tightly; gzip would spend seconds per hundred MB to save little) are stored and the JSONL is
deflated; the central directory lets replay read BUNDLE.json and check every entry's name and
type before touching any data; and Windows and macOS open zip files without extra tools, which
matters in a classroom. Files are streamed in 1 MiB blocks, never held in memory whole.

Replay trusts nothing in the archive: names must be relative with no ``..``, entries must be
plain files or folders (no links, devices or pipes), no name may repeat, every file must be
listed in BUNDLE.json with the size and sha256 found, and nothing unlisted may be there. The runs
and released analyses BUNDLE.json names are folders of the archive (``runs/<name>``,
``released/<name>``, names of letters, digits, ``.``, ``_`` and ``-``), and the files an
analysis.json points to lie inside its folder: replay reads only the verified files it unpacked.
The checks protect against damage and accidental edits; BUNDLE.json is not signed, so they do not
prove who made a bundle.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from .analysis import analyse, recorded_vocab_sizes
from .compare import PAPER_SAMPLES, ordered_sets, read_released, released_dirs
from .conditions import TEACHER
from .errors import ConfigError, LiteAlignError
from .explain import DERIVED_PARTS, ENCODER_PARTS, JUDGE_PARTS, explain, part_is
from .jsonio import loads as json_loads
from .loaders import load_embedder
from .metrics.registry import families, is_embedding_metric, metrics, similarities, similarity
from .paths import prompts_dir
from .prompts import load_prompt_texts
from .readers import read_samples
from .registry import load_registry, registry_path
from .store import read_manifest, read_results
from .version import __version__

FORMAT = "lite_align.bundle/1"
INDEX = "BUNDLE.json"
ANALYSIS_FORMAT = "lite_align.released-analysis/1"
CHUNK = 1 << 20
RUN_FILES = ("manifest.json", "prompts.jsonl", "results.json")
RUN_DIRS = ("samples", "aux")
STORED_SUFFIXES = (".gguf", ".onnx", ".zip", ".gz")  # already compact: stored, not deflated
REL_TOL, ABS_TOL = 1e-5, 1e-7  # "equal" for recomputed figures (float noise across machines)


class BundleError(LiteAlignError):
    """A bundle cannot be written, or is damaged, unsafe or incomplete."""


# --------------------------------------------------------------------------------------------------
# Packing


@dataclass(frozen=True)
class PackResult:
    path: str
    files: int
    size: int  # bytes of the files, before compression
    archive_size: int
    runs: tuple[str, ...]
    released: tuple[str, ...]
    models: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


@dataclass
class _Entry:
    arcname: str
    source: Path | None = None
    data: bytes | None = None


def _unique(name: str, taken: set[str]) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "item"
    out, i = safe, 2
    while out in taken:
        out, i = f"{safe}-{i}", i + 1
    taken.add(out)
    return out


def _run_entries(run_dir: Path, name: str) -> list[_Entry]:

    manifest = read_manifest(run_dir)  # a lite_align run, of a format this version reads
    if not (run_dir / "results.json").is_file():
        raise BundleError(
            f"{run_dir} has no results.json; finish the run (rerun the same lite-align run) and pack again"
        )
    status = manifest.get("status", "complete")
    if status != "complete":
        raise BundleError(
            f"{run_dir} holds a run that is {status}, not complete; rerun the same lite-align run and pack again"
        )
    # read as replay will: a damaged file fails here, naming its line, rather than in a classroom
    read_samples(run_dir)
    read_results(run_dir)
    entries = [_Entry(f"runs/{name}/{f}", run_dir / f) for f in RUN_FILES if (run_dir / f).is_file()]
    for sub in RUN_DIRS:
        for f in sorted((run_dir / sub).glob("*.jsonl")):
            entries.append(_Entry(f"runs/{name}/{sub}/{f.name}", f))
    return entries


def _set_entries(folder: Path, prefix: str) -> list[_Entry]:
    """A released set folder: its samples.jsonl and args.json, as they are."""
    return [_Entry(f"{prefix}/{f}", folder / f) for f in ("samples.jsonl", "args.json") if (folder / f).is_file()]


def _released_entries(
    path: Path,
    name: str,
    *,
    reference: str | None,
    prompts: str | None,
    baseline: str | None,
    embeddings: bool,
) -> list[_Entry]:

    if path.is_file() and path.name != PAPER_SAMPLES:
        raise BundleError(f"{path}: pack released outputs as their folder or their {PAPER_SAMPLES}")
    inp = read_released(path, reference=reference, prompts=prompts, baseline=baseline, embeddings=embeddings)
    if path.is_file():
        folders = [path.parent]
    elif (path / PAPER_SAMPLES).is_file():
        folders = [path]
    else:
        folders = released_dirs(path)
    root = f"released/{name}"
    entries = [e for folder in folders for e in _set_entries(folder, f"{root}/sets/{folder.name}")]
    record: dict[str, Any] = {
        "format": ANALYSIS_FORMAT,
        "source": path.resolve().name,  # names, never the packer's folders (see _bundle_paths)
        "reference": reference,
        "embeddings": embeddings,
        "prompts": None,
        "baseline": None,
    }
    if inp.prompts_source:
        entries.append(_Entry(f"{root}/instances/data.jsonl", Path(inp.prompts_source)))
        record["prompts"] = "instances/data.jsonl"
    if baseline is not None:
        b = Path(baseline).expanduser()
        b_folder = b.parent if b.is_file() else b
        entries += _set_entries(b_folder, f"{root}/baseline/{b_folder.name}")
        record["baseline"] = f"baseline/{b_folder.name}"
    record["results"] = _plain(inp.results)
    record["manifest"] = _plain(_bundle_paths(inp.manifest, record))
    entries.append(_Entry(f"{root}/analysis.json", data=_json_bytes(record)))
    return entries


def _bundle_paths(manifest: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """A released analysis's manifest with the packer's paths replaced by the bundle's names, so a
    bundle does not carry its author's folder layout."""
    out = dict(manifest)
    out["source"] = record["source"]
    if "prompts_source" in out:
        out["prompts_source"] = record["prompts"] or ""
    if "baseline" in out:
        out["baseline"] = record["baseline"]
    sets = out.get("sets")
    if isinstance(sets, Mapping):
        out["sets"] = {
            k: {**v, "source": f"sets/{Path(str(v.get('source', ''))).parent.name}/samples.jsonl"}
            if isinstance(v, Mapping)
            else v
            for k, v in sets.items()
        }
    return out


def _prompt_entries() -> list[_Entry]:

    d = prompts_dir()
    files = [d / f for f in ("system.txt", "static_examples.txt", "summarize.txt")]
    files += sorted((d / "judge").glob("*.txt")) if (d / "judge").is_dir() else []
    return [_Entry(f"prompts/{f.relative_to(d).as_posix()}", f) for f in files if f.is_file()]


def _model_entries(run_dirs: Sequence[Path]) -> tuple[list[_Entry], list[dict[str, Any]]]:

    entries: list[_Entry] = []
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for run_dir in run_dirs:
        for role, rec in (read_manifest(run_dir).get("models") or {}).items():
            sha, path = rec.get("sha256"), rec.get("path")
            if not sha or not path or sha in seen:
                continue  # a server model (no file), or one packed already
            p = Path(path)
            if not p.is_file():
                raise BundleError(
                    f"{run_dir}: the {role} model {path} is missing; put it back or pack without --with-models"
                )
            seen.add(sha)
            arc = f"models/{sha[:12]}-{p.name}"
            entries.append(_Entry(arc, p))
            records.append({"path": arc, "name": rec.get("name"), "sha256": sha, "size": p.stat().st_size})
    return entries, records


def model_files_size(run_dirs: Iterable[str | Path]) -> int:
    """Bytes of the model files ``--with-models`` would add (for a warning before packing)."""
    sizes: dict[str, int] = {}
    for run_dir in run_dirs:
        try:
            models = read_manifest(run_dir).get("models") or {}
        except LiteAlignError:
            continue
        for rec in models.values():
            if rec.get("sha256") and isinstance(rec.get("size"), int):
                sizes[rec["sha256"]] = rec["size"]
    return sum(sizes.values())


def pack_bundle(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    with_models: bool = False,
    reference: str | None = None,
    prompts: str | None = None,
    baseline: str | None = None,
    embeddings: bool = False,
    registry: str | None = None,
) -> PackResult:
    """Write the bundle of ``paths`` (run directories, or released outputs: a samples.jsonl, its
    folder or a folder of such folders) to ``out``. ``reference``/``prompts``/``baseline``/
    ``embeddings`` are the analysis options of released outputs (as ``lite-align report`` takes
    them). The archive is written under a temporary name and renamed when complete."""
    if not paths:
        raise ConfigError("give at least one run directory or released samples to pack")
    taken: set[str] = set()
    entries: list[_Entry] = []
    runs: list[tuple[str, Path]] = []
    released: list[str] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise BundleError(f"{p}: no such file or directory; give a run directory or released samples")
        if (p / "manifest.json").is_file():
            name = _unique(p.resolve().name, taken)
            entries += _run_entries(p, name)
            runs.append((name, p))
        elif p.is_file() or (p / PAPER_SAMPLES).is_file() or released_dirs(p):
            name = _unique(p.resolve().name if p.is_dir() else p.resolve().parent.name, taken)
            entries += _released_entries(
                p, name, reference=reference, prompts=prompts, baseline=baseline, embeddings=embeddings
            )
            released.append(name)
        else:
            raise BundleError(
                f"{p} is neither a lite_align run directory (manifest.json) nor released outputs "
                f"({PAPER_SAMPLES}, or folders holding one)"
            )
    notes = []
    entries += _prompt_entries()
    reg = registry_path(registry)
    if reg.is_file():
        entries.append(_Entry("models.toml", reg))
    else:
        notes.append(f"no models.toml at {reg}: the bundle holds none")
    model_records: list[dict[str, Any]] = []
    if with_models:
        model_entries, model_records = _model_entries([d for _, d in runs])
        entries += model_entries
    texts_version = _prompt_texts_version()
    for name, run_dir in runs:
        used = read_manifest(run_dir).get("prompt_texts_version")
        if used and texts_version and used != texts_version:
            notes.append(f"run {name} used other prompt wording ({used}) than the prompts/ packed ({texts_version})")
    index: dict[str, Any] = {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "lite_align_version": __version__,
        "runs": [{"name": n, "path": f"runs/{n}", "source": d.resolve().name} for n, d in runs],
        "released": [{"name": n, "path": f"released/{n}"} for n in released],
        "models": model_records,
        "notes": notes,
        "files": [],
    }
    target = Path(out).expanduser()
    partial = target.with_name(target.name + ".partial")
    total = 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(partial, "w", allowZip64=True) as zf:
            for e in entries:
                size, sha = _write_entry(zf, e)
                index["files"].append({"path": e.arcname, "size": size, "sha256": sha})
                total += size
            for rec in model_records:  # the packed file must be the one the run used
                got = next(f["sha256"] for f in index["files"] if f["path"] == rec["path"])
                if got != rec["sha256"]:
                    raise BundleError(
                        f"model file for {rec['path']} has sha256 {got[:12]}, the run recorded {rec['sha256'][:12]}; "
                        "put the original file back or pack without --with-models"
                    )
            _write_entry(zf, _Entry(INDEX, data=_json_bytes(index)))
        os.replace(partial, target)
    except OSError as exc:
        raise BundleError(f"--out: cannot write {target} ({exc.strerror}); choose another file") from None
    finally:
        partial.unlink(missing_ok=True)
    return PackResult(
        path=str(target),
        files=len(index["files"]),
        size=total,
        archive_size=target.stat().st_size,
        runs=tuple(n for n, _ in runs),
        released=tuple(released),
        models=tuple(r["path"] for r in model_records),
        notes=tuple(notes),
    )


def _prompt_texts_version() -> str:

    try:
        return load_prompt_texts().version
    except LiteAlignError:
        return ""


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False, default=_no_nan) + "\n").encode("utf-8")


def _no_nan(x: Any) -> Any:
    raise TypeError(f"not JSON: {type(x).__name__}")


def _plain(x: Any) -> Any:
    """JSON-ready copy: tuples to lists, NaN and infinities to None, numpy numbers to floats."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, (str, int)):
        return x
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    return None if math.isnan(f) or math.isinf(f) else f


def _write_entry(zf: zipfile.ZipFile, e: _Entry) -> tuple[int, str]:
    info = zipfile.ZipInfo(e.arcname, date_time=datetime.now().timetuple()[:6])
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    stored = e.arcname.endswith(STORED_SUFFIXES)
    info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    digest = hashlib.sha256()
    size = 0
    big = e.source is not None and e.source.stat().st_size > (1 << 31)
    with zf.open(info, "w", force_zip64=big) as dst:
        if e.data is not None:
            digest.update(e.data)
            dst.write(e.data)
            size = len(e.data)
        else:
            assert e.source is not None
            try:
                with open(e.source, "rb") as src:
                    while block := src.read(CHUNK):
                        digest.update(block)
                        dst.write(block)
                        size += len(block)
            except OSError as exc:
                raise BundleError(f"cannot read {e.source} ({exc.strerror}); check the file and pack again") from None
    return size, digest.hexdigest()


# --------------------------------------------------------------------------------------------------
# Checking and unpacking


@dataclass(frozen=True)
class BundleIndex:
    path: str
    index: dict[str, Any]

    @property
    def files(self) -> list[dict[str, Any]]:
        return list(self.index.get("files", []))


_DRIVE = re.compile(r"^[A-Za-z]:")


def unsafe_name(name: str) -> str | None:
    """Why an archive name may not be extracted (None when it may).

    >>> unsafe_name("runs/a/manifest.json") is None, unsafe_name("../x"), unsafe_name("/etc/passwd")
    (True, 'it climbs out of the folder (..)', 'it is an absolute path')
    """
    if not name or name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "it is an absolute path"
    if "\\" in name or "\x00" in name:
        return "it holds a backslash or NUL"
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        return "it climbs out of the folder (..)"
    if any(p in ("", ".") for p in parts):
        return "it has an empty or '.' part"
    return None


def _kind(info: zipfile.ZipInfo) -> str | None:
    """The kind of a non-regular entry ('symbolic link', 'device', ...), None for files and folders."""
    mode = info.external_attr >> 16
    if stat.S_IFMT(mode) == 0 or stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None  # no type bits (zips made on Windows, or by writestr): a plain entry
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise BundleError(f"{path}: no such file; give a bundle made by lite-align pack") from None
    except (zipfile.BadZipFile, OSError):
        raise BundleError(f"{path} is not a lite_align bundle (not a readable zip archive)") from None


def _read_index(zf: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    try:
        data = json_loads(zf.read(INDEX).decode("utf-8"))
    except KeyError:
        raise BundleError(f"{path} has no {INDEX}; it was not made by lite-align pack") from None
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile):
        raise BundleError(f"{path}: {INDEX} is damaged; ask for the bundle again") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise BundleError(f"{path}: {INDEX} has format {found!r}, this lite_align reads {FORMAT}")
    files = data.get("files")
    if not isinstance(files, list) or not all(
        isinstance(f, dict)
        and isinstance(f.get("path"), str)
        and isinstance(f.get("size"), int)
        and isinstance(f.get("sha256"), str)
        for f in files
    ):
        raise BundleError(f"{path}: {INDEX} has no valid file list; ask for the bundle again")
    _check_items(data, path)
    return data


_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def _check_items(index: Mapping[str, Any], path: Path) -> None:
    """Every run and released analysis BUNDLE.json names must be one of the archive's folders, so
    that replay reads the checksummed files and nothing outside them."""
    listed = [f["path"] for f in index["files"]]
    for kind in ("runs", "released"):
        items = index.get(kind) or []
        if not isinstance(items, list):
            raise BundleError(f"{path}: {INDEX} '{kind}' is not a list; ask for the bundle again")
        for i, item in enumerate(items):
            where = f"{path}: {INDEX} {kind}[{i}]"
            name = item.get("name") if isinstance(item, dict) else None
            folder = item.get("path") if isinstance(item, dict) else None
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise BundleError(f"{where}: its name {name!r} is not a plain folder name; ask for the bundle again")
            if folder != f"{kind}/{name}":
                why = unsafe_name(folder) if isinstance(folder, str) else "it is not text"
                detail = f": {why}" if why else ""
                raise BundleError(
                    f"{where}: path {folder!r} is not the archive folder {kind}/{name}{detail}; "
                    "replay reads only files inside the bundle: ask for the bundle again"
                )
            if not any(f.startswith(f"{folder}/") for f in listed):
                raise BundleError(f"{where}: the archive holds no files under {folder}/; ask for the bundle again")


def _hash_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, size: int, sink: BinaryIO | None = None) -> str:
    """sha256 of an entry's bytes, reading at most ``size + 1`` (a lying header cannot flood)."""
    digest = hashlib.sha256()
    got = 0
    with zf.open(info) as src:
        while got <= size:
            block = src.read(min(CHUNK, size + 1 - got))
            if not block:
                break
            got += len(block)
            digest.update(block)
            if sink is not None:
                sink.write(block)
    return digest.hexdigest() if got == size else "size differs"


def verify_bundle(path: str | Path) -> BundleIndex:
    """Check every entry's name and type, then every listed file's size and sha256; raise
    BundleError naming the first problem."""
    p = Path(path).expanduser()
    with _open_zip(p) as zf:
        infos = zf.infolist()
        names: set[str] = set()
        for info in infos:
            why = unsafe_name(info.filename)
            if why is not None:
                raise BundleError(f"{p}: refusing entry {info.filename!r}: {why}")
            kind = _kind(info)
            if kind is not None:
                raise BundleError(f"{p}: refusing entry {info.filename}: it is {kind}")
            if info.filename in names:
                raise BundleError(f"{p}: entry {info.filename} appears twice; the archive was tampered with")
            names.add(info.filename)
        index = _read_index(zf, p)
        by_name = {i.filename: i for i in infos}
        listed = {f["path"] for f in index["files"]}
        for f in index["files"]:
            why = unsafe_name(f["path"])
            if why is not None:
                raise BundleError(f"{p}: {INDEX} lists {f['path']!r}: {why}")
        extra = sorted(n for n in names if n not in listed and n != INDEX and not n.endswith("/"))
        if extra:
            raise BundleError(f"{p}: holds {extra[0]}, which {INDEX} does not list; the archive was changed")
        for f in index["files"]:
            member = by_name.get(f["path"])
            if member is None:
                raise BundleError(f"{p}: {f['path']} is missing (listed in {INDEX}); ask for the bundle again")
            try:
                sha = _hash_entry(zf, member, f["size"])
            except (zipfile.BadZipFile, OSError, EOFError):
                raise BundleError(f"{p}: {f['path']} is damaged (unreadable); ask for the bundle again") from None
            if sha != f["sha256"]:
                raise BundleError(
                    f"{p}: {f['path']} does not match its sha256 in {INDEX} (changed or damaged); "
                    "ask for the bundle again"
                )
    return BundleIndex(str(p), index)


def unpack_bundle(bundle: BundleIndex, into: str | Path) -> Path:
    """Extract a verified bundle's listed files into ``into`` (new or empty), hashing each again
    as it is written (the archive could change between the check and now)."""
    target = Path(into).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BundleError(f"--into {target}: not an empty folder; give a new or empty one")
    target.mkdir(parents=True, exist_ok=True)
    need = sum(f["size"] for f in bundle.files)
    free = shutil.disk_usage(target).free
    if need > free:
        raise BundleError(f"--into {target}: the bundle needs {need / 1e9:.1f} GB, {free / 1e9:.1f} GB are free")
    root = target.resolve()
    with _open_zip(Path(bundle.path)) as zf:
        for f in bundle.files:
            dest = (root / f["path"]).resolve()
            if not dest.is_relative_to(root):
                raise BundleError(f"{bundle.path}: refusing {f['path']}: it leaves the folder")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "xb") as sink:
                sha = _hash_entry(zf, zf.getinfo(f["path"]), f["size"], sink)
            if sha != f["sha256"]:
                raise BundleError(f"{bundle.path}: {f['path']} changed while unpacking; ask for the bundle again")
            os.chmod(dest, 0o644)
    return root


# --------------------------------------------------------------------------------------------------
# Replaying


@dataclass(frozen=True)
class FigureCheck:
    compared: int
    mismatches: list[dict[str, Any]]
    not_recomputed: int

    def to_json(self) -> dict[str, Any]:
        return {"compared": self.compared, "mismatches": self.mismatches, "not_recomputed": self.not_recomputed}


def _leaves(x: Any) -> int:
    if isinstance(x, Mapping):
        return sum(_leaves(v) for v in x.values())
    if isinstance(x, list):
        return sum(_leaves(v) for v in x)
    return 1


def _same_number(a: Any, b: Any) -> bool:
    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    if missing(a) or missing(b):
        return missing(a) and missing(b)
    return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=ABS_TOL)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def compare_figures(
    bundled: Any,
    recomputed: Any,
    *,
    skip: Callable[[str], bool] = lambda _: False,
    skip_keys: Callable[[tuple[str, ...]], bool] = lambda _: False,
) -> FigureCheck:
    """Every figure of ``bundled`` against ``recomputed``, walking the bundled document: numbers
    within float noise (REL_TOL, ABS_TOL; NaN equals None), everything else exactly. Parts that
    ``skip(path)`` names (a dotted path) or ``skip_keys(keys)`` (the path's keys: a set's name may
    hold dots), or that the recomputation lacks, are counted as not recomputed.

    >>> compare_figures({"a": {"x": 0.5, "n": 3}}, {"a": {"x": 0.5000001, "n": 3}}).mismatches
    []
    >>> compare_figures({"a": 1.0, "b": "yes"}, {"a": 1.1}).to_json()["not_recomputed"]
    1
    """
    compared = 0
    not_recomputed = 0
    mismatches: list[dict[str, Any]] = []

    def walk(b: Any, r: Any, where: str, keys: tuple[str, ...]) -> None:
        nonlocal compared, not_recomputed
        if isinstance(b, Mapping):
            if not isinstance(r, Mapping):
                compared += 1
                mismatches.append({"figure": where, "bundled": "a table", "recomputed": r})
                return
            for k, v in b.items():
                if k == "format":
                    continue
                path = f"{where}.{k}" if where else str(k)
                if skip(path) or skip_keys((*keys, str(k))) or k not in r:
                    not_recomputed += _leaves(v)
                    continue
                walk(v, r[k], path, (*keys, str(k)))
            return
        if isinstance(b, list) and isinstance(r, list) and len(b) == len(r):
            for i, (bv, rv) in enumerate(zip(b, r, strict=True)):
                walk(bv, rv, f"{where}[{i}]", keys)
            return
        compared += 1
        number_like = (_is_number(b) or b is None) and (_is_number(r) or r is None)
        same = _same_number(b, r) if number_like else b == r
        if not same:
            mismatches.append({"figure": where, "bundled": b, "recomputed": r})

    walk(bundled, _plain(recomputed), "", ())
    return FigureCheck(compared, mismatches, not_recomputed)


def needs_encoder(keys: tuple[str, ...]) -> bool:
    """Whether the figure at ``keys`` in a results document comes from the sentence encoder, as the
    metric registry and the explain module declare it: a registered metric or similarity that
    needs it, a verdict or finding drawn from such figures, an explain part computed from it."""
    if len(keys) >= 3 and keys[0] == "diversity" and keys[2] == "agreement":  # drawn from every measure
        return any(f.needs_encoder for f in families())
    if len(keys) >= 3 and keys[0] == "diversity":
        key = keys[3] if len(keys) == 4 and keys[2] == "ci" else keys[2]
        return len(keys) in (3, 4) and is_embedding_metric(key)
    if len(keys) == 3 and keys[0] == "recover":
        if keys[2] == "verdict":  # drawn from every similarity
            return any(s.needs_encoder for s in similarities())
        sim = similarity(keys[2])
        return sim is not None and sim.needs_encoder
    if keys == ("finding",):  # drawn from the metrics that name themselves for it
        return any(m.finding and is_embedding_metric(m.key) for m in metrics())
    return keys[:1] == ("explain",) and part_is(keys[1:], ENCODER_PARTS)


@dataclass
class ReplayItem:
    """One run or released analysis of a bundle, recomputed."""

    name: str
    kind: str  # "run" or "released"
    path: str
    manifest: dict[str, Any]
    results: dict[str, Any]
    sets: dict[str, Any]
    prompts: dict[int, str]
    teacher: str | None
    check: FigureCheck
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "path": self.path,
            "check": self.check.to_json(),
            "notes": self.notes,
        }


@dataclass
class Replay:
    bundle: BundleIndex
    unpacked: Path
    items: list[ReplayItem]
    kept: bool

    @property
    def reproduced(self) -> bool:
        return all(not i.check.mismatches for i in self.items)

    def to_json(self) -> dict[str, Any]:
        idx = self.bundle.index
        return {
            "bundle": self.bundle.path,
            "created": idx.get("created"),
            "lite_align_version": idx.get("lite_align_version"),
            "files": len(self.bundle.files),
            "unpacked": str(self.unpacked) if self.kept else f"{self.unpacked} (removed)",
            "reproduced": self.reproduced,
            "items": [i.to_json() for i in self.items],
        }


def _replay_embedder(name: str | None, recorded: str | None, root: Path) -> tuple[Any, str]:
    """The sentence encoder for embedding figures: ``name`` (--embedder), else the one the runs
    recorded, looked up in the bundle's models.toml, then the local one; else the default."""
    wanted = name or recorded
    registries = []
    for where in (root / "models.toml", None):
        try:
            if where is None or where.is_file():
                registries.append(load_registry(where))
        except LiteAlignError:
            continue
    for reg in registries:
        if wanted and wanted in reg.embedders:
            try:
                return load_embedder(reg, wanted), wanted
            except LiteAlignError:
                continue  # e.g. a path on the machine that made the bundle
    if name:
        raise ConfigError(f"--embedder: no usable embedder '{name}' in the bundle's models.toml or this project's")
    for fallback in [*registries, None]:
        try:
            embedder = load_embedder(fallback)
        except LiteAlignError:
            continue
        return embedder, getattr(embedder, "name", "default")
    raise ConfigError("no sentence embedder can be loaded here; install it (./install.sh) or give --lexical-only")


def _recompute_explain(bundled: Any, sets: Mapping[str, Any], embedder: Any, prompts: Mapping[int, str]) -> Any:
    """The judge-free part of a bundled ``explain`` section, recomputed (None when its sets are absent)."""
    if not isinstance(bundled, Mapping) or bundled.get("base") not in sets or bundled.get("aligned") not in sets:
        return None

    return explain(sets[bundled["base"]], sets[bundled["aligned"]], embedder=embedder, prompts=prompts)


def _replay_run(root: Path, entry: Mapping[str, Any], embedder: Any, lexical_only: bool) -> ReplayItem:

    run_dir = root / entry["path"]
    manifest = read_manifest(run_dir)
    bundled = read_results(run_dir) or {}
    found = ordered_sets(read_samples(run_dir))
    conditions = (manifest.get("settings") or {}).get("conditions") or list(found)
    sets = {c: found[c] for c in conditions if c in found}
    prompts: dict[int, str] = next((dict(s.prompts) for s in sets.values() if s.prompts), {})
    vocab = recorded_vocab_sizes(bundled)  # EAD with the vocabulary size the run used
    results = analyse(sets, embedder=embedder, prompts=prompts, vocab_sizes=vocab).to_json()
    notes = []
    judged = False
    if "explain" in bundled:
        part = _recompute_explain(bundled["explain"], sets, embedder, prompts)
        if part is not None:
            results["explain"] = part
            judged = isinstance(bundled["explain"], Mapping) and bool(bundled["explain"].get("judge"))
            if judged:
                notes.append("the judge's figures are not recomputed (they need the judge model)")
    skip = _skipper(lexical_only, judged)
    check = compare_figures(bundled, results, skip_keys=skip)
    if lexical_only:
        notes.append(
            "--lexical-only: embedding figures, verdicts, the finding and the quality filters were not recomputed"
        )
    manifest = {**manifest, "run_dir": str(run_dir)}
    return ReplayItem(entry["name"], "run", str(run_dir), manifest, results, sets, prompts, TEACHER, check, notes)


def _skipper(lexical_only: bool, judged: bool = False) -> Callable[[tuple[str, ...]], bool]:
    def skip(keys: tuple[str, ...]) -> bool:
        inside = keys[1:] if keys[:1] == ("explain",) else None
        if judged and inside is not None and part_is(inside, JUDGE_PARTS):
            return True
        if (judged or lexical_only) and inside is not None and part_is(inside, DERIVED_PARTS):
            return True  # the sentence draws on both
        return lexical_only and needs_encoder(keys)

    return skip


def _replay_released(root: Path, entry: Mapping[str, Any], lexical_only: bool) -> ReplayItem:

    folder = root / entry["path"]
    try:
        record = json_loads((folder / "analysis.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise BundleError(f"{entry['path']}/analysis.json is missing or damaged; ask for the bundle again") from None
    if not isinstance(record, dict) or record.get("format") != ANALYSIS_FORMAT:
        raise BundleError(f"{entry['path']}/analysis.json: expected format {ANALYSIS_FORMAT}")
    for key in ("prompts", "baseline"):  # names inside the folder, never paths elsewhere
        value = record.get(key)
        if value is not None and not (
            isinstance(value, str) and unsafe_name(value) is None and (folder / value).exists()
        ):
            raise BundleError(
                f"{entry['path']}/analysis.json: {key} {value!r} is not a file of the bundle; ask for the bundle again"
            )
    embeddings = bool(record.get("embeddings")) and not lexical_only
    inp = read_released(
        folder / "sets",
        reference=record.get("reference"),
        prompts=str(folder / record["prompts"]) if record.get("prompts") else None,
        baseline=str(folder / record["baseline"]) if record.get("baseline") else None,
        embeddings=embeddings,
    )
    notes = []
    if record.get("embeddings") and lexical_only:
        notes.append("--lexical-only: embedding figures were not recomputed")
    dropped = lexical_only and bool(record.get("embeddings"))  # a lexical analysis loses nothing
    check = compare_figures(record.get("results") or {}, inp.results, skip_keys=_skipper(dropped))
    return ReplayItem(
        entry["name"],
        "released",
        str(folder),
        inp.manifest,
        inp.results,
        inp.sets,
        inp.prompts,
        inp.teacher,
        check,
        notes,
    )


def replay_bundle(
    path: str | Path,
    *,
    into: str | Path | None = None,
    lexical_only: bool = False,
    embedder: str | None = None,
    keep: bool | None = None,
    use: Callable[[Replay], Any] | None = None,
) -> Replay:
    """Verify, unpack (to ``into``, else a temporary folder removed afterwards unless ``keep``),
    and recompute every run and released analysis with no generation model; each figure is
    compared with the bundled one. ``use(replay)`` is called while the unpacked files exist
    (to render reports that read them)."""
    bundle = verify_bundle(path)
    kept = into is not None if keep is None else keep
    folder = Path(into).expanduser() if into is not None else Path(tempfile.mkdtemp(prefix="lite-align-replay-"))
    try:
        root = unpack_bundle(bundle, folder)
        runs = list(bundle.index.get("runs") or [])
        released = list(bundle.index.get("released") or [])
        encoder = None
        encoder_note = ""
        if runs and not lexical_only:
            recorded = next(
                (
                    (read_manifest(root / r["path"]).get("embedder") or {}).get("name")
                    for r in runs
                    if (root / r["path"] / "manifest.json").is_file()
                ),
                None,
            )
            encoder, used = _replay_embedder(embedder, recorded, root)
            if recorded and used != recorded:
                encoder_note = f"the runs used the embedder '{recorded}'; embedding figures recomputed with '{used}'"
        items = []
        for r in runs:
            item = _replay_run(root, r, encoder, lexical_only)
            if encoder_note:
                item.notes.append(encoder_note)
            items.append(item)
        items += [_replay_released(root, r, lexical_only) for r in released]
        replay = Replay(bundle, root, items, kept)
        if use is not None:
            use(replay)
        return replay
    except LiteAlignError as exc:
        if kept:
            raise
        # the unpacked files are about to be removed: name them as the bundle's entries instead
        message = exc.message
        for prefix in {str(folder), str(folder.resolve())}:
            message = message.replace(prefix + os.sep, f"{bundle.path}: ")
        raise type(exc)(message) from None
    finally:
        if not kept:
            shutil.rmtree(folder, ignore_errors=True)


__all__ = [
    "BundleError",
    "FigureCheck",
    "PackResult",
    "Replay",
    "compare_figures",
    "model_files_size",
    "needs_encoder",
    "pack_bundle",
    "replay_bundle",
    "unpack_bundle",
    "unsafe_name",
    "verify_bundle",
]
