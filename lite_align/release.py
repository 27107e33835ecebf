"""The paper's public release, fetched once and checked on every later use.

    fetch_release(dest) --> DEST/<dataset>/{instances, outputs*, eval-stance}/..., DEST/release.json

The release is the repository github.com/thomlake/investigating-alignment at a pinned commit. Its
archive (a gzipped tarball, about 200 MB) is downloaded into ``DEST/.partial/`` (a broken download
resumes from where it stopped, with an HTTP Range request), then read as a stream, and only these
files are kept, laid out without the archive's ``data/`` level:

- ``data/<dataset>/instances/*.jsonl``           -> ``<dataset>/instances/`` (the prompt sets)
- ``data/<dataset>/outputs*/<set>/samples.jsonl`` (+ ``args.json``) -> ``<dataset>/outputs*/<set>/``
- ``data/<dataset>/eval-stance/outputs/<set>/samples.jsonl`` (+ ``args.json``)
                                                 -> ``<dataset>/eval-stance/<set>/`` (judge labels)

This is the layout ``LITE_ALIGN_PAPER_RELEASE`` may also point at (a copy made by hand). Left out:
embeddings (``.npz``), BERTScore inputs, the other judge tasks and the scripts. ``release.json``
records the commit, the URL and the sha256 and size of every kept file; ``verify_release`` checks
them before a command reads the data, so a changed or damaged file is named, never analysed.

Where: ``--dest``, else ``$LITE_ALIGN_PAPER_RELEASE``, else ``<cache>/paper-release`` (the cache is
``$LITE_ALIGN_CACHE`` or ``~/.cache/lite_align``). The archive URL is
``$LITE_ALIGN_RELEASE_URL/<commit>``, by default GitHub's codeload address (tests point it at a
loopback server).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import re
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

from .errors import LiteAlignError
from .paths import cache_dir

__all__ = [
    "RELEASE_COMMIT",
    "ReleaseError",
    "archive_url",
    "fetch_release",
    "kept_path",
    "release_path",
    "release_paths",
    "release_root",
    "resolve_release",
    "verify_release",
]

RELEASE_REPO = "thomlake/investigating-alignment"
RELEASE_COMMIT = "43ad98163060de6b729227f701fb6c810cce56fa"
DEFAULT_BASE_URL = "https://codeload.github.com/thomlake/investigating-alignment/tar.gz"
URL_ENV = "LITE_ALIGN_RELEASE_URL"
DIR_ENV = "LITE_ALIGN_PAPER_RELEASE"
MANIFEST = "release.json"
MANIFEST_FORMAT = "lite_align.release/1"
PARTIAL = ".partial"
CHUNK = 1 << 20
TIMEOUT_S = 60.0
ATTEMPTS = 4  # one download plus three resumptions before giving up (a rerun resumes again)

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_KEPT = (
    (re.compile(rf"^data/({_NAME})/instances/({_NAME}\.jsonl)$"), r"\1/instances/\2"),
    (
        re.compile(rf"^data/({_NAME})/eval-stance/outputs/({_NAME})/(samples\.jsonl|args\.json)$"),
        r"\1/eval-stance/\2/\3",
    ),
    (re.compile(rf"^data/({_NAME})/(outputs[A-Za-z0-9._-]*)/({_NAME})/(samples\.jsonl|args\.json)$"), r"\1/\2/\3/\4"),
)


class ReleaseError(LiteAlignError):
    """The release cannot be fetched, is not where it should be, or a file of it changed."""


class DamagedArchiveError(ReleaseError):
    """The downloaded archive does not read to its end: it is removed, and downloaded afresh next time."""


def fix_hint() -> str:
    return f"run `lite-align release fetch` (or set {DIR_ENV} to a copy of the release)"


def default_dest() -> Path:
    return cache_dir() / "paper-release"


def release_root() -> Path:
    """Where the release is read from: ``$LITE_ALIGN_PAPER_RELEASE``, else where ``release fetch``
    puts it by default."""
    env = os.environ.get(DIR_ENV)
    return Path(env).expanduser() if env else default_dest()


def archive_url(commit: str = RELEASE_COMMIT) -> str:
    return f"{os.environ.get(URL_ENV, DEFAULT_BASE_URL).rstrip('/')}/{commit}"


def kept_path(member: str) -> str | None:
    """The local path of an archive member that is kept, else None. The archive's top folder
    (``<repo>-<commit>/``) is dropped first.

    >>> kept_path("investigating-alignment-43ad981/data/LIMA-OE/outputs-temp0/zephyr/samples.jsonl")
    'LIMA-OE/outputs-temp0/zephyr/samples.jsonl'
    >>> kept_path("x/data/ConflictingQA/eval-stance/outputs/llama-2-base/args.json")
    'ConflictingQA/eval-stance/llama-2-base/args.json'
    >>> kept_path("x/data/ConflictingQA/instances/embeddings.npz") is None
    True
    >>> kept_path("x/data/../outputs/a/samples.jsonl") is None
    True
    """
    _, _, inner = member.partition("/")
    for pattern, local in _KEPT:
        if pattern.match(inner):
            return pattern.sub(local, inner)
    return None


# --------------------------------------------------------------------------------------------------
# Fetching


@dataclass(frozen=True)
class FetchResult:
    path: Path
    commit: str
    url: str
    datasets: tuple[str, ...]
    files: int
    size: int
    downloaded: int  # bytes downloaded by this call (0 when the release was already here)
    resumed_at: int  # where a broken earlier download was resumed (0: from the start)
    already_here: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "commit": self.commit,
            "url": self.url,
            "datasets": list(self.datasets),
            "files": self.files,
            "size": self.size,
            "downloaded": self.downloaded,
            "resumed_at": self.resumed_at,
            "already_here": self.already_here,
            "notes": list(self.notes),
        }


Log = Callable[[str], None]


def fetch_release(
    dest: str | Path | None = None,
    *,
    commit: str = RELEASE_COMMIT,
    log: Log | None = None,
    attempts: int = ATTEMPTS,
) -> FetchResult:
    """Download the release at ``commit`` and keep its data files in ``dest`` (see the module doc).
    A release already there and intact is left as it is; a damaged one is fetched again."""
    say = log or (lambda _: None)
    root = Path(dest).expanduser() if dest is not None else release_root()
    url = archive_url(commit)
    manifest = _read_manifest(root)
    if manifest is not None and manifest.get("commit") == commit:
        try:
            verify_release(root)
        except ReleaseError as exc:
            say(f"the release in {root} is damaged ({exc}); fetching it again")
        else:
            return _result(root, manifest, url, downloaded=0, resumed_at=0, already_here=True)
    partial = root / PARTIAL
    try:
        partial.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReleaseError(f"{root}: cannot create the release folder ({exc.strerror}); give another --dest") from None
    archive = partial / f"{commit}.tar.gz"
    downloaded, resumed_at = 0, 0
    if not archive.is_file():
        downloaded, resumed_at = _download(url, partial / f"{commit}.tar.gz.part", archive, attempts, say)
    say(f"keeping the data files of {archive.name}")
    try:
        files = _extract(archive, partial / "tree")
    except DamagedArchiveError:
        archive.unlink(missing_ok=True)  # downloaded afresh next time; a full disk keeps it
        raise
    manifest = {
        "format": MANIFEST_FORMAT,
        "repo": RELEASE_REPO,
        "commit": commit,
        "url": url,
        "files": files,
    }
    _install(partial / "tree", root, manifest)
    shutil.rmtree(partial, ignore_errors=True)
    return _result(root, manifest, url, downloaded=downloaded, resumed_at=resumed_at)


def _result(
    root: Path, manifest: Mapping[str, Any], url: str, *, downloaded: int, resumed_at: int, already_here: bool = False
) -> FetchResult:
    files: Mapping[str, Mapping[str, Any]] = manifest.get("files") or {}
    notes = []
    if root.resolve() != release_root().resolve():
        notes.append(f"set {DIR_ENV}={root} so that --release and the tests find it here")
    return FetchResult(
        path=root,
        commit=str(manifest.get("commit")),
        url=url,
        datasets=tuple(sorted({rel.split("/", 1)[0] for rel in files})),
        files=len(files),
        size=sum(int(f.get("size", 0)) for f in files.values()),
        downloaded=downloaded,
        resumed_at=resumed_at,
        already_here=already_here,
        notes=tuple(notes),
    )


def _download(url: str, part: Path, done: Path, attempts: int, say: Log) -> tuple[int, int]:
    """Download ``url`` into ``part`` (appending to what a broken earlier download left there),
    then rename it to ``done``. Returns (bytes downloaded now, offset of the first resumption)."""
    got_now = 0
    resumed_at = 0
    last_error = ""
    for attempt in range(attempts):
        have = part.stat().st_size if part.is_file() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "lite_align", "Accept-Encoding": "identity"})
        if have:
            request.add_header("Range", f"bytes={have}-")
        say(f"downloading {url}" + (f" (resuming at {have / 1e6:.1f} MB)" if have else ""))
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:
                if have and resp.status != 206:  # the server ignored the range: start again
                    have = 0
                elif have and not resumed_at:
                    resumed_at = have
                total = _total_size(resp, have)
                with part.open("ab" if have else "wb") as out:
                    got_now += _copy(resp, out, have, total, say)
                    out.flush()
                    os.fsync(out.fileno())
            if total is not None and part.stat().st_size < total:
                raise http.client.IncompleteRead(b"", total - part.stat().st_size)
            part.replace(done)
            return got_now, resumed_at
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # nothing left to send: the part is the whole archive
                part.replace(done)
                return got_now, resumed_at
            last_error = f"HTTP {exc.code} {exc.reason}"
            if exc.code == 404:
                raise ReleaseError(
                    f"{url}: not found (HTTP 404); check {URL_ENV}, or that the commit is still published"
                ) from None
            if exc.code < 500 and exc.code != 429:
                break
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            last_error = _describe(exc)
        if attempt + 1 < attempts:
            say(f"the download stopped ({last_error}); resuming")
            time.sleep(min(0.5 * 2**attempt, 5.0))
    have = part.stat().st_size if part.is_file() else 0
    raise ReleaseError(
        f"downloading {url} stopped at {have / 1e6:.1f} MB ({last_error}); "
        "rerun `lite-align release fetch` to resume where it stopped"
    )


def _total_size(resp: Any, have: int) -> int | None:
    """The archive's full size from Content-Range or Content-Length, when the server says."""
    content_range = resp.headers.get("Content-Range") or ""
    m = re.match(r"bytes \d+-\d+/(\d+)$", content_range.strip())
    if m:
        return int(m.group(1))
    length = resp.headers.get("Content-Length")
    return have + int(length) if length and length.isdigit() else None


