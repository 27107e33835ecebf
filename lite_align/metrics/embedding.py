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

Both similarities satisfy ``metrics.cross.Similarity`` (``name`` and ``pairs(a, b)``). Built on
one ``EmbeddingPairs`` (as ``analysis.similarities`` does), they share its work: each text of a
pair is run through the encoder once for both figures, and a pair scored before (a teacher's
baseline pair, met again with every candidate) is not scored again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from lite_align.data import SampleSet
from lite_align.embed import Embedder, text_key
from lite_align.metrics.registry import (
    Family,
    FamilyValues,
    Inputs,
    Metric,
    SimilaritySpec,
    register_family,
    register_similarity,
)
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
    # A BLAS product: on one BLAS thread (see one_blas_thread) 3.5x faster than einsum's own loop
    # for two 150-token answers; on several, it stalls whenever another process holds a core
    # (measured 20-50x slower on a busy 2-vCPU machine).
    sim = candidate @ reference.T
    precision = float(sim.max(axis=1).mean(dtype=np.float64))
    recall = float(sim.max(axis=0).mean(dtype=np.float64))
    total = precision + recall
    f1 = 2.0 * precision * recall / total if total != 0.0 else 0.0
    return precision, recall, f1


def sentence_cosine(x: np.ndarray, y: np.ndarray) -> float:
    """Cosine of two sentence vectors, in float64 (0 when either is zero)."""
    u, v = _unit_rows(np.stack([x, y]).astype(np.float64))
    return float(np.einsum("i,i->", u, v))


