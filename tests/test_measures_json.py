"""What the reports and --json take from the issue-14 measures: the per-file block (shaped as a
``diversity --json`` row), the metric agreement table and the paired differences for ``compare``,
each on hand-made sets whose figures are worked out by hand in the comments."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from fakes import FakeEmbedder
from test_measures import CONTRACT_KEYS

from lite_align.data import SampleSet
from lite_align.metrics.lexical import diversity
from lite_align.metrics.measures import (
    AGREEMENT_KEYS,
    EMBEDDING_KEYS,
    MEASURES,
    TEXT_KEYS,
    add_to_row,
    agreement_json,
    measure_set,
    measures_json,
    paired_difference,
    paired_differences,
    paper_series,
    per_prompt_by_id,
)
from lite_align.stats import mean_ci

EXTRA_KEYS = (
    "vendi_embedding_relative",
    "vendi_ngram_relative",
    "distinct_classes_embedding",
    "semantic_entropy_embedding",
)
NEEDS_VECTORS = {
    "vendi_embedding",
    "vendi_embedding_relative",
    "distinct_classes_embedding",
    "semantic_entropy_embedding",
}

H_2_1 = math.log(3) - 2 / 3 * math.log(2)  # entropy of shares (2/3, 1/3): 0.636514
E1, E2, E3 = np.eye(3)

# six-word answers with no word in common (no stop word either): ROUGE-1 F between them is 0
A = "one two three four five six"
B = "seven eight nine ten eleven twelve"
C = "red blue green black white pink"


def _short() -> tuple[SampleSet, dict[int, np.ndarray]]:
    """Short answers: classes by the short-answer rule ("yes." = "yes."; "a cat sat." and "a dog
    ran." share 1 word: 2 * 1 < 3, apart). Prompt 2 has one answer: no value anywhere."""
    s = SampleSet(
        "toy",
        {0: ("Yes.", "Yes.", "No."), 1: ("A cat sat.", "A dog ran.", "Birds fly."), 2: ("Alone.",)},
    )
    vectors = {0: np.stack([E1, E1, E2]), 1: np.stack([E1, E2, E3]), 2: E1[None, :]}
    return s, vectors


def _expected_distinct(total: int, v: int) -> float:
    return v * (1 - ((v - 1) / v) ** total)


def test_the_block_has_every_key_shaped_as_a_diversity_row() -> None:
    s, vectors = _short()
    block = measures_json(s, vectors=vectors, vocab_size=262_144)
    measure_keys = [m.key for m in MEASURES]
    assert list(block) == [*measure_keys, "ead_across_prompts", "ci", "ead_vocab_size", "ead_vocab_size_known"]
    assert set(measure_keys) == set(CONTRACT_KEYS) | set(EXTRA_KEYS)
    assert list(block["ci"]) == [*measure_keys, "ead_across_prompts"]
    assert block["ci"]["ead_across_prompts"] == [None, None]  # one figure per set: no interval
    for key in measure_keys:  # as today's rows: a number (or null), and [lo, hi] under ci
        assert block[key] is None or type(block[key]) is float
        lo, hi = block["ci"][key]
        assert (lo is None) == (hi is None)
        assert lo is None or lo <= block[key] <= hi
    assert json.loads(json.dumps(block, allow_nan=False)) == block

    # classes: 2 and 3 (see _short); their mean, and the bootstrap of two values spans both
    assert block["distinct_classes"] == block["distinct_classes_embedding"] == 2.5
    assert block["ci"]["distinct_classes"] == [2.0, 3.0]
    assert block["semantic_entropy"] == pytest.approx((H_2_1 + math.log(3)) / 2)
    assert block["ci"]["semantic_entropy"] == pytest.approx([H_2_1, math.log(3)])
    # Vendi of [e1, e1, e2]: eigenvalues of K/3 are 2/3 and 1/3, exp(H) = exp(0.636514); of [e1, e2, e3]: 3
    assert block["vendi_embedding"] == pytest.approx((math.exp(H_2_1) + 3) / 2)
    assert block["vendi_embedding_relative"] == pytest.approx((math.exp(H_2_1) / 3 + 1) / 2)
    # n-gram diversity: prompt 0 has 3 words (undefined below 4); prompt 1, "A cat sat. A dog ran.
    # Birds fly.": 7/8 distinct words and all 7 bigrams, 6 trigrams, 5 4-grams distinct = 3.875.
    # One prompt: the mean is its value and there is no interval.
    assert block["ngram_diversity"] == pytest.approx(3.875)
    assert block["ci"]["ngram_diversity"] == [None, None]
    # EAD across prompts, over the first answers [Yes .] [A cat sat .] [Alone .]: 8 tokens, 6 distinct;
    # 5 bigrams, 2 trigrams, 1 4-gram, all distinct; no 5-gram (that order is left out)
    v = 262_144
    ratios = [6 / _expected_distinct(8, v), 5 / _expected_distinct(5, v), 2 / _expected_distinct(2, v), 1.0]
    assert block["ead_across_prompts"] == pytest.approx(np.mean(ratios), rel=1e-9)
    assert block["ead_vocab_size"] == v and block["ead_vocab_size_known"] is True


def test_figures_and_extras_are_the_blocks_parts() -> None:
    """What a registry family returns: an estimate per figure (EAD across prompts without an
    interval, n = prompts) and the vocabulary beside them."""
    s, vectors = _short()
    result = measure_set(s, vectors=vectors)
    figures = result.figures()
    assert list(figures) == [*result.keys, "ead_across_prompts"]
    across = figures["ead_across_prompts"]
    assert across.mean == result.ead_across_prompts and across.n == 3
    assert math.isnan(across.lo) and math.isnan(across.hi)
    assert result.extras() == {"ead_vocab_size": 32_000, "ead_vocab_size_known": False}
    block = result.to_json()
    assert {k: block[k] for k in figures} == {k: (None if math.isnan(e.mean) else e.mean) for k, e in figures.items()}


def test_without_vectors_the_embedding_measures_are_absent_as_embedding_diversity_is() -> None:
    s, _ = _short()
    block = measures_json(s)
    assert NEEDS_VECTORS.isdisjoint(block) and NEEDS_VECTORS.isdisjoint(block["ci"])
    assert set(CONTRACT_KEYS) - {"vendi_embedding"} <= set(block)
    assert block["ead_vocab_size"] == 32_000 and block["ead_vocab_size_known"] is False
    # a set with one answer per prompt (greedy) has no within-prompt figure, but EAD across prompts
    greedy = measures_json(SampleSet("greedy", {0: ("Yes.",), 1: ("No, never.",)}))
    assert all(greedy[k] is None and greedy["ci"][k] == [None, None] for k in greedy["ci"] if k != "ead_across_prompts")
    assert greedy["ead_across_prompts"] is not None and greedy["ead_across_prompts"] > 0


def test_an_embedder_gives_the_same_block_as_its_vectors() -> None:
    s, _ = _short()
    embedder = FakeEmbedder()
    vectors = {pid: embedder.embed(list(texts)) for pid, texts in s.by_prompt.items()}
    assert measures_json(s, embedder=embedder) == measures_json(s, vectors=vectors)
    with pytest.raises(ValueError, match="sentence vectors or an embedder, not both"):
        measures_json(s, embedder=embedder, vectors=vectors)
    for bad in (0, -5, True):
        with pytest.raises(ValueError, match="vocabulary size must be a positive whole number"):
            measures_json(s, vocab_size=bad)


def test_add_to_row_keeps_todays_row_and_appends_the_block() -> None:
    s, vectors = _short()
    row = diversity(s).to_json()
    today = json.loads(json.dumps(row))
    block = measures_json(s, vectors=vectors)
    merged = add_to_row(row, block)
    assert merged is row
    assert list(row)[: len(today)] == list(today)  # today's keys first, in today's order
    assert {k: row[k] for k in today if k != "ci"} == {k: v for k, v in today.items() if k != "ci"}
    assert list(row["ci"]) == [*today["ci"], *block["ci"]]
    assert all(row["ci"][k] == v for k, v in today["ci"].items())
    assert all(row[k] == block[k] for k in block if k != "ci")
    with pytest.raises(ValueError, match="the row already has distinct_classes, ead; a measure key must be new"):
        add_to_row(row, {"ead": 1.0, "ci": {"distinct_classes": [1.0, 2.0]}})
    with pytest.raises(ValueError, match="the row already has jaccard_within"):
        add_to_row({"ci": {"jaccard_within": [0, 1]}}, {"ci": {"jaccard_within": [0, 1]}})


# -------------------------------------------------------------------------------------------------
# Agreement


def _graded() -> tuple[SampleSet, dict[int, np.ndarray]]:
    """Prompts 0..2 have 1, 2, 3 different answers among three (classes 1, 2, 3); prompt 3 one answer."""
    s = SampleSet("graded", {0: (A, A, A), 1: (A, A, B), 2: (A, B, C), 3: (A,)})
    vectors = {0: np.stack([E1, E1, E1]), 1: np.stack([E1, E1, E2]), 2: np.stack([E1, E2, E3]), 3: E1[None, :]}
    return s, vectors


def test_paper_series_by_hand() -> None:
    s, vectors = _graded()
    series = paper_series(diversity(s), vectors)
    # word-bag Jaccard: pairs (A,A,A) 1, 1, 1; (A,A,B) 1, 0, 0; (A,B,C) 0, 0, 0; one answer: no pair
    assert series["jaccard_within"] == pytest.approx({0: 1.0, 1: 1 / 3, 2: 0.0})
    # distinct 20-character prefixes / answers; the lone answer is its own prefix
    assert series["distinct_prefix_fraction"] == pytest.approx({0: 1 / 3, 1: 2 / 3, 2: 1.0, 3: 1.0})
    # mean 1 - cos over pairs: (0, 0, 0), (0, 1, 1), (1, 1, 1)
    assert series["embedding_diversity"] == pytest.approx({0: 0.0, 1: 2 / 3, 2: 1.0})
    assert paper_series() == {}


def test_agreement_table_by_hand() -> None:
    s, vectors = _graded()
    result = measure_set(s, vectors=vectors)
    paper = paper_series(diversity(s), vectors)
    table = agreement_json(result, paper, keys=["distinct_classes", "vendi_embedding"])
    keys = ["distinct_classes", "vendi_embedding", "jaccard_within", "distinct_prefix_fraction", "embedding_diversity"]
    assert table["keys"] == keys
    assert table["oriented"] is True and table["n_prompts"] == 4
    # every measure ranks prompts 0 < 1 < 2 by diversity (Jaccard 1, 1/3, 0 turned around): rho = 1
    assert table["rho"] == [[1.0] * 5] * 5
    # prompt 3 (one answer) has a value only for distinct prefixes
    assert table["n"][0] == [3, 3, 3, 3, 3] and table["n"][3][3] == 4
    json.dumps(table, allow_nan=False)

    # a permuted ranking: ranks (1, 3, 2) against (1, 2, 3): 1 - 6 * (0 + 1 + 1) / (3 * 8) = 0.5;
    # a constant measure has no rho; a measure with a value on 2 prompts only has none either
    other = {
        "embedding_diversity": {0: 0.2, 1: 0.9, 2: 0.5},
        "jaccard_within": {0: 0.5, 1: 0.5, 2: 0.5},
        "distinct_prefix_fraction": {0: 0.1, 2: 0.3},
    }
    table = agreement_json(result, other, keys=["distinct_classes"])
    assert table["keys"] == ["distinct_classes", *other]
    assert table["rho"][0] == [1.0, 0.5, None, None]
    assert table["n"][0] == [3, 3, 3, 2]


def test_agreement_table_defaults_and_errors() -> None:
    s, vectors = _graded()
    result = measure_set(s, vectors=vectors)
    table = agreement_json(result)
    assert table["keys"] == list(AGREEMENT_KEYS)  # every measure but the "/ n" variants
    assert not any(k.endswith("_relative") for k in table["keys"])
    without = agreement_json(measure_set(s))
    assert without["keys"] == [k for k in AGREEMENT_KEYS if k not in NEEDS_VECTORS]
    with pytest.raises(KeyError, match="vendi_embedding not measured in graded"):
        agreement_json(measure_set(s), keys=["vendi_embedding"])
    with pytest.raises(KeyError, match="no direction known for 'length_mean'; give it in directions"):
        agreement_json(result, {"length_mean": {0: 1.0}})
    with pytest.raises(ValueError, match="distinct_classes is given twice"):
        agreement_json(result, {"distinct_classes": {0: 1.0}})


def test_measures_computed_apart_give_the_same_table() -> None:
    """The text measures and the embedding measures in two results (two registry families, the
    second only with an encoder): the same figures, and the same agreement table, as one result."""
    s, vectors = _graded()
    assert set(TEXT_KEYS) | set(EMBEDDING_KEYS) == {m.key for m in MEASURES}
    assert set(EMBEDDING_KEYS) == NEEDS_VECTORS and not set(TEXT_KEYS) & set(EMBEDDING_KEYS)
    whole = measure_set(s, vectors=vectors)
    text = measure_set(s, keys=TEXT_KEYS)
    emb = measure_set(s, vectors=vectors, keys=EMBEDDING_KEYS)
    for part in (text, emb):
        for key in part.keys:
            np.testing.assert_array_equal(part.per_prompt[key], whole.per_prompt[key])
            np.testing.assert_equal(part.estimates[key].as_dict(), whole.estimates[key].as_dict())
    together = agreement_json(whole, keys=["distinct_classes", "vendi_embedding"])
    apart = agreement_json(
        text, {"vendi_embedding": per_prompt_by_id(emb)["vendi_embedding"]}, keys=["distinct_classes"]
    )
    assert apart == together
    # a series of another registry, with its direction given
    flipped = agreement_json(
        text, {"spread": {0: 3.0, 1: 2.0, 2: 1.0}}, keys=["distinct_classes"], directions={"spread": False}
    )
    assert flipped["rho"][0][1] == 1.0


# -------------------------------------------------------------------------------------------------
# Paired differences (compare)


def test_paired_difference_by_hand() -> None:
    # the 2-pair case: differences (0, 1); their bootstrap means are 0, 0.5 or 1, so the interval is [0, 1]
    assert paired_difference({0: 1.0, 1: 2.0}, {7: 1.0, 8: 3.0}, [(0, 7), (1, 8)]) == {
        "a": 1.5,
        "b": 2.0,
        "diff": 0.5,
        "ci": [0.0, 1.0],
        "n": 2,
    }
    # pairs where either side has no value do not count; none left: every figure is null
    assert paired_difference({0: 1.0}, {5: 2.0}, [(0, 9), (3, 5)]) == {
        "a": None,
        "b": None,
        "diff": None,
        "ci": [None, None],
        "n": 0,
    }
    one = paired_difference({0: 1.0}, {5: 4.0}, [(0, 5)])
    assert one == {"a": 1.0, "b": 4.0, "diff": 3.0, "ci": [None, None], "n": 1}


def test_paired_differences_of_two_sets_by_hand() -> None:
    a_set, _ = _graded()  # classes 1, 2, 3 on prompts 0, 1, 2; prompt 3 has one answer
    b_set = SampleSet("other", {10: (A, B, C), 11: (A, A, B), 12: (A, A, A), 13: (A, B)})
    a, b = measure_set(a_set, keys=["distinct_classes", "self_bleu"]), measure_set(b_set)
    pairs = [(0, 10), (1, 11), (2, 12), (3, 13)]
    diffs = paired_differences(a, b, pairs)
    assert list(diffs) == ["distinct_classes", "self_bleu"]  # the measures both hold, in a's order
    # B − A over the pairs with both values (prompt 3 has none in A): 3 − 1, 2 − 2, 1 − 3
    row = diffs["distinct_classes"]
    assert row["a"] == row["b"] == 2.0 and row["diff"] == 0.0 and row["n"] == 3
    est = mean_ci([2.0, 0.0, -2.0])
    assert row["ci"] == [est.lo, est.hi] and -2.0 <= est.lo < 0.0 < est.hi <= 2.0
    # Self-BLEU of three identical answers is 1; of three without a shared word it is BLEU's
    # smoothed floor, the same for both; so the differences are -(1 − x), 0, 1 − x
    by_a, by_b = per_prompt_by_id(a), per_prompt_by_id(b)
    assert by_a["self_bleu"][0] == pytest.approx(1.0) and by_a["self_bleu"][2] == pytest.approx(by_b["self_bleu"][10])
    assert diffs["self_bleu"]["diff"] == pytest.approx(0.0, abs=1e-12)
    assert diffs["self_bleu"]["a"] == pytest.approx(diffs["self_bleu"]["b"])
    json.dumps(diffs, allow_nan=False)
    with pytest.raises(KeyError, match="ead not measured in both graded and other"):
        paired_differences(a, b, pairs, keys=["ead"])


# -------------------------------------------------------------------------------------------------
# measure_set's speed-ups change no number


def test_intervals_equal_stats_mean_ci_exactly() -> None:
    from lite_align.metrics import measures

    rng = np.random.default_rng(5)
    series = {f"s{i}": rng.normal(size=40) for i in range(4)}
    series["s1"][[3, 7, 11]] = np.nan  # another count of values: other draws
    series["one"] = np.array([np.nan, 2.0, np.nan])
    series["none"] = np.full(5, np.nan)
    got = measures._means_with_intervals(series)
    for key, values in series.items():
        expected = mean_ci(values[~np.isnan(values)])
        np.testing.assert_equal(got[key].as_dict(), expected.as_dict(), err_msg=key)  # exact; NaN equals NaN


def test_prompt_blocks_change_no_value(monkeypatch: pytest.MonkeyPatch) -> None:
    from lite_align.metrics import measures

    s = SampleSet("blocks", {i: (A, B, C)[: 1 + i % 3] + (f"answer {i} here",) for i in range(11)})
    vectors = {pid: np.random.default_rng(pid).normal(size=(len(t), 6)) for pid, t in s.by_prompt.items()}
    whole = measure_set(s, vectors=vectors, vocab_size=1000)
    monkeypatch.setattr(measures, "PROMPT_BLOCK", 3)
    blocked = measure_set(s, vectors=vectors, vocab_size=1000)
    assert blocked.to_json() == whole.to_json()
    for key in whole.keys:
        np.testing.assert_array_equal(blocked.per_prompt[key], whole.per_prompt[key])
    del vectors[9]
    with pytest.raises(ValueError, match="no sentence vectors for prompt 9 of blocks"):
        measure_set(s, vectors=vectors)