def _copy(resp: Any, out: BinaryIO, have: int, total: int | None, say: Log) -> int:
    got = 0
    next_report = 20_000_000
    while True:
        chunk = resp.read(CHUNK)
        if not chunk:
            return got
        out.write(chunk)
        got += len(chunk)
        if got >= next_report:
            size = f" of {total / 1e6:.0f}" if total else ""
            say(f"  {(have + got) / 1e6:.0f}{size} MB")
            next_report += 20_000_000


def _describe(exc: BaseException) -> str:
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection closed before the end"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot reach the server: {exc.reason}"
    return str(exc) or type(exc).__name__


def _extract(archive: Path, tree: Path) -> dict[str, dict[str, Any]]:
    """Stream the archive and write the kept files under ``tree``; their sha256 and size. The gzip
    stream is read to its end, whose CRC check catches damage anywhere in the archive (tarfile's own
    stream reader does not check it)."""
    shutil.rmtree(tree, ignore_errors=True)
    files: dict[str, dict[str, Any]] = {}
    try:
        with archive.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            with tarfile.open(fileobj=gz, mode="r|") as tar:
                for member in tar:
                    rel = kept_path(member.name) if member.isfile() else None
                    source = tar.extractfile(member) if rel is not None else None
                    if rel is None or source is None:
                        continue
                    files[rel] = _write(source, tree / rel) | {"source": member.name}
            while gz.read(CHUNK):
                pass
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DamagedArchiveError(
            f"{archive}: the downloaded archive is damaged ({exc}); "
            "rerun `lite-align release fetch` to download it again"
        ) from None
    if not any("/outputs" in rel for rel in files):
        raise ReleaseError(
            f"{archive}: holds no data/<dataset>/outputs*/<set>/samples.jsonl; is {URL_ENV} the release's address?"
        )
    return dict(sorted(files.items()))


