"""Cross-model similarity and the recovery ratio (docs/method.md §6, "recoverability").

Per prompt the reference answer is the teacher's sample 0:

- baseline = mean sim(ref s0, ref s_j) over the teacher's other samples j = 1..n-1;
- cross    = mean sim(ref s0, cand s_j) over all the candidate's samples (the pair s0-s0 left out
  when the candidate is the reference itself);
- ratio    = sum(cross) / sum(baseline) over the prompts kept, i.e. mean cross / mean baseline,
  with a paired bootstrap interval.

For greedy runs (one sample each) pass the sampled teacher run as ``baseline``: the baseline then
comes from its samples, exactly as above, and cross compares the greedy reference with the greedy
candidate.

The similarity is pluggable: anything with a ``name`` and a batched ``pairs(a, b)``. This module
provides word-bag Jaccard; embedding cosine and BERTScore-style F1 live with their encoders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lite_align.data import SampleSet
from lite_align.metrics.lexical import jaccard
from lite_align.metrics.registry import SimilaritySpec, register_similarity
from lite_align.stats import Estimate, mean_ci, ratio_ci
from lite_align.text import word_bag

__all__ = ["CrossResult", "JaccardSimilarity", "Similarity", "cross_similarity"]


@runtime_checkable
class Similarity(Protocol):
    """A text similarity, computed element-wise over paired texts in one batch. ``name`` may be a
    plain attribute or a property."""

    @property
    def name(self) -> str: ...

    def pairs(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """sim(a[i], b[i]) for every i, as a float array; NaN where a pair has no defined value."""
        ...


@dataclass(frozen=True)
class JaccardSimilarity:
    """Word-bag Jaccard (``lite_align.text.word_bag``); NaN when both bags are empty.

    >>> JaccardSimilarity().pairs(["The cat sat."], ["The cat ran."]).round(3).tolist()
    [0.5]
    """

    stem: bool = False
    ngram: int = 1

    @property
    def name(self) -> str:
        parts = ["jaccard"] + (["stem"] if self.stem else []) + ([f"{self.ngram}gram"] if self.ngram > 1 else [])
        return "-".join(parts)

    def pairs(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        if len(a) != len(b):
            raise ValueError("pairs() needs two sequences of the same length")
        bags: dict[str, frozenset[str]] = {}

        def bag(text: str) -> frozenset[str]:
            found = bags.get(text)
            if found is None:
                found = bags[text] = word_bag(text, stem=self.stem, ngram=self.ngram)
            return found

        return np.array([jaccard(bag(x), bag(y)) for x, y in zip(a, b, strict=True)], dtype=np.float64)


@dataclass(frozen=True)
class CrossResult:
    """Cross-model similarity of ``candidate`` to ``reference``; per-prompt arrays follow ``prompt_ids``."""

    reference: str
    candidate: str
    similarity: str
    cross: Estimate
    baseline: Estimate
    ratio: Estimate
    n_prompts: int
    prompt_ids: tuple[int, ...] = ()
    cross_per_prompt: np.ndarray = field(default_factory=lambda: np.zeros(0), compare=False, repr=False)
    baseline_per_prompt: np.ndarray = field(default_factory=lambda: np.zeros(0), compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "similarity": self.similarity,
            "cross": _number(self.cross.mean),
            "baseline": _number(self.baseline.mean),
            "ratio": _number(self.ratio.mean),
            "ratio_ci": [_number(self.ratio.lo), _number(self.ratio.hi)],
            "cross_ci": [_number(self.cross.lo), _number(self.cross.hi)],
            "baseline_ci": [_number(self.baseline.lo), _number(self.baseline.hi)],
            "n_prompts": self.n_prompts,
        }


def _number(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def _is_same_run(a: SampleSet, b: SampleSet) -> bool:
    return a is b or (a.label == b.label and a.source == b.source and a.by_prompt == b.by_prompt)


def cross_similarity(
    reference: SampleSet,
    candidate: SampleSet,
    sim: Similarity,
    *,
    baseline: SampleSet | None = None,
) -> CrossResult:
    """Cross, baseline and recovery ratio over the prompts the sets share (see the module doc).

    A prompt is left out when its baseline has no other sample to compare (fewer than 2), when no
    candidate sample is left, or when every pair's similarity is undefined (NaN).
    """
    base = reference if baseline is None else baseline
    itself = _is_same_run(reference, candidate)
    ids = sorted(set(reference.by_prompt) & set(candidate.by_prompt) & set(base.by_prompt))

    # One batch: for each prompt, its baseline pairs then its cross pairs.
    left: list[str] = []
    right: list[str] = []
    spans: list[tuple[int, int, int, int]] = []  # per prompt: baseline [b0, b1), cross [c0, c1)
    for pid in ids:
        ref0 = reference.by_prompt[pid][0]
        others = base.by_prompt[pid][1:]
        b0 = len(left)
        base0 = base.by_prompt[pid][0]
        left += [base0] * len(others)
        right += others
        c0 = len(left)
        cand = candidate.by_prompt[pid][1:] if itself else candidate.by_prompt[pid]
        left += [ref0] * len(cand)
        right += cand
        spans.append((b0, c0, c0, len(left)))
    values = np.asarray(sim.pairs(left, right), dtype=np.float64) if left else np.zeros(0)
    if values.shape != (len(left),):
        raise ValueError(f"similarity {sim.name!r} returned {values.shape} values for {len(left)} pairs")

    kept, cross_p, base_p = [], [], []
    for pid, (b0, b1, c0, c1) in zip(ids, spans, strict=True):
        b, c = values[b0:b1], values[c0:c1]
        if np.isnan(b).all() or np.isnan(c).all():  # also true when there is no pair at all
            continue
        kept.append(pid)
        base_p.append(float(np.nanmean(b)))
        cross_p.append(float(np.nanmean(c)))
    cross_arr, base_arr = np.array(cross_p), np.array(base_p)
    return CrossResult(
        reference=reference.label,
        candidate=candidate.label,
        similarity=sim.name,
        cross=mean_ci(cross_arr),
        baseline=mean_ci(base_arr),
        ratio=ratio_ci(cross_arr, base_arr),
        n_prompts=len(kept),
        prompt_ids=tuple(kept),
        cross_per_prompt=cross_arr,
        baseline_per_prompt=base_arr,
    )


register_similarity(
    SimilaritySpec(
        "jaccard",
        "word-bag Jaccard",
        make=lambda embedder, shared: JaccardSimilarity(),
        needs=frozenset({"word_bags"}),
        terminal_label="Jaccard (word bags)",
        short="Jaccard",
        glance="Jacc.\nratio",
        order=10,
    )
)
