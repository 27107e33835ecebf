"""The study's order of work, prompt building and resumption, with fake generators."""

from __future__ import annotations

import doctest
from pathlib import Path
from typing import Any

from fakes import FakeEmbedder, FakeGenerator

import lite_align.study as study_module
from lite_align.conditions import ALL_CONDITIONS, parse_conditions
from lite_align.data import Prompt, PromptSet
from lite_align.prompts import PromptTexts
from lite_align.store import RunStore
from lite_align.study import ModelRef, Study, StudyPlan, StudySettings, derive_seed

TEXTS = PromptTexts(system="Be good.", static_queries=("SQ1?", "SQ2?", "SQ3?"), summarize="Sum {query} :: {answer}")
PROMPTS = PromptSet(
    "t", tuple(Prompt(i, q) for i, q in enumerate(["Cats?", "Dogs?", "Cars?", "Cats and dogs?"])), "mem", "x"
)


def make_plan(conditions: tuple[str, ...], samples: int = 3) -> StudyPlan:
    s = StudySettings(
        preset="quick",
        samples=samples,
        max_tokens=8,
        temperature=0.5,
        repetition_penalty=1.1,
        seed=7,
        k=2,
        conditions=conditions,
    )
    return StudyPlan(
        s,
        PROMPTS,
        TEXTS,
        ModelRef("B", "base", "/b.gguf"),
        ModelRef("C", "chat", "/c.gguf"),
        ModelRef("C", "chat", "/c.gguf"),
    )


def with_prompt(plan: StudyPlan, prompt: Prompt) -> StudyPlan:
    """``plan`` with one more prompt in its prompt set."""
    prompts = PromptSet("t", (*PROMPTS.prompts, prompt), "mem", "y")
    return StudyPlan(plan.settings, prompts, plan.texts, plan.base, plan.chat, plan.summarizer)


def run_study(tmp_path: Path, conditions: tuple[str, ...]) -> tuple[Study, list[tuple[str, Any]]]:
    log: list[tuple[str, Any]] = []

    def opener(ref: ModelRef, n_ctx: int | None = None) -> FakeGenerator:
        assert n_ctx is not None and n_ctx % 256 == 0  # every model is opened with a sized context
        return FakeGenerator(ref.name, log, n_ctx)

    store = RunStore(tmp_path / "run", {"x": 1})
    study = Study(make_plan(conditions), store, opener, embed_prompts=FakeEmbedder().embed)
    study.run()
    return study, log


def test_every_condition_is_generated_in_order(tmp_path: Path) -> None:
    study, log = run_study(tmp_path, ALL_CONDITIONS)
    models = [m for m, _ in log]
    # teacher first (samples, greedy, static answers), then its summaries, then the base model
    first_base = models.index("B")
    assert set(models[:first_base]) == {"C"} and set(models[first_base:]) == {"B"}
    keys = [req.key[3] for _, req in log if req.key != ("preflight",)]
    assert keys.index("summary") > keys.index("teacher-static") > keys.index("chat")
    st = study.store
    for cond in ALL_CONDITIONS:
        n = 1 if cond.endswith("-greedy") else 3
        got = st.samples(cond)
        assert sorted((s.prompt_id, s.sample_index) for s in got) == [(p, j) for p in range(4) for j in range(n)], cond
    # every sample has its own seed, derived from (run seed, prompt, sample index)
    chat = st.samples("chat")
    assert {s.seed for s in chat} == {derive_seed(7, s.prompt_id, s.sample_index) for s in chat}
    assert len({s.seed for s in chat}) == len(chat)


def test_a_greedy_request_follows_its_sampled_twin_with_the_same_prompt(tmp_path: Path) -> None:
    # the engine reads a prompt once for identical prompts admitted together: twins are sent adjacent
    _, log = run_study(tmp_path, ALL_CONDITIONS)
    sent = [r for _, r in log if r.key != ("preflight",)]
    greedy = [i for i, r in enumerate(sent) if r.key.condition.endswith("-greedy")]
    assert len(greedy) == 6 * len(PROMPTS.prompts)  # chat and five base conditions
    for i in greedy:
        before, twin = sent[i - 1], sent[i]
        assert before.key.condition == twin.key.condition.removesuffix("-greedy")
        assert (before.key.prompt_id, before.prompt) == (twin.key.prompt_id, twin.prompt)


def test_the_study_modules_examples_hold() -> None:
    assert doctest.testmod(study_module).failed == 0


def test_in_context_prompts_use_the_teachers_answers(tmp_path: Path) -> None:
    study, log = run_study(tmp_path, parse_conditions("base,icl-knn,icl-summary,icl-static,icl-random"))
    teacher0 = study.teacher_answers()
    knn = study.base_prompts("icl-knn")
    # prompt 0 "Cats?" has "Cats and dogs?" as nearest neighbour by letters: it comes first
    assert knn[0].index("Cats and dogs?") < knn[0].index(teacher0[3][:10]) < knn[0].rindex("Cats?")
    assert teacher0[3] in knn[0]
    summ = study.base_prompts("icl-summary")[2]
    own_summary = {s.prompt_id: s.text for s in study.store.aux("summary")}[2]
    assert summ.endswith(f"# Summary:\n```\n{own_summary}\n```\n\n# Answer:\n```\n")
    assert "SQ1?" in summ and "SQ3?" not in summ  # k = 2 static examples
    static = study.base_prompts("icl-static")
    assert all(p.startswith("# Instructions:\n\nBe good.\n\n# Query:\n```\nSQ1?") for p in static.values())
    # the shared part is handed to the engine as a prefix
    base_reqs = [r for m, r in log if m == "B" and r.key != ("preflight",) and r.key[3] == "icl-static"]
    assert base_reqs and all(r.prompt.startswith(r.prefix) and "SQ2?" in r.prefix for r in base_reqs)


