"""Two n-gram repetition measures on whitespace words, as Shaib et al. 2024 ("Standardizing the
Measurement of Text Diversity") compute them.

Tokens: the text split at runs of whitespace (``str.split()``), case and punctuation kept, so
"Yes," and "yes" are different words. (The authors' n-gram diversity splits at single spaces,
which makes an empty word of every second space and glues words across newlines; we split at any
whitespace. docs/measures.md compares the two.)

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

import math
from collections import Counter
from collections.abc import Sequence

__all__ = ["NGRAM_DIVERSITY_ORDERS", "SELF_REPETITION_ORDER", "ngram_diversity", "self_repetition"]

NGRAM_DIVERSITY_ORDERS = (1, 2, 3, 4)
SELF_REPETITION_ORDER = 4


def _ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return list(zip(*(words[k:] for k in range(n)), strict=False))


def ngram_diversity(texts: Sequence[str], orders: Sequence[int] = NGRAM_DIVERSITY_ORDERS) -> float:
    """Sum over ``orders`` of distinct / total n-grams of the samples joined (higher = more diverse)."""
    words = " ".join(texts).split()
    if len(words) < max(orders):
        return float("nan")
    total = 0.0
    for n in orders:
        grams = _ngrams(words, n)
        total += len(set(grams)) / len(grams)
    return total


def self_repetition(texts: Sequence[str], n: int = SELF_REPETITION_ORDER) -> float:
    """Mean over samples of log(1 + occurrences of the sample's distinct n-grams in the other
    samples); NaN with fewer than two samples (nothing to repeat across)."""
    if len(texts) < 2:
        return float("nan")
    per_sample = [set(_ngrams(t.split(), n)) for t in texts]
    in_samples: Counter[tuple[str, ...]] = Counter()
    for grams in per_sample:
        in_samples.update(grams)
    total = 0.0
    for grams in per_sample:
        others = sum(in_samples[g] for g in grams) - len(grams)
        total += math.log1p(others)
    return total / len(texts)
