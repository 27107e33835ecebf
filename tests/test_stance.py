"""lite_align.metrics.stance: hand cases, then the reference stance table (tests/data/paper_reference.json)
from the paper's judge files."""

from __future__ import annotations

import pytest
from release import conflictingqa, reference_rows

from lite_align.errors import SamplesFileError
from lite_align.metrics.stance import stance_summary
from lite_align.readers import read_stance_labels

SHARE_TOL = 0.0005  # the reference gives shares to 3 decimals


def test_stance_summary_by_hand() -> None:
    labels = [
        *["yes", "no", "yes"],  # prompt 0: both a yes and a no
        *["both", "yes", None],  # prompt 1: a both; one unparsed answer
        *["maybe", "no", "no"],  # prompt 2: an unknown label counts as other
    ]
    r = stance_summary(labels, 3)
    assert (r.n_prompts, r.n_labelled, r.n_unparsed) == (3, 8, 1)
    assert r.yes.mean == pytest.approx(3 / 8)
    assert r.no.mean == pytest.approx(3 / 8)
    assert r.both.mean == pytest.approx(1 / 8)
    assert r.other.mean == pytest.approx(1 / 8)
    assert r.prompts_with_yes_and_no.mean == pytest.approx(1 / 3)
    assert r.prompts_with_both.mean == pytest.approx(1 / 3)
    out = r.to_json()
    assert out["yes"] == pytest.approx(3 / 8) and out["n_unparsed"] == 1
    assert set(out["ci"]) == {"yes", "no", "both", "other", "prompts_with_yes_and_no", "prompts_with_both"}


def test_labels_that_do_not_split_into_prompts_are_an_error() -> None:
    with pytest.raises(SamplesFileError) as exc:
        stance_summary(["yes"] * 7, 5, source="judge.jsonl")
    message = str(exc.value)
    assert "judge.jsonl" in message and "7 labels" in message and "5" in message


TABLE = reference_rows("stance")


@pytest.mark.parametrize("row", TABLE, ids=[r["set"] for r in TABLE])
def test_stance_table_matches_reference(row: dict[str, float]) -> None:
    path = conflictingqa() / "eval-stance" / str(row["set"]) / "samples.jsonl"
    r = stance_summary(read_stance_labels(path), 5, source=str(path))
    assert r.n_labelled == row["labelled"] and r.n_unparsed == 0 and r.n_prompts == 434 and r.n_failed == 0
    for got, column in [
        (r.yes, "yes"),
        (r.no, "no"),
        (r.both, "both"),
        (r.other, "other"),
        (r.prompts_with_yes_and_no, "prompts_with_yes_and_no"),
        (r.prompts_with_both, "prompts_with_both"),
    ]:
        assert got.mean == pytest.approx(row[column], abs=SHARE_TOL), column


def test_the_table_has_both_judged_models() -> None:
    assert [r["set"] for r in TABLE] == ["llama-2-base", "gpt-3.5-turbo"]
