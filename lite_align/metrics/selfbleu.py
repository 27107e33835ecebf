"""Self-BLEU (Zhu et al. 2018, "Texygen"): each sample of a prompt scored by BLEU-4 against the
prompt's other samples as references; the prompt's value is the mean over its samples. Higher =
samples repeat each other's n-grams = less diverse.

BLEU-4 of one hypothesis h against references R, exactly as NLTK's ``sentence_bleu`` with
``SmoothingFunction().method1`` (the smoothing of Texygen and of the Vendi authors' Self-BLEU):

- p_n (n = 1..4): Σ over h's n-grams of min(count in h, max count in one reference), divided by
  max(1, number of n-grams of h); a p_n of 0 becomes 0.1 / that denominator (method1's epsilon);
- brevity penalty: 1 if |h| > r, else exp(1 - r/|h|), where r is the reference length closest to
  |h| (the shorter on a tie); 0 if h is empty;
- BLEU = BP * exp(Σ_n log(p_n) / 4), and 0 when h shares no token at all with the references.

Tokens: :func:`lite_align.text.tokenize` (NLTK word tokens, case and punctuation kept), as Texygen
and the Vendi authors' code tokenize.

    >>> round(self_bleu([["the", "cat", "sat"], ["the", "cat", "sat"]]), 4)  # p_1..3 = 1, p_4 = 0.1 / 1
    0.5623
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np

from lite_align.metrics.ngrams import NgramTable, ngram_table

__all__ = ["BLEU_ORDER", "EPSILON", "bleu_against_others", "self_bleu", "self_bleu_from_table"]

BLEU_ORDER = 4
EPSILON = 0.1  # NLTK's method1


def _others_max(counts: np.ndarray) -> np.ndarray:
    """Row i: for every n-gram, its largest count among the rows other than i."""
    if counts.shape[0] < 2:
        return np.zeros_like(counts)
    top = np.sort(counts, axis=0)
    first, second = top[-1], top[-2]
    return np.where(counts == first, second, first)


def bleu_against_others(table: NgramTable, order: int = BLEU_ORDER) -> np.ndarray:
    """BLEU-``order`` of every sample against all the others (needs at least two samples)."""
    n_samples = table.n_samples
    if n_samples < 2:
        raise ValueError("BLEU against the other samples needs at least two samples")
    lengths = table.lengths
    log_p = np.zeros(n_samples, dtype=np.float64)
    first_matches = np.zeros(n_samples, dtype=np.int64)
    for n in range(1, order + 1):
        counts = table.counts(n)
        matches = np.minimum(counts, _others_max(counts)).sum(axis=1)
        denominators = np.maximum(1, counts.sum(axis=1)).astype(np.float64)
        p = np.where(matches > 0, matches, EPSILON) / denominators
        log_p += np.log(p) / order
        if n == 1:
            first_matches = matches
    scores = np.zeros(n_samples, dtype=np.float64)
    for i in range(n_samples):
        hyp = int(lengths[i])
        if hyp == 0 or first_matches[i] == 0:
            continue
        refs = [int(length) for k, length in enumerate(lengths) if k != i]
        closest = min(refs, key=lambda r: (abs(r - hyp), r))
        penalty = 1.0 if hyp > closest else math.exp(1.0 - closest / hyp)
        scores[i] = penalty * math.exp(log_p[i])
    return scores


def self_bleu_from_table(table: NgramTable, order: int = BLEU_ORDER) -> float:
    """Mean BLEU of each sample against the others; NaN with fewer than two samples."""
    if table.n_samples < 2:
        return float("nan")
    return float(bleu_against_others(table, order).mean())


def self_bleu(docs: Sequence[Sequence[Hashable]], order: int = BLEU_ORDER) -> float:
    """Self-BLEU of a prompt's samples (token sequences)."""
    return self_bleu_from_table(ngram_table(docs, order), order)
