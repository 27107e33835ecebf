"""Every figure of the reference within-prompt table (tests/data/paper_reference.json), reproduced
from the paper's released outputs; and the released files the tests read are the paper's own.

The release is found as tests/release.py says ($LITE_ALIGN_PAPER_RELEASE, else the folder
`lite-align release fetch` fills); where it is absent these tests skip with the fix (fail in CI).
"""

from __future__ import annotations

import hashlib

import pytest
from needs import unavailable
from release import conflictingqa, reference, reference_rows, release_dir

from lite_align.metrics.lexical import diversity
from lite_align.readers import check_aligned, read_instances, read_samples

JACCARD_TOL = 0.005
LENGTH_REL_TOL = 0.02
RATE_TOL = 0.005


WITHIN = reference_rows("within_prompt")


def test_the_reference_table_is_the_one_we_expect() -> None:
    assert [row["set"] for row in WITHIN] == [
        "llama-2-base",
        "mistral",
        "mistral-instruct",
        "gpt-3.5-turbo",
        "llama-2-icl-gpt-3.5-rand",
        "llama-2-icl-gpt-3.5-knn-prompt_similar",
    ]
    assert reference()["tolerances"] == {
        "jaccard": JACCARD_TOL,
        "length_relative": LENGTH_REL_TOL,
        "rate": RATE_TOL,
        "share": 0.0005,
    }


@pytest.mark.parametrize("row", WITHIN, ids=[row["set"] for row in WITHIN])
def test_within_prompt_metrics_match_reference(row: dict[str, float]) -> None:
    root = conflictingqa()
    [samples] = read_samples(root / "outputs" / str(row["set"]))
    check_aligned([samples], len(read_instances(root / "instances" / "data.jsonl")))
    got = diversity(samples)
    assert got.label == row["set"]
    assert got.n_prompts == row["prompts"]
    assert got.n_responses == row["responses"]
    assert got.n_failed == 0
    assert got.jaccard_within.mean == pytest.approx(row["jaccard_within"], abs=JACCARD_TOL)
    assert got.length_mean.mean == pytest.approx(row["length_mean"], rel=LENGTH_REL_TOL)
    assert got.abstain_rate.mean == pytest.approx(row["abstain_rate"], abs=RATE_TOL)
    assert got.numbered_list_rate.mean == pytest.approx(row["numbered_list_rate"], abs=RATE_TOL)
    assert got.bullet_list_rate.mean == pytest.approx(row["bullet_list_rate"], abs=RATE_TOL)
    assert got.distinct_prefix_fraction.mean == pytest.approx(row["distinct_prefix_fraction"], abs=RATE_TOL)
    # every interval brackets its estimate
    for est in (got.jaccard_within, got.length_mean, got.numbered_list_rate, got.distinct_prefix_fraction):
        assert est.lo <= est.mean <= est.hi


@pytest.mark.parametrize("rel", sorted(reference()["sha256"]))
def test_the_released_files_are_the_papers(rel: str) -> None:
    """The files the tests read hold exactly what the paper's release (commit 43ad981) holds,
    whether fetched by `lite-align release fetch` or copied by hand."""
    path = release_dir() / rel
    assert path.is_file(), f"{path} is missing from the release"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == reference()["sha256"][rel]


def test_reference_figures_equal_a_reference_page_beside_the_release() -> None:
    """Where the release copy carries the reference page these figures came from (REFERENCE.md, in
    the project's shared copy only), every figure here is the page's: the copy cannot drift."""
    page = release_dir() / "REFERENCE.md"
    if not page.is_file():
        unavailable(
            f"no REFERENCE.md beside the release in {release_dir()}",
            "point LITE_ALIGN_PAPER_RELEASE at a copy that holds it to compare the reference figures",
        )
    text = page.read_text(encoding="utf-8")
    tables = [[line for line in block.splitlines() if line.startswith("|")] for block in text.split("\n\n")]
    numbers = sorted(
        float(cell)
        for table in tables
        for line in table[2:]
        for cell in (c.strip() for c in line.strip().strip("|").split("|"))
        if cell.replace(".", "", 1).isdigit()
    )
    ours = sorted(
        float(v)
        for name in ("within_prompt", "cross_sampled", "cross_greedy", "stance")
        for row in reference_rows(name)
        for k, v in row.items()
        if k != "set"
    )
    assert ours == numbers
