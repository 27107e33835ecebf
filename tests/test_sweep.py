"""Machine settings through the CLI on the tiny GGUFs: `bench --sweep --json` (its document and
its choice against the fixed 1 thread x 16 sequences), `bench` with auto settings, what `run`
records of its threads and batch, and bad values as one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli import assert_one_line_error, run_cli, tiny_args


def test_sweep_json_shape_and_the_choice_is_never_below_the_fixed_setting(tiny_base_gguf: Path, tmp_path: Path) -> None:
    env = {"LITE_ALIGN_CACHE": str(tmp_path / "cache")}
    res = run_cli(
        "bench", "--model", str(tiny_base_gguf), "--sweep", "--json", "--threads", "1,2", "--batch", "2,5",
        "--prompts", "2", "--samples", "3", "--max-tokens", "4", "--conditions", "zero-shot,icl-static",
        env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout)
    assert doc["format"] == "lite_align.sweep/1" and doc["gpu_offload"] in (True, False)
    assert doc["baseline"] == {"threads": 1, "sequences": 16}
    assert doc["settings"]["threads"] == [1, 2] and doc["settings"]["sequences"] == [2, 5, 16]
    assert set(doc["machine"]) >= {"logical", "usable", "physical", "threads"}
    cells = {(c["threads"], c["sequences"], c["gpu_layers"]): c for c in doc["cells"]}
    assert set(cells) == {(t, n, 0) for t in (1, 2) for n in (2, 5, 16)}
    for cell in cells.values():
        for cond in ("zero-shot", "icl-static"):
            row = cell["conditions"][cond]
            for key in ("naive_tokens_per_s", "engine_tokens_per_s", "limit_tokens_per_s", "share_of_limit"):
                assert isinstance(row[key], float) and row[key] > 0, (cell["threads"], cell["sequences"], key)
    # naive does not batch: one measurement per thread count, shown in each of its cells
    assert len({cells[(1, n, 0)]["conditions"]["zero-shot"]["naive_tokens_per_s"] for n in (2, 5, 16)}) == 1
    auto = doc["auto"]
    chosen = cells[(auto["threads"], auto["sequences"], auto["gpu_layers"])]
    fixed = cells[(1, 16, auto["gpu_layers"])]
    for cond in ("zero-shot", "icl-static"):
        assert chosen["conditions"][cond]["engine_tokens_per_s"] >= fixed["conditions"][cond]["engine_tokens_per_s"]
        summary = doc["chosen_by_gpu_layers"][str(auto["gpu_layers"])]["conditions"][cond]
        assert summary["vs_baseline"] >= 1.0
    res = run_cli(
        "bench", "--model", str(tiny_base_gguf), "--sweep", "--threads", "1", "--batch", "2",
        "--prompts", "1", "--samples", "2", "--max-tokens", "2", "--conditions", "zero-shot", "--no-naive",
        env={**env, "COLUMNS": "100"},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "◀ auto" in res.stdout and "(fixed before)" in res.stdout and "auto picks" in res.stdout


def test_bench_with_auto_settings_says_which(tiny_base_gguf: Path, tmp_path: Path) -> None:
    env = {"LITE_ALIGN_CACHE": str(tmp_path / "cache")}
    args = ["bench", "--model", str(tiny_base_gguf), "--json", "--prompts", "2", "--samples", "2"]
    res = run_cli(*args, "--max-tokens", "4", "--conditions", "zero-shot", "--no-naive", env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout)
    st = doc["settings"]
    assert st["chosen_by"] == "calibrated" and st["n_threads"] >= 1 and st["max_sequences"] >= 1
    assert "calibrating" in res.stderr and (tmp_path / "cache" / "tuning.json").is_file()
    res = run_cli(*args, "--max-tokens", "4", "--conditions", "zero-shot", "--no-naive", env=env)
    assert json.loads(res.stdout)["settings"]["chosen_by"] == "cached" and "calibrating" not in res.stderr


def test_run_records_threads_and_batch(tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    env = {"LITE_ALIGN_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "run"
    args = tiny_args(tiny_base_gguf, tiny_chat_gguf, out, "--limit", "2", "--samples", "2", "--max-tokens", "4")
    res = run_cli(*args, "--conditions", "base", "--batch", "3", env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    engine = json.loads((out / "manifest.json").read_text())["engine"]
    assert set(engine) == {"base", "chat"}
    for role, name in (("base", "tiny-base"), ("chat", "tiny-chat")):
        e = engine[role]
        assert e["model"] == name and e["sequences"] == 3 and e["threads"] >= 1 and e["gpu_layers"] == 0
        assert e["source"] == "calibrated" and e["memory_budget_mb"] > 0
    assert "engine" in res.stdout and "× 3 sequences" in res.stdout  # the report header
    given = tmp_path / "given"
    res = run_cli(
        *tiny_args(tiny_base_gguf, tiny_chat_gguf, given, "--limit", "1", "--samples", "2", "--max-tokens", "4"),
        "--conditions", "base", "--threads", "1", "--batch", "4", "--gpu-layers", "0", "--max-memory", "2G", env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    e = json.loads((given / "manifest.json").read_text())["engine"]["base"]
    assert (e["threads"], e["sequences"], e["source"], e["memory_budget_mb"]) == (1, 4, "given", 2048)
    md = run_cli("report", str(given), "--format", "markdown", env=env)
    assert "**engine**: base tiny-base: 1 thread × 4 sequences at " in md.stdout and "cells (as given)" in md.stdout


def test_run_records_each_phases_context_and_live_sequences(
    tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path
) -> None:
    """The chat model serves two phases (the teacher and the summaries) at different contexts, and
    the memory budget caps each: the manifest keeps what every phase ran with (not only the
    chosen number), and the report header shows it."""
    env = {"LITE_ALIGN_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "run"
    args = tiny_args(tiny_base_gguf, tiny_chat_gguf, out, "--limit", "2", "--samples", "2", "--max-tokens", "4")
    res = run_cli(
        *args, "--conditions", "base,icl-summary", "--threads", "1", "--batch", "200", "--max-memory", "80M", env=env
    )
    assert res.returncode == 0, res.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    engine = manifest["engine"]
    chat, base = engine["chat"]["phases"], engine["base"]["phases"]
    assert set(chat) == {"teacher", "summarizer"} and set(base) == {"base"}
    assert set(manifest["engine_timings"]) == {f"{p}:{e['model']}" for e in engine.values() for p in e["phases"]}
    assert all(ran["cells"] % 256 == 0 for ran in (*chat.values(), *base.values()))
    assert chat["summarizer"]["cells"] > chat["teacher"]["cells"]  # a summary request holds an answer
    # the 80 MB budget leaves the short teacher context all 200, the longer ones fewer
    assert chat["teacher"]["sequences"] == 200 and 1 <= chat["summarizer"]["sequences"] < 200
    assert 1 <= base["base"]["sequences"] < 200
    md = run_cli("report", str(out), "--format", "markdown", env=env).stdout
    t, s, b = chat["teacher"], chat["summarizer"], base["base"]
    assert (
        f"chat tiny-chat: 1 thread × {t['sequences']} sequences at {t['cells']:,} cells (teacher), "
        f"{s['sequences']} at {s['cells']:,} (summarizer), memory-capped from 200 (as given)"
    ) in md
    assert f"base tiny-base: 1 thread × {b['sequences']} sequences at {b['cells']:,} cells, memory-capped" in md


def test_bad_machine_options_are_one_line_errors(tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    run = tiny_args(tiny_base_gguf, tiny_chat_gguf, tmp_path / "o", "--limit", "1")
    assert_one_line_error(run_cli(*run, "--threads", "two"), "--threads: give auto or a whole number")
    assert_one_line_error(run_cli(*run, "--threads", "0"), "--threads must be at least 1, got 0")
    assert_one_line_error(run_cli(*run, "--batch", "many"), "--batch: give auto or a whole number")
    assert_one_line_error(run_cli(*run, "--gpu-layers", "all"), "--gpu-layers: give auto")
    assert_one_line_error(run_cli(*run, "--max-memory", "12"), "--max-memory: give a size such as 6G")
    bench = ["bench", "--model", str(tiny_base_gguf), "--sweep"]
    assert_one_line_error(run_cli(*bench, "--threads", "1,x"), "--threads: give auto or comma-separated")
    assert_one_line_error(run_cli(*bench, "--conditions", "chat"), "--conditions: give icl-static and/or zero-shot")
    assert_one_line_error(run_cli("bench", "--model", str(tiny_base_gguf), "--threads", "-1"), "--threads")
