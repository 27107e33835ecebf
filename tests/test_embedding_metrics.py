"""lite_align.metrics.embedding: hand-checkable answers with a fake embedder, then the real model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from release import conflictingqa

from lite_align.data import SampleSet
from lite_align.embed import Embedder, Encoding, OnnxEmbedder, default_embedder_spec
from lite_align.metrics.embedding import (
    BertScoreF1,
    EmbeddingCosine,
    bertscore,
    embedding_distance_by_prompt,
    embedding_diversity,
    mean_pairwise_cosine_distance,
)

DIM = 8


class WordLengthEmbedder(Embedder):
    """Each word's vector is one-hot at its length (capped at DIM - 1), so two words match exactly
    when their lengths are equal; a sentence is the normalised mean of its words (zero when empty)."""

    def __init__(self, cache_dir: Path) -> None:
        super().__init__(name="word-length", model_id="word-length-v1", dim=DIM, cache_dir=cache_dir)
        self.embed_calls = 0

    def embed(self, texts, *, progress=None):  # type: ignore[no-untyped-def]
        self.embed_calls += 1
        return super().embed(texts, progress=progress)

    def _encode(self, texts: list[str]) -> list[Encoding]:
        out = []
        for text in texts:
            tokens = np.zeros((len(text.split()), DIM), dtype=np.float32)
            for i, word in enumerate(text.split()):
                tokens[i, min(len(word), DIM - 1)] = 1.0
            mean = tokens.mean(axis=0) if len(tokens) else np.zeros(DIM, dtype=np.float32)
            norm = np.linalg.norm(mean)
            out.append(Encoding(mean / norm if norm else mean, tokens))
        return out


@pytest.fixture
def fake(tmp_path: Path) -> WordLengthEmbedder:
    return WordLengthEmbedder(tmp_path)


def sample_set(by_prompt: dict[int, tuple[str, ...]]) -> SampleSet:
    return SampleSet(label="t", by_prompt=by_prompt)


# --- embedding diversity ---------------------------------------------------------------------------


def test_mean_pairwise_cosine_distance_by_hand() -> None:
    assert mean_pairwise_cosine_distance(np.array([[1.0, 0.0], [3.0, 0.0]])) == pytest.approx(0.0)
    assert mean_pairwise_cosine_distance(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(2.0)
    # pairs: (0,1) 1 - 0.6 = 0.4, (0,2) 1 - 0 = 1, (1,2) 1 - 0.8 = 0.2
    rows = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    assert mean_pairwise_cosine_distance(rows) == pytest.approx((0.4 + 1.0 + 0.2) / 3)
    assert math.isnan(mean_pairwise_cosine_distance(np.ones((1, 2))))


def test_embedding_diversity_by_hand(fake: WordLengthEmbedder) -> None:
    ss = sample_set(
        {
            0: ("aa", "bb"),  # same word length: distance 0
            1: ("a", "bb"),  # orthogonal: 1
            2: ("a", "bb", "c"),  # pairs 1, 0, 1
            3: ("alone",),  # no pair: excluded
        }
    )
    per = embedding_distance_by_prompt(ss, fake)
    assert per == pytest.approx({0: 0.0, 1: 1.0, 2: 2 / 3})
    est = embedding_diversity(ss, fake)
    assert est.n == 3 and est.mean == pytest.approx((0 + 1 + 2 / 3) / 3)
    assert est.lo <= est.mean <= est.hi
    assert fake.embed_calls == 2  # one batched call per metric call


def test_embedding_diversity_of_a_set_without_pairs_is_nan(fake: WordLengthEmbedder) -> None:
    est = embedding_diversity(sample_set({0: ("only",), 1: ()}), fake)
    assert est.n == 0 and math.isnan(est.mean)


# --- embedding cosine ----------------------------------------------------------------------------


def test_embedding_cosine_by_hand(fake: WordLengthEmbedder) -> None:
    sim = EmbeddingCosine(fake)
    assert sim.name == "embedding"
    # "aa bbb" -> (e2 + e3)/sqrt2, "cc d" -> (e2 + e1)/sqrt2: cos = 1/2; "xy" -> e2: cos = 1/sqrt2
    got = sim.pairs(["aa bbb", "aa bbb", "aa bbb"], ["cc d", "aa bbb", "xy"])
    np.testing.assert_allclose(got, [0.5, 1.0, 1 / math.sqrt(2)], rtol=1e-6)
    assert fake.stats.encoded == 3  # distinct texts only
    assert sim.pairs([], []).shape == (0,)
    with pytest.raises(ValueError, match="equal lengths"):
        sim.pairs(["a"], [])


def test_embedding_cosine_of_an_empty_text_is_zero(fake: WordLengthEmbedder) -> None:
    assert EmbeddingCosine(fake).pairs([""], ["word"])[0] == 0.0


# --- BERTScore-style F1 ----------------------------------------------------------------------------


def test_bertscore_by_hand(fake: WordLengthEmbedder) -> None:
    sim = BertScoreF1(fake)
    assert sim.name == "bertscore"
    got = sim.pairs(
        ["aa bbb", "aa bb ccc", "the same words", "", "word"],
        ["cc d", "dd", "the same words", "word", ""],
    )
    # lengths {2,3} vs {2,1}: P = R = 1/2 -> 0.5
    # [2,2,3] vs [2]: P = 2/3, R = 1 -> F1 = 2 * (2/3) / (5/3) = 0.8
    np.testing.assert_allclose(got, [0.5, 0.8, 1.0, 0.0, 0.0], rtol=1e-9)


def test_bertscore_f1_is_symmetric_and_chunking_changes_nothing(fake: WordLengthEmbedder) -> None:
    a = ["one two three", "a bb ccc dddd", "x", "long words everywhere", "one two three"]
    b = ["four five", "bb", "yy zz", "short", "a bb"]
    forward = BertScoreF1(fake).pairs(a, b)
    assert fake.stats.encoded == 9  # 9 distinct texts, each encoded once
    np.testing.assert_allclose(BertScoreF1(fake, chunk=2).pairs(b, a), forward, rtol=1e-12)
    # a second scorer: the left texts of the first call kept their token vectors in memory, the
    # right ones (each scored once, as a candidate answer is) did not
    assert fake.stats.encoded == 9 + 5


def test_bertscore_precision_and_recall_directions() -> None:
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[1.0, 0.0]])
    assert bertscore(a, b) == pytest.approx((0.5, 1.0, 2 / 3))
    assert bertscore(b, a) == pytest.approx((1.0, 0.5, 2 / 3))
    assert bertscore(np.zeros((0, 2)), b) == (0.0, 0.0, 0.0)


def unit_rows(n_max: int) -> st.SearchStrategy[np.ndarray]:
    return (
        st.integers(1, n_max)
        .flatmap(
            lambda n: arrays(np.float64, (n, 3), elements=st.floats(-1, 1, allow_nan=False)).filter(
                lambda x: bool((np.linalg.norm(x, axis=1) > 1e-3).all())
            )
        )
        .map(lambda x: x / np.linalg.norm(x, axis=1, keepdims=True))
    )


@settings(max_examples=200, deadline=None)
@given(unit_rows(6), unit_rows(6))
def test_bertscore_properties(a: np.ndarray, b: np.ndarray) -> None:
    p, r, f = bertscore(a, b)
    p2, r2, f2 = bertscore(b, a)
    assert (p, r) == pytest.approx((r2, p2)) and f == pytest.approx(f2)
    assert -1 - 1e-9 <= p <= 1 + 1e-9 and -1 - 1e-9 <= r <= 1 + 1e-9
    assert bertscore(a, a)[2] == pytest.approx(1.0)


# --- the real model and the paper's released outputs -----------------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> OnnxEmbedder:
    return OnnxEmbedder(default_embedder_spec(), cache_dir=tmp_path_factory.mktemp("real-cache"))


def paper_samples(model: str, n_prompts: int) -> SampleSet:
    by_prompt: dict[int, tuple[str, ...]] = {}
    with (conflictingqa() / "outputs" / model / "samples.jsonl").open(encoding="utf-8") as f:
        for pid, line in zip(range(n_prompts), f, strict=False):
            row = json.loads(line)
            texts = [o["message"]["content"] if "message" in o else o["generated_text"] for o in row["outputs"]]
            by_prompt[pid] = tuple(t.strip().removesuffix("```").strip() for t in texts)
    return sample_set(by_prompt)


@pytest.mark.real_models
def test_real_similarities_rank_meanings(real: OnnxEmbedder) -> None:
    cat = "A cat sits on the mat."
    others = ["A kitten is sitting on a rug.", "Quarterly tax filing deadlines."]
    for sim in (EmbeddingCosine(real), BertScoreF1(real)):
        same, kitten, tax = sim.pairs([cat, cat, cat], [cat, *others])
        assert same == pytest.approx(1.0, abs=1e-5)
        assert kitten > tax, sim.name


@pytest.mark.real_models
def test_real_base_model_samples_are_more_diverse_than_chat(real: OnnxEmbedder) -> None:
    # The paper's finding on its own outputs (first 20 ConflictingQA prompts, 5 samples each).
    base = embedding_diversity(paper_samples("llama-2-base", 20), real)
    chat = embedding_diversity(paper_samples("gpt-3.5-turbo", 20), real)
    assert base.n == chat.n == 20
    assert base.mean > chat.mean + 0.1
    assert 0.0 < chat.mean < base.mean < 1.0
