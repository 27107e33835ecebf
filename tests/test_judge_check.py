"""`lite-align judge check`: the calibration set, the agreement statistics, the cache, the check
against the paper's GPT-4 stance labels, and the agreement line that heads every explain report
with judge figures. Judges here are scripted generators behind the real Judge (their answers are
known, so the figures are too) and, through the CLI, the tiny random-weight GGUF."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from release import conflictingqa

from lite_align.engine import GenerationRequest, GenerationResult
from lite_align.errors import ConfigError, PromptFileError
from lite_align.judge import Judge
from lite_align.judge_check import (
    accuracy,
    agreement,
    calibration_check,
    cohen_kappa,
    find_release,
    load_calibration,
    release_check,
    release_subset,
    with_agreement,
)
from lite_align.readers import read_stance_labels

ROOT = Path(__file__).resolve().parents[1]
CALIBRATION = load_calibration(ROOT / "prompts" / "judge" / "calibration.jsonl")


class ScriptedModel:
    """A judge model whose replies come from ``answer(task, prompt)``; counts what it generated."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.n_generated = 0

    def render_chat(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        return messages[0]["content"]

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        return list(range(len(text.split())))

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[GenerationResult]:
        for req in requests:
            self.n_generated += 1
            task = "coverage" if "Text A:" in req.prompt else "stance" if "which side" in req.prompt else "quality"
            yield GenerationResult(req.key, 0, 0, self.answer(task, req.prompt), 5, 50, "stop", 0.0)


def reply(task: str, value: Any) -> str:
    if task == "quality":
        return f'{{"helpfulness": {value}, "clarity": 3, "factuality": 3, "depth": 3, "engagement": 3}}'
    if task == "stance":
        return f'{{"stance": "{value}", "reason": "r"}}'
    return f'{{"topics_a_only": [], "topics_b_only": [], "topics_both": [], "missing_from_a": {value}}}'


def careful_reader(task: str, prompt: str) -> str:
    """Answers every calibration item as its expected answer says."""
    for item in CALIBRATION.items:
        if item.task == task and all(v in prompt for v in item.fields.values()):
            return reply(task, item.expected)
    raise AssertionError(f"no calibration item in: {prompt[:200]}")


def judge_with(answer: Any, tmp_path: Path, sha: str = "ab" * 32) -> tuple[Judge, ScriptedModel]:
    model = ScriptedModel(answer)
    return Judge(model, sha, name="scripted", cache_path=tmp_path / "judgements.sqlite"), model


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITE_ALIGN_CACHE", str(tmp_path / "cache"))


def test_the_calibration_set_covers_every_kind_the_issue_names() -> None:
    items = CALIBRATION.items
    assert 36 <= len(items) <= 48 and len({i.id for i in items}) == len(items)
    kinds = {t: {i.kind for i in items if i.task == t} for t in ("quality", "stance", "coverage")}
    assert kinds["quality"] == {"good", "terse", "off-topic", "empty", "degenerate"}
    assert kinds["stance"] == {"yes", "no", "both", "other"}
    assert kinds["coverage"] == {"covers", "misses"}
    for item in items:  # the expected answers agree with the kind of item
        if item.task == "quality":
            assert (item.expected >= 3) == (item.kind == "good"), item.id
        elif item.task == "stance":
            assert item.expected == item.kind, item.id
        else:
            assert (item.expected <= 2) == (item.kind == "covers"), item.id
    assert CALIBRATION.version == "1"


@pytest.mark.parametrize(
    "lines, needle",
    [
        (['{"version": 1}'], ':1: the first line must be {"format": "lite_align-judge-calibration"'),
        (['{"format": "lite_align-judge-calibration", "version": 1}', "{oops"], ":2: not JSON"),
        (
            [
                '{"format": "lite_align-judge-calibration", "version": 1}',
                '{"id": "x", "task": "stance", "question": "q"}',
            ],
            ":2: a stance item needs id, question, answer (text) and expected.stance",
        ),
        (['{"format": "lite_align-judge-calibration", "version": 1}', '{"task": "vibes"}'], ":2: task must be one of"),
        (['{"format": "lite_align-judge-calibration", "version": 1}'], "no calibration items"),
    ],
)
def test_a_broken_calibration_file_gives_one_line(tmp_path: Path, lines: list[str], needle: str) -> None:
    path = tmp_path / "cal.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(PromptFileError) as err:
        load_calibration(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_kappa_and_accuracy_by_hand() -> None:
    expected = ["yes"] * 6 + ["no"] * 4
    judged = ["yes"] * 5 + ["no"] + ["no"] * 3 + ["yes"]
    # observed 0.8; chance = 0.6 * 0.6 + 0.4 * 0.4 = 0.52; kappa = 0.28 / 0.48
    assert accuracy(expected, judged) == pytest.approx(0.8)
    assert cohen_kappa(expected, judged) == pytest.approx(0.28 / 0.48)
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None  # chance agreement is total: kappa undefined
    assert cohen_kappa(["yes", "no", "yes", "no"], ["yes"] * 4) == 0.0  # one label for everything: chance
    doc = agreement(expected, judged)
    lo, hi = doc["kappa"]["ci"]
    assert lo < doc["kappa"]["mean"] < hi and doc["confusion"] == {
        "yes": {"yes": 5, "no": 1},
        "no": {"no": 3, "yes": 1},
    }
    assert doc["reading"] == "moderate"


def test_a_judge_that_answers_as_a_careful_reader_agrees_perfectly(tmp_path: Path) -> None:
    judge, _ = judge_with(careful_reader, tmp_path)
    doc = calibration_check(judge, CALIBRATION)
    for task, t in doc["tasks"].items():
        assert t["accuracy"]["mean"] == 1.0 and t["kappa"]["mean"] == pytest.approx(1.0), task
        assert t["reading"] == "almost perfect" and t["n_unparsed"] == 0
    assert doc["tasks"]["quality"]["score_mean_abs_error"] == 0.0
    assert doc["tasks"]["quality"]["by_kind"]["empty"]["mean_score"] == 1.0
    assert doc["calibration"]["n_items"] == len(CALIBRATION.items) and not doc["cached"]
    assert "quality kappa 1.00" in doc["summary"] and "(v1, 40 items)" in doc["summary"]


def test_a_judge_that_says_the_same_thing_to_everything_is_at_chance(tmp_path: Path) -> None:
    same = {"quality": 1, "stance": "yes", "coverage": 5}  # what the embedded 135M judge tends to do
    judge, _ = judge_with(lambda task, prompt: reply(task, same[task]), tmp_path)
    doc = calibration_check(judge, CALIBRATION)
    for task, t in doc["tasks"].items():
        assert t["kappa"]["mean"] == pytest.approx(0.0), task
        assert t["reading"].startswith("chance: ")
    assert doc["tasks"]["stance"]["accuracy"]["mean"] == pytest.approx(4 / 14)  # the four clear "yes" items
    assert doc["tasks"]["quality"]["by_kind"]["good"]["correct"] == 0


def test_unparsed_replies_count_as_wrong_labels(tmp_path: Path) -> None:
    def half(task: str, prompt: str) -> str:
        return careful_reader(task, prompt) if "Yes" in prompt else "not json at all"

    judge, _ = judge_with(half, tmp_path)
    stance = calibration_check(judge, CALIBRATION)["tasks"]["stance"]
    assert stance["n_unparsed"] > 0 and stance["accuracy"]["mean"] < 1.0
    assert sum(stance["confusion"][e].get("unparsed", 0) for e in stance["confusion"]) == stance["n_unparsed"]


def test_the_check_is_cached_by_judge_and_calibration(tmp_path: Path) -> None:
    judge, model = judge_with(careful_reader, tmp_path)
    first = calibration_check(judge, CALIBRATION)
    n = model.n_generated
    assert n == len(CALIBRATION.items)
    fresh, fresh_model = judge_with(careful_reader, tmp_path / "other")  # same sha256, empty judgement cache
    again = calibration_check(fresh, CALIBRATION)
    assert again["cached"] and fresh_model.n_generated == 0 and again["tasks"] == first["tasks"]
    other, other_model = judge_with(careful_reader, tmp_path / "third", sha="cd" * 32)  # another judge: measured
    assert not calibration_check(other, CALIBRATION)["cached"] and other_model.n_generated == n
    same = {"quality": 3, "stance": "both", "coverage": 3}
    constant, _ = judge_with(lambda task, prompt: reply(task, same[task]), tmp_path / "fourth", sha="ef" * 32)
    assert not calibration_check(constant, CALIBRATION)["cached"]
    assert calibration_check(constant, CALIBRATION)["cached"]
    edited = tmp_path / "cal.jsonl"
    edited.write_text(Path(CALIBRATION.source).read_text(encoding="utf-8").replace("basil", "mint"), encoding="utf-8")
    assert not calibration_check(constant, load_calibration(edited))["cached"]  # another content: measured again


def test_explain_reports_carry_the_agreement_first(tmp_path: Path) -> None:
    from test_explain import small_sets

    from lite_align.explain import explain
    from lite_align.report import console, render_explain

    judge, _ = judge_with(careful_reader_or_length, tmp_path)
    base, aligned, prompts = small_sets()
    result = with_agreement(explain(base, aligned, embedder=None, judge=judge, prompts=prompts), judge)
    assert next(iter(result)) == "judge_agreement"
    assert result["judge_agreement"].startswith("judge scripted against the calibration set (v1, 40 items)")
    assert result["judge"]["agreement"]["tasks"]["stance"]["kappa"]["mean"] == pytest.approx(1.0)
    con = console(width=100, file=open(os.devnull, "w"))  # noqa: SIM115
    con.begin_capture()
    render_explain(con, result)
    text = con.end_capture()
    lines = [line for line in text.splitlines() if line.strip()]
    assert "Explaining the drop" in lines[0] and "against the calibration set" in lines[1]
    from lite_align.markdown_report import render_markdown

    md = render_markdown({}, {"explain": result})
    assert md.index("against the calibration set") < md.index("### raw_diversity")
    from lite_align.html_report import render_html

    page = render_html({}, {"explain": result})
    assert page.index("against the calibration set") < page.index("raw_diversity")
    assert with_agreement({"judge": None, "x": 1}, None) == {"judge": None, "x": 1}  # no judge: untouched


def careful_reader_or_length(task: str, prompt: str) -> str:
    """The careful reader on calibration items, the length rule of test_explain on the rest."""
    try:
        return careful_reader(task, prompt)
    except AssertionError:
        from test_explain import ScriptedJudgeModel

        return ScriptedJudgeModel._reply(prompt)


# ---------------------------------------------------------------------------------------------
# Against the paper's GPT-4 labels


def test_release_subset_is_seeded_and_sorted() -> None:
    ids = release_subset(434, 20)
    assert ids == release_subset(434, 20) and ids == sorted(ids) and len(set(ids)) == 20
    assert release_subset(434, 20) != release_subset(434, 20, seed=1)
    assert release_subset(434, None) == list(range(434)) and release_subset(434, 999) == list(range(434))
    with pytest.raises(ConfigError):
        release_subset(434, 0)


def test_release_check_against_gpt4_labels(tmp_path: Path) -> None:
    release = find_release(conflictingqa().parent)
    gpt4 = {name: read_stance_labels(release / "eval-stance" / name) for name in ("llama-2-base", "gpt-3.5-turbo")}
    ids = release_subset(434, 3)
    answers: dict[str, str | None] = {}
    rows = []  # (answer, GPT-4 label) of every answer judged
    from lite_align.readers import read_samples

    for name in gpt4:
        s = read_samples(release / "outputs" / name)[0]
        for pid in ids:
            for j, text in enumerate(s.by_prompt[pid]):
                answers[text] = gpt4[name][pid * 5 + j]
                rows.append((text, gpt4[name][pid * 5 + j]))

    def copycat(task: str, prompt: str) -> str:  # says what GPT-4 said: perfect agreement
        label = next(v for k, v in answers.items() if k.strip() and k in prompt)
        return reply("stance", label if label in ("yes", "no", "both", "other") else "other")

    judge, model = judge_with(copycat, tmp_path)
    doc = release_check(judge, release, limit=3)
    r = doc["release"]
    assert (r["prompts"], r["of_prompts"], r["responses"], r["prompt_ids"]) == (3, 434, 30, ids)
    assert r["subset"] == "3 of 434 prompts drawn with seed 0"
    assert model.n_generated == len(set(answers))  # an answer given twice to a prompt is judged once
    stance = doc["tasks"]["stance"]
    kept = [(t, g) for t, g in rows if g is not None]
    assert stance["n"] == len(kept) == 30 - r["gpt4_unparsed"]
    assert stance["accuracy"]["mean"] == pytest.approx(sum(answers[t] == g for t, g in kept) / len(kept))
    assert stance["accuracy"]["mean"] > 0.9
    shares = doc["per_set"]["gpt-3.5-turbo"]["shares"]
    assert shares["judge"]["both"] == pytest.approx(shares["gpt4"]["both"], abs=0.2)
    both = sum(gpt4["gpt-3.5-turbo"][pid * 5 + j] == "both" for pid in ids for j in range(5)) / 15
    assert shares["gpt4"]["both"] == pytest.approx(both)
    assert "on 3 of 434 ConflictingQA prompts (30 answers)" in doc["summary"]
    assert release_check(judge, release, limit=3)["cached"]


def test_the_release_must_be_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LITE_ALIGN_PAPER_RELEASE", raising=False)
    monkeypatch.setenv("LITE_ALIGN_CACHE", str(tmp_path / "cache"))  # no fetched release there either
    with pytest.raises(ConfigError, match="--against-release needs the paper's release: pass --release PATH"):
        find_release(None)
    with pytest.raises(ConfigError, match="does not hold ConflictingQA/eval-stance"):
        find_release(tmp_path)
    assert find_release(conflictingqa()) == find_release(conflictingqa().parent)


# ---------------------------------------------------------------------------------------------
# Through the CLI, with the tiny random-weight judge


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lite_align.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "100", **env},
    )  # fmt: skip


