"""`lite-align` end to end on the tiny generated GGUFs: output contract, reproducibility,
interruption (SIGKILL, SIGINT) and resume, and every bad input's one-line error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sigint import ctrl_c_as_usual
from test_measures import CONTRACT_KEYS

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "lite_align.cli"]


def run_cli(
    *args: str, cwd: Path = ROOT, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "120", **(env or {})}
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)


def tiny_args(base: Path, chat: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--base", str(base), "--chat", str(chat), "--out", str(out), *extra]


def records(run_dir: Path) -> dict[str, list[dict[str, object]]]:
    return {
        f.stem: [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines()]
        for f in sorted((run_dir / "samples").glob("*.jsonl"))
    }


def without_seconds(recs: dict[str, list[dict[str, object]]]) -> dict[str, list[dict[str, object]]]:
    """Everything a sample holds but its wall time, which no two runs share."""
    return {
        k: sorted(
            ({kk: vv for kk, vv in r.items() if kk != "seconds"} for r in v),
            key=lambda r: (r["prompt_id"], r["sample_index"]),
        )
        for k, v in recs.items()
    }


@pytest.fixture(scope="module")
def tiny_run(
    tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("cli") / "run"
    res = run_cli(
        *tiny_args(
            tiny_base_gguf, tiny_chat_gguf, out, "--limit", "3", "--samples", "3", "--max-tokens", "12", "--json"
        )
    )
    return res, out


def test_run_json_contract(tiny_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    res, out = tiny_run
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout)  # stdout holds one JSON document and nothing else
    for cond in ("base", "chat"):
        row = doc["diversity"][cond]
        for key in (
            "jaccard_within",
            "length_mean",
            "abstain_rate",
            "numbered_list_rate",
            "bullet_list_rate",
            "distinct_prefix_fraction",
            "embedding_diversity",
            "n_prompts",
            "n_responses",
        ):
            assert isinstance(row[key], (int, float)), (cond, key)
        assert row["n_prompts"] == 3 and row["n_responses"] == 9
    for cond in ("base", "icl-static", "icl-random", "icl-knn", "icl-summary", "base-greedy"):
        for sim in ("jaccard", "embedding", "bertscore"):
            cell = doc["recover"][cond][sim]
            assert set(cell) >= {"cross", "baseline", "ratio", "ratio_ci"}, (cond, sim)
    recs = records(out)
    base = [r["text"] for r in recs["base"] if r["prompt_id"] == 0]
    assert len(base) == 3 and len(set(base)) > 1  # samples at T > 0 really differ
    assert len({r["seed"] for r in recs["base"]}) == 9
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["models"]["base"]["sha256"]
    assert set(manifest["engine_timings"]["base:" + manifest["models"]["base"]["name"]]) >= {"prompt", "decode"}


# Issue 14's measures, as `run --json` gives them per condition (the embedder is in the run)
FIELD_KEYS = (
    *CONTRACT_KEYS,
    "vendi_embedding_relative",
    "vendi_ngram_relative",
    "distinct_classes_embedding",
    "semantic_entropy_embedding",
)


def test_run_json_has_the_field_measures_per_condition_with_the_models_vocabulary(
    tiny_run: tuple[subprocess.CompletedProcess[str], Path], tiny_base_gguf: Path, tiny_chat_gguf: Path
) -> None:
    from lite_align.gguf_check import gguf_vocab_size

    res, _ = tiny_run
    doc = json.loads(res.stdout)
    vocab = {"base": gguf_vocab_size(tiny_base_gguf), "chat": gguf_vocab_size(tiny_chat_gguf)}
    assert vocab["base"] != vocab["chat"]  # so that the row shows which model's it took
    for cond in ("base", "chat", "icl-static", "icl-random", "icl-knn", "icl-summary"):
        row = doc["diversity"][cond]
        for key in FIELD_KEYS:
            assert isinstance(row[key], float), (cond, key)
            lo, hi = row["ci"][key]
            assert lo is None or lo <= row[key] + 1e-9 <= hi + 2e-9, (cond, key)
        assert 1.0 <= row["vendi_ngram"] <= 3.0 and 1.0 <= row["distinct_classes"] <= 3.0  # 3 samples a prompt
        assert row["ci"]["ead_across_prompts"] == [None, None] and row["ead_across_prompts"] > 0
        # EAD's vocabulary: the generating model's, from its GGUF (the teacher: the chat model)
        assert row["ead_vocab_size"] == vocab["chat" if cond == "chat" else "base"], cond
        assert row["ead_vocab_size_known"] is True
        table = row["agreement"]
        assert table["n_prompts"] == 3 and "self_bleu" in table["keys"] and "embedding_diversity" in table["keys"]
        assert len(table["rho"]) == len(table["keys"]) == len(table["n"])
    assert "vendi_ngram" not in doc["diversity"].get("base-greedy", {})  # one sample: no within-prompt figure


def test_every_report_format_shows_the_field_measures_and_the_agreement(
    tiny_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _, out = tiny_run
    doc = json.loads(_ok(run_cli("report", str(out), "--format", "json", "--out", "-")).stdout)
    row = doc["results"]["diversity"]["base"]
    figure = f"{row['self_bleu']:.3f}"
    lo, hi = (f"{v:.3f}" for v in row["ci"]["self_bleu"])
    terminal = _ok(run_cli("report", str(out), env={"COLUMNS": "200"})).stdout
    assert "Self-BLEU-4 ↓" in terminal and figure in terminal and f"[{lo}, {hi}]" in terminal
    assert "EAD vocabulary" in terminal
    markdown = _ok(run_cli("report", str(out), "--format", "markdown", "--out", "-")).stdout
    assert f"{figure} [{lo}, {hi}]" in markdown and "Vendi score (n-gram)" in markdown
    assert "## Metric agreement" in markdown and "Spearman's rho" in markdown
    html = out / "r.html"
    _ok(run_cli("report", str(out), "--format", "html", "--out", str(html)))
    page = html.read_text()
    assert "Self-BLEU-4" in page and 'id="agr-h">Metric agreement' in page


def _ok(res: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert res.returncode == 0, res.stderr[-2000:]
    return res


def test_same_study_twice_in_fresh_processes_gives_the_same_samples(
    tiny_run: tuple[subprocess.CompletedProcess[str], Path],
    tiny_base_gguf: Path,
    tiny_chat_gguf: Path,
    tmp_path: Path,
) -> None:
    _, first = tiny_run
    res = run_cli(
        *tiny_args(
            tiny_base_gguf,
            tiny_chat_gguf,
            tmp_path / "again",
            "--limit",
            "3",
            "--samples",
            "3",
            "--max-tokens",
            "12",
            "--json",
        )
    )
    assert res.returncode == 0, res.stderr[-2000:]
    a, b = without_seconds(records(first)), without_seconds(records(tmp_path / "again"))
    assert json.dumps(a, sort_keys=True).encode() == json.dumps(b, sort_keys=True).encode()


def test_rerun_from_manifest_reproduces(
    tiny_run: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path
) -> None:
    _, first = tiny_run
    res = run_cli(
        "run", "--from-manifest", str(first / "manifest.json"), "--out", str(tmp_path / "re"), "--json", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert without_seconds(records(first)) == without_seconds(records(tmp_path / "re"))


def test_rerun_on_same_out_generates_nothing(
    tiny_run: tuple[subprocess.CompletedProcess[str], Path], tiny_base_gguf: Path, tiny_chat_gguf: Path
) -> None:
    _, out = tiny_run
    before = {p: p.read_bytes() for p in (out / "samples").glob("*.jsonl")}
    res = run_cli(
        *tiny_args(
            tiny_base_gguf, tiny_chat_gguf, out, "--limit", "3", "--samples", "3", "--max-tokens", "12", "--json"
        )
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert {p: p.read_bytes() for p in before} == before
    assert json.loads((out / "manifest.json").read_text())["generated_now"] == 0


def test_changed_setting_on_existing_run_is_refused(
    tiny_run: tuple[subprocess.CompletedProcess[str], Path], tiny_base_gguf: Path, tiny_chat_gguf: Path
) -> None:
    _, out = tiny_run
    res = run_cli(
        *tiny_args(tiny_base_gguf, tiny_chat_gguf, out, "--limit", "3", "--samples", "3", "--max-tokens", "13")
    )
    assert res.returncode == 2
    assert "different settings (max_tokens: 12 in the existing run, 13 now)" in res.stderr
    assert "Traceback" not in res.stderr


def _interrupt_and_resume(sig: int, base: Path, chat: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """Run, and signal the run while its generation is held (tests/hold_generation) after three base
    samples are on disk: the signal lands mid-generation, never after the run has finished."""
    args = tiny_args(
        base, chat, out, "--limit", "6", "--samples", "4", "--max-tokens", "48", "--conditions", "base,icl-static"
    )
    ready = out.parent / f"{out.name}.held"
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parent / "hold_generation"),
        "LITE_ALIGN_TEST_HOLD_FILE": str(out / "samples" / "base.jsonl"),
        "LITE_ALIGN_TEST_HOLD_READY": str(ready),
    }
    proc = subprocess.Popen(
        [*CLI, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=ctrl_c_as_usual,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not ready.exists():
        time.sleep(0.01)
    assert ready.exists() and proc.poll() is None, f"the run did not hold (exit {proc.poll()})"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(args, proc.returncode, "", err)


def _check_resumed(out: Path, before: dict[str, bytes], base: Path, chat: Path) -> None:
    res = run_cli(
        *tiny_args(
            base, chat, out, "--limit", "6", "--samples", "4", "--max-tokens", "48", "--conditions", "base,icl-static"
        )
    )
    assert res.returncode == 0, res.stderr[-2000:]
    for name, old in before.items():
        kept = old[: old.rfind(b"\n") + 1]  # a torn last line is dropped, every complete one kept
        assert (out / "samples" / name).read_bytes().startswith(kept), name
    for cond, recs in records(out).items():
        keys = [(r["prompt_id"], r["sample_index"]) for r in recs]
        n = 1 if cond.endswith("greedy") else 4
        assert sorted(keys) == [(p, j) for p in range(6) for j in range(n)], cond  # none missing, none twice


def test_sigkill_midway_then_rerun_completes(tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    res = _interrupt_and_resume(signal.SIGKILL, tiny_base_gguf, tiny_chat_gguf, out)
    assert res.returncode == -signal.SIGKILL
    before = {f.name: f.read_bytes() for f in (out / "samples").glob("*.jsonl")}
    assert before
    _check_resumed(out, before, tiny_base_gguf, tiny_chat_gguf)


def test_ctrl_c_exits_130_and_keeps_samples(tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    res = _interrupt_and_resume(signal.SIGINT, tiny_base_gguf, tiny_chat_gguf, out)
    assert res.returncode == 130, res.stderr[-2000:]
    assert "interrupted" in res.stderr and "Traceback" not in res.stderr
    before = {f.name: f.read_bytes() for f in (out / "samples").glob("*.jsonl")}
    assert all(b.endswith(b"\n") for b in before.values())  # a clean stop leaves no torn line
    _check_resumed(out, before, tiny_base_gguf, tiny_chat_gguf)


# --- bad input: one line, non-zero exit, no traceback ------------------------------------------


def assert_one_line_error(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    err = res.stderr.strip()
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err  # exactly one message line, whatever progress came before it
    assert err.endswith(errors[0])
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


def test_unknown_model_name() -> None:
    assert_one_line_error(run_cli("run", "--base", "no-such-model", "--limit", "1"), "unknown model 'no-such-model'")


def test_missing_model_file(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("run", "--base", str(tmp_path / "gone.gguf")), "gone.gguf not found")


def test_truncated_gguf(tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_base_gguf.read_bytes()[:200_000])
    assert_one_line_error(run_cli(*tiny_args(cut, tiny_chat_gguf, tmp_path / "o")), "cut.gguf", "truncated")


def test_non_gguf_file(tiny_chat_gguf: Path, tmp_path: Path) -> None:
    fake = tmp_path / "notes.gguf"
    fake.write_text("these are my notes, not a model\n")
    assert_one_line_error(run_cli(*tiny_args(fake, tiny_chat_gguf, tmp_path / "o")), "notes.gguf", "not a GGUF")


def test_corrupted_gguf_header(tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    data = bytearray(tiny_base_gguf.read_bytes())
    data[8:24] = b"\xff" * 16  # absurd tensor and metadata counts
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    res = run_cli(*tiny_args(bad, tiny_chat_gguf, tmp_path / "o"))
    assert_one_line_error(res, "bad.gguf")


def test_malformed_registry(tmp_path: Path) -> None:
    reg = tmp_path / "models.toml"
    reg.write_text('version = 1\n[models.x]\nrole = "base\n')
    assert_one_line_error(run_cli("models", "--registry", str(reg)), "models.toml", "line 3")


def test_malformed_prompt_file(tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    bad = tmp_path / "prompts.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "ok?"}]}\n{"messages": [\n')
    assert_one_line_error(
        run_cli(*tiny_args(tiny_base_gguf, tiny_chat_gguf, tmp_path / "o", "--prompts", str(bad))), "prompts.jsonl:2"
    )


def test_empty_prompt_set(tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n")
    assert_one_line_error(
        run_cli(*tiny_args(tiny_base_gguf, tiny_chat_gguf, tmp_path / "o", "--prompts", str(empty))), "holds no prompts"
    )


def test_prompt_file_not_utf8(tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Is caf\u00e9 culture good?\n".encode("latin-1"))
    assert_one_line_error(
        run_cli(*tiny_args(tiny_base_gguf, tiny_chat_gguf, tmp_path / "o", "--prompts", str(latin))),
        "latin1.txt:1",
        "not UTF-8",
    )


def test_malformed_samples_file(tmp_path: Path) -> None:
    bad = tmp_path / "samples.jsonl"
    bad.write_text(
        '{"prompt": "q", "outputs": [{"generated_text": "a"}]}\n{"prompt": \n{"prompt": "q", "outputs": []}\n'
    )
    assert_one_line_error(run_cli("diversity", str(bad)), "samples.jsonl:2")


def test_empty_samples_file(tmp_path: Path) -> None:
    empty = tmp_path / "samples.jsonl"
    empty.write_text("")
    assert_one_line_error(run_cli("diversity", str(empty)), "samples.jsonl")


def test_output_directory_cannot_be_written(tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert_one_line_error(
        run_cli(*tiny_args(tiny_base_gguf, tiny_chat_gguf, blocker / "run", "--limit", "1")),
        "cannot create run directory",
    )


def test_bad_option_values(tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    assert_one_line_error(
        run_cli(*tiny_args(tiny_base_gguf, tiny_chat_gguf, tmp_path / "o", "--samples", "0")),
        "--samples must be at least 1",
    )
    assert_one_line_error(
        run_cli(*tiny_args(tiny_base_gguf, tiny_chat_gguf, tmp_path / "o", "--conditions", "nope")),
        "--conditions: unknown condition(s) nope",
    )
    assert_one_line_error(
        run_cli(*tiny_args(tiny_base_gguf, tiny_chat_gguf, tmp_path / "o", "--preset", "huge")),
        "--preset: unknown preset 'huge'",
    )


def test_run_results_hold_the_judge_free_explain_section(
    tiny_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    res, _ = tiny_run
    ex = json.loads(res.stdout)["explain"]
    assert ex["base"] == "base" and ex["aligned"] == "chat"
    for by in ("wordbag", "embedding"):
        assert 0.0 <= ex["coverage"][by]["aligned_single"] <= 1.0
        assert 0.0 <= ex["coverage"][by]["base_single"] <= 1.0
    assert "judge" not in ex and ex["quality"]["filters"]["base"]["passed"] is not None
    assert ex["explanation"]


def test_explain_command_with_the_tiny_judge(
    tiny_run: tuple[subprocess.CompletedProcess[str], Path], tiny_chat_gguf: Path
) -> None:
    _, out = tiny_run
    res = run_cli(
        "explain", "--base", f"{out}#base", "--aligned", f"{out}#chat", "--judge", str(tiny_chat_gguf), "--json"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    ex = json.loads(res.stdout)
    for by in ("wordbag", "embedding"):
        assert set(ex["coverage"][by]) >= {"aligned_single", "base_single"}
    judged = ex["quality"]["judge"]
    assert judged["base"]["n_judged"] == 9 and judged["aligned"]["n_judged"] == 9
    assert judged["base"]["n_unparsed"] == 0  # the grammar makes even random weights answer in JSON
    assert "sanity" in ex["judge"] and "weak" in ex["judge"]["weak_judge_warning"]
    text = run_cli("explain", "--base", f"{out}#base", "--aligned", f"{out}#chat")
    assert text.returncode == 0 and "Explaining the drop" in text.stdout


def test_explain_names_a_missing_condition(tiny_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, out = tiny_run
    assert_one_line_error(
        run_cli("explain", "--base", f"{out}#nope", "--aligned", f"{out}#chat"), "no condition 'nope'"
    )


def test_samples_file_with_another_line_count_than_the_reference(tmp_path: Path) -> None:
    from release import conflictingqa

    outputs = conflictingqa() / "outputs"
    short = tmp_path / "short" / "samples.jsonl"
    short.parent.mkdir()
    short.write_text("".join((outputs / "mistral" / "samples.jsonl").read_text().splitlines(True)[:100]))
    res = run_cli("recover", "--lexical-only", "--reference", str(outputs / "gpt-3.5-turbo"), str(short.parent))
    assert_one_line_error(res, "100 prompts, but the reference", "has 434")


def test_a_full_disk_stops_the_run_with_one_line_and_keeps_what_was_written(
    tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path
) -> None:
    # the process sees ENOSPC from the 6th fsync on, as on a disk that just filled up
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import errno, os\n"
        "_real, _calls = os.fsync, [0]\n"
        "def _fsync(fd):\n"
        "    _calls[0] += 1\n"
        "    if _calls[0] > 5:\n"
        "        raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "    return _real(fd)\n"
        "os.fsync = _fsync\n"
    )
    out = tmp_path / "full"
    args = tiny_args(
        tiny_base_gguf,
        tiny_chat_gguf,
        out,
        "--limit",
        "3",
        "--samples",
        "3",
        "--max-tokens",
        "8",
        "--conditions",
        "base",
    )
    res = run_cli(*args, env={"PYTHONPATH": str(hook)})
    assert_one_line_error(res, "disk full while writing", "rerun the same command to resume")
    lines = (out / "samples" / "chat.jsonl").read_bytes().splitlines()
    assert lines and all(json.loads(line)["condition"] == "chat" for line in lines)  # nothing damaged
    again = run_cli(*args)  # space again: the run resumes and completes
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(records(out)["chat"]) == 9 and len(records(out)["base"]) == 9


def test_stance_table_fits_80_columns_with_the_papers_figures() -> None:
    from release import conflictingqa

    judged = conflictingqa() / "eval-stance"
    res = run_cli("stance", str(judged / "llama-2-base"), str(judged / "gpt-3.5-turbo"), env={"COLUMNS": "80"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert all(len(line) <= 80 for line in res.stdout.splitlines())
    for figure in ("0.491", "0.395", "0.078", "0.724", "0.311", "0.526", "0.046", "0.696"):
        assert figure in res.stdout, figure
