"""Issue 14's measures wired in through the metric registry: `diversity --json` on the paper's
release, `compare`'s paired differences, and the agreement table (the measures' own values are
checked against their reference implementations in test_measures_reference.py)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
from release import conflictingqa
from test_cli import run_cli

from lite_align.analysis import diversity_rows
from lite_align.compare import ReportInput, compare_runs
from lite_align.data import SampleSet
from lite_align.metrics.measures import measure_set, paired_differences
from lite_align.metrics.registry import family_of, metrics

TEXT_KEYS = [m.key for m in family_of("vendi_ngram").metrics]


@pytest.fixture(scope="module")
def release_doc() -> dict[str, dict[str, object]]:
    """`diversity --json` over one chat and one base file of the release (2,170 answers each)."""
    outputs = conflictingqa() / "outputs"
    res = run_cli("diversity", str(outputs / "gpt-3.5-turbo"), str(outputs / "llama-2-base"), "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    doc: dict[str, dict[str, object]] = json.loads(res.stdout)
    return {str(row["label"]): row for row in doc.values()}


def test_diversity_json_on_the_release_has_every_measure_in_range(release_doc: dict[str, dict]) -> None:
    for name, row in release_doc.items():
        before = list(row)[: list(row).index("failed_reasons") + 1]
        assert before[:2] == ["label", "jaccard_within"] and "vendi_ngram" not in before  # today's keys first
        for key in TEXT_KEYS:
            value = row[key]
            assert isinstance(value, float) and math.isfinite(value), (name, key)
            if key != "ead_across_prompts":
                lo, hi = row["ci"][key]
                assert lo <= value <= hi, (name, key)
        assert 1.0 <= row["vendi_ngram"] <= 5.0 and 0.2 <= row["vendi_ngram_relative"] <= 1.0  # 5 samples
        assert 1.0 <= row["distinct_classes"] <= 5.0 and 0.0 <= row["semantic_entropy"] <= math.log(5)
        assert 0.0 < row["ead"] <= 1.5 and row["compression_ratio_xz"] >= 1.0 and row["compression_ratio_gzip"] >= 1.0
        assert 0.0 <= row["homogenization_rougel"] <= 1.0 and 0.0 <= row["self_bleu"] <= 1.0
        assert 0.0 < row["ngram_diversity"] <= 4.0 and row["self_repetition"] >= 0.0
        assert (row["ead_vocab_size"], row["ead_vocab_size_known"]) == (32000, False)  # released: model unknown
    base, chat = release_doc["llama-2-base"], release_doc["gpt-3.5-turbo"]
    # the paper's finding, told by every new measure: the base model's answers are more diverse
    for m in metrics():
        if m.key in TEXT_KEYS and m.direction and m.key != "ead_across_prompts":
            assert m.direction * (base[m.key] - chat[m.key]) > 0, m.key


def test_the_agreement_table_of_a_release_file(release_doc: dict[str, dict]) -> None:
    table = release_doc["llama-2-base"]["agreement"]
    keys = table["keys"]
    assert keys[:2] == ["jaccard_within", "distinct_prefix_fraction"] and "semantic_entropy" in keys
    assert not any(k.endswith("_relative") for k in keys) and "ead_across_prompts" not in keys
    rho = table["rho"]
    assert all(rho[i][i] == 1.0 for i in range(len(keys)))
    assert all(rho[i][j] == rho[j][i] for i in range(len(keys)) for j in range(len(keys)))
    assert table["n_prompts"] == 434 and table["n"][0][0] == 434
    # oriented: word-bag Jaccard (lower = more diverse) and Self-BLEU (the same) agree positively
    assert rho[keys.index("jaccard_within")][keys.index("self_bleu")] > 0.5


def _input(sets: dict[str, SampleSet], prompts: dict[int, str]) -> ReportInput:
    results = {"diversity": {n: r.to_json() for n, r in diversity_rows(sets, None).items()}}
    return ReportInput("x", {}, results, sets, prompts)


def test_compare_gives_paired_differences_of_every_field_measure() -> None:
    """compare's figures are the registry's per-prompt values paired over matched prompts: the same
    as metrics.measures.paired_differences computes from measure_set directly."""
    a = SampleSet(
        "base", {0: ("a cat sat", "a dog ran", "a cat ran"), 1: ("yes", "no", "maybe so"), 2: ("x y", "x y", "z")}
    )
    b = SampleSet("base", {5: ("a cat sat",) * 3, 6: ("yes", "yes", "no"), 7: ("x y z", "u v", "w")})
    prompts_a, prompts_b = {0: "Q0", 1: "Q1", 2: "Q2"}, {5: "Q0", 6: "Q1", 7: "Q2"}
    doc = compare_runs(_input({"base": a}, prompts_a), _input({"base": b}, prompts_b))
    got = doc["conditions"]["base"]["diversity"]
    pairs = [(0, 5), (1, 6), (2, 7)]
    want = paired_differences(measure_set(a), measure_set(b), pairs)
    for key in [k for k in TEXT_KEYS if k != "ead_across_prompts"]:
        assert got[key]["diff"] == pytest.approx(want[key]["diff"]), key
        assert got[key]["ci"] == pytest.approx(want[key]["ci"]) and got[key]["n"] == want[key]["n"], key
    assert got["distinct_classes"]["diff"] < 0  # B repeats itself more
    assert "ead_across_prompts" not in got  # one figure per set: nothing to pair


def test_terminal_diversity_shows_the_measures_not_the_vocabulary_as_one(tmp_path: Path) -> None:
    samples = tmp_path / "s.jsonl"
    rows = [
        {"prompt_id": p, "sample_index": i, "text": t, "finish_reason": "stop"}
        for p, ts in enumerate([["a b", "a c"], ["d", "e f"]])
        for i, t in enumerate(ts)
    ]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res: subprocess.CompletedProcess[str] = run_cli("diversity", str(samples), env={"COLUMNS": "200"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Vendi score (n-gram) ↑" in res.stdout and "EAD vocabulary 32000 (default)" in res.stdout
    assert "ead vocab size" not in res.stdout