def test_cli_judge_check_on_the_tiny_judge(tiny_chat_gguf: Path, tmp_path: Path) -> None:
    env = {"LITE_ALIGN_CACHE": str(tmp_path / "cache"), "LITE_ALIGN_PAPER_RELEASE": str(conflictingqa().parent)}
    res = cli("judge", "check", "--judge", str(tiny_chat_gguf), "--against-release", "--limit", "1", "--json", env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout)
    assert set(doc["calibration"]["tasks"]) == {"quality", "stance", "coverage"}
    assert doc["calibration"]["judge"]["model"] == "tiny-chat" and doc["release"]["release"]["responses"] == 10
    for t in doc["calibration"]["tasks"].values():
        assert 0.0 <= t["accuracy"]["mean"] <= 1.0 and t["n"] == sum(sum(r.values()) for r in t["confusion"].values())
    text = cli("judge", "check", "--judge", str(tiny_chat_gguf), env=env)
    assert text.returncode == 0 and "(cached)" in text.stdout and "Cohen's kappa" in text.stdout
    missing = cli(
        "judge",
        "check",
        "--judge",
        str(tiny_chat_gguf),
        "--against-release",
        env={**env, "LITE_ALIGN_PAPER_RELEASE": ""},
    )
    lines = [line for line in missing.stderr.splitlines() if line.strip()]
    assert missing.returncode == 2 and len(lines) == 1 and re.search(r"^error: --against-release needs", lines[0])


