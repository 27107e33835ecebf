"""The plan before a run: the pending-work listing (fakes), its sums (hand-checked), the
calibration and its cache, and the plan of a real run on the tiny GGUFs (CLI --dry-run)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEmbedder, FakeGenerator
from test_cli import run_cli, tiny_args

from lite_align.conditions import ALL_CONDITIONS, parse_conditions
from lite_align.data import Prompt, PromptSet
from lite_align.plan import (
    Calibration,
    CalibrationCache,
    build_plan,
    calibrate,
    calibration_key,
    estimate_seconds,
)
from lite_align.prompts import PromptTexts
from lite_align.store import RunStore
from lite_align.study import ModelRef, PendingWork, Study, StudyPlan, StudySettings

TEXTS = PromptTexts(system="Be good.", static_queries=("SQ1?", "SQ2?", "SQ3?"), summarize="Sum {query} :: {answer}")
PROMPTS = PromptSet(
    "t", tuple(Prompt(i, q) for i, q in enumerate(["Cats?", "Dogs?", "Cars?", "Cats and dogs?"])), "m", "x"
)
BASE, CHAT = ModelRef("B", "base", "/b.gguf"), ModelRef("C", "chat", "/c.gguf")
K, MAX_TOKENS, SUMMARY_TOKENS = 2, 8, 5


def make_plan(conditions: tuple[str, ...]) -> StudyPlan:
    s = StudySettings(
        preset="quick",
        samples=3,
        max_tokens=MAX_TOKENS,
        temperature=0.5,
        repetition_penalty=1.1,
        seed=7,
        k=K,
        conditions=conditions,
        summary_max_tokens=SUMMARY_TOKENS,
    )
    return StudyPlan(s, PROMPTS, TEXTS, BASE, CHAT, CHAT)


def make_study(run_dir: Path, conditions: tuple[str, ...], log: list[tuple[str, Any]]) -> Study:
    def opener(ref: ModelRef, n_ctx: int | None = None) -> FakeGenerator:
        return FakeGenerator(ref.name, log, n_ctx)

    return Study(make_plan(conditions), RunStore(run_dir, {"x": 1}), opener, embed_prompts=FakeEmbedder().embed)


def render(ref: ModelRef, messages: list[dict[str, str]]) -> str:
    return FakeGenerator(ref.name, []).render_chat(messages)


def sent(log: list[tuple[str, Any]]) -> list[Any]:
    return [req for _, req in log if req.key != ("preflight",)]


# --- Study.pending ------------------------------------------------------------------------------


def test_pending_lists_exactly_what_the_run_then_generates(tmp_path: Path) -> None:
    log: list[tuple[str, Any]] = []
    study = make_study(tmp_path / "run", ALL_CONDITIONS, log)
    work = study.pending(render)
    assert log == []  # listing generated nothing
    planned = Counter()
    for w in work:
        planned[w.condition] += w.samples
    study.run()
    generated = Counter(req.key[3] for req in sent(log) for _ in req.seeds)
    assert planned == generated
    assert planned["chat"] == 12 and planned["chat-greedy"] == 4 and planned["teacher-static"] == 3
    assert planned["summary"] == 4 and planned["summary-static"] == 3 and planned["icl-knn"] == 12
    # teacher and summary prompts are rendered as the run renders them
    teacher_prompts = {
        (r.key[3], r.key[1]): r.prompt for r in sent(log) if r.key[3] in ("chat", "chat-greedy", "teacher-static")
    }
    assert all(teacher_prompts[(w.condition, w.prompt_id)] == w.prompt for w in work if w.phase == "teacher")
    assert {w.phase for w in work} == {"teacher", "summary", "base"}
    assert all(w.model == (BASE if w.phase == "base" else CHAT) for w in work)


def test_before_the_teacher_ran_in_context_prompts_count_its_answers_at_their_budget(tmp_path: Path) -> None:
    study = make_study(tmp_path / "run", ALL_CONDITIONS, [])
    by = {(w.condition, w.prompt_id): w for w in study.pending(render)}
    assert by[("base", 0)].estimated_tokens == 0
    assert by[("icl-static", 0)].estimated_tokens == K * MAX_TOKENS
    assert by[("icl-random", 1)].estimated_tokens == K * MAX_TOKENS
    assert by[("icl-knn-greedy", 2)].estimated_tokens == K * MAX_TOKENS
    # K example answers, K example summaries and the prompt's own summary
    assert by[("icl-summary", 3)].estimated_tokens == K * MAX_TOKENS + (K + 1) * SUMMARY_TOKENS
    # a summary request quotes the teacher's answer, not there yet
    assert by[("summary", 0)].estimated_tokens == MAX_TOKENS
    assert by[("chat", 0)].estimated_tokens == 0


def test_resumed_run_lists_only_what_is_missing_and_the_real_prompts(tmp_path: Path) -> None:
    log: list[tuple[str, Any]] = []
    first = make_study(tmp_path / "run", parse_conditions("icl-static"), log)
    first.run()  # teacher, static answers and icl-static are done
    first.store.close()
    log.clear()
    study = make_study(tmp_path / "run", ALL_CONDITIONS, log)
    work = study.pending(render)
    assert {w.condition for w in work} == {
        c for c in ALL_CONDITIONS if c not in ("chat", "icl-static", "teacher-static")
    } | {"summary", "summary-static"}
    assert all(w.estimated_tokens == 0 for w in work if w.condition.startswith(("icl-random", "icl-static")))
    study.run()
    base_sent = {(r.key[3], r.key[1]): r for r in sent(log) if r.key[3].startswith("icl-random")}
    for w in work:
        if w.condition.startswith("icl-random"):  # the same prompt and prefix the run sent
            assert (w.prompt, w.prefix) == (
                base_sent[(w.condition, w.prompt_id)].prompt,
                base_sent[(w.condition, w.prompt_id)].prefix,
            )
    study.store.close()
    assert make_study(tmp_path / "run", ALL_CONDITIONS, []).pending(render) == []


def test_pending_renders_only_prompts_still_to_generate(tmp_path: Path) -> None:
    first = make_study(tmp_path / "run", parse_conditions("base"), [])
    first.run()
    first.store.close()
    rendered: list[str] = []

    def counting(ref: ModelRef, messages: list[dict[str, str]]) -> str:
        rendered.append(messages[0]["content"])
        return render(ref, messages)

    work = make_study(tmp_path / "run", parse_conditions("base"), []).pending(counting)
    assert work == [] and rendered == []


# --- build_plan ---------------------------------------------------------------------------------


def words(text: str) -> int:
    return len(text.split())


def test_plan_sums_hand_checked() -> None:
    work = [
        PendingWork("teacher", CHAT, "chat", 0, 3, "a b c", 8),
        PendingWork("teacher", CHAT, "chat", 1, 2, "d e", 8),
        PendingWork("base", BASE, "icl-static", 0, 3, "P P P q1", 10, prefix="P P P", estimated_tokens=16),
        PendingWork("base", BASE, "icl-static", 1, 3, "P P P q2 q2", 10, prefix="P P P", estimated_tokens=16),
    ]
    cal = Calibration(prompt_tps=10.0, decode_tps=2.0, sequences=16, load_s=1.0, measured_s=1.0)
    plan = build_plan(
        work,
        {"/c.gguf": words, "/b.gguf": words},
        {"/c.gguf": (cal, True), "/b.gguf": (None, False)},
        run_dir="r",
        done_samples=4,
    )
    chat, base = plan.models
    assert (chat.samples, chat.requests, chat.prompt_tokens, chat.max_new_tokens) == (5, 2, 5, 40)
    assert chat.seconds == 1.0 + 5 / 10 + 40 / 2 and chat.calibration_cached
    # the shared prefix (3 tokens) is read once; each prompt adds its own part and the estimate
    assert (base.prompt_tokens, base.estimated_prompt_tokens, base.max_new_tokens) == (3 + 1 + 16 + 2 + 16, 32, 60)
    assert base.seconds is None and plan.seconds is None and base.by_condition == {"icl-static": 6}
    doc = plan.to_json()
    assert doc["format"] == "lite_align.plan/1" and doc["pending_samples"] == 11 and doc["done_samples"] == 4
    assert any("estimate" in n for n in doc["notes"])
    assert estimate_seconds(cal, 100, 10) == 16.0


# --- calibration --------------------------------------------------------------------------------


class SlowFake(FakeGenerator):
    """Reading a prompt costs 1 ms per token (byte); each generated token 2 ms."""

    max_sequences = 4

    def generate(self, requests: Any) -> Any:
        for req in requests:
            time.sleep(len(req.prompt) / 1000)
            steps = req.params.max_tokens
            time.sleep(steps * 0.002 * len(req.seeds))
            for res in super().generate([req]):
                yield type(res)(
                    res.key,
                    res.sample_index,
                    res.seed,
                    res.text,
                    steps,
                    res.prompt_tokens,
                    res.finish_reason,
                    res.seconds,
                )


def test_calibration_measures_read_and_write_speed() -> None:
    cal = calibrate(SlowFake("S", []), load_s=0.25, budget_s=0.2)
    assert cal.sequences == 4 and cal.load_s == 0.25
    assert 300 < cal.prompt_tps < 1100  # ~1000 bytes/s minus overhead
    assert 150 < cal.decode_tps < 560  # ~500 tokens/s
    assert cal.measured_s < 3


def test_calibration_cache_round_trip_and_damage(tmp_path: Path) -> None:
    cache = CalibrationCache(tmp_path / "c" / "calibration.json")
    key = calibration_key("ab" * 32, 1)
    assert cache.get(key) is None
    cal = Calibration(100.0, 20.0, 16, 0.5, 2.0, "t")
    cache.put(key, cal)
    assert CalibrationCache(tmp_path / "c" / "calibration.json").get(key) == cal
    assert cache.get(calibration_key("ab" * 32, 2)) is None  # another thread count is another speed
    (tmp_path / "c" / "calibration.json").write_text("{not json")
    assert cache.get(key) is None
    cache.put(key, cal)
    assert cache.get(key) == cal


# --- a real run's plan (tiny GGUFs) ----------------------------------------------------------------


def test_plan_of_a_real_run_then_resume(tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    from lite_align.runner import RunOptions, _StoreView, plan_run, prepare

    out = tmp_path / "run"
    opts = RunOptions(
        base=str(tiny_base_gguf),
        chat=str(tiny_chat_gguf),
        limit=2,
        samples=2,
        max_tokens=6,
        conditions="base,icl-static",
        out=str(out),
    )
    prep = prepare(opts)
    cache = CalibrationCache(tmp_path / "cal.json")
    plan = plan_run(prep, embedder=FakeEmbedder(), calibration_cache=cache)
    assert not out.exists()  # planning writes nothing into the run directory
    doc = plan.to_json()
    by_name = {m["name"]: m for m in doc["models"]}
    assert by_name["tiny-chat"]["by_condition"] == {"chat": 4, "teacher-static": 3}
    assert by_name["tiny-base"]["by_condition"] == {"base": 4, "icl-static": 4}
    for m in doc["models"]:
        cal = Calibration(**m["calibration"])
        assert cal.prompt_tps > 0 and cal.decode_tps > 0 and not m["calibration_cached"]
        assert m["seconds"] == estimate_seconds(cal, m["prompt_tokens"], m["max_new_tokens"])
    again = plan_run(prep, embedder=FakeEmbedder(), calibration_cache=cache).to_json()
    assert all(m["calibration_cached"] for m in again["models"])
    # a killed run leaves a torn last line: the plan counts what is whole
    (out / "samples").mkdir(parents=True)
    RunStore(out, prep.identity).close()
    line = {
        "prompt_id": 0,
        "condition": "chat",
        "model": "tiny-chat",
        "sample_index": 0,
        "seed": 1,
        "text": "x",
        "completion_tokens": 1,
        "finish_reason": "stop",
        "seconds": 0.1,
    }
    (out / "samples" / "chat.jsonl").write_text(json.dumps(line) + "\n" + '{"prompt_id": 1, "cond')
    assert _StoreView(out, prep.identity).finished() == 1
    resumed = plan_run(prep, embedder=FakeEmbedder(), calibration_cache=cache).to_json()
    assert resumed["resumed"] and resumed["done_samples"] == 1 and resumed["pending_samples"] == 14
    changed = prepare(RunOptions(**{**opts.__dict__, "samples": 3}))
    with pytest.raises(Exception, match="different settings"):
        plan_run(changed, embedder=FakeEmbedder(), calibration_cache=cache)


def test_dry_run_cli(tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {"LITE_ALIGN_CACHE": str(tmp_path / "cache")}
    args = tiny_args(
        tiny_base_gguf,
        tiny_chat_gguf,
        out,
        "--limit",
        "2",
        "--samples",
        "2",
        "--max-tokens",
        "6",
        "--conditions",
        "base",
    )
    res = run_cli(*args, "--dry-run", "--json", env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout)
    assert doc["format"] == "lite_align.plan/1" and doc["pending_samples"] == 8 and not out.exists()
    assert (tmp_path / "cache" / "calibration.json").is_file()
    res = run_cli(*args, "--dry-run", env=env)
    assert res.returncode == 0 and "Plan" in res.stdout and "(cached)" in res.stdout
    res = run_cli(*args, "--json", env=env)  # the plan goes to stderr, the results to stdout
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Plan" in res.stderr and "diversity" in json.loads(res.stdout)
    res = run_cli(*args, "--dry-run", "--json", env=env)
    assert json.loads(res.stdout)["pending_samples"] == 0 and json.loads(res.stdout)["done_samples"] == 8


def test_unknown_embedder_is_one_line_error(tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    res = run_cli(*tiny_args(tiny_base_gguf, tiny_chat_gguf, tmp_path / "r", "--embedder", "nope", "--dry-run"))
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0
    assert "--embedder: unknown embedder 'nope'" in res.stderr and "minilm-l6-int8" in res.stderr


def test_plan_of_served_models_counts_tokens_on_the_server_and_gives_no_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from server_util import LlamaServer
    from test_openai_backend import KEY, KEY_ENV, _registry
    from tiny_gguf import write_tiny_llama

    from lite_align.runner import RunOptions, plan_run, prepare

    d = tmp_path_factory.mktemp("served")
    base = LlamaServer(write_tiny_llama(d / "b.gguf"), d, api_key=KEY, n_ctx=2048).start()
    try:
        chat = LlamaServer(write_tiny_llama(d / "c.gguf", chat=True), d, n_ctx=2048).start()
        try:
            monkeypatch.setenv(KEY_ENV, KEY)
            registry = _registry(tmp_path / "models.toml", base, chat)
            opts = RunOptions(registry=str(registry), limit=2, samples=2, max_tokens=6, conditions="base",
                              out=str(tmp_path / "run"))  # fmt: skip
            doc = plan_run(prepare(opts), calibration_cache=CalibrationCache(tmp_path / "c.json")).to_json()
        finally:
            chat.stop()
    finally:
        base.stop()
    assert [m["backend"] for m in doc["models"]] == ["openai", "openai"]
    assert [m["samples"] for m in doc["models"]] == [4, 4] and all(m["prompt_tokens"] > 0 for m in doc["models"])
    assert doc["seconds"] is None and any("server" in n for n in doc["notes"])
    assert not (tmp_path / "c.json").exists()  # nothing to calibrate
