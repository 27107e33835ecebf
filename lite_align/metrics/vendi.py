"""The Vendi score (Friedman & Dieng 2023, "The Vendi Score: A Diversity Evaluation Metric for
Machine Learning", TMLR): the effective number of distinct samples.

For n samples and a similarity kernel K (n x n, positive semi-definite, K[i, i] = 1), let
λ_1..λ_n be the eigenvalues of K / n: they are non-negative and sum to 1. The Vendi score of order
q is the exponential of their Rényi entropy of order q:

    VS_q = exp(H_q(λ)),  H_1 = -Σ λ log λ (Shannon),  H_q = log(Σ λ^q) / (1 - q),
    H_0 = log(number of non-zero λ),  H_inf = -log(max λ).

VS ranges from 1 (all samples identical) to n (all orthogonal); ``VS / n`` puts prompts with
different sample counts on one 0..1 scale. q = 1 is the paper's default; small q weighs rare
directions more, large q the dominant one.

Two kernels for text:

- **embedding**: cosine similarity of sentence vectors (each row scaled to unit length).
- **n-gram** (the paper's "n-gram Vendi"): the mean over n = 1..4 of the cosine similarity between
  the samples' n-gram count vectors. Tokens: :func:`lite_align.text.tokenize` (NLTK's
  ``word_tokenize``: case kept, punctuation tokens kept), as the authors' text code does (NLTK
  tokens, no lower-casing). A sample shorter than n tokens has no n-gram of order n; there we
  take its whole token sequence as its one feature of that order, so its self-similarity stays 1
  and two such samples are similar exactly when their tokens are equal (the authors' code gives
  such a sample a zero vector, which breaks K[i, i] = 1; see docs/method.md §9.2).

Eigenvalues within ``EIGEN_TOL`` of zero count as zero (round-off of a rank-deficient K).

    >>> round(vendi_from_kernel(np.array([[1, .9, 0], [.9, 1, 0], [0, 0, 1]])), 4)
    2.1573
    >>> vendi_from_kernel(np.ones((4, 4))), vendi_from_kernel(np.eye(4), q=2)
    (1.0, 4.0)
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np

from lite_align.metrics.ngrams import NgramTable, ngram_table

__all__ = [
    "EIGEN_TOL",
    "NGRAM_ORDERS",
    "ngram_kernel",
    "ngram_kernel_from_table",
    "renyi_entropy",
    "vendi_embedding",
    "vendi_from_kernel",
    "vendi_from_vectors",
    "vendi_ngram",
]

EIGEN_TOL = 1e-10
NGRAM_ORDERS = (1, 2, 3, 4)


def renyi_entropy(p: np.ndarray, q: float = 1.0) -> float:
    """Rényi entropy of order ``q`` (natural log) of a probability vector; zeros are ignored.

    >>> round(renyi_entropy(np.array([0.5, 0.5, 0.0])), 6) == round(math.log(2), 6)
    True
    """
    p = np.asarray(p, dtype=np.float64)
    p = p[p > 0]
    if q < 0 or math.isnan(q):
        raise ValueError(f"the order q must be >= 0 (or inf), not {q}")
    if p.size == 0:
        return float("nan")
    if q == 1:
        return float(-(p * np.log(p)).sum())
    if q == 0:
        return math.log(p.size)
    if math.isinf(q):
        return float(-math.log(p.max()))
    return float(math.log((p**q).sum()) / (1.0 - q))


def _eigenvalues(k: np.ndarray) -> np.ndarray:
    """Eigenvalues of the kernel scaled by 1/n, round-off zeros set to exactly 0, summing to 1."""
    n = k.shape[0]
    lam = np.linalg.eigvalsh(k / n)
    lam = np.where(lam > EIGEN_TOL, lam, 0.0)
    total = lam.sum()
    return lam / total if total > 0 else lam


def vendi_from_kernel(k: np.ndarray, q: float = 1.0) -> float:
    """VS_q of a similarity matrix (symmetric, PSD, unit diagonal); NaN for an empty one.
    A diagonal other than 1 is refused: the eigenvalues of K / n would not sum to 1.

    >>> x = np.array([0.0, 0.0, 10.0, 10.0, 20.0, 20.0])
    >>> round(vendi_from_kernel(np.exp(-np.abs(x[:, None] - x[None, :]))), 4)
    3.0
    """
    k = np.asarray(k, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"a kernel must be a square matrix, not shape {k.shape}")
    if k.shape[0] == 0:
        return float("nan")
    if np.abs(np.diag(k) - 1.0).max() > 1e-9:
        raise ValueError("a Vendi kernel needs 1 on its diagonal (every sample similar to itself)")
    return math.exp(renyi_entropy(_eigenvalues(k), q))


def vendi_from_vectors(x: np.ndarray, q: float = 1.0) -> float:
    """VS_q of the cosine kernel of the rows of ``x`` (n samples x d). With more samples than
    dimensions the d x d matrix X^T X / n is used: it has the same non-zero eigenvalues. NaN if a
    row is all zeros (it has no direction) or there are no rows."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"vectors must be a 2-d array (samples x dimensions), not shape {x.shape}")
    n = x.shape[0]
    norms = np.linalg.norm(x, axis=1)
    if n == 0 or not np.all(norms > 0):
        return float("nan")
    unit = x / norms[:, None]
    if n <= x.shape[1]:
        return vendi_from_kernel(unit @ unit.T, q)
    lam = np.linalg.eigvalsh(unit.T @ unit / n)
    lam = np.where(lam > EIGEN_TOL, lam, 0.0)
    return math.exp(renyi_entropy(lam / lam.sum(), q))


