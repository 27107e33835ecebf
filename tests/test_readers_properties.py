"""Property-based tests (hypothesis) for every reader of user files: whatever bytes a user hands
over, a reader returns data or raises the project's one-line error, never anything else; and what
a writer wrote, the reader reads back."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lite_align.errors import LiteAlignError, PromptFileError, RunDirError, SamplesFileError
from lite_align.prompts import load_prompt_set
from lite_align.readers import normalise_text, read_instances, read_samples, read_stance_labels
from lite_align.registry import load_registry
from lite_align.store import read_manifest, repair_tail

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JSONISH = st.sampled_from(
    [
        b"{",
        b"}",
        b"[",
        b"]",
        b'"',
        b":",
        b",",
        b"\n",
        b" ",
        b"\\",
        b"prompt",
        b"outputs",
        b"generated_text",
        b"ok",
        b"true",
        b"false",
        b"null",
        b"message",
        b"content",
        b"error",
        b"messages",
        b"role",
        b"user",
        b"1",
        b"\xff",
        b"\xc3\xa9",
        b"```",
        b"prompt_id",
        b"text",
        b"\xef\xbb\xbf",  # a byte-order mark
        b"\x0b",  # separators str.splitlines would split on
        b"\x1c",
        b"\r",
        b"\\#",
    ]
)
USER_BYTES = st.one_of(st.binary(max_size=300), st.lists(JSONISH, max_size=60).map(b"".join))
TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)


def write(name: str, data: bytes) -> Path:
    d = Path(tempfile.mkdtemp())
    p = d / name
    p.write_bytes(data)
    return p


@SETTINGS
@given(USER_BYTES)
def test_samples_reader_returns_sets_or_a_samples_error(data: bytes) -> None:
    try:
        sets = read_samples(write("samples.jsonl", data))
    except SamplesFileError as exc:
        assert "\n" not in str(exc)
        return
    assert all(s.n_prompts + s.n_failed >= 0 for s in sets)


# a line: None (the request failed), or outputs where None is a failed output recorded in their place
SERVER_LINES = st.lists(
    st.one_of(st.none(), st.lists(st.one_of(TEXT, st.none()), min_size=1, max_size=4)), min_size=1, max_size=8
)


@SETTINGS
@given(SERVER_LINES)
def test_server_style_round_trip(lines: list[list[str | None] | None]) -> None:
    failed_output = {"error": "Input validation error: too long", "error_type": "validation"}
    rows = [
        {"error": "boom"}
        if texts is None
        else {"prompt": "q", "outputs": [failed_output if t is None else {"generated_text": t} for t in texts]}
        for texts in lines
    ]
    path = write("samples.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    failed = [texts is None or None in texts for texts in lines]
    if all(failed):
        with pytest.raises(SamplesFileError, match="every prompt failed"):
            read_samples(path)
        return
    (got,) = read_samples(path)
    assert got.n_failed == sum(failed)
    assert got.failed_reasons == {
        reason: n
        for reason, n in (
            ("request failed", sum(texts is None for texts in lines)),
            ("validation error", sum(texts is not None and None in texts for texts in lines)),
        )
        if n
    }
    assert sorted(got.by_prompt) == [pid for pid, f in enumerate(failed) if not f]
    for pid, texts in enumerate(lines):
        if not failed[pid]:
            assert texts is not None
            assert got.by_prompt[pid] == tuple(normalise_text(t) for t in texts if t is not None)


@SETTINGS
@given(st.lists(st.one_of(st.none(), st.lists(TEXT, min_size=1, max_size=4)), min_size=1, max_size=8))
def test_openai_style_round_trip(lines: list[list[str] | None]) -> None:
    rows = [
        {"ok": False}
        if texts is None
        else {
            "ok": True,
            "outputs": [{"index": i, "message": {"role": "assistant", "content": t}} for i, t in enumerate(texts)],
        }
        for texts in lines
    ]
    path = write("samples.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    if all(texts is None for texts in lines):
        with pytest.raises(SamplesFileError, match="every prompt failed"):
            read_samples(path)
        return
    (got,) = read_samples(path)
    assert got.n_failed == sum(texts is None for texts in lines)
    assert sorted(got.by_prompt) == [i for i, t in enumerate(lines) if t is not None]


@SETTINGS
@given(USER_BYTES)
def test_instance_reader_returns_prompts_or_a_prompt_error(data: bytes) -> None:
    try:
        pset = read_instances(write("data.jsonl", data))
    except PromptFileError as exc:
        assert "\n" not in str(exc)
        return
    assert len(pset) >= 1 and all(isinstance(p.text, str) for p in pset.prompts)


@SETTINGS
@given(st.lists(TEXT.filter(lambda t: t.strip() != ""), min_size=1, max_size=6))
def test_instance_round_trip(texts: list[str]) -> None:
    lines = "".join(json.dumps({"messages": [{"role": "user", "content": t}]}) + "\n" for t in texts)
    assert read_instances(write("data.jsonl", lines.encode())).texts() == texts


@SETTINGS
@given(USER_BYTES)
def test_prompt_text_file_reader(data: bytes) -> None:
    def prompts(text: str) -> list[str]:
        """The documented rule: a BOM is not text, only "\\n" ends a line, lines are stripped,
        blank ones and "#" comments skipped, and a leading backslash before "#" or "\\" dropped."""
        lines = [ln.strip() for ln in text.removeprefix("\ufeff").split("\n")]
        return [ln[1:] if ln.startswith(("\\#", "\\\\")) else ln for ln in lines if ln and not ln.startswith("#")]

    try:
        pset = load_prompt_set(str(write("mine.txt", data)))
    except PromptFileError as exc:
        assert "\n" not in str(exc)
        assert "not UTF-8" in str(exc) or not prompts(data.decode("utf-8", errors="replace"))
        return
    assert pset.texts() == prompts(data.decode("utf-8"))


@SETTINGS
@given(USER_BYTES)
def test_stance_label_reader(data: bytes) -> None:
    try:
        labels = read_stance_labels(write("samples.jsonl", data))
    except SamplesFileError:
        return
    assert all(label is None or isinstance(label, str) for label in labels)


@SETTINGS
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_registry_reader_returns_a_registry_or_a_registry_error(data: bytes) -> None:
    try:
        load_registry(write("models.toml", data))
    except LiteAlignError as exc:
        assert "\n" not in str(exc)


@SETTINGS
@given(USER_BYTES)
def test_manifest_reader(data: bytes) -> None:
    p = write("manifest.json", data)
    try:
        read_manifest(p.parent)
    except RunDirError as exc:
        assert "\n" not in str(exc)


@SETTINGS
@given(
    st.lists(st.dictionaries(st.text(max_size=5), st.integers(), max_size=3), max_size=5),
    st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"")),
    st.booleans(),
)
def test_a_torn_tail_is_cut_and_complete_lines_kept(records: list[dict[str, int]], tail: bytes, newline: bool) -> None:
    """A kill leaves complete lines and at most one partial last line (with or without its
    newline): repair keeps exactly the complete, well-formed lines."""
    good = "".join(json.dumps(r) + "\n" for r in records).encode()
    torn = tail + (b"\n" if newline and tail else b"")
    p = write("x.jsonl", good + torn)
    repair_tail(p)
    kept = p.read_bytes()
    try:
        json.loads(torn)
        whole = newline and bool(tail)
    except ValueError:
        whole = False
    assert kept == (good + torn if whole else good)
