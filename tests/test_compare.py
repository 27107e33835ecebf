"""`lite-align compare`: paired differences B − A over shared prompts, on hand-made and small runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_html_report import build_run, write_prompts
from typer.testing import CliRunner

from lite_align.cli import app
from lite_align.compare import compare_runs, match_prompts, ratio_difference, read_run
from lite_align.data import Sample
from lite_align.errors import RunDirError
from lite_align.metrics.registry import is_embedding_metric, metrics
from lite_align.readers import prompt_set_hash

runner = CliRunner()


def hand_run(root: Path, name: str, prompts: list[str], samples: dict[str, dict[int, list[str]]]) -> Path:
    """A run directory written by hand: manifest, prompts.jsonl and samples/<condition>.jsonl."""
    run = root / name
    (run / "samples").mkdir(parents=True)
    manifest = {"format": "lite_align.run/1", "prompt_set": {"sha256": prompt_set_hash(prompts)}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    write_prompts(run, prompts)
    for cond, by_prompt in samples.items():
        lines = [
            json.dumps(Sample(pid, cond, "m", i, 0, text, 2, "stop", 0.0).to_json())
            for pid, texts in by_prompt.items()
            for i, text in enumerate(texts)
        ]
        (run / "samples" / f"{cond}.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_prompts_are_paired_by_text_not_by_id(tmp_path: Path) -> None:
    # A: 0 "P zero", 1 "P one"; B: 0 "P one", 1 "P two". Only "P one" is shared: A's 1 with B's 0.
    a = hand_run(tmp_path, "a", ["P zero", "P one"], {"base": {0: ["cat dog", "cat bird"], 1: ["red blue"] * 2}})
    b = hand_run(tmp_path, "b", ["P one", "P two"], {"base": {0: ["red blue", "red green"], 1: ["sun moon"] * 2}})
    ra, rb = read_run(a), read_run(b)
    assert match_prompts(ra, rb) == ([(1, 0)], "prompt text")
    doc = compare_runs(ra, rb)
    jac = doc["conditions"]["base"]["diversity"]["jaccard_within"]
    # "P one": Jaccard 1 in A ({red, blue} twice), 1/3 in B ({red, blue} vs {red, green})
    assert (jac["a"], jac["b"], jac["diff"], jac["n"]) == pytest.approx((1.0, 1 / 3, -2 / 3, 1))
    assert jac["ci"] == [None, None]  # one prompt: no interval
    assert doc["n_shared_prompts"] == 1 and doc["matched_by"] == "prompt text"


def test_rates_and_lengths_are_paired_per_prompt(tmp_path: Path) -> None:
    prompts = ["Q1", "Q2"]
    a = hand_run(tmp_path, "a", prompts, {"chat": {0: ["- x\n- y", "plain"], 1: ["one two", "three"]}})
    b = hand_run(tmp_path, "b", prompts, {"chat": {0: ["- x\n- y", "- a\n- b"], 1: ["one two three four", "five"]}})
    div = compare_runs(read_run(a), read_run(b))["conditions"]["chat"]["diversity"]
    # bullet lists: A 1/2 and 0/2, B 2/2 and 0/2 -> per-prompt differences 1/2 and 0
    assert div["bullet_list_rate"]["diff"] == pytest.approx(0.25)
    # lengths: A 1.5 words on Q2 (2 and 1)... B 2.5 (4 and 1); Q1 the same in both (2 and 1 vs 2 and 2)
    assert div["length_mean"]["diff"] == pytest.approx(((2.0 - 1.5) + (2.5 - 1.5)) / 2)
    assert "recover" not in compare_runs(read_run(a), read_run(b))["conditions"]["chat"]  # the teacher itself


def test_a_run_compared_with_itself_differs_by_nothing(tmp_path: Path) -> None:
    run = read_run(build_run(tmp_path))
    doc = compare_runs(run, run)
    assert set(doc["conditions"]) == {"base", "base-greedy", "chat", "chat-greedy", "icl-static"}
    figures = [v for row in doc["conditions"].values() for v in row.get("diversity", {}).values()]
    figures += [
        v for row in doc["conditions"].values() for parts in row.get("recover", {}).values() for v in parts.values()
    ]
    # base, chat, icl-static: every comparable measure without the encoder (the paper's 7, the
    # field's 11); 3 candidates: cross, baseline, ratio
    paired = [m for m in metrics() if m.comparable and not is_embedding_metric(m.key)]
    assert len(paired) == 7 + 11 and len(figures) == 3 * len(paired) + 3 * 3
    for v in figures:
        assert v["diff"] in (0.0, None) and v["ci"] in ([0.0, 0.0], [None, None])
        assert v["a"] == v["b"]
    assert doc["conditions"]["base"]["recover"]["jaccard"]["ratio"]["n"] == 4
    assert "diversity" not in doc["conditions"]["base-greedy"]  # one sample per prompt: nothing within a prompt


def test_differences_agree_with_each_runs_own_results(tmp_path: Path) -> None:
    a_dir, b_dir = build_run(tmp_path, seed=7), build_run(tmp_path, seed=8)
    doc = compare_runs(read_run(a_dir), read_run(b_dir))
    res_a = json.loads((a_dir / "results.json").read_text())
    res_b = json.loads((b_dir / "results.json").read_text())
    for cond in ("base", "chat", "icl-static"):
        for key in ("jaccard_within", "length_mean", "bullet_list_rate"):
            got = doc["conditions"][cond]["diversity"][key]
            assert got["a"] == pytest.approx(res_a["diversity"][cond][key])
            assert got["diff"] == pytest.approx(res_b["diversity"][cond][key] - res_a["diversity"][cond][key])
        if cond != "chat":
            ratio = doc["conditions"][cond]["recover"]["jaccard"]["ratio"]
            ra, rb = res_a["recover"][cond]["jaccard"]["ratio"], res_b["recover"][cond]["jaccard"]["ratio"]
            assert (ratio["a"], ratio["b"], ratio["diff"]) == pytest.approx((ra, rb, rb - ra))
            assert ratio["ci"][0] <= ratio["diff"] <= ratio["ci"][1]
    assert doc["conditions"]["base"]["diversity"]["jaccard_within"]["diff"] != 0  # the seeds do differ


def test_ratio_difference_is_a_paired_bootstrap() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.5, 50)
    cross_a = base * 0.5
    est = ratio_difference(cross_a, base, cross_a + 0.1, base)
    assert est.mean == pytest.approx(float((cross_a + 0.1).sum() / base.sum() - 0.5))
    assert est.lo < est.mean < est.hi and est.n == 50
    same = ratio_difference(cross_a, base, cross_a, base)
    assert (same.mean, same.lo, same.hi) == (0.0, 0.0, 0.0)


def test_without_prompt_texts_prompts_pair_by_id_when_the_set_is_the_same(tmp_path: Path) -> None:
    a = read_run(build_run(tmp_path, seed=7, with_prompts=False))
    b = read_run(build_run(tmp_path, seed=8, with_prompts=False))
    pairs, how = match_prompts(a, b)
    assert pairs == [(0, 0), (1, 1), (2, 2), (3, 3)] and how.startswith("prompt id (no prompt texts recorded")
    other = read_run(build_run(tmp_path, seed=9, with_prompts=False, prompts=("X?", "Y?")))
    with pytest.raises(RunDirError, match="cannot match the prompts of .* their prompt sets differ"):
        compare_runs(a, other)


def test_runs_with_no_shared_prompt_are_refused(tmp_path: Path) -> None:
    a = hand_run(tmp_path, "a", ["P"], {"base": {0: ["x y", "x z"]}})
    b = hand_run(tmp_path, "b", ["Q"], {"base": {0: ["x y", "x z"]}})
    with pytest.raises(RunDirError, match="share no prompt"):
        compare_runs(read_run(a), read_run(b))


def test_compare_command(tmp_path: Path) -> None:
    a, b = build_run(tmp_path, seed=7), build_run(tmp_path, seed=8)
    res = runner.invoke(app, ["compare", str(a), str(b), "--json"])
    assert res.exit_code == 0, res.output
    doc: dict[str, Any] = json.loads(res.stdout)
    assert doc["a"]["path"] == str(a) and doc["n_shared_prompts"] == 4
    res = runner.invoke(app, ["compare", str(a), str(b)], env={"COLUMNS": "160"})
    assert res.exit_code == 0 and "B − A [95% CI]" in res.stdout and "word-bag Jaccard within prompt" in res.stdout


def test_with_an_encoder_every_measure_is_paired_and_agrees_with_each_runs_figures(tmp_path: Path) -> None:
    """Issue 14: compare gives paired differences for every measure, those on sentence vectors too
    when an encoder is given; each side's mean is that run's own figure from the same encoder."""
    from test_embedding_metrics import WordLengthEmbedder

    from lite_align.analysis import analyse

    a, b = read_run(build_run(tmp_path, seed=7)), read_run(build_run(tmp_path, seed=8))
    enc = WordLengthEmbedder(tmp_path / "vectors")
    doc = compare_runs(a, b, embedder=enc)
    div = doc["conditions"]["base"]["diversity"]
    assert {m.key for m in metrics() if m.comparable} <= set(div)
    embedding_keys = [m.key for m in metrics() if m.comparable and is_embedding_metric(m.key)]
    assert {"embedding_diversity", "vendi_embedding", "distinct_classes_embedding"} <= set(embedding_keys)
    own_a = analyse(a.sets, embedder=enc).to_json()["diversity"]["base"]
    own_b = analyse(b.sets, embedder=enc).to_json()["diversity"]["base"]
    for key in embedding_keys:
        assert div[key]["a"] == pytest.approx(own_a[key]) and div[key]["b"] == pytest.approx(own_b[key])
        assert div[key]["diff"] == pytest.approx(own_b[key] - own_a[key])
    assert "embedding measures" in doc["note"]
    assert not any(k in compare_runs(a, b)["conditions"]["base"]["diversity"] for k in embedding_keys)


def test_compare_command_with_embeddings_uses_the_real_encoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITE_ALIGN_CACHE", str(tmp_path / "cache"))
    a, b = build_run(tmp_path, seed=7), build_run(tmp_path, seed=8)
    res = runner.invoke(app, ["compare", str(a), str(b), "--embeddings", "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)["conditions"]["base"]["diversity"]
    assert row["vendi_embedding"]["n"] == 4 and row["vendi_embedding"]["ci"][0] <= row["vendi_embedding"]["diff"]
    assert 1.0 <= row["vendi_embedding"]["a"] <= 3.0  # at most the number of samples
    res = runner.invoke(app, ["compare", str(a), str(b), "--embedder", "no-such-embedder"])
    assert res.exit_code == 2 and "no-such-embedder" in res.output and "Traceback" not in res.output


def test_compare_command_on_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    a = build_run(tmp_path)
    res = runner.invoke(app, ["compare", str(a), str(tmp_path / "nothing")])
    assert res.exit_code == 2
    assert "is not a lite_align run directory (no manifest.json)" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
