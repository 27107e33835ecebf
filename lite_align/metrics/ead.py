"""Expectation-adjusted distinct n-grams, EAD (Liu et al. 2022, "Rethinking and Refining the
Distinct Metric", ACL).

Distinct-n (distinct n-grams / all n-grams) falls as texts get longer even when nothing repeats
more than chance would make it, so it favours short answers. EAD divides the count of distinct
n-grams by the count expected when the same number of tokens is drawn uniformly at random from a
vocabulary of size V:

    E[distinct] = V * (1 - ((V - 1) / V) ** C),   C = number of n-grams,
    EAD_n = distinct n-grams / E[distinct].

We use the same V for every order n (the paper derives the expectation for single tokens) and
report the mean of EAD_n over n = 1..5 (orders that have no n-gram at all, such as 5-grams of
samples shorter than five tokens, are left out of the mean; with no n-gram of any order EAD is
undefined, NaN). n-grams never span two samples.

Tokens: :func:`lite_align.text.tokenize` (NLTK word tokens, case and punctuation kept). V should
be the generating model's vocabulary size (the length of its GGUF token list, which
``lite_align.gguf_check.gguf_vocab_size`` reads); when it is unknown we use ``DEFAULT_VOCAB_SIZE``
= 32,000, the vocabulary of LLaMA-2 and Mistral, the open models of the paper's release. With C
much smaller than V, EAD is close to distinct/C, so V matters mostly for EAD over many texts
("across prompts").

Two scopes: per prompt over its samples (then the mean over prompts), and across prompts over
each prompt's first sample (one figure per sample set: does the model say different things to
different prompts).

    >>> round(expected_distinct(2, 3), 6)  # 3 sequences with 1 distinct token, 6 with 2: 15/9
    1.666667
    >>> round(ead([["a", "b", "c"], ["a", "b", "d"]], vocab_size=1000, orders=(1,)), 4)
    0.6683
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np

from lite_align.metrics.ngrams import NgramTable, Vocabulary, ngram_columns_ids, ngram_table

__all__ = [
    "DEFAULT_VOCAB_SIZE",
    "EAD_ORDERS",
    "ead",
    "ead_across_prompts",
    "ead_across_prompts_ids",
    "ead_from_table",
    "expected_distinct",
]

DEFAULT_VOCAB_SIZE = 32_000
EAD_ORDERS = (1, 2, 3, 4, 5)


def expected_distinct(total: int, vocab_size: int) -> float:
    """Expected number of distinct items among ``total`` uniform draws from ``vocab_size`` items:
    V (1 - (1 - 1/V)^C), computed without cancellation for large V."""
    if vocab_size < 1:
        raise ValueError(f"the vocabulary size must be >= 1, not {vocab_size}")
    if vocab_size == 1:
        return 1.0 if total > 0 else 0.0
    return -vocab_size * math.expm1(total * math.log1p(-1.0 / vocab_size))


def ead_from_table(table: NgramTable, vocab_size: int, orders: Sequence[int] = EAD_ORDERS) -> float:
    """EAD from a prebuilt n-gram table (its max_order must reach max(orders))."""
    values = []
    for n in orders:
        counts = table.counts(n)
        total = int(counts.sum())
        if total:
            values.append(counts.shape[1] / expected_distinct(total, vocab_size))
    return float(np.mean(values)) if values else float("nan")


def ead(
    docs: Sequence[Sequence[Hashable]], vocab_size: int = DEFAULT_VOCAB_SIZE, orders: Sequence[int] = EAD_ORDERS
) -> float:
    """Mean over ``orders`` of EAD_n over the n-grams of ``docs`` (a prompt's samples, as tokens)."""
    return ead_from_table(ngram_table(docs, max(orders)), vocab_size, orders)


def ead_across_prompts(
    first_samples: Sequence[Sequence[Hashable]],
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    orders: Sequence[int] = EAD_ORDERS,
) -> float:
    """EAD over one sample per prompt (each prompt's first), as one collection (same value as
    ``ead``, computed without a dense samples x n-grams matrix)."""
    vocab = Vocabulary()
    return ead_across_prompts_ids([vocab.encode(d) for d in first_samples], vocab_size, orders)


def ead_across_prompts_ids(
    first_samples: Sequence[np.ndarray], vocab_size: int = DEFAULT_VOCAB_SIZE, orders: Sequence[int] = EAD_ORDERS
) -> float:
    """``ead_across_prompts`` of samples given as integer token ids."""
    wanted = set(orders)
    values = []
    for n, (_, column, n_grams) in enumerate(ngram_columns_ids(first_samples, max(orders)), start=1):
        if n in wanted and column.size:
            values.append(n_grams / expected_distinct(int(column.size), vocab_size))
    return float(np.mean(values)) if values else float("nan")
