"""N-gram counts of a prompt's samples: the shared input of the n-gram Vendi kernel, EAD, Self-BLEU,
n-gram diversity and self-repetition.

An n-gram is n consecutive tokens of one sample; n-grams never span two samples (a measure that
wants them to, n-gram diversity, passes the samples joined as one). For each order n,
``NgramTable.counts(n)`` is a dense (samples x distinct n-grams) matrix of counts, its columns the
distinct n-grams of all the samples together (in no meaningful order). A sample shorter than n
tokens has an all-zero row. ``ngram_columns`` gives the same counts as occurrence lists, for many
samples at once without a dense matrix.

Tokens become integer ids (``Vocabulary``; callers that meet the same texts again keep one and
encode each text once). An n-gram's id is made from its (n-1)-gram prefix's id and its last token
and renumbered densely at every order, so ids stay small whatever n.

    >>> t = ngram_table([["a", "b", "a", "b"], ["a", "b"]], max_order=2)
    >>> t.counts(1).tolist(), t.counts(2).sum(axis=1).tolist()
    ([[2, 2], [1, 1]], [3, 1])
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "NgramTable",
    "Vocabulary",
    "distinct_sorted",
    "ngram_columns",
    "ngram_columns_ids",
    "ngram_table",
    "ngram_table_ids",
]


class Vocabulary:
    """Token -> integer id, ids given in order of first sight."""

    def __init__(self) -> None:
        # a missing token is added with the next id by the dict itself (no Python call per token)
        self.ids: defaultdict[Hashable, int] = defaultdict()
        self.ids.default_factory = self.ids.__len__

    def __len__(self) -> int:
        return len(self.ids)

    def encode(self, tokens: Sequence[Hashable]) -> np.ndarray:
        return np.fromiter(map(self.ids.__getitem__, tokens), dtype=np.int64, count=len(tokens))


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


def _dense(keys: np.ndarray) -> tuple[int, np.ndarray]:
    """(number of distinct keys, each key's rank among them)."""
    if keys.size == 0:
        return 0, keys
    order = np.argsort(keys)
    sorted_keys = keys[order]
    new = np.empty(keys.size, dtype=bool)
    new[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
    rank = np.empty(keys.size, dtype=np.int64)
    rank[order] = np.cumsum(new) - 1
    return int(rank[order[-1]]) + 1, rank


def distinct_sorted(x: np.ndarray) -> np.ndarray:
    """The distinct values of an integer array, sorted (np.unique without its per-call overhead)."""
    if x.size == 0:
        return x
    x = np.sort(x)
    keep = np.empty(x.size, dtype=bool)
    keep[0] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def ngram_columns_ids(docs: Sequence[np.ndarray], max_order: int) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """For n = 1..``max_order``: (sample of each n-gram occurrence, its n-gram's column id, the
    number of distinct n-grams). ``docs``: integer token ids (>= 0) per sample."""
    if max_order < 1:
        raise ValueError("max_order must be >= 1")
    lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
    tokens = np.concatenate(docs).astype(np.int64, copy=False) if len(docs) else np.zeros(0, dtype=np.int64)
    doc_of = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
    size = len(tokens)
    n_grams, keys = _dense(tokens)
    radix = n_grams + 1
    tokens = keys  # dense token ids: keeps keys * radix small
    starts = np.arange(size, dtype=np.int64)  # where the n-grams of the current order start
    yield doc_of, keys, n_grams
    for n in range(2, max_order + 1):
        # an n-gram starts at i when an (n-1)-gram does and token i + n - 1 is in the same sample
        ok = starts + (n - 1) < size
        ok[ok] = doc_of[starts[ok] + (n - 1)] == doc_of[starts[ok]]
        starts = starts[ok]
        n_grams, keys = _dense(keys[ok] * radix + tokens[starts + (n - 1)])
        yield doc_of[starts], keys, n_grams


def ngram_columns(docs: Sequence[Sequence[Hashable]], max_order: int) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """``ngram_columns_ids`` of token sequences."""
    vocab = Vocabulary()
    return ngram_columns_ids([vocab.encode(d) for d in docs], max_order)


def ngram_table_ids(docs: Sequence[np.ndarray], max_order: int) -> NgramTable:
    """Count every n-gram of order 1..``max_order`` in each of ``docs`` (integer token ids)."""
    n_docs = len(docs)
    tables: list[np.ndarray] = []
    for doc, column, n_grams in ngram_columns_ids(docs, max_order):
        counts = np.bincount(doc * n_grams + column, minlength=n_docs * n_grams).reshape(n_docs, n_grams)
        tables.append(counts.astype(np.int64, copy=False))
    lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=n_docs)
    return NgramTable(lengths=lengths, tables=tuple(tables))


def ngram_table(docs: Sequence[Sequence[Hashable]], max_order: int) -> NgramTable:
    """Count every n-gram of order 1..``max_order`` in each of ``docs`` (token sequences)."""
    vocab = Vocabulary()
    return ngram_table_ids([vocab.encode(d) for d in docs], max_order)
