"""Information aggregation (docs/method.md §7): how much of what a prompt's base answers say
between them one answer covers, for one aligned answer against one base answer.

Two judge-free measures, per prompt, then the mean over prompts with bootstrap intervals:

- **word bags**: the target is the union U of the word bags (``lite_align.text.word_bag``) of base
  answers; an answer's coverage is |bag(answer) ∩ U| / |U|.
- **sentence embeddings**: the target is the list of base sentences; an answer's coverage is the
  share of them that have a sentence of the answer at cosine >= ``threshold``.

Which base answers make the target. The paper's framing is "how much of the content spread over all
base samples one answer covers". Taken literally (U over all n base answers) a base answer is
measured against a target that contains itself: it covers its own words and sentences fully, which
no aligned answer can, so that figure favours the base answer (on the paper's ConflictingQA release
one base answer covers 0.264 of the full union against 0.247 for one gpt-3.5 answer, while against
the other four base answers it covers only 0.143). The headline figures are therefore
**leave-one-out**: for each base answer b_i the target is built from the *other* base answers, b_i is
scored against it, and every aligned answer is scored against the very same target; the prompt's
figure averages over i (and over the aligned answers). Both kinds of answer then face identical
targets, none of which they helped write. The literal variant (target from all base answers, b_i's
own content included) is reported beside it as ``inclusive``.

Sentences are NLTK's Punkt sentences (``lite_align.text.sentences``) of each line (a list item is
its own unit; Punkt alone glues a bulleted list into one "sentence"), stripped; pieces without a
letter (list numbers, rules) are dropped.

Threshold: all-MiniLM-L6-v2 cosine 0.7. Measured on the paper's ConflictingQA release (llama-2-base
sentences, each matched to its closest gpt-3.5-turbo sentence): against the answers to the *same*
prompt the closest match has median 0.58 and reaches 0.7 for 38% of base sentences; against the
answers to an unrelated prompt its median is 0.13, its 95th percentile 0.35, and it reaches 0.6 for
0.1% and 0.7 for none. Read by hand, pairs at 0.6-0.7 share a topic but make different points,
pairs at >= 0.7 mostly make the same point ("Yes, fish oil reduces heart disease risk." / "There is
some evidence ... fish oil ... may help reduce the risk", 0.89).

A prompt counts when it has at least two base answers (leave-one-out needs another) and one aligned
answer; a leave-one-out target that is empty (the other base answers are all empty) is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from lite_align.data import SampleSet
from lite_align.stats import Estimate, diff_ci, mean_ci
from lite_align.text import sentences, word_bag

__all__ = [
    "DEFAULT_THRESHOLD",
    "CoverageResult",
    "Measure",
    "coverage",
    "embedding_coverage",
    "sentence_units",
    "wordbag_coverage",
]

DEFAULT_THRESHOLD = 0.7
_HAS_LETTER = re.compile(r"[^\W\d_]")


class SentenceEmbedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def sentence_units(text: str) -> list[str]:
    """The Punkt sentences of each line of ``text``, stripped; a piece without a letter (a list
    number "1." that Punkt splits off, a rule "---") is dropped.

    >>> sentence_units("Yes. It helps.\\n- cheap\\n1. Fast\\n---")
    ['Yes.', 'It helps.', '- cheap', 'Fast']
    """
    return [
        unit
        for line in text.split("\n")
        for sentence in sentences(line)
        if _HAS_LETTER.search(unit := sentence.strip())
    ]


def wordbag_coverage(answer: frozenset[str], target: frozenset[str]) -> float:
    """|answer ∩ target| / |target|; NaN when the target is empty.

    >>> wordbag_coverage(frozenset("ab"), frozenset("bcd"))  # b of {b, c, d}
    0.3333333333333333
    """
    return len(answer & target) / len(target) if target else float("nan")


def embedding_coverage(answer: np.ndarray, target: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Share of the target's rows (unit sentence vectors) whose closest row of ``answer`` has
    cosine >= ``threshold``; an answer without sentences covers 0, an empty target is NaN.

    >>> t = np.array([[1.0, 0.0], [0.0, 1.0]]); a = np.array([[0.8, 0.6]])
    >>> embedding_coverage(a, t, 0.7), embedding_coverage(a, t, 0.5)  # cosines 0.8 and 0.6
    (0.5, 1.0)
    """
    if len(target) == 0:
        return float("nan")
    if len(answer) == 0:
        return 0.0
    best = np.einsum("id,jd->ij", target, answer).max(axis=1)
    return float(np.mean(best >= threshold))


