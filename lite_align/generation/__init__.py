"""Generation: one interface for every backend, and the registry of backends that turn a resolved
model (``ModelRef``) into a live generator (see ``generation.base``).

    GenerationRequest(key, prompt, seeds, params) --Generator.generate--> GenerationResult per seed

A backend is one module in this package with one ``register_backend(Backend(...))`` call, and
its import below (a plug-in or a test registers from its own module the same way):

- ``llama_cpp``: GGUF files in this process (engine.LlamaCppGenerator), threads and live
  sequences chosen by lite_align.tuning;
- ``openai``: OpenAI-compatible servers (vLLM, llama.cpp's server, TGI) over HTTP.

What differs between backends is asked of the ``Backend``, never tested by name: whether a model is
a local file (its sha256 identifies it, its header is checked first, its threads and sequences are
calibrated on this machine), which registry keys it needs, how to open it, what identifies it.
``lite_align.loaders`` is the only code that opens one.
"""

from lite_align.generation import llama_cpp, openai
from lite_align.generation.base import (
    Backend,
    GenerationRequest,
    GenerationResult,
    Generator,
    SamplingParams,
    backend,
    backend_names,
    register_backend,
    registered_backend,
)

__all__ = [
    "Backend",
    "GenerationRequest",
    "GenerationResult",
    "Generator",
    "SamplingParams",
    "backend",
    "backend_names",
    "llama_cpp",
    "openai",
    "register_backend",
    "registered_backend",
]