def _write(source: IO[bytes], target: Path) -> dict[str, Any]:
    """Copy one member to ``target``; its sha256 and size. An error reading ``source`` (a damaged
    archive) propagates as it is; one writing ``target`` (a full disk) becomes a ReleaseError."""
    digest = hashlib.sha256()
    size = 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        out = target.open("wb")
    except OSError as exc:
        raise _unwritable(target, exc) from None
    with out:
        while block := source.read(CHUNK):
            digest.update(block)
            size += len(block)
            try:
                out.write(block)
            except OSError as exc:
                raise _unwritable(target, exc) from None
        try:
            out.flush()
        except OSError as exc:
            raise _unwritable(target, exc) from None
    return {"sha256": digest.hexdigest(), "size": size}


def _unwritable(target: Path, exc: OSError) -> ReleaseError:
    return ReleaseError(
        f"{target}: cannot be written ({exc.strerror or exc}); free some space or give another --dest, then rerun"
    )


def _install(tree: Path, root: Path, manifest: Mapping[str, Any]) -> None:
    """Move the new datasets into ``root`` (replacing earlier copies), then write the manifest."""
    old = root / PARTIAL / "old"
    shutil.rmtree(old, ignore_errors=True)
    for new in sorted(p for p in tree.iterdir() if p.is_dir()):
        target = root / new.name
        if target.exists():
            old.mkdir(parents=True, exist_ok=True)
            target.replace(old / new.name)
        new.replace(target)
    tmp = root / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    tmp.replace(root / MANIFEST)


