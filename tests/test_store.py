"""The run store: append-only samples, resumable, refuses changed settings, repairs a torn line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lite_align.data import Sample
from lite_align.errors import RunDirError
from lite_align.store import RunStore, read_manifest, repair_tail


def sample(pid: int, j: int, text: str = "t") -> Sample:
    return Sample(pid, "base", "m", j, 100 + j, text, 3, "stop", 0.1)


def test_append_and_read_back(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r", {"seed": 0}) as st:
        st.append(st.samples_path("base"), sample(0, 0, "héllo\nworld"))
        st.append(st.samples_path("base"), sample(0, 1))
        assert st.done_keys(st.samples_path("base")) == {(0, 0), (0, 1)}
        assert st.samples("base")[0].text == "héllo\nworld"
    lines = (tmp_path / "r" / "samples" / "base.jsonl").read_text(encoding="utf-8").splitlines()
    rec = json.loads(lines[0])
    for key in (
        "prompt_id",
        "condition",
        "model",
        "sample_index",
        "seed",
        "text",
        "completion_tokens",
        "finish_reason",
        "seconds",
    ):
        assert key in rec
    assert read_manifest(tmp_path / "r")["identity"] == {"seed": 0}


def test_reopen_with_other_settings_is_refused_naming_the_difference(tmp_path: Path) -> None:
    RunStore(tmp_path / "r", {"seed": 0, "samples": 5}).close()
    with pytest.raises(RunDirError) as ei:
        RunStore(tmp_path / "r", {"seed": 1, "samples": 5})
    assert "seed: 0 in the existing run, 1 now" in str(ei.value)
    RunStore(tmp_path / "r", {"seed": 0, "samples": 5}).close()  # same settings: resumes


def test_torn_last_line_is_cut_and_earlier_lines_untouched(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r", {}) as st:
        path = st.samples_path("base")
        st.append(path, sample(0, 0))
        st.append(path, sample(0, 1))
    before = path.read_bytes()
    with open(path, "ab") as fh:
        fh.write(b'{"prompt_id": 0, "condition": "ba')  # a kill mid-write
    with RunStore(tmp_path / "r", {}) as st:
        assert st.repaired == {"samples/base.jsonl": len(b'{"prompt_id": 0, "condition": "ba')}
        assert path.read_bytes() == before
        st.append(path, sample(0, 2))
    assert path.read_bytes().startswith(before)
    assert len(path.read_text().splitlines()) == 3


def test_repair_tail_cases(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"a": 1}\n{"b": 2}\n')
    assert repair_tail(p) == 0
    p.write_bytes(b'{"a": 1}\n{"b": \n')  # complete line, invalid JSON
    assert repair_tail(p) == len(b'{"b": \n') and p.read_bytes() == b'{"a": 1}\n'
    p.write_bytes(b'{"a"')
    assert repair_tail(p) == 4 and p.read_bytes() == b""


def test_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunDirError, match="cannot create run directory"):
        RunStore(blocker / "run", {})


def test_not_a_run_dir(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="not a lite_align run directory"):
        read_manifest(tmp_path)
