"""The metric registry: every diversity measure and every cross-model similarity, described once.

The analysis computes what is registered here, and every reader of its results takes its labels,
directions, digits and order from here: the terminal, Markdown and HTML reports, the JSON report,
``compare`` (which measures have per-prompt values to pair) and ``replay`` (which figures need the
sentence encoder and are left out under --lexical-only). Nothing else lists metric keys.

Two kinds of entries:

- a ``Family`` of within-prompt diversity ``Metric``s, computed together over one ``SampleSet``
  (the measures of a family share per-prompt work: tokens, n-gram tables, sentence vectors);
- a ``SimilaritySpec``: a text similarity for recoverability (docs/method.md §6), whose cross,
  baseline and recovery ratio every candidate gets.

Adding a metric is one new file that registers itself when imported::

    # lite_align/metrics/my_measure.py
    from lite_align.metrics.registry import Family, FamilyValues, Inputs, Metric, register_family
    from lite_align.stats import mean_ci

    MEAN_WORDS = Metric("mean_words", "mean words per answer", direction=0, digits=1)

    def compute(sample_set, inputs: Inputs) -> FamilyValues:
        per_prompt = {pid: sum(len(t.split()) for t in texts) / len(texts)
                      for pid, texts in sample_set.by_prompt.items() if texts}
        return FamilyValues({"mean_words": mean_ci(list(per_prompt.values()))},
                            {"mean_words": per_prompt})

    register_family(Family("my_measure", (MEAN_WORDS,), needs=frozenset({"texts"}), compute=compute))

and one import line in ``lite_align/metrics/__init__.py`` (the package imports every built-in
metric file, so that the registry is complete whenever ``lite_align.metrics`` is imported). A
plug-in or a test registers the same way from its own module (``registered`` undoes it after).

What each field decides:

- ``Metric.key``: its key in a ``--json`` diversity row (and in ``ci``); ``label`` in the Markdown
  and HTML tables, ``terminal_label`` in the terminal's panels (default: label and an arrow);
  ``direction`` +1 when higher is more diverse, -1 when lower is, 0 for a descriptive figure
  (lengths, rates); ``digits`` shown; ``order`` its place in every report (lower first);
  ``glance``, a column title in the terminal's at-a-glance table (``glance_digits`` there, default
  ``digits``); ``finding``, its name in the
  one-sentence finding (only metrics with a direction); ``interval``: an interval is reported;
  ``comparable``: ``compare`` pairs its per-prompt values between two runs; ``agreement``: it
  enters the metric agreement table (``analysis``: Spearman's rho over prompts between every pair
  of measures with a direction and per-prompt values) — False for a figure that ranks prompts as
  another does (a score divided by the prompt's sample count).
- ``Family.needs``: what the computation reads, from ``NEEDS`` (``texts``; ``words`` = word tokens;
  ``word_bags``; ``embeddings`` = one sentence vector per sample; ``token_vectors`` = contextual
  token vectors; ``vocab_size`` = the generating model's vocabulary size). A family that needs
  ``embeddings`` or ``token_vectors`` is computed only when an embedder is given (``compare`` pairs
  it only under ``--embeddings``) and is not recomputed by ``replay --lexical-only``.
- ``Family.compute(sample_set, inputs)`` returns ``FamilyValues``: an ``Estimate`` per metric key
  (mean over prompts with a 95% bootstrap interval), and, for ``compare``, each metric's per-prompt
  values (prompt id -> value; a prompt without a value is left out), and ``extra``: keys that are
  not figures but say how the figures were made (e.g. the vocabulary size EAD used), written
  into the row after the family's figures; ``Family.extra_keys`` names them (they are then never
  read back as figures).
- The JSON layout of a diversity row: the first family registered (the paper's lexical measures)
  is written before the row's counts; every later family's means after them, in registration
  order, and all intervals under ``ci``; the row closes with its metric agreement table
  (``agreement``, drawn from every measure with a direction). So registering a metric adds keys
  and never moves one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from lite_align.stats import Estimate

if TYPE_CHECKING:
    from lite_align.data import SampleSet

__all__ = [
    "NEEDS",
    "Family",
    "FamilyValues",
    "Inputs",
    "Metric",
    "PairSimilarity",
    "SimilaritySpec",
    "families",
    "family_of",
    "is_embedding_metric",
    "is_extra_key",
    "metric",
    "metrics",
    "register_family",
    "register_similarity",
    "registered",
    "similarities",
    "similarity",
]

NEEDS = frozenset({"texts", "words", "word_bags", "embeddings", "token_vectors", "vocab_size"})
ENCODER_NEEDS = frozenset({"embeddings", "token_vectors"})
_ARROWS = {1: " ↑", -1: " ↓", 0: ""}


@dataclass(frozen=True)
class Metric:
    """One within-prompt diversity measure, as every report and reader shows it (see the module doc)."""

    key: str
    label: str
    direction: int = 0
    digits: int = 3
    hint: str = ""
    terminal_label: str = ""
    order: float = 1000.0
    glance: str = ""
    glance_digits: int | None = None
    finding: str = ""
    interval: bool = True
    comparable: bool = True
    agreement: bool = True
    family: str = ""  # set by register_family

    def __post_init__(self) -> None:
        if self.direction not in _ARROWS:
            raise ValueError(f"metric {self.key}: direction must be 1, -1 or 0, got {self.direction}")

    @property
    def reading(self) -> str:
        """How to read it, for the tables' notes.

        >>> Metric("x", "x", direction=-1).reading
        'lower = more diverse'
        """
        if self.hint:
            return self.hint
        return {1: "higher = more diverse", -1: "lower = more diverse", 0: ""}[self.direction]

    @property
    def panel_label(self) -> str:
        return self.terminal_label or self.label + _ARROWS[self.direction]


@dataclass(frozen=True)
class Inputs:
    """What a family may read beside the sample set: the sentence/token embedder (None in a
    lexical analysis) and the generating model's vocabulary size (None when unknown)."""

    embedder: Any | None = None
    vocab_size: int | None = None

    def provide(self) -> frozenset[str]:
        have = {"texts", "words", "word_bags"}
        if self.embedder is not None:
            have |= ENCODER_NEEDS
        if self.vocab_size is not None:
            have.add("vocab_size")
        return frozenset(have)


