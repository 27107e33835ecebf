"""`lite-align models pull`: GGUF files from the Hugging Face hub into the models directory,
through huggingface_hub's own download code, resumable, verified, and recorded in models.lock.

    targets, notes = pull_targets(registry, "smollm2-135m")   # a model, a pair, or REPO[:FILE]
    result = pull(targets[0], lock=lock_path(registry.path), progress=bar)

What is asked of the hub (``$HF_ENDPOINT``, default https://huggingface.co), as
``huggingface_hub.hf_hub_download`` asks it:

- ``HEAD {endpoint}/{repo}/resolve/{revision}/{file}`` (``get_hf_file_metadata``; redirects that stay
  on the hub are followed, a redirect to a CDN is read as it is): the resolved commit
  (``X-Repo-Commit``), the file's etag (``X-Linked-Etag``, the sha256 for LFS files, else ``ETag``),
  its size (``X-Linked-Size``, else ``Content-Length``) and where to download it (``Location``);
- ``GET`` on that location (``http_get``), with ``Range: bytes=N-`` when N bytes are already in the
  partial file; a connection dropped mid-file is resumed the same way, in the same call;
- for ``REPO`` without ``:FILE``, ``GET {endpoint}/api/models/{repo}/tree/{revision}`` lists the repo
  and its only ``.gguf`` file is taken.

The token is huggingface_hub's (``$HF_TOKEN``, else the one ``hf auth login`` stored); it is not sent
to a CDN on another host. ``HF_HUB_OFFLINE=1`` stops before any request.

The partial download is kept beside the target as ``.FILE.<etag>.partial``, so the next pull (after
Ctrl-C, a dropped connection, a closed laptop) resumes it; the etag in its name makes a file that
changed upstream start again. After the download the size must be the hub's, the sha256 must be the
hub's when the hub gives one (LFS etags are the sha256), and the header must read as GGUF; then the
file is moved into place and ``models.lock`` (beside the registry) records repo, file, revision,
commit, sha256, size and path. huggingface_hub's Xet transfer is not used: plain HTTP is what can be
resumed into our own partial file.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .errors import DownloadError, ModelFileError, ModelNotFoundError, RegistryError
from .generation import backend
from .gguf_check import inspect_gguf, sha256_file
from .lock import LockEntry, read_lock, record, relative_to_lock, toml_string
from .paths import models_dirs, project_root
from .registry import REPO_ID, ModelSpec, Registry, load_registry, registry_path

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_REVISION = "main"
CHUNK_BYTES = 1 << 20  # progress and resume granularity (huggingface_hub's default is 10 MB)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class PullTarget:
    """One file to pull: the registry entry it is for (or the name ``--register`` would give it)."""

    name: str
    repo: str
    file: str
    revision: str
    dest: Path
    registered: bool
    spec: ModelSpec | None = None


@dataclass
class PullResult:
    name: str
    repo: str
    file: str
    revision: str
    commit: str
    sha256: str
    size: int
    path: str
    lock: str
    status: str  # "downloaded", "resumed" or "already here"
    resumed_from: int = 0
    seconds: float = 0.0
    registered: bool = True
    entry: str = ""  # the registry entry to add (REPO:FILE pulls)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def target_dir() -> Path:
    """Where pulled files go: the first models directory ($LITE_ALIGN_MODELS_DIR, else ./models)."""
    return models_dirs()[0]


def _dest(spec: ModelSpec) -> Path:
    if spec.path:
        p = Path(os.path.expandvars(spec.path)).expanduser()
        return p if p.is_absolute() else project_root() / p
    return target_dir() / spec.file


def _for_spec(spec: ModelSpec) -> PullTarget:
    if not backend(spec.backend).local_file:
        where = spec.base_url or f"the {spec.backend} backend"
        raise RegistryError(f"model '{spec.name}' is served by {where}; there is no file to pull")
    if not spec.repo:
        how = f"it comes from the package {spec.package}" if spec.package else "it has no repo in the registry"
        raise RegistryError(
            f"model '{spec.name}' cannot be pulled: {how}; add repo = \"owner/name\" and file to models.{spec.name}, "
            "or pull REPO:FILE"
        )
    return PullTarget(spec.name, spec.repo, spec.file, spec.revision or DEFAULT_REVISION, _dest(spec), True, spec)


def name_for_file(file: str) -> str:
    """The registry name a pulled file gets: its stem, lower-cased.

    >>> name_for_file("Qwen2.5-0.5B-Instruct-Q8_0.gguf")
    'qwen2.5-0.5b-instruct-q8_0'
    """
    stem = Path(file).name
    stem = stem[: -len(".gguf")] if stem.lower().endswith(".gguf") else stem
    return re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-") or "model"


def pull_targets(registry: Registry, what: str) -> tuple[list[PullTarget], list[str]]:
    """The files ``what`` names (a pair, a model, or ``REPO[:FILE]``), and notes on pair members
    that need no pull (installed from a package). A name that is both a pair and a model (the
    matched pairs are named after their base model) means the pair: both of its files."""
    if what in registry.pairs:
        pair = registry.pairs[what]
        targets, notes = [], []
        for member in (pair.base, pair.chat):
            spec = registry.models[member]
            if not spec.repo and spec.package:
                notes.append(f"{member} comes from the package {spec.package} (./install.sh installs it); not pulled")
                continue
            targets.append(_for_spec(spec))
        return targets, notes
    if what in registry.models:
        return [_for_spec(registry.models[what])], []
    repo, _, file = what.partition(":")
    if "/" not in repo:
        known = ", ".join(sorted([*registry.models, *registry.pairs]))
        raise ModelNotFoundError(
            f"'{what}' is neither a model nor a pair in {registry.path} nor a hub REPO[:FILE]; use one of: {known}"
        )

    if not REPO_ID.fullmatch(repo):
        raise ModelNotFoundError(f"'{repo}' is not a hub repo id; write owner/name, e.g. bartowski/Llama-3.2-1B-GGUF")
    if not file:
        file = _only_gguf(repo, DEFAULT_REVISION)
    for spec in registry.models.values():  # already registered under another name: use that entry
        if spec.repo == repo and spec.file == file:
            return [_for_spec(spec)], []
    name = name_for_file(file)
    if name in registry.models:  # another entry has that name: the new one gets its publisher too
        name = f"{name}-{name_for_file(repo.split('/')[0])}"
    return [PullTarget(name, repo, file, DEFAULT_REVISION, target_dir() / file, False)], []  # as locate() finds it


# ---------------------------------------------------------------------------------------------
# Talking to the hub


def _by_hand(url: str, dest: Path) -> str:
    return f"download {url} by hand and put it at {dest}"


def _hub_error(exc: BaseException, *, repo: str, file: str, revision: str, url: str, dest: Path) -> DownloadError:
    """One line for anything the hub (or the network) answers instead of the file; ``file`` is
    empty when the repo's file list was asked for."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    host = endpoint()
    what = f"{repo}/{file}" if file else f"the file list of {repo}"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    token_note = (
        "the token in HF_TOKEN (or from `hf auth login`) was refused or may not read it"
        if _token_present()
        else "set HF_TOKEN to a token that may read it (accept the model's licence on the hub first)"
    )
    if isinstance(exc, (OfflineModeIsEnabled, httpx2.ConnectError, httpx2.TimeoutException)):
        reason = "offline mode" if isinstance(exc, OfflineModeIsEnabled) else "no network?"
        hand = _by_hand(url, dest) if file else f"name the file as {repo}:FILE"
        return DownloadError(f"cannot reach {host} ({reason}) to get {what}; {hand}")
    if isinstance(exc, GatedRepoError):
        return DownloadError(f"{host} refused {what} ({status}: gated repo); {token_note}")
    if isinstance(exc, RevisionNotFoundError):
        return DownloadError(f"{repo} has no revision '{revision}' on {host} (404); fix the revision in the registry")
    if isinstance(exc, RemoteEntryNotFoundError) or (status == 404 and not isinstance(exc, RepositoryNotFoundError)):
        return DownloadError(
            f"{file} is not in {repo} at {revision} on {host} (404); the file may have been renamed: fix `file` in "
            f"the registry, or run `lite-align models pull {repo}` to see the repo's GGUF files"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return DownloadError(
            f"{repo} is not on {host}, or it is private ({status}): check `repo` in the registry; if it is private, "
            f"{token_note}"
        )
    if status in (401, 403):
        return DownloadError(f"{host} refused {what} ({status}); {token_note}")
    if isinstance(exc, HfHubHTTPError):
        return DownloadError(f"{host} answered HTTP {status} for {url}; try again later, or {_by_hand(url, dest)}")
    if isinstance(exc, httpx2.HTTPError):
        return DownloadError(f"getting {what} from {host} failed ({type(exc).__name__}: {exc}); try again")
    raise exc


def _token_present() -> bool:
    from huggingface_hub import get_token

    return get_token() is not None


def _only_gguf(repo: str, revision: str) -> str:
    """The one .gguf file of a repo (REPO without :FILE)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    url = f"{endpoint()}/api/models/{repo}/tree/{revision}"
    if offline():
        raise DownloadError(f"offline (HF_HUB_OFFLINE is set): cannot list {repo}; name the file as {repo}:FILE")
    try:
        with _hub_settings():
            files = [
                f.path
                for f in HfApi(endpoint=endpoint()).list_repo_tree(repo, recursive=True, revision=revision)
                if isinstance(f, RepoFile) and f.path.lower().endswith(".gguf")
            ]
    except Exception as exc:  # the hub's and the network's errors, as one line
        raise _hub_error(exc, repo=repo, file="", revision=revision, url=url, dest=target_dir()) from None
    if len(files) == 1:
        return files[0]
    if not files:
        raise DownloadError(f"{repo} holds no .gguf file; pull a GGUF repo (often named ...-GGUF)")
    listed = ", ".join(sorted(files)[:12]) + (", ..." if len(files) > 12 else "")
    raise DownloadError(
        f"{repo} holds {len(files)} GGUF files ({listed}); pick one: lite-align models pull {repo}:FILE"
    )


@dataclass(frozen=True)
class _Remote:
    commit: str
    etag: str
    size: int | None
    location: str


def _metadata(target: PullTarget, url: str) -> tuple[_Remote, dict[str, str]]:
    """The HEAD answer for the file, and the headers to GET it with."""
    from huggingface_hub import get_hf_file_metadata
    from huggingface_hub.utils import build_hf_headers

    headers = build_hf_headers()
    try:
        with _hub_settings():
            meta = get_hf_file_metadata(url, headers=headers, endpoint=endpoint())
    except Exception as exc:
        raise _hub_error(
            exc, repo=target.repo, file=target.file, revision=target.revision, url=url, dest=target.dest
        ) from None
    if not meta.commit_hash or not meta.etag:
        raise DownloadError(
            f"{endpoint()} does not answer like a Hugging Face hub (no X-Repo-Commit or ETag for {url}); check "
            f"HF_ENDPOINT, or {_by_hand(url, target.dest)}"
        )
    get_headers = dict(headers)
    location = meta.location or url
    if urlparse(location).netloc != urlparse(url).netloc:
        get_headers.pop("authorization", None)  # a signed CDN address: the token stays with the hub
    return _Remote(meta.commit_hash, meta.etag, meta.size, location), get_headers


class _Bar:
    """What huggingface_hub's ``http_get`` asks of a tqdm class, passed on to a lite_align progress
    (``start(description, total, unit=...)``, ``advance(n)``); ``progress`` is set per download."""

    progress: Any = None

    def __init__(self, *, total: int | None = None, initial: int = 0, desc: str = "", **_: Any) -> None:
        self._p = type(self).progress
        if self._p is not None:
            self._p.start(desc, total or 0, unit="bytes")
            if initial:
                self._p.advance(initial)

    def update(self, n: int | float | None = 1) -> None:
        if self._p is not None and n:
            self._p.advance(int(n))

    def close(self) -> None:
        pass

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@contextlib.contextmanager
def _hub_settings(chunk_bytes: int = CHUNK_BYTES) -> Iterator[None]:
    """huggingface_hub's settings for one pull, restored afterwards:

    - it streams in chunks of ``constants.DOWNLOAD_CHUNK_SIZE`` and writes whole chunks only;
      smaller ones make the progress bar move and let a resume lose less;
    - it reads ``HF_HUB_OFFLINE`` once, when first imported (``lite-align embedders export`` sets it
      for its own import): offline is decided by the environment now (``offline()``), as here."""
    from huggingface_hub import constants

    saved = constants.DOWNLOAD_CHUNK_SIZE, constants.HF_HUB_OFFLINE
    constants.DOWNLOAD_CHUNK_SIZE, constants.HF_HUB_OFFLINE = chunk_bytes, offline()
    try:
        yield
    finally:
        constants.DOWNLOAD_CHUNK_SIZE, constants.HF_HUB_OFFLINE = saved


def partial_path(dest: Path, etag: str) -> Path:
    return dest.with_name(f".{dest.name}.{re.sub(r'[^A-Za-z0-9]', '', etag)[:16]}.partial")


def pull(
    target: PullTarget,
    *,
    lock: Path,
    progress: Any = None,
    force: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
) -> PullResult:
    """Download ``target`` (or find it already here), verify it, record it in ``lock``."""
    from huggingface_hub import hf_hub_url

    url = hf_hub_url(target.repo, target.file, revision=target.revision, endpoint=endpoint())
    if offline():
        raise DownloadError(
            f"offline (HF_HUB_OFFLINE is set): cannot pull {target.file} from {target.repo}; "
            f"{_by_hand(url, target.dest)}"
        )
    remote, headers = _metadata(target, url)
    hub_sha = remote.etag if _SHA256.fullmatch(remote.etag) else None
    result = PullResult(
        name=target.name, repo=target.repo, file=target.file, revision=target.revision, commit=remote.commit,
        sha256="", size=0, path=str(target.dest), lock=str(lock), status="downloaded", registered=target.registered,
    )  # fmt: skip
    start = time.perf_counter()
    if target.dest.exists() and not force:
        here = _already_here(target, remote, hub_sha, lock)
        if here is None:
            raise DownloadError(
                f"{target.dest} exists and is not {target.repo}/{target.file} at {remote.commit[:12]}; move it away, "
                "or pass --force to replace it"
            )
        result.sha256, result.size, result.status = here, target.dest.stat().st_size, "already here"
    else:
        result.resumed_from = _download(target, remote, headers, progress, chunk_bytes)
        result.status = "resumed" if result.resumed_from else "downloaded"
        result.sha256, result.size = _verify(target, remote, hub_sha)
    result.seconds = round(time.perf_counter() - start, 3)
    entry = LockEntry(
        name=target.name, repo=target.repo, file=target.file, revision=target.revision, commit=remote.commit,
        sha256=result.sha256, size=result.size, path=relative_to_lock(lock, target.dest),
        pulled=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )  # fmt: skip
    record(lock, entry)
    if not target.registered:
        result.entry = registry_entry(target, remote.commit)
    return result


def _already_here(target: PullTarget, remote: _Remote, hub_sha: str | None, lock: Path) -> str | None:
    """The sha256 of the file already at the destination when it is the hub's file, else None."""
    size = target.dest.stat().st_size
    if remote.size is not None and size != remote.size:
        return None
    sha = sha256_file(target.dest)
    if hub_sha is not None:
        return sha if sha == hub_sha else None
    locked = read_lock(lock).get(target.name)  # no sha256 from the hub: trust only our own lock
    return sha if locked is not None and locked.sha256 == sha and locked.commit == remote.commit else None


def _download(target: PullTarget, remote: _Remote, headers: dict[str, str], progress: Any, chunk_bytes: int) -> int:
    """Stream the file into its partial file (resuming what is there); returns the bytes resumed from."""
    import httpx2
    from huggingface_hub.file_download import http_get

    part = partial_path(target.dest, remote.etag)
    try:
        part.parent.mkdir(parents=True, exist_ok=True)
        resume = part.stat().st_size if part.exists() else 0
    except OSError as exc:
        raise DownloadError(
            f"cannot write into {target.dest.parent} ({exc.strerror}); set LITE_ALIGN_MODELS_DIR"
        ) from None
    if remote.size is not None and resume > remote.size:
        part.unlink()
        resume = 0
    bar = type("_PullBar", (_Bar,), {"progress": progress})
    try:
        with _hub_settings(chunk_bytes), part.open("ab") as fh:
            http_get(
                remote.location, fh, resume_size=resume, headers=headers, expected_size=remote.size,
                displayed_filename=target.file, tqdm_class=bar,  # type: ignore[arg-type]
            )  # fmt: skip
    except (httpx2.TransportError, httpx2.HTTPError) as exc:
        have = part.stat().st_size if part.exists() else 0
        of = f" of {remote.size / 1e6:.1f}" if remote.size else ""
        raise DownloadError(
            f"download of {target.file} stopped at {have / 1e6:.1f}{of} MB ({type(exc).__name__}); run the same "
            f"command again to resume from {part}"
        ) from None
    except OSError as exc:
        if "Consistency check failed" in str(exc):
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{target.file}: the server sent another size than the hub announced ({remote.size} bytes); "
                "the partial file was removed, run the pull again"
            ) from None
        if getattr(exc, "response", None) is not None:
            raise _hub_error(
                exc, repo=target.repo, file=target.file, revision=target.revision, url=remote.location, dest=target.dest
            ) from None
        raise DownloadError(
            f"cannot write {part} ({exc.strerror or exc}); free some disk space and pull again"
        ) from None
    finally:
        if progress is not None:
            progress.finish()
    return resume


