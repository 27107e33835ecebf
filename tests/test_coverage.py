"""Information aggregation: single-answer coverage by word bags and by sentence embeddings."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from lite_align.data import SampleSet
from lite_align.metrics.coverage import (
    DEFAULT_THRESHOLD,
    coverage,
    embedding_coverage,
    sentence_units,
    wordbag_coverage,
)


class TableEmbedder:
    """Sentence vectors looked up in a table (unit rows), so coverage is worked out by hand."""

    def __init__(self, table: dict[str, Sequence[float]]) -> None:
        self.table = table
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([self.table[t] for t in texts], dtype=np.float32)


def sets(base: dict[int, tuple[str, ...]], aligned: dict[int, tuple[str, ...]]) -> tuple[SampleSet, SampleSet]:
    return SampleSet("base", base), SampleSet("aligned", aligned)


def test_sentence_units_split_punkt_sentences_and_lines() -> None:
    assert sentence_units("Dr. Smith agrees. So do I!\n\n1. First point\n2. Second.") == [
        "Dr. Smith agrees.",
        "So do I!",
        "First point",  # Punkt splits off the list number "1.", which holds no letter
        "Second.",
    ]
    assert sentence_units("  \n ---\n 42.") == []


def test_wordbag_coverage_by_hand() -> None:
    assert wordbag_coverage(frozenset({"a", "b", "x"}), frozenset({"a", "b", "c", "d"})) == 0.5
    assert math.isnan(wordbag_coverage(frozenset({"a"}), frozenset()))


def test_embedding_coverage_counts_target_sentences_with_a_close_match() -> None:
    target = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    answer = np.array([[1.0, 0.0]])  # cosines with the targets: 1.0, 0.0, 0.6
    assert embedding_coverage(answer, target, 0.7) == pytest.approx(1 / 3)
    assert embedding_coverage(answer, target, 0.6) == pytest.approx(2 / 3)
    assert embedding_coverage(np.zeros((0, 2)), target) == 0.0
    assert math.isnan(embedding_coverage(answer, np.zeros((0, 2))))


def test_wordbag_leave_one_out_and_inclusive_by_hand() -> None:
    # prompt 0: each base answer says one thing, the aligned answer says all three.
    #   leave-one-out: base b_i covers none of the others' words (0); aligned covers all (1).
    #   inclusive: each base answer covers its own 2 of 6 words (1/3); aligned 1.
    # prompt 1: bags {red, apple}, {red, cherry}; aligned {apple, pie}.
    #   i=0: target {red, cherry}: base 1/2, aligned 0;  i=1: target {red, apple}: base 1/2, aligned 1/2.
    #   inclusive: union {red, apple, cherry}: base 2/3 each, aligned 1/3.
    base, aligned = sets(
        {0: ("cats purr", "dogs bark", "birds sing"), 1: ("red apple", "red cherry")},
        {0: ("cats purr dogs bark birds sing",), 1: ("apple pie",)},
    )
    result = coverage(base, aligned)
    assert result.n_prompts == 2 and result.n_skipped == 0
    assert result.per_prompt["wordbag_aligned"].tolist() == [1.0, 0.25]
    assert result.per_prompt["wordbag_base"].tolist() == [0.0, 0.5]
    w = result.wordbag
    assert w.aligned_single.mean == pytest.approx(0.625)
    assert w.base_single.mean == pytest.approx(0.25)
    assert w.gain.mean == pytest.approx(0.375)
    assert w.inclusive_aligned.mean == pytest.approx((1 + 1 / 3) / 2)
    assert w.inclusive_base.mean == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert result.embedding is None


def test_prompts_without_a_pair_of_base_answers_are_skipped() -> None:
    base, aligned = sets(
        {0: ("one answer",), 1: ("red apple", "red cherry"), 2: ("not aligned", "at all")},
        {0: ("x",), 1: ("apple",), 3: ("only aligned",)},
    )
    result = coverage(base, aligned)
    assert result.prompt_ids == (1,)
    assert result.n_skipped == 1  # prompt 0; prompts 2 and 3 are not shared
    assert result.wordbag.aligned_single.mean == pytest.approx(
        0.25
    )  # 0 against {red, cherry}, 1/2 against {red, apple}


def test_embedding_coverage_by_hand_with_leave_one_out_targets() -> None:
    table = {
        "Cats purr.": [1, 0, 0],
        "Dogs bark.": [0, 1, 0],
        "Birds sing.": [0, 0, 1],
        "Felines purr.": [0.8, 0.6, 0],  # cosine 0.8 with "Cats purr.", 0.6 with "Dogs bark."
    }
    embedder = TableEmbedder(table)
    base, aligned = sets(
        {0: ("Cats purr.", "Dogs bark. Birds sing.")},
        {0: ("Felines purr. Birds sing.",)},
    )
    result = coverage(base, aligned, embedder=embedder)
    assert result.embedding is not None
    # i=0: target [Dogs bark., Birds sing.]: base (Cats purr.) covers 0; aligned covers Birds sing.: 1/2
    # i=1: target [Cats purr.]: base covers 0; aligned covers it (0.8 >= 0.7): 1
    assert result.embedding.base_single.mean == pytest.approx(0.0)
    assert result.embedding.aligned_single.mean == pytest.approx(0.75)
    # inclusive: all three base sentences; aligned covers Cats (0.8) and Birds: 2/3; base answers 1/3 and 2/3
    assert result.embedding.inclusive_aligned.mean == pytest.approx(2 / 3)
    assert result.embedding.inclusive_base.mean == pytest.approx(0.5)
    # a stricter threshold: "Felines purr." no longer matches "Cats purr."
    strict = coverage(base, aligned, embedder=embedder, threshold=0.85)
    assert strict.embedding is not None and strict.embedding.aligned_single.mean == pytest.approx(0.25)
    # every distinct sentence is embedded once per call, not once per comparison
    assert all(len(call) == len(set(call)) for call in embedder.calls)


def test_to_json_has_the_documented_keys() -> None:
    base, aligned = sets({0: ("cats purr", "dogs bark")}, {0: ("cats purr dogs bark",)})
    out = coverage(base, aligned).to_json()
    assert out["threshold"] == DEFAULT_THRESHOLD and out["n_prompts"] == 1
    assert out["wordbag"]["aligned_single"] == 1.0 and out["wordbag"]["base_single"] == 0.0
    assert set(out["wordbag"]["ci"]) == {"aligned_single", "base_single", "gain"}
    assert out["embedding"] is None