@dataclass(frozen=True)
class FamilyValues:
    """A family's figures over one sample set: an estimate per metric key (written in this order),
    per-prompt values (metric key -> prompt id -> value) for ``compare`` and the agreement table,
    and ``extra`` row keys that are not figures (named in ``Family.extra_keys``)."""

    estimates: Mapping[str, Estimate]
    per_prompt: Mapping[str, Mapping[int, float]] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Family:
    """Metrics computed together over a sample set. ``optional_needs`` are read when available
    (e.g. ``vocab_size``, with a stated default otherwise)."""

    name: str
    metrics: tuple[Metric, ...]
    needs: frozenset[str]
    compute: Callable[[SampleSet, Inputs], FamilyValues] = field(compare=False)
    optional_needs: frozenset[str] = frozenset()
    extra_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = (self.needs | self.optional_needs) - NEEDS
        if unknown:
            raise ValueError(f"metric family {self.name}: unknown needs {sorted(unknown)}; known: {sorted(NEEDS)}")

    @property
    def needs_encoder(self) -> bool:
        return bool(self.needs & ENCODER_NEEDS)

    def available(self, inputs: Inputs) -> bool:
        return self.needs <= inputs.provide()


class PairSimilarity(Protocol):
    """A text similarity over paired texts (``metrics.cross.Similarity``)."""

    @property
    def name(self) -> str: ...

    def pairs(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class SimilaritySpec:
    """A similarity for recoverability: ``make(embedder, shared)`` builds it (the embedder is None
    for similarities that need none; ``shared`` is one dict per table, where similarities built
    from the same encoder pass leave what they share). Labels: ``label`` (Markdown, HTML, compare), ``terminal_label``
    (the terminal's wide table), ``short`` (its narrow table), ``glance`` (the at-a-glance column)."""

    key: str
    label: str
    make: Callable[[Any, dict[str, Any]], PairSimilarity] = field(compare=False)
    needs: frozenset[str] = frozenset({"texts"})
    terminal_label: str = ""
    short: str = ""
    glance: str = ""
    order: float = 1000.0

    @property
    def needs_encoder(self) -> bool:
        return bool(self.needs & ENCODER_NEEDS)


_FAMILIES: dict[str, Family] = {}
_SIMILARITIES: dict[str, SimilaritySpec] = {}


def register_family(family: Family) -> Family:
    """Add a family (its metrics' keys must be new); returns it with each metric's ``family`` set."""
    if family.name in _FAMILIES:
        raise ValueError(f"metric family {family.name!r} is registered already")
    taken = {m.key for f in _FAMILIES.values() for m in f.metrics}
    for m in family.metrics:
        if m.key in taken:
            raise ValueError(f"metric {m.key!r} is registered already (family {family_of(m.key).name})")
    done = replace(family, metrics=tuple(replace(m, family=family.name) for m in family.metrics))
    _FAMILIES[family.name] = done
    return done


def register_similarity(spec: SimilaritySpec) -> SimilaritySpec:
    if spec.key in _SIMILARITIES:
        raise ValueError(f"similarity {spec.key!r} is registered already")
    _SIMILARITIES[spec.key] = spec
    return spec


@contextlib.contextmanager
def registered(*entries: Family | SimilaritySpec) -> Iterator[None]:
    """Register ``entries`` while inside (for tests and one-off analyses), then remove them."""
    done: list[Family | SimilaritySpec] = []
    try:
        for e in entries:
            done.append(register_family(e) if isinstance(e, Family) else register_similarity(e))
        yield
    finally:
        for e in done:
            if isinstance(e, Family):
                _FAMILIES.pop(e.name, None)
            else:
                _SIMILARITIES.pop(e.key, None)


def families() -> tuple[Family, ...]:
    """Every family, in registration order (the order of their figures in a JSON row)."""
    return tuple(_FAMILIES.values())


def metrics() -> tuple[Metric, ...]:
    """Every metric, in report order (``order``, then registration)."""
    found = [m for f in _FAMILIES.values() for m in f.metrics]
    return tuple(sorted(found, key=lambda m: m.order))


def metric(key: str) -> Metric | None:
    """The metric registered under ``key``, or None."""
    return next((m for f in _FAMILIES.values() for m in f.metrics if m.key == key), None)


def family_of(key: str) -> Family:
    for f in _FAMILIES.values():
        if any(m.key == key for m in f.metrics):
            return f
    raise KeyError(f"no metric {key!r} is registered")


def is_extra_key(key: str) -> bool:
    """Whether ``key`` is a row key some family writes beside its figures (``Family.extra_keys``)."""
    return any(key in f.extra_keys for f in _FAMILIES.values())


def is_embedding_metric(key: str) -> bool:
    """Whether ``key`` is a registered metric whose family needs the encoder."""
    return metric(key) is not None and family_of(key).needs_encoder


def similarities() -> tuple[SimilaritySpec, ...]:
    """Every similarity, in report order."""
    return tuple(sorted(_SIMILARITIES.values(), key=lambda s: s.order))


def similarity(key: str) -> SimilaritySpec | None:
    return _SIMILARITIES.get(key)