def _verify(target: PullTarget, remote: _Remote, hub_sha: str | None) -> tuple[str, int]:
    """Size, sha256 and GGUF header of the finished partial file; then it replaces the destination."""
    part = partial_path(target.dest, remote.etag)
    size = part.stat().st_size
    if remote.size is not None and size != remote.size:
        raise DownloadError(f"{part}: {size} bytes, the hub says {remote.size}; run the pull again to resume")
    os.replace(part, target.dest)
    sha = sha256_file(target.dest)  # hashed once, and remembered for the runs that check the lock
    if hub_sha is not None and sha != hub_sha:
        target.dest.unlink()
        raise DownloadError(
            f"{target.file} from {target.repo}: sha256 {sha[:12]}… is not the hub's {hub_sha[:12]}… (corrupted "
            "download); the file was removed, run the pull again"
        )
    if target.file.lower().endswith(".gguf"):
        try:
            inspect_gguf(target.dest)
        except ModelFileError as exc:
            target.dest.unlink()
            raise DownloadError(f"{target.repo}/{target.file} is not a usable GGUF ({exc}); removed") from None
    return sha, size


# ---------------------------------------------------------------------------------------------
# --register


def registry_entry(target: PullTarget, commit: str) -> str:
    """The ``[models.NAME]`` table for a pulled file, filled from its GGUF header."""
    info = inspect_gguf(target.dest)
    chat_words = ("instruct", "-it", "chat")
    role = "chat" if any(w in target.name for w in chat_words) else "base"
    lines = [
        f"[models.{toml_string(target.name)}]",
        f'role = "{role}"  # guessed from the file name: check it',
        f"family = {toml_string(info.architecture)}",
    ]
    if info.file_type:
        lines.append(f"quant = {toml_string(info.file_type)}")
    lines += [
        f"file = {toml_string(target.file)}",
        f"repo = {toml_string(target.repo)}",
        f'revision = {toml_string(commit)}  # the commit pulled; "main" follows the repo',
        f"chat_template = {'true' if info.has_chat_template else 'false'}",
    ]
    return "\n".join(lines) + "\n"


def register(snippet: str, name: str, registry: str | Path | None) -> Path:
    """Append ``snippet`` to the registry file (which must still load afterwards)."""
    path = registry_path(registry)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read {path} ({exc.strerror}); give --registry") from None
    if name in load_registry(path).models:
        return path
    clean = "\n".join(line.split("  # ")[0].rstrip() for line in snippet.splitlines())
    new = text.rstrip("\n") + "\n\n" + clean + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(new, encoding="utf-8")
        load_registry(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise RegistryError(f"cannot write {path} ({exc.strerror}); add the entry by hand") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


__all__ = [
    "PullResult",
    "PullTarget",
    "endpoint",
    "name_for_file",
    "offline",
    "partial_path",
    "pull",
    "pull_targets",
    "register",
    "registry_entry",
]


def quiet_hub_logs() -> None:
    """huggingface_hub logs each retry as a multi-line warning; the CLI reports in one line instead."""
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()
