"""Conditions as objects: what each built-in one needs, and a new condition added as one object
that the study generates, the planner counts and the analysis reports, with nothing else edited."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_study import run_study

from lite_align.analysis import analyse
from lite_align.conditions import (
    ALL_CONDITIONS,
    Condition,
    condition,
    conditions,
    parse_conditions,
    registered_condition,
)
from lite_align.errors import ConfigError
from lite_align.readers import read_samples


def test_the_builtin_conditions_say_what_they_need() -> None:
    assert tuple(c.name for c in conditions()) == ALL_CONDITIONS
    need = {
        c.name: (c.prompt_format, c.needs_embedder, c.needs_static_answers, c.needs_summaries) for c in conditions()
    }
    assert need["chat"] == ("chat", False, False, False)
    assert need["base"] == ("zero-shot", False, False, False)
    assert need["icl-knn"] == ("in-context", True, False, False)
    assert need["icl-summary-greedy"] == ("in-context", False, True, True)
    assert condition("icl-random-greedy").sampled == "icl-random" and condition("icl-random-greedy").greedy
    assert condition("chat-greedy").teacher
    with pytest.raises(ConfigError, match="unknown condition 'icl-nope'"):
        condition("icl-nope")
    with pytest.raises(ValueError, match="the teacher answers the prompt alone"):
        Condition("chat2", "knn", teacher=True)


def test_a_new_condition_is_one_object(tmp_path: Path) -> None:
    """Random other prompts as examples, each with the summary of its answer, and a summary hint
    for the query: a combination the paper did not run, added as one Condition."""
    new = Condition("icl-random-summary", "random", summaries=True, description="random examples with hints")
    with registered_condition(new):
        chosen = parse_conditions("icl-random-summary,icl-random-summary-greedy")
        assert chosen == ("chat", "chat-greedy", "icl-random-summary", "icl-random-summary-greedy")
        study, log = run_study(tmp_path, chosen)
        keys = [req.key[3] for _, req in log if req.key != ("preflight",)]
        assert "summary" in keys and "teacher-static" not in keys  # summaries, and no static answers
        own, _ = study.summaries()
        prompts = study.base_prompts("icl-random-summary")
        assert own and all(own[pid] in text for pid, text in prompts.items())  # the query's hint
        counts = {c: len(study.store.samples(c)) for c in chosen}
        assert counts == {"chat": 12, "chat-greedy": 4, "icl-random-summary": 12, "icl-random-summary-greedy": 4}
        sets = {s.label: s for s in read_samples(study.store.dir)}
        results = analyse(sets).to_json()
        assert "icl-random-summary" in results["diversity"] and "icl-random-summary-greedy" in results["recover"]
    assert "icl-random-summary" not in parse_conditions(None)
