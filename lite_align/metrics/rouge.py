"""ROUGE-1 and ROUGE-L F between texts, and homogenization: the mean ROUGE-L F over every pair of a
prompt's samples (Padmakumar & He 2024, as measured by Shaib et al. 2024, "Standardizing the
Measurement of Text Diversity"). Higher homogenization = samples more alike = less diverse.

Tokens (as Google's ``rouge-score`` package makes them, without stemming): the text lower-cased,
every run of characters other than ASCII letters and digits treated as a space, then split:
"Don't stop!" -> ["don", "t", "stop"]. Non-ASCII letters are dropped, as there.

ROUGE-L F of texts a, b with LCS the length of their longest common token subsequence:
P = LCS/|b|, R = LCS/|a|, F = 2PR/(P + R) = 2 LCS / (|a| + |b|), symmetric in a and b.
ROUGE-1 F is the same with the clipped unigram overlap Σ_w min(count_a(w), count_b(w)) for LCS.
A text with no tokens scores 0 against a text with tokens; two texts without tokens score 1 (they
are equal; rouge-score gives 0 there, see docs/method.md §9.4).

The LCS lengths of one sample against several others are computed together, bit-parallel
(Allison & Dix 1986; Hyyrö 2004): the others' tokens are bit positions of one Python integer, one
segment per text with a zero guard bit between segments so carries never cross, and each token of
the sample updates all segments with a handful of integer operations.

    >>> rouge_tokens("Don't stop -- café 42!")
    ['don', 't', 'stop', 'caf', '42']
    >>> pairwise_lcs([list("ABCBDAB"), list("BDCABA"), list("XYZ")]).tolist()
    [[7, 4, 0], [4, 6, 0], [0, 0, 3]]
    >>> round(rouge_l_f("the cat sat on the mat", "the cat lay on a mat"), 4)
    0.6667
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np

from lite_align.metrics.ngrams import ngram_table

__all__ = [
    "f_from_overlap",
    "homogenization_rougel",
    "homogenization_rougel_tokens",
    "pairwise_lcs",
    "rouge_1_f",
    "rouge_1_f_tokens",
    "rouge_l_f",
    "rouge_tokens",
    "unigram_overlaps",
]

_ALNUM_RUN = re.compile(r"[a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's default tokens of ``text`` (no stemming)."""
    return _ALNUM_RUN.findall(text.lower())


def pairwise_lcs(docs: Sequence[Sequence[Hashable]]) -> np.ndarray:
    """Symmetric matrix of LCS lengths between every two token sequences (diagonal: lengths)."""
    n = len(docs)
    out = np.zeros((n, n), dtype=np.int64)
    lengths = [len(d) for d in docs]
    for i in range(n):
        out[i, i] = lengths[i]
    if n < 2:
        return out
    # Lay out docs[0..n-2] as bit segments: segment i at bits offsets[i] .. offsets[i] + len - 1,
    # then one guard bit. masks[token] has a 1 wherever that token stands in some segment.
    # Only tokens that some later sample has can ever match: the others get no mask bits.
    later: list[set[Hashable]] = [set() for _ in range(n)]
    for i in range(n - 2, -1, -1):
        later[i] = later[i + 1] | set(docs[i + 1])
    offsets: list[int] = []
    positions: dict[Hashable, list[int]] = {}
    pos = 0
    for i, doc in enumerate(docs[:-1]):
        offsets.append(pos)
        wanted = later[i]
        for k, tok in enumerate(doc):
            if tok in wanted:
                positions.setdefault(tok, []).append(pos + k)
        pos += len(doc) + 1
    masks = {tok: sum(1 << p for p in ps) for tok, ps in positions.items()}
    get = masks.get
    segments = 0  # ones in the segments of docs[0..j-1], zeros in guard bits
    for j in range(1, n):
        i_new = j - 1
        segments |= ((1 << lengths[i_new]) - 1) << offsets[i_new]
        v = segments
        for tok in docs[j]:
            m = get(tok)
            if m is not None:  # a token in no earlier sample leaves v as it is
                u = v & m
                v = ((v + u) | (v - u)) & segments
        for i in range(j):
            zeros = lengths[i] - ((v >> offsets[i]) & ((1 << lengths[i]) - 1)).bit_count()
            out[i, j] = out[j, i] = zeros
    return out


def f_from_overlap(overlap: int, len_a: int, len_b: int) -> float:
    """2 * overlap / (len_a + len_b); 1 for two empty sequences, 0 when just one is empty."""
    if len_a == 0 and len_b == 0:
        return 1.0
    if len_a == 0 or len_b == 0:
        return 0.0
    return 2.0 * overlap / (len_a + len_b)


def rouge_l_f(a: str, b: str) -> float:
    """ROUGE-L F of two texts (symmetric)."""
    ta, tb = rouge_tokens(a), rouge_tokens(b)
    return f_from_overlap(int(pairwise_lcs([ta, tb])[0, 1]), len(ta), len(tb))


def unigram_overlaps(docs: Sequence[Sequence[Hashable]]) -> np.ndarray:
    """Matrix of clipped unigram overlaps Σ_w min(count_i(w), count_j(w)) between every two docs."""
    counts = ngram_table(docs, 1).counts(1)
    return np.minimum(counts[:, None, :], counts[None, :, :]).sum(axis=2)


def rouge_1_f_tokens(a: Sequence[str], b: Sequence[str]) -> float:
    """ROUGE-1 F of two token sequences (symmetric)."""
    overlap = sum((Counter(a) & Counter(b)).values())
    return f_from_overlap(overlap, len(a), len(b))


def rouge_1_f(a: str, b: str) -> float:
    """ROUGE-1 F of two texts (symmetric).

    >>> rouge_1_f("Toyota Camry.", "Toyota Camry Hybrid.")
    0.8
    """
    return rouge_1_f_tokens(rouge_tokens(a), rouge_tokens(b))


def homogenization_rougel_tokens(docs: Sequence[Sequence[str]]) -> float:
    """Mean ROUGE-L F over the unordered pairs of ``docs`` (rouge tokens); NaN with fewer than two."""
    n = len(docs)
    if n < 2:
        return float("nan")
    lcs = pairwise_lcs(docs)
    lengths = [len(d) for d in docs]
    total = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            total += f_from_overlap(int(lcs[i, j]), lengths[i], lengths[j])
    return total / (n * (n - 1) / 2)


def homogenization_rougel(texts: Sequence[str]) -> float:
    """Homogenization of a prompt's samples: mean ROUGE-L F over their pairs (higher = less diverse)."""
    return homogenization_rougel_tokens([rouge_tokens(t) for t in texts])
