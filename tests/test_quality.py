"""Judge-free quality filters and the diversity of the responses that pass them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from lite_align.data import SampleSet
from lite_align.metrics.quality import (
    diversity_after_filter,
    filter_quality,
    flag_responses,
    is_degenerate,
    is_terse,
    max_line_repeats,
    repeated_ngram_share,
)


class TableEmbedder:
    def __init__(self, table: dict[str, Sequence[float]]) -> None:
        self.table = table

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([self.table[t] for t in texts], dtype=np.float32)


@pytest.mark.parametrize(
    ("text", "terse"),
    [
        ("Yes.", True),
        ("No, it is not.", True),  # 4 tokens that are not punctuation
        ("No, it is not true.", False),  # 5
        ("", False),  # empty is its own filter
        ("   \n", False),
    ],
)
def test_terse(text: str, terse: bool) -> None:
    assert is_terse(text) is terse


def test_repeated_ngram_share_by_hand() -> None:
    # lower-cased, punctuation dropped: yes it is yes it is -> 3-grams yes-it-is, it-is-yes, is-yes-it,
    # yes-it-is: 3 distinct of 4
    assert repeated_ngram_share("Yes, it is. yes it is!") == pytest.approx(0.25)
    assert repeated_ngram_share("one two") == 0.0  # no 3-gram
    assert repeated_ngram_share("la la la la la la") == pytest.approx(1 - 1 / 4)


def test_max_line_repeats_ignores_lines_without_words() -> None:
    assert max_line_repeats("a\n\n\n\n---\n---\n---\n a \nb") == 2
    assert max_line_repeats("") == 0


@pytest.mark.parametrize(
    ("text", "degenerate"),
    [
        ("The body is a machine. The body is a machine. The body is a machine.", True),  # 5 distinct 3-grams of 13
        ("http://x.org/a\nhttp://x.org/a\nhttp://x.org/a", True),  # one line three times
        ("http://x.org/a\nhttp://x.org/a\nhttp://x.org/b", False),
        ("Audiobooks count as reading: the listener follows the same story and ideas.", False),
        ("- yes\n- yes\n- no", False),  # a line twice is not enough
    ],
)
def test_degenerate(text: str, degenerate: bool) -> None:
    assert is_degenerate(text) is degenerate


def test_off_topic_is_tested_only_on_responses_with_content() -> None:
    prompt = "Do cats purr?"
    answers = (
        "Cats purr when content, and sometimes when hurt.",
        "The stock market rose again on Tuesday.",
        "Yes.",
        "",
    )
    table = {
        prompt: [1.0, 0.0],
        answers[0]: [0.9, np.sqrt(1 - 0.81)],  # cosine 0.9
        answers[1]: [0.1, np.sqrt(1 - 0.01)],  # cosine 0.1 < 0.15
    }
    s = SampleSet("s", {0: answers}, prompts={0: prompt})
    flags = flag_responses(s, embedder=TableEmbedder(table))[0]
    assert [f.off_topic for f in flags] == [False, True, None, None]  # terse and empty are not embedded
    assert flags[0].cosine == pytest.approx(0.9)
    assert [f.passed for f in flags] == [True, False, False, False]
    assert (flags[2].terse, flags[3].empty) == (True, True)
    # without an embedder, or without the prompt's text, nothing is tested for being off topic
    assert all(f.off_topic is None for f in flag_responses(s)[0])
    assert all(
        f.off_topic is None for f in flag_responses(SampleSet("s", {0: answers}), embedder=TableEmbedder(table))[0]
    )


def test_diversity_after_filter_by_hand() -> None:
    # prompt 0: bags {cats, purr}, {cats, sleep}, {Yes}; keeping the first two: jaccard 1/3
    #   raw pairs: 1/3, 0, 0 -> 1/9
    # prompt 1: one response passes -> drops out; raw: {dogs, bark} vs {dogs, bark}: 1
    s = SampleSet("base", {0: ("cats purr", "cats sleep", "Yes"), 1: ("dogs bark", "dogs bark")})
    d = diversity_after_filter(s, {0: [True, True, False], 1: [True, False]})
    assert d.jaccard_raw.mean == pytest.approx((1 / 9 + 1) / 2)
    assert d.jaccard_raw_kept.mean == pytest.approx(1 / 9)
    assert d.jaccard_filtered.mean == pytest.approx(1 / 3)
    assert (d.n_prompts, d.n_prompts_kept, d.n_prompts_dropped) == (2, 1, 1)
    assert (d.n_responses, d.n_responses_kept) == (5, 2)
    assert d.embedding_raw is None
    out = d.to_json()
    assert out["jaccard_filtered"] == pytest.approx(1 / 3) and out["embedding_filtered"] is None


def test_filter_quality_shares_and_json() -> None:
    s = SampleSet(
        "base",
        {
            0: ("Yes.", "Cats purr when they are content.", "Cats purr to heal their bones, some say."),
            1: ("", "Dogs bark at strangers to warn their pack.", "la la la la la la la"),
        },
    )
    r = filter_quality(s)
    shares = {name: (est.mean if est is not None else None) for name, est in r.shares.items()}
    assert shares == {
        "empty": pytest.approx(1 / 6),
        "terse": pytest.approx(1 / 6),
        "degenerate": pytest.approx(1 / 6),
        "off_topic": None,
    }
    assert r.passed.mean == pytest.approx(3 / 6)
    assert r.diversity.n_prompts_kept == 1  # prompt 1 keeps one response
    out = r.to_json()
    assert out["flagged"]["off_topic"] is None and out["passed"] == pytest.approx(0.5)
    assert out["diversity"]["n_prompts_dropped"] == 1