# --------------------------------------------------------------------------------------------------
# Using it


def _read_manifest(root: Path) -> dict[str, Any] | None:
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise ReleaseError(f"{path}: damaged; run `lite-align release fetch` to fetch the release again") from None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT or not isinstance(doc.get("files"), dict):
        raise ReleaseError(f"{path}: not a lite_align release manifest; run `lite-align release fetch` again")
    return doc


def verify_release(root: Path, under: Iterable[str] = ("",)) -> dict[str, Any] | None:
    """Check every file the manifest lists under the prefixes ``under`` (default: all) against its
    size and sha256; the manifest, or None for a copy without one (``$LITE_ALIGN_PAPER_RELEASE``
    pointing at files laid out by hand), which is taken as it is."""
    manifest = _read_manifest(root)
    if manifest is None:
        return None
    prefixes = tuple(under)
    for rel, info in manifest["files"].items():
        if not rel.startswith(prefixes):
            continue
        path = root / rel
        try:
            size = path.stat().st_size
        except OSError:
            raise ReleaseError(
                f"{path}: missing from the release; run `lite-align release fetch` to repair it"
            ) from None
        if size != info.get("size") or _sha256(path) != info.get("sha256"):
            raise ReleaseError(
                f"{path}: differs from the release (sha256 in {root / MANIFEST}); "
                "run `lite-align release fetch` to repair it"
            )
    return manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def datasets(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "instances").is_dir())


def release_info(root: Path | None = None) -> dict[str, Any]:
    """What ``lite-align release path`` reports: where, which datasets, verified or not."""
    where = root or release_root()
    found = datasets(where)
    if not found:
        raise ReleaseError(f"the paper's release is not in {where}; {fix_hint()}")
    manifest = verify_release(where)
    return {
        "path": str(where),
        "datasets": found,
        "commit": manifest.get("commit") if manifest else None,
        "files": len(manifest["files"]) if manifest else None,
        "verified": manifest is not None,
    }


def resolve_release(spec: str, default_folder: str = "outputs") -> Path:
    """``DATASET`` or ``DATASET/FOLDER`` (``--release``) as a folder of the release, after checking
    its files (and the prompt set's) against the manifest.

    A folder is e.g. ``outputs`` (sampled), ``outputs-temp0`` (greedy) or ``eval-stance``."""
    root = release_root()
    dataset, _, folder = spec.strip("/").partition("/")
    folder = folder or default_folder
    if not re.fullmatch(_NAME, folder):
        raise ReleaseError(f"--release {spec}: give DATASET or DATASET/FOLDER (e.g. ConflictingQA/outputs-temp0)")
    found = datasets(root)
    if not found:
        raise ReleaseError(f"--release {spec}: the paper's release is not in {root}; {fix_hint()}")
    if dataset not in found:
        raise ReleaseError(f"--release {spec}: no dataset '{dataset}' in {root}; choose one of {', '.join(found)}")
    path = root / dataset / folder
    if not path.is_dir():
        there = sorted(p.name for p in (root / dataset).iterdir() if p.is_dir())
        raise ReleaseError(
            f"--release {spec}: no folder '{folder}' in {root / dataset}; choose one of {', '.join(there)}"
        )
    verify_release(root, (f"{dataset}/",))
    return path


def in_release(folder: Path, name: str) -> str:
    """A name given beside ``--release``: a set in ``folder``, else a path inside the dataset
    (``outputs/gpt-3.5-turbo``), else a path as it is; ``NAME#condition`` keeps its condition."""
    base, mark, condition = name.partition("#")
    for candidate in (folder / base, folder.parent / base, Path(base)):
        if base and candidate.exists():
            return f"{candidate}{mark}{condition}"
    raise ReleaseError(f"{name}: no such set in {folder}; choose one of {', '.join(_set_names(folder))}")


def _set_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if (p / "samples.jsonl").is_file())


def release_paths(spec: str | None, names: Iterable[str], default_folder: str = "outputs") -> list[str]:
    """The paths a command reads: ``names`` as given without ``--release``; with it, each name
    looked up in the release folder, or every set of that folder when no name is given."""
    given = list(names)
    if spec is None:
        return given
    folder = resolve_release(spec, default_folder)
    if not given:
        return [str(folder / name) for name in _set_names(folder)]
    return [in_release(folder, n) for n in given]


def release_path(spec: str | None, name: str | None, default_folder: str = "outputs") -> str | None:
    """One path (``--reference``, ``--baseline``, ``--base``, ...) as ``release_paths`` finds it;
    with ``--release`` and no name, the release folder itself (for ``report`` and ``pack``)."""
    if spec is None:
        return name
    folder = resolve_release(spec, default_folder)
    return str(folder) if name is None else in_release(folder, name)
