"""One encoder pass per text for both embedding similarities (metrics.embedding.EmbeddingPairs):
the figures equal the two-pass computation it replaced, each distinct text is encoded once
across a whole recoverability table, and the batching by padded word pieces changes no vector."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from test_embedding_metrics import WordLengthEmbedder, paper_samples, sample_set

from lite_align.analysis import recover_table, similarities
from lite_align.embed import Embedder, OnnxEmbedder, default_embedder_spec, token_batches
from lite_align.metrics.embedding import BertScoreF1, EmbeddingCosine, EmbeddingPairs


class TwoPassCosine:
    """The embedding cosine as computed before: sentence vectors through embed(), float64 rows."""

    name = "embedding"

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def pairs(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        unique = list(dict.fromkeys([*a, *b]))
        v = self.embedder.embed(unique).astype(np.float64)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        row = {t: i for i, t in enumerate(unique)}
        return np.array([float(v[row[x]] @ v[row[y]]) for x, y in zip(a, b, strict=True)])


class TwoPassBertScore:
    """The BERTScore-style F1 as computed before: token vectors in a second pass, einsum products."""

    name = "bertscore"

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def pairs(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        unique = list(dict.fromkeys([*a, *b]))
        tokens = dict(zip(unique, self.embedder.token_vectors(unique), strict=True))
        out = []
        for x, y in zip(a, b, strict=True):
            tx, ty = tokens[x], tokens[y]
            if len(tx) == 0 or len(ty) == 0:
                out.append(0.0)
                continue
            sim = np.einsum("id,jd->ij", tx, ty)
            p, r = float(sim.max(axis=1).mean(dtype=np.float64)), float(sim.max(axis=0).mean(dtype=np.float64))
            out.append(2 * p * r / (p + r) if p + r else 0.0)
        return np.array(out)


def sets_from_words(seed: int, n_prompts: int = 6, n_samples: int = 4) -> dict[int, tuple[str, ...]]:
    """Random answers of words of 1-6 letters; each set's own (a tag word ends every answer), so
    that only the reference is shared between sets, as in real releases."""
    rng = np.random.default_rng(seed)
    words = ["a", "bb", "ccc", "dddd", "eeeee", "ffffff", "the", "of"]
    return {
        pid: tuple(
            " ".join([*rng.choice(words, size=rng.integers(0, 9)), f"set{seed}-{pid}-{j}"]) for j in range(n_samples)
        )
        for pid in range(n_prompts)
    }


def test_one_pass_equals_two_passes_and_encodes_each_text_once(tmp_path: Path) -> None:
    reference = sample_set(sets_from_words(1))
    candidates = {f"c{i}": sample_set(sets_from_words(10 + i)) for i in range(3)}
    candidates["itself"] = reference
    one = WordLengthEmbedder(tmp_path / "one")
    new = recover_table(reference, candidates, one)
    two = WordLengthEmbedder(tmp_path / "two")
    sims = [TwoPassCosine(two), TwoPassBertScore(two)]
    from lite_align.metrics.cross import cross_similarity

    for name, cand in candidates.items():
        for sim in sims:
            old = cross_similarity(reference, cand, sim).to_json()
            for key in ("cross", "baseline", "ratio"):
                assert new[name][sim.name][key] == pytest.approx(old[key], abs=1e-12), (name, sim.name, key)
    distinct = {t for s in [reference, *candidates.values()] for v in s.by_prompt.values() for t in v}
    assert one.stats.encoded == len(distinct)  # one pass per distinct text, for both similarities
    # a second table with the same reference (as the greedy one after the sampled one): its
    # baseline pairs were scored already, so nothing is encoded again
    recover_table(reference, {"again": candidates["c0"]}, one)
    assert one.stats.encoded == len(distinct)


def test_a_shared_scorer_scores_each_pair_once(tmp_path: Path) -> None:
    fake = WordLengthEmbedder(tmp_path)
    shared = EmbeddingPairs(fake, chunk=2)
    cos, f1 = EmbeddingCosine(fake, scorer=shared), BertScoreF1(fake, scorer=shared)
    a, b = ["aa bbb", "cc", "aa bbb"], ["cc d", "aa bbb", "xyz"]
    np.testing.assert_allclose(cos.pairs(a, b), TwoPassCosine(WordLengthEmbedder(tmp_path / "x")).pairs(a, b))
    encoded = fake.stats.encoded
    np.testing.assert_allclose(f1.pairs(b, a), TwoPassBertScore(WordLengthEmbedder(tmp_path / "y")).pairs(b, a))
    assert fake.stats.encoded == encoded  # the F1 came from the cosine's pass, the pairs reversed
    assert [s.name for s in similarities(fake)] == ["jaccard", "embedding", "bertscore"]


def test_token_batches_bound_padding() -> None:
    lengths = [3, 5, 8, 8, 9, 40, 41, 200, 256]
    batches = token_batches(list(range(len(lengths))), lengths, 4, 64)
    assert [i for b in batches for i in b] == list(range(len(lengths)))  # every text once, order kept
    for b in batches:
        assert len(b) <= 4 and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 64)


@pytest.mark.real_models
def test_real_release_figures_equal_the_two_pass_path(tmp_path: Path) -> None:
    reference = paper_samples("gpt-3.5-turbo", 8)
    candidates = {m: paper_samples(m, 8) for m in ("mistral-instruct", "llama-2-base")}
    spec = default_embedder_spec()
    new = recover_table(reference, candidates, OnnxEmbedder(spec, cache_dir=tmp_path / "one"))
    old_emb = OnnxEmbedder(spec, cache_dir=tmp_path / "two", batch_size=16, batch_tokens=16 * 256)  # 16 a batch
    from lite_align.metrics.cross import cross_similarity

    for name, cand in candidates.items():
        for sim in (TwoPassCosine(old_emb), TwoPassBertScore(old_emb)):
            old = cross_similarity(reference, cand, sim).to_json()
            for key in ("cross", "baseline", "ratio"):
                assert new[name][sim.name][key] == pytest.approx(old[key], abs=1e-6), (name, sim.name, key)
