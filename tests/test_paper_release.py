"""Every value of REFERENCE.md's within-prompt table, reproduced from the paper's released outputs.

The release is shared data (real outputs of real models): $LITE_ALIGN_PAPER_RELEASE, or
shared/data/paper-release beside the repository. If it is missing these tests fail, never skip.
The expected values are read from REFERENCE.md itself, so the table and the test cannot drift.
"""

from __future__ import annotations

import pytest
from release import reference_tables, release_dir

from lite_align.metrics.lexical import diversity
from lite_align.readers import check_aligned, read_instances, read_samples

JACCARD_TOL = 0.005
LENGTH_REL_TOL = 0.02
RATE_TOL = 0.005


WITHIN = reference_tables("Within-prompt metrics")[0]


def test_the_reference_table_is_the_one_we_expect() -> None:
    assert [row["outputs"] for row in WITHIN] == [
        "llama-2-base",
        "mistral",
        "mistral-instruct",
        "gpt-3.5-turbo",
        "llama-2-icl-gpt-3.5-rand",
        "llama-2-icl-gpt-3.5-knn-prompt_similar",
    ]


@pytest.mark.parametrize("row", WITHIN, ids=[row["outputs"] for row in WITHIN])
def test_within_prompt_metrics_match_reference(row: dict[str, str]) -> None:
    root = release_dir() / "ConflictingQA"
    [samples] = read_samples(root / "outputs" / row["outputs"])
    check_aligned([samples], len(read_instances(root / "instances" / "data.jsonl")))
    got = diversity(samples)
    assert got.label == row["outputs"]
    assert got.n_prompts == int(row["prompts"])
    assert got.n_responses == int(row["responses"])
    assert got.n_failed == 0
    assert got.jaccard_within.mean == pytest.approx(float(row["within-prompt Jaccard"]), abs=JACCARD_TOL)
    assert got.length_mean.mean == pytest.approx(float(row["length"]), rel=LENGTH_REL_TOL)
    assert got.abstain_rate.mean == pytest.approx(float(row["abstain"]), abs=RATE_TOL)
    assert got.numbered_list_rate.mean == pytest.approx(float(row["numbered list"]), abs=RATE_TOL)
    assert got.bullet_list_rate.mean == pytest.approx(float(row["bullet list"]), abs=RATE_TOL)
    assert got.distinct_prefix_fraction.mean == pytest.approx(float(row["distinct 20-char prefixes"]), abs=RATE_TOL)
    # every interval brackets its estimate
    for est in (got.jaccard_within, got.length_mean, got.numbered_list_rate, got.distinct_prefix_fraction):
        assert est.lo <= est.mean <= est.hi