@dataclass(frozen=True)
class Measure:
    """One way of measuring coverage: single-answer coverage of an aligned and a base answer against
    leave-one-out targets, their paired difference, and the inclusive variant."""

    aligned_single: Estimate
    base_single: Estimate
    gain: Estimate  # aligned_single - base_single, paired over prompts
    inclusive_aligned: Estimate
    inclusive_base: Estimate

    def to_json(self) -> dict[str, Any]:
        main = {"aligned_single": self.aligned_single, "base_single": self.base_single, "gain": self.gain}
        return {
            **{name: _number(est.mean) for name, est in main.items()},
            "ci": {name: [_number(est.lo), _number(est.hi)] for name, est in main.items()},
            "inclusive": {
                "aligned_single": _number(self.inclusive_aligned.mean),
                "base_single": _number(self.inclusive_base.mean),
            },
        }


@dataclass(frozen=True)
class CoverageResult:
    """Coverage of a base/aligned pair; ``embedding`` is None when no embedder was given.
    ``per_prompt`` holds per-prompt arrays in ``prompt_ids`` order."""

    base_label: str
    aligned_label: str
    wordbag: Measure
    embedding: Measure | None
    threshold: float
    n_prompts: int
    n_skipped: int  # shared prompts without two base answers, or whose targets were all empty
    prompt_ids: tuple[int, ...] = ()
    per_prompt: Mapping[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base_label,
            "aligned": self.aligned_label,
            "target": "leave-one-out",
            "wordbag": self.wordbag.to_json(),
            "embedding": self.embedding.to_json() if self.embedding is not None else None,
            "threshold": self.threshold,
            "n_prompts": self.n_prompts,
            "n_skipped": self.n_skipped,
        }


