"""lite_align.readers: the three samples layouts, prompt files, judge files, and their errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lite_align.data import Sample
from lite_align.errors import PromptFileError, SamplesFileError
from lite_align.readers import (
    check_aligned,
    normalise_text,
    prompt_set_hash,
    read_instances,
    read_samples,
    read_stance_labels,
)


def write_jsonl(path: Path, rows: list[Any], *, end: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + end, encoding="utf-8")
    return path


def record(pid: int, index: int, text: str, finish: str = "stop", condition: str = "base") -> dict[str, Any]:
    return Sample(pid, condition, "m", index, 1000 * pid + index, text, 3, finish, 0.1).to_json()


# --------------------------------------------------------------------------------------------------
# the paper's files


def test_normalise_strips_space_then_one_fence_then_space() -> None:
    assert normalise_text("  Yes.\n```  ") == "Yes."
    assert normalise_text("a\n```\n```") == "a\n```"  # only one fence
    assert normalise_text("```") == ""
    assert normalise_text("no fence ``") == "no fence ``"


def test_server_style_file_with_a_failed_line(tmp_path: Path) -> None:
    f = write_jsonl(
        tmp_path / "llama" / "samples.jsonl",
        [
            {
                "prompt": "# Query: a",
                "outputs": [{"generated_text": "Yes\n```"}, {"generated_text": " No. "}],
            },
            {"error": "server died"},
            {"prompt": "# Query: c", "outputs": [{"generated_text": "Maybe```"}]},
        ],
    )
    (tmp_path / "llama" / "args.json").write_text('{"run": {"name": "llama"}}', encoding="utf-8")
    for path in (f, f.parent, str(f.parent)):
        [s] = read_samples(path)
        assert s.label == "llama"
        assert dict(s.by_prompt) == {0: ("Yes", "No."), 2: ("Maybe",)}
        assert s.n_failed == 1 and s.n_responses == 3
        assert s.settings == {"run": {"name": "llama"}}
        assert s.source == str(f)
    assert read_samples(f, label="other")[0].label == "other"


def test_openai_style_file(tmp_path: Path) -> None:
    ok = {
        "ok": True,
        "outputs": [{"index": i, "message": {"role": "assistant", "content": f"A{i} "}} for i in range(2)],
    }
    f = write_jsonl(tmp_path / "gpt" / "samples.jsonl", [ok, {"ok": False, "error": "rate limit"}, ok])
    [s] = read_samples(f)
    assert dict(s.by_prompt) == {0: ("A0", "A1"), 2: ("A0", "A1")}
    assert s.n_failed == 1 and s.settings == {}


# --------------------------------------------------------------------------------------------------
# lite_align runs


def make_run(tmp_path: Path) -> Path:
    run = tmp_path / "run1"
    run.mkdir()
    (run / "manifest.json").write_text('{"version": 1, "prompt_set": "toy"}', encoding="utf-8")
    write_jsonl(
        run / "samples" / "icl.jsonl",
        [
            record(1, 1, "b1", condition="icl"),
            record(1, 0, "b0 ```", condition="icl"),
            record(0, 0, "a0", condition="icl"),
        ],
    )
    write_jsonl(
        run / "samples" / "base.jsonl",
        [
            record(0, 1, "x1"),
            record(0, 0, "x0"),
            record(1, 0, "", finish="error"),  # prompt 1 failed entirely
            record(2, 0, "z0", finish="error"),
            record(2, 0, "z0 retried"),  # a resumed run retried it: the last record wins
            record(2, 1, "z1", finish="length"),
        ],
    )
    return run


def test_run_directory_gives_one_set_per_condition_sorted(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    base, icl = read_samples(run)
    assert (base.label, icl.label) == ("base", "icl")
    assert dict(base.by_prompt) == {0: ("x0", "x1"), 2: ("z0 retried", "z1")}
    assert base.n_failed == 1
    assert dict(icl.by_prompt) == {0: ("a0",), 1: ("b0", "b1")}
    assert icl.n_failed == 0
    assert base.settings == {"version": 1, "prompt_set": "toy"}


def test_single_lite_align_file_inside_a_run_reads_the_manifest(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    [icl] = read_samples(run / "samples" / "icl.jsonl")
    assert icl.label == "icl" and icl.settings["prompt_set"] == "toy"
    alone = write_jsonl(tmp_path / "loose.jsonl", [record(0, 0, "t")])
    [s] = read_samples(alone)
    assert s.label == "loose" and s.settings == {} and dict(s.by_prompt) == {0: ("t",)}


def test_half_written_last_line_is_ignored_in_our_files_only(tmp_path: Path) -> None:
    torn = json.dumps(record(1, 0, "cut off"))[:25]
    f = write_jsonl(tmp_path / "killed.jsonl", [record(0, 0, "done"), torn], end="")
    [s] = read_samples(f)
    assert dict(s.by_prompt) == {0: ("done",)}
    cut_in_a_character = tmp_path / "killed2.jsonl"
    cut_in_a_character.write_bytes(json.dumps(record(0, 0, "done")).encode() + b'\n{"text": "caf\xc3')
    assert dict(read_samples(cut_in_a_character)[0].by_prompt) == {0: ("done",)}
    paper = write_jsonl(tmp_path / "p" / "samples.jsonl", [{"outputs": [{"generated_text": "x"}]}, '{"outp'], end="")
    with pytest.raises(SamplesFileError, match=r"samples\.jsonl:2: invalid JSON"):
        read_samples(paper)


# --------------------------------------------------------------------------------------------------
# errors: one line, naming the file (and line) and what to do


def assert_one_line(exc: pytest.ExceptionInfo[Exception]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_malformed_line_in_the_middle_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "bad.jsonl", [record(0, 0, "a"), "{not json", record(1, 0, "b")])
    with pytest.raises(SamplesFileError) as exc:
        read_samples(f)
    assert f"{f}:2: invalid JSON" in assert_one_line(exc)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "is empty"),
        (b"\n\n", "is empty"),
        (b"[1, 2]\n", "expected a JSON object"),
        (b'{"foo": 1}\n', "neither a paper samples line"),
        (b'{"outputs": [{"generated_text": "ok"}]}\n\xff\xfe\n', ":2: not UTF-8"),
        (b'{"outputs": [{"generated_text": "a"}]}\n\n{"outputs": []}\n', ":2: empty line"),
        (b'{"outputs": [{"text": "a"}]}\n', "every prompt failed (1 of 1 lines: no text (generated_text missing)"),
        (b'{"outputs": ["a"]}\n', ":1: an output is not a JSON object"),
        (b'{"outputs": [{"generated_text": 5}]}\n', ":1: an output's generated_text is int, not text"),
        (b'{"prompt_id": 0, "text": "a"}\n', "record lacks sample_index, finish_reason"),
    ],
)
def test_bad_samples_files(tmp_path: Path, content: bytes, fragment: str) -> None:
    f = tmp_path / "samples.jsonl"
    f.write_bytes(content)
    with pytest.raises(SamplesFileError) as exc:
        read_samples(f)
    message = assert_one_line(exc)
    assert str(f) in message and fragment in message


def test_a_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    f = tmp_path / "bom.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + json.dumps(record(0, 0, "t")).encode() + b"\n")
    assert dict(read_samples(f)[0].by_prompt) == {0: ("t",)}


def test_missing_path_and_unknown_directory(tmp_path: Path) -> None:
    with pytest.raises(SamplesFileError, match="no such file or directory"):
        read_samples(tmp_path / "nope")
    with pytest.raises(SamplesFileError, match="holds neither samples.jsonl nor a lite_align run"):
        read_samples(tmp_path)


def test_check_aligned_names_both_counts(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "m" / "samples.jsonl", [{"outputs": [{"generated_text": "a"}]}, {"error": "x"}])
    sets = read_samples(f)
    check_aligned(sets, 2)  # one good line + one failed line = 2 prompts
    with pytest.raises(SamplesFileError) as exc:
        check_aligned(sets, 3, against="the reference gpt-3.5-turbo")
    message = assert_one_line(exc)
    assert "2 prompts" in message and "the reference gpt-3.5-turbo has 3" in message and str(f) in message


# --------------------------------------------------------------------------------------------------
# prompt files and judge files


def test_read_instances(tmp_path: Path) -> None:
    f = write_jsonl(
        tmp_path / "ConflictingQA" / "instances" / "data.jsonl",
        [
            {"messages": [{"role": "user", "content": "Are audiobooks reading?"}]},
            {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "Q2"}]},
        ],
    )
    ps = read_instances(f)
    assert ps.name == "ConflictingQA" and len(ps) == 2 and ps.source == str(f)
    assert [(p.id, p.text) for p in ps.prompts] == [(0, "Are audiobooks reading?"), (1, "Q2")]
    assert ps.sha256 == prompt_set_hash(["Are audiobooks reading?", "Q2"])
    assert prompt_set_hash(["a", "b"]) != prompt_set_hash(["a\nb"]) != prompt_set_hash(["b", "a"])


def test_bad_instance_files(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "p.jsonl", [{"messages": [{"role": "user", "content": "q"}]}, {"messages": []}])
    with pytest.raises(PromptFileError) as exc:
        read_instances(f)
    assert f"{f}:2:" in assert_one_line(exc)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(PromptFileError, match="is empty"):
        read_instances(empty)


def test_read_stance_labels(tmp_path: Path) -> None:
    def answer(content: str) -> dict[str, Any]:
        return {"ok": True, "outputs": [{"index": 0, "message": {"role": "assistant", "content": content}}]}

    f = write_jsonl(
        tmp_path / "judge.jsonl",
        [
            answer('{"reason": "r", "stance": "yes"}'),
            answer('{"stance": " Both "}'),
            answer("not json at all"),
            {"ok": False, "error": "timeout"},
            answer('{"reason": "no stance key"}'),
        ],
    )
    assert read_stance_labels(f) == ["yes", "both", None, None, None]