def test_rerun_generates_nothing_and_keeps_files(tmp_path: Path) -> None:
    study, _ = run_study(tmp_path, parse_conditions("base"))
    files = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*.jsonl")}
    study.store.close()
    study2, log2 = run_study(tmp_path, parse_conditions("base"))
    assert study2.generated == 0
    assert [r for _, r in log2 if r.key != ("preflight",)] == []
    assert {p: p.read_bytes() for p in files} == files


def test_parse_conditions_adds_the_teacher() -> None:
    assert parse_conditions("icl-knn") == ("chat", "icl-knn")
    assert parse_conditions("base-greedy") == ("chat", "chat-greedy", "base-greedy")
    assert parse_conditions(None) == ALL_CONDITIONS


def test_prompts_too_long_lose_examples_then_are_skipped(tmp_path: Path) -> None:
    class ShortContext(FakeGenerator):
        max_positions = 170  # bytes are tokens here; the answer budget is 8

    log: list[tuple[str, Any]] = []
    store = RunStore(tmp_path / "run", {"x": 1})
    plan = with_prompt(make_plan(parse_conditions("base,icl-random")), Prompt(4, "Why? " * 40))
    study = Study(plan, store, lambda ref, n_ctx=None: ShortContext(ref.name, log), embed_prompts=FakeEmbedder().embed)
    study.run()
    fits = Study._fits(ShortContext("B", []), 8)
    assert fits is not None
    for _, req in log:
        if req.key != ("preflight",):
            assert fits(req.prompt), req.key
    # icl-random prompts had to shed examples; the 200-byte prompt fits nowhere and is recorded
    assert study.dropped_examples.get("icl-random", 0) > 0
    skipped = {(x["condition"], x["prompt_id"]) for x in study.skipped}
    assert ("icl-random", 4) in skipped and ("base", 4) in skipped and ("chat", 4) in skipped
    assert {s.prompt_id for s in store.samples("icl-random")} == {0, 1, 2, 3}


def test_context_estimate_covers_prompt_and_answer() -> None:
    from lite_align.study import context_for

    assert context_for(0, 10) == 256
    assert context_for(3000, 700) == 1792  # 1000 + 700 + 16 rounded up to 256 cells


def test_the_base_phase_chooses_knn_examples_once_for_a_condition_and_its_greedy_twin(tmp_path: Path) -> None:
    calls: list[int] = []

    def embed(texts: list[str]) -> Any:
        calls.append(len(texts))
        return FakeEmbedder().embed(texts)

    log: list[tuple[str, Any]] = []
    store = RunStore(tmp_path / "run", {"x": 1})
    study = Study(
        make_plan(parse_conditions("icl-knn,icl-knn-greedy")),
        store,
        lambda ref, n_ctx=None: FakeGenerator(ref.name, log),
        embed_prompts=embed,
    )
    study.run()
    assert calls == [4]  # one embedding pass over the 4 prompts, not one per condition and step
    assert len(store.samples("icl-knn")) == 12 and len(store.samples("icl-knn-greedy")) == 4


def test_peak_memory_is_the_programs_own_not_its_parents() -> None:
    """Linux carries ru_maxrss across fork and exec: a run started by a large test runner used to
    report the runner's peak as its own."""
    import subprocess
    import sys

    ballast = bytearray(400_000_000)  # the parent now holds 400 MB
    code = "from lite_align.study import peak_rss_mb; print(peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 5 < float(out) < 200
    del ballast


def test_a_context_the_character_estimate_oversized_is_reopened_smaller(tmp_path: Path) -> None:
    """Every live sequence holds a whole context, so a context larger than the prompts' real
    token counts need costs sequences: the model is reopened with what the tokens need."""

    class WordTokens(FakeGenerator):  # a token per word: far fewer tokens than the estimate's chars / 3
        def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
            return [len(w) for w in text.split()]

        @property
        def max_positions(self) -> int | None:
            return self.n_ctx

    opened: list[tuple[str, int | None]] = []
    log: list[tuple[str, Any]] = []

    def opener(ref: ModelRef, n_ctx: int | None = None) -> FakeGenerator:
        opened.append((ref.name, n_ctx))
        return WordTokens(ref.name, log, n_ctx)

    plan = with_prompt(make_plan(parse_conditions("base")), Prompt(4, "alignment " * 300))  # 3,000 chars, 300 tokens
    Study(plan, RunStore(tmp_path / "run", {"x": 1}), opener, embed_prompts=FakeEmbedder().embed).run()
    base = [n for name, n in opened if name == "B"]
    assert len(base) == 2 and base[0] is not None and base[1] is not None
    assert base[0] >= 1024 and base[1] == 512  # 300 prompt tokens and a few more + 8 to write, in 256s
    assert any("alignment alignment" in req.prompt for name, req in log if name == "B")  # and it was asked
