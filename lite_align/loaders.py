"""The one place where a name or a path becomes a live object: a generator for any backend, the
judge, the sentence embedder.

    "tiny-chat", "models/x.gguf" --model_ref--> ModelRef --open_generator--> Generator (any backend)
                                                         --open_judge-----> Judge
    models.toml [embedders] name --load_embedder--> OnnxEmbedder

Every command, the study, the judge, plan calibration and bench come here; what differs between
backends is asked of the backend (``generation.Backend``: a local file or not, how to open it,
what identifies it), never decided by comparing its name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .data import ModelRef
from .embed import EmbedderSpec, OnnxEmbedder, default_embedder_spec, exported_settings, packaged_embedder_spec
from .errors import ConfigError, RegistryError
from .generation import Generator, backend
from .gguf_check import inspect_gguf
from .judge import Judge
from .registry import Registry, load_registry, resolve_model_arg
from .tuning import EngineTuner

__all__ = [
    "JUDGE_CTX",
    "JUDGE_SEQUENCES",
    "embedder_spec",
    "load_embedder",
    "model_record",
    "model_ref",
    "open_backend",
    "open_generator",
    "open_judge",
    "registry_embedder",
    "study_opener",
]

# a judge prompt holds at most two answers cut to ~500 tokens each: 3072 cells, 4 sequences at a
# time keep the KV cache of a small judge well under a gigabyte
JUDGE_CTX = 3072
JUDGE_SEQUENCES = 4


def model_ref(registry: Registry, value: str, role: str) -> ModelRef:
    """A --base/--chat/--judge/--model value (a registry name or a .gguf path) as a resolved model.
    A local file's header is checked here: a corrupt file fails with a one-line error, before
    llama.cpp could abort the process."""
    spec, path = resolve_model_arg(registry, value, role)
    b = backend(spec.backend)
    if b.local_file:
        inspect_gguf(path)
        return ModelRef(name=spec.name, role=role, path=str(path), family=spec.family, backend=spec.backend)
    path_id, extra = b.locate(spec)
    return ModelRef(spec.name, role, path_id, family=spec.family, backend=spec.backend, extra=extra)


def model_record(ref: ModelRef) -> dict[str, Any]:
    """A model's entry in a run's manifest: name, role, family, and what its backend records (a
    file's path, size and sha256; a server's URL and model)."""
    rec: dict[str, Any] = {"name": ref.name, "role": ref.role, "family": ref.family, "path": ref.path}
    rec.update(backend(ref.backend).record(ref))
    return rec


def open_backend(ref: ModelRef, *, n_ctx: int | None = None, tuner: Any = None) -> Generator:
    """``ref``'s generator from its backend, as it comes (``n_ctx``: the context one sequence
    needs; ``tuner``: threads, sequences and GPU layers for local files, automatic when None)."""
    b = backend(ref.backend)
    if tuner is None and b.local_file:
        tuner = EngineTuner.from_options("auto")
    return b.open(ref, n_ctx, tuner)


def open_generator(ref: ModelRef, *, n_ctx: int | None = None, tuner: Any = None) -> Generator:
    """``open_backend``, and a server that does not answer fails now, not after a minute of retries."""
    gen = open_backend(ref, n_ctx=n_ctx, tuner=tuner)
    check = getattr(gen, "check_reachable", None)
    if check is not None:
        check()
    return gen


def study_opener(tuner: Any = None) -> Callable[..., Generator]:
    """The study's model opener: ``opener(ref, n_ctx=None)`` for any backend, local files with the
    tuner's settings (calibrated once per model and machine where auto)."""

    def opener(ref: ModelRef, n_ctx: int | None = None) -> Generator:
        return open_generator(ref, n_ctx=n_ctx, tuner=tuner)

    return opener


def open_judge(
    model: str | ModelRef, registry_path: str | None = None, *, threads: int | None = None, name: str = ""
) -> Judge:
    """A chat model of any backend as the judge: a registry name, a .gguf path, or a resolved
    model (a run's own chat model). ``threads`` None: for a local file, the count calibrated
    fastest at the judge's 4 sequences (lite_align.tuning)."""
    ref = model if isinstance(model, ModelRef) else model_ref(load_registry(registry_path), model, "chat")
    b = backend(ref.backend)
    tuner = EngineTuner(threads=threads, batch=JUDGE_SEQUENCES) if b.local_file else None
    gen = open_generator(ref, n_ctx=JUDGE_CTX, tuner=tuner)
    return Judge(gen, b.identity(ref), name=name or ref.name)


def embedder_spec(registry: Registry | None = None, name: str | None = None) -> EmbedderSpec:
    """The ONNX sentence encoder named in models.toml (default: the registry's default embedder)."""
    if registry is None or not (name or registry.default_embedder):
        return default_embedder_spec()
    key = name or registry.default_embedder
    entry = registry.embedders.get(key)
    if entry is None:
        known = ", ".join(sorted(registry.embedders)) or "none"
        raise ConfigError(f"unknown embedder '{key}' (models.toml [embedders]: {known})")
    if entry.onnx_package:
        return packaged_embedder_spec(
            entry.name,
            entry.onnx_package,
            entry.onnx_file,
            entry.tokenizer_package,
            entry.tokenizer_file,
            max_length=entry.max_length,
            sha256=entry.sha256 or None,
        )
    for label, value in (("onnx_path", entry.onnx_path), ("tokenizer_path", entry.tokenizer_path)):
        if not value or not Path(value).expanduser().is_file():
            raise ConfigError(f"embedder '{entry.name}': {label} {value!r} is not a file; fix models.toml")
    onnx_path = Path(entry.onnx_path).expanduser()
    return EmbedderSpec(
        entry.name,
        onnx_path,
        Path(entry.tokenizer_path).expanduser(),
        max_length=entry.max_length,
        sha256=entry.sha256 or None,
        **exported_settings(onnx_path),  # dim and pooling of a model `lite-align embedders export` wrote
    )


def load_embedder(registry: Registry | None = None, name: str | None = None, *, threads: int | None = None) -> Any:
    """The ONNX embedder; ``threads`` None: onnxruntime's intra-op threads chosen by measurement
    on first use (lite_align.tuning.onnx_threads, cached per model and machine)."""
    return OnnxEmbedder(embedder_spec(registry, name), threads=threads)


def registry_embedder(name: str | None = None) -> Any:
    """The project registry's embedder ``name`` (--embedder), else its default one; outside a
    project, the packaged default encoder."""
    try:
        registry: Registry | None = load_registry()
    except RegistryError:
        if name:
            raise
        registry = None
    return load_embedder(registry, name)