def vendi_embedding(vectors: np.ndarray, q: float = 1.0) -> float:
    """Vendi score of a prompt's samples under the cosine kernel of their sentence vectors."""
    return vendi_from_vectors(vectors, q)


def _cosine_of_counts(counts: np.ndarray, docs: Sequence[Sequence[Hashable]]) -> np.ndarray:
    """Cosine similarity of the rows of a count matrix; a zero row stands for its whole token
    sequence (similar to itself and to equal sequences only)."""
    c = counts.astype(np.float64)
    gram = c @ c.T
    norms = np.sqrt(np.diag(gram))
    empty = norms == 0
    norms[empty] = 1.0
    cos = gram / np.outer(norms, norms)
    if empty.any():
        idx = [int(i) for i in np.flatnonzero(empty)]
        seqs = [tuple(docs[i]) for i in idx]
        for a, i in enumerate(idx):
            for b, j in enumerate(idx):
                cos[i, j] = 1.0 if seqs[a] == seqs[b] else 0.0
    return cos


def ngram_kernel_from_table(
    table: NgramTable, docs: Sequence[Sequence[Hashable]], orders: Sequence[int] = NGRAM_ORDERS
) -> np.ndarray:
    """The n-gram kernel from a prebuilt table (``docs``: the token sequences it was built from)."""
    n = table.n_samples
    k = np.zeros((n, n), dtype=np.float64)
    for order in orders:
        k += _cosine_of_counts(table.counts(order), docs)
    return k / len(orders)


def ngram_kernel(docs: Sequence[Sequence[Hashable]], orders: Sequence[int] = NGRAM_ORDERS) -> np.ndarray:
    """Mean over ``orders`` of the cosine similarity of the samples' n-gram count vectors.

    >>> ngram_kernel([["a", "b"], ["a", "b"], ["c"]]).round(3).tolist()
    [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    return ngram_kernel_from_table(ngram_table(docs, max(orders)), docs, orders)


def vendi_ngram(docs: Sequence[Sequence[Hashable]], q: float = 1.0, orders: Sequence[int] = NGRAM_ORDERS) -> float:
    """Vendi score of a prompt's samples (token sequences) under the n-gram kernel."""
    if not docs:
        return float("nan")
    return vendi_from_kernel(ngram_kernel(docs, orders), q)
