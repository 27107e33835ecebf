"""lite_align.metrics.lexical on sample sets small enough to work out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lite_align.data import SampleSet
from lite_align.metrics.lexical import (
    DiversityResult,
    diversity,
    has_bullet_list,
    has_numbered_list,
    is_abstain,
    jaccard,
)


def test_jaccard() -> None:
    assert jaccard(frozenset({"a", "b"}), frozenset({"b", "c"})) == pytest.approx(1 / 3)
    assert jaccard(frozenset({"a"}), frozenset()) == 0.0
    assert math.isnan(jaccard(frozenset(), frozenset()))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("As an AI language model, I can't.", True),
        ("I DO NOT HAVE PERSONAL opinions", True),
        ("We cannot condone that.", True),
        ("I can’t have personal views", False),  # curly apostrophe: not the listed phrase
        ("Language models are AI.", False),
    ],
)
def test_is_abstain(source: str, expected: bool) -> None:
    assert is_abstain(source) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1. a\n2. b", True),
        ("Intro\n1. a\ntext\n2. b\n3. c", True),
        ("1. only one", False),
        ("1) a\n2) b", False),
        ("1.a\n2.b", False),  # the marker needs its space
        ("2. b\n1. a", False),  # counting starts at 1
        ("1. a\n1. again\n2. b", True),  # a repeated 1 is skipped, then 2 follows
        ("  1. a\n  2. b", False),  # lines are not stripped (see the comment in lexical.py)
    ],
)
def test_has_numbered_list(source: str, expected: bool) -> None:
    assert has_numbered_list(source) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [("- a\n- b", True), ("- a\nb\n- c", True), ("- a", False), ("-a\n-b", False), (" - a\n - b", False)],
)
def test_has_bullet_list(source: str, expected: bool) -> None:
    assert has_bullet_list(source) is expected


def toy_set() -> SampleSet:
    return SampleSet(
        label="toy",
        by_prompt={
            # bags {red, apple} {red, pear} {green, apple}: pairs 1/3, 0, 1/3; lengths 2 2 2
            0: ("red apple", "red pear", "green apple"),
            # bags {} {} {Yes}: the empty pair is skipped, the others score 0; lengths 0 0 1
            1: ("", "...", "Yes"),
            # bags {} {}: no pair left, so no Jaccard; lengths 1 (the) and 0
            2: ("the", "."),
            # one sample: no pair at all; an abstention, a numbered list and a bullet list
            3: ("As an AI language model:\n1. no\n2. never\n- x\n- y",),
        },
        n_failed=2,
    )


def test_diversity_by_hand() -> None:
    r = diversity(toy_set())
    assert isinstance(r, DiversityResult)
    assert (r.n_prompts, r.n_failed, r.n_responses) == (4, 2, 9)
    assert r.prompt_ids == (0, 1, 2, 3)
    assert r.jaccard_within.mean == pytest.approx(((1 / 3 + 0 + 1 / 3) / 3 + 0) / 2)  # prompts 0 and 1
    assert r.jaccard_within.n == 2
    assert np.isnan(r.per_prompt["jaccard_within"][2:]).all()
    # lengths per prompt: 2, 1/3, 1/2, and prompt 3: As an AI language model 1 no 2 never x y -> 11
    assert r.per_prompt["length_mean"].tolist() == pytest.approx([2, 1 / 3, 0.5, 11])
    assert r.length_mean.mean == pytest.approx((2 + 1 / 3 + 0.5 + 11) / 4)
    # spreads: 0; (0 + 1 + 1) / 3; 1; none for one sample
    assert r.length_spread.mean == pytest.approx((0 + 2 / 3 + 1) / 3)
    # distinct 20-char prefixes / n: 3/3, 3/3, 2/2, 1/1
    assert r.distinct_prefix_fraction.mean == 1.0
    # rates over the 9 responses, not over prompts
    assert r.abstain_rate.mean == pytest.approx(1 / 9)
    assert r.numbered_list_rate.mean == pytest.approx(1 / 9)
    assert r.bullet_list_rate.mean == pytest.approx(1 / 9)


def test_distinct_prefixes_use_the_first_20_characters() -> None:
    same_start = "Yes, audiobooks are "  # 20 characters
    s = SampleSet("p", {0: (same_start + "fine.", same_start + "great.", "No.", "No.")})
    assert diversity(s).distinct_prefix_fraction.mean == pytest.approx(2 / 4)


def test_to_json_is_flat_with_intervals_under_ci() -> None:
    out = diversity(toy_set()).to_json()
    names = [
        "jaccard_within",
        "length_mean",
        "length_spread",
        "abstain_rate",
        "numbered_list_rate",
        "bullet_list_rate",
        "distinct_prefix_fraction",
    ]
    assert all(isinstance(out[name], float) for name in names)
    assert (out["n_prompts"], out["n_failed"], out["n_responses"]) == (4, 2, 9)
    assert set(out["ci"]) == set(names)
    lo, hi = out["ci"]["length_mean"]
    assert lo <= out["length_mean"] <= hi


def test_single_sample_runs_have_no_pairwise_figures() -> None:
    greedy = SampleSet("greedy", {0: ("One answer.",), 1: ("Another answer.",)})
    out = diversity(greedy).to_json()
    assert out["jaccard_within"] is None and out["length_spread"] is None  # JSON null, not NaN
    assert out["length_mean"] == 2.0


def test_stemming_and_ngrams_reach_the_jaccard() -> None:
    s = SampleSet("s", {0: ("cats running", "cat runs")})
    assert diversity(s).jaccard_within.mean == 0.0
    assert diversity(s, stem=True).jaccard_within.mean == 1.0  # cat run / cat run
    assert diversity(s, stem=True, ngram=2).jaccard_within.mean == 1.0  # "cat run" both
