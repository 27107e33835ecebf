"""Two n-gram repetition measures on whitespace words, as Shaib et al. 2024 ("Standardizing the
Measurement of Text Diversity") compute them.

Tokens: the text split at runs of whitespace (``str.split()``), case and punctuation kept, so
"Yes," and "yes" are different words. (The authors' n-gram diversity splits at single spaces,
which makes an empty word of every second space and glues words across newlines; we split at any
whitespace. docs/method.md §9.4 compares the two.)

- **n-gram diversity score**: the samples joined by spaces into one word sequence (so n-grams may
  span the end of one sample and the start of the next, as there), and for n = 1..4 the number of
  distinct n-grams divided by the number of n-grams, summed over n: 0 < score <= 4, higher = more
  diverse. Undefined (NaN) when the joined text has fewer than 4 words.
- **self-repetition** (Salkar et al. 2022): for each sample, the distinct 4-grams it contains; for
  each of those, the number of *other* samples containing it; the sample's score is
  log(1 + the sum of those numbers), and the prompt's score the mean over its samples. 0 when no
  sample shares a 4-gram with another; higher = more repetition across samples = less diverse.

    >>> round(ngram_diversity(["a b c d", "a b c d"]), 4)  # 4/8 + 4/7 + 4/6 + 4/5 of "a b c d a b c d"
    2.5381
    >>> round(self_repetition(["a b c d e", "a b c d x", "q r s t u"]), 4)  # (log 2 + log 2 + 0) / 3
    0.4621
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lite_align.metrics.ngrams import Vocabulary, distinct_sorted, ngram_columns_ids

__all__ = [
    "NGRAM_DIVERSITY_ORDERS",
    "SELF_REPETITION_ORDER",
    "ngram_diversity",
    "ngram_diversity_ids",
    "self_repetition",
    "self_repetition_ids",
]

NGRAM_DIVERSITY_ORDERS = (1, 2, 3, 4)
SELF_REPETITION_ORDER = 4


def ngram_diversity_ids(docs: Sequence[np.ndarray], orders: Sequence[int] = NGRAM_DIVERSITY_ORDERS) -> float:
    """n-gram diversity of samples given as integer word ids (n-grams span sample boundaries)."""
    joined = np.concatenate(docs) if len(docs) else np.zeros(0, dtype=np.int64)
    if joined.size < max(orders):
        return float("nan")
    wanted = set(orders)
    total = 0.0
    for n, (_, column, n_grams) in enumerate(ngram_columns_ids([joined], max(orders)), start=1):
        if n in wanted:
            total += n_grams / column.size
    return total


def ngram_diversity(texts: Sequence[str], orders: Sequence[int] = NGRAM_DIVERSITY_ORDERS) -> float:
    """Sum over ``orders`` of distinct / total n-grams of the samples joined (higher = more diverse)."""
    vocab = Vocabulary()
    return ngram_diversity_ids([vocab.encode(t.split()) for t in texts], orders)


def self_repetition_ids(docs: Sequence[np.ndarray], n: int = SELF_REPETITION_ORDER) -> float:
    """Self-repetition of samples given as integer word ids; NaN with fewer than two samples."""
    n_docs = len(docs)
    if n_docs < 2:
        return float("nan")
    *_, (doc, column, n_grams) = ngram_columns_ids(docs, n)
    if n_grams == 0:
        return 0.0
    present = distinct_sorted(doc * n_grams + column)  # each (sample, distinct n-gram) once
    in_doc, gram = present // n_grams, present % n_grams
    in_samples = np.bincount(gram, minlength=n_grams)  # samples containing each n-gram
    others = np.bincount(in_doc, weights=in_samples[gram] - 1, minlength=n_docs)
    return float(np.log1p(others).mean())


def self_repetition(texts: Sequence[str], n: int = SELF_REPETITION_ORDER) -> float:
    """Mean over samples of log(1 + occurrences of the sample's distinct n-grams in the other
    samples); NaN with fewer than two samples (nothing to repeat across)."""
    vocab = Vocabulary()
    return self_repetition_ids([vocab.encode(t.split()) for t in texts], n)
