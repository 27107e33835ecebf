"""Metrics on encoder vectors: within-prompt embedding diversity and two text similarities.

- ``embedding_diversity``: per prompt, the mean cosine distance (1 - cos) over all unordered pairs of
  its samples' sentence vectors; the mean over prompts with a bootstrap interval. A prompt with
  fewer than two samples has no pair and is left out (its count is ``Estimate.n``'s complement).
- ``EmbeddingCosine`` ("embedding"): cosine of the two texts' sentence vectors.
- ``BertScoreF1`` ("bertscore"): BERTScore-style F1 (docs/method.md §6) by greedy matching of
  contextual token vectors: P = mean over the first text's tokens of the best cosine to a token of
  the second, R the same the other way, F1 = 2PR / (P + R). No idf weights, no baseline rescaling;
  [CLS] and [SEP] are neither matched nor matched against. The paper used roberta-large layer 17;
  ours is the embedder's last layer, so values are comparable between conditions, not with the paper.

Both similarities satisfy ``metrics.cross.Similarity`` (``name`` and ``pairs(a, b)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lite_align.data import SampleSet
from lite_align.embed import Embedder
from lite_align.stats import Estimate, mean_ci

BERTSCORE_CHUNK = 128  # pairs whose token vectors are held at once (<= 100 MB at 256 word pieces a text)


def mean_pairwise_cosine_distance(vectors: np.ndarray) -> float:
    """Mean of 1 - cos over all unordered pairs of rows; NaN with fewer than two rows.

    >>> mean_pairwise_cosine_distance(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))  # 1, 0, 1
    0.6666666666666666
    """
    n = len(vectors)
    if n < 2:
        return float("nan")
    unit = _unit_rows(np.asarray(vectors, dtype=np.float64))
    upper = np.triu_indices(n, k=1)
    return float(np.mean(1.0 - np.einsum("id,jd->ij", unit, unit)[upper]))


def embedding_distance_by_prompt(sample_set: SampleSet, embedder: Embedder) -> dict[int, float]:
    """Prompt id -> mean pairwise cosine distance of its samples (prompts with two or more samples).
    All texts go to the embedder in one call, so they are batched and cached together."""
    ids = [pid for pid in sample_set.prompt_ids() if len(sample_set.by_prompt[pid]) >= 2]
    texts = [t for pid in ids for t in sample_set.by_prompt[pid]]
    vectors = embedder.embed(texts)
    out: dict[int, float] = {}
    start = 0
    for pid in ids:
        n = len(sample_set.by_prompt[pid])
        out[pid] = mean_pairwise_cosine_distance(vectors[start : start + n])
        start += n
    return out


def embedding_diversity(sample_set: SampleSet, embedder: Embedder) -> Estimate:
    """Mean over prompts of the within-prompt mean pairwise cosine distance (higher = more diverse),
    with a 95% bootstrap interval over prompts; ``n`` counts the prompts with a pair."""
    return mean_ci(list(embedding_distance_by_prompt(sample_set, embedder).values()))


def bertscore(candidate: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """(P, R, F1) of two texts' token vectors (rows L2-normalised). A text without tokens scores 0.

    >>> a = np.array([[1.0, 0.0], [0.0, 1.0]]); b = np.array([[1.0, 0.0]])
    >>> bertscore(a, b)  # P = (1 + 0) / 2, R = 1 / 1, F1 = 2 * 0.5 * 1 / 1.5
    (0.5, 1.0, 0.6666666666666666)
    """
    if len(candidate) == 0 or len(reference) == 0:
        return 0.0, 0.0, 0.0
    # einsum computes on this thread; a threaded BLAS matmul of such small matrices stalls whenever
    # another process holds a core (measured 50x slower on a busy 2-vCPU machine).
    sim = np.einsum("id,jd->ij", candidate, reference)
    precision = float(sim.max(axis=1).mean(dtype=np.float64))
    recall = float(sim.max(axis=0).mean(dtype=np.float64))
    total = precision + recall
    f1 = 2.0 * precision * recall / total if total != 0.0 else 0.0
    return precision, recall, f1


class EmbeddingCosine:
    """Cosine similarity of sentence vectors; each distinct text is embedded once (and cached)."""

    name = "embedding"

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def pairs(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        _check_paired(a, b)
        unique = list(dict.fromkeys([*a, *b]))
        if not unique:
            return np.zeros(0)
        vectors = _unit_rows(self.embedder.embed(unique).astype(np.float64))
        row = {text: i for i, text in enumerate(unique)}
        ia = np.array([row[t] for t in a], dtype=np.intp)
        ib = np.array([row[t] for t in b], dtype=np.intp)
        return np.asarray(np.einsum("ij,ij->i", vectors[ia], vectors[ib]), dtype=np.float64)


class BertScoreF1:
    """BERTScore-style F1 of each pair (symmetric in a and b). Pairs are scored in chunks of
    ``chunk`` so that only their token vectors are held at once; the embedder's in-memory token
    cache serves a text that recurs across chunks (e.g. a reference answer)."""

    name = "bertscore"

    def __init__(self, embedder: Embedder, *, chunk: int = BERTSCORE_CHUNK) -> None:
        self.embedder = embedder
        self.chunk = chunk

    def pairs(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        _check_paired(a, b)
        out = np.zeros(len(a))
        for start in range(0, len(a), self.chunk):
            part_a, part_b = a[start : start + self.chunk], b[start : start + self.chunk]
            unique = list(dict.fromkeys([*part_a, *part_b]))
            tokens = dict(zip(unique, self.embedder.token_vectors(unique), strict=True))
            for i, (x, y) in enumerate(zip(part_a, part_b, strict=True)):
                out[start + i] = bertscore(tokens[x], tokens[y])[2]
        return out


def _check_paired(a: Sequence[str], b: Sequence[str]) -> None:
    if len(a) != len(b):
        raise ValueError(f"similarity pairs need equal lengths, got {len(a)} and {len(b)}")


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), dtype=np.float64)