def test_cli_explain_with_a_judge_puts_its_agreement_first(tiny_chat_gguf: Path, tmp_path: Path) -> None:
    """Paper-style samples files (3 yes/no prompts, 3 answers each) explained with the tiny judge."""
    root = tmp_path / "rel"
    (root / "instances").mkdir(parents=True)
    questions = ["Is tea healthy?", "Can cats swim?", "Does coffee help focus?"]
    (root / "instances" / "data.jsonl").write_text(
        "".join(json.dumps({"messages": [{"role": "user", "content": q}]}) + "\n" for q in questions)
    )
    answers = {
        "base": [["Yes.", "No, not really.", "Maybe."], ["Yes they can paddle.", "No.", "Cats hate water."],
                 ["Yes.", "It helps some people.", "No, it makes you jittery."]],
        "chat": [["It depends on the amount and the person."] * 3, ["Most cats can swim but dislike it."] * 3,
                 ["Coffee helps focus for many people, in moderation."] * 3],
    }  # fmt: skip
    for name, per_prompt in answers.items():
        folder = root / "outputs" / name
        folder.mkdir(parents=True)
        lines = [
            {
                "ok": True,
                "outputs": [{"index": i, "message": {"role": "assistant", "content": t}} for i, t in enumerate(ts)],
            }
            for ts in per_prompt
        ]
        (folder / "samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    env = {"LITE_ALIGN_CACHE": str(tmp_path / "cache")}
    args = ["explain", "--base", str(root / "outputs" / "base"), "--aligned", str(root / "outputs" / "chat")]
    res = cli(*args, "--judge", str(tiny_chat_gguf), "--json", env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout)
    assert list(doc)[0] == "judge_agreement" and "tiny-chat against the calibration set" in doc["judge_agreement"]
    assert set(doc["judge"]["agreement"]["tasks"]) == {"quality", "stance", "coverage"}
    text = cli(*args, "--judge", str(tiny_chat_gguf), env=env)
    body = [line for line in text.stdout.splitlines() if line.strip()]
    assert text.returncode == 0 and "Explaining the drop" in body[0] and "against the calibration set" in body[1]


def test_cli_run_explain_carries_the_agreement(tiny_base_gguf: Path, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    env = {"LITE_ALIGN_CACHE": str(tmp_path / "cache")}
    args = ["run", "--base", str(tiny_base_gguf), "--chat", str(tiny_chat_gguf), "--out", str(tmp_path / "run")]
    args += ["--prompts", "yesno", "--limit", "2", "--samples", "2", "--max-tokens", "6", "--conditions", "base,chat"]
    res = cli(*args, "--explain", "--json", env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    ex = json.loads(res.stdout)["explain"]
    assert (
        list(ex)[0] == "judge_agreement"
        and "tiny-chat against the calibration set (v1, 40 items)" in ex["judge_agreement"]
    )
    assert ex["judge"]["agreement"]["calibration"]["version"] == "1"