def _number(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not np.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def _prompt_wordbag(base: Sequence[str], aligned: Sequence[str]) -> tuple[float, float, float, float]:
    """(aligned, base) leave-one-out, then (aligned, base) inclusive, for one prompt.

    >>> _prompt_wordbag(["cats purr", "dogs bark"], ["cats purr dogs bark"])
    (1.0, 0.0, 1.0, 0.5)
    """
    base_bags = [word_bag(t) for t in base]
    aligned_bags = [word_bag(t) for t in aligned]
    loo_aligned: list[float] = []
    loo_base: list[float] = []
    for i, bag in enumerate(base_bags):
        target = frozenset().union(*base_bags[:i], *base_bags[i + 1 :])
        if target:
            loo_base.append(wordbag_coverage(bag, target))
            loo_aligned.extend(wordbag_coverage(a, target) for a in aligned_bags)
    union = frozenset().union(*base_bags)
    incl_aligned = _nanmean([wordbag_coverage(a, union) for a in aligned_bags])
    incl_base = _nanmean([wordbag_coverage(b, union) for b in base_bags])
    return _nanmean(loo_aligned), _nanmean(loo_base), incl_aligned, incl_base


def _prompt_embedding(
    base: Sequence[np.ndarray], aligned: Sequence[np.ndarray], threshold: float
) -> tuple[float, float, float, float]:
    """The same from the sentence vectors of each answer ((n_sentences, dim) arrays)."""
    dim = base[0].shape[1] if base else 0
    loo_aligned: list[float] = []
    loo_base: list[float] = []
    for i, vectors in enumerate(base):
        target = np.concatenate([*base[:i], *base[i + 1 :]]) if len(base) > 1 else np.zeros((0, dim))
        if len(target):
            loo_base.append(embedding_coverage(vectors, target, threshold))
            loo_aligned.extend(embedding_coverage(a, target, threshold) for a in aligned)
    every = np.concatenate(list(base)) if base else np.zeros((0, dim))
    incl_aligned = _nanmean([embedding_coverage(a, every, threshold) for a in aligned])
    incl_base = _nanmean([embedding_coverage(b, every, threshold) for b in base])
    return _nanmean(loo_aligned), _nanmean(loo_base), incl_aligned, incl_base


def _sentence_vectors(answers: Sequence[Sequence[str]], embedder: SentenceEmbedder) -> list[list[np.ndarray]]:
    """Per prompt, per answer, the unit vectors of its sentences; every distinct sentence is
    embedded once, in one call (so the embedder batches and caches them together)."""
    units = [[sentence_units(text) for text in texts] for texts in answers]
    unique = list(dict.fromkeys(u for texts in units for answer in texts for u in answer))
    vectors = np.asarray(embedder.embed(unique), dtype=np.float64) if unique else np.zeros((0, 1))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.where(norms == 0, 1.0, norms)
    row = {u: i for i, u in enumerate(unique)}
    dim = vectors.shape[1]
    return [
        [vectors[[row[u] for u in answer]] if answer else np.zeros((0, dim)) for answer in texts] for texts in units
    ]


def _measure(rows: np.ndarray) -> Measure:
    """Estimates from per-prompt rows (aligned, base, inclusive aligned, inclusive base)."""
    a, b, ia, ib = rows.T
    return Measure(
        aligned_single=mean_ci(a),
        base_single=mean_ci(b),
        gain=diff_ci(a, b),
        inclusive_aligned=mean_ci(ia[~np.isnan(ia)]),
        inclusive_base=mean_ci(ib[~np.isnan(ib)]),
    )


def coverage(
    base: SampleSet,
    aligned: SampleSet,
    *,
    embedder: SentenceEmbedder | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> CoverageResult:
    """Single-answer coverage of ``aligned`` and ``base`` answers over the prompts both sets hold
    (see the module docstring); by sentence embeddings only when an ``embedder`` is given."""
    shared = sorted(set(base.by_prompt) & set(aligned.by_prompt))
    candidates = [pid for pid in shared if len(base.by_prompt[pid]) >= 2 and aligned.by_prompt[pid]]
    word_rows = {pid: _prompt_wordbag(base.by_prompt[pid], aligned.by_prompt[pid]) for pid in candidates}
    # a prompt counts when its leave-one-out word-bag figures exist (a target was not empty)
    ids = tuple(pid for pid in candidates if not np.isnan(word_rows[pid][0]))
    words = np.array([word_rows[pid] for pid in ids], dtype=np.float64).reshape(len(ids), 4)
    per_prompt: dict[str, np.ndarray] = {
        "wordbag_aligned": words[:, 0],
        "wordbag_base": words[:, 1],
    }
    embedding = None
    if embedder is not None:
        base_vecs = _sentence_vectors([base.by_prompt[pid] for pid in ids], embedder)
        aligned_vecs = _sentence_vectors([aligned.by_prompt[pid] for pid in ids], embedder)
        emb = np.array(
            [_prompt_embedding(b, a, threshold) for b, a in zip(base_vecs, aligned_vecs, strict=True)],
            dtype=np.float64,
        ).reshape(len(ids), 4)
        # a prompt whose base answers have no sentence at all has no embedding figure
        kept = ~np.isnan(emb[:, 0])
        embedding = _measure(emb[kept])
        per_prompt["embedding_aligned"] = emb[:, 0]
        per_prompt["embedding_base"] = emb[:, 1]
    return CoverageResult(
        base_label=base.label,
        aligned_label=aligned.label,
        wordbag=_measure(words),
        embedding=embedding,
        threshold=threshold,
        n_prompts=len(ids),
        n_skipped=len(shared) - len(ids),
        prompt_ids=ids,
        per_prompt=per_prompt,
    )