class EmbeddingPairs:
    """The embedding cosine and the BERTScore-style F1 of text pairs, from one encoder pass per text.

    Pairs are scored in chunks of ``chunk``: the chunk's texts not seen before are encoded together
    (sentence and token vectors at once), so only that chunk's token vectors are held. A score is
    kept per pair (both figures are symmetric, so (a, b) and (b, a) are one pair), and the texts on
    the left of pairs (in cross-model similarity, the reference answers every candidate is compared
    with) keep their token vectors in the embedder's in-memory LRU; texts only ever on the right
    (each candidate answer, scored once) do not crowd them out.
    """

    def __init__(self, embedder: Embedder, *, chunk: int = BERTSCORE_CHUNK) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        self.embedder = embedder
        self.chunk = chunk
        self._scores: dict[tuple[bytes, bytes], tuple[float, float]] = {}  # (cosine, F1) per pair

    def scores(self, a: Sequence[str], b: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(cosine, F1) of every pair (a[i], b[i]), as two float64 arrays."""
        _check_paired(a, b)
        cosine, f1 = np.zeros(len(a)), np.zeros(len(a))
        keys = [_pair_key(x, y) for x, y in zip(a, b, strict=True)]
        todo: dict[tuple[bytes, bytes], int] = {}  # each new pair once, at its first index
        for i, key in enumerate(keys):
            if key not in self._scores:
                todo.setdefault(key, i)
        left = set(a)
        firsts = list(todo.values())
        with one_blas_thread():
            self._score(a, b, keys, firsts, left)
        for i, key in enumerate(keys):
            cosine[i], f1[i] = self._scores[key]
        return cosine, f1

    def _score(
        self, a: Sequence[str], b: Sequence[str], keys: list[tuple[bytes, bytes]], firsts: list[int], left: set[str]
    ) -> None:
        for start in range(0, len(firsts), self.chunk):
            part = firsts[start : start + self.chunk]
            unique = list(dict.fromkeys(t for i in part for t in (a[i], b[i])))
            encoded = self.embedder.encodings(unique, remember=left.__contains__)
            enc = dict(zip(unique, encoded, strict=True))
            for i in part:
                x, y = enc[a[i]], enc[b[i]]
                self._scores[keys[i]] = (sentence_cosine(x.sentence, y.sentence), bertscore(x.tokens, y.tokens)[2])


def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """numpy's BLAS limited to one thread while inside (many small products: threads only wait)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _pair_key(x: str, y: str) -> tuple[bytes, bytes]:
    kx, ky = text_key(x), text_key(y)
    return (kx, ky) if kx <= ky else (ky, kx)


class EmbeddingCosine:
    """Cosine similarity of sentence vectors. Alone, each distinct text is embedded once (and
    cached); with a shared ``EmbeddingPairs`` (``scorer``), its scores come from the same pass as
    the BERTScore-style F1's."""

    name = "embedding"

    def __init__(self, embedder: Embedder, *, scorer: EmbeddingPairs | None = None) -> None:
        self.embedder = embedder
        self.scorer = scorer

    def pairs(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        _check_paired(a, b)
        if self.scorer is not None:
            return self.scorer.scores(a, b)[0]
        unique = list(dict.fromkeys([*a, *b]))
        if not unique:
            return np.zeros(0)
        vectors = _unit_rows(self.embedder.embed(unique).astype(np.float64))
        row = {text: i for i, text in enumerate(unique)}
        ia = np.array([row[t] for t in a], dtype=np.intp)
        ib = np.array([row[t] for t in b], dtype=np.intp)
        return np.asarray(np.einsum("ij,ij->i", vectors[ia], vectors[ib]), dtype=np.float64)


class BertScoreF1:
    """BERTScore-style F1 of each pair (symmetric in a and b), through an ``EmbeddingPairs``
    (its own, or ``scorer`` shared with an ``EmbeddingCosine``): pairs are scored in chunks of
    ``chunk`` so that only their token vectors are held at once."""

    name = "bertscore"

    def __init__(
        self, embedder: Embedder, *, chunk: int = BERTSCORE_CHUNK, scorer: EmbeddingPairs | None = None
    ) -> None:
        self.embedder = embedder
        self.chunk = chunk
        self.scorer = scorer if scorer is not None else EmbeddingPairs(embedder, chunk=chunk)

    def pairs(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        return self.scorer.scores(a, b)[1]


def _check_paired(a: Sequence[str], b: Sequence[str]) -> None:
    if len(a) != len(b):
        raise ValueError(f"similarity pairs need equal lengths, got {len(a)} and {len(b)}")


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# Registered: embedding diversity, and the two similarities that share one encoder pass


def shared_pairs(embedder: Embedder, shared: dict[str, Any]) -> EmbeddingPairs:
    """The ``EmbeddingPairs`` of ``embedder``: one per embedder for as long as it lives (a teacher's
    baseline pairs recur in the sampled and the greedy tables), else one per table (``shared``)."""
    found = getattr(embedder, "pair_scorer", None) or shared.get("embedding_pairs")
    if not isinstance(found, EmbeddingPairs):
        found = EmbeddingPairs(embedder)
        try:
            embedder.pair_scorer = found  # type: ignore[attr-defined]
        except AttributeError:  # an embedder that takes no new attributes: a scorer per table
            pass
    shared["embedding_pairs"] = found
    return found


def _embedding_family(sample_set: SampleSet, inputs: Inputs) -> FamilyValues:
    if inputs.embedder is None:
        raise ValueError("embedding diversity needs an embedder")
    by_prompt = embedding_distance_by_prompt(sample_set, inputs.embedder)
    return FamilyValues({"embedding_diversity": mean_ci(list(by_prompt.values()))}, {"embedding_diversity": by_prompt})


register_family(
    Family(
        "embedding",
        (
            Metric(
                "embedding_diversity",
                "embedding diversity",
                direction=1,
                order=20,
                glance="embed\n↑div",
                finding="embedding diversity",
            ),
        ),
        needs=frozenset({"embeddings"}),
        compute=_embedding_family,
    )
)
register_similarity(
    SimilaritySpec(
        "embedding",
        "embedding cosine",
        make=lambda embedder, shared: EmbeddingCosine(embedder, scorer=shared_pairs(embedder, shared)),
        needs=frozenset({"embeddings"}),
        terminal_label="embedding cosine",
        short="embedding",
        glance="embed\nratio",
        order=20,
    )
)
register_similarity(
    SimilaritySpec(
        "bertscore",
        "BERTScore-style F1",
        make=lambda embedder, shared: BertScoreF1(embedder, scorer=shared_pairs(embedder, shared)),
        needs=frozenset({"token_vectors"}),
        terminal_label="BERTScore-style F1",
        short="BERTScore",
        glance="BERT\nratio",
        order=30,
    )
)
