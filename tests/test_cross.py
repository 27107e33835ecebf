"""lite_align.metrics.cross: hand cases with a fake similarity, then the two reference cross tables
(tests/data/paper_reference.json) from the paper's released outputs.

Tolerances: each Jaccard (cross, baseline) within ±0.005, as the reference states. The ratio's
tolerance is derived from that: with cross c and baseline b each off by at most t, c/b is off by at
most max |(c ± t)/(b ∓ t) - c/b| ≈ t (1 + c/b) / b, i.e. 0.012 to 0.024 here (b ≈ 0.42). We assert
that derived bound and also the lead's stricter ±0.005.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from release import conflictingqa, reference_rows

from lite_align.data import SampleSet
from lite_align.metrics.cross import CrossResult, JaccardSimilarity, Similarity, cross_similarity
from lite_align.readers import read_samples

JACCARD_TOL = 0.005
RATIO_TOL = 0.005


class LengthSimilarity:
    """A fake similarity: 1 / (1 + |len(a) - len(b)|), NaN when both texts are empty; records calls."""

    name = "length"

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[str]]] = []

    def pairs(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        self.calls.append((list(a), list(b)))
        return np.array(
            [np.nan if not x and not y else 1 / (1 + abs(len(x) - len(y))) for x, y in zip(a, b, strict=True)]
        )


def test_fake_and_jaccard_satisfy_the_protocol() -> None:
    assert isinstance(LengthSimilarity(), Similarity)
    assert isinstance(JaccardSimilarity(), Similarity)
    assert JaccardSimilarity(stem=True, ngram=2).name == "jaccard-stem-2gram"


def test_cross_baseline_and_ratio_by_hand_in_one_batch() -> None:
    ref = SampleSet("ref", {0: ("aaaa", "aaa", "aa"), 1: ("bb", "bb", "bbbb"), 7: ("z", "z")})
    cand = SampleSet("cand", {0: ("aaaa", "a"), 1: ("bbb",), 2: ("x",)})
    sim = LengthSimilarity()
    r = cross_similarity(ref, cand, sim)
    assert len(sim.calls) == 1  # one batch for every prompt
    # prompt 0: baseline (1/2 + 1/3) / 2 = 5/12, cross (1 + 1/4) / 2 = 5/8
    # prompt 1: baseline (1 + 1/3) / 2 = 2/3,   cross 1/2
    assert r.prompt_ids == (0, 1) and r.n_prompts == 2  # 2 and 7 are not in both sets
    assert r.baseline_per_prompt.tolist() == pytest.approx([5 / 12, 2 / 3])
    assert r.cross_per_prompt.tolist() == pytest.approx([5 / 8, 1 / 2])
    assert r.cross.mean == pytest.approx((5 / 8 + 1 / 2) / 2)
    assert r.baseline.mean == pytest.approx((5 / 12 + 2 / 3) / 2)
    assert r.ratio.mean == pytest.approx((5 / 8 + 1 / 2) / (5 / 12 + 2 / 3))
    out = r.to_json()
    assert set(out) >= {"cross", "baseline", "ratio", "ratio_ci", "cross_ci", "baseline_ci", "n_prompts"}
    assert out["ratio"] == pytest.approx(r.ratio.mean) and out["n_prompts"] == 2


def test_the_reference_against_itself_leaves_out_the_identical_pair() -> None:
    ref = SampleSet("ref", {0: ("aaaa", "aaa", "aa")}, source="x")
    same_texts = SampleSet("ref", {0: ("aaaa", "aaa", "aa")}, source="x")
    for cand in (ref, same_texts):
        r = cross_similarity(ref, cand, LengthSimilarity())
        assert r.cross.mean == pytest.approx(r.baseline.mean) and r.ratio.mean == pytest.approx(1.0)
    other = SampleSet("other", {0: ("aaaa", "aaa", "aa")})
    r = cross_similarity(ref, other, LengthSimilarity())
    assert r.cross.mean == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)  # s0-s0 counts for another model


def test_greedy_runs_take_the_baseline_from_the_sampled_set() -> None:
    greedy_ref = SampleSet("ref-greedy", {0: ("aaaa",), 1: ("bb",)})
    greedy_cand = SampleSet("cand-greedy", {0: ("aaa",), 1: ("bb",)})
    sampled_ref = SampleSet("ref", {0: ("aa", "aa"), 1: ("b", "bbb")})
    sim = LengthSimilarity()
    r = cross_similarity(greedy_ref, greedy_cand, sim, baseline=sampled_ref)
    assert r.baseline_per_prompt.tolist() == pytest.approx([1.0, 1 / 3])  # sampled s0 vs s1
    assert r.cross_per_prompt.tolist() == pytest.approx([1 / 2, 1.0])  # greedy ref vs greedy candidate
    with_no_baseline = cross_similarity(greedy_ref, greedy_cand, sim)
    assert with_no_baseline.n_prompts == 0  # one greedy sample: no within-reference pair


def test_prompts_with_only_undefined_pairs_are_left_out() -> None:
    ref = SampleSet("ref", {0: ("", ""), 1: ("ab", "ab")})
    cand = SampleSet("cand", {0: ("",), 1: ("",)})
    r = cross_similarity(ref, cand, LengthSimilarity())
    assert r.prompt_ids == (1,)
    assert r.cross.mean == pytest.approx(1 / 3) and r.baseline.mean == 1.0


def test_a_similarity_returning_the_wrong_shape_is_caught() -> None:
    class Broken(LengthSimilarity):
        def pairs(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
            return np.zeros(1)

    ref = SampleSet("ref", {0: ("a", "b", "c")})
    with pytest.raises(ValueError, match="returned"):
        cross_similarity(ref, SampleSet("c", {0: ("a", "b")}), Broken())


def test_jaccard_similarity_pairs() -> None:
    got = JaccardSimilarity().pairs(["red apple", "", "The end."], ["green apple", "", "the end"])
    assert got[0] == pytest.approx(1 / 3) and np.isnan(got[1]) and got[2] == pytest.approx(1 / 2)
    assert JaccardSimilarity(stem=True).pairs(["cats"], ["cat"]).tolist() == [1.0]


# --------------------------------------------------------------------------------------------------
# the reference cross tables (reference = gpt-3.5-turbo, word-bag Jaccard)


SAMPLED, GREEDY = reference_rows("cross_sampled"), reference_rows("cross_greedy")


def derived_ratio_tol(cross: float, baseline: float, t: float = JACCARD_TOL) -> float:
    ratio = cross / baseline
    return max(abs((cross + dc) / (baseline + db) - ratio) for dc in (t, -t) for db in (t, -t))


def check(got: CrossResult, row: dict[str, float]) -> None:
    cross, baseline, ratio = row["cross"], row["baseline"], row["ratio"]
    assert got.n_prompts == 434
    assert got.cross.mean == pytest.approx(cross, abs=JACCARD_TOL)
    assert got.baseline.mean == pytest.approx(baseline, abs=JACCARD_TOL)
    assert got.ratio.mean == pytest.approx(ratio, abs=derived_ratio_tol(cross, baseline))
    assert got.ratio.mean == pytest.approx(ratio, abs=RATIO_TOL)
    assert got.ratio.lo <= got.ratio.mean <= got.ratio.hi


def test_tables_have_the_expected_rows() -> None:
    assert len(SAMPLED) == 6 and len(GREEDY) == 4
    assert derived_ratio_tol(0.4187, 0.4187) == pytest.approx(0.024, abs=0.001)


@pytest.mark.parametrize("row", SAMPLED, ids=[r["set"] for r in SAMPLED])
def test_sampled_cross_table(row: dict[str, float]) -> None:
    root = conflictingqa() / "outputs"
    [ref] = read_samples(root / "gpt-3.5-turbo")
    [cand] = read_samples(root / str(row["set"]))  # gpt-3.5-turbo itself: the pair s0-s0 is left out
    check(cross_similarity(ref, cand, JaccardSimilarity()), row)


@pytest.mark.parametrize("row", GREEDY, ids=[r["set"] for r in GREEDY])
def test_greedy_cross_table(row: dict[str, float]) -> None:
    root = conflictingqa()
    [sampled_ref] = read_samples(root / "outputs" / "gpt-3.5-turbo")
    [greedy_ref] = read_samples(root / "outputs-temp0" / "gpt-3.5-turbo")
    [cand] = read_samples(root / "outputs-temp0" / str(row["set"]))
    check(cross_similarity(greedy_ref, cand, JaccardSimilarity(), baseline=sampled_ref), row)
