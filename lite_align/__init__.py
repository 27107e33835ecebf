"""lite_align: the base-vs-aligned diversity study of Lake, Choi & Durrett (NAACL 2025), offline.

The library works without the CLI: registry -> prompts -> generation -> store -> metrics -> report.
What a notebook needs is exported here::

    import lite_align as la

    sets = {s.label: s for s in la.read_samples("runs/quick")}   # a run directory, or released outputs
    results = la.analyse(sets)                                    # typed Results (la.Results)
    print(la.render({}, results, fmt="markdown"))

and ``la.run_study(pair=..., limit=..., out=...)`` runs a study as ``lite-align run`` does. The
registries take new entries from outside the package: ``la.register_family`` (metrics),
``la.register_condition`` (conditions), ``la.register_backend`` (generation backends).
Heavy dependencies (llama_cpp, onnxruntime) load only when a model is opened (``run_study`` loads
llama.cpp first, before numpy), and each exported name loads its module on first use.
"""

import importlib
from typing import TYPE_CHECKING, Any

from lite_align.native import load_llama_first as _load_llama_first
from lite_align.version import __version__

# Each name from the module that defines it. They load on first use (PEP 562): every `lite-align`
# command imports this package first, and most need only a few of these modules.
_EXPORTS = {
    "Backend": "lite_align.generation",
    "Condition": "lite_align.conditions",
    "Family": "lite_align.metrics.registry",
    "FamilyValues": "lite_align.metrics.registry",
    "Generator": "lite_align.generation",
    "Metric": "lite_align.metrics.registry",
    "ModelRef": "lite_align.data",
    "Results": "lite_align.results",
    "SampleSet": "lite_align.data",
    "analyse": "lite_align.analysis",
    "load_registry": "lite_align.registry",
    "read_report": "lite_align.api",
    "read_samples": "lite_align.readers",
    "register_backend": "lite_align.generation",
    "register_condition": "lite_align.conditions",
    "register_family": "lite_align.metrics.registry",
    "render": "lite_align.api",
    "run_study": "lite_align.api",
}

if TYPE_CHECKING:
    from lite_align.analysis import analyse
    from lite_align.api import read_report, render, run_study
    from lite_align.conditions import Condition, register_condition
    from lite_align.data import ModelRef, SampleSet
    from lite_align.generation import Backend, Generator, register_backend
    from lite_align.metrics.registry import Family, FamilyValues, Metric, register_family
    from lite_align.readers import read_samples
    from lite_align.registry import load_registry
    from lite_align.results import Results


# Names that open GGUF models: llama.cpp's library loads before their modules import numpy, the
# order a CUDA build needs (lite_align/native.py).
_OPENS_MODELS = {"run_study"}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lite_align' has no attribute {name!r}")
    if name in _OPENS_MODELS:
        _load_llama_first()
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "Backend",
    "Condition",
    "Family",
    "FamilyValues",
    "Generator",
    "Metric",
    "ModelRef",
    "Results",
    "SampleSet",
    "__version__",
    "analyse",
    "load_registry",
    "read_report",
    "read_samples",
    "register_backend",
    "register_condition",
    "register_family",
    "render",
    "run_study",
]
