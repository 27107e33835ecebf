"""lite_align.metrics.stance: hand cases, then REFERENCE.md's stance table from the judge's files."""

from __future__ import annotations

import pytest
from release import release_dir

from lite_align.errors import SamplesFileError
from lite_align.metrics.stance import stance_summary
from lite_align.readers import read_stance_labels

SHARE_TOL = 0.0005  # REFERENCE.md prints shares to 3 decimals


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


def stance_table() -> list[dict[str, str]]:
    text = (release_dir() / "REFERENCE.md").read_text(encoding="utf-8")
    section = next(s for s in text.split("\n## ") if s.startswith("Stance labels"))
    lines = [line for line in section.splitlines() if line.startswith("|")]

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    return [dict(zip(cells(lines[0]), cells(row), strict=True)) for row in lines[2:]]


TABLE = stance_table()


@pytest.mark.parametrize("row", TABLE, ids=[r["outputs judged"] for r in TABLE])
def test_stance_table_matches_reference(row: dict[str, str]) -> None:
    path = release_dir() / "ConflictingQA" / "eval-stance" / row["outputs judged"] / "samples.jsonl"
    r = stance_summary(read_stance_labels(path), 5, source=str(path))
    assert r.n_labelled == int(row["labelled"]) and r.n_unparsed == 0 and r.n_prompts == 434
    for got, column in [
        (r.yes, "yes"),
        (r.no, "no"),
        (r.both, "both"),
        (r.other, "other"),
        (r.prompts_with_yes_and_no, "prompts with both a yes and a no"),
        (r.prompts_with_both, "prompts with any 'both'"),
    ]:
        assert got.mean == pytest.approx(float(row[column]), abs=SHARE_TOL), column


def test_the_table_has_both_judged_models() -> None:
    assert [r["outputs judged"] for r in TABLE] == ["llama-2-base", "gpt-3.5-turbo"]
