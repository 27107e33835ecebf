"""The llama.cpp backend: GGUF files in this process, through ``engine.LlamaCppGenerator``, with
the threads, live sequences and GPU layers ``lite_align.tuning`` chooses for the file on this
machine. Registered as ``"llama.cpp"``, the registry's default backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lite_align.generation.base import Backend, Generator, register_backend
from lite_align.gguf_check import sha256_file

__all__ = ["open_gguf"]


def open_gguf(ref: Any, n_ctx: int | None, tuner: Any) -> Generator:
    """``ref.path``'s model with the tuner's settings (a tuning.EngineTuner: calibrated once per
    file and machine where auto; the loaders give one)."""
    gen: Generator = tuner.open(ref.path, n_ctx=n_ctx)
    return gen


def _record(ref: Any) -> dict[str, Any]:
    p = Path(ref.path)
    return {"path": str(p), "size": p.stat().st_size, "sha256": sha256_file(p)}


register_backend(
    Backend(
        "llama.cpp",
        open=open_gguf,
        local_file=True,
        identity=lambda ref: sha256_file(Path(ref.path)),
        record=_record,
        description="a GGUF file run in this process by llama.cpp",
    )
)
