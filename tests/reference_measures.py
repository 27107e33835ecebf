"""The reference implementations our diversity measures are checked against (tests only).

- ``vendi_score.vendi`` (PyPI vendi-score, the authors' package) and its ``text_utils`` (n-gram
  Vendi, Self-BLEU), loaded with stand-ins for the model libraries it imports at the top but
  these functions never call (torch, transformers, datasets);
- single modules of Shaib et al.'s ``diversity`` package (PyPI, installed with --no-deps: its
  package import pulls in spacy, openai and CUDA torch), loaded by file path: compression.py,
  ngram_diversity.py, self_repetition.py, homogenization.py (which imports the Hugging Face
  ``evaluate`` package only for its BERTScore and BLEU variants: a stand-in serves);
- ``rouge_score`` (Google's ROUGE) and NLTK's BLEU.

Nothing here is part of lite_align; lite_align imports none of these packages.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from release import conflictingqa

from lite_align.data import SampleSet
from lite_align.readers import read_samples


def _stand_in(name: str) -> types.ModuleType:
    """A module whose every attribute is a callable that fails if a test ever reaches it."""
    module = types.ModuleType(name)

    def missing(attr: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"{name}.{attr} is a test stand-in and must not be used")

        return fail

    module.__getattr__ = missing  # type: ignore[method-assign]
    return module


@contextmanager
def stand_ins(*names: str) -> Iterator[None]:
    """Put stand-in modules under ``names`` in sys.modules for the duration (then restore)."""
    saved = {name: sys.modules.get(name) for name in names}
    try:
        for name in names:
            sys.modules[name] = _stand_in(name)
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _load(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # finds the package without running its __init__
    assert spec is not None and spec.submodule_search_locations, (
        f"the test dependency '{package}' is not installed; run ./install.sh"
    )
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def shaib(name: str) -> types.ModuleType:
    """One module of Shaib et al.'s ``diversity`` package, loaded alone by file path."""
    with stand_ins("evaluate"):
        return _load(_package_dir("diversity") / f"{name}.py", f"_reference_diversity_{name}")


@cache
def vendi() -> types.ModuleType:
    from vendi_score import vendi as module

    return module


@cache
def vendi_text() -> types.ModuleType:
    """vendi_score.text_utils, its model-library imports stood in for."""
    with stand_ins("torch", "transformers", "datasets"):
        return _load(_package_dir("vendi_score") / "text_utils.py", "_reference_vendi_text_utils")


@cache
def release_sets() -> tuple[SampleSet, ...]:
    """The six sample sets of the shared release (ConflictingQA outputs)."""
    dirs = sorted(p for p in (conflictingqa() / "outputs").iterdir() if (p / "samples.jsonl").is_file())
    assert len(dirs) == 6, f"expected the release's 6 output files, found {len(dirs)}"
    return tuple(s for d in dirs for s in read_samples(d))


@cache
def release_prompts(step: int = 1) -> list[tuple[str, int, tuple[str, ...]]]:
    """(file label, prompt id, samples) of the shared release, every ``step``-th prompt of each file."""
    return [
        (s.label, pid, s.by_prompt[pid]) for s in release_sets() for pid in s.prompt_ids()[::step] if s.by_prompt[pid]
    ]
