"""explain(): the whole section on the paper's released outputs (judge-free) and on small sets with a
scripted judge; the explanation's arithmetic by hand."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEmbedder
from release import conflictingqa

from lite_align.data import SampleSet
from lite_align.engine import GenerationRequest, GenerationResult
from lite_align.explain import explain, explanation, looks_yesno
from lite_align.judge import Judge
from lite_align.paths import PACKAGE_DIR
from lite_align.readers import read_instances, read_samples

PROMPTS = PACKAGE_DIR.parent / "prompts" / "judge"


def release() -> tuple[SampleSet, SampleSet, dict[int, str]]:
    base = read_samples(conflictingqa() / "outputs" / "llama-2-base")[0]
    aligned = read_samples(conflictingqa() / "outputs" / "gpt-3.5-turbo")[0]
    prompts = {p.id: p.text for p in read_instances(conflictingqa() / "instances" / "data.jsonl").prompts}
    return base, aligned, prompts


def in_unit_range(x: Any) -> bool:
    return isinstance(x, float) and 0.0 <= x <= 1.0


def test_release_judge_free_structure_and_ranges() -> None:
    base, aligned, prompts = release()
    out = explain(base, aligned, embedder=FakeEmbedder(), prompts=prompts)
    assert (out["base"], out["aligned"], out["n_prompts"]) == ("llama-2-base", "gpt-3.5-turbo", 434)
    for kind in ("wordbag", "embedding"):
        block = out["coverage"][kind]
        assert in_unit_range(block["aligned_single"]) and in_unit_range(block["base_single"])
        assert all(in_unit_range(v) for v in block["ci"]["aligned_single"])
    # information aggregation: one gpt-3.5 answer covers more of what the other base answers say
    # than one base answer does, by word bags (0.263 against 0.143 on this release)
    words = out["coverage"]["wordbag"]
    assert words["aligned_single"] > words["base_single"] + 0.05
    assert words["ci"]["gain"][0] > 0
    # the raw figures match REFERENCE.md (within-prompt Jaccard 0.1525 and 0.4171)
    raw = out["raw_diversity"]
    assert raw["base"]["jaccard"]["mean"] == pytest.approx(0.1525, abs=0.005)
    assert raw["aligned"]["jaccard"]["mean"] == pytest.approx(0.4171, abs=0.005)
    assert raw["drop"]["jaccard"] == pytest.approx(0.4171 - 0.1525, abs=0.01)
    filters = out["quality"]["filters"]
    for role in ("base", "aligned"):
        assert all(in_unit_range(v) for v in filters[role]["flagged"].values())
        assert in_unit_range(filters[role]["passed"])
    assert filters["base"]["flagged"]["terse"] > 0.3 and filters["aligned"]["flagged"]["terse"] == 0.0
    kept = filters["base"]["diversity"]
    assert 0 < kept["n_prompts_kept"] < 434 and kept["n_prompts_dropped"] == 434 - kept["n_prompts_kept"]
    assert out["quality"]["judge"] is None and "stance" not in out and "judge" not in out
    sentence = out["explanation"]
    assert sentence.count(".") >= 1 and "\n" not in sentence
    assert f"{100 * words['aligned_single']:.0f}%" in sentence and f"{100 * words['base_single']:.0f}%" in sentence


def test_release_without_an_embedder_says_what_is_left_out() -> None:
    base, aligned, _ = release()
    out = explain(base, aligned, embedder=None)
    assert out["coverage"]["embedding"] is None
    assert out["raw_diversity"]["base"]["embedding"] is None
    assert out["quality"]["filters"]["base"]["flagged"]["off_topic"] is None
    assert any("no embedder" in note for note in out["notes"])
    assert any("have no text" in note for note in out["notes"])  # the release's samples carry no prompts


@pytest.mark.real_models
def test_release_with_the_real_embedder(tmp_path: Path) -> None:
    from lite_align.embed import OnnxEmbedder, default_embedder_spec

    base, aligned, prompts = release()
    out = explain(base, aligned, embedder=OnnxEmbedder(default_embedder_spec(), cache_dir=tmp_path), prompts=prompts)
    emb = out["coverage"]["embedding"]
    assert emb["aligned_single"] > emb["base_single"]  # 0.295 against 0.217
    assert out["raw_diversity"]["drop"]["embedding"] > 0.3  # 0.590 -> 0.062
    assert 0 < out["quality"]["filters"]["base"]["flagged"]["off_topic"] < 0.05


def test_explanation_arithmetic_by_hand() -> None:
    raw = {
        "base": {"jaccard": {"mean": 0.2}},
        "aligned": {"jaccard": {"mean": 0.6}},
        "drop": {"jaccard": 0.4, "embedding": 0.5},
    }
    passing = {
        "jaccard_filtered": 0.3,  # (0.3 - 0.2) / 0.4 = 25%
        "jaccard_raw_kept": 0.2,
        "embedding_filtered": 0.4,  # (0.6 - 0.4) / 0.5 = 40%
        "embedding_raw_kept": 0.6,
    }
    cov = {
        "wordbag": {"aligned_single": 0.31, "base_single": 0.12},
        "embedding": {"aligned_single": 0.5, "base_single": 0.25},
    }
    assert explanation(raw, passing, cov, quality_bar="the filters") == (
        "Of the rise in within-prompt word-bag Jaccard from base to aligned (0.200 to 0.600), 25% disappears when "
        "the base responses failing the filters are removed (40% of the drop in embedding diversity); one aligned "
        "answer covers 31% of the words the other base answers use between them, against 12% for one base answer "
        "(50% against 25% of their sentences)."
    )
    widened = explanation(raw, {**passing, "jaccard_filtered": 0.1}, cov, quality_bar="the filters")
    assert "widens it by 25%" in widened
    no_drop = {**raw, "drop": {"jaccard": -0.1, "embedding": None}}
    assert explanation(no_drop, passing, cov, quality_bar="x").startswith("There is no drop in diversity to explain")


def test_looks_yesno() -> None:
    assert looks_yesno(["Is tea healthy?", "Does coffee help?", "Can cats swim?"])
    assert not looks_yesno(["Write a haiku about tea.", "Describe coffee.", "Is it late?"])
    assert not looks_yesno([])


# -- with a judge (scripted replies) -----------------------------------------------------------


class ScriptedJudgeModel:
    """Scores an answer by its length (short = unhelpful), labels "yes" when the answer starts so."""

    def __init__(self) -> None:
        self.n_generated = 0

    def render_chat(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        return messages[0]["content"]

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        return list(range(len(text.split())))

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[GenerationResult]:
        for req in requests:
            self.n_generated += 1
            yield GenerationResult(req.key, 0, 0, self._reply(req.prompt), 5, 50, "stop", 0.0)

    @staticmethod
    def _reply(prompt: str) -> str:
        if "Text A:" in prompt:
            return '{"topics_a_only": ["a"], "topics_b_only": [], "topics_both": ["b"], "missing_from_a": 2}'
        answer = re.search(r"\n(?:Reply to grade|Reply):\n(.*)\n\nAnswer with JSON", prompt, re.S)
        text = answer.group(1) if answer else ""
        if "which side" in prompt:
            stance = "yes" if text.lower().startswith("yes") else "no" if text.lower().startswith("no") else "both"
            return f'{{"stance": "{stance}", "reason": "r"}}'
        h = 1 if len(text.split()) < 5 else 4
        return f'{{"helpfulness": {h}, "clarity": 3, "factuality": 3, "depth": 2, "engagement": 3}}'


def small_sets() -> tuple[SampleSet, SampleSet, dict[int, str]]:
    prompts = {0: "Is tea healthy?", 1: "Can cats swim?", 2: "Does coffee help focus?"}
    base = SampleSet(
        "base",
        {
            0: (
                "Yes.",
                "No.",
                "Yes, tea has antioxidants that protect cells.",
                "No, tea stains teeth and keeps you awake.",
            ),
            1: ("Yes.", "Yes, most cats can swim but dislike water.", "No, cats sink.", "Cats paddle when they must."),
            2: (
                "No.",
                "Yes, caffeine blocks adenosine and sharpens attention.",
                "Yes.",
                "Coffee helps some people focus.",
            ),
        },
    )
    aligned = SampleSet(
        "aligned",
        {
            pid: (f"It depends: {q} turns on the person, the amount and the evidence, which is mixed.",) * 2
            for pid, q in prompts.items()
        },
    )
    return base, aligned, prompts


def test_explain_with_a_judge_on_yes_no_prompts(tmp_path: Path) -> None:
    base, aligned, prompts = small_sets()
    model = ScriptedJudgeModel()
    judge = Judge(model, "ef" * 32, PROMPTS, name="scripted", cache_path=tmp_path / "j.sqlite")
    out = explain(base, aligned, embedder=FakeEmbedder(), judge=judge, prompts=prompts)
    q = out["quality"]["judge"]
    # base: 6 of its 12 answers have fewer than 5 words ("Yes.", "No, cats sink.", ...) -> helpfulness 1
    assert q["base"]["unhelpful_share"]["mean"] == pytest.approx(6 / 12)
    assert q["aligned"]["unhelpful_share"]["mean"] == 0.0
    assert q["base"]["scores"]["helpfulness"]["mean"] == pytest.approx(2.5)  # every prompt: two 1s, two 4s
    assert q["base"]["n_unparsed"] == 0 and q["base"]["n_judged"] == 12
    assert q["base"]["diversity_passing"]["n_responses_kept"] == 6
    cov = out["coverage"]["judge"]
    assert cov["n_prompts"] == 3 and cov["aligned"]["missing_from_a"]["mean"] == 2.0
    assert cov["base"]["topics_both"]["mean"] == 1.0
    stance = out["stance"]
    assert stance["base"]["distributional_pluralism"] == 1.0  # every prompt has a yes and a no
    assert stance["aligned"]["overton_pluralism"] == 1.0 and stance["aligned"]["distributional_pluralism"] == 0.0
    sanity = out["judge"]["sanity"]
    assert sanity["empty_answer_helpfulness"] == 1.0 and sanity["question_copied_helpfulness"] == 1.0
    assert sanity["filter_agreement"]["helpfulness_flagged"] == 1.0  # the terse answers
    assert out["judge"]["model"] == "scripted" and out["judge"]["stats"]["unparsed"] == 0
    assert sanity["passed"] and "the judge's quality bar (helpfulness >= 3)" in out["explanation"]
    # a second explain() is answered from the judge's cache
    before = model.n_generated
    explain(base, aligned, embedder=FakeEmbedder(), judge=judge, prompts=prompts)
    assert model.n_generated == before


class OnesJudgeModel(ScriptedJudgeModel):
    """Scores every answer 1 on every aspect, as the 135M judge does."""

    @staticmethod
    def _reply(prompt: str) -> str:
        if "Text A:" in prompt or "which side" in prompt:
            return ScriptedJudgeModel._reply(prompt)
        return '{"helpfulness": 1, "clarity": 1, "factuality": 1, "depth": 1, "engagement": 1}'


def test_a_judge_that_fails_its_sanity_check_is_not_used_for_the_explanation(tmp_path: Path) -> None:
    base, aligned, prompts = small_sets()
    judge = Judge(OnesJudgeModel(), "ef" * 32, PROMPTS, cache_path=tmp_path / "j.sqlite")
    out = explain(base, aligned, embedder=None, judge=judge, prompts=prompts)
    sanity = out["judge"]["sanity"]
    assert sanity["filter_agreement"]["helpfulness_flagged"] == sanity["filter_agreement"]["helpfulness_passed"] == 1
    assert sanity["passed"] is False
    assert "the judge-free filters" in out["explanation"] and any("sanity check" in n for n in out["notes"])
    assert out["quality"]["judge"]["base"]["unhelpful_share"]["mean"] == 1.0  # still reported


def test_explain_leaves_stance_out_for_open_prompts(tmp_path: Path) -> None:
    base, aligned, _ = small_sets()
    prompts = {0: "Write about tea.", 1: "Describe cats.", 2: "Explain coffee."}
    judge = Judge(ScriptedJudgeModel(), "ef" * 32, PROMPTS, cache_path=tmp_path / "j.sqlite")
    out = explain(base, aligned, embedder=None, judge=judge, prompts=prompts)
    assert "stance" not in out and any("not yes/no" in n for n in out["notes"])
    forced = explain(base, aligned, embedder=None, judge=judge, prompts=prompts, yesno=True)
    assert "stance" in forced
    limited = explain(base, aligned, embedder=None, judge=judge, prompts=prompts, judge_prompts=1)
    assert limited["quality"]["judge"]["base"]["n_judged"] == 4
