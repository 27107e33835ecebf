"""The generator contract: the interface every backend implements, its request and result types,
and the registry of backends (the package ``lite_align.generation`` registers the built-in ones).

    GenerationRequest(key, prompt, seeds, params) --Generator.generate--> GenerationResult per seed

A backend is one module in this package with one ``register_backend(Backend(...))`` call:

- ``llama_cpp``: GGUF files in this process (engine.LlamaCppGenerator), threads and live
  sequences chosen by lite_align.tuning;
- ``openai``: OpenAI-compatible servers (vLLM, llama.cpp's server, TGI) over HTTP.

What differs between backends is asked of the ``Backend``, never tested by name: whether a model is
a local file (its sha256 identifies it, its header is checked first, its threads and sequences are
calibrated on this machine), how to open it, and what identifies it in caches and manifests.
``lite_align.loaders`` is the only code that opens one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from lite_align.errors import ConfigError

__all__ = [
    "Backend",
    "GenerationRequest",
    "GenerationResult",
    "Generator",
    "SamplingParams",
    "backend",
    "backend_names",
    "register_backend",
    "registered_backend",
]


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.5  # 0 => greedy (argmax)
    repetition_penalty: float = 1.1  # HF/TGI semantics: see apply_repetition_penalty
    max_tokens: int = 700
    stop: tuple[str, ...] = ()  # stop strings; the text is returned WITHOUT the stop string
    grammar: str | None = None  # GBNF text (root rule "root") constraining every sampled token

    def __post_init__(self) -> None:
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if not (self.repetition_penalty > 0 and math.isfinite(self.repetition_penalty)):
            raise ConfigError(f"repetition penalty must be > 0, got {self.repetition_penalty}")
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if any(not s for s in self.stop):
            raise ConfigError("stop strings must not be empty")
        if self.grammar is not None and not self.grammar.strip():
            raise ConfigError("grammar must be GBNF text or None, got an empty string")


@dataclass(frozen=True)
class GenerationRequest:
    key: Hashable  # opaque, returned with each result, e.g. ("icl-knn", 17)
    prompt: str  # the full prompt text, already formatted (chat prompts already rendered)
    seeds: tuple[int, ...]  # one per sample; n = len(seeds)
    params: SamplingParams = SamplingParams()
    prefix: str = ""  # a leading part of ``prompt`` shared with other requests; decoded once


@dataclass(frozen=True)
class GenerationResult:
    key: Hashable
    sample_index: int
    seed: int
    text: str
    completion_tokens: int  # tokens sampled, the end-of-generation token included
    prompt_tokens: int
    finish_reason: str  # "stop" (stop string or end-of-generation token) | "length"
    seconds: float  # wall time attributable to this sample (its share of every step it was in)


class Generator(Protocol):
    """What the study, the judge, plan calibration and bench need of any backend. Optional, asked
    with ``getattr``: ``max_positions`` (a sequence's context, for the prompt-fits check),
    ``check_reachable()`` (a server answers), ``info`` (what the model is), ``model_path``."""

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[GenerationResult]: ...
    def render_chat(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str: ...
    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]: ...
    def close(self) -> None: ...

    @property
    def timings(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class Backend:
    """A registered backend.

    ``open(ref, n_ctx, tuner)``: a live generator for a resolved model (``n_ctx``: the context one
    sequence needs, or None; ``tuner``: lite_align.tuning.EngineTuner for local files, or None).
    ``local_file``: models are files on this machine (sha256, header check, calibration).
    ``needs``: registry keys an entry of this backend must have (``base_url`` for servers).
    ``identity(ref)``: what identifies the model in caches (a file's sha256; a server's URL and
    model name). ``record(ref)``: its part of a run's manifest. ``locate(spec)``: for models that
    are not local files, the id that stands for a path (two models are one when their ids are) and
    the settings the generator is opened with, from the registry entry."""

    name: str
    open: Callable[[Any, int | None, Any], Generator] = field(compare=False)
    local_file: bool = False
    needs: tuple[str, ...] = ()
    identity: Callable[[Any], str] = field(default=lambda ref: str(ref.path), compare=False)
    record: Callable[[Any], dict[str, Any]] = field(default=lambda ref: {}, compare=False)
    locate: Callable[[Any], tuple[str, dict[str, Any]]] = field(
        default=lambda spec: (f"{spec.backend}:{spec.name}", {}), compare=False
    )
    description: str = ""


_BACKENDS: dict[str, Backend] = {}


def register_backend(b: Backend) -> Backend:
    if b.name in _BACKENDS:
        raise ValueError(f"backend {b.name!r} is registered already")
    _BACKENDS[b.name] = b
    return b


class registered_backend:  # noqa: N801 (used as a context manager, like contextlib's)
    """Register a backend while inside a ``with`` block (tests, plug-ins), then remove it."""

    def __init__(self, b: Backend) -> None:
        self.backend = b

    def __enter__(self) -> Backend:
        return register_backend(self.backend)

    def __exit__(self, *exc: object) -> None:
        _BACKENDS.pop(self.backend.name, None)


def backend_names() -> tuple[str, ...]:
    return tuple(_BACKENDS)


def backend(name: str) -> Backend:
    """The backend called ``name``; an unknown one is a one-line error naming the known ones."""
    found = _BACKENDS.get(name)
    if found is None:
        known = ", ".join(f'"{n}"' for n in _BACKENDS)
        raise ConfigError(f"backend {name!r} is unknown; use one of {known}")
    return found
