"""Generators that run outside this process: models served over HTTP.

``open_backend(ref)`` turns a registry model whose ``backend`` is not ``"llama.cpp"`` into an
object with the study's ``Generator`` interface. Only ``"openai"`` (an OpenAI-compatible server:
vLLM, llama.cpp's llama-server, llama-cpp-python's server, TGI) exists so far.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lite_align.errors import ConfigError

if TYPE_CHECKING:
    from lite_align.study import Generator, ModelRef

BACKENDS = ("openai",)


def open_backend(ref: ModelRef) -> Generator:
    """The generator for a model served by a server backend (see :data:`BACKENDS`)."""
    if ref.backend == "openai":
        from .openai import OpenAIGenerator

        return OpenAIGenerator.from_ref(ref)
    raise ConfigError(
        f"model '{ref.name}': backend {ref.backend!r} is unknown; use \"llama.cpp\" or one of: {', '.join(BACKENDS)}"
    )
