"""Distinct answers in the NoveltyBench sense (Zhang et al. 2025, "NoveltyBench: Evaluating
Language Models for Humanlike Diversity") and the discrete semantic entropy of the same classes.

A prompt's samples are split into equivalence classes greedily, in sample order: each sample not
yet placed opens a new class, and every later unplaced sample equivalent to that class's *first*
member joins it. Two samples are equivalent when

- both are short (at most 5 words each, words = the text stripped, lower-cased and split at
  whitespace, so "Paris." and "paris" differ): twice the number of words they share reaches the
  longer one's word count (two empty answers are equivalent);
- otherwise: their similarity exceeds a threshold. ``rouge1``: ROUGE-1 F above 0.458 (NoveltyBench's
  offline fallback; tokens as in lite_align.metrics.rouge). ``embedding``: cosine of the sentence
  vectors above ``EMBEDDING_THRESHOLD`` (read off NoveltyBench's released classes, see
  docs/method.md §9.6 and benchmarks/novelty_threshold.py).

NoveltyBench applies the short-answer rule only in front of its trained classifier; we apply it
in front of both thresholds (a one-word answer has too few words for a ROUGE or embedding
threshold to mean much).

Reported per prompt: the number of classes (1 .. n, higher = more diverse; NoveltyBench's files
store "distinct" = classes - 1), and the semantic entropy -Σ_c p_c log p_c over the classes' shares
of the samples (natural log; 0 when all samples are one class, log n when all differ).

    >>> partition_rouge1(["Paris", "paris", "Lyon", "The capital is Paris, of course it is"])
    [0, 0, 1, 2]
    >>> semantic_entropy([0, 0, 1, 1]) == math.log(2)
    True
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from lite_align.metrics.rouge import f_from_overlap, rouge_tokens, unigram_overlaps

__all__ = [
    "EMBEDDING_THRESHOLD",
    "ROUGE1_THRESHOLD",
    "SHORT_WORDS",
    "class_count",
    "greedy_partition",
    "partition_embedding",
    "partition_rouge1",
    "semantic_entropy",
    "short_answer_match",
    "short_answer_words",
]

SHORT_WORDS = 5
ROUGE1_THRESHOLD = 0.458
EMBEDDING_THRESHOLD = 0.66  # cosine, all-MiniLM-L6-v2; read off NoveltyBench data (benchmarks/novelty_threshold.py)


def short_answer_words(text: str) -> list[str]:
    """The words the short-answer rule compares: stripped, lower-cased, split at whitespace."""
    return text.strip().lower().split()


def short_answer_match(a: Sequence[str], b: Sequence[str]) -> bool | None:
    """The short-answer rule on two word lists: None when either has more than 5 words (the rule
    does not apply), else whether 2 * |shared words| >= the longer length.

    >>> short_answer_match(["toyota", "camry."], ["toyota", "camry", "hybrid."])
    False
    """
    longer = max(len(a), len(b))
    if longer > SHORT_WORDS:
        return None
    return 2 * len(set(a) & set(b)) >= longer


def greedy_partition(n: int, same: Callable[[int, int], bool]) -> list[int]:
    """Class labels 0, 1, ... of items 0..n-1 in order of first appearance; ``same(i, j)`` is asked
    only with i the first member of an open class and j a later unplaced item.

    >>> greedy_partition(4, lambda i, j: (i + j) % 2 == 0)
    [0, 1, 0, 1]
    """
    labels = [-1] * n
    n_classes = 0
    for i in range(n):
        if labels[i] >= 0:
            continue
        labels[i] = n_classes
        for j in range(i + 1, n):
            if labels[j] < 0 and same(i, j):
                labels[j] = n_classes
        n_classes += 1
    return labels


def _with_short_rule(texts: Sequence[str], similar: Callable[[int, int], bool]) -> Callable[[int, int], bool]:
    words = [short_answer_words(t) for t in texts]

    def same(i: int, j: int) -> bool:
        short = short_answer_match(words[i], words[j])
        return similar(i, j) if short is None else short

    return same


def partition_rouge1(
    texts: Sequence[str], threshold: float = ROUGE1_THRESHOLD, tokens: Sequence[Sequence[str]] | None = None
) -> list[int]:
    """Classes of a prompt's samples: short-answer rule, else ROUGE-1 F > ``threshold``.
    ``tokens``: the texts' rouge tokens, when already at hand."""
    toks = [rouge_tokens(t) for t in texts] if tokens is None else tokens
    overlap = unigram_overlaps(toks)
    lengths = [len(t) for t in toks]

    def similar(i: int, j: int) -> bool:
        return f_from_overlap(int(overlap[i, j]), lengths[i], lengths[j]) > threshold

    return greedy_partition(len(texts), _with_short_rule(texts, similar))


def partition_embedding(texts: Sequence[str], vectors: np.ndarray, threshold: float = EMBEDDING_THRESHOLD) -> list[int]:
    """Classes of a prompt's samples: short-answer rule, else cosine of their vectors > ``threshold``."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.shape[0] != len(texts):
        raise ValueError(f"{len(texts)} texts but {x.shape[0]} vectors")
    norms = np.linalg.norm(x, axis=1)
    unit = x / np.where(norms > 0, norms, 1.0)[:, None]
    cos = unit @ unit.T
    return greedy_partition(len(texts), _with_short_rule(texts, lambda i, j: bool(cos[i, j] > threshold)))


def class_count(labels: Sequence[int]) -> int:
    """Number of classes of a partition (NoveltyBench's "distinct" is this minus one)."""
    return len(set(labels))


def semantic_entropy(labels: Sequence[int]) -> float:
    """-Σ p log p over the classes' shares of the samples (natural log); NaN for no samples."""
    n = len(labels)
    if n == 0:
        return float("nan")
    entropy = -sum((c / n) * math.log(c / n) for c in Counter(labels).values())
    return entropy + 0.0  # -0.0 -> 0.0
