"""Failed outputs inside released files (the paper's release records a failed request in place of a
generation: ``{"error": "...", "error_type": "validation"}``): the prompt is dropped, counted and
named in every reader, command and report, and the figures are those of the valid prompts,
worked out here by hand.

Word bags of the texts below are their words (no stop word, no punctuation), so every Jaccard is
countable on a finger: J({apple, banana}, {apple, cherry}) = 1/3.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import assert_one_line_error, run_cli

from lite_align.bundle import pack_bundle, replay_bundle
from lite_align.compare import read_released
from lite_align.errors import SamplesFileError
from lite_align.explain import explain
from lite_align.metrics.lexical import diversity
from lite_align.metrics.stance import stance_summary
from lite_align.readers import read_samples, read_stance_labels

# the shape of the release's failed outputs (data/LIMA-OE/outputs/*/samples.jsonl)
FAILED = {
    "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 3835 `inputs` "
    "tokens and 700 `max_new_tokens`",
    "error_type": "validation",
}


def write_set(root: Path, name: str, lines: list[list[str | None] | None], args: bool = True) -> Path:
    """A released set folder: one line per prompt; None as a line is a failed request, None among
    the outputs a failed output recorded in place of a generation."""
    folder = root / name
    folder.mkdir(parents=True)
    rows = []
    for texts in lines:
        if texts is None:
            rows.append({"error": "server unavailable"})
        else:
            rows.append({"prompt": "q", "outputs": [FAILED if t is None else {"generated_text": t} for t in texts]})
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    if args:
        (folder / "args.json").write_text('{"params": {"temperature": 0.5}}', encoding="utf-8")
    return folder


@pytest.fixture()
def release(tmp_path: Path) -> Path:
    """outputs/teacher (prompt 3 failed in one output), outputs/student (prompt 1 failed), and
    instances/data.jsonl with the four prompts."""
    out = tmp_path / "CQA" / "outputs"
    write_set(
        out,
        "teacher",
        [
            ["apple banana", "apple banana", "banana"],
            ["kiwi", "kiwi", "kiwi"],
            ["dog cat", "dog", "cat"],
            ["sun", None, "moon"],
        ],
    )
    write_set(
        out,
        "student",
        [
            ["apple banana", "apple cherry"],
            [None, "kiwi"],
            ["dog cat", "dog cat"],
            ["red blue", "green"],
        ],
    )
    inst = tmp_path / "CQA" / "instances"
    inst.mkdir()
    questions = ["Fruit?", "Kiwi?", "Pets?", "Colours?"]
    inst.joinpath("data.jsonl").write_text(
        "".join(json.dumps({"messages": [{"role": "user", "content": q}]}) + "\n" for q in questions),
        encoding="utf-8",
    )
    return out


@pytest.fixture()
def mostly_failed(tmp_path: Path) -> Path:
    """Ten prompts, eight of them failed (as 48 of 50 do in the release's llama-2-icl-chat-5nn-prompt_similar)."""
    lines: list[list[str | None] | None] = [[None, None] for _ in range(10)]
    lines[3] = ["alpha beta", "alpha gamma"]
    lines[7] = ["delta", "delta"]
    return write_set(tmp_path / "outputs", "most-failed", lines)


# --- the readers ---------------------------------------------------------------------------------


def test_a_failed_output_drops_its_prompt_and_is_counted(release: Path) -> None:
    [teacher] = read_samples(release / "teacher")
    [student] = read_samples(release / "student")
    assert sorted(teacher.by_prompt) == [0, 1, 2] and teacher.n_failed == 1
    assert sorted(student.by_prompt) == [0, 2, 3] and student.n_failed == 1
    assert student.failed_reasons == {"validation error": 1}
    assert student.by_prompt[0] == ("apple banana", "apple cherry")


def test_a_failed_request_line_and_a_failed_output_have_their_own_reasons(tmp_path: Path) -> None:
    folder = write_set(tmp_path, "mixed", [["a b"], None, [None], ["c d", None], ["e f"]])
    [s] = read_samples(folder)
    assert (s.n_prompts, s.n_failed) == (2, 3)
    assert s.failed_reasons == {"request failed": 1, "validation error": 2}


def test_an_output_without_text_is_a_failed_output(tmp_path: Path) -> None:
    f = tmp_path / "samples.jsonl"
    f.write_text('{"outputs": [{"generated_text": "a"}]}\n{"outputs": [{"generated_text": "b"}, {}]}\n')
    [s] = read_samples(f)
    assert dict(s.by_prompt) == {0: ("a",)} and s.failed_reasons == {"no text (generated_text missing)": 1}


def test_openai_style_failed_outputs(tmp_path: Path) -> None:
    ok = {"ok": True, "outputs": [{"message": {"content": "fine"}}]}
    rows = [ok, {"ok": True, "outputs": [{"message": {"content": "x"}}, {"error": "timeout"}]}, {"ok": False}]
    f = tmp_path / "samples.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    [s] = read_samples(f)
    assert dict(s.by_prompt) == {0: ("fine",)} and s.failed_reasons == {"request failed": 2}


def test_a_file_where_every_prompt_failed_is_one_line_error(tmp_path: Path) -> None:
    folder = write_set(tmp_path, "dead", [[None, None], None, [None]])
    with pytest.raises(SamplesFileError) as exc:
        read_samples(folder)
    message = str(exc.value)
    assert "\n" not in message and str(folder / "samples.jsonl") in message
    assert "every prompt failed (3 of 3 lines: validation error ×2, request failed ×1)" in message


def test_a_run_record_file_drops_a_prompt_with_a_failed_sample(tmp_path: Path) -> None:
    def rec(pid: int, index: int, text: str, finish: str = "stop") -> str:
        return json.dumps({"prompt_id": pid, "sample_index": index, "text": text, "finish_reason": finish}) + "\n"

    f = tmp_path / "base.jsonl"
    f.write_text(rec(0, 0, "a") + rec(0, 1, "b") + rec(1, 0, "c") + rec(1, 1, "", "error") + rec(2, 0, "d"))
    [s] = read_samples(f)
    assert dict(s.by_prompt) == {0: ("a", "b"), 2: ("d",)}
    assert s.n_failed == 1 and s.failed_reasons == {"generation error": 1}


# --- the figures, by hand --------------------------------------------------------------------------


def test_diversity_is_that_of_the_valid_prompts(release: Path) -> None:
    [student] = read_samples(release / "student")
    got = diversity(student)
    # prompt 0: J(ab, ac) = 1/3; prompt 2: J(dc, dc) = 1; prompt 3: J(rb, g) = 0 (prompt 1 failed)
    assert got.jaccard_within.mean == pytest.approx((1 / 3 + 1 + 0) / 3)
    # lengths 2,2 | 2,2 | 2,1
    assert got.length_mean.mean == pytest.approx((2 + 2 + 1.5) / 3)
    assert (got.n_prompts, got.n_failed, got.n_responses) == (3, 1, 6)


def test_recover_cli_compares_only_prompts_valid_in_both_files(release: Path) -> None:
    res = run_cli(
        "recover", "--lexical-only", "--json", "--reference", str(release / "teacher"), str(release / "student")
    )
    assert res.returncode == 0, res.stderr[-2000:]
    row = json.loads(res.stdout)[str(release / "student")]
    jac = row["jaccard"]
    # prompts 0 and 2 only: prompt 1 failed in the student, prompt 3 in the teacher
    # baseline: p0 (J(ab,ab) + J(ab,b)) / 2 = 0.75; p2 (J(dc,d) + J(dc,c)) / 2 = 0.5
    # cross:    p0 (J(ab,ab) + J(ab,ac)) / 2 = 2/3;  p2 (1 + 1) / 2 = 1
    assert jac["n_prompts"] == 2
    assert jac["baseline"] == pytest.approx((0.75 + 0.5) / 2)
    assert jac["cross"] == pytest.approx((2 / 3 + 1) / 2)
    assert jac["ratio"] == pytest.approx((2 / 3 + 1) / (0.75 + 0.5))
    assert (row["n_failed"], row["reference_n_failed"]) == (1, 1)
    assert row["failed_reasons"] == {"validation error": 1}
    text = run_cli("recover", "--lexical-only", "--reference", str(release / "teacher"), str(release / "student"))
    assert text.returncode == 0, text.stderr[-2000:]
    flat = " ".join(text.stdout.split())
    assert "compared over the 2 prompts valid in every file; failed prompts left out: 1 in it, 1 in the reference" in (
        flat
    )


def test_diversity_cli_on_a_file_where_most_prompts_failed(mostly_failed: Path) -> None:
    res = run_cli("diversity", "--json", str(mostly_failed))
    assert res.returncode == 0, res.stderr[-2000:]
    row = json.loads(res.stdout)[str(mostly_failed)]
    assert (row["n_prompts"], row["n_failed"], row["n_responses"]) == (2, 8, 4)
    assert row["failed_reasons"] == {"validation error": 8}
    assert row["jaccard_within"] == pytest.approx((1 / 3 + 1) / 2)  # J(ab, ag) = 1/3, J(d, d) = 1
    assert row["length_mean"] == pytest.approx((2 + 1) / 2)
    text = run_cli("diversity", str(mostly_failed), env={"COLUMNS": "200"})
    assert text.returncode == 0, text.stderr[-2000:]
    assert "8 of 10 prompts dropped because an output failed (validation error ×8); its figures cover the other 2" in (
        text.stdout
    )
    assert "8 prompts dropped (failed)" in text.stdout  # the panel's subtitle


def test_diversity_cli_refuses_a_file_where_every_prompt_failed(tmp_path: Path) -> None:
    dead = write_set(tmp_path, "dead", [[None], [None, None]])
    res = run_cli("diversity", str(dead))
    assert_one_line_error(res, str(dead / "samples.jsonl"), "every prompt failed", "validation error ×2")


def test_stance_drops_prompts_with_a_failed_judge_request(tmp_path: Path) -> None:
    def judge(stance: str | None) -> dict[str, object]:
        if stance is None:
            return {"ok": False, "error": "rate limit"}
        return {"ok": True, "outputs": [{"message": {"content": json.dumps({"stance": stance})}}]}

    f = tmp_path / "judged" / "samples.jsonl"
    f.parent.mkdir()
    stances = ["yes", "no", "yes", None, "both", "yes"]  # 3 prompts x 2 labels; prompt 1 lost a request
    f.write_text("".join(json.dumps(judge(s)) + "\n" for s in stances))
    labels = read_stance_labels(f)
    assert labels.failed == {3: "request failed"}
    r = stance_summary(labels, 2, failed=labels.failed)
    # prompts 0 and 2: yes, no, both, yes
    assert (r.n_prompts, r.n_failed, r.n_labelled, r.n_unparsed) == (2, 1, 4, 0)
    assert (r.yes.mean, r.no.mean, r.both.mean) == (pytest.approx(0.5), pytest.approx(0.25), pytest.approx(0.25))
    assert r.prompts_with_yes_and_no.mean == pytest.approx(0.5) and r.prompts_with_both.mean == pytest.approx(0.5)
    res = run_cli("stance", "--samples-per-prompt", "2", "--json", str(f.parent))
    assert res.returncode == 0, res.stderr[-2000:]
    row = json.loads(res.stdout)[str(f.parent)]
    assert (row["n_failed"], row["failed_reasons"], row["n_prompts"]) == (1, {"request failed": 1}, 2)
    assert row["yes"] == pytest.approx(0.5)
    text = run_cli("stance", "--samples-per-prompt", "2", str(f.parent), env={"COLUMNS": "200"})
    assert "1 prompt dropped because a judge request failed (request failed ×1)" in text.stdout
    dead = tmp_path / "dead" / "samples.jsonl"
    dead.parent.mkdir()
    dead.write_text(json.dumps(judge(None)) + "\n")
    assert_one_line_error(run_cli("stance", str(dead.parent)), str(dead), "every judge request failed")


def test_explain_counts_each_files_failed_prompts(release: Path) -> None:
    [teacher] = read_samples(release / "teacher")
    [student] = read_samples(release / "student")
    out = explain(student, teacher, embedder=None)
    assert out["n_prompts"] == 2  # prompts 0 and 2: valid in both
    assert out["n_failed"] == {"base": 1, "aligned": 1}
    assert out["failed_reasons"] == {"base": {"validation error": 1}, "aligned": {"validation error": 1}}
    # base Jaccard over prompts 0 and 2 only: (1/3 + 1) / 2
    assert out["raw_diversity"]["base"]["jaccard"]["mean"] == pytest.approx(2 / 3)


def test_explain_cli_json_and_text_name_the_failed_prompts(release: Path) -> None:
    args = ["explain", "--base", str(release / "student"), "--aligned", str(release / "teacher")]
    res = run_cli(*args, "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["n_failed"] == {"base": 1, "aligned": 1}
    text = run_cli(*args, env={"COLUMNS": "200"})
    assert text.returncode == 0, text.stderr[-2000:]
    assert "failed prompts left out: 1 in student (validation error ×1), 1 in teacher (validation error ×1)" in (
        text.stdout
    )


# --- reports, bundles --------------------------------------------------------------------------------


def test_every_report_format_says_how_many_prompts_were_dropped_and_why(release: Path, tmp_path: Path) -> None:
    base = ["report", str(release), "--reference", "teacher"]
    md = run_cli(*base, "--format", "markdown")
    assert md.returncode == 0, md.stderr[-2000:]
    assert "student: 1 of 4 prompts dropped because an output failed (validation error ×1)" in md.stdout
    assert "1 prompt dropped, an output failed (validation error ×1)" in md.stdout  # the header's line per set
    assert "student: compared over the 2 prompts valid in every file" in md.stdout
    page = tmp_path / "r.html"
    html = run_cli(*base, "--format", "html", "--out", str(page))
    assert html.returncode == 0, html.stderr[-2000:]
    text = page.read_text(encoding="utf-8")
    assert '<p class="dropped">student: 1 of 4 prompts dropped because an output failed' in text
    assert '<p class="dropped">student: compared over the 2 prompts valid in every file' in text
    term = run_cli(*base, env={"COLUMNS": "200"})
    assert term.returncode == 0, term.stderr[-2000:]
    assert "student: 1 of 4 prompts dropped because an output failed (validation error ×1)" in term.stdout
    doc = json.loads(run_cli(*base, "--format", "json").stdout)
    assert doc["manifest"]["sets"]["student"]["n_failed"] == 1
    assert doc["results"]["diversity"]["student"]["failed_reasons"] == {"validation error": 1}


def test_pack_and_replay_carry_the_failed_counts(release: Path, tmp_path: Path) -> None:
    inp = read_released(release, reference="teacher")
    bundle = tmp_path / "class.zip"
    pack_bundle([release], bundle, reference="teacher")
    replay = replay_bundle(bundle)
    (item,) = replay.items
    assert replay.reproduced and item.check.mismatches == []
    assert item.results["diversity"]["student"]["n_failed"] == 1
    assert item.results["recover"]["student"]["reference_n_failed"] == 1
    assert item.results == inp.results
    res = run_cli("replay", str(bundle), "--format", "markdown")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "student: 1 of 4 prompts dropped because an output failed (validation error ×1)" in res.stdout
