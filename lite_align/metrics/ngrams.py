"""N-gram count tables of a prompt's samples: the shared input of the n-gram Vendi kernel, EAD and
Self-BLEU (lite_align.metrics.vendi, .ead, .selfbleu).

An n-gram is n consecutive tokens of one sample; n-grams never span two samples. For each order
n, ``NgramTable.counts(n)`` is a dense (samples x distinct n-grams) matrix of counts, its columns
the distinct n-grams of all the samples together (in no meaningful order). A sample shorter than
n tokens has an all-zero row.

Tokens are hashed to integer ids once; an n-gram's id is built from its (n-1)-gram prefix's id and
its last token and renumbered densely at every order, so ids stay small (no overflow, whatever n).

    >>> t = ngram_table([["a", "b", "a", "b"], ["a", "b"]], max_order=2)
    >>> t.counts(1).tolist(), t.counts(2).sum(axis=1).tolist()
    ([[2, 2], [1, 1]], [3, 1])
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["NgramTable", "ngram_table"]


@dataclass(frozen=True)
class NgramTable:
    """Per-order n-gram count matrices of a few token sequences (see the module docstring)."""

    lengths: np.ndarray  # tokens per sample (int64)
    tables: tuple[np.ndarray, ...]  # tables[n - 1]: (samples, distinct n-grams) counts

    @property
    def max_order(self) -> int:
        return len(self.tables)

    @property
    def n_samples(self) -> int:
        return len(self.lengths)

    def counts(self, n: int) -> np.ndarray:
        """The (samples x distinct n-grams) count matrix of order ``n`` (1 <= n <= max_order)."""
        if not 1 <= n <= self.max_order:
            raise ValueError(f"order {n} is outside 1..{self.max_order}")
        return self.tables[n - 1]


def ngram_table(docs: Sequence[Sequence[Hashable]], max_order: int) -> NgramTable:
    """Count every n-gram of order 1..``max_order`` in each of ``docs`` (token sequences)."""
    if max_order < 1:
        raise ValueError("max_order must be >= 1")
    n_docs = len(docs)
    ids: dict[Hashable, int] = {}
    flat = [ids.setdefault(tok, len(ids)) for doc in docs for tok in doc]
    tokens = np.asarray(flat, dtype=np.int64)
    lengths = np.fromiter((len(doc) for doc in docs), dtype=np.int64, count=n_docs)
    doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
    size = len(tokens)
    tables: list[np.ndarray] = []
    keys = tokens  # keys[i]: id of the n-gram starting at position i (for i <= size - n)
    for n in range(1, max_order + 1):
        if n > 1:
            if size < n:
                keys = keys[:0]
            else:
                # ids of the (n-1)-grams are < size + 1, tokens < len(ids) <= size
                combined = keys[: size - n + 1] * (len(ids) + 1) + tokens[n - 1 :]
                keys = np.unique(combined, return_inverse=True)[1].reshape(-1)
        starts = doc_of[: len(keys)]
        valid = starts == doc_of[n - 1 : n - 1 + len(keys)] if n > 1 else np.ones(len(keys), dtype=bool)
        grams, column = np.unique(keys[valid], return_inverse=True)
        n_grams = len(grams)
        flat_index = starts[valid] * n_grams + column.reshape(-1)
        counts = np.bincount(flat_index, minlength=n_docs * n_grams).reshape(n_docs, n_grams)
        tables.append(counts.astype(np.int64, copy=False))
    return NgramTable(lengths=lengths, tables=tuple(tables))
