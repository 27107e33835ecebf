"""Prompt sets and the exact prompt formats of docs/method.md §4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lite_align import prompts as fmt
from lite_align.errors import PromptFileError
from lite_align.prompts import Example, load_prompt_set, load_prompt_texts


def test_builtin_sets_are_large_enough_and_distinct() -> None:
    open_set, yesno = load_prompt_set("open"), load_prompt_set("yesno")
    assert len(open_set) >= 50 and len(yesno) >= 50
    assert len(set(open_set.texts())) == len(open_set)
    assert all(t.endswith("?") for t in yesno.texts())
    assert open_set.sha256 != yesno.sha256
    assert [p.id for p in open_set.prompts] == list(range(len(open_set)))


def test_limit_keeps_the_first_prompts() -> None:
    full, three = load_prompt_set("open"), load_prompt_set("open", limit=3)
    assert three.texts() == full.texts()[:3]
    with pytest.raises(PromptFileError, match="--limit"):
        load_prompt_set("open", limit=0)


def test_text_and_jsonl_files(tmp_path: Path) -> None:
    t = tmp_path / "mine.txt"
    t.write_text("# comment\nFirst?\n\n  Second  \n", encoding="utf-8")
    assert load_prompt_set(str(t)).texts() == ["First?", "Second"]
    j = tmp_path / "inst.jsonl"
    j.write_text(
        '{"messages": [{"role": "user", "content": "Q one?"}]}\n'
        '{"messages": [{"role": "user", "content": "Q two?"}]}\n',
        encoding="utf-8",
    )
    assert load_prompt_set(str(j)).texts() == ["Q one?", "Q two?"]


def test_bad_prompt_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n", encoding="utf-8")
    with pytest.raises(PromptFileError, match="holds no prompts"):
        load_prompt_set(str(empty))
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"ok?\ncaf\xe9?\n")
    with pytest.raises(PromptFileError, match=r"latin.txt:2: not UTF-8"):
        load_prompt_set(str(latin))
    with pytest.raises(PromptFileError, match="neither a built-in set"):
        load_prompt_set(str(tmp_path / "missing.txt"))


def test_zero_shot_format_is_exact() -> None:
    assert fmt.zero_shot("  Is tea good?\n") == "# Query:\n```\nIs tea good?\n```\n\n# Answer:\n```\n"


def test_in_context_format_is_exact() -> None:
    got = fmt.in_context("Be helpful.", [Example("Q1", "A1"), Example("Q2", "A2")], "Q3")
    assert got == (
        "# Instructions:\n\nBe helpful.\n\n"
        "# Query:\n```\nQ1\n```\n\n# Answer:\n```\nA1\n```\n\n"
        "# Query:\n```\nQ2\n```\n\n# Answer:\n```\nA2\n```\n\n"
        "# Query:\n```\nQ3\n```\n\n# Answer:\n```\n"
    )


def test_summary_format_is_exact() -> None:
    got = fmt.in_context("Sys.", [Example("Q1", "A1", "S1")], "Q2", summary="S2")
    assert got == (
        "# Instructions:\n\nSys.\n\n"
        "# Query:\n```\nQ1\n```\n\n# Summary:\n```\nS1\n```\n\n# Answer:\n```\nA1\n```\n\n"
        "# Query:\n```\nQ2\n```\n\n# Summary:\n```\nS2\n```\n\n# Answer:\n```\n"
    )


def test_fences_inside_example_answers_cannot_close_the_block() -> None:
    got = fmt.in_context("S", [Example("Q", "code: ```x```")], "Q2")
    assert "code: '''x'''" in got
    # example query (2) + example answer (2) + test query (2) + the open answer fence (1)
    assert got.count("```") == 7


def test_shared_prefix_ends_at_a_block_boundary() -> None:
    a = fmt.in_context("Sys.", [Example("Q1", "A1")], "Alpha?")
    b = fmt.in_context("Sys.", [Example("Q1", "A1")], "Alps?")
    prefix = fmt.shared_prefix([a, b])
    assert a.startswith(prefix) and b.startswith(prefix)
    assert prefix.endswith("A1\n```\n\n")
    assert fmt.shared_prefix([fmt.zero_shot("x"), fmt.zero_shot("y")]) == ""


def test_project_prompt_texts_load() -> None:
    texts = load_prompt_texts()
    assert len(texts.static_queries) >= 3
    assert "{query}" in texts.summarize and "{answer}" in texts.summarize
    assert len(texts.version) == 12


def test_random_neighbours_are_seeded_and_exclude_self() -> None:
    a = fmt.random_neighbours(10, 4, 3, seed=7)
    assert a == fmt.random_neighbours(10, 4, 3, seed=7)
    assert 4 not in a and len(set(a)) == 3
    assert any(fmt.random_neighbours(10, 4, 3, seed=s) != a for s in range(8, 12))
    assert fmt.random_neighbours(3, 0, 5, seed=0) in ([1, 2], [2, 1])


def test_knn_is_leave_one_out_most_similar_first() -> None:
    v = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]])
    assert fmt.knn_neighbours(v, 0, 3) == [1, 3, 2]
    assert fmt.knn_neighbours(v, 2, 2) == [3, 1]
    # scale does not matter (cosine on normalised rows); ties go to the lower id
    assert fmt.knn_neighbours(np.array([[2.0, 0.0], [1.0, 0.0], [5.0, 0.0]]), 0, 2) == [1, 2]
